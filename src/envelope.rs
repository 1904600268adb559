//! The JSON envelopes of docs/contracts.md §2. Decoders ignore unknown fields; `metadata` is
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
    parse_traceparent(traceparent).map(|(trace, _)| trace)
}

/// The trace id and flags of a well-formed W3C `traceparent`
/// (`version-traceid-parentid-flags`, lowercase hex, ids not all zero).
pub fn parse_traceparent(traceparent: &str) -> Option<(&str, &str)> {
    // Read at fixed offsets (every event and command has one, and a split costs a search
    // per field): `vv-<32 trace>-<16 parent>-ff`, dashes at 2, 35 and 52, more fields
    // only after a dash at 55.
    let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let dash = |i: usize| traceparent.as_bytes().get(i) == Some(&b'-');
    let (version, trace, parent, flags) = (
        traceparent.get(..2)?,
        traceparent.get(3..35)?,
        traceparent.get(36..52)?,
        traceparent.get(53..55)?,
    );
    let well_formed = dash(2)
        && dash(35)
        && dash(52)
        && hex(version)
        && version != "ff"
        && hex(trace)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags)
        // Version 00 has exactly four fields; later versions may add more.
        && match traceparent.len() {
            55 => true,
            _ => version != "00" && dash(55),
        };
    well_formed.then_some((trace, flags))
}

/// Characters of a received value quoted in an error message: enough to recognise it,
/// while a megabyte-long hostile field cannot make a quarantine reason (or a log line)
/// that large.
pub const CLIP_CHARS: usize = 80;

/// The first [`CLIP_CHARS`] characters of `text`, ending in `…` when it was cut.
pub fn clip(text: &str) -> String {
    clip_to(text, CLIP_CHARS)
}

/// `text` cut to at most `chars` characters, an ellipsis marking a cut.
pub fn clip_to(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
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

/// An [`EffectCommand`] that borrows its parts, for writing one without copying them.
/// Serialises to the same bytes: keep the fields in the same order.
#[derive(Debug, Serialize)]
pub struct EffectCommandRef<'a, M: Serialize> {
    pub tenant_id: &'a str,
    pub command_id: &'a str,
    pub effect_name: &'a str,
    pub payload: &'a Value,
    pub metadata: M,
    pub issued_at: &'a str,
}

impl EffectCommand {
    /// A text field of the metadata (`correlation_id`, `traceparent`…), if set and not empty.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The trace id of the command's `traceparent`, if it has a readable one.
    pub fn trace_id(&self) -> Option<&str> {
        self.meta(meta::TRACEPARENT).and_then(trace_id)
    }
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

/// An [`AggregateCommand`] that borrows its parts, for writing one without copying
/// them. Serialises to the same bytes: keep the fields in the same order.
#[derive(Debug, Serialize)]
pub struct AggregateCommandRef<'a, M: Serialize> {
    pub command_id: &'a str,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub command_type: &'a str,
    pub payload: &'a Value,
    pub metadata: M,
}

/// Which envelope a consumed message carries; decided by stream and subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeKind {
    Aggregate,
    Result,
    Reminder,
}

/// A consumed envelope, validated against its kind's required fields, borrowing from the
/// parsed JSON (which programs see whole as `event`, so nothing is copied out of it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnvelopeView<'a> {
    pub kind: EnvelopeKind,
    pub event_id: &'a str,
    /// The tenant the body claims ("" when it claims none).
    pub tenant_id: &'a str,
    /// The event's own time, which timers count from (never the wall clock).
    pub event_time: &'a str,
    pub metadata: Option<&'a Metadata>,
    /// A reminder names its saga instance itself.
    pub reminder_correlation: Option<&'a str>,
}

/// Required string fields per envelope kind; the first is the event id, the last the
/// event time.
fn required(kind: EnvelopeKind) -> &'static [&'static str] {
    match kind {
        EnvelopeKind::Aggregate => &[
            "event_id",
            "aggregate_type",
            "aggregate_id",
            "event_type",
            "occurred_at",
        ],
        EnvelopeKind::Result => &[
            "event_id",
            "command_id",
            "effect_name",
            "result_type",
            "timestamp",
        ],
        EnvelopeKind::Reminder => &["event_id", "saga_name", "correlation_id", "name", "due_at"],
    }
}

