//! Effects: executes effect commands from `WORKFLOW_COMMANDS` and publishes their results
//! to `WORKFLOW_EVENTS`, at most one upstream call per `(tenant, command_id)` once the
//! call's end is recorded.
//!
//! ```text
//! fetch(commands) ─▶ split ─▶ worker × effects.workers ─▶ provider (retries, breaker)
//!                    (decode, record     │
//!                     read, claims)      ▼
//!                    effect-commit: record (group commit) ─▶ publish result ─▶ ack
//! ```
//!
//! Per command the completion record `dedupe:{tenant}:effect:{id}` is checked first. If
//! there is one, the call already happened: its recorded result is published again (the
//! saga may not have seen it) and the message acked, without calling. Otherwise it calls
//! (with the effect's retries, timeout and breaker) and hands the result to the
//! `effect-commit` thread (`effects::recorder`). That thread records it (the worker waits
//! until the record is durable, then takes its next command), publishes it with
//! `Nats-Msg-Id` = the result's event id, and acks once that publish is acked. The window
//! that remains is between the end of the call and its record: a crash there calls again
//! after redelivery, with the same `idempotency-key`, which an upstream that honours it
//! answers without acting twice.
//!
//! Across replicas (each with its own store) the gate is a claim in the shared KV bucket
//! (`effects::claims`): a worker calls only when it created the claim, has the result
//! written into it alongside its record and before publishing, and a replica that finds
//! a finished claim publishes that result; one that finds a live claim of another puts
//! the command back with a delay (not held against `max_deliver`). No claim can be had
//! (NATS KV down): no call.
//!
//! Which of these a command gets is decided by `effects::gate::decide`, over the facts
//! read for it, in the order it asks. With claims in use `effect-split` reads the record
//! and creates the claim (a fetched batch's creates at once, `stages::effect_split`); the
//! worker reads the rest — all of it when no claim was created ahead — and does what
//! the gate decides.
//!
//! Commands arrive from the consumers of the effects this process defines
//! (`stages::effect_fetch`); one of an effect not defined here (fetched just before a
//! reload dropped it) is put back for a process that defines it, never failed.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use nats::jetstream::AckKind;

use crate::effects::attempts::{self, Final};
use crate::effects::claims::{ClaimError, ClaimWrite, Claims, Gate, Held, Won};
use crate::effects::gate::{self, Deliveries, GateAction, GateInput, PutBackWhy};
use crate::effects::recorder::{self, Finished, LogCtx, RecordWrite, Recorder};
use crate::effects::result::{completion_of, outcome, result_event, result_subject};
use crate::effects::EffectDef;
use crate::envelope::{header, meta, trace_id, EffectCommand, EffectResult, ResultType};
use crate::manifest::proven_tenant;
use crate::nats_io::{self, Delivery};
use crate::pipeline::{Shared, Stats};
use crate::relay::backoff::Jitter;
use crate::stages::StageError;
use crate::store::{
    excerpt, CommitBatch, EffectCompletion, QuarantineKind, QuarantineRecord, RawJson, StoreError,
    StoredCompletion,
};
use crate::timefmt::{now_ms, now_rfc3339};
use crate::types::{TenantId, WorkId};

/// One worker thread: commands in, results out.
pub fn work(
    shared: &Shared,
    claims: Option<&Claims>,
    recorder: Recorder,
    input: &Receiver<Prepared>,
) -> Result<(), StageError> {
    let mut worker = Worker {
        shared,
        claims,
        recorder,
        jitter: Jitter::seeded(),
    };
    for prepared in input {
        Stats::set(&shared.stats.queue_effects, input.len() as u64);
        worker.handle(prepared);
    }
    Ok(())
}

/// A fetched command on its way to a worker ([`prepare`], then `stages::effect_split`).
pub struct Prepared(Ready);

enum Ready {
    /// Not a command that can be taken: quarantined by the worker.
    Poison(Box<(nats::Message, Delivery, Poison)>),
    Gated(Box<Gated>),
}

/// A decoded command with the facts of its gate read so far.
struct Gated {
    job: Job,
    /// The definition in force when the command was prepared: the one the call runs on
    /// (a reload after that does not touch it).
    def: Option<Arc<EffectDef>>,
    input: GateInput,
    record: Option<RecordRead>,
    /// Its claim, created ahead (`Claims::create_many`).
    won: Option<Won>,
}

impl Prepared {
    /// The command's tenant and id when its gate asks for the claim next.
    pub fn claim_wanted(&self) -> Option<(&TenantId, &WorkId)> {
        match &self.0 {
            Ready::Gated(g) if gate::decide(&g.input) == GateAction::Claim => {
                Some((&g.job.tenant, &g.job.work_id))
            }
            _ => None,
        }
    }

