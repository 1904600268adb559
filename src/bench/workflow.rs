//! The whole order workflow at a steady rate: `OrderPlaced` → `charge_card` effect
//! (`noop` provider) → its `succeeded` result → the saga completes and its `MarkPaid`
//! command reaches the Gateway (a local stand-in). Three hops through JetStream, each
//! behind a group commit to LMDB, in one `runner run --mode combined` of its own, so
//! its CPU and memory leave out this process's publisher and stand-in Gateway. Latency
//! is per workflow: from the `OrderPlaced` publish to the Gateway receiving its
//! `MarkPaid`.
//!
//! Half a second of orders at the same rate goes first and is not counted. Without it
//! the first run after the machine sat idle had its p99 at 60–150 ms, every slow
//! workflow within the first 250 ms (the next run, at once after, 10–15 ms): start-up,
//! not the steady state the rate asks about.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::child::{peak_and_anon_mib, MemorySampler, Metrics, Runner};
use super::threads::{switches_of, switches_per_workflow, PerWorkflow};
use super::{
    cpu_time, ms, order_placed, per_event_by_thread, proc_cpu, quantile, server_cpu, threads_of, us,
};
use crate::dev::{read_all, wait_until, FakeGateway, Sandbox};
use crate::envelope::header;
use crate::nats_io::Publisher;
use crate::settings::Settings;

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
    /// The Runner process's CPU (user + system) per workflow over the measured orders.
    pub cpu_per_workflow: Duration,
    /// This process's: the publisher and the stand-in Gateway.
    pub bench_per_workflow: Duration,
    /// nats-server's CPU per workflow, when this run started the server.
    pub server_per_workflow: Option<Duration>,
    /// The Runner process's peak resident memory (VmHWM, start-up and warm-up
    /// included) and its anonymous memory at the end, in MiB.
    pub peak_rss_mib: u64,
    pub anon_mib: u64,
    /// The highest RssAnon (heap, stacks) and RssFile (LMDB's mapped pages, the binary)
    /// sampled every 50 ms over the measured orders.
    pub peak_anon_mib: u64,
    pub peak_file_mib: u64,
    /// (p50, p99) of each hop, read from the streams' own timestamps: OrderPlaced
    /// publish → charge command stored; command stored → result stored; result stored →
    /// MarkPaid at the Gateway. `None` when the streams could not be read.
    pub hops: Option<[(Duration, Duration); 3]>,
    /// The Runner's CPU per workflow of each thread (by name), the busiest first.
    pub by_thread: Vec<(String, Duration)>,
    /// The Runner's context switches per workflow, and each thread name's (the most
    /// first): a count of hand-offs that does not move with the machine's speed.
    pub switches: PerWorkflow,
    pub switches_by_thread: Vec<(String, f64)>,
    /// Where the saga hops' time went, over the measured orders; `None` when the
    /// Runner's `/metrics` could not be read.
    pub stages: Option<Stages>,
    /// p50 of one 4 KiB write and `fdatasync` in the store's directory, the pipeline
    /// idle (after the warm-up).
    pub idle_sync: Option<Duration>,
}

/// The saga side's group commits and relay over the measured orders, from the Runner's
/// `/metrics` before and after them: a hop's latency moves with these from hour to hour.
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
    /// Write transactions of the store-writer thread, and the writes they held.
    pub store_groups: u64,
    pub store_jobs: u64,
}

