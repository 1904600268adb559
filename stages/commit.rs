//! Commit: group commit. Takes as many executed batches as are waiting (up to
//! `commit_batch_max` messages plus transitions), has the `store-writer` thread write
//! them in one LMDB transaction (shared with whatever else waits to be written), and
//! only then acks (or terminates, for quarantined messages) every message in them.
//!
//! A failed commit acks nothing. When the store itself is the problem (I/O, map full)
//! intake stops (see `pipeline::Intake`). When the *data* is the problem (a record LMDB
//! cannot hold), the group is committed message by message and the offending message is
//! quarantined instead, so one bad message never holds the others hostage.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::pipeline::{ExecutedBatch, ExecutedMsg, RetryOutcome, RetryTicket, Shared, Stats};
use crate::saga::Disposition;
use crate::stages::StageError;
use crate::store::{CommitBatch, CommitOutcome, StoreError, Transition, Writer};

pub fn run(
    shared: &Shared,
    input: &Receiver<ExecutedBatch>,
    writer: Writer,
) -> Result<(), StageError> {
    // Told however the loop ends (a panic too): a draining relay sends the outbox's last
    // items once no commit can add more.
    let _ended = Ended(&shared.intake);
    let max = shared.settings.pipeline.commit_batch_max;
    let retry = Duration::from_millis(shared.settings.pipeline.storage_retry_ms);
    let linger = Duration::from_micros(shared.settings.pipeline.commit_linger_us);
    loop {
        if shared.intake.is_stopped() {
            crate::pipeline::recovery::try_resume(shared);
        }
        let first = match input.recv_timeout(retry) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        Stats::set(&shared.stats.queue_commit, input.len() as u64);
        let linger_until = std::time::Instant::now() + linger;
        let mut weight = weight_of(&first);
        let mut group = vec![first];
        while weight < max {
            // Without a linger this takes only what is already waiting.
            match input.recv_deadline(linger_until) {
                Ok(b) => {
                    weight += weight_of(&b);
                    group.push(b);
                }
                Err(_) => break,
            }
        }
        let epoch = shared.intake.epoch();
        let stopped = shared.intake.is_stopped();
        let newest = group.iter().map(|b| b.batch_no).max().unwrap_or(0);
        let (current, stale): (Vec<_>, Vec<_>) = group
            .into_iter()
            .flat_map(|b| {
                let fresh = b.epoch == epoch && !stopped;
                b.items.into_iter().map(move |item| (fresh, item))
            })
            .partition(|(fresh, _)| *fresh);
        drop_unacked(shared, stale.iter().map(|(_, item)| item));
        let items: Vec<ExecutedMsg> = current.into_iter().map(|(_, item)| item).collect();
        let started = std::time::Instant::now();
        if !items.is_empty() && commit_group(shared, &writer, items) {
            shared.intake.mark_committed(newest);
        }
        shared.stage_latency.commit.record(started.elapsed());
    }
}

/// Marks the commit stage ended when dropped.
struct Ended<'a>(&'a crate::pipeline::Intake);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.mark_commits_ended();
    }
}

/// A message costs one, each of its transitions one more.
fn weight_of(b: &ExecutedBatch) -> usize {
    b.items
        .iter()
        .map(|i| 1 + i.outcome.transitions.len())
        .sum()
}

/// Commits the items and finishes their deliveries; false if any was left unacked.
fn commit_group(shared: &Shared, writer: &Writer, mut items: Vec<ExecutedMsg>) -> bool {
    let (batch, counts) = take_batch(&mut items);
    match writer.commit(batch) {
        (batch, Ok(outcomes)) => {
            crate::crash::point(crate::crash::AFTER_COMMIT);
            count_outcomes(shared, &outcomes);
            announce(shared, batch, &outcomes);
            let mut rest = outcomes.as_slice();
            for (item, n) in items.into_iter().zip(&counts) {
                let (mine, others) = rest.split_at(*n);
                rest = others;
                finish(shared, item, mine);
            }
            true
        }
        (batch, Err(e)) if e.is_deterministic() => {
            log::warn!(error = e.to_string(), messages = items.len() as u64; "a record of the group cannot be stored; committing message by message");
            give_back(&mut items, batch, &counts);
            commit_one_by_one(shared, writer, items)
        }
        (_, Err(e)) => {
            fail(shared, &items, &e);
            false
        }
    }
}

