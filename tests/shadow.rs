//! `runner shadow` against a real stream: the recorded range goes through the version in
//! force and a candidate side by side; exactly the differing transitions are reported,
//! and nothing is written, published or left behind.

mod common;

use common::{config_file, event, Rig};
use serde_json::{json, Value};

/// Version 2 is in force; version 1 is kept. They differ only for `n == 3`.
fn two_versions() -> Value {
    let program = |three: i64| {
        json!({"output": {"state": {"n": {"$if": [
            {"$eq": [{"$get": "event.payload.n"}, 3]}, three, {"$get": "event.payload.n"}]}}}})
    };
    json!([{
        "name": "counted", "version": 2,
        "triggers": [{"subject": "{ns}.aggregate.*.order.*", "start": true,
                      "correlate": {"$get": "event.aggregate_id"}}],
        "on_event": program(30),
        "previous": [{"version": 1, "on_event": program(3)}]
    }])
}

#[test]
fn shadow_reports_exactly_the_differing_transitions_and_writes_nothing() {
    let rig = Rig::new(two_versions());
    let config = config_file(&rig);
    let nc = rig.connect();
    for n in 0..6 {
        let body = event(
            &format!("e-{n}"),
            "acme",
            &format!("o-{n}"),
            "OrderPlaced",
            json!({ "n": n }),
        );
        rig.publish(&nc, &rig.aggregate_subject("acme", "OrderPlaced"), &body);
    }
    let js = nats::jetstream::new(nc.clone());
    let streams = &rig.settings.streams;
    // What shadow must leave as it found: the event stream (and its consumers), the
    // command stream and the configured store.
    let footprint = || {
        (
            js.stream_info(&streams.aggregate_events).unwrap().state,
            js.stream_info(&streams.workflow_commands)
                .unwrap()
                .state
                .messages,
            rig.store.entries().unwrap(),
        )
    };
    let before = footprint();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([
            "shadow",
            "--saga",
            "counted",
            "--version",
            "1",
            "--from",
            "1",
            "--config",
        ])
        .arg(&config)
        .env("RUNNER_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "differences found: {stdout}{stderr}"
    );
    assert!(stdout.contains("seq 4 instance o-3:"), "{stdout}");
    assert!(stdout.contains("state.n: 30 → 3"), "{stdout}");
    assert!(
        stdout.contains("6 events read, 6 transitions compared, 1 differ"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("seq ").count(), 1, "only the one: {stdout}");

    // The same version against itself: no differences, exit 0.
    let same = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([
            "shadow",
            "--saga",
            "counted",
            "--version",
            "2",
            "--from",
            "2",
            "--to",
            "5",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&same.stdout);
    assert_eq!(same.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("4 events read, 4 transitions compared, 0 differ"),
        "{stdout}"
    );

    // Nothing written, published or left behind: the stream (no consumer added), the
    // command stream and the configured store are as they were.
    let after = footprint();
    assert_eq!(
        (after.0.messages, after.0.consumer_count, after.1, after.2),
        (
            before.0.messages,
            before.0.consumer_count,
            before.1,
            before.2
        )
    );

    // A version the manifest does not have is an error (exit 2) that names it.
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([
            "shadow",
            "--saga",
            "counted",
            "--version",
            "7",
            "--from",
            "1",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no version 7"));
}
