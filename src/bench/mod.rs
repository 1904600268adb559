//! `runner bench`: end-to-end saga throughput, reported next to the raw JetStream
//! pull+ack rate measured in the same run on the same server, so the figure is a ratio
//! that means something on any machine; then the relay's throughput next to raw
//! pipelined publishing and its latency at low load, the effect pool, the scheduler,
//! and the whole order workflow's latency at a steady rate (`workflow.rs`) next to its
//! floor, the same hops by raw primitives at the same rate (`floor.rs`); when asked
//! for, that workflow for many minutes with a short retention (`retention.rs`).

mod backlog;
mod child;
mod claim_writes;
mod floor;
mod raw;
mod relay;
mod retention;
mod threads;
mod workflow;

use threads::{per_event_by_thread, thread_cpu, threads_of};

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use std::sync::Arc;

use crate::dev::{publish_all, seed_timers, wait_until, FakeGateway, Reply, Sandbox};
use crate::store::Store;

const TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];

/// What to measure, and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Events of the saga, relay and effect phases.
    pub events: u64,
    /// Orders of the workflow phase, and their rate per second.
    pub workflows: u64,
    pub rate: u64,
    /// Events of the backlog phase (drained by `runner run` in a process of its own).
    pub backlog: u64,
    /// Seconds of the soak phase (that process taking `rate` events per second) and of
    /// the retention phase (`rate` orders per second); each has its own default.
    pub soak_secs: Option<u64>,
    /// What the retention phase keeps (finished instances, dedupe markers, effect
    /// records), in seconds.
    pub retention_secs: u64,
    /// Phases to run: saga, relay, effects, scheduler, workflow, floor, backlog, soak,
    /// retention.
    pub sections: Vec<String>,
    pub nats_url: Option<String>,
}

pub const SECTIONS: [&str; 9] = [
    "saga",
    "relay",
    "effects",
    "scheduler",
    "workflow",
    "floor",
    "backlog",
    "soak",
    "retention",
];

/// The `q` quantile of `sorted` (ascending), read the same way by every phase (the
/// floor's figures are set beside the workflow phase's): the element at `len × q`, the
/// last for `q` = 1; zero when empty.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let Some(last) = sorted.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    sorted[((sorted.len() as f64 * q) as usize).min(last)]
}

/// Phases run when `--sections` is not given: all but the soak and the retention run,
/// which take minutes.
pub fn default_sections() -> Vec<String> {
    SECTIONS
        .iter()
        .filter(|s| !["soak", "retention"].contains(*s))
        .map(|s| s.to_string())
        .collect()
}

impl Options {
    fn runs(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s == section)
    }
}

