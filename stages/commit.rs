//! Commit: group commit. Takes as many executed batches as are waiting (up to
//! `commit_batch_max` transitions), writes them in one LMDB transaction, and only then
//! acks (or terminates, for quarantined messages) every message in them. A failed
//! commit acks nothing and stops intake (see `pipeline::Intake`).

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::pipeline::{ExecutedBatch, Shared, Stats};
use crate::saga::Disposition;
use crate::store::{CommitBatch, CommitOutcome};

pub fn run(shared: &Shared, input: &Receiver<ExecutedBatch>) {
    let max = shared.settings.pipeline.commit_batch_max;
    let retry = Duration::from_millis(shared.settings.pipeline.storage_retry_ms);
    loop {
        if shared.intake.is_stopped() {
            try_resume(shared);
        }
        let first = match input.recv_timeout(retry) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut group = vec![first];
        let mut transitions: usize = group[0]
            .items
            .iter()
            .map(|i| i.outcome.transitions.len())
            .sum();
        while transitions < max {
            match input.try_recv() {
                Ok(b) => {
                    transitions += b
                        .items
                        .iter()
                        .map(|i| i.outcome.transitions.len())
                        .sum::<usize>();
                    group.push(b);
                }
                Err(_) => break,
            }
        }
        let epoch = shared.intake.epoch();
        group.retain(|b| {
            let current = b.epoch == epoch;
            if !current {
                drop_group(shared, std::slice::from_ref(b));
            }
            current
        });
        if !group.is_empty() {
            commit_group(shared, group);
        }
    }
}

fn commit_group(shared: &Shared, mut group: Vec<ExecutedBatch>) {
    // Moved, not cloned: after the commit only the messages and counts are needed.
    let mut batch = CommitBatch::default();
    for b in &mut group {
        for item in &mut b.items {
            batch.transitions.append(&mut item.outcome.transitions);
            batch
                .quarantine
                .extend(item.outcome.quarantine.iter().cloned());
        }
    }
    let outcomes = match shared.store.commit(&batch) {
        Ok(o) => o,
        Err(e) => {
            Stats::add(&shared.stats.commit_failures, 1);
            log::error!(error = e.to_string(), transitions = batch.transitions.len() as u64; "commit failed; nothing acked, intake stops");
            shared.intake.stop(e.to_string());
            drop_group(shared, &group);
            return;
        }
    };
    Stats::add(&shared.stats.commits, 1);
    let applied = outcomes
        .iter()
        .filter(|o| **o == CommitOutcome::Applied)
        .count() as u64;
    Stats::add(&shared.stats.transitions, applied);
    Stats::add(&shared.stats.duplicates, outcomes.len() as u64 - applied);
    let mut newest = 0;
    for b in group {
        newest = newest.max(b.batch_no);
        for item in b.items {
            let o = &item.outcome;
            shared.intake.settle(&item.info.stream, item.info.seq);
            Stats::add(&shared.stats.ignored, o.ignored.into());
            Stats::add(&shared.stats.duplicates, o.duplicates.into());
            Stats::add(&shared.stats.faults, o.faults.into());
            let sent = match o.disposition {
                Disposition::Ack => {
                    Stats::add(&shared.stats.acked, 1);
                    item.msg.ack()
                }
                Disposition::Term => {
                    Stats::add(&shared.stats.quarantined, 1);
                    if let Some(q) = &o.quarantine {
                        log::warn!(tenant_id = item.log.tenant_id.as_str(), correlation_id = item.log.correlation_id.as_str(),
                            trace_id = item.log.trace_id.as_str(), stream = item.info.stream.as_str(), seq = item.info.seq,
                            kind = format!("{:?}", q.kind), reason = q.reason.as_str(); "message quarantined");
                    }
                    item.msg.ack_kind(nats::jetstream::AckKind::Term)
                }
            };
            if let Err(e) = sent {
                // The commit is durable; a lost ack only means a redelivery, which
                // dedupe turns into a no-op.
                log::warn!(tenant_id = item.log.tenant_id.as_str(), correlation_id = item.log.correlation_id.as_str(),
                    trace_id = item.log.trace_id.as_str(), error = e.to_string(); "ack failed after commit");
            }
        }
    }
    shared.intake.mark_committed(newest);
}

/// The group's messages stay unacked and will be redelivered.
fn drop_group(shared: &Shared, group: &[ExecutedBatch]) {
    for item in group.iter().flat_map(|b| &b.items) {
        shared.drop_unacked(&item.info.stream, item.info.seq);
    }
}

/// While intake is stopped: probe the store, and resume once it is writable and the
/// dropped messages are due for redelivery.
fn try_resume(shared: &Shared) {
    if !shared.intake.may_resume() {
        return;
    }
    match shared.store.probe_write() {
        Ok(()) => {
            log::info!(reason = shared.intake.stop_reason().unwrap_or_default(); "store writable again; intake resumes");
            shared.intake.resume();
        }
        Err(e) => {
            log::warn!(error = e.to_string(); "store still not writable; intake stays stopped")
        }
    }
}
