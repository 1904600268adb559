//! `$get`, `$lit`, `$exists`, `$coalesce`, logic ops and `let` evaluation.

use serde_json::{json, Value};

use super::*;

#[test]
fn get_paths() {
    assert_eq!(ev(json!({ "$get": "event.aggregate_id" })), json!("o-1001"));
    assert_eq!(
        ev(json!({ "$get": "event.payload.items.1.sku" })),
        json!("b")
    );
    assert_eq!(
        ev(json!({ "$get": "event.payload.items.0" })),
        json!({ "sku": "a", "qty": 2, "price": 10 })
    );
    assert_eq!(ev(json!({ "$get": "event" }))["event_id"], json!("e-1"));
}

#[test]
fn get_missing_is_null() {
    assert_eq!(ev(json!({ "$get": "event.nope" })), Value::Null);
    assert_eq!(
        ev(json!({ "$get": "event.nope.deeper.still" })),
        Value::Null
    );
    assert_eq!(
        ev(json!({ "$get": "event.payload.items.7.sku" })),
        Value::Null
    );
    assert_eq!(ev(json!({ "$get": "event.payload.note.x" })), Value::Null);
}

#[test]
fn get_into_a_scalar_is_a_path_fault() {
    let f = ev_fault(json!({ "$get": "event.payload.total.amount" }));
    assert_fault(&f, "expr", "$get", FaultKind::Path);
    assert_eq!(f.message, "cannot read `amount` of number 125");
    let f = ev_fault(json!({ "$if": [true, { "$get": "event.payload.items.first" }, null] }));
    assert_fault(&f, "expr.$if.1", "$get", FaultKind::Path);
}

#[test]
fn get_of_state_and_ctx() {
    let p = program(json!({ "output": { "state": {
        "old": { "$get": "state.step" },
        "tenant": { "$get": "ctx.tenant_id" }
    } } }));
    let out = run_with(&p, &json!({ "step": "charging" }), GAS).unwrap();
    assert_eq!(
        out.state,
        Some(json!({ "old": "charging", "tenant": "acme" }))
    );
    let out = run_with(&p, &Value::Null, GAS).unwrap();
    assert_eq!(out.state, Some(json!({ "old": null, "tenant": "acme" })));
}

#[test]
fn lit_is_not_evaluated() {
    assert_eq!(
        ev(json!({ "$lit": { "$get": "event.x", "b": [1] } })),
        json!({ "$get": "event.x", "b": [1] })
    );
    assert_eq!(ev(json!({ "$lit": "$str" })), json!("$str"));
    assert_eq!(ev(json!("$not an op")), json!("$not an op"));
}

#[test]
fn literals_evaluate_their_members() {
    assert_eq!(
        ev(json!({ "a": [1, { "$get": "event.event_id" }], "b": { "c": null } })),
        json!({ "a": [1, "e-1"], "b": { "c": null } })
    );
}

#[test]
fn exists() {
    assert_eq!(ev(json!({ "$exists": "event.payload.total" })), json!(true));
    assert_eq!(
        ev(json!({ "$exists": "event.payload.note" })),
        json!(true),
        "present even if null"
    );
    assert_eq!(ev(json!({ "$exists": "event.payload.nope" })), json!(false));
    assert_eq!(
        ev(json!({ "$exists": "event.payload.note.x" })),
        json!(false)
    );
    assert_eq!(
        ev(json!({ "$exists": "event.payload.total.x" })),
        json!(false),
        "no fault"
    );
    assert_eq!(
        ev(json!({ "$exists": "event.payload.items.1" })),
        json!(true)
    );
    assert_eq!(
        ev(json!({ "$exists": "event.payload.items.2" })),
        json!(false)
    );
    assert_eq!(ev(json!({ "$exists": "event" })), json!(true));
}

#[test]
fn coalesce() {
    assert_eq!(
        ev(
            json!({ "$coalesce": [{ "$get": "event.payload.note" }, { "$get": "event.nope" }, "x", "y"] })
        ),
        json!("x")
    );
    assert_eq!(ev(json!({ "$coalesce": [null, null] })), Value::Null);
    // Lazy: the later (faulting) expression is not evaluated.
    assert_eq!(
        ev(json!({ "$coalesce": [0, { "$div": [1, 0] }] })),
        json!(0)
    );
}

#[test]
fn if_selects_and_is_lazy() {
    assert_eq!(
        ev(json!({ "$if": [true, "yes", { "$div": [1, 0] }] })),
        json!("yes")
    );
    assert_eq!(
        ev(json!({ "$if": [false, { "$div": [1, 0] }, "no"] })),
        json!("no")
    );
    assert_eq!(ev(json!({ "$if": [null, 1, 2] })), json!(2));
    let f = ev_fault(json!({ "$if": ["true", 1, 2] }));
    assert_fault(&f, "expr", "$if", FaultKind::Type);
    assert_eq!(
        f.message,
        "expected a boolean (or null) condition, got string \"true\""
    );
}

