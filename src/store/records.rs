//! The records the store keeps, as JSON values under the keys of `crate::keys`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::envelope::{ResultError, ResultType};
use crate::keys::OutboxKind;
use crate::types::{CorrelationId, SagaName, TenantId, WorkId};

/// Lifecycle of a saga instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceStatus {
    Active,
    /// Done; later events are ignored (and counted).
    Completed,
    /// Done after its program reported failure and compensation ran.
    Failed,
    /// Its program faulted on an event; the event is quarantined, compensation (if any)
    /// ran, and later events are ignored.
    Faulted,
}

impl InstanceStatus {
    pub const ALL: [InstanceStatus; 4] = [
        InstanceStatus::Active,
        InstanceStatus::Completed,
        InstanceStatus::Failed,
        InstanceStatus::Faulted,
    ];

    pub fn is_done(self) -> bool {
        !matches!(self, InstanceStatus::Active)
    }

    /// The name it is serialised as (and indexed under).
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Active => "active",
            InstanceStatus::Completed => "completed",
            InstanceStatus::Failed => "failed",
            InstanceStatus::Faulted => "faulted",
        }
    }

    pub fn parse(name: &str) -> Option<InstanceStatus> {
        InstanceStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// `saga:{tenant}:{saga}:{correlation}`: one instance. Stored under one-letter field
/// names (every instance is kept for its retention, so its bytes count); the long names
/// of records written before are read too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaRecord {
    #[serde(rename = "s", alias = "status")]
    pub status: InstanceStatus,
    #[serde(rename = "d", alias = "state")]
    pub state: Value,
    /// Manifest version of the saga that started this instance.
    #[serde(rename = "v", alias = "version")]
    pub version: u32,
    /// Transitions applied so far.
    #[serde(rename = "n", alias = "transitions")]
    pub transitions: u64,
    /// The event that caused the latest transition.
    #[serde(rename = "e", alias = "last_event_id")]
    pub last_event_id: String,
    /// That event's own time (RFC 3339).
    #[serde(rename = "t", alias = "updated_at")]
    pub updated_at: String,
    /// Why the instance faulted, when it did.
    #[serde(
        rename = "f",
        alias = "fault",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fault: Option<String>,
}

/// `outbox:{tenant}:{kind}:{work_id}`: one unit of work waiting to be dispatched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    pub kind: OutboxKind,
    pub tenant: TenantId,
    pub work_id: WorkId,
    pub saga: SagaName,
    pub correlation: CorrelationId,
    /// Where it goes: the subject for effects, the aggregate type for aggregate commands.
    pub destination: String,
    /// The body to send: an `EffectCommand` or an `AggregateCommand` envelope, already
    /// serialised (the relay sends these bytes as they are).
    pub envelope: RawJson,
    /// The envelope's `metadata.traceparent`, kept beside it so the relay can set the
    /// header without parsing the envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A JSON document kept as its text: stored and sent without being parsed or rebuilt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Serialises `value`.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<RawJson, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(RawJson)
    }

    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.get().as_bytes()
    }

    /// The document parsed: for readers that inspect it (tests, the demo).
    pub fn to_value(&self) -> Value {
        // It was valid JSON when it was made, so parsing cannot fail.
        serde_json::from_str(self.as_str()).unwrap_or(Value::Null)
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.as_str() == other.as_str()
    }
}

/// `schedule:{tenant}:{saga}:{correlation}:{due_at}:{name}`: one pending timer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleItem {
    pub tenant: TenantId,
    pub saga: SagaName,
    pub correlation: CorrelationId,
    pub name: String,
    pub due_at_ms: i64,
    pub payload: Value,
    /// Metadata of the event that set the timer (correlation, trace context).
    pub metadata: serde_json::Map<String, Value>,
}

/// `deadletter:{tenant}:{kind}:{work_id}`: an outbox item the relay gave up on, whole, so
/// an operator can inspect and redrive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    pub item: OutboxItem,
    pub reason: String,
    /// The destination's answer, when it gave one (an HTTP status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub attempts: u32,
    /// When the relay gave up (RFC 3339, wall clock).
    pub dead_at: String,
}

/// An executed command's result event as published, so that a redelivered command
/// publishes that instead of calling again (and what a claim holds). Stored as
/// [`StoredCompletion`]; written once, when the call ended; the command is acked after
/// the result's publish ack. (Records of earlier versions may carry a `published_at`
/// mark; it is ignored.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectCompletion {
    /// The result event's `event_id` (its `Nats-Msg-Id`).
    pub event_id: String,
    /// The result event as it is published.
    pub result: RawJson,
    /// When the call ended (RFC 3339, wall clock).
    pub recorded_at: String,
}

