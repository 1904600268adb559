//! Running saga programs over routed events.
//!
//! Transitions are pipelined: the commit stage may not have made an instance's previous
//! transition durable when its next event is executed. The executor therefore keeps an
//! overlay of the records (with the timers their transitions set and dropped) and the
//! dedupe keys it produced that are not yet known to be committed, and reads through
//! it. Entries leave the overlay once the commit stage reports their batch committed;
//! all of them go when a commit failed (the epoch changes), because the failed
//! transitions will be redelivered and run again. The overlay is bounded by the work in
//! flight between the two stages.
//!
//! A reminder runs only while its instance still holds that exact timer (name and due
//! time), read through the same overlay: the scheduler publishes reminders from a
//! snapshot, and a cancel, a re-schedule of the name or the instance finishing may have
//! committed (or be on its way to commit) since. A reminder whose timer is gone is
//! stale: it changes nothing and writes nothing (no marker, no checkpoint move, like an
//! ignored event), and its message is acked once the group it came in has committed,
//! which is also after every transition it was judged against. The transition that
//! applies a live reminder consumes its timer (`Transition::fired`).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::outputs::{
    due_in_range, outbox_item, schedule_item, timer_name_ok, work_metadata, OutputError, Target,
};
use super::{kind_name, MessageInfo, RoutedEvent};
use crate::envelope::EnvelopeKind;
use crate::keys;
use crate::manifest::SagaDef;
use crate::program::{Fault, Program, ProgramInput, ProgramOutput, Status};
use crate::store::{
    HistoryFacts, InstanceStatus, Keep, QuarantineKind, QuarantineRecord, Reader, Retention,
    SagaRecord, Seen, StoreError, StreamPosition, Transition,
};
use crate::types::{CorrelationId, EventId, SagaName, TenantId};

/// How a message's delivery ends once its outcome is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Ack,
    /// Quarantined: terminate delivery, never redeliver.
    Term,
}

/// What one message did.
#[derive(Debug)]
pub struct Outcome {
    pub transitions: Vec<Transition>,
    pub quarantine: Option<QuarantineRecord>,
    pub disposition: Disposition,
    /// Routes that changed nothing: no instance and not a start trigger, or the instance
    /// is already done.
    pub ignored: u32,
    /// Routes whose event the instance had already applied.
    pub duplicates: u32,
    /// A reminder ignored because its instance no longer held its timer (1 or 0).
    pub stale: u32,
    /// Routes that could not run: program or correlate faults, unreadable records.
    pub faults: u32,
    /// Routes refused because what they would send is over the server's `max_payload`
    /// (their transition is not written; the message is quarantined).
    pub too_large: u32,
    /// Gas its programs used (those that finished).
    pub gas: u64,
    /// Sagas that had applied it already (their checkpoints still move).
    pub seen: Vec<Seen>,
}

impl Outcome {
    /// The outcome of a message that decoding already rejected.
    pub fn quarantined(record: QuarantineRecord) -> Outcome {
        Outcome {
            quarantine: Some(record),
            disposition: Disposition::Term,
            ..Outcome::new()
        }
    }

