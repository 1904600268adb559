//! Effect commands nobody takes. Each effect has its own consumer, pulled only by
//! processes that define the effect (`nats_io::effect_consumer`), so a command of an
//! effect no running process defines waits in `WORKFLOW_COMMANDS` instead of failing.
//! This finds such commands, so that waiting has a bound an operator sees.
//!
//! One scan, a handful of JetStream API requests, bounded by the number of effects
//! (at most [`MAX_EFFECTS`]), never by the number of commands:
//! - the stream's subjects under `{command_prefix}.*.*` with their message counts (one
//!   `STREAM.INFO` with a subjects filter): which effects have commands at all;
//! - the commands stream's consumers: which effects have a consumer, and for each its
//!   next undelivered message (`delivered.stream_seq + 1`) and `num_pending`;
//! - per effect with commands waiting, the oldest of them (one `STREAM.MSG.GET` with
//!   `next_by_subj` = the effect's filter): for an effect with a consumer, the first
//!   one after what it delivered; for one without, the first in the stream (after the
//!   legacy unfiltered consumer's ack floor, when it exists: those were executed).
//!
//! An effect whose oldest waiting command is older than `effects.unclaimed_alert_secs`
//! is reported with that command (tenant, correlation, trace, command id) and how many
//! wait: `num_pending` of its consumer, or, without one, every command of the effect in
//! the stream. A consumer that processes pull but that falls that far behind is
//! reported too: for the command, nobody took it either way.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::envelope::trace_id;
use crate::settings::Settings;
use crate::timefmt::{now_ms, parse_rfc3339_ms, TimeError};

/// Effects looked at per scan at most (names taken in order); more are logged as
/// skipped.
pub const MAX_EFFECTS: usize = 256;
/// How long one JetStream API request may take.
const JS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the last scan found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnclaimedReport {
    /// When the scan ran (RFC 3339); empty before the first.
    pub checked_at: String,
    pub alert_secs: u64,
    /// Effects with commands waiting longer than the alert, by name.
    pub effects: Vec<UnclaimedEffect>,
    /// Effect names beyond [`MAX_EFFECTS`] that were not looked at.
    pub skipped_effects: usize,
}