    /// The claim created for it, if the create landed.
    pub fn set_won(&mut self, won: Option<Won>) {
        if let Ready::Gated(g) = &mut self.0 {
            g.won = won;
        }
    }
}

/// Decodes a fetched command and, with claims in use, reads what its gate asks for
/// before the claim: the completion record. The effect's definition is looked up first,
/// so a command this process cannot run never holds a claim; the command runs on that
/// definition, even if a reload drops the effect while it waits for a worker.
pub fn prepare(shared: &Shared, claims_in_use: bool, msg: nats::Message) -> Prepared {
    let delivery = Delivery::of(&msg).unwrap_or(Delivery {
        stream: String::new(),
        stream_seq: 0,
        delivered: 1,
        published_ms: 0,
    });
    let (cmd, tenant, work_id) = match decode(shared, &msg) {
        Ok(c) => c,
        Err(poison) => return Prepared(Ready::Poison(Box::new((msg, delivery, poison)))),
    };
    let log_ctx = log_ctx(&cmd);
    let def = shared.catalogs.effects().get(&cmd.effect_name).cloned();
    let mut input = GateInput::new(def.is_some(), deliveries(shared, &delivery), claims_in_use);
    let mut record = None;
    // Without claims nothing reads the record again before the call: the worker reads it
    // when it takes the command, as late as it can.
    if claims_in_use && gate::decide(&input) == GateAction::ReadRecord {
        let read = recorded(shared, &tenant, &work_id, &cmd);
        input.record = record_fact(&read);
        record = Some(read);
    }
    let job = Job {
        msg,
        delivery,
        cmd,
        tenant,
        work_id,
        log_ctx,
    };
    Prepared(Ready::Gated(Box::new(Gated {
        job,
        def,
        input,
        record,
        won: None,
    })))
}

struct Worker<'a> {
    shared: &'a Shared,
    /// The cross-replica gate; `None` when `effects.claims_bucket` is "".
    claims: Option<&'a Claims>,
    /// Where ended commands go: records, result publishes and acks are the
    /// `effect-commit` thread's.
    recorder: Recorder,
    jitter: Jitter,
}

/// Why a command could not be taken as one.
struct Poison {
    kind: QuarantineKind,
    reason: String,
    tenant: TenantId,
    /// The command did not prove `tenant` (see [`decode_command`]): its record is filed
    /// under no tenant.
    unattributed: bool,
}

impl<'a> Worker<'a> {
    /// Reads the facts the gate (`effects::gate`) asks for that `prepare` did not, in the
    /// order it asks, then does what it decides.
    fn handle(&mut self, prepared: Prepared) {
        let g = match prepared.0 {
            Ready::Poison(p) => {
                let (msg, delivery, poison) = *p;
                return self.quarantine(&msg, &delivery, poison);
            }
            Ready::Gated(g) => *g,
        };
        let Gated {
            job,
            def,
            mut input,
            record,
            mut won,
        } = g;
        let mut read = Read {
            record,
            ..Read::default()
        };
        if won.is_none() && gate::decide(&input) == GateAction::Claim {
            // No claim was created ahead: the gate runs from its start, on a record read
            // now. The one read before may be old (another worker here may have recorded
            // the command since), and the claim it finds then is this replica's own.
            input.record = gate::Record::Unread;
            read.record = None;
        }
        let action = loop {
            match gate::decide(&input) {
                GateAction::ReadRecord => {
                    let record = recorded(self.shared, &job.tenant, &job.work_id, &job.cmd);
                    input.record = record_fact(&record);
                    read.record = Some(record);
                }
                GateAction::Claim => {
                    // Created ahead by effect-split, unless it did not land or waited
                    // too long for this worker (then asked for here, as always).
                    let adopted = won.take().and_then(|won| {
                        let revision = won.revision;
                        let held = self.claims?.adopt(won)?;
                        Some(Claimed::Mine { revision, held })
                    });
                    let claim = adopted
                        .unwrap_or_else(|| self.claim(&job.tenant, &job.work_id, &job.log_ctx));
                    input.claim = claim.fact();
                    read.claim = Some(claim);
                }
                GateAction::ReadRecordUnderClaim => {
                    let record = recorded(self.shared, &job.tenant, &job.work_id, &job.cmd);
                    input.record_under_claim = record_fact(&record);
                    read.record_under_claim = Some(record);
                }
                action => break action,
            }
        };
        self.perform(action, job, def.as_deref(), read);
    }

