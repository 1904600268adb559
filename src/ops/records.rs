//! Quarantine and dead-letter records for operators: list them by tenant, saga, kind
//! and reason; retry or discard them one by one (`keys`) or in bulk (a filter), a
//! bounded number per call.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::inspect::{Params, Refusal};
use crate::pipeline::{Retry, RetryOutcome, RetryTicket, Shared, Stats};
use crate::saga::MessageInfo;
use crate::store::{DeadLetterRecord, QuarantineRecord};
use crate::types::TenantId;

/// Records per call unless `limit` says fewer; never more than [`MAX_LIMIT`].
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;
/// How long a retry call waits for the pipeline to finish its messages.
const RETRY_WAIT: Duration = Duration::from_secs(30);

/// Which records a call is about. Every field but the tenant narrows it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// Required (`""` is the single tenant), unless `unattributed`.
    pub tenant: Option<String>,
    /// Quarantine records whose tenant was in doubt: messages that did not prove it
    /// (subject, header and body disagree, or the subject names none).
    #[serde(default)]
    pub unattributed: bool,
    pub saga: Option<String>,
    /// Quarantine kind (`decode`, `program`, …) or dead-letter item kind (`effect`,
    /// `aggregate`).
    pub kind: Option<String>,
    /// A part of the reason.
    pub reason: Option<String>,
    /// Exactly these records (as listed under `key`).
    pub keys: Option<Vec<String>>,
    pub limit: Option<usize>,
}

impl Selection {
    pub fn from_query(params: &Params) -> Result<Selection, Refusal> {
        let limit = match params.get("limit") {
            None => None,
            Some(raw) => Some(raw.parse::<usize>().map_err(|_| {
                Refusal::BadRequest(format!("limit must be a number (got {raw:?})"))
            })?),
        };
        Ok(Selection {
            tenant: params.get("tenant").map(str::to_string),
            unattributed: params.get("unattributed") == Some("true"),
            saga: params.get("saga").map(str::to_string),
            kind: params.get("kind").map(str::to_string),
            reason: params.get("reason").map(str::to_string),
            keys: params.get("key").map(|k| vec![k.to_string()]),
            limit,
        })
    }

    pub fn from_body(body: &str) -> Result<Selection, Refusal> {
        if body.trim().is_empty() {
            return Err(Refusal::BadRequest(
                "a JSON body naming the records is required, e.g. {\"tenant\": \"acme\", \"saga\": \"order_fulfilment\"} or {\"tenant\": \"acme\", \"keys\": [...]}".into(),
            ));
        }
        serde_json::from_str(body).map_err(|e| Refusal::BadRequest(format!("bad body: {e}")))
    }

    fn limit(&self) -> Result<usize, Refusal> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(Refusal::BadRequest(format!(
                "limit must be 1-{MAX_LIMIT} (got {n})"
            ))),
        }
    }

    /// The tenant whose records these are; `None`: the unattributed ones.
    fn tenant(&self) -> Result<Option<TenantId>, Refusal> {
        if self.unattributed {
            return Ok(None);
        }
        let raw = self.tenant.as_deref().ok_or_else(|| {
            Refusal::BadRequest(
                "tenant is required (\"\" for the single tenant; unattributed=true for records whose tenant was in doubt)".into(),
            )
        })?;
        TenantId::new(raw)
            .map(Some)
            .map_err(|e| Refusal::BadRequest(e.to_string()))
    }

    fn matches(&self, key: &str, saga: Option<&str>, kind: &str, reason: &str) -> bool {
        self.keys
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|k| k == key))
            && self.saga.as_deref().is_none_or(|s| saga == Some(s))
            && self.kind.as_deref().is_none_or(|k| k == kind)
            && self.reason.as_deref().is_none_or(|r| reason.contains(r))
    }
}

fn store_err(e: crate::store::StoreError) -> Refusal {
    Refusal::Store(e.to_string())
}

