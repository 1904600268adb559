//! The latency floor (issue 24): the workflow phase's three serial hops done by raw
//! primitives with no Runner logic, at the same offered rate, count and warm-up, so the
//! workflow's latency is judged against a figure measured in the same run on the same
//! machine (whose speed moves 2.5x between hours) instead of an absolute one.
//!
//! Each hop is one thread pulling its stream's durable pull consumer the way the fetch
//! stage does (expiring pull requests of `consumer.fetch_batch`, whatever has arrived
//! taken at once), and for what one pull brought: one LMDB write transaction holding a
//! small put per message, committed durably (LMDB's default sync); then per message a
//! JetStream publish to the next hop's stream awaiting its ack (hops 1 and 2), or a POST
//! of the message to the stand-in Gateway (hop 3); then the pulled messages are acked.
//! The message body travels unchanged: no JSON is read, no program runs, nothing goes
//! through an outbox.
//!
//! Primitives used: the `nats` client (streams, consumers, pulls, acks); `lmdb-rkv` on a
//! fresh environment of its own in the sandbox directory, shared by the three hops as
//! the workflow's hops share one store (so commits wait for each other's write lock and
//! fsync, as theirs do); `ureq` for the POST, one agent with keep-alive. Publishes go
//! through [`Publisher`] (pipelined, all of a pull's publishes outstanding at once,
//! then awaited), as the Runner publishes, and a pull request is flushed at once by a
//! [`Flusher`] kick as the fetch stage does: without them the client would hold each
//! for up to 5 ms and the floor would measure the client's buffering instead.
//!
//! Orders are published exactly as the workflow phase publishes them (its paced
//! publisher, the same `OrderPlaced` bodies) on the floor's own subjects; latency is
//! from an order's publish to the Gateway receiving it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lmdb::{Database, Environment, EnvironmentFlags, Transaction, WriteFlags};
use nats::jetstream::{
    AckPolicy, BatchOptions, ConsumerConfig, DeliverPolicy, JetStream, PullSubscribeOptions,
    PullSubscription, ReplayPolicy, StorageType, StreamConfig,
};
use serde_json::Value;

use super::workflow::publish_paced;
use super::{cpu_time, ms, quantile, server_cpu, us};
use crate::dev::{wait_until, FakeGateway, Sandbox};
use crate::nats_io::{Flusher, Publisher};

/// What the floor measured, over the `n` orders after the warm-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Floor {
    pub completed: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
    /// This process's CPU per order: the hops, the order publisher and the stand-in
    /// Gateway, as the workflow phase's figure includes them too.
    pub cpu_per_workflow: Duration,
    /// nats-server's CPU per order over the same window, when the bench started it.
    pub server_per_workflow: Option<Duration>,
}

/// The workflow phase's figures set beside the floor's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beside {
    pub p50: Duration,
    pub p99: Duration,
    /// CPU per workflow of every process: the Runner, the bench process (publisher and
    /// stand-in Gateway) and nats-server; `None` without nats-server's figure.
    pub cpu_all: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    #[error("floor: {what}: {source}")]
    Nats {
        what: String,
        source: std::io::Error,
    },
    #[error("floor: LMDB: {0}")]
    Lmdb(#[from] lmdb::Error),
    #[error("floor: cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("floor: hop {hop}: {what}")]
    Hop { hop: usize, what: String },
    #[error("floor: {0}")]
    Setup(String),
    #[error("floor: {0}")]
    Incomplete(String),
}

/// The goal of issue 24 at 1,000 workflows/s: the workflow's p50 at most this times
/// the floor's p50, and its p99 at most [`P99_GOAL`] times the floor's p99.
pub const P50_GOAL: f64 = 1.5;
pub const P99_GOAL: f64 = 2.0;

/// How long one wait for a pulled message blocks, so a stop is noticed promptly.
const POLL: Duration = Duration::from_millis(100);