    /// Does what the gate decided, with the facts it decided on. The claim (in `read`)
    /// stays held until this returns, i.e. until the record is durable: a redelivery
    /// meanwhile meets "busy".
    fn perform(&mut self, action: GateAction, job: Job, def: Option<&EffectDef>, read: Read<'a>) {
        let log = &job.log_ctx;
        match action {
            GateAction::StoreFailed => match read.record_under_claim.or(read.record) {
                Some(Err(e)) => self.store_failed(&job.delivery, log, &e),
                _ => self.not_read(&job, &action),
            },
            GateAction::Replay { repair_claim } => {
                let Some(Ok(Some(record))) = read.record else {
                    return self.not_read(&job, &action);
                };
                Stats::add(&self.shared.stats.effect_results_replayed, 1);
                log::info!(tenant_id = log.tenant.as_str(), correlation_id = log.correlation.as_str(),
                    trace_id = log.trace.as_str(), command_id = job.cmd.command_id.as_str();
                    "effect command seen before: publishing its recorded result, not calling again");
                let claim = self
                    .claims
                    .filter(|_| repair_claim)
                    .and_then(|c| c.repair(&job.tenant, &job.work_id, &record));
                let ended = Ended {
                    record,
                    write: None,
                    claim,
                };
                self.finish(job, ended);
            }
            GateAction::ReplayUnderClaim => {
                let (Some(Claimed::Mine { revision, held }), Some(Ok(Some(record)))) =
                    (read.claim, read.record_under_claim)
                else {
                    return self.not_read(&job, &action);
                };
                let claim = self.claim_write(&job.tenant, &job.work_id, revision, &record);
                let ended = Ended {
                    record,
                    write: None,
                    claim,
                };
                self.finish(job, ended);
                drop(held);
            }
            GateAction::AdoptFinished => {
                let Some(Claimed::Done(record)) = read.claim else {
                    return self.not_read(&job, &action);
                };
                Stats::add(&self.shared.stats.effect_results_replayed, 1);
                log::info!(tenant_id = log.tenant.as_str(), correlation_id = log.correlation.as_str(),
                    trace_id = log.trace.as_str(), command_id = job.work_id.as_str();
                    "effect command executed by another replica: publishing its result, not calling again");
                // Another replica's result, kept whole (a rare path: no need to take it
                // apart).
                let write = Some(RecordWrite {
                    tenant: job.tenant.clone(),
                    command: job.work_id.clone(),
                    stored: StoredCompletion::Whole(record.clone()),
                    keep: self.keep_for(&job.cmd),
                });
                let ended = Ended {
                    record,
                    write,
                    claim: None,
                };
                self.finish(job, ended);
            }
            GateAction::PutBack { delay, why } => {
                self.log_put_back(&job, why, delay, read.claim.as_ref());
                self.put_back(&job.msg, &job.delivery, delay);
            }
            GateAction::GiveUp { reason } => {
                let poison = Poison {
                    kind: QuarantineKind::MaxDeliver,
                    reason,
                    tenant: job.tenant.clone(),
                    unattributed: false,
                };
                self.quarantine(&job.msg, &job.delivery, poison);
            }
            GateAction::Call { claimed } => {
                let Some(def) = def else {
                    return self.not_read(&job, &action);
                };
                let held = match read.claim {
                    Some(Claimed::Mine { revision, held }) if claimed => Some((revision, held)),
                    _ if !claimed => None,
                    _ => return self.not_read(&job, &action),
                };
                self.call_and_finish(job, def, held);
            }
            // Facts to read: `handle` reads them all before acting.
            GateAction::ReadRecord | GateAction::Claim | GateAction::ReadRecordUnderClaim => {
                self.not_read(&job, &action)
            }
        }
    }

