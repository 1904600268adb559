//! `runner shadow`: before promoting a saga version, replay a recorded range of a stream
//! through the version in force and the candidate side by side and report where their
//! transitions differ. Read-only towards everything that matters: the events are read
//! through a consumer of its own that never acks (deleted afterwards, or by the server
//! after 5 idle minutes if this process dies first), each side runs the
//! real decode and executor over a throwaway store of its own, and nothing is published.
//!
//! Instances start empty on both sides: an event for an instance that did not start in
//! the range is "no instance" on both, and so never a difference.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nats::jetstream::{
    AckPolicy, BatchOptions, ConsumerConfig, DeliverPolicy, PullSubscribeOptions,
};
use serde_json::{json, Value};

use crate::manifest::SagaCatalog;
use crate::saga::{decode, DecodeConfig, Decoded, Executor, MessageInfo};
use crate::settings::Settings;
use crate::store::{CommitBatch, Store, Transition};
use crate::temp_dir::TempDir;
use crate::types::SagaName;

/// Most events one run reads unless `--limit` says otherwise.
pub const DEFAULT_LIMIT: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub config: Option<PathBuf>,
    pub saga: String,
    /// The candidate version (in `candidate`, or in the configured manifests).
    pub version: u32,
    pub candidate: Option<PathBuf>,
    /// "aggregate" or "workflow".
    pub stream: String,
    pub from: u64,
    pub to: Option<u64>,
    pub limit: u64,
}

/// One transition on which the two sides disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub seq: u64,
    pub correlation: String,
    /// `path: current → candidate` lines.
    pub lines: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub events: u64,
    pub compared: u64,
    pub differences: Vec<Difference>,
}

/// Runs the comparison; the error is a message for the operator.
pub fn run(opts: &Options, settings: &Settings) -> Result<Report, String> {
    let saga = SagaName::new(&opts.saga).map_err(|e| e.to_string())?;
    let current = crate::pipeline::load_catalog(settings).map_err(|e| e.to_string())?;
    let current_version = current
        .get(&saga)
        .map(|s| s.version)
        .ok_or_else(|| format!("saga {saga} is not in the configured manifests"))?;
    let mut candidate = match &opts.candidate {
        Some(path) => SagaCatalog::load(
            std::slice::from_ref(path),
            settings.programs.gas,
            &crate::pipeline::limits(settings),
        )
        .map_err(|e| e.to_string())?,
        None => crate::pipeline::load_catalog(settings).map_err(|e| e.to_string())?,
    };
    candidate
        .pin(&saga, opts.version)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "shadow: saga {saga}, version {current_version} (in force) against version {} (candidate), stream {} from {}",
        opts.version, opts.stream, opts.from
    );
    let prefix = &settings.streams.command_prefix;
    let mut sides = [Side::new(current, prefix)?, Side::new(candidate, prefix)?];
    let cfg = DecodeConfig::from_settings(settings);
    let mut report = Report::default();
    let stream = match opts.stream.as_str() {
        "aggregate" => settings.streams.aggregate_events.clone(),
        "workflow" => settings.streams.workflow_events.clone(),
        other => {
            return Err(format!(
                "--stream must be aggregate or workflow (got {other:?})"
            ))
        }
    };
    let nc = crate::nats_io::ClientOptions::load(&settings.nats)
        .and_then(|options| {
            crate::nats_io::connect_linked(&options, "runner-shadow", Default::default())
        })
        .map_err(|e| e.to_string())?;
    read_range(&nc, &stream, opts, |msg, seq| {
        report.events += 1;
        let info = MessageInfo {
            stream: stream.clone(),
            seq,
            delivered: 1,
            forgiven: 0,
            subject: msg.subject.clone(),
            published_ms: 0,
        };
        let tenant = crate::nats_io::header(msg, crate::envelope::header::TENANT);
        let [current, candidate] = &mut sides;
        let a = current.apply(&cfg, &info, tenant, &msg.data, &saga)?;
        let b = candidate.apply(&cfg, &info, tenant, &msg.data, &saga)?;
        compare(seq, &a, &b, &mut report);
        Ok(())
    })?;
    Ok(report)
}

/// Prints the report; the exit code is 0 without differences, 1 with.
pub fn print(report: &Report) -> i32 {
    for d in &report.differences {
        println!("seq {} instance {}:", d.seq, d.correlation);
        for line in &d.lines {
            println!("    {line}");
        }
    }
    println!(
        "shadow: {} events read, {} transitions compared, {} differ",
        report.events,
        report.compared,
        report.differences.len()
    );
    i32::from(!report.differences.is_empty())
}

/// One side of the comparison: a catalog, an executor and a throwaway store.
struct Side {
    catalog: Arc<SagaCatalog>,
    executor: Executor,
    store: Store,
    _dir: TempDir,
    batch: u64,
}

impl Side {
    fn new(catalog: SagaCatalog, command_prefix: &str) -> Result<Side, String> {
        let dir = TempDir::new("shadow").map_err(|e| e.to_string())?;
        let store = Store::open(&dir.path().join("store"), 4 << 30).map_err(|e| e.to_string())?;
        Ok(Side {
            catalog: Arc::new(catalog),
            executor: Executor::new(command_prefix),
            store,
            _dir: dir,
            batch: 0,
        })
    }

