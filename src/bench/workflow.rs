//! The whole order workflow at a steady rate: `OrderPlaced` → `charge_card` effect
//! (`noop` provider) → its `succeeded` result → the saga completes and its `MarkPaid`
//! command reaches the Gateway (a local stand-in). Three hops through JetStream, each
//! behind a group commit to LMDB, in one `combined` process. Latency is per workflow:
//! from the `OrderPlaced` publish to the Gateway receiving its `MarkPaid`.
//!
//! Half a second of orders at the same rate goes first and is not counted. Without it
//! the first run after the machine sat idle had its p99 at 60–150 ms, every slow
//! workflow within the first 250 ms (the next run, at once after, 10–15 ms): start-up,
//! not the steady state the rate asks about.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::{cpu_time, order_placed, peak_rss_mib, per_event_by_thread, proc_cpu, thread_cpu};
use crate::dev::{read_all, wait_until, FakeGateway, Sandbox};
use crate::envelope::header;
use crate::nats_io::Publisher;
use crate::store::Store;

/// What the workflow phase measured.
pub struct Workflows {
    /// Orders sent first, at the same rate, and not counted.
    pub warmup: u64,
    pub completed: usize,
    pub rate: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
    pub cpu_per_workflow: Duration,
    /// nats-server's CPU per workflow, when this run started the server.
    pub server_per_workflow: Option<Duration>,
    /// (p50, p99) of each hop, read from the streams' own timestamps: OrderPlaced
    /// publish → charge command stored; command stored → result stored; result stored →
    /// MarkPaid at the Gateway. `None` when the streams could not be read.
    pub hops: Option<[(Duration, Duration); 3]>,
    /// CPU per workflow of each thread (by name), the busiest first.
    pub by_thread: Vec<(String, Duration)>,
    /// Where the saga hops' time went, over the measured orders.
    pub stages: Stages,
}

/// The saga side's group commits and relay over the measured orders, and the disk's
/// sync time just before them: a hop's latency moves with these from hour to hour.
pub struct Stages {
    pub commits: u64,
    pub transitions: u64,
    /// (p50, p99) of one group commit, its acks included.
    pub commit: Option<(Duration, Duration)>,
    /// Share of the measured time the commit thread spent in group commits.
    pub commit_busy: f64,
    /// (p50, p99) from a transition's commit to its item's confirmation by its
    /// destination (JetStream's publish ack, or the Gateway's answer).
    pub relay: Option<(Duration, Duration)>,
    /// p50 of one 4 KiB write and `fdatasync` in the store's directory, the pipeline
    /// idle (after the warm-up).
    pub idle_sync: Option<Duration>,
}