    /// Calls the command's effect and hands its end to the effect-commit thread; `held`:
    /// the claim won for it (revision and hold), kept until the record is durable.
    fn call_and_finish(&mut self, job: Job, def: &EffectDef, held: Option<(u64, Held<'a>)>) {
        let (cmd, log) = (&job.cmd, &job.log_ctx);
        let end = self.call(&job.msg, &job.delivery, cmd, def);
        crate::crash::point(crate::crash::AFTER_CALL);
        let ended_at = now_rfc3339();
        let (end, event, result) = match self.fitting(cmd, end, &ended_at, log) {
            Ok(fitted) => fitted,
            // A result is ids, text and JSON values: writing it cannot fail.
            Err(e) => {
                log::error!(tenant_id = log.tenant.as_str(), correlation_id = log.correlation.as_str(),
                    trace_id = log.trace.as_str(), error = e.to_string(); "cannot serialise an effect result");
                return self
                    .shared
                    .drop_unacked(&job.delivery.stream, job.delivery.stream_seq);
            }
        };
        let record = EffectCompletion {
            event_id: event.event_id.clone(),
            result,
            recorded_at: ended_at.clone(),
        };
        let claim = held.as_ref().and_then(|(revision, _)| {
            self.claim_write(&job.tenant, &job.work_id, *revision, &record)
        });
        let write = RecordWrite {
            tenant: job.tenant.clone(),
            command: job.work_id.clone(),
            stored: StoredCompletion::Outcome(outcome(&end, &ended_at)),
            keep: self.keep_for(cmd),
        };
        let ended = Ended {
            record,
            write: Some(write),
            claim,
        };
        self.finish(job, ended);
        drop(held);
    }

    /// `end` with its result event, written once: or, when that event would be over the
    /// server's `max_payload`, a `failed` end of kind `result_too_large` with a small
    /// payload: the call happened and is recorded as ended, so the command ends once and
    /// is never called again.
    fn fitting(
        &self,
        cmd: &EffectCommand,
        end: Final,
        ended_at: &str,
        log: &LogCtx,
    ) -> Result<(Final, EffectResult, RawJson), serde_json::Error> {
        let event = result_event(cmd, &end, ended_at);
        let result = RawJson::of(&event)?;
        // The result's event id is a UUID.
        let size = nats_io::context_wire_size(
            &cmd.tenant_id,
            cmd.meta(meta::CORRELATION_ID),
            cmd.meta(meta::TRACEPARENT),
            Some(36),
            result.as_str().len(),
        );
        let max = self.shared.max_payload;
        if size <= max {
            return Ok((end, event, result));
        }
        Stats::add(&self.shared.stats.effect_results_too_large, 1);
        let message = format!(
            "the effect's result is {size} bytes, over the server's max_payload of {max}; \
             it ended {:?} and is not called again",
            end.result_type
        );
        log::error!(tenant_id = log.tenant.as_str(), correlation_id = log.correlation.as_str(),
            trace_id = log.trace.as_str(), command_id = cmd.command_id.as_str(), size = size as u64,
            max_payload = max as u64; "effect result too large to publish; a failed result (result_too_large) goes instead");
        let failed = Final {
            result_type: ResultType::Failed,
            payload: serde_json::json!({"result_bytes": size, "max_payload": max}),
            error: Some(crate::envelope::ResultError {
                kind: "result_too_large".into(),
                message,
            }),
            attempts: end.attempts,
        };
        let event = result_event(cmd, &failed, ended_at);
        let result = RawJson::of(&event)?;
        Ok((failed, event, result))
    }

    /// Hands the ended command to the `effect-commit` thread and waits until its record
    /// (when `write`) is durable; that thread then publishes the result and acks.
    fn finish(&self, job: Job, ended: Ended) {
        let Job {
            msg,
            delivery,
            cmd,
            log_ctx,
            ..
        } = job;
        let on_failure = (delivery.clone(), log_ctx.clone());
        let finished = Finished {
            msg,
            subject: result_subject(&self.shared.settings.streams.result_prefix, &cmd),
            headers: nats_io::context_headers(
                &cmd.tenant_id,
                cmd.meta(meta::CORRELATION_ID),
                cmd.meta(meta::TRACEPARENT),
            ),
            delivery,
            record: ended.record,
            write: ended.write,
            claim: ended.claim,
            log: log_ctx,
        };
        if let Err(e) = self.recorder.finish(finished) {
            self.store_failed(&on_failure.0, &on_failure.1, &e);
        }
    }

    /// How long the completion record of `cmd` is kept: its effect's retention, else
    /// the store's default.
    fn keep_for(&self, cmd: &EffectCommand) -> std::time::Duration {
        self.shared
            .catalogs
            .effects()
            .get(&cmd.effect_name)
            .and_then(|def| def.retention)
            .unwrap_or(self.shared.store.retention().effect_records)
    }

    /// Runs the command's effect (`def`) to its end.
    fn call(
        &mut self,
        msg: &nats::Message,
        delivery: &Delivery,
        cmd: &EffectCommand,
        def: &EffectDef,
    ) -> Final {
        let _slot = def.limit.acquire();
        Stats::add(&self.shared.stats.effects_called, 1);
        // Keeps the message from being redelivered to another worker mid-effect: before
        // each attempt and around each backoff wait, and, for an effect whose single
        // attempt may outlast a third of the ack wait, from a ticker while it runs.
        let progress = || {
            let _ = msg.ack_kind(AckKind::Progress);
        };
        let ack_wait = self.shared.settings.ack_wait();
        // The first attempt needs no fresh ack wait while the delivery's own surely has
        // twice the attempt's timeout left: it started no earlier than the message was
        // stored, whatever the fetch buffered. One message less per command for the
        // server in the common case. (The margin covers clock skew between the server's
        // stamp and this host.)
        if first_attempt_needs_progress(delivery.published_ms, now_ms(), def.timeout, ack_wait) {
            progress();
        }
        let jitter = &mut self.jitter;
        let mut run = || {
            attempts::run(def, cmd, &msg.data, jitter, &mut |wait| {
                progress();
                std::thread::sleep(wait);
                progress();
            })
        };
        let started = std::time::Instant::now();
        let end = if def.timeout * 3 > ack_wait {
            keep_alive(msg, ack_wait / 3, run)
        } else {
            run()
        };
        let took = started.elapsed();
        self.shared.stage_latency.effect.record(took);
        self.shared
            .labelled
            .effect_ended(def.name.as_str(), &cmd.tenant_id, end.result_type, took);
        if end.result_type != ResultType::Succeeded {
            Stats::add(&self.shared.stats.effects_failed, 1);
        }
        end
    }

    fn quarantine(&self, msg: &nats::Message, delivery: &Delivery, p: Poison) {
        let record = QuarantineRecord {
            kind: p.kind,
            reason: p.reason,
            stream: delivery.stream.clone(),
            seq: delivery.stream_seq,
            subject: msg.subject.clone(),
            delivered: delivery.delivered,
            tenant: p.tenant,
            event_id: None,
            correlation_id: None,
            saga: None,
            body_excerpt: excerpt(&msg.data),
            unattributed: p.unattributed,
            quarantined_at: None,
        };
        let batch = CommitBatch {
            transitions: Vec::new(),
            quarantine: vec![record.clone()],
            ..Default::default()
        };
        match self.shared.store.commit(&batch) {
            Ok(_) => {
                Stats::add(&self.shared.stats.quarantined, 1);
                self.shared.labelled.quarantined(Some(&record));
                // Its envelope was not read: the headers name its context, if anything does.
                let correlation = nats_io::header(msg, header::CORRELATION).unwrap_or_default();
                let trace = nats_io::header(msg, header::TRACEPARENT)
                    .and_then(trace_id)
                    .unwrap_or_default();
                log::warn!(tenant_id = record.tenant.as_str(), correlation_id = correlation, trace_id = trace,
                    stream = record.stream.as_str(), seq = record.seq,
                    kind = format!("{:?}", record.kind), reason = record.reason.as_str(); "effect command quarantined");
                self.shared
                    .intake
                    .drops()
                    .settle(&delivery.stream, delivery.stream_seq);
                let _ = msg.ack_kind(AckKind::Term);
            }
            Err(e) => {
                log::error!(error = e.to_string(); "cannot store a quarantine record; the command stays unacked");
                self.shared
                    .drop_unacked(&delivery.stream, delivery.stream_seq);
            }
        }
    }

    /// Asks the shared claims whether this worker may call (only asked with claims in
    /// use).
    fn claim(&self, tenant: &TenantId, work_id: &WorkId, log_ctx: &LogCtx) -> Claimed<'a> {
        let Some(claims) = self.claims else {
            return Claimed::Unavailable(None);
        };
        match claims.acquire(tenant, work_id) {
            Ok(Gate::Mine {
                revision,
                held,
                taken_over,
            }) => {
                if let Some(t) = taken_over {
                    log::warn!(tenant_id = log_ctx.tenant.as_str(), correlation_id = log_ctx.correlation.as_str(),
                        trace_id = log_ctx.trace.as_str(), command_id = work_id.as_str(), previous_owner = t.previous_owner.as_str(),
                        age_ms = t.age.as_millis() as u64;
                        "effect claim expired unfinished; taking the command over (called again under the same idempotency key)");
                }
                Claimed::Mine { revision, held }
            }
            Ok(Gate::Done(record)) => Claimed::Done(record),
            Ok(Gate::Busy { retry_after }) => Claimed::Busy(retry_after),
            Err(e) => Claimed::Unavailable(Some(e)),
        }
    }

