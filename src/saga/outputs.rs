//! Turning a program's output into outbox and schedule items: command ids, subjects,
//! envelopes, metadata and trace context.

use std::fmt::Write as _;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::ids::{command_message_id, derive_command_id, write_span_id};
use super::RoutedEvent;
use crate::envelope::{meta, parse_traceparent, AggregateCommandRef, EffectCommandRef, Metadata};
use crate::keys::OutboxKind;
use crate::program::{CommandSpec, ScheduleSpec, ScheduleWhen};
use crate::store::{OutboxItem, RawJson, ScheduleItem};
use crate::types::{key_segment_len, CorrelationId, EffectName, IdError, SagaName, WorkId};

/// The instance a transition belongs to, and where commands go.
pub struct Target<'a> {
    pub event: &'a RoutedEvent,
    pub saga: &'a SagaName,
    pub correlation: &'a CorrelationId,
    pub command_prefix: &'a str,
}

/// Metadata of work caused by one event for one instance, worked out once per transition
/// and shared by its commands and timers, which differ only in their span id. Nothing
/// is copied: the event's metadata is merged with the fields set here as it is written.
pub struct WorkMetadata<'a> {
    /// The causing event's metadata, passed on whole except as below.
    event: Option<&'a Metadata>,
    /// The event's own `traceparent` is not passed on: the work gets a new one (or none,
    /// when the event's cannot be read).
    drop_traceparent: bool,
    /// Fields set (or replaced) for the work, sorted by key. `traceparent` sorts after
    /// all of them, so each item's is appended last.
    set: Vec<(&'static str, &'a str)>,
    /// Trace id and flags to continue, when the event carried a readable traceparent.
    trace: Option<(&'a str, &'a str)>,
}

/// Metadata of work caused by `event` for this instance: the event's metadata whole,
/// plus saga name, instance correlation, causation and a continued trace context (a new
/// span id per item). When the event carried a different `correlation_id` (a request id,
/// say), it is kept as `parent_correlation_id`.
pub fn work_metadata<'a>(t: &Target<'a>) -> WorkMetadata<'a> {
    let event = t.event.metadata();
    let correlation = t.correlation.as_str();
    let mut set = Vec::with_capacity(4);
    set.push((meta::CAUSATION_ID, t.event.event_id.as_str()));
    set.push((meta::CORRELATION_ID, correlation));
    let prev = event.and_then(|m| m.get(meta::CORRELATION_ID)?.as_str());
    if let Some(prev) = prev.filter(|prev| *prev != correlation) {
        set.push((PARENT_CORRELATION_ID, prev));
    }
    set.push((meta::SAGA_NAME, t.saga.as_str()));
    // A malformed traceparent is dropped rather than passed on: a new one cannot
    // continue a trace it cannot read.
    let tp = t.event.traceparent.as_deref();
    WorkMetadata {
        event,
        drop_traceparent: tp.is_some(),
        set,
        trace: tp.and_then(parse_traceparent),
    }
}

const PARENT_CORRELATION_ID: &str = "parent_correlation_id";

/// A metadata value: the event's, or one set for the work.
enum MetaValue<'v> {
    Json(&'v Value),
    Text(&'v str),
}

impl Serialize for MetaValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MetaValue::Json(v) => v.serialize(serializer),
            MetaValue::Text(s) => serializer.serialize_str(s),
        }
    }
}

impl WorkMetadata<'_> {
    /// The `traceparent` of the item whose span id derives from `span_seed`, when the
    /// trace is continued.
    fn traceparent(&self, span_seed: &str) -> Option<String> {
        let (trace, flags) = self.trace?;
        let mut tp = String::with_capacity(55);
        tp.push_str("00-");
        tp.push_str(trace);
        tp.push('-');
        write_span_id(&mut tp, span_seed);
        tp.push('-');
        tp.push_str(flags);
        Some(tp)
    }

    /// Calls `f` with every entry of the item's metadata in key order (the order of
    /// `serde_json`'s map): the event's entries merged with the ones set here, which win.
    fn each<E>(
        &self,
        traceparent: Option<&str>,
        mut f: impl FnMut(&str, MetaValue<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut set = self
            .set
            .iter()
            .copied()
            .chain(traceparent.map(|tp| (meta::TRACEPARENT, tp)))
            .peekable();
        let event = self.event.into_iter().flatten();
        for (k, v) in
            event.filter(|(k, _)| !(self.drop_traceparent && k.as_str() == meta::TRACEPARENT))
        {
            while let Some((sk, sv)) = set.next_if(|(sk, _)| *sk < k.as_str()) {
                f(sk, MetaValue::Text(sv))?;
            }
            // Replaced: the set entry is written when the next event key (or the end)
            // passes it.
            if set.peek().is_some_and(|(sk, _)| *sk == k.as_str()) {
                continue;
            }
            f(k, MetaValue::Json(v))?;
        }
        set.try_for_each(|(sk, sv)| f(sk, MetaValue::Text(sv)))
    }

    /// The item's metadata as an owned map (timers keep it).
    fn to_map(&self, span_seed: &str) -> Metadata {
        let tp = self.traceparent(span_seed);
        // Entries come in key order: collected first, the map is built in one pass.
        let mut entries = Vec::with_capacity(self.set.len() + 1 + self.event.map_or(0, Map::len));
        let _ = self.each(tp.as_deref(), |k, v| {
            let v = match v {
                MetaValue::Json(v) => v.clone(),
                MetaValue::Text(s) => Value::from(s),
            };
            entries.push((k.to_string(), v));
            Ok::<(), ()>(())
        });
        Metadata::from_iter(entries)
    }

    /// The item's metadata for serialising in place (the bytes of [`Self::to_map`]).
    fn view(&self, span_seed: &str) -> MetadataView<'_> {
        MetadataView {
            meta: self,
            traceparent: self.traceparent(span_seed),
        }
    }
}