pub fn run(sandbox: &Sandbox, n: u64, rate: u64) -> Result<Floor, FloorError> {
    let gateway = FakeGateway::accepting()
        .map_err(|e| FloorError::Setup(format!("stand-in gateway: {e}")))?;
    let nc = sandbox.connect().map_err(FloorError::Setup)?;
    let js = nats::jetstream::new(nc.clone());
    // Unique per run, so a shared server never holds a leftover of an earlier run, and
    // nothing of the workflow phase's streams and consumers is touched.
    let token = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let streams: Vec<Lane> = ["IN", "CMD", "RES"]
        .iter()
        .map(|name| Lane {
            stream: format!("RUNNER_FLOOR_{name}_{token}"),
            subject: format!("runnerfloor.{token}.{}", name.to_ascii_lowercase()),
        })
        .collect();
    let result = measure(sandbox, &nc, &js, &gateway, &streams, &token, n, rate);
    for lane in &streams {
        let _ = js.delete_stream(&lane.stream);
    }
    result
}

/// One stream of the floor and the subjects it captures (`{subject}.>`).
struct Lane {
    stream: String,
    subject: String,
}

#[allow(clippy::too_many_arguments)]
fn measure(
    sandbox: &Sandbox,
    nc: &nats::Connection,
    js: &JetStream,
    gateway: &FakeGateway,
    lanes: &[Lane],
    token: &str,
    n: u64,
    rate: u64,
) -> Result<Floor, FloorError> {
    let settings = &sandbox.settings;
    for lane in lanes {
        create_lane(js, lane, settings)?;
    }
    let env = open_env(&sandbox.dir.path().join("floor-store"))?;
    let db = env.open_db(None)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut hops = Vec::with_capacity(3);
    for (i, lane) in lanes.iter().enumerate() {
        let out = match lanes.get(i + 1) {
            Some(next) => Out::Publish {
                publisher: Box::new(
                    Publisher::new(nc, settings.relay.publish_window, Duration::from_secs(5), 3)
                        .map_err(|source| nats_err("publisher", source))?,
                ),
                subject: format!("{}.order", next.subject),
                token: token.to_string(),
            },
            None => Out::Post {
                agent: ureq::AgentBuilder::new()
                    .timeout(Duration::from_millis(settings.relay.gateway_timeout_ms))
                    .build(),
                url: gateway.url().to_string(),
            },
        };
        let hop = Hop {
            number: i + 1,
            sub: subscribe(js, lane)?,
            flusher: Flusher::start(nc).map_err(|source| nats_err("flusher", source))?,
            batch: settings.consumer.fetch_batch,
            wait: Duration::from_millis(settings.consumer.fetch_wait_ms),
            env: env.clone(),
            db,
            out,
        };
        let stop = stop.clone();
        hops.push(
            std::thread::Builder::new()
                .name(format!("floor-hop-{}", i + 1))
                .spawn(move || hop.run(&stop))
                .map_err(FloorError::Thread)?,
        );
    }
    let outcome = drive(sandbox, gateway, &lanes[0], n, rate, &hops);
    stop.store(true, Ordering::Relaxed);
    for (i, hop) in hops.into_iter().enumerate() {
        match hop.join() {
            Ok(Ok(())) => {}
            // A hop's own error says more than "not all completed".
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(FloorError::Hop {
                    hop: i + 1,
                    what: "its thread panicked".into(),
                })
            }
        }
    }
    outcome
}