    /// The write of the result into the claim held at `revision` (the effect-commit
    /// thread sends it before the record's transaction and awaits it after).
    fn claim_write(
        &self,
        tenant: &TenantId,
        work_id: &WorkId,
        revision: u64,
        record: &EffectCompletion,
    ) -> Option<ClaimWrite> {
        let claims = self.claims?;
        Some(claims.completion(tenant, work_id, revision, record))
    }

    /// Counts and logs why a command is put back. A command of an effect not defined
    /// here: its effect's consumer is pulled only by processes that define it, so this
    /// is one fetched just before a reload dropped the effect, put back for a process
    /// that defines it, never failed; if none runs, it waits in the stream, reported as
    /// unclaimed after `effects.unclaimed_alert_secs`.
    fn log_put_back(&self, job: &Job, why: PutBackWhy, delay: Duration, claim: Option<&Claimed>) {
        let (log, id) = (&job.log_ctx, job.cmd.command_id.as_str());
        match why {
            PutBackWhy::NotDefinedHere => {
                Stats::add(&self.shared.stats.effects_unknown_put_back, 1);
                log::warn!(tenant_id = log.tenant.as_str(), correlation_id = log.correlation.as_str(),
                    trace_id = log.trace.as_str(), command_id = id, effect = job.cmd.effect_name.as_str();
                    "effect command of an effect not defined here: put back for a process that defines it");
            }
            PutBackWhy::ClaimedElsewhere => {
                Stats::add(&self.shared.stats.effect_claims_busy, 1);
                log::info!(tenant_id = log.tenant.as_str(), correlation_id = log.correlation.as_str(),
                    trace_id = log.trace.as_str(), command_id = id, retry_in_ms = delay.as_millis() as u64;
                    "effect command claimed by another replica; put back");
            }
            PutBackWhy::NoClaim => {
                Stats::add(&self.shared.stats.effect_claims_busy, 1);
                let error = match claim {
                    Some(Claimed::Unavailable(Some(e))) => e.to_string(),
                    _ => "no claims bucket".to_string(),
                };
                log::warn!(tenant_id = log.tenant.as_str(), correlation_id = log.correlation.as_str(),
                    trace_id = log.trace.as_str(), error = error;
                    "no effect claim to be had; not calling, the command is put back");
            }
        }
    }

