//! Decoding and routing: bytes and headers in, a routed event or a quarantine record
//! out. Everything that makes a message unprocessable for every saga is decided here,
//! before any state is read.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::{kind_name, Decoded, LogCtx, MessageInfo, Route, RouteFault, RoutedEvent};
use crate::envelope::{clip, trace_id, EnvelopeKind, EnvelopeView};
use crate::error::Error;
use crate::manifest::{proven_tenant, SagaCatalog, SagaDef, TenantProofError, Trigger};
use crate::settings::Settings;
use crate::store::{excerpt, QuarantineKind, QuarantineRecord};
use crate::timefmt::parse_rfc3339_ms;
use crate::types::{CorrelationId, EventId, TenantId};

/// What decoding needs from the settings, resolved once.
#[derive(Debug, Clone)]
pub struct DecodeConfig {
    pub aggregate_stream: String,
    /// Subject prefixes (without the trailing '.'): the token after each is the tenant.
    pub aggregate_prefix: String,
    pub result_prefix: String,
    pub timer_prefix: String,
    pub max_message_bytes: usize,
    /// Largest serialised `metadata` accepted (commands and reminders copy it whole).
    pub max_metadata_bytes: usize,
    pub max_deliver: u64,
    pub multi_tenant: bool,
    pub default_tenant: TenantId,
    /// Empty: every tenant is served.
    pub allowed_tenants: HashSet<TenantId>,
}

impl DecodeConfig {
    pub fn from_settings(s: &Settings) -> DecodeConfig {
        DecodeConfig {
            aggregate_stream: s.streams.aggregate_events.clone(),
            aggregate_prefix: s.streams.aggregate_prefix.clone(),
            result_prefix: s.streams.result_prefix.clone(),
            timer_prefix: s.streams.timer_prefix.clone(),
            max_message_bytes: s.pipeline.max_message_bytes,
            max_metadata_bytes: s.pipeline.max_metadata_bytes,
            max_deliver: s.consumer.max_deliver.max(1) as u64,
            multi_tenant: s.tenancy.multi_tenant,
            default_tenant: s.default_tenant(),
            allowed_tenants: s
                .tenancy
                .allowed_tenants
                .iter()
                .filter_map(|t| TenantId::new(t).ok())
                .collect(),
        }
    }
}

/// Builds the error a message is quarantined with (see `crate::error`).
fn reject(kind: fn(String) -> Error, reason: impl Into<String>) -> Error {
    kind(reason.into())
}

/// The headers decoding reads (docs/contracts.md §1).
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a> {
    /// `x-tenant-id`: must agree with the body's tenant.
    pub tenant: Option<&'a str>,
    /// `traceparent`: the trace context when the body's metadata carries none.
    pub traceparent: Option<&'a str>,
}

/// Decodes and routes one message that came with no headers but `x-tenant-id`
/// (`header_tenant`); see [`decode_message`].
pub fn decode(
    cfg: &DecodeConfig,
    catalog: &SagaCatalog,
    info: &MessageInfo,
    header_tenant: Option<&str>,
    body: &[u8],
) -> Decoded {
    let headers = Headers {
        tenant: header_tenant,
        traceparent: None,
    };
    decode_message(cfg, catalog, info, headers, body)
}

/// Decodes and routes one message with the headers it came with.
pub fn decode_message(
    cfg: &DecodeConfig,
    catalog: &SagaCatalog,
    info: &MessageInfo,
    headers: Headers<'_>,
    body: &[u8],
) -> Decoded {
    let mut log = LogCtx {
        tenant_id: headers.tenant.unwrap_or_default().to_string(),
        // The body's own, if it has one, replaces it below.
        trace_id: header_trace(headers).unwrap_or_default().to_string(),
        ..LogCtx::default()
    };
    let mut seen = Seen::default();
    match decode_inner(cfg, catalog, info, headers, body, &mut log, &mut seen) {
        Ok(event) => Decoded::Event(Box::new(event)),
        Err(r) => {
            // Filed under a tenant only when the message proved it (point 3 of the
            // tenant rules, docs/guarantees.md); otherwise `tenant` is what it claimed.
            let tenant = seen
                .proven
                .clone()
                .unwrap_or_else(|| TenantId::new(&log.tenant_id).unwrap_or_default());
            let record = QuarantineRecord {
                kind: r.quarantine_kind().unwrap_or(QuarantineKind::Decode),
                reason: r.to_string(),
                stream: info.stream.clone(),
                seq: info.seq,
                subject: info.subject.clone(),
                delivered: info.delivered,
                tenant,
                event_id: seen.event_id,
                correlation_id: (!log.correlation_id.is_empty())
                    .then(|| log.correlation_id.clone()),
                saga: None,
                body_excerpt: excerpt(body),
                unattributed: seen.proven.is_none(),
                quarantined_at: None,
            };
            Decoded::Quarantine(Box::new(record), log)
        }
    }
}