/// One item's metadata, written straight from the event's and the shared fields.
struct MetadataView<'m> {
    meta: &'m WorkMetadata<'m>,
    traceparent: Option<String>,
}

impl Serialize for MetadataView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // No length: it is not known without a pass of its own, and JSON needs none.
        let mut map = serializer.serialize_map(None)?;
        self.meta.each(self.traceparent.as_deref(), |k, v| {
            map.serialize_entry(k, &v)
        })?;
        map.end()
    }
}

/// A command or timer a program output that cannot become work: a program output fault
/// (the instance faults, its record keeping this text). `index` is the item's place in
/// the output's `commands` or `schedules`.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The command id or effect name is not a valid id.
    #[error("commands.{index}: {source}")]
    CommandId {
        index: usize,
        #[source]
        source: IdError,
    },
    #[error("commands.{index}: {source}")]
    Envelope {
        index: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("schedules.{index}: due time must fall between 1970 and 9999")]
    DueTime { index: usize },
    #[error("schedules.{index}: timer name must be 1-128 bytes of printable characters (':' and '%' count 3)")]
    TimerName { index: usize },
}

/// Builds the outbox item of the `index`-th command. Errors are program output faults.
pub fn outbox_item(
    t: &Target<'_>,
    meta: &WorkMetadata<'_>,
    spec: &CommandSpec,
    index: usize,
) -> Result<OutboxItem, OutputError> {
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
    let id_error = |source| OutputError::CommandId { index, source };
    let work_id = WorkId::new(&command_id).map_err(id_error)?;
    // A derived id is unique to its tenant and saga already; an id the saga named is
    // scoped before it seeds the span id, so two tenants naming the same command id
    // never share a span.
    let metadata = match explicit {
        Some(_) => meta.view(&command_message_id(&t.event.tenant, t.saga, &command_id)),
        None => meta.view(&command_id),
    };
    let traceparent = metadata.traceparent.clone();
    let tenant = &t.event.tenant;
    let (kind, destination, envelope) = match spec {
        CommandSpec::Effect {
            effect, payload, ..
        } => {
            let effect = EffectName::new(effect).map_err(id_error)?;
            let envelope = EffectCommandRef {
                tenant_id: tenant.as_str(),
                command_id: &command_id,
                effect_name: effect.as_str(),
                payload,
                metadata,
                issued_at: &t.event.event_time,
            };
            (
                OutboxKind::Effect,
                effect_subject(t.command_prefix, tenant.token(), effect.as_str()),
                RawJson::of(&envelope),
            )
        }
        CommandSpec::Aggregate {
            aggregate_type,
            aggregate_id,
            command_type,
            payload,
            ..
        } => {
            let envelope = AggregateCommandRef {
                command_id: &command_id,
                aggregate_type,
                aggregate_id,
                command_type,
                payload,
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
        tenant: tenant.clone(),
        work_id,
        saga: t.saga.clone(),
        correlation: t.correlation.clone(),
        destination,
        envelope: envelope.map_err(|source| OutputError::Envelope { index, source })?,
        traceparent,
    })
}

/// `{prefix}.{tenant}.{effect}`: where an effect command is published.
fn effect_subject(prefix: &str, tenant_token: &str, effect: &str) -> String {
    let mut subject = String::with_capacity(prefix.len() + tenant_token.len() + effect.len() + 2);
    subject.push_str(prefix);
    subject.push('.');
    subject.push_str(tenant_token);
    subject.push('.');
    subject.push_str(effect);
    subject
}

/// 9999-12-31T23:59:59.999Z: timer keys hold due times as 16 fixed digits.
const MAX_DUE_MS: i64 = 253_402_300_799_999;

/// Whether a timer may be due at `ms` (its key holds 16 digits).
pub(super) fn due_in_range(ms: i64) -> bool {
    (0..=MAX_DUE_MS).contains(&ms)
}

/// Whether `name` may name a timer: 1-128 bytes once escaped in its key, no control
/// characters.
pub(super) fn timer_name_ok(name: &str) -> bool {
    !name.is_empty() && key_segment_len(name) <= 128 && !name.chars().any(char::is_control)
}

/// Builds a timer; `after_ms` counts from the event's own time, never the wall clock.
pub fn schedule_item(
    t: &Target<'_>,
    meta: &WorkMetadata<'_>,
    spec: ScheduleSpec,
    index: usize,
) -> Result<ScheduleItem, OutputError> {
    let due_at_ms = match spec.when {
        ScheduleWhen::AfterMs(ms) => t.event.event_time_ms.checked_add(ms),
        ScheduleWhen::AtMs(ms) => Some(ms),
    }
    .filter(|ms| due_in_range(*ms))
    .ok_or(OutputError::DueTime { index })?;
    let name = &spec.name;
    if !timer_name_ok(name) {
        return Err(OutputError::TimerName { index });
    }
    // The span seed of a timer: its instance, name and due time.
    let mut seed = String::with_capacity(t.correlation.as_str().len() + name.len() + 24);
    let _ = write!(seed, "{}\u{1f}{}\u{1f}{}", t.correlation, name, due_at_ms);
    Ok(ScheduleItem {
        tenant: t.event.tenant.clone(),
        saga: t.saga.clone(),
        correlation: t.correlation.clone(),
        metadata: meta.to_map(&seed),
        name: spec.name,
        due_at_ms,
        payload: spec.payload,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::envelope::EnvelopeKind;
    use crate::saga::LogCtx;

    /// The metadata as first written: the event's map copied, then fields set in it.
    fn reference(t: &Target<'_>, span_seed: &str) -> Metadata {
        let mut m: Metadata = t.event.metadata().cloned().unwrap_or_default();
        if let Some(prev) = m.get(meta::CORRELATION_ID).and_then(Value::as_str) {
            if prev != t.correlation.as_str() {
                let prev = prev.to_string();
                m.insert(PARENT_CORRELATION_ID.into(), prev.into());
            }
        }
        m.insert(meta::SAGA_NAME.into(), t.saga.as_str().into());
        m.insert(meta::CORRELATION_ID.into(), t.correlation.as_str().into());
        m.insert(meta::CAUSATION_ID.into(), t.event.event_id.as_str().into());
        if let Some(tp) = &t.event.traceparent {
            m.remove(meta::TRACEPARENT);
            if let Some((trace, flags)) = parse_traceparent(tp) {
                let span = crate::saga::derive_span_id(span_seed);
                m.insert(
                    meta::TRACEPARENT.into(),
                    format!("00-{trace}-{span}-{flags}").into(),
                );
            }
        }
        m
    }

    fn event(metadata: Option<Value>, traceparent: Option<&str>) -> RoutedEvent {
        let mut value = json!({"event_id": "e-1"});
        if let Some(m) = metadata {
            value["metadata"] = m;
        }
        RoutedEvent {
            tenant: "acme".parse().unwrap(),
            event_id: "e-1".parse().unwrap(),
            kind: EnvelopeKind::Aggregate,
            value,
            event_time: "2026-11-27T10:00:00Z".into(),
            event_time_ms: 1_795_773_600_000,
            traceparent: traceparent.map(str::to_string),
            log: LogCtx::default(),
            routes: Vec::new(),
            route_faults: Vec::new(),
        }
    }

    /// The merged metadata is the copied-and-modified map, entry for entry and byte for
    /// byte, whatever the event's metadata holds.
    #[test]
    fn merged_metadata_matches_the_copied_map() {
        const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let metadatas = [
            None,
            Some(json!({})),
            Some(json!({"correlation_id": "req-1", "traceparent": TP})),
            Some(json!({"correlation_id": "o-1", "traceparent": "garbage"})),
            Some(
                json!({"correlation_id": 7, "parent_correlation_id": "p", "saga_name": "x",
                        "causation_id": "c", "a": [1, {"b": null}], "traceparent": "",
                        "traceparent0": 1, "tracepar": 2, "zzz": "z", "": "empty"}),
            ),
            Some(json!({"parent_correlation_id": "keep", "correlation_id": "o-1"})),
            Some(json!({"traceparent": {"not": "a string"}, "causation_id2": true})),
        ];
        let saga: SagaName = "order".parse().unwrap();
        let correlation: CorrelationId = "o-1".parse().unwrap();
        for m in metadatas {
            for tp in [None, Some(TP), Some("garbage")] {
                let ev = event(m.clone(), tp);
                let t = Target {
                    event: &ev,
                    saga: &saga,
                    correlation: &correlation,
                    command_prefix: "workflow.cmd",
                };
                let merged = work_metadata(&t);
                let want = reference(&t, "cmd-1");
                assert_eq!(merged.to_map("cmd-1"), want, "{m:?} {tp:?}");
                assert_eq!(
                    serde_json::to_string(&merged.view("cmd-1")).unwrap(),
                    serde_json::to_string(&want).unwrap(),
                    "{m:?} {tp:?}"
                );
                assert!(merged.set.windows(2).all(|w| w[0].0 < w[1].0));
                assert!(merged.set.iter().all(|(k, _)| *k < meta::TRACEPARENT));
            }
        }
    }
}