/// Publishes the warm-up and the measured orders at `rate` and waits for them at the
/// Gateway; the latencies of the measured ones.
fn drive(
    sandbox: &Sandbox,
    gateway: &FakeGateway,
    first: &Lane,
    n: u64,
    rate: u64,
    hops: &[JoinHandle<Result<(), FloorError>>],
) -> Result<Floor, FloorError> {
    let nc = sandbox.connect().map_err(FloorError::Setup)?;
    let mut publisher = Publisher::new(&nc, 256, Duration::from_secs(5), 3)
        .map_err(|source| nats_err("order publisher", source))?;
    let prefix = format!("{}.", first.subject);
    // The workflow phase's warm-up, for the same reason (its doc comment).
    let warmup = (rate / 2).clamp(50, 2_500);
    let hop_ended = || hops.iter().any(JoinHandle::is_finished);
    publish_paced(
        &mut publisher,
        0..warmup,
        rate,
        "floorwarm",
        &prefix,
        |_, _| !hop_ended(),
    )
    .map_err(FloorError::Setup)?;
    let arrived = |count: u64| {
        wait_until(Duration::from_secs(60), || {
            gateway.count() as u64 >= count || hop_ended()
        }) && gateway.count() as u64 >= count
    };
    if !arrived(warmup) {
        return Err(FloorError::Incomplete(format!(
            "{} of {warmup} warm-up orders reached the Gateway",
            gateway.count()
        )));
    }
    let mut sent_at: HashMap<String, Instant> = HashMap::with_capacity(n as usize);
    let server_before = server_cpu(sandbox);
    let cpu_before = cpu_time();
    publish_paced(
        &mut publisher,
        warmup..warmup + n,
        rate,
        "floor",
        &prefix,
        |_, order| {
            sent_at.insert(order.to_string(), Instant::now());
            !hop_ended()
        },
    )
    .map_err(FloorError::Setup)?;
    let failed = publisher
        .finish()
        .iter()
        .filter(|c| c.result.is_err())
        .count();
    if failed > 0 {
        return Err(FloorError::Incomplete(format!(
            "{failed} order publishes failed"
        )));
    }
    let all_in = arrived(warmup + n);
    let cpu = cpu_time().saturating_sub(cpu_before);
    let server = server_cpu(sandbox)
        .zip(server_before)
        .map(|(after, before)| after.saturating_sub(before) / n.max(1) as u32);
    if !all_in {
        return Err(FloorError::Incomplete(format!(
            "{} of {n} orders reached the Gateway",
            gateway.count().saturating_sub(warmup as usize)
        )));
    }
    let mut latencies = latencies(&gateway.received(), &sent_at);
    if latencies.len() as u64 != n {
        return Err(FloorError::Incomplete(format!(
            "{} posts matched the {n} orders published",
            latencies.len()
        )));
    }
    latencies.sort();
    Ok(Floor {
        completed: latencies.len(),
        p50: quantile(&latencies, 0.50),
        p99: quantile(&latencies, 0.99),
        p999: quantile(&latencies, 0.999),
        max: quantile(&latencies, 1.0),
        cpu_per_workflow: cpu / n.max(1) as u32,
        server_per_workflow: server,
    })
}

/// Publish → first arrival at the Gateway of every order published at a time in
/// `sent_at` (the warm-up's are not there).
fn latencies(
    received: &[crate::dev::ReceivedCommand],
    sent_at: &HashMap<String, Instant>,
) -> Vec<Duration> {
    let mut first: HashMap<&str, Instant> = HashMap::new();
    for r in received {
        if let Some(order) = r.body.get("aggregate_id").and_then(Value::as_str) {
            let at = first.entry(order).or_insert(r.at);
            *at = (*at).min(r.at);
        }
    }
    first
        .iter()
        .filter_map(|(order, at)| Some(at.saturating_duration_since(*sent_at.get(*order)?)))
        .collect()
}

fn nats_err(what: &str, source: std::io::Error) -> FloorError {
    FloorError::Nats {
        what: what.to_string(),
        source,
    }
}