impl UnclaimedReport {
    /// Commands of the reported effects (the metric).
    pub fn waiting(&self) -> u64 {
        self.effects.iter().map(|e| e.waiting).sum()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UnclaimedEffect {
    pub effect: String,
    /// Its consumer, when one exists (nobody pulls it, or too slowly).
    pub consumer: Option<String>,
    /// Commands of the effect that wait (see the module doc for how they are counted).
    pub waiting: u64,
    pub oldest: OldestCommand,
}

/// The oldest command an effect's report names.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OldestCommand {
    pub seq: u64,
    pub subject: String,
    pub published_at: String,
    pub waited_secs: u64,
    pub tenant_id: String,
    pub correlation_id: String,
    pub trace_id: String,
    pub command_id: String,
}

/// Why a scan of the commands stream found nothing out (it is tried again later).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("stream {0} does not exist")]
    NoStream(String),
    #[error(transparent)]
    Consumers(std::io::Error),
    #[error("list consumers of {stream}: {source}")]
    Consumer {
        stream: String,
        #[source]
        source: std::io::Error,
    },
    #[error("message time {time:?}: {source}")]
    MessageTime {
        time: String,
        #[source]
        source: TimeError,
    },
    #[error("stored message: {0}")]
    MessageShape(#[source] serde_json::Error),
    #[error("stored message: {0}")]
    Message(#[source] std::io::Error),
    /// The JetStream API request `subject` got no answer.
    #[error("{subject}: {source}")]
    Request {
        subject: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{subject}: {source}")]
    Answer {
        subject: String,
        #[source]
        source: serde_json::Error,
    },
    /// The API answered with an error (other than 404); `error` is its JSON.
    #[error("{subject}: {error}")]
    Api { subject: String, error: Value },
}

/// One scan of the commands stream (see the module doc).
pub fn scan(nc: &nats::Connection, settings: &Settings) -> Result<UnclaimedReport, ScanError> {
    let js = nats::jetstream::new(nc.clone());
    let stream = settings.streams.workflow_commands.as_str();
    let prefix = settings.streams.command_prefix.as_str();
    let alert = settings.effects.unclaimed_alert_secs;
    let mut report = UnclaimedReport {
        checked_at: crate::timefmt::now_rfc3339(),
        alert_secs: alert,
        ..Default::default()
    };
    // effect → (commands in the stream, its consumer's (name, next seq, pending)).
    type Seen = (u64, Option<(String, u64, u64)>);
    let mut effects: BTreeMap<String, Seen> = BTreeMap::new();
    for (subject, count) in subjects(nc, stream, &format!("{prefix}.*.*"))? {
        if let Some(effect) = subject.rsplit('.').next() {
            effects.entry(effect.to_string()).or_default().0 += count;
        }
    }
    let legacy = crate::nats_io::legacy_effect_consumer(settings);
    let mut legacy_floor = 0;
    for info in js.list_consumers(stream).map_err(ScanError::Consumers)? {
        let info = info.map_err(|source| ScanError::Consumer {
            stream: stream.to_string(),
            source,
        })?;
        if info.name == legacy {
            legacy_floor = info.ack_floor.stream_seq;
        }
        if let Some(effect) = crate::nats_io::effect_of_consumer(settings, &info.name) {
            let next = info.delivered.stream_seq + 1;
            effects.entry(effect.to_string()).or_default().1 =
                Some((info.name.clone(), next, info.num_pending));
        }
    }
    report.skipped_effects = effects.len().saturating_sub(MAX_EFFECTS);
    let now = now_ms();
    for (effect, (in_stream, consumer)) in effects.into_iter().take(MAX_EFFECTS) {
        let (from, waiting) = match &consumer {
            Some((_, _, 0)) => continue,
            Some((_, next, pending)) => (*next, *pending),
            None => (legacy_floor + 1, in_stream),
        };
        let filter = format!("{prefix}.*.{effect}");
        let Some(oldest) = first_message(nc, stream, &filter, from)? else {
            continue;
        };
        let waited_ms = now.saturating_sub(oldest.at_ms).max(0) as u64;
        if waited_ms < alert * 1000 {
            continue;
        }
        report.effects.push(UnclaimedEffect {
            effect,
            consumer: consumer.map(|(name, _, _)| name),
            waiting,
            oldest: OldestCommand {
                waited_secs: waited_ms / 1000,
                ..oldest.command
            },
        });
    }
    Ok(report)
}

/// The subjects of `stream` matching `filter`, with their message counts (the first
/// page the server answers with: up to 100,000 subjects).
fn subjects(
    nc: &nats::Connection,
    stream: &str,
    filter: &str,
) -> Result<Vec<(String, u64)>, ScanError> {
    let answer = js_request(
        nc,
        &format!("$JS.API.STREAM.INFO.{stream}"),
        &json!({ "subjects_filter": filter }),
    )?
    .ok_or_else(|| ScanError::NoStream(stream.to_string()))?;
    let Some(subjects) = answer["state"]["subjects"].as_object() else {
        return Ok(Vec::new());
    };
    Ok(subjects
        .iter()
        .map(|(s, n)| (s.clone(), n.as_u64().unwrap_or(0)))
        .collect())
}

struct Found {
    at_ms: i64,
    command: OldestCommand,
}

/// The first message of `stream` on `filter` at or after `from`, with what its command
/// names.
fn first_message(
    nc: &nats::Connection,
    stream: &str,
    filter: &str,
    from: u64,
) -> Result<Option<Found>, ScanError> {
    let Some(answer) = js_request(
        nc,
        &format!("$JS.API.STREAM.MSG.GET.{stream}"),
        &json!({ "seq": from.max(1), "next_by_subj": filter }),
    )?
    else {
        return Ok(None);
    };
    let raw = &answer["message"];
    let time = raw["time"].as_str().unwrap_or_default();
    let at_ms = parse_rfc3339_ms(time).map_err(|source| ScanError::MessageTime {
        time: time.to_string(),
        source,
    })?;
    let message: nats::jetstream::RawStreamMessage =
        serde_json::from_value(raw.clone()).map_err(ScanError::MessageShape)?;
    let message = nats::jetstream::StreamMessage::try_from(message).map_err(ScanError::Message)?;
    let body: Value = serde_json::from_slice(&message.data).unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.to_string())
    };
    let traceparent = body["metadata"]["traceparent"]
        .as_str()
        .map(str::to_string)
        .or_else(|| header("traceparent"))
        .unwrap_or_default();
    let tenant = match body["tenant_id"].as_str() {
        Some(t) => t.to_string(),
        None => header(crate::envelope::header::TENANT).unwrap_or_default(),
    };
    Ok(Some(Found {
        at_ms,
        command: OldestCommand {
            seq: message.sequence,
            subject: message.subject,
            published_at: time.to_string(),
            waited_secs: 0,
            tenant_id: tenant,
            correlation_id: text(&body["metadata"]["correlation_id"]),
            trace_id: trace_id(&traceparent).unwrap_or_default().to_string(),
            command_id: text(&body["command_id"]),
        },
    }))
}

/// A JetStream API request: its answer, `None` for a 404 (no such stream or message).
fn js_request(
    nc: &nats::Connection,
    subject: &str,
    body: &Value,
) -> Result<Option<Value>, ScanError> {
    let reply = nc
        .request_timeout(subject, body.to_string(), JS_TIMEOUT)
        .map_err(|source| ScanError::Request {
            subject: subject.to_string(),
            source,
        })?;
    let answer: Value =
        serde_json::from_slice(&reply.data).map_err(|source| ScanError::Answer {
            subject: subject.to_string(),
            source,
        })?;
    if let Some(error) = answer.get("error") {
        if error["code"] == 404 {
            return Ok(None);
        }
        return Err(ScanError::Api {
            subject: subject.to_string(),
            error: error.clone(),
        });
    }
    Ok(Some(answer))
}

/// The admin listing's body.
pub fn listing(report: &UnclaimedReport) -> Value {
    json!({
        "checked_at": report.checked_at,
        "alert_secs": report.alert_secs,
        "waiting": report.waiting(),
        "effects": report.effects,
        "skipped_effects": report.skipped_effects,
    })
}
