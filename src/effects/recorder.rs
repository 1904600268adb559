//! The end of an effect command, off the workers' threads: its result is written into
//! its claim (when claims are in use) while its completion record is group-committed,
//! then its result published (pipelined), then the command acked. The claim writes of a
//! batch are all sent at once, then the records' transaction runs while the server
//! answers them; the workers hear of their records only once both ended. The claim
//! writes leave as early as when they were awaited first, so the window in which
//! another replica may call again (a crash before a claim write lands, then the lease)
//! has not grown; a crash in it may now leave this replica's record beside the running
//! claim, and the redelivery that reaches this store publishes the record without a
//! call. (A restarted process is another replica to the claims: it cannot repair that
//! claim, which runs out with its lease. A claim write's retry, after a 503 or a lost
//! answer, waits until the transaction has ended.)
//!
//! LMDB has one writer at a time, so records written one by one would bind the pool to
//! the disk's sync rate: one thread (`effect-commit`) writes whatever records are waiting
//! in one transaction. A worker waits for its record to be durable, and no longer: before
//! it, a crash would call again (the one window the idempotency key covers), and a worker
//! that took its next command meanwhile would widen that window. Publishing the result
//! and acking are this thread's: many result publishes are outstanding at once (a worker
//! that waited for its own publish ack sat out a round trip per command, with a flusher
//! thread each), and each command is acked once its own result publish is acked. The order
//! per command is the one the invariants ask for: record durable → result stored by
//! JetStream → ack (a crash between any two is answered by redelivery, which finds the
//! record and publishes it again without a call).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, select, Receiver, Sender};
use nats::header::HeaderMap;

use crate::effects::claims::{ClaimWrite, Claims};
use crate::nats_io::{Completion, Delivery, PublishError, Publisher};
use crate::oneshot;
use crate::pipeline::{Shared, Stats};
use crate::store::{EffectCompletion, StoreError, StoredCompletion, Writer};
use crate::types::{TenantId, WorkId};

/// Most records in one transaction.
const BATCH_MAX: usize = 256;
/// Result publishes awaiting their JetStream ack at once.
const PUBLISH_WINDOW: usize = 256;
/// Longest wait for work, so a stop is noticed promptly.
const TICK: Duration = Duration::from_millis(100);

/// A command whose effect has ended: what is left to do for it.
pub struct Finished {
    pub msg: nats::Message,
    pub delivery: Delivery,
    /// Where its result goes, with the headers of docs/contracts.md §1 (tenant, correlation,
    /// trace context); `Nats-Msg-Id` is the result's event id.
    pub subject: String,
    pub headers: HeaderMap,
    pub record: EffectCompletion,
    /// The completion record to write first; `None` when it is in the store already
    /// (a redelivered command whose call was recorded).
    pub write: Option<RecordWrite>,
    /// The result to write into the command's claim, sent before the record's
    /// transaction and awaited after it (cross-replica gate; `None` without claims or
    /// when no claim is held).
    pub claim: Option<ClaimWrite>,
    pub log: LogCtx,
}

/// A completion record to write.
pub struct RecordWrite {
    pub tenant: TenantId,
    pub command: WorkId,
    pub stored: StoredCompletion,
    /// How long it is kept.
    pub keep: Duration,
}

/// A [`Finished`] on its way, with the worker waiting for its record.
struct Request {
    finished: Finished,
    recorded: oneshot::Sender<Result<(), StoreError>>,
}

/// What every log line about a command names.
#[derive(Debug, Clone, Default)]
pub struct LogCtx {
    pub tenant: String,
    pub correlation: String,
    pub trace: String,
}

/// The workers' handle: [`Recorder::finish`] returns once the record is durable.
#[derive(Clone)]
pub struct Recorder {
    tx: Sender<Request>,
}

/// The committing and publishing side, driven by its own thread ([`Committer::step`]).
pub struct Committer {
    shared: Arc<Shared>,
    rx: Receiver<Request>,
    publisher: Publisher,
    /// The batch's claim completions, all outstanding at once, sent before its records'
    /// transaction.
    claim_publisher: Publisher,
    /// Where the records are written (the `store-writer` thread's group commits).
    writer: Writer,
    /// For reading back a claim whose completion write was refused or unanswered.
    claims: Option<Arc<Claims>>,
    /// Commands whose result publish is outstanding, by publish tag.
    publishing: HashMap<u64, Finished>,
    next_tag: u64,
}