pub fn run(options: &Options) -> Result<(), String> {
    crate::logging::init();
    if let Some(bad) = options
        .sections
        .iter()
        .find(|s| !SECTIONS.contains(&s.as_str()))
    {
        return Err(format!(
            "unknown bench section {bad:?} (known: {})",
            SECTIONS.join(", ")
        ));
    }
    if [
        options.events,
        options.workflows,
        options.rate,
        options.backlog,
    ]
    .contains(&0)
    {
        return Err(
            "--events, --workflows, --rate, --backlog, --soak-secs and --retention-secs must be at least 1".into(),
        );
    }
    let sandbox = Sandbox::new(options.nats_url.as_deref())?;
    let events = options.events;
    let nc = sandbox.connect()?;
    let batch: Vec<(String, Value)> = (0..events).map(order_placed).collect();
    let payload = batch.first().map(|(_, e)| e.to_string().len()).unwrap_or(0);
    println!(
        "runner bench: {events} OrderPlaced events of ~{payload} bytes, {} tenants, nats {}",
        TENANTS.len(),
        sandbox.url
    );

    let raw = if options.runs("saga") || options.runs("effects") {
        saga(&sandbox, &nc, &batch)?
    } else {
        0.0
    };
    if options.runs("relay") {
        relay::relay(&sandbox, &nc, events as usize)?;
    }
    if options.runs("effects") {
        effects(&sandbox, &nc, events as usize, raw)?;
    }
    if options.runs("scheduler") {
        scheduler(&sandbox)?;
    }
    let mut workflow = None;
    if options.runs("workflow") {
        let w = workflow::run(&sandbox, options.workflows, options.rate)?;
        workflow::print(&w, options.workflows, options.rate);
        workflow = Some(w);
    }
    if options.runs("floor") {
        let f = floor::run(&sandbox, options.workflows, options.rate).map_err(|e| e.to_string())?;
        floor::print(&f, options.workflows, options.rate);
        if let Some(w) = &workflow {
            let cpu_all = w
                .server_per_workflow
                .map(|server| w.cpu_per_workflow + w.bench_per_workflow + server);
            floor::print_beside(
                &f,
                &floor::Beside {
                    p50: w.p50,
                    p99: w.p99,
                    cpu_all,
                },
            );
        }
    }
    if options.runs("backlog") {
        backlog::print(&backlog::run(&sandbox, options.backlog)?);
    }
    if options.runs("soak") {
        let secs = options.soak_secs.unwrap_or(backlog::SOAK_SECS);
        backlog::print_soak(&backlog::soak(&sandbox, secs, options.rate)?);
    }
    if options.runs("retention") {
        let secs = options.soak_secs.unwrap_or(retention::SOAK_SECS);
        retention::run(&sandbox, options.rate, secs, options.retention_secs)?;
    }
    Ok(())
}

/// Raw pull+ack, then the saga pipeline draining the same backlog; returns the raw rate.
fn saga(
    sandbox: &Sandbox,
    nc: &nats::Connection,
    batch: &[(String, Value)],
) -> Result<f64, String> {
    let events = batch.len() as u64;
    let server_before = server_cpu(sandbox);
    let fetch_batch = sandbox.settings.consumer.fetch_batch;
    let raw = raw::pull_ack(nc, batch, fetch_batch, raw::PerEvent::Ack)?;
    // Includes publishing the raw stream: an upper bound on the server's share.
    let server_raw = server_cpu(sandbox)
        .zip(server_before)
        .map(|(a, b)| a.saturating_sub(b));
    let window = sandbox.settings.relay.publish_window;
    let raw_publishing = raw::pull_ack(
        nc,
        batch,
        fetch_batch,
        raw::PerEvent::AckAndPublish { window },
    )?;

    // The saga pipeline drains the same backlog: publish first, then start and time it.
    publish_all(nc, batch)?;
    let store = sandbox.open_store()?;
    let cpu_before = cpu_time();
    let threads_before = thread_cpu();
    let server_before = server_cpu(sandbox);
    let pipeline = sandbox.start_pipeline(store)?;
    // Timed from here: connecting and binding consumers is not throughput (the raw
    // loop's clock also starts after its consumer exists). What the stages finished
    // while `start_pipeline` returned is left out of the count.
    let started = Instant::now();
    let done_at_start = pipeline.stats().finished();
    let done = wait_until(Duration::from_secs(600), || {
        pipeline.stats().finished() >= events
    });
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let threads_after = thread_cpu();
    let server_pipeline = server_cpu(sandbox)
        .zip(server_before)
        .map(|(a, b)| a.saturating_sub(b));
    let stats = pipeline.stats();
    pipeline.shutdown();
    if !done {
        return Err(format!(
            "the pipeline did not finish {events} events in 600 s: {stats:?}"
        ));
    }
    let e2e = (events - done_at_start) as f64 / elapsed.as_secs_f64();
    println!();
    println!("{:<44} {:>12} {:>8}", "measure", "events/s", "ratio");
    println!(
        "{:<44} {:>12.0} {:>8.2}",
        "raw JetStream pull+ack (same server, same run)", raw, 1.0
    );
    println!(
        "{:<44} {:>12.0} {:>8.2}",
        "saga pipeline: fetch→commit→ack",
        e2e,
        e2e / raw
    );
    println!(
        "  for reference, raw pull+ack publishing one message per event (what the saga has the server do): {raw_publishing:.0}/s; the pipeline is {:.2} of that",
        e2e / raw_publishing
    );
    println!();
    println!(
        "fetched batches of {:.0} messages on average; transitions {}, commits {} (avg {:.0} transitions per LMDB transaction), quarantined {}",
        stats.fetched as f64 / stats.fetched_batches.max(1) as f64,
        stats.transitions,
        stats.commits,
        stats.transitions as f64 / stats.commits.max(1) as f64,
        stats.quarantined
    );
    println!(
        "runner CPU {:.1} µs per event (this process only), peak RSS {} MiB",
        cpu.as_secs_f64() * 1e6 / events as f64,
        peak_rss_mib().map_or("?".into(), |m| m.to_string())
    );
    let per_thread: Vec<String> = per_event_by_thread(&threads_before, threads_after, events)
        .iter()
        .map(|(name, d)| format!("{name} {:.1}", d.as_secs_f64() * 1e6))
        .collect();
    println!("  µs per event by thread: {}", per_thread.join(", "));
    let per_event = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e6 / events as f64);
    if let (Some(raw_cpu), Some(pipeline_cpu)) = (server_raw, server_pipeline) {
        println!(
            "nats-server CPU µs per event: raw phase {} (incl. its publishes), pipeline phase {}",
            per_event(raw_cpu),
            per_event(pipeline_cpu)
        );
        // What the server's own work per event allows on this machine's cores, however
        // cheap the Runner became: the upper bound of the ratio above.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let server_us = pipeline_cpu.as_secs_f64() * 1e6 / events as f64;
        if server_us > 0.0 {
            let ceiling = cores * 1e6 / server_us;
            let both = cores * 1e6 / (server_us + cpu.as_secs_f64() * 1e6 / events as f64);
            println!(
                "  ceiling on {cores} cores: {ceiling:.0} events/s ({:.2} of raw) if the Runner cost nothing; {both:.0} ({:.2}) at the server's and the Runner's CPU per event together",
                ceiling / raw,
                both / raw
            );
        }
    }
    if stats.transitions != events || stats.acked != events {
        return Err(format!(
            "expected {events} transitions and acks, got {} and {}",
            stats.transitions, stats.acked
        ));
    }
    println!("  counts add up: {events} events published, {events} transitions committed, {events} acked");
    Ok(raw)
}

