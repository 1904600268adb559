//! Same inputs → byte-identical outputs.

use serde_json::{json, Value};

use super::*;

/// A program that uses every operation.
fn every_op() -> Value {
    json!({
        "let": {
            "items": { "$get": "event.payload.items" },
            "placed": { "$eq": [{ "$get": "event.event_type" }, "OrderPlaced"] },
            "skus": { "$map": { "over": { "$get": "items" }, "as": "i", "do": { "$upper": { "$get": "i.sku" } } } },
            "big": { "$filter": { "over": { "$get": "items" }, "as": "i", "where": { "$gte": [{ "$get": "i.qty" }, 2] } } },
            "amounts": { "$map": { "over": { "$get": "items" }, "as": "i", "do": { "$mul": [{ "$get": "i.qty" }, { "$get": "i.price" }] } } }
        },
        "output": {
            "status": { "$if": [{ "$get": "placed" }, "active", "completed"] },
            "state": {
                "lit": { "$lit": { "$x": 1 } },
                "exists": { "$exists": "event.payload.note" },
                "coalesce": { "$coalesce": [{ "$get": "state.x" }, "dflt"] },
                "switch": { "$switch": { "on": { "$get": "event.event_type" }, "cases": { "OrderPlaced": 1 }, "default": 0 } },
                "logic": [
                    { "$and": [{ "$get": "placed" }, true] },
                    { "$or": [false, { "$get": "placed" }] },
                    { "$not": { "$get": "placed" } }
                ],
                "compare": [
                    { "$ne": [1, 2] }, { "$lt": [1, 2] }, { "$lte": ["a", "a"] },
                    { "$gt": [2.5, 2] }, { "$gte": [1, 1.0] }
                ],
                "math": [
                    { "$add": [1, 2.25] }, { "$sub": [10, 3] }, { "$div": [7, 2] }, { "$mod": [7, 4] },
                    { "$min": [3, 1] }, { "$max": [3, 1] }, { "$sum": { "$get": "amounts" } }
                ],
                "text": [
                    { "$concat": ["n=", { "$len": { "$get": "items" } }] },
                    { "$str": { "$get": "big" } },
                    { "$lower": "ABC" }
                ],
                "objects": [
                    { "$merge": [{ "a": 1 }, { "b": 2 }] },
                    { "$set": { "in": { "$get": "state" }, "path": "seen.count", "value": 1 } }
                ],
                "quant": [
                    { "$any": { "over": { "$get": "items" }, "as": "i", "where": { "$eq": [{ "$get": "i.sku" }, "b"] } } },
                    { "$all": [true, { "$get": "placed" }] }
                ],
                "skus": { "$get": "skus" },
                "due": { "$time_add": { "at": { "$get": "event.occurred_at" }, "ms": 1500 } },
                "id": { "$id": ["order", { "$get": "ctx.correlation_id" }, { "$get": "skus" }] }
            },
            "commands": [
                { "to": "effect", "effect": "charge_card", "payload": { "amount": { "$sum": { "$get": "amounts" } } },
                  "command_id": { "$id": ["charge", { "$get": "event.event_id" }] } },
                null
            ],
            "schedules": [{ "name": "t", "after_ms": 1000, "payload": { "skus": { "$get": "skus" } } }],
            "cancel": ["old"]
        }
    })
}

fn fingerprint(out: &ProgramOutput) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&out.state).unwrap();
    bytes.extend(
        format!(
            "{:?}|{:?}|{:?}|{:?}|{}",
            out.status, out.commands, out.schedules, out.cancel, out.gas_used
        )
        .bytes(),
    );
    bytes
}

#[test]
fn every_op_program_is_deterministic() {
    let state = json!({ "x": null, "seen": { "before": true } });
    let first = run_with(&program(every_op()), &state, GAS).unwrap();
    let s = first.state.clone().unwrap();
    assert_eq!(s["lit"], json!({ "$x": 1 }));
    assert_eq!(s["math"], json!([3.25, 7, 3.5, 3, 1, 3, 25]));
    assert_eq!(
        s["text"],
        json!(["n=2", "[{\"price\":10,\"qty\":2,\"sku\":\"a\"}]", "abc"])
    );
    assert_eq!(
        s["objects"][1],
        json!({ "x": null, "seen": { "before": true, "count": 1 } })
    );
    assert_eq!(s["due"], json!("2026-11-27T10:00:01.500Z"));
    assert_eq!(s["skus"], json!(["A", "B"]));
    assert_eq!(s["logic"], json!([true, true, false]));
    assert_eq!(s["compare"], json!([true, true, true, true, true]));
    assert_eq!(s["quant"], json!([true, true]));
    assert_eq!(first.commands.len(), 1);

    let want = fingerprint(&first);
    let p = program(every_op());
    for _ in 0..50 {
        assert_eq!(fingerprint(&run_with(&p, &state, GAS).unwrap()), want);
    }
    // A separately compiled copy agrees too.
    let again = run_with(&program(every_op()), &state, GAS).unwrap();
    assert_eq!(fingerprint(&again), want);
}

#[test]
fn faults_are_deterministic() {
    let p = program(every_op());
    let state = json!(null);
    let gas = run_with(&p, &state, GAS).unwrap().gas_used;
    let f1 = run_with(&p, &state, gas - 7).unwrap_err();
    for _ in 0..20 {
        assert_eq!(run_with(&p, &state, gas - 7).unwrap_err(), f1);
    }
    assert_eq!(f1.kind, FaultKind::Gas);
}

#[test]
fn repeated_expression_evaluation_is_identical() {
    let e = expr(json!({ "$id": [{ "$get": "event.payload" }, { "$str": { "$get": "event" } }] }));
    let first = serde_json::to_vec(&e.eval(&[&event()], GAS).unwrap()).unwrap();
    for _ in 0..100 {
        assert_eq!(
            serde_json::to_vec(&e.eval(&[&event()], GAS).unwrap()).unwrap(),
            first
        );
    }
}