/// Why a JSON value is not an envelope of its kind; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the envelope is not a JSON object")]
    NotObject,
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{0}` must be a string")]
    NotString(&'static str),
    #[error("field `metadata` must be an object")]
    Metadata,
    #[error("field `version` must be a non-negative integer")]
    Version,
    /// The received value is clipped: it may be hostile and long.
    #[error("field `result_type` must be succeeded, failed, timed_out or rejected (got {0:?})")]
    ResultType(String),
}

impl<'a> EnvelopeView<'a> {
    /// Validates `value` as an envelope of `kind`; the error names the field.
    pub fn of(kind: EnvelopeKind, value: &'a Value) -> Result<EnvelopeView<'a>, EnvelopeError> {
        let obj = value.as_object().ok_or(EnvelopeError::NotObject)?;
        let string = |field: &'static str| -> Result<&'a str, EnvelopeError> {
            match obj.get(field) {
                Some(Value::String(s)) => Ok(s.as_str()),
                None | Some(Value::Null) => Err(EnvelopeError::Missing(field)),
                Some(_) => Err(EnvelopeError::NotString(field)),
            }
        };
        for field in required(kind) {
            string(field)?;
        }
        let tenant_id = match obj.get("tenant_id") {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(EnvelopeError::NotString("tenant_id")),
        };
        let metadata = match obj.get("metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => return Err(EnvelopeError::Metadata),
        };
        match kind {
            EnvelopeKind::Aggregate => {
                if obj
                    .get("version")
                    .is_some_and(|v| !v.is_null() && !v.is_u64())
                {
                    return Err(EnvelopeError::Version);
                }
            }
            EnvelopeKind::Result => {
                let rt = string("result_type")?;
                if serde_json::from_value::<ResultType>(Value::String(rt.to_string())).is_err() {
                    return Err(EnvelopeError::ResultType(clip(rt)));
                }
            }
            EnvelopeKind::Reminder => {}
        }
        let fields = required(kind);
        Ok(EnvelopeView {
            kind,
            event_id: string(fields[0])?,
            tenant_id,
            event_time: string(fields[fields.len() - 1])?,
            metadata,
            reminder_correlation: match kind {
                EnvelopeKind::Reminder => Some(string("correlation_id")?),
                _ => None,
            },
        })
    }

    pub fn correlation_id(&self) -> Option<&'a str> {
        self.metadata
            .and_then(|m| metadata_str(m, meta::CORRELATION_ID))
            .or(self.reminder_correlation)
    }

    pub fn traceparent(&self) -> Option<&'a str> {
        self.metadata
            .and_then(|m| metadata_str(m, meta::TRACEPARENT))
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
        let ev: AggregateEvent = serde_json::from_value(value.clone()).unwrap();
        let incoming = EnvelopeView::of(EnvelopeKind::Aggregate, &value).unwrap();
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

    /// The borrowed forms write the outbox: their bytes must be the owned forms' bytes.
    #[test]
    fn borrowed_commands_serialise_like_owned_ones() {
        let metadata = order_placed()["metadata"].as_object().unwrap().clone();
        let payload = json!({"amount": 42, "note": "a\"b"});
        let owned = EffectCommand {
            tenant_id: "acme".into(),
            command_id: "c-1".into(),
            effect_name: "charge_card".into(),
            payload: payload.clone(),
            metadata: metadata.clone(),
            issued_at: "2026-11-27T10:00:00Z".into(),
        };
        let borrowed = EffectCommandRef {
            tenant_id: "acme",
            command_id: "c-1",
            effect_name: "charge_card",
            payload: &payload,
            metadata: &metadata,
            issued_at: "2026-11-27T10:00:00Z",
        };
        assert_eq!(
            serde_json::to_string(&owned).unwrap(),
            serde_json::to_string(&borrowed).unwrap()
        );
        let owned = AggregateCommand {
            command_id: "c-2".into(),
            aggregate_type: "order".into(),
            aggregate_id: "o-1".into(),
            command_type: "MarkPaid".into(),
            payload: payload.clone(),
            metadata: metadata.clone(),
        };
        let borrowed = AggregateCommandRef {
            command_id: "c-2",
            aggregate_type: "order",
            aggregate_id: "o-1",
            command_type: "MarkPaid",
            payload: &payload,
            metadata: &metadata,
        };
        assert_eq!(
            serde_json::to_string(&owned).unwrap(),
            serde_json::to_string(&borrowed).unwrap()
        );
    }

    #[test]
    fn missing_required_field_is_named() {
        let mut value = order_placed();
        value.as_object_mut().unwrap().remove("aggregate_id");
        let err = EnvelopeView::of(EnvelopeKind::Aggregate, &value)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`aggregate_id`"), "{err}");
        value["aggregate_id"] = json!(7);
        let err = EnvelopeView::of(EnvelopeKind::Aggregate, &value)
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be a string"), "{err}");
        value["aggregate_id"] = json!("o-1");
        value["metadata"] = json!("flat");
        assert!(EnvelopeView::of(EnvelopeKind::Aggregate, &value).is_err());
    }

    #[test]
    fn result_and_reminder_envelopes_decode() {
        let result = json!({"event_id": "r-1", "tenant_id": "acme", "command_id": "c-1",
            "effect_name": "charge_card", "result_type": "timed_out", "payload": {},
            "error": {"kind": "timeout", "message": "upstream slow"}, "attempts": 3,
            "timestamp": "2026-11-27T10:00:01Z", "metadata": {"correlation_id": "o-1"}, "extra": 1});
        let r: EffectResult = serde_json::from_value(result.clone()).unwrap();
        assert_eq!(r.result_type, ResultType::TimedOut);
        let incoming = EnvelopeView::of(EnvelopeKind::Result, &result).unwrap();
        assert_eq!(incoming.event_time, "2026-11-27T10:00:01Z");
        assert_eq!(incoming.correlation_id(), Some("o-1"));
        let mut bad = result.clone();
        bad["result_type"] = json!("exploded");
        assert!(EnvelopeView::of(EnvelopeKind::Result, &bad)
            .unwrap_err()
            .to_string()
            .contains("result_type"));

        let reminder = json!({"event_id": "t-1", "saga_name": "s", "correlation_id": "o-9",
            "name": "payment_timeout", "due_at": "2026-11-27T10:15:00Z"});
        let incoming = EnvelopeView::of(EnvelopeKind::Reminder, &reminder).unwrap();
        assert_eq!(incoming.tenant_id, "");
        assert_eq!(incoming.event_time, "2026-11-27T10:15:00Z");
        assert_eq!(incoming.correlation_id(), Some("o-9"));
    }

    /// Regression: the whole hostile value was quoted (a 1 MB `result_type` gave a 1 MB
    /// quarantine reason).
    #[test]
    fn errors_quote_received_values_briefly() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(1000);
        assert_eq!(clip(&long), format!("{}…", "é".repeat(CLIP_CHARS)));
        let mut bad = json!({"event_id": "r-1", "command_id": "c-1", "effect_name": "e",
            "timestamp": "2026-11-27T10:00:01Z"});
        bad["result_type"] = json!("x".repeat(100_000));
        let err = EnvelopeView::of(EnvelopeKind::Result, &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(&format!("(got \"{}…\")", "x".repeat(CLIP_CHARS))),
            "{err}"
        );
    }

    #[test]
    fn malformed_traceparent_has_no_trace_id() {
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(trace_id("00-xyz-abc-01"), None);
        let zero_trace = format!("00-{}-b7ad6b7169203331-01", "0".repeat(32));
        assert_eq!(trace_id(&zero_trace), None);
        assert_eq!(
            trace_id("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz"),
            None
        );
        assert_eq!(
            trace_id("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"),
            None
        );
        assert_eq!(
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"),
            Some(("0af7651916cd43dd8448eb211c80319c", "00"))
        );
    }

    /// The reading by the spec's grammar: split at dashes, each field checked.
    fn parse_by_split(traceparent: &str) -> Option<(&str, &str)> {
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let mut parts = traceparent.split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let well_formed = hex(version, 2)
            && version != "ff"
            && hex(trace, 32)
            && trace.bytes().any(|b| b != b'0')
            && hex(parent, 16)
            && parent.bytes().any(|b| b != b'0')
            && hex(flags, 2)
            && (version != "00" || parts.next().is_none());
        well_formed.then_some((trace, flags))
    }

    #[test]
    fn traceparents_read_at_fixed_offsets_as_by_splitting() {
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut cases: Vec<String> = vec![
            good.into(),
            format!("01{}", &good[2..]),
            format!("01{}-extra", &good[2..]),
            format!("01{}-", &good[2..]),
            format!("01{}x", &good[2..]),
            format!("{good}-extra"),
            format!("ff{}", &good[2..]),
            String::new(),
            "-".repeat(60),
            format!("00-{}-b7ad6b7169203331-01", "0".repeat(32)),
            format!("00-0af7651916cd43dd8448eb211c80319c-{}-01", "0".repeat(16)),
        ];
        // Every byte of the good one replaced by a dash, a letter out of range, an
        // uppercase digit, a zero and a two-byte character; every length cut.
        for i in 0..good.len() {
            for sub in ["-", "g", "A", "0", "é"] {
                let mut v = good.to_string();
                v.replace_range(i..=i, sub);
                cases.push(v);
            }
            cases.push(good[..i].to_string());
            cases.push(format!("{}{}", &good[..i], &good[i + 1..]));
        }
        for case in &cases {
            assert_eq!(parse_traceparent(case), parse_by_split(case), "{case:?}");
        }
        assert!(cases.iter().filter(|c| parse_by_split(c).is_some()).count() >= 3);
    }
}