pub fn run(sandbox: &Sandbox, n: u64, rate: u64) -> Result<Workflows, String> {
    let gateway = FakeGateway::accepting().map_err(|e| format!("stand-in gateway: {e}"))?;
    let mut settings = sandbox.settings.clone();
    settings.mode = crate::settings::Mode::Combined;
    settings.relay.gateway_url = gateway.url().to_string();
    settings.manifests.effects = vec![noop_effects(sandbox, "bench-workflow-effects.json")?];
    let store = Store::open(&sandbox.dir.path().join("workflow-store"), 4 << 30)
        .map(std::sync::Arc::new)
        .map_err(|e| e.to_string())?;
    let pipeline = sandbox.start_pipeline_with(settings.clone(), store)?;

    let nc = sandbox.connect()?;
    let mut publisher =
        Publisher::new(&nc, 256, Duration::from_secs(5), 3).map_err(|e| e.to_string())?;
    let warmup = (rate / 2).clamp(50, 2_500);
    let mut warm_sent = HashMap::with_capacity(warmup as usize);
    publish_paced(&mut publisher, 0..warmup, rate, "warm", "", |_, order| {
        warm_sent.insert(order.to_string(), Instant::now());
        true
    })?;
    if !wait_until(Duration::from_secs(60), || gateway.count() as u64 >= warmup) {
        return Err(format!(
            "{} of {warmup} warm-up workflows completed within 60 s",
            gateway.count()
        ));
    }
    let idle_sync = idle_sync(sandbox.dir.path())
        .map_err(|e| log::warn!(error = e.as_str(); "the disk's sync time not measured"))
        .ok();
    let mut sent_at: HashMap<String, Instant> = HashMap::with_capacity(n as usize);
    let server_stat = sandbox
        .server
        .as_ref()
        .and_then(|s| s.pid())
        .map(|pid| format!("/proc/{pid}/stat"));
    let server_cpu = || server_stat.as_deref().map(proc_cpu);
    let cpu_before = cpu_time();
    let server_before = server_cpu();
    let threads_before = thread_cpu();
    let (shared, stats_before) = (pipeline.shared().clone(), pipeline.stats());
    let commit_before = shared.stage_latency.commit.recorded();
    let relay_before = shared.relay_latency.recorded();
    let started = Instant::now();
    let wall_started = SystemTime::now();
    publish_paced(
        &mut publisher,
        warmup..warmup + n,
        rate,
        "wf",
        "",
        |_, order| {
            sent_at.insert(order.to_string(), Instant::now());
            true
        },
    )?;
    publisher.finish();
    let deadline = Duration::from_secs(60);
    let all_in = wait_until(deadline, || gateway.count() as u64 >= warmup + n);
    let cpu = cpu_time().saturating_sub(cpu_before);
    let server = server_cpu()
        .zip(server_before)
        .map(|(after, before)| after.saturating_sub(before) / n.max(1) as u32);
    let by_thread = per_event_by_thread(&threads_before, thread_cpu(), n);
    let commit = shared.stage_latency.commit.recorded().since(&commit_before);
    let relay = shared.relay_latency.recorded().since(&relay_before);
    let stats = pipeline.stats();
    let p50_p99 = |r: &crate::pipeline::Recorded| r.quantile(0.5).zip(r.quantile(0.99));
    let stages = Stages {
        commits: stats.commits.saturating_sub(stats_before.commits),
        transitions: stats.transitions.saturating_sub(stats_before.transitions),
        commit: p50_p99(&commit),
        commit_busy: commit.sum().as_secs_f64() / started.elapsed().as_secs_f64().max(1e-9),
        relay: p50_p99(&relay),
        idle_sync,
    };
    drop(shared);
    pipeline.shutdown();
    let first = completed(&gateway.received());
    if !all_in {
        return Err(format!(
            "{} of {n} workflows completed within {deadline:?} after the last publish",
            first.len().saturating_sub(warm_sent.len())
        ));
    }
    let mut latencies: Vec<Duration> = first
        .iter()
        .filter_map(|(order, at)| Some(at.saturating_duration_since(*sent_at.get(order)?)))
        .collect();
    if latencies.len() as u64 != n {
        return Err(format!(
            "{} MarkPaid commands matched the {n} orders published",
            latencies.len()
        ));
    }
    latencies.sort();
    let wall = |at: Instant| wall_started + at.saturating_duration_since(started);
    let hops = hops(&nc, &settings, n as usize, &sent_at, &first, wall)
        .map_err(|e| log::warn!(error = e.as_str(); "per-hop latencies not measured"))
        .ok();
    let last = first.values().max().copied().unwrap_or(started);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Workflows {
        warmup,
        completed: latencies.len(),
        rate: n as f64 / last.saturating_duration_since(started).as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: latencies[latencies.len() - 1],
        cpu_per_workflow: cpu / n.max(1) as u32,
        server_per_workflow: server,
        by_thread,
        hops,
        stages,
    })
}

