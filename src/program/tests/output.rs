//! Output shape: defaults, null dropping, and Output faults with precise node paths.

use serde_json::{json, Value};

use super::*;
use crate::program::{CommandSpec, ScheduleSpec, ScheduleWhen, Status};

fn out_fault(output: Value) -> Fault {
    run(json!({ "output": output })).unwrap_err()
}

fn assert_output_fault(output: Value, node: &str, message: &str) {
    let f = out_fault(output);
    assert_eq!(
        (f.node.as_str(), f.op.as_str(), f.kind, f.message.as_str()),
        (node, "output", FaultKind::Output, message)
    );
}

#[test]
fn empty_output_defaults() {
    let out = run(json!({ "output": {} })).unwrap();
    assert_eq!(
        out,
        ProgramOutput {
            state: None,
            status: Status::Active,
            commands: vec![],
            schedules: vec![],
            cancel: vec![],
            gas_used: 1,
        }
    );
    let out = run(
        json!({ "output": { "state": null, "status": null, "commands": null,
                                      "schedules": null, "cancel": null } }),
    )
    .unwrap();
    assert_eq!(
        (out.state, out.status, out.commands.len()),
        (None, Status::Active, 0)
    );
}

#[test]
fn status_values() {
    for (s, want) in [
        ("active", Status::Active),
        ("completed", Status::Completed),
        ("failed", Status::Failed),
    ] {
        assert_eq!(
            run(json!({ "output": { "status": s } })).unwrap().status,
            want
        );
    }
    assert_output_fault(
        json!({ "status": "done" }),
        "output.status",
        "status must be \"active\", \"completed\" or \"failed\", got string \"done\"",
    );
    assert_eq!(
        serde_json::to_value(Status::Completed).unwrap(),
        json!("completed")
    );
    assert_eq!(
        serde_json::from_value::<Status>(json!("failed")).unwrap(),
        Status::Failed
    );
}

#[test]
fn commands_decode_and_null_entries_are_dropped() {
    let out = run(json!({ "output": { "commands": [
        null,
        { "to": "aggregate", "aggregate_type": "order", "aggregate_id": { "$get": "event.aggregate_id" },
          "command_type": "MarkPaid", "payload": { "by": "card" }, "command_id": "c-1" },
        { "$if": [false, { "to": "effect", "effect": "x" }, null] },
        { "to": "effect", "effect": "charge_card" },
        { "to": "effect", "effect": "refund", "payload": null, "command_id": null }
    ] } }))
    .unwrap();
    assert_eq!(
        out.commands,
        vec![
            CommandSpec::Aggregate {
                aggregate_type: "order".into(),
                aggregate_id: "o-1001".into(),
                command_type: "MarkPaid".into(),
                payload: json!({ "by": "card" }),
                command_id: Some("c-1".into()),
            },
            CommandSpec::Effect {
                effect: "charge_card".into(),
                payload: json!({}),
                command_id: None
            },
            CommandSpec::Effect {
                effect: "refund".into(),
                payload: json!({}),
                command_id: None
            },
        ]
    );
}

#[test]
fn command_shape_faults() {
    assert_output_fault(
        json!({ "commands": { "to": "effect" } }),
        "output.commands",
        "must be a list, got object {\"to\":\"effect\"}",
    );
    assert_output_fault(
        json!({ "commands": [null, { "to": "aggregate", "aggregate_type": "order", "command_type": "X" }] }),
        "output.commands.1.aggregate_id",
        "missing required field `aggregate_id`",
    );
    assert_output_fault(
        json!({ "commands": [{ "to": "aggregate", "aggregate_type": "order", "aggregate_id": 7, "command_type": "X" }] }),
        "output.commands.0.aggregate_id",
        "`aggregate_id` must be a non-empty string, got number 7",
    );
    assert_output_fault(
        json!({ "commands": [{ "to": "queue", "effect": "x" }] }),
        "output.commands.0.to",
        "`to` must be \"aggregate\" or \"effect\", got \"queue\"",
    );
    assert_output_fault(
        json!({ "commands": [{ "effect": "x" }] }),
        "output.commands.0.to",
        "missing required field `to`",
    );
    assert_output_fault(
        json!({ "commands": [{ "to": "effect", "effect": "x", "paylod": {} }] }),
        "output.commands.0.paylod",
        "unknown field `paylod` in an effect command (expected to, effect, payload, command_id)",
    );
    assert_output_fault(
        json!({ "commands": [{ "to": "effect", "effect": "x", "command_id": "" }] }),
        "output.commands.0.command_id",
        "`command_id` must be a non-empty string, got string \"\"",
    );
    assert_output_fault(
        json!({ "commands": ["x"] }),
        "output.commands.0",
        "a command must be an object (or null), got string \"x\"",
    );
}

