//! The JSON envelopes of CONTRACTS.md §2. Decoders ignore unknown fields; `metadata` is
//! kept whole as a JSON object so that whatever a producer put there travels on.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Free-form metadata that travels whole from cause to effect.
pub type Metadata = Map<String, Value>;

/// Well-known metadata fields.
pub mod meta {
    pub const CORRELATION_ID: &str = "correlation_id";
    pub const CAUSATION_ID: &str = "causation_id";
    pub const TRACEPARENT: &str = "traceparent";
    pub const SAGA_NAME: &str = "saga_name";
}

/// NATS header names the Runner reads and writes.
pub mod header {
    pub const MSG_ID: &str = "Nats-Msg-Id";
    pub const TENANT: &str = "x-tenant-id";
    pub const CORRELATION: &str = "x-correlation-id";
    pub const TRACEPARENT: &str = "traceparent";
}

fn metadata_str<'a>(metadata: &'a Metadata, key: &str) -> Option<&'a str> {
    metadata
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The trace id (32 hex digits) of a W3C `traceparent`, when it is well formed.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace)
}

/// A domain event consumed from `AGGREGATE_EVENTS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateEvent {
    pub event_id: String,
    #[serde(default)]
    pub tenant_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub occurred_at: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub metadata: Metadata,
}

/// A command for an effect worker, published to `WORKFLOW_COMMANDS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectCommand {
    #[serde(default)]
    pub tenant_id: String,
    pub command_id: String,
    pub effect_name: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub metadata: Metadata,
    pub issued_at: String,
}

/// How an effect ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultType {
    Succeeded,
    Failed,
    TimedOut,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultError {
    pub kind: String,
    pub message: String,
}

/// The outcome of an effect, published to `WORKFLOW_EVENTS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectResult {
    pub event_id: String,
    #[serde(default)]
    pub tenant_id: String,
    pub command_id: String,
    pub effect_name: String,
    pub result_type: ResultType,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub error: Option<ResultError>,
    #[serde(default)]
    pub attempts: u32,
    pub timestamp: String,
    #[serde(default)]
    pub metadata: Metadata,
}

/// A due timer, published to `WORKFLOW_EVENTS` by the scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reminder {
    pub event_id: String,
    #[serde(default)]
    pub tenant_id: String,
    pub saga_name: String,
    pub correlation_id: String,
    pub name: String,
    pub due_at: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub metadata: Metadata,
}

/// A command for an aggregate, POSTed to the Gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateCommand {
    pub command_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub command_type: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub metadata: Metadata,
}

/// Which envelope a consumed message carries; decided by stream and subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeKind {
    Aggregate,
    Result,
    Reminder,
}

/// An incoming envelope, validated against its kind's required fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Aggregate(AggregateEvent),
    Result(EffectResult),
    Reminder(Reminder),
}

impl Incoming {
    /// Validates `value` as the envelope of `kind`. The error text is serde's, which names
    /// the missing or mistyped field.
    pub fn from_value(kind: EnvelopeKind, value: &Value) -> Result<Incoming, serde_json::Error> {
        Ok(match kind {
            EnvelopeKind::Aggregate => Incoming::Aggregate(AggregateEvent::deserialize(value)?),
            EnvelopeKind::Result => Incoming::Result(EffectResult::deserialize(value)?),
            EnvelopeKind::Reminder => Incoming::Reminder(Reminder::deserialize(value)?),
        })
    }

    pub fn event_id(&self) -> &str {
        match self {
            Incoming::Aggregate(e) => &e.event_id,
            Incoming::Result(e) => &e.event_id,
            Incoming::Reminder(e) => &e.event_id,
        }
    }

    /// The tenant the body claims ("" when it claims none).
    pub fn tenant_id(&self) -> &str {
        match self {
            Incoming::Aggregate(e) => &e.tenant_id,
            Incoming::Result(e) => &e.tenant_id,
            Incoming::Reminder(e) => &e.tenant_id,
        }
    }