pub fn run(sandbox: &Sandbox, n: u64, rate: u64) -> Result<Workflows, String> {
    let gateway = FakeGateway::accepting().map_err(|e| format!("stand-in gateway: {e}"))?;
    let settings = runner_settings(sandbox, gateway.url())?;
    // Stopped when dropped: on every way out below.
    let mut runner = Runner::start(sandbox, settings.clone(), "workflow-runner", &[])?;
    runner.ready(Duration::from_secs(60))?;
    let pid = runner.pid();

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
            "{} of {warmup} warm-up workflows completed within 60 s{}",
            gateway.count(),
            runner
                .exited()
                .map_or(String::new(), |why| format!(" ({why})"))
        ));
    }
    let idle_sync = idle_sync(sandbox.dir.path())
        .map_err(|e| log::warn!(error = e.as_str(); "the disk's sync time not measured"))
        .ok();
    let mut sent_at: HashMap<String, Instant> = HashMap::with_capacity(n as usize);
    let (runner_stat, runner_tasks) = (format!("/proc/{pid}/stat"), pid.to_string());
    // Scraped outside the CPU window: rendering the page is not the workflow's cost.
    let metrics_before = scrape(&runner);
    let cpu_before = proc_cpu(&runner_stat);
    let bench_before = cpu_time();
    let server_before = server_cpu(sandbox);
    let threads_before = threads_of(&runner_tasks);
    let switches_before = switches_of(&runner_tasks);
    let sampler = MemorySampler::start(pid)?;
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
    let measured = started.elapsed();
    // A process that exited has no `/proc` entry left to read.
    if let Some(why) = runner.exited() {
        return Err(format!("during the measured orders, {why}"));
    }
    let cpu = proc_cpu(&runner_stat).saturating_sub(cpu_before);
    let bench_cpu = cpu_time().saturating_sub(bench_before);
    let server = server_cpu(sandbox)
        .zip(server_before)
        .map(|(after, before)| after.saturating_sub(before) / n.max(1) as u32);
    let by_thread = per_event_by_thread(&threads_before, threads_of(&runner_tasks), n);
    let (switches, switches_by_thread) =
        switches_per_workflow(&switches_before, switches_of(&runner_tasks), n);
    let (peak_rss_mib, anon_mib) = peak_and_anon_mib(pid);
    let (peak_anon_mib, peak_file_mib) = sampler.peaks();
    let stages = metrics_before
        .zip(scrape(&runner))
        .map(|(before, after)| stages(&before, &after, measured));
    runner.stop();
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
    let at = |q: f64| quantile(&latencies, q);
    let per_workflow = |d: Duration| d / n.max(1) as u32;
    Ok(Workflows {
        warmup,
        completed: latencies.len(),
        rate: n as f64 / last.saturating_duration_since(started).as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: latencies[latencies.len() - 1],
        cpu_per_workflow: per_workflow(cpu),
        bench_per_workflow: per_workflow(bench_cpu),
        server_per_workflow: server,
        peak_rss_mib,
        anon_mib,
        peak_anon_mib,
        peak_file_mib,
        by_thread,
        switches,
        switches_by_thread,
        hops,
        stages,
        idle_sync,
    })
}

/// The settings the Runner ran with when it ran inside this process: the sandbox's
/// streams, consumer and saga manifest in `combined` mode, the `noop` effect, the
/// stand-in Gateway, and a store of its own with a 4 GiB map.
fn runner_settings(sandbox: &Sandbox, gateway_url: &str) -> Result<Settings, String> {
    let mut settings = sandbox.settings.clone();
    settings.mode = crate::settings::Mode::Combined;
    settings.relay.gateway_url = gateway_url.to_string();
    settings.manifests.effects = vec![noop_effects(sandbox, "bench-workflow-effects.json")?];
    settings.storage.path = sandbox.dir.path().join("workflow-store");
    settings.storage.map_size_mib = 4096;
    settings
        .validate()
        .map_err(|e| format!("the workflow phase's settings: {e}"))?;
    Ok(settings)
}

/// The Runner's `/metrics`; `None`, with a warning, when it does not answer.
fn scrape(runner: &Runner) -> Option<Metrics> {
    runner
        .metrics()
        .map_err(|e| log::warn!(error = e.as_str(); "the saga side's figures not measured"))
        .ok()
}