/// p50 of 20 rounds of writing one 4 KiB page in `dir` and `fdatasync`: what one
/// durable write costs on that disk at this moment. LMDB makes two per commit.
fn idle_sync(dir: &std::path::Path) -> Result<Duration, String> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("bench-sync-probe");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let page = [0x5au8; 4096];
    let mut took = Vec::with_capacity(20);
    for _ in 0..20 {
        let at = Instant::now();
        file.write_at(&page, 0)
            .and_then(|_| file.sync_data())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        took.push(at.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    took.sort();
    Ok(took[took.len() / 2])
}

/// The example saga's `charge_card` effect on the `noop` provider (the pool's own cost,
/// no payment provider to wait for), written to `name` in the sandbox's directory.
pub(super) fn noop_effects(sandbox: &Sandbox, name: &str) -> Result<PathBuf, String> {
    let manifest = sandbox.dir.path().join(name);
    let effects = json!({"effects": [{"name": "charge_card", "provider": "noop", "concurrency": 64,
        "noop": {"result": {"payment_id": "pay-bench"}}}]});
    std::fs::write(&manifest, effects.to_string()).map_err(|e| e.to_string())?;
    Ok(manifest)
}

/// Order `i` of [`publish_paced`] is `OrderPlaced` of aggregate `o-{FIRST_ORDER + i}`.
pub(super) const FIRST_ORDER: u64 = 3_000_000_000;

/// Publishes the orders `range` at `rate` per second from now, on their subjects with
/// `prefix` before them. `sent(i, order_id)` is called just before order `i`'s publish
/// (to note when it was sent); it returns false to stop. `label` keeps the event ids of
/// the warm-up and of the measured orders apart.
pub(super) fn publish_paced(
    publisher: &mut Publisher,
    range: std::ops::Range<u64>,
    rate: u64,
    label: &str,
    prefix: &str,
    mut sent: impl FnMut(u64, &str) -> bool,
) -> Result<(), String> {
    let started = Instant::now();
    for (k, i) in range.enumerate() {
        let due = started + Duration::from_micros(k as u64 * 1_000_000 / rate.max(1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let (subject, mut event) = order_placed(FIRST_ORDER + i);
        let id = format!("bench-{label}-{i}");
        event["event_id"] = json!(id);
        let mut headers = nats::header::HeaderMap::new();
        headers.insert(
            header::TENANT,
            event["tenant_id"].as_str().unwrap_or_default(),
        );
        let body = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
        if !sent(i, event["aggregate_id"].as_str().unwrap_or_default()) {
            return Ok(());
        }
        publisher.publish(i, &format!("{prefix}{subject}"), &id, headers, body);
        publisher.poll(Duration::ZERO);
    }
    Ok(())
}

/// Each hop's (p50, p99): when the streams stored each order's command and result
/// (server time) between its publish and its MarkPaid's arrival (bench time, on the
/// same machine's clock).
fn hops(
    nc: &nats::Connection,
    settings: &crate::settings::Settings,
    n: usize,
    sent_at: &HashMap<String, Instant>,
    arrived: &HashMap<String, Instant>,
    wall: impl Fn(Instant) -> SystemTime,
) -> Result<[(Duration, Duration); 3], String> {
    let s = &settings.streams;
    let stored = |stream: &str, prefix: &str| -> Result<HashMap<String, SystemTime>, String> {
        // Earlier phases of the same run may have left messages there too: read all
        // that match (the events stream also holds reminders, which do not).
        let msgs = read_all(nc, stream, &format!("{prefix}.>"), Duration::from_secs(30))?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                let info = m.jetstream_message_info()?;
                let nanos = u64::try_from(info.published.unix_timestamp_nanos()).ok()?;
                let body: Value = serde_json::from_slice(&m.data).ok()?;
                let corr = body["metadata"]["correlation_id"].as_str()?.to_string();
                Some((corr, SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)))
            })
            .collect())
    };
    let commands = stored(&s.workflow_commands, &s.command_prefix)?;
    let results = stored(&s.workflow_events, &s.result_prefix)?;
    let gap = |a: SystemTime, b: SystemTime| b.duration_since(a).unwrap_or_default();
    let mut hops: [Vec<Duration>; 3] = Default::default();
    for (order, sent) in sent_at {
        let (Some(cmd), Some(res), Some(done)) =
            (commands.get(order), results.get(order), arrived.get(order))
        else {
            continue;
        };
        hops[0].push(gap(wall(*sent), *cmd));
        hops[1].push(gap(*cmd, *res));
        hops[2].push(gap(*res, wall(*done)));
    }
    if hops[0].len() < n {
        return Err(format!(
            "{} of {n} orders found in both streams",
            hops[0].len()
        ));
    }
    Ok(hops.map(|mut h| {
        h.sort();
        let at = |q: f64| h[((h.len() as f64 * q) as usize).min(h.len() - 1)];
        (at(0.5), at(0.99))
    }))
}