    /// The gate decided on a fact `handle` did not read. Every action is decided on
    /// facts read, so this cannot happen; were it to, the command is neither called nor
    /// acked (it comes back), as after a store failure.
    fn not_read(&self, job: &Job, action: &GateAction) {
        let log = &job.log_ctx;
        log::error!(tenant_id = log.tenant.as_str(), correlation_id = log.correlation.as_str(),
            trace_id = log.trace.as_str(), action = format!("{action:?}");
            "effect gate acted on a fact not read; the command stays unacked");
        self.shared
            .drop_unacked(&job.delivery.stream, job.delivery.stream_seq);
    }

    /// Leaves the command unacked and asks for redelivery after `delay`; the delivery
    /// this causes is not held against `max_deliver`.
    fn put_back(&self, msg: &nats::Message, delivery: &Delivery, delay: Duration) {
        self.shared
            .drop_unacked(&delivery.stream, delivery.stream_seq);
        let nak = format!("-NAK {{\"delay\":{}}}", delay.as_nanos());
        let _ = msg.respond(nak);
    }

    fn store_failed(&self, delivery: &Delivery, log_ctx: &LogCtx, e: &StoreError) {
        recorder::store_failed(self.shared, delivery, log_ctx, e);
    }
}

fn decode(
    shared: &Shared,
    msg: &nats::Message,
) -> Result<(EffectCommand, TenantId, WorkId), Poison> {
    let header_tenant = nats_io::header(msg, header::TENANT);
    let prefix = &shared.settings.streams.command_prefix;
    let max = shared.settings.pipeline.max_message_bytes;
    if msg.data.len() > max {
        // decode_command quarantines it; counted here, where the stats are.
        Stats::add(&shared.stats.effect_commands_too_large, 1);
    }
    let (mut cmd, tenant, work_id) =
        decode_command(prefix, max, &msg.subject, header_tenant, &msg.data)?;
    context_from_headers(&mut cmd, msg);
    Ok((cmd, tenant, work_id))
}

/// The completion record of `cmd`, if it was executed, as the result event first
/// published (rebuilt from the command when the record keeps the outcome only).
fn recorded(
    shared: &Shared,
    tenant: &TenantId,
    work_id: &WorkId,
    cmd: &EffectCommand,
) -> Result<Option<EffectCompletion>, StoreError> {
    let Some(stored) = shared.store.effect_completion(tenant, work_id)? else {
        return Ok(None);
    };
    completion_of(stored, cmd)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            key: crate::keys::effect_dedupe(tenant, work_id),
            message: format!("its result cannot be rebuilt: {e}"),
        })
}

/// How often the command was delivered, and how many of those this process caused
/// itself (put back, store failures): those are not held against `max_deliver`.
fn deliveries(shared: &Shared, delivery: &Delivery) -> Deliveries {
    Deliveries {
        delivered: delivery.delivered,
        forgiven: shared
            .intake
            .drops()
            .forgiven(&delivery.stream, delivery.stream_seq),
        max_deliver: shared.settings.consumer.max_deliver,
    }
}

/// A command's end, for the effect-commit thread.
struct Ended {
    record: EffectCompletion,
    /// The record to write; `None` when it is stored already.
    write: Option<RecordWrite>,
    claim: Option<ClaimWrite>,
}

/// A decoded command and its delivery.
struct Job {
    msg: nats::Message,
    delivery: Delivery,
    cmd: EffectCommand,
    tenant: TenantId,
    work_id: WorkId,
    log_ctx: LogCtx,
}

/// A read of the completion record: the result it holds, if the call ended.
type RecordRead = Result<Option<EffectCompletion>, StoreError>;

/// The facts read for one command, whole; the gate sees them as plain [`GateInput`].
#[derive(Default)]
struct Read<'a> {
    record: Option<RecordRead>,
    claim: Option<Claimed<'a>>,
    record_under_claim: Option<RecordRead>,
}

