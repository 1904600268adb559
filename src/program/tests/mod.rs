//! Tests of the program language. Sources are written with `serde_json::json!`.

mod collections;
mod data_logic;
mod determinism;
mod load;
mod math_compare;
mod output;
mod safety;
mod saga;
mod text_time_id;

use serde_json::{json, Value};

use super::{Expr, Fault, FaultKind, Limits, LoadError, Program, ProgramInput, ProgramOutput};

pub(super) const GAS: u64 = 100_000;

/// An event envelope used by most tests.
pub(super) fn event() -> Value {
    json!({
        "event_id": "e-1",
        "event_type": "OrderPlaced",
        "aggregate_type": "order",
        "aggregate_id": "o-1001",
        "occurred_at": "2026-11-27T10:00:00Z",
        "payload": {
            "total": 125,
            "price": 2.5,
            "name": "Ada Lovelace",
            "note": null,
            "flags": [true, false],
            "items": [
                { "sku": "a", "qty": 2, "price": 10 },
                { "sku": "b", "qty": 1, "price": 5 }
            ]
        },
        "metadata": { "correlation_id": "o-1001" }
    })
}

pub(super) fn ctx() -> Value {
    json!({
        "tenant_id": "acme",
        "saga": "order_fulfilment",
        "correlation_id": "o-1001",
        "stream": "AGGREGATE_EVENTS",
        "subject": "aggregate.acme.order.OrderPlaced"
    })
}

/// Compiles a standalone expression over `event`.
pub(super) fn expr(src: Value) -> Expr {
    Expr::compile(&src, "test.yaml", &["event"], &Limits::default()).unwrap()
}

/// Evaluates an expression over [`event`].
pub(super) fn ev(src: Value) -> Value {
    expr(src).eval(&[&event()], GAS).unwrap()
}

/// Evaluates an expression over [`event`], expecting a fault.
pub(super) fn ev_fault(src: Value) -> Fault {
    expr(src).eval(&[&event()], GAS).unwrap_err()
}

/// The load error of an expression over `event`.
pub(super) fn expr_err(src: Value) -> LoadError {
    Expr::compile(&src, "test.yaml", &["event"], &Limits::default()).unwrap_err()
}

pub(super) fn program(src: Value) -> Program {
    Program::compile(&src, "programs/test.yaml", &Limits::default()).unwrap()
}

pub(super) fn load_err(src: Value) -> LoadError {
    Program::compile(&src, "programs/test.yaml", &Limits::default()).unwrap_err()
}

pub(super) fn run_with(p: &Program, state: &Value, gas: u64) -> Result<ProgramOutput, Fault> {
    let (event, ctx) = (event(), ctx());
    p.eval(
        &ProgramInput {
            state,
            event: &event,
            ctx: &ctx,
        },
        gas,
    )
}

pub(super) fn run(src: Value) -> Result<ProgramOutput, Fault> {
    run_with(&program(src), &Value::Null, GAS)
}

/// Runs a program whose output is `{state: <src>}` and returns the state.
pub(super) fn state_of(src: Value) -> Value {
    run(json!({ "output": { "state": src } }))
        .unwrap()
        .state
        .unwrap()
}

pub(super) fn assert_fault(f: &Fault, node: &str, op: &str, kind: FaultKind) {
    assert_eq!(
        (f.node.as_str(), f.op.as_str(), f.kind),
        (node, op, kind),
        "unexpected fault: {f}"
    );
}

#[test]
fn program_and_expr_are_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Program>();
    check::<Expr>();
    check::<Fault>();
    check::<LoadError>();
}

#[test]
fn limits_defaults() {
    let l = Limits::default();
    assert_eq!(
        (
            l.max_depth,
            l.max_output_bytes,
            l.max_state_bytes,
            l.max_string_bytes
        ),
        (64, 1 << 20, 256 << 10, 64 << 10)
    );
}

#[test]
fn fault_display() {
    let f = ev_fault(json!({ "$add": [1, "a"] }));
    assert_eq!(
        f.to_string(),
        "program fault at expr ($add): expected a number, got string \"a\""
    );
    assert_eq!(f.kind.as_str(), "type");
}

#[test]
fn load_error_display() {
    let e = load_err(json!({ "let": { "x": { "$nope": 1 } }, "output": {} }));
    assert_eq!(
        e.to_string(),
        "invalid program programs/test.yaml at let.x: unknown operation `$nope`"
    );
}