fn kind_text<T: serde::Serialize>(kind: &T) -> String {
    match serde_json::to_value(kind) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

fn find_quarantined(
    shared: &Shared,
    sel: &Selection,
) -> Result<(Vec<(String, QuarantineRecord)>, bool), Refusal> {
    let tenant = sel.tenant()?;
    let found = shared
        .store
        .find_quarantined(tenant.as_ref(), sel.limit()?, |key, r| {
            sel.matches(key, r.saga.as_deref(), &kind_text(&r.kind), &r.reason)
        })
        .map_err(store_err)?;
    Ok((found.records, found.truncated))
}

fn find_dead_letters(
    shared: &Shared,
    sel: &Selection,
) -> Result<(Vec<(String, DeadLetterRecord)>, bool), Refusal> {
    let tenant = sel.tenant()?.ok_or_else(|| {
        Refusal::BadRequest("dead letters always have a tenant: give tenant".into())
    })?;
    let found = shared
        .store
        .find_dead_letters(&tenant, sel.limit()?, |key, r| {
            let saga = Some(r.item.saga.as_str());
            sel.matches(key, saga, &kind_text(&r.item.kind), &r.reason)
        })
        .map_err(store_err)?;
    Ok((found.records, found.truncated))
}

pub fn list_quarantined(shared: &Shared, sel: &Selection) -> Result<Value, Refusal> {
    let (records, truncated) = find_quarantined(shared, sel)?;
    let records: Vec<Value> = records
        .into_iter()
        .map(|(key, r)| json!({"key": key, "record": r}))
        .collect();
    Ok(json!({"records": records, "scan_truncated": truncated}))
}

pub fn list_dead_letters(shared: &Shared, sel: &Selection) -> Result<Value, Refusal> {
    let (records, truncated) = find_dead_letters(shared, sel)?;
    let records: Vec<Value> = records
        .into_iter()
        .map(|(key, r)| {
            json!({"key": key, "reason": r.reason, "status": r.status, "attempts": r.attempts, "dead_at": r.dead_at,
                   "kind": r.item.kind, "command_id": r.item.work_id.as_str(), "saga": r.item.saga.as_str(),
                   "correlation": r.item.correlation.as_str(), "destination": r.item.destination,
                   "envelope": r.item.envelope.to_value()})
        })
        .collect();
    Ok(json!({"records": records, "scan_truncated": truncated}))
}

pub fn discard_quarantined(shared: &Shared, sel: &Selection) -> Result<Value, Refusal> {
    let (records, _) = find_quarantined(shared, sel)?;
    let keys: Vec<String> = records.into_iter().map(|(k, _)| k).collect();
    let discarded = shared.store.discard_records(&keys).map_err(store_err)?;
    Stats::add(&shared.stats.quarantine_discarded, discarded as u64);
    Ok(json!({"discarded": discarded, "keys": keys}))
}

pub fn discard_dead_letters(shared: &Shared, sel: &Selection) -> Result<Value, Refusal> {
    let (records, _) = find_dead_letters(shared, sel)?;
    let keys: Vec<String> = records.into_iter().map(|(k, _)| k).collect();
    let discarded = shared.store.discard_records(&keys).map_err(store_err)?;
    Stats::add(&shared.stats.dead_letters_discarded, discarded as u64);
    Ok(json!({"discarded": discarded, "keys": keys}))
}

/// Puts the dead-lettered items back into the outbox and tells the relay.
pub fn redrive_dead_letters(shared: &Shared, sel: &Selection) -> Result<Value, Refusal> {
    let (records, _) = find_dead_letters(shared, sel)?;
    let keys: Vec<String> = records.into_iter().map(|(k, _)| k).collect();
    let items = shared
        .store
        .redrive_dead_letters(&keys)
        .map_err(store_err)?;
    let redriven: Vec<&str> = items.iter().map(|i| i.work_id.as_str()).collect();
    let body = json!({"redriven": items.len(), "command_ids": redriven});
    Stats::add(&shared.stats.outbox_depth, items.len() as u64);
    Stats::add(&shared.stats.dead_letters_redriven, items.len() as u64);
    shared.notices.offer(items);
    Ok(body)
}

/// A stored message's place and when JetStream took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    /// When the stream stored it (ms since the epoch).
    pub at_ms: i64,
}

/// The message at `seq` of `stream` or, if that one is gone (deleted, or aged out of
/// the stream), the first one after it: one request, as the server's `next_by_subj`
/// starts at `seq` itself (the client's own get has no such form, and logs every miss
/// as an error). `None`: the stream holds nothing at or after `seq`.
pub fn published_at_or_after(
    nc: &nats::Connection,
    stream: &str,
    seq: u64,
) -> Result<Option<Published>, PublishedError> {
    let request = json!({"seq": seq, "next_by_subj": ">"}).to_string();
    let subject = format!("$JS.API.STREAM.MSG.GET.{stream}");
    let what = || format!("the first message of {stream} from {seq} on");
    let reply = nc
        .request_timeout(&subject, request, JS_TIMEOUT)
        .map_err(|source| PublishedError::Request {
            what: what(),
            source,
        })?;
    let answer: Value =
        serde_json::from_slice(&reply.data).map_err(|source| PublishedError::Reply {
            what: what(),
            source,
        })?;
    if let Some(error) = answer.get("error") {
        if error["code"] == 404 {
            return Ok(None);
        }
        return Err(PublishedError::Refused {
            what: what(),
            error: error.to_string(),
        });
    }
    let message = &answer["message"];
    let seq = message["seq"]
        .as_u64()
        .ok_or_else(|| PublishedError::NoSeq {
            what: what(),
            answer: answer.to_string(),
        })?;
    let time = message["time"].as_str().unwrap_or_default();
    let at_ms = crate::timefmt::parse_rfc3339_ms(time).map_err(|source| PublishedError::Time {
        what: what(),
        source,
    })?;
    Ok(Some(Published { seq, at_ms }))
}