/// The stream and its durable pull consumer, configured as the Runner's are (file
/// storage, the settings' duplicate window, message age and replicas, explicit acks,
/// the settings' ack wait and `max_ack_pending`).
fn create_lane(
    js: &JetStream,
    lane: &Lane,
    settings: &crate::settings::Settings,
) -> Result<(), FloorError> {
    let window = Duration::from_secs(settings.streams.duplicate_window_secs);
    js.add_stream(StreamConfig {
        name: lane.stream.clone(),
        subjects: vec![format!("{}.>", lane.subject)],
        storage: StorageType::File,
        num_replicas: settings.streams.replicas,
        duplicate_window: window.as_nanos().min(i64::MAX as u128) as i64,
        max_age: Duration::from_secs(settings.streams.max_age_secs),
        ..Default::default()
    })
    .map_err(|source| nats_err(&format!("create stream {}", lane.stream), source))?;
    js.add_consumer(
        lane.stream.as_str(),
        ConsumerConfig {
            durable_name: Some("floor".into()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: settings.ack_wait(),
            max_deliver: -1,
            replay_policy: ReplayPolicy::Instant,
            max_ack_pending: settings.consumer.max_ack_pending,
            max_waiting: 512,
            ..Default::default()
        },
    )
    .map_err(|source| nats_err(&format!("create consumer on {}", lane.stream), source))?;
    Ok(())
}

fn subscribe(js: &JetStream, lane: &Lane) -> Result<PullSubscription, FloorError> {
    let options = PullSubscribeOptions::new()
        .bind_stream(lane.stream.clone())
        .durable_name("floor".into());
    js.pull_subscribe_with_options(&format!("{}.>", lane.subject), &options)
        .map_err(|source| nats_err(&format!("bind consumer on {}", lane.stream), source))
}

/// A fresh LMDB environment with the store's flags (`NO_TLS`, syncing commits).
fn open_env(path: &std::path::Path) -> Result<Arc<Environment>, FloorError> {
    std::fs::create_dir_all(path)
        .map_err(|e| FloorError::Setup(format!("{}: {e}", path.display())))?;
    let env = Environment::new()
        .set_flags(EnvironmentFlags::NO_TLS)
        .set_map_size(1 << 30)
        .open(path)?;
    Ok(Arc::new(env))
}

/// Where a hop sends what it pulled.
enum Out {
    /// To the next hop's stream, on `{subject}`, with `Nats-Msg-Id`s of this run.
    Publish {
        // Boxed: a publisher is many times the size of the other variant.
        publisher: Box<Publisher>,
        subject: String,
        token: String,
    },
    /// To the stand-in Gateway.
    Post { agent: ureq::Agent, url: String },
}

struct Hop {
    number: usize,
    sub: PullSubscription,
    flusher: Flusher,
    batch: usize,
    wait: Duration,
    env: Arc<Environment>,
    db: Database,
    out: Out,
}

impl Hop {
    /// Pull requests, one after the other, until `stop`.
    fn run(mut self, stop: &AtomicBool) -> Result<(), FloorError> {
        while !stop.load(Ordering::Relaxed) {
            self.pull(stop)?;
        }
        Ok(())
    }

    /// One expiring pull request; what arrives is handled as it arrives, as the fetch
    /// stage forwards it, until the request is filled or expires.
    fn pull(&mut self, stop: &AtomicBool) -> Result<(), FloorError> {
        self.sub
            .request_batch(BatchOptions {
                batch: self.batch,
                expires: Some(self.wait.as_nanos() as usize),
                no_wait: false,
            })
            .map_err(|e| self.fail(format!("pull request: {e}")))?;
        self.flusher.kick();
        let deadline = Instant::now() + self.wait + Duration::from_millis(50);
        let mut remaining = self.batch;
        while remaining > 0 && !stop.load(Ordering::Relaxed) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ok(());
            };
            let first = match self.sub.next_timeout(POLL.min(left)) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                // The request expired (408).
                Err(_) => return Ok(()),
            };
            if let Some(ended) = self.status(&first) {
                return ended;
            }
            let mut msgs = vec![first];
            let mut ended = None;
            while msgs.len() < remaining {
                match self.sub.try_next() {
                    Some(m) => match self.status(&m) {
                        Some(end) => {
                            ended = Some(end);
                            break;
                        }
                        None => msgs.push(m),
                    },
                    None => break,
                }
            }
            remaining -= msgs.len();
            self.handle(&msgs)?;
            if let Some(end) = ended {
                return end;
            }
        }
        Ok(())
    }

    /// For a status message, how the pull ended: 404 and 408 end it normally; any
    /// other is this hop's failure (nothing in a healthy run sends one).
    fn status(&self, msg: &nats::Message) -> Option<Result<(), FloorError>> {
        if !crate::nats_io::is_status(msg) {
            return None;
        }
        let code = crate::nats_io::header(msg, "Status").unwrap_or_default();
        if code == "404" || code == "408" {
            return Some(Ok(()));
        }
        let description = crate::nats_io::header(msg, "Description").unwrap_or_default();
        Some(Err(self.fail(format!(
            "pull ended with status {code} {description}"
        ))))
    }

    /// One durable LMDB commit for the batch, then each message sent on (all publishes
    /// awaited), then all acked.
    fn handle(&mut self, msgs: &[nats::Message]) -> Result<(), FloorError> {
        let seqs: Vec<u64> = msgs
            .iter()
            .map(|m| {
                m.jetstream_message_info()
                    .map(|info| info.stream_seq)
                    .ok_or_else(|| self.fail("a pulled message without JetStream metadata"))
            })
            .collect::<Result<_, _>>()?;
        let mut txn = self.env.begin_rw_txn()?;
        for seq in &seqs {
            let key = format!("floor:{}:{seq}", self.number);
            txn.put(self.db, &key, &seq.to_be_bytes(), WriteFlags::empty())?;
        }
        txn.commit()?;
        let hop = self.number;
        match &mut self.out {
            Out::Publish {
                publisher,
                subject,
                token,
            } => {
                for (m, seq) in msgs.iter().zip(&seqs) {
                    let id = format!("floor-{token}-{hop}-{seq}");
                    publisher.publish(
                        *seq,
                        subject,
                        &id,
                        nats::header::HeaderMap::new(),
                        m.data.clone(),
                    );
                }
                let failed = publisher.finish().into_iter().find(|c| c.result.is_err());
                if let Some(c) = failed {
                    return Err(self.fail(format!("publish of #{}: {:?}", c.tag, c.result)));
                }
            }
            Out::Post { agent, url } => {
                for (m, seq) in msgs.iter().zip(&seqs) {
                    let answer = agent
                        .post(url)
                        .set("content-type", "application/json")
                        .set("idempotency-key", &format!("floor-{hop}-{seq}"))
                        .send_bytes(&m.data);
                    match answer {
                        // Read to its end, so the connection goes back to the pool.
                        Ok(resp) => {
                            let _ = std::io::copy(&mut resp.into_reader(), &mut std::io::sink());
                        }
                        Err(e) => return Err(self.fail(format!("POST: {e}"))),
                    }
                }
            }
        }
        for m in msgs {
            m.ack().map_err(|e| self.fail(format!("ack: {e}")))?;
        }
        Ok(())
    }

    fn fail(&self, what: impl Into<String>) -> FloorError {
        FloorError::Hop {
            hop: self.number,
            what: what.into(),
        }
    }
}