#[test]
fn schedules_decode() {
    let out = run(json!({ "output": { "schedules": [
        { "name": "payment_timeout", "after_ms": 900000, "payload": { "n": 1 } },
        null,
        { "name": "reminder", "at": "2026-11-27T12:00:00+02:00" },
        { "name": "either", "after_ms": null, "at": "1970-01-01T00:00:01.5Z" }
    ] } }))
    .unwrap();
    assert_eq!(
        out.schedules,
        vec![
            ScheduleSpec {
                name: "payment_timeout".into(),
                when: ScheduleWhen::AfterMs(900_000),
                payload: json!({ "n": 1 })
            },
            ScheduleSpec {
                name: "reminder".into(),
                when: ScheduleWhen::AtMs(1_795_773_600_000),
                payload: json!({})
            },
            ScheduleSpec {
                name: "either".into(),
                when: ScheduleWhen::AtMs(1_500),
                payload: json!({})
            },
        ]
    );
}

#[test]
fn schedule_shape_faults() {
    assert_output_fault(
        json!({ "schedules": [{ "name": "t", "after_ms": -1 }] }),
        "output.schedules.0.after_ms",
        "`after_ms` must be a non-negative integer (milliseconds), got number -1",
    );
    assert_output_fault(
        json!({ "schedules": [{ "name": "t", "after_ms": 1.5 }] }),
        "output.schedules.0.after_ms",
        "`after_ms` must be a non-negative integer (milliseconds), got number 1.5",
    );
    assert_output_fault(
        json!({ "schedules": [null, { "name": "t", "after_ms": 1, "at": "2026-01-01T00:00:00Z" }] }),
        "output.schedules.1",
        "a schedule needs exactly one of `after_ms` and `at`, got both",
    );
    assert_output_fault(
        json!({ "schedules": [{ "name": "t" }] }),
        "output.schedules.0",
        "a schedule needs exactly one of `after_ms` and `at`, got neither",
    );
    assert_output_fault(
        json!({ "schedules": [{ "name": "t", "at": "tomorrow" }] }),
        "output.schedules.0.at",
        "invalid RFC 3339 timestamp \"tomorrow\": expected a four-digit year",
    );
    assert_output_fault(
        json!({ "schedules": [{ "after_ms": 5 }] }),
        "output.schedules.0.name",
        "missing required field `name`",
    );
    assert_output_fault(
        json!({ "schedules": [{ "name": "t", "after": 5 }] }),
        "output.schedules.0.after",
        "unknown field `after` in a schedule (expected name, after_ms, at, payload)",
    );
}

#[test]
fn cancel() {
    let out = run(json!({ "output": { "cancel": ["a", null, "b"] } })).unwrap();
    assert_eq!(out.cancel, vec!["a".to_string(), "b".to_string()]);
    assert_output_fault(
        json!({ "cancel": "a" }),
        "output.cancel",
        "must be a list, got string \"a\"",
    );
    assert_output_fault(
        json!({ "cancel": ["a", 1] }),
        "output.cancel.1",
        "a timer name must be a non-empty string, got number 1",
    );
}

#[test]
fn output_must_be_an_object_with_known_fields() {
    assert_output_fault(
        json!([1]),
        "output",
        "the output must be an object, got list [1]",
    );
    assert_output_fault(
        json!({ "$get": "event.event_type" }),
        "output",
        "the output must be an object, got string \"OrderPlaced\"",
    );
    assert_output_fault(
        json!({ "stat": {} }),
        "output.stat",
        "unknown output field `stat` (expected one of cancel, commands, schedules, state, status)",
    );
}

#[test]
fn state_and_output_size_limits() {
    let limits = Limits {
        max_state_bytes: 20,
        max_output_bytes: 100,
        ..Limits::default()
    };
    let p = Program::compile(
        &json!({ "output": { "state": { "$get": "event.payload.items" } } }),
        "t",
        &limits,
    )
    .unwrap();
    let f = run_with(&p, &Value::Null, GAS).unwrap_err();
    assert_fault(&f, "output.state", "output", FaultKind::Output);
    assert_eq!(
        f.message,
        "state exceeds max_state_bytes (20 bytes serialised)"
    );
    // Exactly at the limit is fine: {"a":"0123456789ab"} is 20 bytes.
    let p = Program::compile(
        &json!({ "output": { "state": { "a": "0123456789ab" } } }),
        "t",
        &limits,
    )
    .unwrap();
    assert_eq!(
        run_with(&p, &Value::Null, GAS).unwrap().state,
        Some(json!({ "a": "0123456789ab" }))
    );
    let p = Program::compile(
        &json!({ "output": { "state": { "a": "0123456789abc" } } }),
        "t",
        &limits,
    )
    .unwrap();
    assert_eq!(
        run_with(&p, &Value::Null, GAS).unwrap_err().node,
        "output.state"
    );
    let p = Program::compile(
        &json!({ "output": { "commands": [{ "to": "effect", "effect": "x", "payload": { "$get": "event.payload" } }] } }),
        "t",
        &limits,
    )
    .unwrap();
    let f = run_with(&p, &Value::Null, GAS).unwrap_err();
    assert_fault(&f, "output.commands", "output", FaultKind::Output);
    assert_eq!(
        f.message,
        "output exceeds max_output_bytes (100 bytes serialised)"
    );
}
