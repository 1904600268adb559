//! A drain flushes the relay (issue 21, point 4): what the outbox holds when a drain
//! begins is dispatched before the process exits, up to `ops.drain_deadline_ms`, and
//! what is left is reported (the log, `/ready`'s `outbox_left`). The Gateway here is
//! paused: it holds every call until the test lets it answer, so the outbox is full
//! when the drain begins. Nothing leaves the outbox without the Gateway's 2xx
//! (invariant 2).

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ops::{admin_port, call, TOKEN};
use common::{both_saga, config_file, event, wait_until, Rig, RunnerProcess, WAIT};
use runner::dev::{read_stream, FakeGateway, Reply};
use runner::keys::OutboxKind;
use runner::types::TenantId;
use serde_json::{json, Value};

/// A Gateway that holds every call while `paused` (at most a minute), then accepts it.
fn paused_gateway() -> (FakeGateway, Arc<AtomicBool>) {
    let paused = Arc::new(AtomicBool::new(true));
    let flag = paused.clone();
    let gateway = FakeGateway::start(move |_, _| {
        let until = Instant::now() + Duration::from_secs(60);
        while flag.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        Reply::status(202)
    })
    .unwrap();
    (gateway, paused)
}

fn acme() -> TenantId {
    "acme".parse().unwrap()
}

/// A rig whose Gateway is `gateway`, whose calls may wait far longer than the test
/// holds them, and whose outbox the relay reads back often.
fn rig_for(gateway: &FakeGateway, orders: usize) -> (Rig, nats::Connection) {
    let mut rig = Rig::new(both_saga());
    let r = &mut rig.settings.relay;
    r.gateway_url = gateway.url().to_string();
    r.gateway_timeout_ms = 30_000;
    r.gateway_workers = 4;
    r.scan_interval_ms = 200;
    let nc = rig.connect();
    for i in 0..orders {
        rig.publish(
            &nc,
            &rig.aggregate_subject("acme", "OrderPlaced"),
            &event(
                &format!("e-{i}"),
                "acme",
                &format!("o-{i}"),
                "OrderPlaced",
                json!({}),
            ),
        );
    }
    (rig, nc)
}

/// Waits until every order committed and the outbox holds exactly its aggregate
/// commands (the effect commands went out; the Gateway holds its calls).
fn await_outbox_of_aggregate_commands(rig: &Rig, orders: usize) {
    let both = "both".parse().unwrap();
    let held = || {
        let instances = rig.store.instances(&acme(), &both, 1000).unwrap().len();
        let outbox = rig.store.outbox(&acme(), 1000).unwrap();
        instances == orders
            && outbox.len() == orders
            && outbox.iter().all(|(_, i)| i.kind == OutboxKind::Aggregate)
    };
    assert!(
        wait_until(WAIT, held),
        "the outbox holds the {orders} aggregate commands: {} items",
        rig.store.outbox_len().unwrap()
    );
}

fn distinct_keys(gateway: &FakeGateway) -> HashSet<String> {
    gateway
        .received()
        .iter()
        .map(|c| c.header("idempotency-key").unwrap_or_default().to_string())
        .collect()
}

/// SIGTERM while the outbox holds every aggregate command: the process sends them all
/// (the Gateway answers once the drain began) and exits with the outbox empty.
#[test]
fn sigterm_sends_what_the_outbox_holds_before_the_process_exits() {
    const ORDERS: usize = 30;
    let (gateway, paused) = paused_gateway();
    let (mut rig, nc) = rig_for(&gateway, ORDERS);
    rig.settings.ops.drain_deadline_ms = 60_000;
    let config = config_file(&rig);
    let log = rig.dir.path().join("runner.log");
    let mut runner = RunnerProcess::start_logged_with(&config, &log, &[("RUNNER_LOG", "info")]);
    await_outbox_of_aggregate_commands(&rig, ORDERS);

    runner.terminate();
    // The drain has begun (intake stopped) before the Gateway answers anything.
    let draining =
        || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("signal received: draining"));
    assert!(wait_until(WAIT, draining), "the runner drains");
    std::thread::sleep(Duration::from_millis(300));
    paused.store(false, Ordering::SeqCst);
    let status = runner
        .wait_exit(Duration::from_secs(90))
        .expect("exits after draining");
    assert_eq!(status.code(), Some(0), "a drain is a clean exit");

    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        rig.store.outbox_len().unwrap(),
        0,
        "the outbox is empty at exit; log:\n{text}"
    );
    assert_eq!(
        distinct_keys(&gateway).len(),
        ORDERS,
        "every command reached the Gateway"
    );
    let s = &rig.settings.streams;
    let effects = read_stream(
        &nc,
        &s.workflow_commands,
        &format!("{}.>", s.command_prefix),
        ORDERS * 2,
        Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(
        effects.len(),
        ORDERS,
        "every effect command is in the stream once"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("outbox_left=0") && l.contains("relay")),
        "the relay reports what the drain left: {text}"
    );
}

/// A drain whose deadline passes while the Gateway holds every call: the relay stops in
/// time, deletes nothing the Gateway did not confirm, and reports how many items it
/// left, in the log and in `/ready`. After a resume the new pipeline sends them.
#[test]
fn a_drain_that_runs_out_of_time_reports_the_items_it_left() {
    const ORDERS: usize = 10;
    let (gateway, paused) = paused_gateway();
    let (mut rig, _nc) = rig_for(&gateway, ORDERS);
    rig.settings.ops.drain_deadline_ms = 2_000;
    let base = admin_port(&mut rig);
    let config = config_file(&rig);
    let log = rig.dir.path().join("runner.log");
    let mut runner = RunnerProcess::start_logged_with(&config, &log, &[("RUNNER_LOG", "warn")]);
    await_outbox_of_aggregate_commands(&rig, ORDERS);

    let ready = || {
        let (status, body) = call("GET", &format!("{base}/ready"), None);
        (status, serde_json::from_str::<Value>(&body).unwrap())
    };
    assert_eq!(
        ready().1["outbox_left"],
        Value::Null,
        "not drained: nothing to report"
    );
    assert_eq!(
        call("POST", &format!("{base}/admin/drain"), Some(TOKEN)).0,
        202
    );
    assert!(
        wait_until(WAIT, || ready().1["drained"] == true),
        "drained, and the process stays up: {:?}",
        ready()
    );
    let (status, body) = ready();
    assert_eq!(status, 503);
    assert_eq!(body["outbox_left"], json!(ORDERS), "{body}");
    assert_eq!(
        rig.store.outbox_len().unwrap(),
        ORDERS as u64,
        "nothing the Gateway did not confirm left the outbox"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("outbox_left={ORDERS}"))),
        "the log names what was left: {text}"
    );

    // Resumed with a Gateway that answers: the items go out, and the report is gone.
    paused.store(false, Ordering::SeqCst);
    assert_eq!(
        call("POST", &format!("{base}/admin/resume"), Some(TOKEN)).0,
        202
    );
    assert!(
        wait_until(WAIT, || rig.store.outbox_len().unwrap() == 0),
        "sent after the resume"
    );
    assert_eq!(distinct_keys(&gateway).len(), ORDERS);
    assert_eq!(ready().1["outbox_left"], Value::Null);
    runner.terminate();
    let status = runner.wait_exit(Duration::from_secs(60)).expect("exits");
    assert_eq!(status.code(), Some(0));
}
