//! What a step did, as the value its `expect` is matched against: the instance as
//! committed, the work its transition wrote (commands as the envelopes the relay sends,
//! timers with their due time) and how the message ended.

use serde_json::{json, Map, Value};

use crate::keys::OutboxKind;
use crate::saga::{Disposition, Outcome};
use crate::store::{OutboxItem, ScheduleItem, Store, StoreError, Transition};
use crate::timefmt::format_rfc3339_ms;
use crate::types::{CorrelationId, SagaName, TenantId};

/// The instance a case follows.
pub struct Instance<'a> {
    pub tenant: &'a TenantId,
    pub saga: &'a SagaName,
    /// Known from `given` or an earlier step; `None` until a step reaches one.
    pub correlation: Option<&'a CorrelationId>,
}

/// The observation of one step, after its commit. `event_time_ms` is the event's own
/// time (timers' `after_ms` counts from it); `None` when decoding rejected the message.
pub fn observe(
    outcome: &Outcome,
    event_time_ms: Option<i64>,
    instance: &Instance<'_>,
    store: &Store,
) -> Result<Value, StoreError> {
    let mine: Vec<&Transition> = outcome
        .transitions
        .iter()
        .filter(|t| &t.saga == instance.saga)
        .collect();
    let kind = if outcome.disposition == Disposition::Term {
        "quarantined"
    } else if !mine.is_empty() {
        "applied"
    } else if outcome.seen.iter().any(|s| &s.saga == instance.saga) {
        "duplicate"
    } else {
        "ignored"
    };
    let correlation = mine
        .first()
        .map(|t| &t.correlation)
        .or(instance.correlation);
    let record = match correlation {
        Some(c) => store.saga(instance.tenant, instance.saga, c)?,
        None => None,
    };
    let timers = match correlation {
        Some(c) => store.instance_schedules(instance.tenant, instance.saga, c)?,
        None => Vec::new(),
    };
    let commands: Vec<Value> = mine.iter().flat_map(|t| &t.outbox).map(command).collect();
    let schedules: Vec<Value> = mine
        .iter()
        .flat_map(|t| &t.schedules)
        .map(|s| timer(s, event_time_ms))
        .collect();
    let cancel: Vec<&String> = mine.iter().flat_map(|t| &t.cancel).collect();
    let quarantine = outcome
        .quarantine
        .as_ref()
        .map(|q| json!({"kind": q.kind, "reason": q.reason}));
    Ok(json!({
        "outcome": kind,
        "correlation": correlation.map(CorrelationId::as_str),
        "status": record.as_ref().map(|r| r.status),
        "state": record.as_ref().map(|r| &r.state),
        "fault": record.as_ref().and_then(|r| r.fault.as_deref()),
        "commands": commands,
        "schedules": schedules,
        "cancel": cancel,
        "timers": timers.iter().map(|t| timer(t, None)).collect::<Vec<_>>(),
        "quarantine": quarantine,
    }))
}

/// A command as its envelope (the bytes the relay sends, parsed), plus `to`: `effect`
/// or `aggregate`, which the envelope itself only implies.
fn command(item: &OutboxItem) -> Value {
    let mut envelope = match item.envelope.to_value() {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let to = match item.kind {
        OutboxKind::Effect => "effect",
        OutboxKind::Aggregate => "aggregate",
    };
    envelope.insert("to".into(), to.into());
    Value::Object(envelope)
}

/// A timer: `name`, `due_at` (RFC 3339), `payload`, `metadata`, and for one set by this
/// step `after_ms`, its distance from the event's time.
fn timer(item: &ScheduleItem, event_time_ms: Option<i64>) -> Value {
    let mut v = json!({
        "name": item.name,
        "due_at": format_rfc3339_ms(item.due_at_ms).ok(),
        "payload": item.payload,
        "metadata": item.metadata,
    });
    if let Some(at) = event_time_ms {
        v["after_ms"] = (item.due_at_ms - at).into();
    }
    v
}