/// Prints the section's lines.
pub fn print(floor: &Floor, n: u64, rate: u64) {
    println!();
    println!(
        "floor: {n} orders at {rate}/s through the workflow's three hops by raw primitives (pull, LMDB put + sync commit, JetStream publish awaiting its ack or the Gateway POST, ack); no Runner code"
    );
    let server = floor
        .server_per_workflow
        .map_or(String::new(), |s| format!(", nats-server {} µs", us(s)));
    println!(
        "  completed {}; latency p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms; CPU per workflow: this process {} µs{server}",
        floor.completed,
        ms(floor.p50),
        ms(floor.p99),
        ms(floor.p999),
        ms(floor.max),
        us(floor.cpu_per_workflow)
    );
}

/// Prints the workflow's p50, p99 and CPU next to the floor's, their ratios and the
/// goal.
pub fn print_beside(floor: &Floor, workflow: &Beside) {
    for line in beside(floor, workflow) {
        println!("{line}");
    }
}

/// The lines of [`print_beside`].
fn beside(floor: &Floor, workflow: &Beside) -> Vec<String> {
    let Beside { p50, p99, cpu_all } = *workflow;
    let ratio = |a: Duration, b: Duration| match b.as_secs_f64() {
        f if f > 0.0 => format!("{:.2}x", a.as_secs_f64() / f),
        _ => "–".to_string(),
    };
    let within = |a: Duration, b: Duration, goal: f64| {
        if a.as_secs_f64() <= b.as_secs_f64() * goal {
            "met"
        } else {
            "missed"
        }
    };
    let mut lines = vec![
        format!(
            "  against the floor: p50 {} ms vs floor {} ms ({}), p99 {} ms vs floor {} ms ({})",
            ms(p50),
            ms(floor.p50),
            ratio(p50, floor.p50),
            ms(p99),
            ms(floor.p99),
            ratio(p99, floor.p99)
        ),
        format!(
            "  goal at 1,000 workflows/s: p50 <= {P50_GOAL}x the floor's ({}), p99 <= {P99_GOAL}x ({})",
            within(p50, floor.p50, P50_GOAL),
            within(p99, floor.p99, P99_GOAL)
        ),
    ];
    // Both sides include a publisher and a stand-in Gateway; neither includes the
    // other's idle processes.
    if let Some((all, server)) = cpu_all.zip(floor.server_per_workflow) {
        let floor_all = floor.cpu_per_workflow + server;
        lines.push(format!(
            "  CPU per workflow, every process: {} µs (Runner, nats-server, bench) vs floor {} µs (floor process, nats-server) ({})",
            us(all),
            us(floor_all),
            ratio(all, floor_all)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor(p50_ms: u64, p99_ms: u64) -> Floor {
        Floor {
            completed: 100,
            p50: Duration::from_millis(p50_ms),
            p99: Duration::from_millis(p99_ms),
            p999: Duration::from_millis(p99_ms + 1),
            max: Duration::from_millis(p99_ms + 2),
            cpu_per_workflow: Duration::from_micros(300),
            server_per_workflow: Some(Duration::from_micros(200)),
        }
    }

    fn workflow(p50_ms: u64, p99_ms: u64, cpu_all_us: Option<u64>) -> Beside {
        Beside {
            p50: Duration::from_millis(p50_ms),
            p99: Duration::from_millis(p99_ms),
            cpu_all: cpu_all_us.map(Duration::from_micros),
        }
    }

    #[test]
    fn quantiles_are_read_as_the_workflow_phase_reads_them() {
        let sorted: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        assert_eq!(quantile(&sorted, 0.5), Duration::from_millis(501));
        assert_eq!(quantile(&sorted, 0.99), Duration::from_millis(991));
        assert_eq!(quantile(&sorted, 0.999), Duration::from_millis(1000));
        assert_eq!(quantile(&sorted, 1.0), Duration::from_millis(1000));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn beside_prints_both_figures_their_ratios_and_the_goal() {
        let lines = beside(&floor(4, 10), &workflow(6, 25, Some(1250)));
        let [figures, goal, cpu] = &lines[..] else {
            panic!("three lines expected: {lines:?}");
        };
        assert_eq!(
            figures,
            "  against the floor: p50 6.00 ms vs floor 4.00 ms (1.50x), p99 25.00 ms vs floor 10.00 ms (2.50x)"
        );
        assert_eq!(
            goal,
            "  goal at 1,000 workflows/s: p50 <= 1.5x the floor's (met), p99 <= 2x (missed)"
        );
        assert_eq!(
            cpu,
            "  CPU per workflow, every process: 1250 µs (Runner, nats-server, bench) vs floor 500 µs (floor process, nats-server) (2.50x)"
        );
    }

    #[test]
    fn without_a_server_figure_no_cpu_line_is_printed() {
        assert_eq!(beside(&floor(4, 10), &workflow(6, 25, None)).len(), 2);
        let mut unmeasured = floor(4, 10);
        unmeasured.server_per_workflow = None;
        assert_eq!(beside(&unmeasured, &workflow(6, 25, Some(900))).len(), 2);
    }

    #[test]
    fn a_zero_floor_has_no_ratio() {
        let lines = beside(&floor(0, 0), &workflow(1, 0, None));
        let [figures, goal] = &lines[..] else {
            panic!("two lines expected: {lines:?}");
        };
        assert!(figures.contains("(–)"), "{figures}");
        assert!(goal.contains("p50 <= 1.5x the floor's (missed)"), "{goal}");
        assert!(goal.contains("p99 <= 2x (met)"), "{goal}");
    }

    #[test]
    fn latencies_count_each_measured_order_once_from_its_first_arrival() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let post = |order: &str, ms: u64| crate::dev::ReceivedCommand {
            path: "/".into(),
            headers: Vec::new(),
            body: serde_json::json!({ "aggregate_id": order }),
            at: at(ms),
        };
        // o-2 arrived twice (a retried POST); o-0 is a warm-up order, not measured.
        let received = [
            post("o-0", 1),
            post("o-1", 5),
            post("o-2", 9),
            post("o-2", 7),
        ];
        let sent_at = HashMap::from([("o-1".to_string(), at(2)), ("o-2".to_string(), at(3))]);
        let mut got = latencies(&received, &sent_at);
        got.sort();
        assert_eq!(got, [Duration::from_millis(3), Duration::from_millis(4)]);
    }
}