/// What decoding learnt about a message before it failed, for its quarantine record.
#[derive(Debug, Default)]
struct Seen {
    /// The body's event id (capped).
    event_id: Option<String>,
    /// The tenant the message proved: subject, header and body agree (absent ones
    /// aside), and it is one this process serves.
    proven: Option<TenantId>,
}

/// The trace id of the `traceparent` header, when it is there and well formed.
fn header_trace(headers: Headers<'_>) -> Option<&str> {
    headers.traceparent.and_then(trace_id)
}

fn decode_inner(
    cfg: &DecodeConfig,
    catalog: &SagaCatalog,
    info: &MessageInfo,
    headers: Headers<'_>,
    body: &[u8],
    log: &mut LogCtx,
    seen: &mut Seen,
) -> Result<RoutedEvent, Error> {
    let header_tenant = headers.tenant;
    // The subject names the tenant; header and body may only agree (checked before
    // anything else is read, so even an unreadable body is attributed only to the
    // tenant its subject and header prove).
    let prefix = tenant_prefix(cfg, info);
    let prove = |body_tenant: Option<&str>| match prefix {
        Some(prefix) => proven_tenant(&info.subject, prefix, header_tenant, body_tenant),
        None => Err(TenantProofError::UnknownSubject(clip(&info.subject))),
    };
    seen.proven = prove(None).ok().and_then(|t| served(cfg, t).ok());
    if body.len() > cfg.max_message_bytes {
        return Err(reject(
            Error::Decode,
            format!(
                "message of {} bytes exceeds the limit of {} bytes",
                body.len(),
                cfg.max_message_bytes
            ),
        ));
    }
    // Parse what we can first so the quarantine record of an over-delivered message
    // still names its tenant and event.
    let parsed: Result<Value, serde_json::Error> = serde_json::from_slice(body);
    let mut body_tenant = None;
    if let Ok(Value::Object(obj)) = &parsed {
        // Capped like the correlation id below: a hostile megabyte-long event id must
        // not be copied whole into the quarantine record.
        seen.event_id = obj
            .get("event_id")
            .and_then(Value::as_str)
            .map(|id| id.chars().take(128).collect());
        if let Some(meta) = obj.get("metadata") {
            if let Some(c) = meta.get("correlation_id").and_then(Value::as_str) {
                log.correlation_id = c.chars().take(128).collect();
            }
            if let Some(t) = meta
                .get("traceparent")
                .and_then(Value::as_str)
                .and_then(trace_id)
            {
                log.trace_id = t.to_string();
            }
        }
        match obj.get("tenant_id") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) => {
                if log.tenant_id.is_empty() && !t.is_empty() {
                    log.tenant_id = t.chars().take(64).collect();
                }
                body_tenant = Some(t.as_str());
            }
            // Not a tenant at all: the envelope check below names it; the message
            // proves no tenant.
            Some(_) => seen.proven = None,
        }
    }
    let proof = prove(body_tenant);
    if seen.proven.is_some() {
        seen.proven = proof.clone().ok().and_then(|t| served(cfg, t).ok());
    }
    if let Some(t) = &seen.proven {
        log.tenant_id = t.to_string();
    }
    if info.delivered.saturating_sub(info.forgiven) > cfg.max_deliver {
        return Err(reject(
            Error::Policy,
            format!(
                "delivered {} times; the limit is {}",
                info.delivered, cfg.max_deliver
            ),
        ));
    }
    let value =
        parsed.map_err(|e| reject(Error::Decode, format!("body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(reject(Error::Decode, "body is not a JSON object"));
    }
    let kind = envelope_kind(cfg, info).ok_or_else(|| {
        reject(
            Error::Decode,
            format!(
                "subject {} is neither a result ({}.…) nor a timer ({}.…) subject",
                clip(&info.subject),
                cfg.result_prefix,
                cfg.timer_prefix
            ),
        )
    })?;
    // The quarantine record keeps the reason as text (docs/contracts.md).
    let subject_tenant = proof.map_err(|reason| reject(Error::TenantAccess, reason.to_string()))?;
    let incoming = EnvelopeView::of(kind, &value).map_err(|e| {
        reject(
            Error::Decode,
            format!("not a valid {} envelope: {e}", kind_name(kind)),
        )
    })?;

    let tenant = served(cfg, subject_tenant)?;
    log.tenant_id = tenant.to_string();
    if let Some(c) = incoming.correlation_id() {
        log.correlation_id = c.chars().take(128).collect();
    }
    if let Some(meta) = value.get("metadata") {
        // A JSON value always writes: the count is never missing.
        let bytes = crate::nats_io::json_len(meta).unwrap_or(0);
        if bytes > cfg.max_metadata_bytes {
            return Err(reject(
                Error::Decode,
                format!(
                    "metadata of {bytes} bytes exceeds the limit of {} bytes (pipeline.max_metadata_bytes)",
                    cfg.max_metadata_bytes
                ),
            ));
        }
    }
    let event_id =
        EventId::new(incoming.event_id).map_err(|e| reject(Error::Decode, e.to_string()))?;
    let event_time = incoming.event_time.to_string();
    let event_time_ms = parse_rfc3339_ms(&event_time)
        .map_err(|e| reject(Error::Decode, format!("event time is not RFC 3339: {e}")))?;
    // The body's metadata wins; the header stands in when the body has no readable one
    // (an upstream that traces in headers only), so the trace still reaches the work.
    let readable = |tp: &&str| trace_id(tp).is_some();
    let traceparent = incoming
        .traceparent()
        .filter(readable)
        .or(headers.traceparent.filter(readable))
        .or(incoming.traceparent())
        .map(str::to_string);

    let ctx = json!({
        "tenant_id": tenant.as_str(),
        "stream": info.stream,
        "subject": info.subject,
        "kind": kind_name(kind),
        "seq": info.seq,
    });
    let mut routes = Vec::new();
    let mut route_faults = Vec::new();
    for (saga, trigger) in catalog.route(&info.subject) {
        match correlate(saga, trigger, &value, &ctx) {
            Ok(None) => {}
            Ok(Some(correlation)) => routes.push(Route {
                saga: saga.clone(),
                correlation,
                start: trigger.start,
            }),
            Err((kind, reason)) => route_faults.push(RouteFault {
                saga: saga.name.to_string(),
                kind,
                reason,
            }),
        }
    }
    Ok(RoutedEvent {
        tenant,
        event_id,
        kind,
        value,
        event_time,
        event_time_ms,
        traceparent,
        log: log.clone(),
        routes,
        route_faults,
    })
}

/// The instance of `saga` this event concerns: `None` when the correlate expression
/// gives null or "" (the event is not for this saga).
fn correlate(
    saga: &SagaDef,
    trigger: &Trigger,
    event: &Value,
    ctx: &Value,
) -> Result<Option<CorrelationId>, (QuarantineKind, String)> {
    let value = trigger
        .correlate
        .eval(&[event, ctx], saga.gas)
        .map_err(|fault| {
            (
                QuarantineKind::Program,
                format!("correlate expression: {fault}"),
            )
        })?;
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        other => {
            let reason = format!(
                "correlate expression gave {}, not a string",
                clip(&other.to_string())
            );
            return Err((QuarantineKind::Program, reason));
        }
    };
    CorrelationId::new(&text)
        .map(Some)
        .map_err(|e| (QuarantineKind::Decode, e.to_string()))
}