    fn new() -> Outcome {
        Outcome {
            transitions: Vec::new(),
            quarantine: None,
            disposition: Disposition::Ack,
            ignored: 0,
            duplicates: 0,
            stale: 0,
            faults: 0,
            too_large: 0,
            gas: 0,
            seen: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct Executor {
    command_prefix: String,
    /// Instance key → the instance as its uncommitted transitions left it.
    overlay: HashMap<String, Pending>,
    applied: HashMap<String, u64>,
    epoch: u64,
    ctx: Ctx,
    /// Retention of sagas that set none of their own.
    keep: Keep,
    /// Largest publish the server takes: a transition that would send more is refused.
    max_payload: usize,
}

/// An instance as the executor's transitions left it, until their batch is committed.
#[derive(Debug)]
struct Pending {
    record: SagaRecord,
    /// Timer name → its due time after these transitions (`None`: dropped); names they
    /// did not touch are as stored (as are those of its transitions already committed).
    timers: HashMap<String, Option<i64>>,
    /// The batch of the newest transition.
    batch: u64,
}

/// The `ctx` object programs see. One object is rewritten in place for every route, so
/// its keys and strings are allocated once rather than per event.
#[derive(Debug)]
struct Ctx(Value);

/// The keys of `ctx`, in the order the map keeps them (sorted), which is the order
/// [`Ctx::fill`] writes its values in.
const CTX_KEYS: [&str; 7] = [
    "correlation_id",
    "kind",
    "saga",
    "seq",
    "stream",
    "subject",
    "tenant_id",
];

impl Ctx {
    fn new() -> Ctx {
        let map: Map<String, Value> = CTX_KEYS
            .iter()
            .map(|k| (k.to_string(), Value::String(String::new())))
            .collect();
        debug_assert!(map.keys().eq(CTX_KEYS.iter().copied()));
        Ctx(Value::Object(map))
    }

    /// `{tenant_id, saga, correlation_id, stream, subject, kind, seq}` of this route,
    /// written by position (see [`CTX_KEYS`]) so no key is looked up.
    fn fill(
        &mut self,
        ev: &RoutedEvent,
        saga: &SagaName,
        correlation: &CorrelationId,
        info: &MessageInfo,
    ) -> &Value {
        let texts = [
            Some(correlation.as_str()),
            Some(kind_name(ev.kind)),
            Some(saga.as_str()),
            None, // seq
            Some(info.stream.as_str()),
            Some(info.subject.as_str()),
            Some(ev.tenant.as_str()),
        ];
        if let Value::Object(map) = &mut self.0 {
            for (slot, text) in map.values_mut().zip(texts) {
                match (slot, text) {
                    (Value::String(s), Some(text)) => {
                        s.clear();
                        s.push_str(text);
                    }
                    (slot, Some(text)) => *slot = text.into(),
                    (slot, None) => *slot = info.seq.into(),
                }
            }
        }
        &self.0
    }
}

impl Executor {
    pub fn new(command_prefix: &str) -> Executor {
        Executor {
            command_prefix: command_prefix.to_string(),
            overlay: HashMap::new(),
            applied: HashMap::new(),
            epoch: 0,
            ctx: Ctx::new(),
            keep: Keep::of(&Retention::default()),
            max_payload: crate::nats_io::DEFAULT_MAX_PAYLOAD,
        }
    }

    /// Refuses transitions whose commands or reminders are over `max_payload` bytes.
    pub fn with_max_payload(mut self, max_payload: usize) -> Executor {
        self.max_payload = max_payload;
        self
    }

    /// Keeps what sagas that set no retention of their own write as long as `keep` says.
    pub fn with_retention(mut self, keep: Keep) -> Executor {
        self.keep = keep;
        self
    }

    /// Call before each batch with the current epoch and the newest batch number the
    /// commit stage has made durable.
    pub fn begin_batch(&mut self, epoch: u64, committed_through: u64) {
        if epoch != self.epoch {
            self.overlay.clear();
            self.applied.clear();
            self.epoch = epoch;
            return;
        }
        self.overlay.retain(|_, p| p.batch > committed_through);
        self.applied.retain(|_, batch| *batch > committed_through);
    }

    /// Entries not yet known to be committed.
    pub fn pending(&self) -> usize {
        self.overlay.len() + self.applied.len()
    }

    /// Whether the instance a reminder names still holds its timer: as the overlay's
    /// transitions left it, else as stored.
    fn holds(
        &self,
        reader: &Reader<'_>,
        tenant: &TenantId,
        timer: &FiredTimer,
        info: &MessageInfo,
    ) -> Result<bool, StoreError> {
        let saga_key = keys::saga(tenant, &timer.saga, &timer.correlation);
        if let Some(pending) = self.overlay.get(&saga_key) {
            if pending.record.status.is_done() {
                // A finished instance keeps no timers.
                return Ok(false);
            }
            if let Some(due) = pending.timers.get(&timer.name) {
                return Ok(*due == Some(timer.due_ms));
            }
        }
        let key = keys::schedule(
            tenant,
            &timer.saga,
            &timer.correlation,
            timer.due_ms,
            &timer.name,
        );
        // Published before this store kept timer records: an older Runner published it
        // and deleted its record then; it runs, as it would have there.
        Ok(reader.holds_timer(&key)? || info.published_ms < reader.timer_records_since())
    }

    /// Puts the instance as `t` leaves it into the overlay: its record, and the timers
    /// it drops and sets on top of those of its earlier uncommitted transitions (in the
    /// order `Store::commit` applies them: drops first, then sets, the last of a name
    /// winning).
    fn note(&mut self, saga_key: String, t: &Transition, batch: u64) {
        let mut timers = self
            .overlay
            .remove(&saga_key)
            .map(|p| p.timers)
            .unwrap_or_default();
        for name in t.cancel.iter().chain(t.fired.iter()) {
            timers.insert(name.clone(), None);
        }
        for s in &t.schedules {
            timers.insert(s.name.clone(), Some(s.due_at_ms));
        }
        let pending = Pending {
            record: t.record.clone(),
            timers,
            batch,
        };
        self.overlay.insert(saga_key, pending);
    }

    /// A message quarantined for too many deliveries whose event every saga it reaches
    /// has already applied: acked as a duplicate instead (what made the deliveries
    /// many — crashes, lost acks — did not stop the first one from committing). `None`:
    /// it stays quarantined.
    pub fn over_delivered_duplicate(
        &self,
        reader: &Reader<'_>,
        catalog: &crate::manifest::SagaCatalog,
        record: &QuarantineRecord,
        info: &MessageInfo,
    ) -> Result<Option<Outcome>, StoreError> {
        if record.kind != QuarantineKind::MaxDeliver {
            return Ok(None);
        }
        let tenant = &record.tenant;
        let Some(event) = record
            .event_id
            .as_deref()
            .and_then(|e| e.parse::<EventId>().ok())
        else {
            return Ok(None);
        };
        let mut out = Outcome::new();
        for (saga, _) in catalog.route(&info.subject) {
            let marker = keys::saga_dedupe(tenant, &saga.name, &event);
            if !self.applied.contains_key(&marker)
                && !reader.is_duplicate(tenant, &saga.name, &event)?
            {
                return Ok(None);
            }
            out.duplicates += 1;
            out.seen.push(Seen {
                tenant: tenant.clone(),
                saga: saga.name.clone(),
                position: StreamPosition {
                    stream: info.stream.clone(),
                    seq: info.seq,
                },
            });
        }
        Ok((out.duplicates > 0).then_some(out))
    }

    /// Runs every saga the event reaches. Storage errors abort the message (it will be
    /// redelivered); everything else ends in an outcome.
    pub fn execute(
        &mut self,
        reader: &Reader<'_>,
        ev: &RoutedEvent,
        info: &MessageInfo,
        batch: u64,
    ) -> Result<Outcome, StoreError> {
        let mut out = Outcome::new();
        if ev.routes.is_empty() {
            // No saga wants it: acked and counted.
            out.ignored = 1;
        }
        // A reminder: the timer it fires, and (once asked) whether it is still held.
        let fired = (ev.kind == EnvelopeKind::Reminder).then(|| FiredTimer::of(ev));
        let mut live: Option<bool> = None;
        // (saga, kind, reason) of every route that could not run.
        let mut faults: Vec<(String, QuarantineKind, String)> = ev
            .route_faults
            .iter()
            .map(|f| (f.saga.clone(), f.kind, f.reason.clone()))
            .collect();
        for route in &ev.routes {
            let saga = &route.saga;
            let dedupe_key = keys::saga_dedupe(&ev.tenant, &saga.name, &ev.event_id);
            if self.applied.contains_key(&dedupe_key)
                || reader.is_duplicate(&ev.tenant, &saga.name, &ev.event_id)?
            {
                out.duplicates += 1;
                out.seen.push(Seen {
                    tenant: ev.tenant.clone(),
                    saga: saga.name.clone(),
                    position: StreamPosition {
                        stream: info.stream.clone(),
                        seq: info.seq,
                    },
                });
                continue;
            }
            if let Some(fired) = &fired {
                let held = match (live, fired) {
                    (Some(held), _) => held,
                    (None, None) => false,
                    (None, Some(timer)) => self.holds(reader, &ev.tenant, timer, info)?,
                };
                live = Some(held);
                if !held {
                    out.stale = 1;
                    continue;
                }
            }
            let saga_key = keys::saga(&ev.tenant, &saga.name, &route.correlation);
            let existing = match self.overlay.get(&saga_key) {
                Some(pending) => Some(pending.record.clone()),
                None => match reader.saga(&ev.tenant, &saga.name, &route.correlation) {
                    Ok(record) => record,
                    // An unreadable record stays unreadable: quarantine, do not stop.
                    Err(e) if e.is_deterministic() => {
                        faults.push((saga.name.to_string(), QuarantineKind::Store, e.to_string()));
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let existing = match existing {
                Some(r) if r.status.is_done() => {
                    out.ignored += 1;
                    continue;
                }
                None if !route.start => {
                    out.ignored += 1;
                    continue;
                }
                other => other,
            };
            // The instance runs on the version it started with; one whose version is not
            // loaded is left as it is, and the event quarantined until it is.
            let version = existing.as_ref().map_or(saga.version, |r| r.version);
            let Some(programs) = saga.programs(version) else {
                let reason = format!(
                    "the instance runs on version {version} of the saga, which is not loaded (loaded: {:?})",
                    saga.versions()
                );
                faults.push((saga.name.to_string(), QuarantineKind::Program, reason));
                continue;
            };
            let target = Target {
                event: ev,
                saga: &saga.name,
                correlation: &route.correlation,
                command_prefix: &self.command_prefix,
            };
            let ctx = self.ctx.fill(ev, &saga.name, &route.correlation, info);
            let gas_before = out.gas;
            let (mut transition, fault) =
                run_saga(saga, programs, &target, existing, ctx, info, &mut out.gas);
            transition.history.gas = out.gas - gas_before;
            transition.keep = Keep {
                dedupe: saga.retention.dedupe.unwrap_or(self.keep.dedupe),
                finished: saga
                    .retention
                    .finished_instances
                    .unwrap_or(self.keep.finished),
            };
            if let Some(Some(timer)) = &fired {
                if timer.saga == saga.name && timer.correlation == route.correlation {
                    transition.fired = Some(timer.name.clone());
                }
            }
            if let Some(reason) = super::envelope_size::oversized(&transition, self.max_payload) {
                // Not written at all (no half of it): the message is quarantined and
                // may be retried once the limit or the saga changed.
                out.too_large += 1;
                faults.push((saga.name.to_string(), QuarantineKind::Program, reason));
                continue;
            }
            if let Some(fault) = fault {
                faults.push((saga.name.to_string(), QuarantineKind::Program, fault));
            }
            self.note(saga_key, &transition, batch);
            self.applied.insert(dedupe_key, batch);
            out.transitions.push(transition);
        }
        out.faults = faults.len() as u32;
        if let Some((first_saga, kind, _)) = faults.first() {
            let reason = faults
                .iter()
                .map(|(saga, _, f)| format!("saga {saga}: {f}"))
                .collect::<Vec<_>>()
                .join("; ");
            out.quarantine = Some(QuarantineRecord {
                kind: *kind,
                reason,
                stream: info.stream.clone(),
                seq: info.seq,
                subject: info.subject.clone(),
                delivered: info.delivered,
                tenant: ev.tenant.clone(),
                event_id: Some(ev.event_id.to_string()),
                correlation_id: Some(ev.log.correlation_id.clone()).filter(|c| !c.is_empty()),
                saga: Some(first_saga.clone()),
                body_excerpt: crate::store::excerpt(ev.value.to_string().as_bytes()),
                // A decoded event: its tenant is proven.
                unattributed: false,
                quarantined_at: None,
            });
            out.disposition = Disposition::Term;
        }
        Ok(out)
    }
}

/// The timer a reminder fires, as its envelope names it.
#[derive(Debug)]
struct FiredTimer {
    saga: SagaName,
    correlation: CorrelationId,
    name: String,
    due_ms: i64,
}

impl FiredTimer {
    /// `None` when the reminder names no timer this Runner could have set (then no
    /// instance holds it).
    fn of(ev: &RoutedEvent) -> Option<FiredTimer> {
        let text = |field: &str| ev.value.get(field).and_then(Value::as_str);
        let name = text("name").filter(|n| timer_name_ok(n))?;
        // `due_at` is the reminder's event time.
        let due_ms = Some(ev.event_time_ms).filter(|ms| due_in_range(*ms))?;
        Some(FiredTimer {
            saga: text("saga_name")?.parse().ok()?,
            correlation: CorrelationId::new(text("correlation_id")?).ok()?,
            name: name.to_string(),
            due_ms,
        })
    }
}

/// The on-event and compensation programs of the version an instance runs on.
type Programs<'a> = (&'a Arc<Program>, Option<&'a Arc<Program>>);

/// One saga's transition, and the fault text if its program faulted. A faulted
/// transition still commits: the instance is marked faulted, compensation's work is kept.
fn run_saga(
    saga: &SagaDef,
    programs: Programs<'_>,
    target: &Target<'_>,
    existing: Option<SagaRecord>,
    ctx: &Value,
    info: &MessageInfo,
    gas: &mut u64,
) -> (Transition, Option<String>) {
    let ev = target.event;
    // The prior state moves into the transition, not copied: the program reads it there,
    // and it stays there unless the output is applied whole (see below).
    let (prior_state, version, transitions) = match existing {
        Some(r) => (r.state, r.version, r.transitions),
        None => (Value::Null, saga.version, 0),
    };
    let base = SagaRecord {
        status: InstanceStatus::Active,
        state: prior_state,
        version,
        transitions: transitions + 1,
        last_event_id: ev.event_id.to_string(),
        updated_at: ev.event_time.clone(),
        fault: None,
    };
    let mut transition = Transition {
        tenant: ev.tenant.clone(),
        saga: saga.name.clone(),
        correlation: target.correlation.clone(),
        event_id: ev.event_id.clone(),
        position: StreamPosition {
            stream: info.stream.clone(),
            seq: info.seq,
        },
        record: base,
        outbox: Vec::new(),
        schedules: Vec::new(),
        cancel: Vec::new(),
        fired: None,
        // Set by the executor from the saga's retention.
        keep: Keep::of(&Retention::default()),
        // Its gas is set by the executor, which counts it over every route.
        history: HistoryFacts {
            subject: info.subject.clone(),
            event_type: event_type(ev).to_string(),
            gas: 0,
        },
    };

    let (on_event, compensation) = programs;
    let evaluated = on_event.eval(
        &ProgramInput {
            state: &transition.record.state,
            event: &ev.value,
            ctx,
        },
        saga.gas,
    );
    let applied = evaluated.map_err(RunFault::from).and_then(|output| {
        *gas += output.gas_used;
        apply_output(&mut transition, target, output, 0)
    });
    let status = match applied {
        Ok(status) => status,
        Err(fault) => {
            // The program's output is discarded; the instance is faulted with its prior
            // state (still the transition's: `apply_output` changes nothing when it
            // fails), and compensation (if any) gets its chance.
            transition.outbox.clear();
            transition.schedules.clear();
            transition.cancel.clear();
            // The record and the quarantine keep the fault as text.
            let mut text = fault.to_string();
            if let Err(comp) = compensate(saga, compensation, &mut transition, target, ctx, 0, gas)
            {
                text.push_str(&format!("; compensation also failed: {comp}"));
            }
            transition.record.status = InstanceStatus::Faulted;
            transition.record.fault = Some(text.clone());
            return (transition, Some(text));
        }
    };
    transition.record.status = match status {
        Status::Active => InstanceStatus::Active,
        Status::Completed => InstanceStatus::Completed,
        Status::Failed => InstanceStatus::Failed,
    };
    if status == Status::Failed {
        let index = transition.outbox.len();
        if let Err(fault) = compensate(saga, compensation, &mut transition, target, ctx, index, gas)
        {
            transition.record.status = InstanceStatus::Faulted;
            let text = format!("compensation failed: {fault}");
            transition.record.fault = Some(text.clone());
            return (transition, Some(text));
        }
    }
    (transition, None)
}

/// What the history calls the event's type: `event_type` of an aggregate event,
/// `result_type` of an effect result, the timer's `name` of a reminder.
fn event_type(ev: &RoutedEvent) -> &str {
    let field = match ev.kind {
        EnvelopeKind::Aggregate => "event_type",
        EnvelopeKind::Result => "result_type",
        EnvelopeKind::Reminder => "name",
    };
    ev.value
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Why a program's run gave no transition: it faulted, or its output cannot become work.
/// Either way the instance faults and its record keeps this text.
#[derive(Debug, thiserror::Error)]
enum RunFault {
    #[error(transparent)]
    Program(#[from] Fault),
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// Runs the compensation program (when the saga has one) over the transition's current
/// state, adding its work. Its status is ignored: the instance ends failed or faulted.
fn compensate(
    saga: &SagaDef,
    compensation: Option<&Arc<Program>>,
    transition: &mut Transition,
    target: &Target<'_>,
    ctx: &Value,
    first_index: usize,
    gas: &mut u64,
) -> Result<(), RunFault> {
    let Some(program) = compensation else {
        return Ok(());
    };
    let state = transition.record.state.clone();
    let input = ProgramInput {
        state: &state,
        event: &target.event.value,
        ctx,
    };
    let output = program.eval(&input, saga.gas)?;
    *gas += output.gas_used;
    apply_output(transition, target, output, first_index).map(|_| ())
}

/// Adds a program's output to the transition; returns its status.
fn apply_output(
    transition: &mut Transition,
    target: &Target<'_>,
    output: ProgramOutput,
    first_index: usize,
) -> Result<Status, RunFault> {
    // Everything is built first, so a bad item leaves the transition untouched.
    let (outbox, schedules) = if output.commands.is_empty() && output.schedules.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let meta = work_metadata(target);
        let outbox = output
            .commands
            .iter()
            .enumerate()
            .map(|(i, spec)| outbox_item(target, &meta, spec, first_index + i))
            .collect::<Result<Vec<_>, _>>()?;
        let schedules = output
            .schedules
            .into_iter()
            .enumerate()
            .map(|(i, spec)| schedule_item(target, &meta, spec, i))
            .collect::<Result<Vec<_>, _>>()?;
        (outbox, schedules)
    };
    if let Some(state) = output.state {
        transition.record.state = state;
    }
    transition.outbox.extend(outbox);
    transition.schedules.extend(schedules);
    transition.cancel.extend(output.cancel);
    Ok(output.status)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::envelope::EnvelopeKind;
    use crate::saga::LogCtx;

    /// The reused `ctx` is, route after route, exactly the object programs are promised.
    #[test]
    fn ctx_is_rewritten_whole_for_every_route() {
        let mut ctx = Ctx::new();
        for (tenant, kind, seq) in [
            ("acme", EnvelopeKind::Aggregate, 7),
            ("b", EnvelopeKind::Reminder, 0),
        ] {
            let ev = RoutedEvent {
                tenant: tenant.parse().unwrap(),
                event_id: "e-1".parse().unwrap(),
                kind,
                value: Value::Null,
                event_time: String::new(),
                event_time_ms: 0,
                traceparent: None,
                log: LogCtx::default(),
                routes: Vec::new(),
                route_faults: Vec::new(),
            };
            let info = MessageInfo {
                stream: format!("S-{seq}"),
                seq,
                delivered: 1,
                forgiven: 0,
                subject: format!("subject.{tenant}"),
                published_ms: 0,
            };
            let saga: SagaName = format!("saga_{tenant}").parse().unwrap();
            let corr: CorrelationId = format!("o:{seq}").parse().unwrap();
            let want = json!({
                "tenant_id": tenant,
                "saga": saga.as_str(),
                "correlation_id": corr.as_str(),
                "stream": info.stream,
                "subject": info.subject,
                "kind": kind_name(kind),
                "seq": seq,
            });
            assert_eq!(ctx.fill(&ev, &saga, &corr, &info), &want);
        }
    }
}