/// Isolates the message whose data the store refuses: it is quarantined, the rest commit.
fn commit_one_by_one(shared: &Shared, writer: &Writer, items: Vec<ExecutedMsg>) -> bool {
    let mut items = items.into_iter();
    while let Some(mut item) = items.next() {
        let (batch, _) = take_batch(std::slice::from_mut(&mut item));
        let committed = match writer.commit(batch) {
            (batch, Err(e)) if e.is_deterministic() => {
                quarantine_unstorable(&mut item, &e, &batch.transitions);
                let (quarantine, _) = take_batch(std::slice::from_mut(&mut item));
                let (quarantine, result) = writer.commit(quarantine);
                result.map(|o| (o, quarantine))
            }
            (batch, result) => result.map(|o| (o, batch)),
        };
        match committed {
            Ok((outcomes, batch)) => {
                crate::crash::point(crate::crash::AFTER_COMMIT);
                count_outcomes(shared, &outcomes);
                announce(shared, batch, &outcomes);
                finish(shared, item, &outcomes);
            }
            Err(e) => {
                let rest: Vec<ExecutedMsg> = std::iter::once(item).chain(items).collect();
                fail(shared, &rest, &e);
                return false;
            }
        }
    }
    true
}

/// Replaces the message's work by a quarantine record naming the store's refusal
/// (`saga::unstorable` decides what it names); `transitions`: its transitions (taken out
/// of it for the refused commit).
fn quarantine_unstorable(item: &mut ExecutedMsg, e: &StoreError, transitions: &[Transition]) {
    let record = crate::saga::unstorable(&item.info, &item.log, &item.msg.data, transitions, e);
    item.outcome.quarantine_instead(record);
}

/// Moves the transitions out of the items (after the commit only messages and counts
/// are needed); `counts` says how many came from each item.
fn take_batch(items: &mut [ExecutedMsg]) -> (CommitBatch, Vec<usize>) {
    let mut batch = CommitBatch::default();
    let mut counts = Vec::with_capacity(items.len());
    for item in items.iter_mut() {
        if let Some(ticket) = &item.retry {
            // A retried message settles its quarantine record unless it changed
            // nothing at all (the operator then decides what to do with it).
            let o = &item.outcome;
            if !o.transitions.is_empty() || o.quarantine.is_some() || o.duplicates > 0 {
                batch.released.push(ticket.key.clone());
            }
        }
        counts.push(item.outcome.transitions.len());
        batch.seen.extend(item.outcome.seen.iter().cloned());
        batch.transitions.append(&mut item.outcome.transitions);
        batch
            .quarantine
            .extend(item.outcome.quarantine.iter().cloned());
    }
    (batch, counts)
}

/// Undoes [`take_batch`].
fn give_back(items: &mut [ExecutedMsg], batch: CommitBatch, counts: &[usize]) {
    let mut transitions = batch.transitions.into_iter();
    for (item, n) in items.iter_mut().zip(counts) {
        item.outcome.transitions = transitions.by_ref().take(*n).collect();
    }
}

fn count_outcomes(shared: &Shared, outcomes: &[CommitOutcome]) {
    Stats::add(&shared.stats.commits, 1);
    let applied = outcomes
        .iter()
        .filter(|o| **o == CommitOutcome::Applied)
        .count() as u64;
    Stats::add(&shared.stats.transitions, applied);
    Stats::add(&shared.stats.duplicates, outcomes.len() as u64 - applied);
}

/// Tells the relay about the outbox items the commit wrote (not those of duplicates,
/// which wrote nothing).
fn announce(shared: &Shared, batch: CommitBatch, outcomes: &[CommitOutcome]) {
    shared.labelled.transitions(&batch.transitions, outcomes);
    let items: Vec<_> = batch
        .transitions
        .into_iter()
        .zip(outcomes)
        .filter(|(_, o)| **o == CommitOutcome::Applied)
        .flat_map(|(t, _)| t.outbox)
        .collect();
    Stats::add(&shared.stats.outbox_depth, items.len() as u64);
    shared.notices.offer(items);
}

