//! Effect replicas scale out on one shared durable consumer: several real `runner run
//! --mode effect` processes, each with its own store (as on different hosts), share the
//! commands. The upstream (a real HTTP server) sees every command exactly once — also
//! while the replicas are restarted one by one with a drain, and when one is killed
//! mid-call and another takes its commands over.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use common::{recorder_saga, wait_until, Rig, RunnerProcess};
use runner::dev::{FakeGateway, Reply};
use runner::nats_io::Publisher;
use runner::settings::Mode;
use serde_json::json;

/// A rig for effect replicas calling `upstream`; `config(n)` writes replica n's settings.
struct Replicas {
    rig: Rig,
}

impl Replicas {
    fn new(upstream: &FakeGateway, workers: usize) -> Replicas {
        let mut rig = Rig::new(recorder_saga());
        let manifest = rig.dir.path().join("effects.json");
        let effects = json!({"effects": [{"name": "charge", "provider": "http", "timeout_ms": 5000,
            "http": {"url": format!("{}/v1/charges", upstream.url())}}]});
        std::fs::write(&manifest, effects.to_string()).unwrap();
        rig.settings.mode = Mode::Effect;
        rig.settings.manifests.effects = vec![manifest];
        rig.settings.effects.workers = workers;
        rig.settings.effects.claim_lease_ms = 3_000;
        rig.settings.consumer.ack_wait_ms = 2_000;
        rig.settings.ops.drain_deadline_ms = 20_000;
        Replicas { rig }
    }

