//! The relay's section of `runner bench`: drain of a crash-left outbox next to raw
//! pipelined publishing of the same messages (envelope and headers), then commit →
//! publish-ack latency at low load.
//!
//! The two rates move together with whatever else the machine does (raw publish alone
//! ranged from 67k to 131k msgs/s within one evening here), so one pair is a noisy
//! ratio. The pair is measured [`ROUNDS`] times, raw then drain back to back, and the
//! median ratio is the figure; every round is printed.

use std::time::{Duration, Instant};

use serde_json::json;

use super::TENANTS;
use super::{cpu_time, order_placed, per_event_by_thread, server_cpu, thread_cpu};
use crate::dev::{seed_outbox_as, wait_until, Sandbox};
use crate::keys::OutboxKind;
use crate::nats_io::Publisher;
use crate::stages::Pipeline;
use crate::store::Store;

/// Raw-then-drain pairs measured.
const ROUNDS: usize = 5;
/// Low-load latency: orders at this rate, each committing one `charge_card` command.
const LOW_RATE: u64 = 500;
const LOW_EVENTS: u64 = 1_000;

/// One raw-then-drain pair.
struct Round {
    items: u64,
    raw: f64,
    drain: f64,
    /// CPU of this process and of nats-server, raw then drain.
    raw_cpu: (Duration, Duration),
    drain_cpu: (Duration, Duration),
    raw_threads: Vec<(String, Duration)>,
    drain_threads: Vec<(String, Duration)>,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.drain / self.raw
    }
}