/// When each order's `MarkPaid` first reached the Gateway (a retried dispatch may
/// deliver it again, under the same idempotency key).
fn completed(received: &[crate::dev::ReceivedCommand]) -> HashMap<String, Instant> {
    let mut first: HashMap<String, Instant> = HashMap::new();
    for r in received {
        if let Some(order) = r.body.get("aggregate_id").and_then(Value::as_str) {
            let at = first.entry(order.to_string()).or_insert(r.at);
            *at = (*at).min(r.at);
        }
    }
    first
}

/// Prints the phase's table.
pub fn print(w: &Workflows, n: u64, rate: u64) {
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e3);
    println!();
    println!(
        "workflow: {n} orders at {rate}/s, OrderPlaced → charge (noop) → result → completed (MarkPaid at the Gateway); {} warm-up orders before them not counted",
        w.warmup
    );
    println!(
        "  completed {} at {:.0}/s; latency p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        w.completed,
        w.rate,
        ms(w.p50),
        ms(w.p99),
        ms(w.p999),
        ms(w.max)
    );
    let server = w.server_per_workflow.map_or(String::new(), |d| {
        format!("; nats-server {:.0} µs", d.as_secs_f64() * 1e6)
    });
    println!(
        "  CPU {:.0} µs per workflow (this process: pipeline, publisher, stand-in gateway){server}; peak RSS {} MiB",
        w.cpu_per_workflow.as_secs_f64() * 1e6,
        peak_rss_mib().map_or("?".into(), |m| m.to_string())
    );
    let threads: Vec<String> = w
        .by_thread
        .iter()
        .take(12)
        .map(|(name, d)| format!("{name} {:.0}", d.as_secs_f64() * 1e6))
        .collect();
    println!("  µs per workflow by thread: {}", threads.join(", "));
    if let Some([saga, effect, last]) = w.hops {
        let hop = |(p50, p99): (Duration, Duration)| format!("{} / {}", ms(p50), ms(p99));
        println!(
            "  per hop, p50 / p99 ms: OrderPlaced → command stored {}; command → result stored {}; result → MarkPaid at the Gateway {}",
            hop(saga),
            hop(effect),
            hop(last)
        );
    }
    let st = &w.stages;
    let pair = |p: Option<(Duration, Duration)>| {
        p.map_or("–".into(), |(p50, p99)| {
            format!("{} / {}", ms(p50), ms(p99))
        })
    };
    println!(
        "  saga side, p50 / p99 ms: group commit {} ({} commits of {:.1} transitions; the commit thread committing {:.0}% of the time); relay, commit → confirmed by the destination {}",
        pair(st.commit),
        st.commits,
        st.transitions as f64 / st.commits.max(1) as f64,
        st.commit_busy * 100.0,
        pair(st.relay)
    );
    if let Some(sync) = st.idle_sync {
        println!(
            "  the store's disk, idle before the run: one 4 KiB write + fdatasync {} ms (p50 of 20)",
            ms(sync)
        );
    }
}