/// The scheduler: timers coming due at 10,000 per second for two seconds; firing rate
/// and lag (publish ack minus due time).
fn scheduler(sandbox: &Sandbox) -> Result<(), String> {
    const RATE: i64 = 10_000;
    const TIMERS: usize = 20_000;
    let store = Store::open(&sandbox.dir.path().join("timers-store"), 4 << 30)
        .map(Arc::new)
        .map_err(|e| e.to_string())?;
    let now = crate::timefmt::now_ms();
    // Due from a second from now, so seeding and start-up are over by then.
    let first_due = now + 1_000;
    seed_timers(&store, "acme", TIMERS, first_due, 1_000_000 / RATE)?;
    let pipeline = sandbox.start_pipeline(store)?;
    if !wait_until(Duration::from_secs(120), || {
        pipeline.stats().timers_fired >= TIMERS as u64
    }) {
        return Err(format!("timers did not all fire: {:?}", pipeline.stats()));
    }
    let done = crate::timefmt::now_ms();
    let (lag, scan) = pipeline.timer_histograms();
    let ms = |h: &crate::pipeline::Histogram, q: f64| {
        h.quantile(q)
            .map_or("?".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
    };
    let (lag50, lag99, scan50, scan99) =
        (ms(lag, 0.5), ms(lag, 0.99), ms(scan, 0.5), ms(scan, 0.99));
    let span = (done - first_due).max(1) as f64 / 1e3;
    pipeline.shutdown();
    println!();
    println!(
        "scheduler: {TIMERS} timers due at {RATE}/s: all fired {span:.2} s after the first was due ({:.0}/s)",
        TIMERS as f64 / span
    );
    println!("  lag (publish ack − due): p50 {lag50} ms, p99 {lag99} ms; scan of a batch: p50 {scan50} ms, p99 {scan99} ms");
    Ok(())
}

/// The effect pool: commands from `WORKFLOW_COMMANDS` to published results, with the
/// `noop` provider (the pool's own cost) and with `http` against a local HTTP server.
fn effects(
    sandbox: &Sandbox,
    nc: &nats::Connection,
    n: usize,
    raw_pull_ack: f64,
) -> Result<(), String> {
    let upstream = FakeGateway::start(|_, _| Reply::status(200)).map_err(|e| e.to_string())?;
    let manifest = sandbox.dir.path().join("bench-effects.json");
    let doc = json!({"effects": [
        {"name": "note", "provider": "noop", "concurrency": 64},
        {"name": "post", "provider": "http", "concurrency": 64,
         "http": {"url": format!("{}/v1/effects", upstream.url())}}
    ]});
    std::fs::write(&manifest, doc.to_string()).map_err(|e| e.to_string())?;
    let mut settings = sandbox.settings.clone();
    settings.mode = crate::settings::Mode::Effect;
    settings.manifests.effects = vec![manifest];
    // Earlier phases left the relay's commands in the stream: start from an empty one.
    let js = nats::jetstream::new(nc.clone());
    js.purge_stream(&settings.streams.workflow_commands)
        .map_err(|e| format!("purge {}: {e}", settings.streams.workflow_commands))?;
    let http_n = (n / 10).max(100);
    let mut rows = Vec::new();
    // The same pool with the cross-replica claims (the default) and without them (one
    // replica): the difference is what the claims cost.
    for (claims, runs) in [
        (true, vec![("note", n), ("post", http_n)]),
        (false, vec![("note", n)]),
    ] {
        let mut settings = settings.clone();
        if !claims {
            settings.effects.claims_bucket.clear();
        }
        let store = Store::open(
            &sandbox.dir.path().join(format!("effects-store-{claims}")),
            4 << 30,
        )
        .map(Arc::new)
        .map_err(|e| e.to_string())?;
        let pipeline = sandbox.start_pipeline_with(settings.clone(), store)?;
        for (effect, count) in runs {
            let (cpu, server) = (cpu_time(), server_cpu(sandbox));
            let rate = run_effects(&pipeline, nc, &settings, effect, count, claims)?;
            let per = |d: Duration| us(d / count as u32);
            let cpu = per(cpu_time().saturating_sub(cpu));
            let server = server
                .zip(server_cpu(sandbox))
                .map_or("-".to_string(), |(a, b)| per(b.saturating_sub(a)));
            rows.push((effect, count, claims, rate, cpu, server));
        }
        pipeline.shutdown();
    }
    let workers = settings.effects.workers;
    println!();
    println!(
        "{:<44} {:>12} {:>8} {:>14} {:>14}",
        format!("effects ({workers} workers)"),
        "cmds/s",
        "ratio",
        "µs/cmd here",
        "nats-server"
    );
    println!(
        "{:<44} {:>12.0} {:>8.2}",
        "raw JetStream pull+ack (first table)", raw_pull_ack, 1.0
    );
    for (effect, count, claims, rate, cpu, server) in rows {
        let label = match (effect, claims) {
            ("note", true) => format!("noop provider, {count} commands → results"),
            ("note", false) => "  the same without claims (one replica)".to_string(),
            _ => format!("http provider (local server), {count} commands"),
        };
        println!(
            "{label:<44} {rate:>12.0} {:>8.2} {cpu:>14} {server:>14}",
            rate / raw_pull_ack
        );
    }
    println!("  (timed from the first publish: includes publishing the commands; \"here\" is this");
    println!("  process: the pool, its store and the publisher, and for http the local server)");
    claim_writes::claim_writes(sandbox, n)
}

/// Publishes `count` commands of `effect` and waits until the pool acked them all;
/// returns commands/s from the first publish.
fn run_effects(
    pipeline: &crate::stages::Pipeline,
    nc: &nats::Connection,
    settings: &crate::settings::Settings,
    effect: &str,
    count: usize,
    claims: bool,
) -> Result<f64, String> {
    let commands: Vec<(String, Value)> = (0..count)
        .map(|i| {
            let tenant = TENANTS[i % TENANTS.len()];
            let id = format!("bench-{effect}-{claims}-{i}");
            (
                format!("{}.{tenant}.{effect}", settings.streams.command_prefix),
                json!({"event_id": id, "tenant_id": tenant, "command_id": id, "effect_name": effect,
                       "payload": {"order_id": format!("o-{i}"), "amount": 4200},
                       "metadata": {"correlation_id": format!("o-{i}")}, "issued_at": event_time(i as u64)}),
            )
        })
        .collect();
    let before = pipeline.stats().effect_commands_acked;
    let started = Instant::now();
    publish_all(nc, &commands)?;
    let target = before + count as u64;
    if !wait_until(Duration::from_secs(600), || {
        pipeline.stats().effect_commands_acked >= target
    }) {
        return Err(format!("effects did not finish: {:?}", pipeline.stats()));
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// The relay: draining a backlog of effect commands from the outbox next to raw
/// pipelined publishing of the same bytes, then commit-to-ack latency at low load.
pub(super) fn order_placed(i: u64) -> (String, Value) {
    let tenant = TENANTS[(i % TENANTS.len() as u64) as usize];
    (
        format!("aggregate.{tenant}.order.OrderPlaced"),
        json!({
            "event_id": format!("bench-{i}"), "tenant_id": tenant, "aggregate_type": "order",
            "aggregate_id": format!("o-{i}"), "event_type": "OrderPlaced", "version": 1,
            "occurred_at": event_time(i),
            "payload": {"total": 1000 + i % 5000, "currency": "EUR", "customer_id": format!("c-{}", i % 977)},
            "metadata": {"correlation_id": format!("req-{i}"),
                         "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
        }),
    )
}

/// A duration in milliseconds with two decimals, as the sections print latencies.
pub(super) fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// A duration in whole microseconds, as the sections print CPU per workflow.
pub(super) fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

/// User + system CPU time of this process.
pub(super) fn cpu_time() -> Duration {
    proc_cpu("/proc/self/stat")
}

/// nats-server's user + system CPU time so far, when this bench started the server
/// (`None` when it runs against `--nats-url`'s).
pub(super) fn server_cpu(sandbox: &Sandbox) -> Option<Duration> {
    nats_server_cpu(sandbox.server.as_ref()?)
}

/// `server`'s user + system CPU time so far (`None` once it is gone).
pub(super) fn nats_server_cpu(server: &crate::dev::NatsServer) -> Option<Duration> {
    let pid = server.pid()?;
    Some(proc_cpu(&format!("/proc/{pid}/stat")))
}

/// User + system CPU time of the process whose `stat` file is at `path`.
pub(super) fn proc_cpu(path: &str) -> Duration {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|stat| parse_stat(&stat))
        .map_or(Duration::ZERO, |(_, cpu)| cpu)
}

/// The command name and user + system CPU time of a `/proc/…/stat` line.
pub(super) fn parse_stat(stat: &str) -> Option<(String, Duration)> {
    let (name, after) = stat.split_once('(')?.1.rsplit_once(')')?;
    // Fields after the parenthesised name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    Some((name.to_string(), Duration::from_millis(ticks * 10)))
}

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Events a millisecond apart, as a live stream would have them.
/// Starting now, so the example saga's 15-minute payment timeouts lie in the future and
/// the scheduler stays out of the measurement.
fn event_time(i: u64) -> String {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(crate::timefmt::now_ms);
    crate::timefmt::format_rfc3339_ms(base + i as i64).unwrap_or_default()
}
