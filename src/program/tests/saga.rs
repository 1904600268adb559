//! The program from docs/program-language.md's "Shape" section.

use serde_json::{json, Value};

use super::*;
use crate::program::{CommandSpec, ScheduleSpec, ScheduleWhen, Status};

fn shape_program() -> Value {
    json!({
        "let": {
            "type": { "$get": "event.event_type" },
            "placed": { "$eq": [{ "$get": "type" }, "OrderPlaced"] }
        },
        "output": {
            "status": { "$if": [{ "$get": "placed" }, "active", { "$get": "state.status" }] },
            "state": {
                "order_id": { "$get": "event.aggregate_id" },
                "total": { "$get": "event.payload.total" },
                "step": "charging"
            },
            "commands": [
                { "$if": [{ "$get": "placed" },
                          { "to": "effect", "effect": "charge_card", "payload": { "amount": { "$get": "event.payload.total" } } },
                          null] }
            ],
            "schedules": [
                { "name": "payment_timeout", "after_ms": 900000, "payload": {} }
            ]
        }
    })
}

#[test]
fn order_placed_charges_the_card_and_schedules_a_timeout() {
    let out = run_with(&program(shape_program()), &Value::Null, 20_000).unwrap();
    assert_eq!(out.status, Status::Active);
    assert_eq!(
        out.state,
        Some(json!({ "order_id": "o-1001", "total": 125, "step": "charging" }))
    );
    assert_eq!(
        out.commands,
        vec![CommandSpec::Effect {
            effect: "charge_card".into(),
            payload: json!({ "amount": 125 }),
            command_id: None,
        }]
    );
    assert_eq!(
        out.schedules,
        vec![ScheduleSpec {
            name: "payment_timeout".into(),
            when: ScheduleWhen::AfterMs(900_000),
            payload: json!({}),
        }]
    );
    assert!(out.cancel.is_empty());
    assert!(
        out.gas_used > 0 && out.gas_used < 50,
        "gas {}",
        out.gas_used
    );
}

#[test]
fn other_events_keep_the_status_and_issue_no_command() {
    let p = program(shape_program());
    let mut e = event();
    e["event_type"] = json!("PaymentSucceeded");
    let state = json!({ "status": "completed" });
    let out = p
        .eval(
            &ProgramInput {
                state: &state,
                event: &e,
                ctx: &ctx(),
            },
            20_000,
        )
        .unwrap();
    assert_eq!(out.status, Status::Completed);
    assert!(out.commands.is_empty());
    // A new instance (null state) has no status: null means the default, active.
    let out = p
        .eval(
            &ProgramInput {
                state: &Value::Null,
                event: &e,
                ctx: &ctx(),
            },
            20_000,
        )
        .unwrap();
    assert_eq!(out.status, Status::Active);
}

#[test]
fn correlate_expression() {
    let limits = Limits::default();
    let e = Expr::compile(
        &json!({ "$get": "event.aggregate_id" }),
        "sagas.yaml",
        &["event", "ctx"],
        &limits,
    )
    .unwrap();
    assert_eq!(e.eval(&[&event(), &ctx()], 100).unwrap(), json!("o-1001"));
}