fn record_fact(read: &RecordRead) -> gate::Record {
    match read {
        Ok(None) => gate::Record::Absent,
        Ok(Some(_)) => gate::Record::Present,
        Err(_) => gate::Record::Unreadable,
    }
}

/// What the shared claims answered.
enum Claimed<'a> {
    /// This worker holds the claim at `revision`; no other worker here takes the
    /// command while `held` lives.
    Mine { revision: u64, held: Held<'a> },
    /// Another replica's result.
    Done(EffectCompletion),
    /// Another worker or replica holds it: try again after this.
    Busy(Duration),
    /// No claim to be had (the error, when there was one).
    Unavailable(Option<ClaimError>),
}

impl Claimed<'_> {
    fn fact(&self) -> gate::Claim {
        match self {
            Claimed::Mine { .. } => gate::Claim::Won,
            Claimed::Done(_) => gate::Claim::Finished,
            Claimed::Busy(retry_after) => gate::Claim::HeldElsewhere {
                retry_after: *retry_after,
            },
            Claimed::Unavailable(_) => gate::Claim::Unavailable,
        }
    }
}

/// Slack for the difference between nats-server's clock and this host's.
const CLOCK_MARGIN: Duration = Duration::from_secs(5);

/// Whether a command stored at `published_ms` needs a fresh ack wait before a first
/// attempt of up to `timeout`: unless its delivery's own ack wait, started no earlier
/// than the store, surely has twice that left.
fn first_attempt_needs_progress(
    published_ms: i64,
    now_ms: i64,
    timeout: Duration,
    ack_wait: Duration,
) -> bool {
    let age = Duration::from_millis(now_ms.saturating_sub(published_ms).max(0) as u64);
    age + timeout * 2 + CLOCK_MARGIN > ack_wait
}

/// Runs `f` while a ticker thread sends in-progress acks for `msg` every `every`.
fn keep_alive<T>(msg: &nats::Message, every: Duration, f: impl FnOnce() -> T) -> T {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(every)
            {
                let _ = msg.ack_kind(AckKind::Progress);
            }
        });
        let out = f();
        drop(stop);
        out
    })
}

/// Reads a command delivered on `subject` (`{command_prefix}.{tenant}.{effect}`). The
/// subject names its tenant (NATS permissions restrict subjects, not bodies): a header or
/// body naming another, or a subject naming none, is a tenant violation, quarantined
/// under no tenant and never executed. Any other poison is filed under the subject's
/// tenant only when header and body agree with it.
fn decode_command(
    command_prefix: &str,
    max_bytes: usize,
    subject: &str,
    header_tenant: Option<&str>,
    data: &[u8],
) -> Result<(EffectCommand, TenantId, WorkId), Poison> {
    // Subject and header first: all an unreadable body leaves to go by.
    let proven = proven_tenant(subject, command_prefix, header_tenant, None);
    let claimed = header_tenant.unwrap_or_default();
    let poison = |kind, reason: String, proven: Option<&TenantId>| Poison {
        kind,
        reason,
        tenant: proven
            .cloned()
            .unwrap_or_else(|| TenantId::new(claimed).unwrap_or_default()),
        unattributed: proven.is_none(),
    };
    // Never executed, never read: a command is bounded as an event is.
    if data.len() > max_bytes {
        let reason = format!(
            "too large: {} bytes, pipeline.max_message_bytes is {max_bytes}",
            data.len()
        );
        return Err(poison(QuarantineKind::Decode, reason, proven.as_ref().ok()));
    }
    // Straight into the command, without a JSON tree in between (only a provider
    // that asks for one builds it). UTF-8 is checked whole first: fields the command
    // ignores are skipped, not read, by the parser.
    let text = std::str::from_utf8(data).map_err(|e| {
        let reason = format!("body is not valid JSON: {e}");
        poison(QuarantineKind::Decode, reason, proven.as_ref().ok())
    })?;
    let mut cmd: EffectCommand = serde_json::from_str(text).map_err(|e| {
        let reason = match e.classify() {
            serde_json::error::Category::Data => format!("not a valid effect command: {e}"),
            _ => format!("body is not valid JSON: {e}"),
        };
        poison(QuarantineKind::Decode, reason, proven.as_ref().ok())
    })?;
    let tenant = proven_tenant(subject, command_prefix, header_tenant, Some(&cmd.tenant_id))
        .map_err(|reason| poison(QuarantineKind::TenantAccess, reason.to_string(), None))?;
    // A body without a tenant is the subject's: its result goes to that tenant's subject.
    if cmd.tenant_id.is_empty() {
        cmd.tenant_id = tenant.to_string();
    }
    let work_id = WorkId::new(&cmd.command_id)
        .map_err(|e| poison(QuarantineKind::Decode, e.to_string(), Some(&tenant)))?;
    Ok((cmd, tenant, work_id))
}

