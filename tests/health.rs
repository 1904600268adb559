//! Liveness and readiness through a NATS outage (issue 21.7): the image's HEALTHCHECK
//! and the Swarm stack ask `/health`, so a NATS outage must not fail it — Swarm would
//! kill and replace every Runner at once, churn on top of the outage. `/ready` reports
//! the dependency: 503 while NATS is away, 200 again once it is back.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::ops::{admin_port, call};
use common::{config_file, recorder_saga, wait_until, Rig, RunnerProcess};
use runner::dev::NatsServer;
use serde_json::Value;

/// Generous: other builds share the machine.
const WAIT: Duration = Duration::from_secs(60);
/// How long `/health` is watched while NATS is down: well past the 3 s without a flush
/// after which `/ready` fails, and past the stack's healthcheck interval.
const WATCH: Duration = Duration::from_secs(12);

fn status(url: &str) -> (u16, Value) {
    let (status, body) = call("GET", url, None);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Polls `/ready` until it answers `code`: whether it did within [`WAIT`], and the body
/// of its last answer.
fn ready_becomes(ready: &str, code: u16) -> (bool, Value) {
    let mut last = Value::Null;
    let done = wait_until(WAIT, || {
        std::thread::sleep(Duration::from_millis(200));
        let (status, body) = status(ready);
        last = body;
        status == code
    });
    (done, last)
}

#[test]
fn a_nats_outage_fails_readiness_and_never_liveness() {
    let mut server = NatsServer::start().expect("start nats-server");
    let mut rig = Rig::on(&server.url(), recorder_saga(), 1);
    let base = admin_port(&mut rig);
    let config = config_file(&rig);
    let log = rig.dir.path().join("runner.log");
    let mut runner = RunnerProcess::start_logged(&config, None, &log);
    let (health, ready) = (format!("{base}/health"), format!("{base}/ready"));
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    let up = wait_until(WAIT, || {
        std::thread::sleep(Duration::from_millis(200));
        ureq::get(&ready).call().is_ok()
    });
    assert!(up, "never ready:\n{}", log_text());
    assert_eq!(status(&health).0, 200);

    server.kill();
    let (not_ready, last) = ready_becomes(&ready, 503);
    assert!(not_ready, "/ready stays 200 with NATS down: {last}");
    assert_eq!(last["nats"], "unreachable", "{last}");

    // Liveness holds for the whole outage, also through the image's own check.
    let watched = Instant::now();
    while watched.elapsed() < WATCH {
        let (code, body) = status(&health);
        assert_eq!(
            code,
            200,
            "/health failed {:?} into a NATS outage: {body}",
            watched.elapsed()
        );
        assert!(
            runner.wait_exit(Duration::ZERO).is_none(),
            "the runner exited:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let check = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["healthcheck", "--url", &health])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "runner healthcheck during the outage: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    server.restart().expect("restart nats-server");
    let (back, last) = ready_becomes(&ready, 200);
    assert!(
        back,
        "/ready never recovered after NATS returned: {last}\n{}",
        log_text()
    );
    assert_eq!(status(&health).0, 200);
}

/// The consumer lag metrics do not wait out the probe's five-second period when its
/// first read found no consumer (they are created after it started, or the read timed
/// out on a busy start): it reads again at its next flush, a second later.
#[test]
fn consumer_lag_is_read_again_soon_when_the_first_read_found_none() {
    let rig = Rig::new(recorder_saga());
    let probe =
        runner::ops::NatsProbe::start(rig.connect(), runner::ops::consumers_of(&rig.settings))
            .unwrap();
    // Its first read finds no consumer: the pipeline that creates them has not started.
    assert!(wait_until(WAIT, || probe.is_connected(Duration::from_secs(3))));
    std::thread::sleep(Duration::from_millis(200));
    assert!(probe.consumers().is_empty());
    let _pipeline = rig.start();
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_millis(3_500), || !probe
            .consumers()
            .is_empty()),
        "no consumer lag {:?} after the consumers were created",
        started.elapsed()
    );
}