    /// Decodes, executes and commits one message; returns the saga's transitions.
    fn apply(
        &mut self,
        cfg: &DecodeConfig,
        info: &MessageInfo,
        tenant: Option<&str>,
        body: &[u8],
        saga: &SagaName,
    ) -> Result<Vec<Transition>, String> {
        let Decoded::Event(ev) = decode(cfg, &self.catalog, info, tenant, body) else {
            return Ok(Vec::new());
        };
        self.batch += 1;
        self.executor.begin_batch(0, self.batch - 1);
        let outcome = {
            let reader = self.store.reader().map_err(|e| e.to_string())?;
            self.executor
                .execute(&reader, &ev, info, self.batch)
                .map_err(|e| e.to_string())?
        };
        self.store
            .commit(&CommitBatch {
                transitions: outcome.transitions.clone(),
                ..Default::default()
            })
            .map_err(|e| e.to_string())?;
        Ok(outcome
            .transitions
            .into_iter()
            .filter(|t| &t.saga == saga)
            .collect())
    }
}

/// What users see of a transition: the comparison's unit.
fn view(t: &Transition) -> Value {
    json!({
        "status": t.record.status,
        "state": t.record.state,
        "commands": t.outbox.iter().map(|o| o.envelope.to_value()).collect::<Vec<_>>(),
        "schedules": t.schedules.iter().map(|s| json!({"name": s.name, "due_at_ms": s.due_at_ms, "payload": s.payload})).collect::<Vec<_>>(),
        "cancel": t.cancel,
    })
}

fn compare(seq: u64, current: &[Transition], candidate: &[Transition], report: &mut Report) {
    let mut correlations: Vec<&str> = current
        .iter()
        .chain(candidate)
        .map(|t| t.correlation.as_str())
        .collect();
    correlations.sort_unstable();
    correlations.dedup();
    for corr in correlations {
        report.compared += 1;
        let of = |side: &[Transition]| {
            side.iter()
                .find(|t| t.correlation.as_str() == corr)
                .map(view)
                .unwrap_or(Value::Null)
        };
        let (a, b) = (of(current), of(candidate));
        let mut lines = Vec::new();
        diff(&a, &b, "", &mut lines);
        if !lines.is_empty() {
            report.differences.push(Difference {
                seq,
                correlation: corr.to_string(),
                lines,
            });
        }
    }
}

/// Every path where `a` and `b` differ, as `path: a → b`.
fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let at = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &at,
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(p, q, &format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(format!(
            "{}: {} → {}",
            if path.is_empty() {
                "(transition)"
            } else {
                path
            },
            clip(a),
            clip(b)
        )),
        _ => {}
    }
}

fn clip(v: &Value) -> String {
    crate::envelope::clip_to(&v.to_string(), 200)
}

/// Calls `f` with each message of the stream from `opts.from` up to `opts.to` (or the
/// end, or `opts.limit` messages), through a consumer of its own that acks nothing.
fn read_range(
    nc: &nats::Connection,
    stream: &str,
    opts: &Options,
    mut f: impl FnMut(&nats::Message, u64) -> Result<(), String>,
) -> Result<(), String> {
    let js = nats::jetstream::new(nc.clone());
    let err = |e: std::io::Error| format!("reading {stream}: {e}");
    let last = js.stream_info(stream).map_err(err)?.state.last_seq;
    let end = opts.to.unwrap_or(last).min(last);
    if opts.from == 0 || opts.from > end {
        return Err(format!(
            "--from must be between 1 and the range's end {end} (the stream's last sequence is {last})"
        ));
    }
    let durable = format!(
        "runner-shadow-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    js.add_consumer(
        stream,
        ConsumerConfig {
            durable_name: Some(durable.clone()),
            deliver_policy: DeliverPolicy::ByStartSeq,
            opt_start_seq: Some(opts.from),
            // Pull consumers need explicit acks; this one never sends any (it is deleted
            // afterwards), so nothing may limit or redeliver what it hands out.
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: -1,
            ack_wait: Duration::from_secs(3600),
            // The server removes it by itself if this process dies before deleting it.
            inactive_threshold: Duration::from_secs(300),
            ..Default::default()
        },
    )
    .map_err(err)?;
    let result = (|| {
        let sub = js
            .pull_subscribe_with_options(
                ">",
                &PullSubscribeOptions::new()
                    .bind_stream(stream.to_string())
                    .durable_name(durable.clone()),
            )
            .map_err(err)?;
        let mut read = 0u64;
        let mut quiet_since = Instant::now();
        while read < opts.limit {
            sub.request_batch(BatchOptions {
                batch: 256,
                expires: Some(Duration::from_millis(500).as_nanos() as usize),
                no_wait: false,
            })
            .map_err(err)?;
            let mut got = 0;
            // The pull request expires after 500 ms with a status message; the timeout
            // covers a request lost on a reconnect.
            while let Ok(msg) = sub.next_timeout(Duration::from_secs(2)) {
                if crate::nats_io::is_status(&msg) {
                    break;
                }
                got += 1;
                let seq = msg.jetstream_message_info().map_or(0, |i| i.stream_seq);
                if seq > end {
                    return Ok(());
                }
                f(&msg, seq)?;
                read += 1;
                if seq == end || read >= opts.limit {
                    return Ok(());
                }
            }
            if got > 0 {
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() > Duration::from_secs(5) {
                return Err(format!("{stream} stopped delivering before sequence {end}"));
            }
        }
        Ok(())
    })();
    if let Err(e) = js.delete_consumer(stream, &durable) {
        eprintln!(
            "warning: could not delete consumer {durable} of {stream} ({e}); the server removes it after 5 idle minutes"
        );
    }
    result
}
