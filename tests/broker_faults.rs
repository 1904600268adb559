//! Broker faults against the real binary: a connection that goes silent (open, but
//! answering nothing), and `nats-server` restarts — one while the Runner is in the middle
//! of fetching, acking and publishing, one longer than the ack wait. Nothing may be lost
//! or applied twice.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::proxy::SilentProxy;
use common::{config_file, recorder_saga, wait_until, Rig, RunnerProcess};
use runner::settings::Mode;
use runner::types::TenantId;

/// Orders `o-{from}..o-{to}` each got their one event applied exactly once.
fn applied_once(rig: &Rig, to: i64) -> bool {
    let acme: TenantId = "acme".parse().unwrap();
    let Ok(instances) = rig
        .store
        .instances(&acme, &"recorder".parse().unwrap(), 100_000)
    else {
        return false;
    };
    let logs: BTreeSet<String> = instances
        .iter()
        .map(|(_, r)| r.state["log"].as_str().unwrap_or_default().to_string())
        .collect();
    instances.len() as i64 == to && (0..to).all(|n| logs.contains(&format!("{n},")))
}

fn send_range(rig: &Rig, nc: &nats::Connection, range: std::ops::Range<i64>) {
    for n in range {
        rig.send(nc, &format!("e-{n}"), &format!("o-{n}"), n);
    }
}

/// The effect commands on the stream: (messages, distinct ids).
fn commands(rig: &Rig, nc: &nats::Connection, max: usize) -> (usize, usize) {
    let msgs = rig.published_commands(nc, max);
    let ids: BTreeSet<String> = msgs
        .iter()
        .filter_map(|m| runner::nats_io::header(m, "Nats-Msg-Id").map(str::to_string))
        .collect();
    (msgs.len(), ids.len())
}

#[test]
fn a_silent_connection_is_given_up_in_seconds_and_nothing_is_lost() {
    let mut rig = Rig::new(recorder_saga());
    let proxy = SilentProxy::start(rig.url.trim_start_matches("nats://"));
    rig.settings.mode = Mode::Saga;
    rig.settings.nats.url = proxy.url();
    rig.settings.nats.unresponsive_exit_ms = 2_000;
    let config = config_file(&rig);
    let nc = rig.connect();
    send_range(&rig, &nc, 0..5);
    let mut runner = RunnerProcess::start(&config, None);
    assert!(wait_until(Duration::from_secs(20), || applied_once(
        &rig, 5
    )));

    proxy.freeze();
    let frozen_at = Instant::now();
    send_range(&rig, &nc, 5..10);
    let status = runner
        .wait_exit(Duration::from_secs(30))
        .expect("the runner gives the silent connection up");
    let took = frozen_at.elapsed();
    assert_eq!(
        status.code(),
        Some(runner::cli::EXIT_SILENT_NATS),
        "{status:?}"
    );
    eprintln!("silent connection given up {took:?} after it went silent (limit 2 s)");

    // Restarted, as its orchestrator would: a new connection, and the events published
    // during the silence are applied, each once.
    drop(runner);
    let _restarted = RunnerProcess::start(&config, None);
    assert!(wait_until(Duration::from_secs(30), || applied_once(
        &rig, 10
    )));
    assert!(wait_until(Duration::from_secs(10), || commands(
        &rig, &nc, 20
    ) == (10, 10)));
}

#[test]
fn broker_restarts_mid_run_and_past_the_ack_wait_lose_and_duplicate_nothing() {
    let mut rig = Rig::new(recorder_saga());
    if rig.server.is_none() {
        eprintln!("skipped: RUNNER_TEST_NATS_URL names a server this test cannot restart");
        return;
    }
    rig.settings.mode = Mode::Saga;
    let config = config_file(&rig);
    let _runner = RunnerProcess::start(&config, None);
    let restart = |rig: &mut Rig, down: Duration| {
        let server = rig.server.as_mut().unwrap();
        server.kill();
        std::thread::sleep(down);
        server.restart().expect("nats-server starts again");
    };

    // Mid-run: the Runner is fetching, committing, acking and publishing commands.
    let nc = rig.connect();
    send_range(&rig, &nc, 0..200);
    std::thread::sleep(Duration::from_millis(30));
    restart(&mut rig, Duration::from_millis(100));
    let nc = rig.connect();
    send_range(&rig, &nc, 200..400);
    // Down for three ack waits: everything in flight is due for redelivery when it is
    // back, and the Runner's own acks and publishes of the moment failed.
    std::thread::sleep(Duration::from_millis(20));
    let ack_wait = Duration::from_millis(rig.settings.consumer.ack_wait_ms);
    restart(&mut rig, ack_wait * 3);
    let nc = rig.connect();
    send_range(&rig, &nc, 400..500);

    assert!(
        wait_until(Duration::from_secs(60), || applied_once(&rig, 500)),
        "every event applied once after two broker restarts"
    );
    assert!(
        wait_until(Duration::from_secs(20), || commands(&rig, &nc, 1000)
            == (500, 500)),
        "one command per event in the stream: {:?}",
        commands(&rig, &nc, 1000)
    );
}