/// A command published by someone other than the relay may carry its correlation id
/// and trace context in headers only: they then stand in for the metadata's, so its log
/// lines and its result event carry them (invariant 4). The metadata's win when set; a
/// malformed `traceparent` header is ignored. A redelivery has the same headers, so a
/// result rebuilt from its record is the one first published.
fn context_from_headers(cmd: &mut EffectCommand, msg: &nats::Message) {
    let correlation = nats_io::header(msg, header::CORRELATION)
        .filter(|_| cmd.meta(meta::CORRELATION_ID).is_none());
    let traceparent = nats_io::header(msg, header::TRACEPARENT)
        .filter(|tp| trace_id(tp).is_some() && cmd.trace_id().is_none());
    for (key, value) in [
        (meta::CORRELATION_ID, correlation),
        (meta::TRACEPARENT, traceparent),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            cmd.metadata
                .insert(key.to_string(), serde_json::Value::String(v.to_string()));
        }
    }
}

/// What every log line about a command names.
fn log_ctx(cmd: &EffectCommand) -> LogCtx {
    LogCtx {
        tenant: cmd.tenant_id.clone(),
        correlation: cmd.meta(meta::CORRELATION_ID).unwrap_or("").to_string(),
        trace: cmd.trace_id().unwrap_or("").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "workflow.cmd";
    const MAX: usize = 1024 * 1024;

    fn command(tenant: &str) -> Vec<u8> {
        serde_json::json!({"tenant_id": tenant, "command_id": "c-1", "effect_name": "charge",
            "payload": {}, "metadata": {}, "issued_at": "2026-11-27T10:00:00Z"})
        .to_string()
        .into_bytes()
    }

    fn poison(r: Result<(EffectCommand, TenantId, WorkId), Poison>) -> Poison {
        match r {
            Ok((cmd, ..)) => panic!("command {} was taken", cmd.command_id),
            Err(p) => p,
        }
    }

    #[test]
    fn a_command_whose_header_or_body_names_another_tenant_than_its_subject_is_poison() {
        let subject = "workflow.cmd.acme.charge";
        for (header, body) in [
            (None, "globex"),
            (Some("globex"), "acme"),
            (Some("globex"), ""),
        ] {
            let p = poison(decode_command(PREFIX, MAX, subject, header, &command(body)));
            assert_eq!(p.kind, QuarantineKind::TenantAccess, "{header:?}/{body}");
            assert!(p.unattributed, "{header:?}/{body}: filed under no tenant");
        }
        let p = poison(decode_command(
            PREFIX,
            MAX,
            "workflow.cmd",
            None,
            &command("acme"),
        ));
        assert_eq!(p.kind, QuarantineKind::TenantAccess, "no tenant token");
        assert!(p.unattributed);
    }

    #[test]
    fn a_command_agreeing_with_its_subject_is_the_subjects_tenants() {
        let subject = "workflow.cmd.acme.charge";
        for (header, body) in [(None, "acme"), (Some("acme"), ""), (None, "")] {
            let Ok((cmd, tenant, _)) = decode_command(PREFIX, MAX, subject, header, &command(body))
            else {
                panic!("{header:?}/{body} refused")
            };
            assert_eq!((tenant.as_str(), cmd.tenant_id.as_str()), ("acme", "acme"));
        }
        // Poison that proved its tenant is filed under it; otherwise under none.
        let p = poison(decode_command(PREFIX, MAX, subject, Some("acme"), b"{nope"));
        assert_eq!((p.kind, p.unattributed), (QuarantineKind::Decode, false));
        assert_eq!(p.tenant.as_str(), "acme");
        let p = poison(decode_command(
            PREFIX,
            MAX,
            subject,
            Some("globex"),
            b"{nope",
        ));
        assert!(p.unattributed);
    }

    #[test]
    fn only_a_fresh_command_skips_the_first_in_progress_ack() {
        let (ack_wait, timeout) = (Duration::from_secs(30), Duration::from_secs(10));
        let now = 1_000_000;
        // Stored 1 s ago: 29 s of its ack wait surely left, twice the timeout plus slack.
        assert!(!first_attempt_needs_progress(
            now - 1_000,
            now,
            timeout,
            ack_wait
        ));
        // Stored 6 s ago: it may have only 24 s left, under 20 s + 5 s of slack.
        assert!(first_attempt_needs_progress(
            now - 6_000,
            now,
            timeout,
            ack_wait
        ));
        // A long effect always refreshes it, and so does an unknown store time (0).
        assert!(first_attempt_needs_progress(
            now,
            now,
            Duration::from_secs(13),
            ack_wait
        ));
        assert!(first_attempt_needs_progress(0, now, timeout, ack_wait));
    }
}