    /// The event's own time, which timers count from (never the wall clock).
    pub fn event_time(&self) -> &str {
        match self {
            Incoming::Aggregate(e) => &e.occurred_at,
            Incoming::Result(e) => &e.timestamp,
            Incoming::Reminder(e) => &e.due_at,
        }
    }

    pub fn metadata(&self) -> &Metadata {
        match self {
            Incoming::Aggregate(e) => &e.metadata,
            Incoming::Result(e) => &e.metadata,
            Incoming::Reminder(e) => &e.metadata,
        }
    }

    pub fn correlation_id(&self) -> Option<&str> {
        metadata_str(self.metadata(), meta::CORRELATION_ID).or(match self {
            Incoming::Reminder(r) => Some(r.correlation_id.as_str()),
            _ => None,
        })
    }

    pub fn traceparent(&self) -> Option<&str> {
        metadata_str(self.metadata(), meta::TRACEPARENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order_placed() -> Value {
        json!({
            "event_id": "e-1", "tenant_id": "acme", "aggregate_type": "order",
            "aggregate_id": "o-1", "event_type": "OrderPlaced", "version": 3,
            "occurred_at": "2026-11-27T10:00:00Z", "payload": {"total": 42},
            "metadata": {"correlation_id": "c-1", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                          "vendor": {"nested": [1, 2]}},
            "brand_new_field": {"x": 1}
        })
    }

    #[test]
    fn unknown_fields_are_ignored_and_metadata_kept_whole() {
        let value = order_placed();
        let incoming = Incoming::from_value(EnvelopeKind::Aggregate, &value).unwrap();
        let Incoming::Aggregate(ev) = &incoming else {
            panic!("wrong kind")
        };
        assert_eq!(ev.event_type, "OrderPlaced");
        assert_eq!(ev.metadata["vendor"], json!({"nested": [1, 2]}));
        let reencoded = serde_json::to_value(ev).unwrap();
        assert_eq!(reencoded["metadata"], value["metadata"]);
        assert_eq!(incoming.correlation_id(), Some("c-1"));
        assert_eq!(
            incoming.traceparent().and_then(trace_id),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
    }

    #[test]
    fn missing_required_field_is_named() {
        let mut value = order_placed();
        value.as_object_mut().unwrap().remove("aggregate_id");
        let err = Incoming::from_value(EnvelopeKind::Aggregate, &value).unwrap_err();
        assert!(err.to_string().contains("aggregate_id"), "{err}");
    }

    #[test]
    fn result_and_reminder_envelopes_decode() {
        let result = json!({"event_id": "r-1", "tenant_id": "acme", "command_id": "c-1",
            "effect_name": "charge_card", "result_type": "timed_out", "payload": {},
            "error": {"kind": "timeout", "message": "upstream slow"}, "attempts": 3,
            "timestamp": "2026-11-27T10:00:01Z", "metadata": {"correlation_id": "o-1"}, "extra": 1});
        let incoming = Incoming::from_value(EnvelopeKind::Result, &result).unwrap();
        let Incoming::Result(r) = &incoming else {
            panic!("wrong kind")
        };
        assert_eq!(r.result_type, ResultType::TimedOut);
        assert_eq!(incoming.event_time(), "2026-11-27T10:00:01Z");

        let reminder = json!({"event_id": "t-1", "saga_name": "s", "correlation_id": "o-9",
            "name": "payment_timeout", "due_at": "2026-11-27T10:15:00Z"});
        let incoming = Incoming::from_value(EnvelopeKind::Reminder, &reminder).unwrap();
        assert_eq!(incoming.tenant_id(), "");
        assert_eq!(incoming.correlation_id(), Some("o-9"));
    }

    #[test]
    fn malformed_traceparent_has_no_trace_id() {
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(trace_id("00-xyz-abc-01"), None);
    }
}