pub(super) fn relay(sandbox: &Sandbox, nc: &nats::Connection, n: usize) -> Result<(), String> {
    // Ids of this run: against a long-lived `--nats-url` server, an earlier run's ids
    // would still be in JetStream's duplicate window and be dropped, not stored.
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut rounds = Vec::with_capacity(ROUNDS);
    let mut pipeline = None;
    for round in 0..ROUNDS {
        if let Some(previous) = pipeline.take() {
            Pipeline::shutdown(previous);
        }
        let tag = format!("relay{round}-{run}");
        let (measured, running) = measure_round(sandbox, nc, n, &tag)?;
        rounds.push(measured);
        pipeline = Some(running);
    }
    let pipeline = pipeline.ok_or("no relay round ran")?;
    let (p50, p99) = low_load_latency(&pipeline, nc, run)?;
    pipeline.shutdown();

    println!();
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "relay: effect commands (round)", "raw msgs/s", "drain/s", "ratio"
    );
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "{:<44} {:>12.0} {:>12.0} {:>8.2}",
            format!("  {} of {ROUNDS}: drain of {} outbox items", i + 1, r.items),
            r.raw,
            r.drain,
            r.ratio()
        );
    }
    let mut by_ratio: Vec<&Round> = rounds.iter().collect();
    by_ratio.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
    let median = by_ratio[by_ratio.len() / 2];
    println!(
        "relay drain vs raw pipelined publish (same server, same run): median {:.2} (range {:.2}–{:.2})",
        median.ratio(),
        by_ratio[0].ratio(),
        by_ratio[by_ratio.len() - 1].ratio()
    );
    let per_item = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e6 / median.items as f64);
    println!(
        "  median round, CPU µs per item (this process / nats-server): raw publish {} / {}, relay drain {} / {}",
        per_item(median.raw_cpu.0),
        per_item(median.raw_cpu.1),
        per_item(median.drain_cpu.0),
        per_item(median.drain_cpu.1)
    );
    let by_thread = |threads: &[(String, Duration)]| {
        threads
            .iter()
            .map(|(name, d)| format!("{name} {:.1}", d.as_secs_f64() * 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "    raw publish by thread: {}",
        by_thread(&median.raw_threads)
    );
    println!(
        "    relay drain by thread: {}",
        by_thread(&median.drain_threads)
    );
    println!(
        "relay latency, commit to publish ack, {LOW_EVENTS} orders at {LOW_RATE}/s: p50 {p50} ms, p99 {p99} ms (bucket upper bounds)"
    );
    Ok(())
}

/// Raw publish of `n` envelopes, then a pipeline draining `n` seeded outbox items (ids of
/// this round, so JetStream stores every one). Returns the figures and the pipeline,
/// still running.
fn measure_round(
    sandbox: &Sandbox,
    nc: &nats::Connection,
    n: usize,
    tag: &str,
) -> Result<(Round, Pipeline), String> {
    let store = Store::open(&sandbox.dir.path().join(format!("store-{tag}")), 4 << 30)
        .map(std::sync::Arc::new)
        .map_err(|e| e.to_string())?;
    let prefix = &sandbox.settings.streams.command_prefix;
    let per_tenant = n.div_ceil(TENANTS.len());
    for tenant in TENANTS {
        seed_outbox_as(&store, prefix, tenant, OutboxKind::Effect, per_tenant, tag)?;
    }
    let items = (per_tenant * TENANTS.len()) as u64;
    let sample = store
        .outbox_page("", 1, |_| false)
        .map_err(|e| e.to_string())?
        .items
        .pop()
        .ok_or("nothing seeded")?
        .1;
    let server_now = || server_cpu(sandbox).unwrap_or_default();

    let cpu_before = (cpu_time(), server_now());
    let threads_before = thread_cpu();
    let raw = raw_publish(
        nc,
        items as usize,
        &sample,
        sandbox.settings.relay.publish_window,
    )?;
    let raw_cpu = (
        cpu_time().saturating_sub(cpu_before.0),
        server_now().saturating_sub(cpu_before.1),
    );
    let raw_threads = per_event_by_thread(&threads_before, thread_cpu(), items);

    let cpu_before = (cpu_time(), server_now());
    let threads_before = thread_cpu();
    let pipeline = sandbox.start_pipeline(store)?;
    // Timed from here: start-up (connecting, binding consumers) is not throughput.
    let started = Instant::now();
    let relayed_at_start = pipeline.stats().relayed;
    if !wait_until(Duration::from_secs(600), || {
        pipeline.stats().relayed >= items
    }) {
        return Err(format!(
            "the relay did not drain {items} items in 600 s: {:?}",
            pipeline.stats()
        ));
    }
    let drain = (items - relayed_at_start) as f64 / started.elapsed().as_secs_f64();
    let drain_cpu = (
        cpu_time().saturating_sub(cpu_before.0),
        server_now().saturating_sub(cpu_before.1),
    );
    let drain_threads = per_event_by_thread(&threads_before, thread_cpu(), items);
    let round = Round {
        items,
        raw,
        drain,
        raw_cpu,
        drain_cpu,
        raw_threads,
        drain_threads,
    };
    Ok((round, pipeline))
}

/// Orders at [`LOW_RATE`] through the running pipeline; p50 and p99 (ms) of commit →
/// publish ack of their commands.
fn low_load_latency(
    pipeline: &Pipeline,
    nc: &nats::Connection,
    run: &str,
) -> Result<(String, String), String> {
    let before = pipeline.stats().relayed;
    let mut publisher =
        Publisher::new(nc, 64, Duration::from_secs(5), 3).map_err(|e| e.to_string())?;
    let paced = Instant::now();
    for i in 0..LOW_EVENTS {
        let due = paced + Duration::from_micros(i * 1_000_000 / LOW_RATE);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let (subject, mut event) = order_placed(1_000_000_000 + i);
        let id = format!("bench-low-{run}-{i}");
        event["event_id"] = json!(id);
        let mut headers = nats::header::HeaderMap::new();
        headers.insert(
            crate::envelope::header::TENANT,
            event["tenant_id"].as_str().unwrap_or_default(),
        );
        let body = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
        publisher.publish(i, &subject, &id, headers, body);
        publisher.poll(Duration::ZERO);
    }
    publisher.finish();
    if !wait_until(Duration::from_secs(60), || {
        pipeline.stats().relayed >= before + LOW_EVENTS
    }) {
        return Err(format!(
            "the low-load commands were not relayed: {:?}",
            pipeline.stats()
        ));
    }
    let latency = pipeline.relay_latency();
    let ms = |q: f64| {
        latency
            .quantile(q)
            .map_or("?".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
    };
    Ok((ms(0.5), ms(0.99)))
}

/// Publishes `n` copies of `sample` as the relay sends it (its envelope and its
/// docs/contracts.md §1 headers, distinct `Nats-Msg-Id`s) to a scratch stream with the relay's
/// pipelined publisher and window. Returns msgs/s. The headers matter to the baseline:
/// with the tenant header alone the server spent 6.4–7.0 µs per message against
/// 8.4–9.8 µs with all three, a cost of the contract the relay cannot avoid.
fn raw_publish(
    nc: &nats::Connection,
    n: usize,
    sample: &crate::store::OutboxItem,
    window: usize,
) -> Result<f64, String> {
    let mut out = super::raw::RawOut::open(nc, "PUB", window)?;
    let started = Instant::now();
    for i in 0..n {
        let headers = crate::nats_io::context_headers(
            sample.tenant.as_str(),
            Some(sample.correlation.as_str()),
            sample.traceparent.as_deref(),
        );
        out.publish(i as u64, headers, sample.envelope.as_bytes().to_vec());
    }
    out.settle();
    let rate = n as f64 / started.elapsed().as_secs_f64();
    out.close()?;
    Ok(rate)
}