/// The saga side between two scrapes `measured` apart.
fn stages(before: &Metrics, after: &Metrics, measured: Duration) -> Stages {
    let count = |name: &str| after.grew(before, name).map_or(0, |v| v.max(0.0) as u64);
    let p50_p99 = |name: &str| {
        after
            .quantile(before, name, 0.5)
            .zip(after.quantile(before, name, 0.99))
    };
    let commit_secs = after
        .grew(before, "runner_commit_group_seconds_sum")
        .unwrap_or(0.0);
    Stages {
        commits: count("runner_commits_total"),
        transitions: count("runner_transitions_total"),
        commit: p50_p99("runner_commit_group_seconds"),
        commit_busy: commit_secs / measured.as_secs_f64().max(1e-9),
        relay: p50_p99("runner_relay_latency_seconds"),
        store_groups: count("runner_store_groups_total"),
        store_jobs: count("runner_store_jobs_total"),
    }
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
        let at = |q: f64| quantile(&h, q);
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
    println!();
    println!(
        "workflow: {n} orders at {rate}/s, OrderPlaced → charge (noop) → result → completed (MarkPaid at the Gateway), by `runner run --mode combined` in its own process; {} warm-up orders before them not counted",
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
    let server = w
        .server_per_workflow
        .map_or(String::new(), |d| format!("; nats-server {} µs", us(d)));
    println!(
        "  CPU per workflow: Runner {} µs{server}; this bench process (publisher, stand-in Gateway) {} µs",
        us(w.cpu_per_workflow),
        us(w.bench_per_workflow)
    );
    println!(
        "  Runner memory: peak RSS {} MiB (start-up and warm-up included); anonymous {} MiB at the end",
        w.peak_rss_mib, w.anon_mib
    );
    println!(
        "  Runner memory over the measured orders (sampled every 50 ms): RssAnon up to {} MiB, RssFile (LMDB pages, binary) up to {} MiB",
        w.peak_anon_mib, w.peak_file_mib
    );
    let threads: Vec<String> = w
        .by_thread
        .iter()
        .take(12)
        .map(|(name, d)| format!("{name} {}", us(*d)))
        .collect();
    println!("  Runner µs per workflow by thread: {}", threads.join(", "));
    let switches: Vec<String> = w
        .switches_by_thread
        .iter()
        .take(8)
        .map(|(name, n)| format!("{name} {n:.1}"))
        .collect();
    println!(
        "  Runner context switches per workflow: {:.1} ({:.1} waiting, {:.1} yielding or preempted); by thread: {}",
        w.switches.voluntary + w.switches.involuntary,
        w.switches.voluntary,
        w.switches.involuntary,
        switches.join(", ")
    );
    if let Some([saga, effect, last]) = w.hops {
        let hop = |(p50, p99): (Duration, Duration)| format!("{} / {}", ms(p50), ms(p99));
        println!(
            "  per hop, p50 / p99 ms: OrderPlaced → command stored {}; command → result stored {}; result → MarkPaid at the Gateway {}",
            hop(saga),
            hop(effect),
            hop(last)
        );
    }
    let pair = |p: Option<(Duration, Duration)>| {
        p.map_or("–".into(), |(p50, p99)| {
            format!("{} / {}", ms(p50), ms(p99))
        })
    };
    if let Some(st) = &w.stages {
        println!(
            "  saga side, p50 / p99 ms: group commit {} ({} commits of {:.1} transitions; the commit thread committing {:.0}% of the time); relay, commit → confirmed by the destination {} (quantiles interpolated within the Runner's /metrics buckets)",
            pair(st.commit),
            st.commits,
            st.transitions as f64 / st.commits.max(1) as f64,
            st.commit_busy * 100.0,
            pair(st.relay)
        );
        if st.store_groups > 0 {
            println!(
                "  the store: {} write transactions of the store-writer ({:.2} per workflow), {:.1} writes each (saga commits, effect records, outbox deletes)",
                st.store_groups,
                st.store_groups as f64 / w.completed.max(1) as f64,
                st.store_jobs as f64 / st.store_groups as f64
            );
        }
    }
    if let Some(sync) = w.idle_sync {
        println!(
            "  the store's disk, idle before the run: one 4 KiB write + fdatasync {} ms (p50 of 20)",
            ms(sync)
        );
    }
}