    /// Replica `n`: the shared consumer, a store of its own.
    fn config(&self, n: usize) -> PathBuf {
        let mut settings = self.rig.settings.clone();
        settings.storage.path = self.rig.dir.path().join(format!("store-{n}"));
        let path = self.rig.dir.path().join(format!("replica-{n}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
        path
    }

    /// Publishes `n` charge commands (pipelined, acked by JetStream).
    fn publish_commands(&self, from: usize, n: usize) {
        let nc = self.rig.connect();
        let subject = format!("{}.acme.charge", self.rig.settings.streams.command_prefix);
        let mut publisher = Publisher::new(&nc, 256, Duration::from_secs(5), 5).unwrap();
        for i in from..from + n {
            let id = format!("cmd-{i:06}");
            let cmd = json!({"tenant_id": "acme", "command_id": id, "effect_name": "charge",
                "payload": {"n": i}, "metadata": {"correlation_id": format!("o-{i}")},
                "issued_at": "2026-11-27T10:00:00Z"});
            let mut headers = nats::header::HeaderMap::new();
            headers.insert("x-tenant-id", "acme");
            publisher.publish(
                i as u64,
                &subject,
                &id,
                headers,
                cmd.to_string().into_bytes(),
            );
            for done in publisher.poll(Duration::ZERO) {
                assert!(
                    done.result.is_ok(),
                    "publish {}: {:?}",
                    done.tag,
                    done.result
                );
            }
        }
        for done in publisher.finish() {
            assert!(
                done.result.is_ok(),
                "publish {}: {:?}",
                done.tag,
                done.result
            );
        }
    }

    /// Result events in the stream (only results: effect mode sets no timers). The
    /// stream's duplicate window drops re-published results.
    fn results(&self, _max: usize) -> usize {
        let js = nats::jetstream::new(self.rig.connect());
        js.stream_info(&self.rig.settings.streams.workflow_events)
            .map(|i| i.state.messages as usize)
            .unwrap_or(0)
    }
}

/// Calls per idempotency key at the upstream.
fn calls_per_command(upstream: &FakeGateway) -> HashMap<String, usize> {
    let mut calls: HashMap<String, usize> = HashMap::new();
    for c in upstream.received() {
        let key = c.header("idempotency-key").unwrap_or_default().to_string();
        *calls.entry(key).or_default() += 1;
    }
    calls
}

fn sigterm(runner: &RunnerProcess) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &runner.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn assert_each_once(upstream: &FakeGateway, total: usize) {
    let calls = calls_per_command(upstream);
    let twice: Vec<_> = calls.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "commands called more than once: {twice:?}"
    );
    assert_eq!(calls.len(), total, "every command called");
}

/// Three replicas share 10,000 commands while two of them are restarted one by one
/// with a drain (SIGTERM): every command is called exactly once and has one result.
#[test]
fn replicas_share_commands_and_restart_one_by_one_without_doubling_any() {
    const TOTAL: usize = 10_000;
    let upstream = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let replicas = Replicas::new(&upstream, 8);
    let configs: Vec<PathBuf> = (0..3).map(|n| replicas.config(n)).collect();
    let mut running: Vec<RunnerProcess> = configs
        .iter()
        .map(|c| RunnerProcess::start(c, None))
        .collect();
    replicas.publish_commands(0, TOTAL);

    for n in 0..2 {
        assert!(
            wait_until(Duration::from_secs(60), || upstream.received().len()
                >= (n + 1) * TOTAL / 4),
            "work flows before restart {n}"
        );
        sigterm(&running[n]);
        let status = running[n]
            .wait_exit(Duration::from_secs(30))
            .expect("a drained replica exits");
        assert_eq!(status.code(), Some(0), "replica {n} drained cleanly");
        running[n] = RunnerProcess::start(&configs[n], None);
    }
    assert!(
        wait_until(Duration::from_secs(120), || replicas.results(TOTAL * 2)
            >= TOTAL),
        "every command got its result: {} of {TOTAL}",
        replicas.results(TOTAL * 2)
    );
    assert_each_once(&upstream, TOTAL);
    assert_eq!(replicas.results(TOTAL * 2), TOTAL, "one result per command");
    // More than one replica did the work.
    let stores_with_records = (0..3)
        .filter(|n| {
            let path = replicas.rig.dir.path().join(format!("store-{n}"));
            std::fs::metadata(path.join("data.mdb"))
                .map(|m| m.len() > 0)
                .unwrap_or(false)
        })
        .count();
    assert!(stores_with_records >= 2);
}

/// A replica killed mid-call (SIGKILL, its calls unfinished) leaves claims behind; the
/// other replica takes those commands over once their lease runs out — each called at
/// most twice, only the interrupted ones, and every command ends with one result.
#[test]
fn a_replica_killed_mid_call_is_taken_over_after_the_lease() {
    const TOTAL: usize = 200;
    // Slow calls, so the kill lands while calls are in flight.
    let upstream = FakeGateway::start(|_, _| {
        std::thread::sleep(Duration::from_millis(100));
        Reply::status(200)
    })
    .unwrap();
    let replicas = Replicas::new(&upstream, 4);
    let doomed = RunnerProcess::start(&replicas.config(0), None);
    replicas.publish_commands(0, TOTAL);
    assert!(wait_until(Duration::from_secs(30), || upstream
        .received()
        .len()
        >= 10));
    drop(doomed); // SIGKILL
    let interrupted_before = upstream.received().len();
    let _survivor = RunnerProcess::start(&replicas.config(1), None);
    assert!(
        wait_until(Duration::from_secs(60), || replicas.results(TOTAL * 2)
            >= TOTAL),
        "every command got its result: {} of {TOTAL}",
        replicas.results(TOTAL * 2)
    );
    let calls = calls_per_command(&upstream);
    assert_eq!(calls.len(), TOTAL, "every command called");
    let twice = calls.values().filter(|n| **n > 1).count();
    assert!(
        calls.values().all(|n| *n <= 2),
        "no command called more than twice"
    );
    // Only calls in flight at the kill (at most the 4 workers') can run again.
    assert!(
        twice <= 4,
        "{twice} commands called twice; {interrupted_before} calls before the kill"
    );
    assert_eq!(replicas.results(TOTAL * 2), TOTAL, "one result per command");
}

/// The cross-replica gate: a replica dies after its call was recorded (in its own store)
/// but before the result was published and the command acked. The command goes to
/// another replica, whose store knows nothing of it; the claim does, so the upstream is
/// not called again — the other replica publishes the recorded result instead.
#[test]
fn a_command_recorded_by_a_dead_replica_is_not_called_again_by_another() {
    const TOTAL: usize = 8;
    let upstream = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let replicas = Replicas::new(&upstream, 1);
    let mut crashed =
        RunnerProcess::start(&replicas.config(0), Some((runner::crash::AFTER_RECORD, 3)));
    replicas.publish_commands(0, TOTAL);
    let status = crashed
        .wait_exit(Duration::from_secs(30))
        .expect("the replica reaches the crash point");
    assert!(!status.success());
    let _other = RunnerProcess::start(&replicas.config(1), None);
    assert!(
        wait_until(Duration::from_secs(30), || replicas.results(0) >= TOTAL),
        "every command got its result: {} of {TOTAL}",
        replicas.results(0)
    );
    assert_each_once(&upstream, TOTAL);
    assert_eq!(replicas.results(0), TOTAL);
}
