//! Crash/restart of the real `runner` binary in the middle of effects: the process aborts
//! at a named crash point (as abruptly as SIGKILL), is started again, and the upstream (a
//! real HTTP server) and the result stream show what happened.
//!
//! One worker, so exactly one call is in flight when the process dies.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{config_file, recorder_saga, wait_until, Rig, RunnerProcess};
use runner::dev::{read_stream, FakeGateway, Reply};
use runner::settings::Mode;
use serde_json::json;

const COMMANDS: usize = 8;

/// Runs the commands through a runner that aborts at `point` on the `after`-th time,
/// restarts it, and returns (upstream calls, distinct idempotency keys).
fn crash_and_recover(point: &str, after: u32) -> (usize, usize) {
    let upstream = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let mut rig = Rig::new(recorder_saga());
    let manifest = rig.dir.path().join("effects.json");
    let effects = json!({"effects": [{"name": "charge", "provider": "http", "timeout_ms": 2000,
        "http": {"url": format!("{}/v1/charges", upstream.url())}}]});
    std::fs::write(&manifest, effects.to_string()).unwrap();
    rig.settings.mode = Mode::Effect;
    rig.settings.manifests.effects = vec![manifest];
    rig.settings.effects.workers = 1;
    // A claim left by the aborted process blocks the restarted one (a new replica) for
    // the lease: short here, minutes in production.
    rig.settings.effects.claim_lease_ms = 2_000;
    let config = config_file(&rig);
    let nc = rig.connect();
    let subject = format!("{}.acme.charge", rig.settings.streams.command_prefix);
    for i in 0..COMMANDS {
        let cmd = json!({"tenant_id": "acme", "command_id": format!("cmd-{i}"), "effect_name": "charge",
            "payload": {"n": i}, "metadata": {"correlation_id": format!("o-{i}")},
            "issued_at": "2026-11-27T10:00:00Z"});
        rig.publish(&nc, &subject, &cmd);
    }

    let _recovered = RunnerProcess::crash_then_restart(&config, point, after);
    let results_filter = format!("{}.>", rig.settings.streams.result_prefix);
    let events = &rig.settings.streams.workflow_events;
    assert!(
        wait_until(Duration::from_secs(30), || read_stream(
            &nc,
            events,
            &results_filter,
            COMMANDS,
            Duration::from_millis(200)
        )
        .unwrap()
        .len()
            == COMMANDS),
        "every command gets its result"
    );
    let results = read_stream(
        &nc,
        events,
        &results_filter,
        COMMANDS * 2,
        Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(
        results.len(),
        COMMANDS,
        "one result per command (re-publishes deduplicated)"
    );
    let calls = upstream.received();
    let keys: HashSet<String> = calls
        .iter()
        .map(|c| c.header("idempotency-key").unwrap_or_default().to_string())
        .collect();
    (calls.len(), keys.len())
}

#[test]
fn a_crash_after_the_result_was_recorded_does_not_call_again() {
    let (calls, keys) = crash_and_recover(runner::crash::AFTER_RECORD, 3);
    assert_eq!((calls, keys), (COMMANDS, COMMANDS));
}

/// The window that remains: the call ended but its result was not recorded. After the
/// restart the command is called again, with the same idempotency-key, so an upstream
/// that honours the key does not act twice.
#[test]
fn a_crash_between_call_and_record_calls_again_with_the_same_idempotency_key() {
    let (calls, keys) = crash_and_recover(runner::crash::AFTER_CALL, 3);
    assert_eq!((calls, keys), (COMMANDS + 1, COMMANDS));
}