#[test]
fn switch() {
    let sw = |on: Value| {
        ev(json!({ "$switch": {
            "on": on,
            "cases": { "OrderPlaced": "placed", "1": "one", "true": "yes", "2.5": "float" },
            "default": "other"
        } }))
    };
    assert_eq!(sw(json!({ "$get": "event.event_type" })), json!("placed"));
    assert_eq!(sw(json!(1)), json!("one"));
    assert_eq!(sw(json!(true)), json!("yes"));
    assert_eq!(sw(json!(2.5)), json!("float"));
    assert_eq!(sw(json!("zzz")), json!("other"));
    assert_eq!(
        ev(json!({ "$switch": { "on": "x", "cases": { "y": 1 } } })),
        Value::Null
    );
    // Only the chosen case is evaluated.
    assert_eq!(
        ev(json!({ "$switch": { "on": "a", "cases": { "a": 1, "b": { "$div": [1, 0] } } } })),
        json!(1)
    );
    let f = ev_fault(json!({ "$switch": { "on": null, "cases": {} } }));
    assert_fault(&f, "expr", "$switch", FaultKind::Type);
    let f = ev_fault(json!({ "$switch": { "on": [1], "cases": {} } }));
    assert_fault(&f, "expr", "$switch", FaultKind::Type);
}

#[test]
fn and_or_not() {
    assert_eq!(ev(json!({ "$and": [true, true] })), json!(true));
    assert_eq!(ev(json!({ "$and": [true, null] })), json!(false));
    assert_eq!(ev(json!({ "$or": [false, null] })), json!(false));
    assert_eq!(ev(json!({ "$or": [false, true] })), json!(true));
    // Short-circuit: the faulting operand is never evaluated.
    assert_eq!(
        ev(json!({ "$and": [false, { "$div": [1, 0] }] })),
        json!(false)
    );
    assert_eq!(
        ev(json!({ "$or": [true, { "$div": [1, 0] }] })),
        json!(true)
    );
    assert_eq!(ev(json!({ "$not": true })), json!(false));
    assert_eq!(ev(json!({ "$not": [null] })), json!(true));
    let f = ev_fault(json!({ "$and": [true, 1] }));
    assert_fault(&f, "expr", "$and", FaultKind::Type);
    let f = ev_fault(json!({ "$or": [false, "x"] }));
    assert_fault(&f, "expr", "$or", FaultKind::Type);
    let f = ev_fault(json!({ "$not": [{ "$get": "event.payload.items" }] }));
    assert_fault(&f, "expr", "$not", FaultKind::Type);
    assert!(
        f.message
            .starts_with("expected a boolean (or null) condition, got list [{"),
        "{}",
        f.message
    );
}

#[test]
fn lets_are_lazy_and_unreferenced_ones_never_run() {
    let out = run(json!({
        "let": {
            "boom": { "$div": [1, 0] },
            "total": { "$get": "event.payload.total" }
        },
        "output": { "state": { "t": { "$get": "total" } } }
    }))
    .unwrap();
    assert_eq!(out.state, Some(json!({ "t": 125 })));
    // Referenced only from an untaken branch: still never evaluated.
    let out = run(json!({
        "let": { "boom": { "$div": [1, 0] } },
        "output": { "state": { "$if": [false, { "$get": "boom" }, 1] } }
    }))
    .unwrap();
    assert_eq!(out.state, Some(json!(1)));
    // Referenced: the fault names the let's node.
    let f = run(json!({
        "let": { "boom": { "$div": [1, 0] } },
        "output": { "state": { "$get": "boom" } }
    }))
    .unwrap_err();
    assert_fault(&f, "let.boom", "$div", FaultKind::Arithmetic);
}

#[test]
fn lets_are_evaluated_once() {
    let with_refs = |n: usize| {
        let refs: Vec<Value> = (0..n).map(|_| json!({ "$get": "x" })).collect();
        run(json!({
            "let": { "x": { "$map": { "over": { "$get": "event.payload.items" }, "as": "it", "do": { "$get": "it.qty" } } } },
            "output": { "state": refs }
        }))
        .unwrap()
    };
    let one = with_refs(1);
    let five = with_refs(5);
    assert_eq!(
        five.state,
        Some(json!([[2, 1], [2, 1], [2, 1], [2, 1], [2, 1]]))
    );
    // The let's cost (1 $map + 1 $get + 2 elements + 2 $get) is paid once; each extra
    // reference costs only its own `$get`.
    assert_eq!(five.gas_used - one.gas_used, 4);
    assert_eq!(one.gas_used, 1 + 1 + 1 + (1 + 1 + 2 + 2));
}

#[test]
fn lets_reference_each_other_in_any_order() {
    let out = run(json!({
        "let": {
            "a": { "$add": [{ "$get": "b" }, 1] },
            "b": { "$mul": [{ "$get": "c" }, 2] },
            "c": { "$get": "event.payload.total" }
        },
        "output": { "state": { "$get": "a" } }
    }))
    .unwrap();
    assert_eq!(out.state, Some(json!(251)));
}

#[test]
fn get_into_a_let() {
    let out = run(json!({
        "let": { "order": { "$get": "event.payload" } },
        "output": { "state": { "$get": "order.items.0.sku" } }
    }))
    .unwrap();
    assert_eq!(out.state, Some(json!("a")));
}
