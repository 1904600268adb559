//! A backlog of large messages is drained inside the deploy files' 256 MiB memory cap:
//! the real `runner` binary, in combined mode, works through a few hundred events of
//! nearly `pipeline.max_message_bytes` each (every one making a command as large), and
//! its anonymous memory (what a container's limit cannot reclaim) stays under 256 MiB
//! with the deploy files' own settings.

mod common;

use std::time::{Duration, Instant};

use common::{config_file, event, Rig, RunnerProcess};
use runner::settings::{Mode, Settings};
use serde_json::json;

const EVENTS: usize = 300;
const BLOB: usize = 900 * 1024;
const CAP_KIB: u64 = 256 * 1024;

/// A saga whose effect command carries the event's blob.
fn copying_saga() -> serde_json::Value {
    json!([{
        "name": "copier",
        "triggers": [{"subject": "{ns}.aggregate.*.order.*", "start": true,
                      "correlate": {"$get": "event.aggregate_id"}}],
        "on_event": {"output": {
            "state": {"seen": true},
            "commands": [{"to": "effect", "effect": "archive",
                          "payload": {"blob": {"$get": "event.payload.blob"}}}]
        }}
    }])
}

/// The settings a deploy file gives the Runner (its memory sizing is what this test
/// checks; the rest of the file names hosts of the stack).
fn deploy_sizing(file: &str) -> Settings {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    Settings::load(Some(&path), Vec::new()).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The memory-sizing settings of `s`, to compare two deploy files.
fn sizing(s: &Settings) -> serde_json::Value {
    json!([
        s.consumer.max_ack_pending,
        s.consumer.fetch_batch,
        s.consumer.fetch_max_bytes,
        s.pipeline.channel_capacity,
        s.pipeline.max_message_bytes,
        s.relay.max_held_bytes,
        s.relay.publish_window,
        s.effects.workers,
        s.scheduler.batch,
    ])
}

/// `/proc/PID/status` of a running process.
fn status_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

/// The first number of a `/proc/PID/status` field (KiB for memory fields).
fn field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A field of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, name: &str) -> Option<u64> {
    field(&status_of(pid)?, name)
}

/// Waits until `want` commands are in the commands stream, calling `sample` every
/// `every` (it samples the runner's memory and describes it for a failure).
fn wait_for_commands(
    rig: &Rig,
    nc: &nats::Connection,
    want: usize,
    within: Duration,
    every: Duration,
    log: &std::path::Path,
    mut sample: impl FnMut() -> String,
) {
    let js = nats::jetstream::new(nc.clone());
    let commands = &rig.settings.streams.workflow_commands;
    let deadline = Instant::now() + within;
    loop {
        let sampled = sample();
        let sent = js.stream_info(commands).map_or(0, |i| i.state.messages);
        if sent as usize >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not drained in time: {sent} of {want} commands; {sampled}; log: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(every);
    }
}

/// The process's peak resident set (`VmHWM`), in KiB: anonymous memory plus the pages
/// of the store's memory map it touched.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// The process's anonymous resident memory now (`RssAnon`), in KiB: what a container's
/// memory limit cannot take back. The store's mapped pages (the rest of the resident
/// set) are clean file pages the kernel reclaims before it kills a container.
fn anon_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "RssAnon:")
}

