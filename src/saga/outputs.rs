//! Turning a program's output into outbox and schedule items: command ids, subjects,
//! envelopes, metadata and trace context.

use serde_json::{Map, Value};

use super::ids::{derive_command_id, derive_span_id};
use super::RoutedEvent;
use crate::envelope::{meta, parse_traceparent, AggregateCommand, EffectCommand, Metadata};
use crate::keys::OutboxKind;
use crate::program::{CommandSpec, ScheduleSpec, ScheduleWhen};
use crate::store::{OutboxItem, RawJson, ScheduleItem};
use crate::types::{key_segment_len, CorrelationId, EffectName, SagaName, WorkId};

/// The instance a transition belongs to, and where commands go.
pub struct Target<'a> {
    pub event: &'a RoutedEvent,
    pub saga: &'a SagaName,
    pub correlation: &'a CorrelationId,
    pub command_prefix: &'a str,
}

/// Metadata of work caused by `event` for this instance: the event's metadata whole,
/// plus saga name, instance correlation, causation and a continued trace context.
/// When the event carried a different `correlation_id` (a request id, say), it is kept
/// as `parent_correlation_id`.
pub fn work_metadata(t: &Target<'_>, span_seed: &str) -> Metadata {
    let mut m: Map<String, Value> = t.event.metadata().cloned().unwrap_or_default();
    if let Some(prev) = m.get(meta::CORRELATION_ID).and_then(Value::as_str) {
        if prev != t.correlation.as_str() {
            let prev = prev.to_string();
            m.insert("parent_correlation_id".into(), prev.into());
        }
    }
    m.insert(meta::SAGA_NAME.into(), t.saga.as_str().into());
    m.insert(meta::CORRELATION_ID.into(), t.correlation.as_str().into());
    m.insert(meta::CAUSATION_ID.into(), t.event.event_id.as_str().into());
    if let Some(tp) = &t.event.traceparent {
        // A malformed traceparent is dropped rather than passed on: a new one cannot
        // continue a trace it cannot read.
        m.remove(meta::TRACEPARENT);
        if let Some((trace, flags)) = parse_traceparent(tp) {
            m.insert(
                meta::TRACEPARENT.into(),
                format!("00-{trace}-{}-{flags}", derive_span_id(span_seed)).into(),
            );
        }
    }
    m
}

/// Builds the outbox item of the `index`-th command. Errors are program output faults.
pub fn outbox_item(t: &Target<'_>, spec: &CommandSpec, index: usize) -> Result<OutboxItem, String> {
    let explicit = match spec {
        CommandSpec::Aggregate { command_id, .. } | CommandSpec::Effect { command_id, .. } => {
            command_id.as_deref()
        }
    };
    let command_id = match explicit {
        Some(id) => id.to_string(),
        None => derive_command_id(
            &t.event.tenant,
            t.saga,
            t.correlation,
            &t.event.event_id,
            t.event.event_time_ms,
            index,
        ),
    };
    let work_id = WorkId::new(&command_id).map_err(|e| format!("commands.{index}: {e}"))?;
    let metadata = work_metadata(t, &command_id);
    let tenant = t.event.tenant.clone();
    let (kind, destination, envelope) = match spec {
        CommandSpec::Effect {
            effect, payload, ..
        } => {
            let effect = EffectName::new(effect).map_err(|e| format!("commands.{index}: {e}"))?;
            let subject = format!("{}.{}.{}", t.command_prefix, tenant.token(), effect);
            let envelope = EffectCommand {
                tenant_id: tenant.to_string(),
                command_id: command_id.clone(),
                effect_name: effect.to_string(),
                payload: payload.clone(),
                metadata,
                issued_at: t.event.event_time.clone(),
            };
            (OutboxKind::Effect, subject, RawJson::of(&envelope))
        }
        CommandSpec::Aggregate {
            aggregate_type,
            aggregate_id,
            command_type,
            payload,
            ..
        } => {
            let envelope = AggregateCommand {
                command_id: command_id.clone(),
                aggregate_type: aggregate_type.clone(),
                aggregate_id: aggregate_id.clone(),
                command_type: command_type.clone(),
                payload: payload.clone(),
                metadata,
            };
            (
                OutboxKind::Aggregate,
                aggregate_type.clone(),
                RawJson::of(&envelope),
            )
        }
    };
    Ok(OutboxItem {
        kind,
        tenant,
        work_id,
        saga: t.saga.clone(),
        correlation: t.correlation.clone(),
        destination,
        envelope: envelope.map_err(|e| format!("commands.{index}: {e}"))?,
    })
}

/// 9999-12-31T23:59:59.999Z: timer keys hold due times as 16 fixed digits.
const MAX_DUE_MS: i64 = 253_402_300_799_999;

/// Builds a timer; `after_ms` counts from the event's own time, never the wall clock.
pub fn schedule_item(
    t: &Target<'_>,
    spec: &ScheduleSpec,
    index: usize,
) -> Result<ScheduleItem, String> {
    let due_at_ms = match spec.when {
        ScheduleWhen::AfterMs(ms) => t.event.event_time_ms.checked_add(ms),
        ScheduleWhen::AtMs(ms) => Some(ms),
    }
    .filter(|ms| (0..=MAX_DUE_MS).contains(ms))
    .ok_or_else(|| format!("schedules.{index}: due time must fall between 1970 and 9999"))?;
    let name = &spec.name;
    if name.is_empty() || key_segment_len(name) > 128 || name.chars().any(char::is_control) {
        return Err(format!(
            "schedules.{index}: timer name must be 1-128 bytes of printable characters (':' and '%' count 3)"
        ));
    }
    let seed = format!("{}\u{1f}{}\u{1f}{}", t.correlation, spec.name, due_at_ms);
    Ok(ScheduleItem {
        tenant: t.event.tenant.clone(),
        saga: t.saga.clone(),
        correlation: t.correlation.clone(),
        name: spec.name.clone(),
        due_at_ms,
        payload: spec.payload.clone(),
        metadata: work_metadata(t, &seed),
    })
}
