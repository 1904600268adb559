//! Crash/restart of the real `runner` binary around the outbox relay: the process aborts
//! at a named crash point (as abruptly as SIGKILL), is started again, and the receiving
//! sides — a JetStream stream and an HTTP server playing the Gateway — must see every
//! command id take effect once.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{both_saga, config_file, event, wait_until, Rig, RunnerProcess};
use runner::dev::{read_stream, FakeGateway};
use runner::types::TenantId;
use serde_json::json;

const ORDERS: usize = 20;

/// Publishes the orders, runs the binary until it crashes at `point`, runs it again, and
/// checks what the outside saw.
fn crash_and_recover(point: &str, after: u32) {
    let gateway = FakeGateway::accepting().unwrap();
    let mut rig = Rig::new(both_saga());
    rig.settings.relay.gateway_url = gateway.url().to_string();
    rig.settings.relay.scan_interval_ms = 200;
    let config = config_file(&rig);
    let nc = rig.connect();
    for i in 0..ORDERS {
        let order = format!("o-{i}");
        rig.publish(
            &nc,
            &rig.aggregate_subject("acme", "OrderPlaced"),
            &event(&format!("e-{i}"), "acme", &order, "OrderPlaced", json!({})),
        );
    }

    let _recovered = RunnerProcess::crash_then_restart(&config, point, after);
    let commands_stream = &rig.settings.streams.workflow_commands;
    let filter = format!("{}.>", rig.settings.streams.command_prefix);
    let distinct_posts = || {
        gateway
            .received()
            .iter()
            .map(|c| c.header("idempotency-key").unwrap_or_default().to_string())
            .collect::<HashSet<_>>()
            .len()
    };
    assert!(
        wait_until(Duration::from_secs(30), || distinct_posts() == ORDERS
            && read_stream(
                &nc,
                commands_stream,
                &filter,
                ORDERS,
                Duration::from_millis(200)
            )
            .unwrap()
            .len()
                == ORDERS),
        "every command arrives: {} posted, gateway saw {:?}",
        distinct_posts(),
        gateway.received().len()
    );
    // Every effect command is in the stream exactly once (JetStream deduplicated any
    // re-publish by its Nats-Msg-Id), and the Gateway saw each idempotency key.
    let published = read_stream(
        &nc,
        commands_stream,
        &filter,
        ORDERS * 3,
        Duration::from_secs(1),
    )
    .unwrap();
    let ids: HashSet<String> = published
        .iter()
        .filter_map(|m| runner::nats_io::header(m, "Nats-Msg-Id").map(str::to_string))
        .collect();
    assert_eq!((published.len(), ids.len()), (ORDERS, ORDERS));
    for c in gateway.received() {
        assert_eq!(c.header("idempotency-key"), Some(c.command_id()));
    }
    eprintln!(
        "{point}: gateway calls {} for {ORDERS} commands",
        gateway.received().len()
    );
    // And the outbox drains; every instance applied its event exactly once.
    let acme: TenantId = "acme".parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || rig
            .store
            .outbox(&acme, 10)
            .unwrap()
            .is_empty()),
        "outbox drained"
    );
    let instances = rig
        .store
        .instances(&acme, &"both".parse().unwrap(), 1000)
        .unwrap();
    assert_eq!(instances.len(), ORDERS);
    assert!(instances.iter().all(|(_, r)| r.transitions == 1));
}

#[test]
fn a_crash_after_commit_before_dispatch_loses_nothing() {
    crash_and_recover(runner::crash::AFTER_COMMIT, 1);
}

#[test]
fn a_crash_after_dispatch_before_delete_takes_effect_once() {
    crash_and_recover(runner::crash::AFTER_CONFIRM, 1);
}

#[test]
fn an_unknown_crash_point_is_refused_at_start_up() {
    let rig = Rig::new(both_saga());
    let config = config_file(&rig);
    let mut r = RunnerProcess::start(&config, Some(("no.such.point", 1)));
    let status = r.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(1));
}