#[test]
fn a_backlog_of_large_messages_drains_inside_256_mib() {
    let mut rig = Rig::new(copying_saga());
    rig.settings.mode = Mode::Combined;
    rig.settings.pipeline.max_message_bytes = 1024 * 1024;
    // The deploy files' own sizing (both must agree): what may be held at once, times
    // the largest message, stays inside the cap (ARCHITECTURE.md's bounds in bytes).
    let shipped = deploy_sizing("swarm/configs/runner.toml");
    let compose = deploy_sizing("docker/runner.toml");
    assert_eq!(
        serde_json::to_value(sizing(&shipped)).unwrap(),
        serde_json::to_value(sizing(&compose)).unwrap(),
        "swarm/configs/runner.toml and docker/runner.toml size memory alike"
    );
    let s = &mut rig.settings;
    s.consumer.max_ack_pending = shipped.consumer.max_ack_pending;
    s.consumer.fetch_batch = shipped.consumer.fetch_batch;
    s.consumer.fetch_max_bytes = shipped.consumer.fetch_max_bytes;
    s.pipeline.channel_capacity = shipped.pipeline.channel_capacity;
    s.relay.max_held_bytes = shipped.relay.max_held_bytes;
    s.relay.publish_window = shipped.relay.publish_window;
    s.effects.workers = shipped.effects.workers;
    s.scheduler.batch = shipped.scheduler.batch;
    let nc = rig.connect();
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    let blob = "b".repeat(BLOB);
    for n in 0..EVENTS {
        let body = event(
            &format!("e-{n}"),
            "acme",
            &format!("o-{n}"),
            "OrderPlaced",
            json!({ "blob": blob }),
        );
        rig.publish(&nc, &subject, &body);
    }
    let config = config_file(&rig);
    let log = rig.dir.path().join("runner.log");
    let runner = RunnerProcess::start_logged(&config, None, &log);
    let (mut peak, mut peak_anon) = (0, 0);
    wait_for_commands(
        &rig,
        &nc,
        EVENTS,
        Duration::from_secs(120),
        Duration::from_millis(100),
        &log,
        || {
            peak = peak.max(peak_rss_kib(runner.pid()).unwrap_or(0));
            peak_anon = peak_anon.max(anon_rss_kib(runner.pid()).unwrap_or(0));
            format!("peak {peak} KiB")
        },
    );
    peak = peak.max(peak_rss_kib(runner.pid()).unwrap_or(0));
    eprintln!(
        "peak resident set while draining: {} MiB, of it anonymous (sampled): {} MiB",
        peak / 1024,
        peak_anon / 1024
    );
    assert!(
        peak_anon < CAP_KIB,
        "anonymous memory peaked at {} MiB, over the 256 MiB cap (resident set {} MiB)",
        peak_anon / 1024,
        peak / 1024
    );
}

/// The allocator (mimalloc) gives every thread pages of its own inside one large
/// reserved arena; with transparent huge pages allowed, each thread's first allocation
/// there faulted in a whole 2 MiB page, so the ~100 threads of combined mode held ~95
/// MiB of anonymous memory at 100 workflows/s (20 MiB without). The binary keeps THP
/// off (mimalloc's `no_thp`, and `PR_SET_THP_DISABLE` in `main`): this holds it there.
#[test]
fn the_runner_keeps_transparent_huge_pages_off_and_little_anonymous_memory() {
    let mut rig = Rig::new(copying_saga());
    rig.settings.mode = Mode::Combined;
    let nc = rig.connect();
    let config = config_file(&rig);
    let log = rig.dir.path().join("runner.log");
    let runner = RunnerProcess::start_logged(&config, None, &log);
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    const SMALL: usize = 50;
    for n in 0..SMALL {
        let body = event(
            &format!("e-{n}"),
            "acme",
            &format!("o-{n}"),
            "OrderPlaced",
            json!({ "blob": "b" }),
        );
        rig.publish(&nc, &subject, &body);
    }
    let mut peak_anon = 0;
    wait_for_commands(
        &rig,
        &nc,
        SMALL,
        Duration::from_secs(60),
        Duration::from_millis(50),
        &log,
        || {
            peak_anon = peak_anon.max(anon_rss_kib(runner.pid()).unwrap_or(0));
            format!("anonymous peak {peak_anon} KiB")
        },
    );
    let status = status_of(runner.pid()).expect("the runner's /proc status");
    let threads = field(&status, "Threads:").unwrap_or(0);
    match field(&status, "THP_enabled:") {
        Some(enabled) => assert_eq!(
            enabled, 0,
            "transparent huge pages are on for the runner: THP_enabled {enabled}"
        ),
        None => eprintln!("this kernel does not report THP_enabled; only memory checked"),
    }
    eprintln!(
        "{threads} threads, anonymous memory up to {} MiB",
        peak_anon / 1024
    );
    assert!(
        threads >= 32,
        "combined mode runs its effect pool: {threads} threads"
    );
    assert!(
        peak_anon < 64 * 1024,
        "anonymous memory reached {} MiB with {threads} threads after {SMALL} small events",
        peak_anon / 1024
    );
}