/// `dedupe:{tenant}:effect:{command_id}` as stored. New records hold the outcome only
/// (about 80 bytes instead of 650): the result event is a function of the command and
/// its outcome (its id derives from tenant and command id; tenant, effect name and metadata are
/// the command's), so a redelivered command rebuilds the very event that was first
/// published (`effects::result::completion_of`). Records written before hold the event
/// whole and are read as they are.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StoredCompletion {
    Outcome(EffectOutcome),
    Whole(EffectCompletion),
}

impl StoredCompletion {
    /// Reads a stored record of either shape. (Not a derived untagged `Deserialize`:
    /// serde buffers untagged input, which the whole event's raw JSON cannot be read
    /// from.)
    pub fn decode(bytes: &[u8]) -> Result<StoredCompletion, serde_json::Error> {
        match serde_json::from_slice::<EffectOutcome>(bytes) {
            Ok(outcome) => Ok(StoredCompletion::Outcome(outcome)),
            Err(_) => serde_json::from_slice(bytes).map(StoredCompletion::Whole),
        }
    }
}

/// How an effect ended, as its completion record keeps it (one-letter names: every
/// record is kept for its retention).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectOutcome {
    #[serde(rename = "t")]
    pub result_type: ResultType,
    #[serde(rename = "p", default, skip_serializing_if = "Value::is_null")]
    pub payload: Value,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ResultError>,
    #[serde(rename = "a")]
    pub attempts: u32,
    /// The result event's timestamp: when the call ended (RFC 3339).
    #[serde(rename = "at")]
    pub timestamp: String,
    /// The result's event id is scoped by tenant (`relay::verdict::result_event_id`).
    /// Absent in records written before ids were scoped: their result is rebuilt under
    /// the unscoped id it was first published with.
    #[serde(rename = "s", default, skip_serializing_if = "std::ops::Not::not")]
    pub scoped_id: bool,
}

/// `checkpoint:{tenant}:{saga}`: the highest stream sequence applied, per stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub streams: BTreeMap<String, u64>,
}

/// Where a message came from in JetStream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    pub stream: String,
    pub seq: u64,
}

/// Why a message was quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineKind {
    /// Not a valid envelope (bad JSON, missing fields, too large, bad ids).
    Decode,
    /// Body and header disagree on the tenant, or the tenant is not served here.
    TenantAccess,
    /// A saga program faulted on it.
    Program,
    /// Delivered more often than `max_deliver` allows.
    MaxDeliver,
    /// Its transition cannot be stored, or its instance's record cannot be read (a record
    /// written by an incompatible version, say): retrying cannot help.
    Store,
}

/// `quarantine:{tenant}:{stream}:{seq}`: a message that will not be processed, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    pub kind: QuarantineKind,
    pub reason: String,
    pub stream: String,
    pub seq: u64,
    pub subject: String,
    pub delivered: u64,
    pub tenant: TenantId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saga: Option<String>,
    /// The start of the body (bounded), for whoever investigates.
    pub body_excerpt: String,
    /// The message did not prove its tenant (its subject names none, or its header or
    /// body names another): `tenant` is only what it claimed, and the record is filed
    /// under no tenant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unattributed: bool,
    /// When it was quarantined (RFC 3339, wall clock; set by the store when it is
    /// written, absent from records written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined_at: Option<String>,
}

impl QuarantineRecord {
    /// The tenant whose namespace the record is filed under: only one the message
    /// proved (subject, header and body agree, absent ones aside); none when the tenant
    /// is in doubt (unattributed records, tenant-access errors), so one tenant's list
    /// never shows a message that merely claimed to be its own.
    pub fn filing_tenant(&self) -> Option<&TenantId> {
        (self.kind != QuarantineKind::TenantAccess && !self.unattributed).then_some(&self.tenant)
    }
}

/// Bytes of a body kept in a quarantine record.
pub const QUARANTINE_EXCERPT_BYTES: usize = 2048;

/// The first bytes of a body as text; invalid UTF-8 (or a character cut at the end)
/// shows as U+FFFD.
pub fn excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(QUARANTINE_EXCERPT_BYTES)];
    String::from_utf8_lossy(cut).into_owned()
}
