//! A backlog drained by the real binary in a process of its own (`runner run --mode
//! saga`), so its memory and CPU are the Runner's alone: N `OrderPlaced` events are
//! published first (in chunks, so the bench itself stays small), then the Runner starts
//! and the bench samples its memory every 100 ms until its consumer has acked them all.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::child::{memory_mib, spawn, stop};
use super::{order_placed, per_event_by_thread, proc_cpu, threads_of};
use crate::dev::{publish_all, Sandbox};
use crate::nats_io::Publisher;

/// What draining the backlog took.
pub struct Backlog {
    pub events: u64,
    pub rate: f64,
    /// Peak resident memory, and its anonymous part (heap, stacks: what the Runner
    /// allocates) and file-backed part (LMDB's map pages the OS keeps resident).
    pub peak_rss_mib: u64,
    pub peak_anon_mib: u64,
    pub peak_file_mib: u64,
    /// Anonymous memory sampled at a quarter, half, three quarters and the end.
    pub anon_along: Vec<u64>,
    pub cpu_per_event: Duration,
}

/// The soak phase's length when `--soak-secs` is not given.
pub const SOAK_SECS: u64 = 600;
/// Chunk of events generated and published at once.
const CHUNK: u64 = 10_000;

pub fn run(sandbox: &Sandbox, n: u64) -> Result<Backlog, String> {
    let nc = sandbox.connect()?;
    for start in (0..n).step_by(CHUNK as usize) {
        let chunk: Vec<(String, Value)> = (start..(start + CHUNK).min(n))
            .map(|i| order_placed(5_000_000_000 + i))
            .collect();
        publish_all(&nc, &chunk)?;
    }
    let (mut child, settings) = spawn_runner(sandbox, n)?;
    let pid = child.id();
    let js = nats::jetstream::new(nc);
    let consumer = format!("{}-aggregate", settings.consumer.durable);
    let stream = settings.streams.aggregate_events.clone();
    let started = Instant::now();
    let (mut peak_rss, mut peak_anon, mut peak_file) = (0, 0, 0);
    let mut anon_along = Vec::new();
    let mut drained = 0;
    let result = loop {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("the runner exited early: {status}"));
        }
        let (rss, anon, file) = memory_mib(pid);
        peak_rss = peak_rss.max(rss);
        peak_anon = peak_anon.max(anon);
        peak_file = peak_file.max(file);
        // A consumer that does not exist yet has acked nothing.
        drained = js
            .consumer_info(&stream, &consumer)
            .map(|i| i.ack_floor.stream_seq)
            .unwrap_or(0)
            .max(drained);
        let quarter = (anon_along.len() as u64 + 1) * n / 4;
        if drained >= quarter && anon_along.len() < 4 {
            anon_along.push(anon);
        }
        if drained >= n {
            break Ok(());
        }
        if started.elapsed() > Duration::from_secs(1800) {
            break Err(format!("{drained} of {n} events drained in 30 minutes"));
        }
    };
    let elapsed = started.elapsed();
    let cpu = proc_cpu(&format!("/proc/{pid}/stat"));
    stop(&mut child);
    result?;
    Ok(Backlog {
        events: n,
        rate: n as f64 / elapsed.as_secs_f64(),
        peak_rss_mib: peak_rss,
        peak_anon_mib: peak_anon,
        peak_file_mib: peak_file,
        anon_along,
        cpu_per_event: cpu / n.max(1) as u32,
    })
}

/// A steady run: `runner run --mode saga` in its own process takes `rate` events per
/// second for `secs` seconds; its anonymous memory is sampled every second and
/// reported every tenth of the run, to show it stays flat over time.
pub struct Soak {
    pub secs: u64,
    pub rate: u64,
    pub events: u64,
    /// Anonymous memory (MiB) at each tenth of the run.
    pub anon_over_time: Vec<u64>,
    pub peak_anon_mib: u64,
    /// CPU per event from the first publish to the last (start-up left out).
    pub cpu_per_event: Duration,
    /// The same, per thread name, largest first.
    pub by_thread: Vec<(String, Duration)>,
}