/// Why [`published_at_or_after`] could not say; each names what it was reading.
#[derive(Debug, thiserror::Error)]
pub enum PublishedError {
    #[error("cannot read {what}: {source}")]
    Request {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot read {what}: {source}")]
    Reply {
        what: String,
        source: serde_json::Error,
    },
    /// The server's JetStream API error, as it sent it.
    #[error("cannot read {what}: {error}")]
    Refused { what: String, error: String },
    #[error("cannot read {what}: no seq in {answer}")]
    NoSeq { what: String, answer: String },
    #[error("cannot read {what}: {source}")]
    Time {
        what: String,
        source: crate::timefmt::TimeError,
    },
}

/// How long a JetStream API request may take (the client's own requests wait 5 s).
const JS_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads each selected message back from its stream and runs it through the pipeline
/// again; answers with what became of each.
pub fn retry_quarantined(
    shared: &Shared,
    js: &nats::jetstream::JetStream,
    sel: &Selection,
) -> Result<Value, Refusal> {
    if !shared.settings.mode.runs_sagas() || shared.intake.is_shutting_down() {
        return Err(Refusal::Conflict(
            "retries need running saga stages (this process runs no sagas, or is draining)".into(),
        ));
    }
    let (records, _) = find_quarantined(shared, sel)?;
    let streams = &shared.settings.streams;
    let saga_streams = [&streams.aggregate_events, &streams.workflow_events];
    let deadline = Instant::now() + RETRY_WAIT;
    let mut waiting = Vec::new();
    let mut results = Vec::new();
    for (key, record) in records {
        let report = |outcome: &str, reason: String| json!({"key": key, "stream": record.stream, "seq": record.seq, "outcome": outcome, "reason": reason});
        if !saga_streams.contains(&&record.stream) {
            let reason = format!(
                "only saga messages can be retried; this one came from {}",
                record.stream
            );
            results.push(report("not_retryable", reason));
            continue;
        }
        let msg = match js.get_message(&record.stream, record.seq) {
            Ok(m) => m,
            Err(e) => {
                let reason = format!("the stream no longer gives it: {e}");
                results.push(report("unavailable", reason));
                continue;
            }
        };
        let (reply, answer) = crossbeam_channel::bounded(1);
        let retry = Retry {
            msg: nats::Message::new(&msg.subject, None, &msg.data, msg.headers),
            info: MessageInfo {
                stream: record.stream.clone(),
                seq: record.seq,
                delivered: 1,
                forgiven: 0,
                subject: msg.subject.clone(),
                published_ms: (msg.time.unix_timestamp_nanos() / 1_000_000) as i64,
            },
            ticket: RetryTicket::new(key.clone(), reply),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if shared.retries.send_timeout(retry, left).is_err() {
            results.push(report(
                "not_started",
                "the pipeline is busy or stopping".into(),
            ));
            continue;
        }
        waiting.push((key, record, answer));
    }
    for (key, record, answer) in waiting {
        let left = deadline.saturating_duration_since(Instant::now());
        let outcome = match answer.recv_timeout(left) {
            Ok(outcome) => {
                if let RetryOutcome::Applied { .. } = outcome {
                    Stats::add(&shared.stats.quarantine_retried, 1);
                }
                serde_json::to_value(&outcome).unwrap_or(Value::Null)
            }
            Err(_) => {
                json!({"outcome": "not_finished", "reason": "the pipeline let it go (storage stopped, or a drain began) or it took too long; its record is unchanged"})
            }
        };
        let mut entry = json!({"key": key, "stream": record.stream, "seq": record.seq});
        if let (Some(e), Some(o)) = (entry.as_object_mut(), outcome.as_object()) {
            e.extend(o.clone());
        }
        results.push(entry);
    }
    Ok(json!({"results": results}))
}
