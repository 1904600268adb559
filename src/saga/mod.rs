//! The saga engine, free of threads and channels so it can be tested directly:
//! [`decode`] turns a delivered message into a routed event (or a quarantine record),
//! [`Executor`] runs the sagas' programs over it and produces the transitions to commit.
//! The pipeline stages in `stages/` only move these values between threads.

mod decode;
mod envelope_size;
mod execute;
mod ids;
mod outputs;
mod quarantine;
pub mod versions;

use std::sync::Arc;

use serde_json::Value;

pub use decode::{decode, decode_message, DecodeConfig, Headers};
pub use execute::{Disposition, Executor, Outcome};
pub(crate) use ids::scoped_uuid;
pub use ids::{command_message_id, derive_command_id, derive_span_id};
pub use quarantine::unstorable;

use crate::envelope::{EnvelopeKind, Metadata};
use crate::manifest::SagaDef;
use crate::store::{QuarantineKind, QuarantineRecord};
use crate::types::{CorrelationId, EventId, TenantId};

/// Where a message came from and how often it was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    pub stream: String,
    pub seq: u64,
    pub delivered: u64,
    /// Deliveries this process caused itself by dropping the message after a storage
    /// failure; they do not count against `max_deliver`.
    pub forgiven: u64,
    pub subject: String,
    /// When the stream stored it (ms since the epoch; 0: unknown).
    pub published_ms: i64,
}

/// The three ids every log line about a message carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCtx {
    pub tenant_id: String,
    pub correlation_id: String,
    pub trace_id: String,
}

/// The result of decoding one message.
#[derive(Debug)]
pub enum Decoded {
    Event(Box<RoutedEvent>),
    Quarantine(Box<QuarantineRecord>, LogCtx),
}

/// A valid event with the saga instances it reaches.
#[derive(Debug)]
pub struct RoutedEvent {
    pub tenant: TenantId,
    pub event_id: EventId,
    pub kind: EnvelopeKind,
    /// The whole envelope, as programs see it (`event`).
    pub value: Value,
    /// The event's own time (RFC 3339 as sent, and in ms): timers count from it.
    pub event_time: String,
    pub event_time_ms: i64,
    pub traceparent: Option<String>,
    pub log: LogCtx,
    /// One entry per saga the event reaches (empty: acked and counted as ignored).
    pub routes: Vec<Route>,
    /// Sagas whose trigger matched but whose `correlate` expression failed: the message
    /// is quarantined for them while the other sagas still run.
    pub route_faults: Vec<RouteFault>,
}

/// A saga an event could not be routed to, and why.
#[derive(Debug, Clone)]
pub struct RouteFault {
    pub saga: String,
    pub kind: QuarantineKind,
    pub reason: String,
}

impl RoutedEvent {
    /// The envelope's `metadata` object (read from `value`, which owns it).
    pub fn metadata(&self) -> Option<&Metadata> {
        self.value.get("metadata").and_then(Value::as_object)
    }
}

/// One saga instance an event reaches.
#[derive(Debug, Clone)]
pub struct Route {
    pub saga: Arc<SagaDef>,
    pub correlation: CorrelationId,
    /// The matching trigger may start a new instance.
    pub start: bool,
}

#[cfg(test)]
mod tests;

/// The `kind` a program sees in `ctx.kind`.
pub fn kind_name(kind: EnvelopeKind) -> &'static str {
    match kind {
        EnvelopeKind::Aggregate => "aggregate",
        EnvelopeKind::Result => "result",
        EnvelopeKind::Reminder => "reminder",
    }
}