fn envelope_kind(cfg: &DecodeConfig, info: &MessageInfo) -> Option<EnvelopeKind> {
    let under = |prefix: &str| {
        info.subject
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
    };
    if info.stream == cfg.aggregate_stream {
        Some(EnvelopeKind::Aggregate)
    } else if under(&cfg.result_prefix) {
        Some(EnvelopeKind::Result)
    } else if under(&cfg.timer_prefix) {
        Some(EnvelopeKind::Reminder)
    } else {
        None
    }
}

/// The prefix after which the message's subject names its tenant, by its stream and
/// kind; `None` for a subject of no kind the Runner consumes.
fn tenant_prefix<'c>(cfg: &'c DecodeConfig, info: &MessageInfo) -> Option<&'c str> {
    match envelope_kind(cfg, info)? {
        EnvelopeKind::Aggregate => Some(&cfg.aggregate_prefix),
        EnvelopeKind::Result => Some(&cfg.result_prefix),
        EnvelopeKind::Reminder => Some(&cfg.timer_prefix),
    }
}

/// The tenant the subject proved, as this process serves it: the single tenant (`_`)
/// is the default tenant, and the tenant must be one this process serves.
fn served(cfg: &DecodeConfig, proven: TenantId) -> Result<TenantId, Error> {
    let tenant = if proven.is_single() {
        cfg.default_tenant.clone()
    } else {
        proven
    };
    if !cfg.multi_tenant && tenant != cfg.default_tenant {
        return Err(reject(
            Error::TenantAccess,
            format!(
                "tenant {:?} is not served: multi-tenancy is off and the tenant is {:?}",
                tenant.as_str(),
                cfg.default_tenant.as_str()
            ),
        ));
    }
    if !cfg.allowed_tenants.is_empty() && !cfg.allowed_tenants.contains(&tenant) {
        return Err(reject(
            Error::TenantAccess,
            format!(
                "tenant {:?} is not among the tenants this process serves",
                tenant.as_str()
            ),
        ));
    }
    Ok(tenant)
}