pub fn soak(sandbox: &Sandbox, secs: u64, rate: u64) -> Result<Soak, String> {
    let total = secs * rate;
    let (mut child, _) = spawn_runner(sandbox, total)?;
    let pid = child.id();
    let nc = sandbox.connect()?;
    let mut publisher =
        Publisher::new(&nc, 256, Duration::from_secs(5), 3).map_err(|e| e.to_string())?;
    let (cpu_before, threads_before) = (
        proc_cpu(&format!("/proc/{pid}/stat")),
        threads_of(&pid.to_string()),
    );
    let started = Instant::now();
    let (mut anon_over_time, mut peak_anon, mut next_sample) = (Vec::new(), 0, started);
    for i in 0..total {
        let due = started + Duration::from_micros(i * 1_000_000 / rate.max(1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let (subject, event) = order_placed(7_000_000_000 + i);
        let id = event["event_id"].as_str().unwrap_or_default().to_string();
        let body = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
        publisher.publish(i, &subject, &id, nats::header::HeaderMap::new(), body);
        publisher.poll(Duration::ZERO);
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(1);
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the runner exited during the run: {status}"));
            }
            let (_, anon, _) = memory_mib(pid);
            peak_anon = peak_anon.max(anon);
            let tenth = (anon_over_time.len() as u64 + 1) * secs * 1000 / 10;
            if started.elapsed().as_millis() as u64 >= tenth {
                anon_over_time.push(anon);
            }
        }
    }
    publisher.finish();
    // The last events' commits and acks: a moment after the last publish.
    std::thread::sleep(Duration::from_millis(200));
    let cpu = proc_cpu(&format!("/proc/{pid}/stat")).saturating_sub(cpu_before);
    let by_thread = per_event_by_thread(&threads_before, threads_of(&pid.to_string()), total);
    stop(&mut child);
    Ok(Soak {
        secs,
        rate,
        events: total,
        anon_over_time,
        peak_anon_mib: peak_anon,
        cpu_per_event: cpu / total.max(1) as u32,
        by_thread,
    })
}

pub fn print_soak(s: &Soak) {
    println!();
    println!(
        "soak: `runner run --mode saga` in its own process, {} events/s for {} s ({} events)",
        s.rate, s.secs, s.events
    );
    let along: Vec<String> = s.anon_over_time.iter().map(|m| m.to_string()).collect();
    println!(
        "  anonymous memory at each tenth of the run: {} MiB (peak {} MiB); CPU {:.1} µs per event",
        along.join(" / "),
        s.peak_anon_mib,
        s.cpu_per_event.as_secs_f64() * 1e6
    );
    let threads: Vec<String> = s
        .by_thread
        .iter()
        .map(|(name, d)| format!("{name} {:.1}", d.as_secs_f64() * 1e6))
        .collect();
    println!("  CPU µs per event by thread: {}", threads.join(", "));
}

/// Starts `runner run --mode saga` on this sandbox's server with a store of its own,
/// sized for `events` instances.
fn spawn_runner(
    sandbox: &Sandbox,
    events: u64,
) -> Result<(std::process::Child, crate::settings::Settings), String> {
    let mut settings = sandbox.settings.clone();
    settings.mode = crate::settings::Mode::Saga;
    settings.storage.path = sandbox.dir.path().join("backlog-store");
    // About 3 KiB of store per instance (state, timer, outbox, dedupe, B-tree pages).
    settings.storage.map_size_mib = (events * 3 / 1024).max(1024);
    settings.consumer.durable = "runner-backlog".into();
    settings.ops.listen = String::new();
    let child = spawn(sandbox, &settings, "backlog-runner", &[])?;
    Ok((child, settings))
}

pub fn print(b: &Backlog) {
    println!();
    println!(
        "backlog: {} OrderPlaced drained by `runner run --mode saga` in its own process",
        b.events
    );
    println!(
        "  {:.0} events/s, CPU {:.1} µs per event; peak RSS {} MiB (anonymous {} MiB, LMDB map pages {} MiB)",
        b.rate,
        b.cpu_per_event.as_secs_f64() * 1e6,
        b.peak_rss_mib,
        b.peak_anon_mib,
        b.peak_file_mib
    );
    let along: Vec<String> = b.anon_along.iter().map(|m| format!("{m}")).collect();
    println!(
        "  anonymous memory at 1/4, 1/2, 3/4 and the end of the backlog: {} MiB",
        along.join(" / ")
    );
}
