//! A backlog of large messages is drained inside the deploy files' 256 MiB memory cap:
//! the real `runner` binary, in combined mode, works through a few hundred events of
//! nearly `pipeline.max_message_bytes` each (every one making a command as large), and
//! its peak resident set (`VmHWM`) stays under 256 MiB.

mod common;

use std::time::{Duration, Instant};

use common::{config_file, event, Rig, RunnerProcess};
use runner::settings::Mode;
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

/// The process's peak resident set, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_backlog_of_large_messages_drains_inside_256_mib() {
    let mut rig = Rig::new(copying_saga());
    rig.settings.mode = Mode::Combined;
    rig.settings.pipeline.max_message_bytes = 1024 * 1024;
    // Sized for the container as ARCHITECTURE.md's bounds in bytes say: what may be
    // held at once, times the largest message, stays well inside the cap.
    let s = &mut rig.settings;
    s.consumer.max_ack_pending = 32;
    s.consumer.fetch_batch = 16;
    s.consumer.fetch_max_bytes = 16 * 1024 * 1024;
    s.pipeline.channel_capacity = 2;
    s.relay.max_held_bytes = 16 * 1024 * 1024;
    s.relay.publish_window = 16;
    s.effects.workers = 4;
    s.scheduler.batch = 16;
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
    let js = nats::jetstream::new(nc.clone());
    let commands = rig.settings.streams.workflow_commands.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak = 0;
    loop {
        peak = peak.max(peak_rss_kib(runner.pid()).unwrap_or(0));
        let sent = js.stream_info(&commands).map_or(0, |i| i.state.messages);
        if sent as usize >= EVENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backlog not drained in time: {sent} of {EVENTS} commands; peak {peak} KiB; log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    peak = peak.max(peak_rss_kib(runner.pid()).unwrap_or(0));
    eprintln!("peak resident set while draining: {} MiB", peak / 1024);
    assert!(
        peak < CAP_KIB,
        "peak resident set {} MiB is over the 256 MiB cap",
        peak / 1024
    );
}