/// The commit holding this message's outcome is durable: end its delivery (or, for a
/// retried message, answer the operator). `committed`: what became of its transitions.
fn finish(shared: &Shared, mut item: ExecutedMsg, committed: &[CommitOutcome]) {
    if let Some(ticket) = item.retry.take() {
        return answer_retry(shared, item, ticket, committed);
    }
    let o = &item.outcome;
    shared
        .intake
        .drops()
        .settle(&item.info.stream, item.info.seq);
    count_message(shared, o);
    let log = &item.log;
    if o.stale > 0 {
        log::info!(tenant_id = log.tenant_id.as_str(), correlation_id = log.correlation_id.as_str(),
            trace_id = log.trace_id.as_str(), stream = item.info.stream.as_str(), seq = item.info.seq;
            "reminder ignored as stale: its instance no longer holds the timer (cancelled, set again or finished)");
    }
    let sent = match o.disposition {
        Disposition::Ack => {
            Stats::add(&shared.stats.acked, 1);
            item.msg.ack()
        }
        Disposition::Term => {
            Stats::add(&shared.stats.quarantined, 1);
            shared.labelled.quarantined(o.quarantine.as_ref());
            if let Some(q) = &o.quarantine {
                log::warn!(tenant_id = log.tenant_id.as_str(), correlation_id = log.correlation_id.as_str(),
                    trace_id = log.trace_id.as_str(), stream = item.info.stream.as_str(), seq = item.info.seq,
                    kind = format!("{:?}", q.kind), reason = q.reason.as_str(); "message quarantined");
            }
            item.msg.ack_kind(nats::jetstream::AckKind::Term)
        }
    };
    if let Err(e) = sent {
        // The commit is durable; a lost ack only means a redelivery, which dedupe turns
        // into a no-op.
        log::warn!(tenant_id = log.tenant_id.as_str(), correlation_id = log.correlation_id.as_str(),
            trace_id = log.trace_id.as_str(), error = e.to_string(); "ack failed after commit");
    }
}

fn count_message(shared: &Shared, o: &crate::saga::Outcome) {
    Stats::add(&shared.stats.ignored, o.ignored.into());
    Stats::add(&shared.stats.duplicates, o.duplicates.into());
    Stats::add(&shared.stats.timers_stale, o.stale.into());
    // A transition refused as too large is its own count, not a program fault.
    Stats::add(
        &shared.stats.faults,
        o.faults.saturating_sub(o.too_large).into(),
    );
    shared.labelled.faults(o);
    Stats::add(&shared.stats.too_large_quarantined, o.too_large.into());
    Stats::add(&shared.stats.program_gas, o.gas);
}

fn answer_retry(
    shared: &Shared,
    item: ExecutedMsg,
    ticket: RetryTicket,
    committed: &[CommitOutcome],
) {
    let o = &item.outcome;
    let applied = committed
        .iter()
        .filter(|c| **c == CommitOutcome::Applied)
        .count();
    count_message(shared, o);
    let outcome = if let Some(q) = &o.quarantine {
        RetryOutcome::Quarantined {
            reason: q.reason.clone(),
        }
    } else if applied > 0 {
        RetryOutcome::Applied {
            transitions: applied,
        }
    } else if o.duplicates > 0 || !committed.is_empty() {
        RetryOutcome::Duplicate
    } else {
        RetryOutcome::Ignored
    };
    let log = &item.log;
    log::info!(tenant_id = log.tenant_id.as_str(), correlation_id = log.correlation_id.as_str(),
        trace_id = log.trace_id.as_str(), stream = item.info.stream.as_str(), seq = item.info.seq,
        outcome = format!("{outcome:?}"); "quarantined message retried");
    ticket.answer(outcome);
}

/// The store failed: nothing of these is acked, and intake stops. A commit refused as
/// stale is not a store failure, but it is handled the same way: intake pauses for one
/// ack wait, so that the refused messages (and whatever other stages held, which a new
/// epoch drops) come back, in order, before anything newer is admitted; the executor
/// forgets its overlay and they run again over the stored records.
fn fail(shared: &Shared, items: &[ExecutedMsg], e: &StoreError) {
    if matches!(e, StoreError::Stale { .. }) {
        Stats::add(&shared.stats.stale_refused, 1);
        log::warn!(error = e.to_string(), messages = items.len() as u64; "commit refused: a transition was computed from an older record; nothing acked, intake pauses and the messages run again");
    } else {
        Stats::add(&shared.stats.commit_failures, 1);
        log::error!(error = e.to_string(), messages = items.len() as u64; "commit failed; nothing acked, intake stops");
    }
    shared.intake.stop(e.to_string());
    drop_unacked(shared, items.iter());
}

/// These messages stay unacked and will be redelivered (a retried message's ticket is
/// dropped with it, which tells the operator).
fn drop_unacked<'a>(shared: &Shared, items: impl Iterator<Item = &'a ExecutedMsg>) {
    for item in items.filter(|i| i.retry.is_none()) {
        shared.drop_unacked(&item.info.stream, item.info.seq);
    }
}