/// A recorder for `workers` workers; the committer publishes on `nc`.
pub fn recorder(
    shared: Arc<Shared>,
    writer: Writer,
    nc: &nats::Connection,
    claims: Option<Arc<Claims>>,
    workers: usize,
) -> std::io::Result<(Recorder, Committer)> {
    let timeout = Duration::from_millis(shared.settings.relay.publish_timeout_ms);
    let publisher =
        Publisher::new(nc, PUBLISH_WINDOW, timeout, 3)?.with_max_payload(shared.max_payload);
    let claim_publisher = Publisher::new(nc, BATCH_MAX, timeout, 3)?;
    let (tx, rx) = bounded(workers.max(1));
    Ok((
        Recorder { tx },
        Committer {
            shared,
            writer,
            rx,
            publisher,
            claim_publisher,
            claims,
            publishing: HashMap::new(),
            next_tag: 0,
        },
    ))
}

impl Recorder {
    /// Hands the command over and waits until its record is durable (at once when
    /// there is none to write); its result is published and the command acked later.
    /// On `Err` the command was not taken: the caller leaves it unacked.
    pub fn finish(&self, finished: Finished) -> Result<(), StoreError> {
        // A oneshot, not a channel: the worker parks at once instead of spinning through
        // a group commit's milliseconds.
        let (recorded, answer) = oneshot::oneshot();
        // Not the data's fault, and not one to retry around: as a store failure, it
        // stops intake (calling on without records would call again on redelivery).
        let gone = || StoreError::WriterGone("the effect-commit thread is gone".into());
        let request = Request { finished, recorded };
        self.tx.send(request).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

impl Committer {
    /// Whether result publishes are still awaiting their acks.
    pub fn is_publishing(&self) -> bool {
        !self.publishing.is_empty()
    }

    /// One round of the `effect-commit` thread (`stages/effect_commit.rs`): waits up to
    /// [`TICK`] (less when a publish is due for a resend) for a request or an ack,
    /// commits and publishes the batch of requests waiting, and acks the commands whose
    /// result publish ended. `open`: whether the request channel was open at the last
    /// round; returns whether it still is (closed once every [`Recorder`] is dropped).
    pub fn step(&mut self, mut open: bool) -> bool {
        self.publisher.tick();
        let wait = self
            .publisher
            .next_deadline()
            .map_or(TICK, |d| {
                d.saturating_duration_since(std::time::Instant::now())
            })
            .min(TICK);
        // While closed, only acks are waited for (a closed channel is always ready).
        let first = if open {
            select! {
                recv(self.rx) -> f => match f {
                    Ok(f) => Some(f),
                    Err(_) => {
                        open = false;
                        None
                    }
                },
                recv(self.publisher.acks()) -> m => {
                    if let Ok(m) = m {
                        self.publisher.on_message(m);
                    }
                    None
                },
                default(wait) => None,
            }
        } else {
            if let Ok(m) = self.publisher.acks().recv_timeout(wait) {
                self.publisher.on_message(m);
            }
            None
        };
        if let Some(first) = first {
            let mut batch = vec![first];
            while batch.len() < BATCH_MAX {
                match self.rx.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
            self.commit_and_publish(batch);
        }
        while let Ok(m) = self.publisher.acks().try_recv() {
            self.publisher.on_message(m);
        }
        for c in self.publisher.take_completions() {
            self.published(c);
        }
        open
    }

    /// Writes the batch's results into their claims and its records in one transaction
    /// at the same time, answers the workers, then publishes every result.
    fn commit_and_publish(&mut self, mut batch: Vec<Request>) {
        let claims_sent = self.send_claims(&mut batch);
        let records: Vec<(&TenantId, &WorkId, &StoredCompletion, Duration)> = batch
            .iter()
            .filter_map(|r| {
                let w = r.finished.write.as_ref()?;
                Some((&w.tenant, &w.command, &w.stored, w.keep))
            })
            .collect();
        let recorded = if records.is_empty() {
            Ok(())
        } else {
            self.writer.record_effect_completions(&records)
        };
        if claims_sent {
            self.settle_claims(&batch);
        }
        if let Err(e) = recorded {
            // The workers deal with it (unacked, intake stopped if the store failed).
            for r in batch {
                r.recorded.send(Err(e.copy()));
            }
            return;
        }
        if !records.is_empty() {
            // Before the workers hear of it: none has called its next command yet.
            crate::crash::point(crate::crash::AFTER_RECORD);
        }
        let mut taken = Vec::with_capacity(batch.len());
        for r in batch {
            // A worker that is gone (stopping) no longer matters: its record is durable.
            r.recorded.send(Ok(()));
            taken.push(r.finished);
        }
        for mut f in taken {
            let tag = self.next_tag;
            self.next_tag += 1;
            // Published again also when it was before: the first delivery's ack may be
            // what was lost, and the saga may not have the result yet. The event id
            // makes it a duplicate JetStream drops. The headers move to the publisher
            // (it keeps them for re-sends; nothing later reads them here) instead of a
            // copy: freeing header maps took a quarter of this thread at 5,000/s.
            self.publisher.publish(
                tag,
                &f.subject,
                &f.record.event_id,
                std::mem::take(&mut f.headers),
                f.record.result.as_bytes().to_vec(),
            );
            self.publishing.insert(tag, f);
            // A full window waited for acks inside `publish`: act on them now.
            for c in self.publisher.take_completions() {
                self.published(c);
            }
        }
    }

    /// Sends each result's write into its claim (all outstanding at once, flushed now):
    /// a replica that meets the command afterwards publishes this result instead of
    /// calling. True if any was sent; [`Committer::settle_claims`] collects them. The
    /// values move to the publisher (which keeps them for re-sends): nothing later
    /// reads them here.
    fn send_claims(&mut self, batch: &mut [Request]) -> bool {
        let mut any = false;
        for (n, r) in batch.iter_mut().enumerate() {
            if let Some(claim) = &mut r.finished.claim {
                let body = std::mem::take(&mut claim.value);
                let headers = claim.headers();
                self.claim_publisher.publish_compare_and_set(
                    n as u64,
                    &claim.subject,
                    headers,
                    body,
                );
                any = true;
            }
        }
        // On their way before the records' transaction, not after it.
        self.claim_publisher.tick();
        any
    }

    /// Waits for the claim writes' answers. A write that fails leaves the claim running;
    /// this replica's record still stops a second call here, and another replica would
    /// call again once the lease runs out — logged, because it is the one cross-replica
    /// window this leaves.
    fn settle_claims(&mut self, batch: &[Request]) {
        for c in self.claim_publisher.finish() {
            let (Err(e), Some(r)) = (c.result, batch.get(c.tag as usize)) else {
                continue;
            };
            let (claim, event_id) = (&r.finished.claim, &r.finished.record.event_id);
            let landed = claim.as_ref().zip(self.claims.as_ref());
            if landed.is_some_and(|(claim, claims)| claims.is_done_with(&claim.key, event_id)) {
                continue;
            }
            let log = &r.finished.log;
            log::warn!(tenant_id = log.tenant.as_str(), correlation_id = log.correlation.as_str(),
                trace_id = log.trace.as_str(), error = e.to_string();
                "effect result not written to its claim; other replicas may call again after the lease");
        }
    }

    /// The result publish of one command ended: ack the command, or leave it unacked
    /// for redelivery (which publishes the recorded result, without a call).
    fn published(&mut self, c: Completion) {
        let Some(f) = self.publishing.remove(&c.tag) else {
            return;
        };
        let shared = &self.shared;
        if let Err(e @ PublishError::TooLarge { .. }) = &c.result {
            // Only a result recorded under a larger limit (new ones are cut to fit
            // before their record): republishing it can never succeed, so the command
            // ends here instead of being redelivered for ever.
            Stats::add(&shared.stats.effect_results_too_large, 1);
            log::error!(tenant_id = f.log.tenant.as_str(), correlation_id = f.log.correlation.as_str(),
                trace_id = f.log.trace.as_str(), error = e.to_string();
                "recorded effect result too large to publish; the command is terminated");
            shared
                .intake
                .drops()
                .settle(&f.delivery.stream, f.delivery.stream_seq);
            let _ = f.msg.ack_kind(nats::jetstream::AckKind::Term);
            return;
        }
        if let Err(e) = c.result {
            log::warn!(tenant_id = f.log.tenant.as_str(), correlation_id = f.log.correlation.as_str(),
                trace_id = f.log.trace.as_str(), error = e.to_string(); "effect result publish failed; the command will be redelivered");
            shared.drop_unacked(&f.delivery.stream, f.delivery.stream_seq);
            return;
        }
        Stats::add(&shared.stats.effect_results_published, 1);
        crate::crash::point(crate::crash::AFTER_RESULT);
        shared
            .intake
            .drops()
            .settle(&f.delivery.stream, f.delivery.stream_seq);
        Stats::add(&shared.stats.effect_commands_acked, 1);
        if let Err(e) = f.msg.ack() {
            log::warn!(tenant_id = f.log.tenant.as_str(), correlation_id = f.log.correlation.as_str(),
                trace_id = f.log.trace.as_str(), error = e.to_string(); "ack failed after the result was recorded and published");
        }
    }
}

/// A command whose store access failed stays unacked; a failure that is not the
/// data's own (I/O, a full map) stops intake until the store is writable again.
pub fn store_failed(shared: &Shared, delivery: &Delivery, log_ctx: &LogCtx, e: &StoreError) {
    log::error!(tenant_id = log_ctx.tenant.as_str(), correlation_id = log_ctx.correlation.as_str(),
        trace_id = log_ctx.trace.as_str(), error = e.to_string(); "effect store access failed; the command stays unacked");
    if !e.is_deterministic() {
        shared.intake.stop(e.to_string());
    }
    shared.drop_unacked(&delivery.stream, delivery.stream_seq);
}
