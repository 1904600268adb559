//! Text, time and id operations.

use serde_json::{json, Value};
use uuid::Uuid;

use super::*;
use crate::program::ops::ID_NAMESPACE;
use crate::program::value::{Val, WalkError};

#[test]
fn concat() {
    assert_eq!(
        ev(
            json!({ "$concat": ["order-", { "$get": "event.aggregate_id" }, "-", 3, "-", 2.5, "-", true] })
        ),
        json!("order-o-1001-3-2.5-true")
    );
    let f = ev_fault(json!({ "$concat": ["a", null] }));
    assert_fault(&f, "expr", "$concat", FaultKind::Type);
    assert_eq!(
        f.message,
        "expected strings, numbers or booleans, got null null"
    );
    let f = ev_fault(json!({ "$concat": ["a", { "$get": "event.payload.items" }] }));
    assert_fault(&f, "expr", "$concat", FaultKind::Type);
}

#[test]
fn str_renders_json() {
    assert_eq!(ev(json!({ "$str": "as-is" })), json!("as-is"));
    assert_eq!(ev(json!({ "$str": 42 })), json!("42"));
    assert_eq!(ev(json!({ "$str": 2.0 })), json!("2.0"));
    assert_eq!(
        ev(json!({ "$str": [true] })),
        json!("true"),
        "1-element list form"
    );
    assert_eq!(ev(json!({ "$str": null })), json!("null"));
    assert_eq!(ev(json!({ "$str": [[1, "a"]] })), json!("[1,\"a\"]"));
    assert_eq!(
        ev(json!({ "$str": { "$get": "event.payload.items.0" } })),
        json!("{\"price\":10,\"qty\":2,\"sku\":\"a\"}")
    );
}

#[test]
fn canonical_json_matches_serde_json() {
    let tricky = json!({
        "z": "quote\" backslash\\ slash/ nl\n tab\t bell\u{7} del\u{7f} é 😀 \u{1f}",
        "a": [1, -2, 2.5, 1e100, 0.1, null, false, {}],
        "\u{0}key": { "n": 18446744073709551615_u64 }
    });
    let via_str = ev(json!({ "$str": { "$lit": tricky.clone() } }));
    assert_eq!(
        via_str,
        Value::String(serde_json::to_string(&tricky).unwrap())
    );
    // Output size accounting is exact: the serialised length fits, one byte less does not.
    let val = Val::from_json(&tricky).unwrap();
    let len = serde_json::to_vec(&tricky).unwrap().len();
    let mut budget = len;
    assert_eq!(val.to_json(&mut budget).unwrap(), tricky);
    assert_eq!(budget, 0);
    let mut budget = len - 1;
    assert_eq!(val.to_json(&mut budget), Err(WalkError::TooLarge));
}

#[test]
fn lower_upper() {
    assert_eq!(
        ev(json!({ "$lower": { "$get": "event.payload.name" } })),
        json!("ada lovelace")
    );
    assert_eq!(ev(json!({ "$upper": ["straße"] })), json!("STRASSE"));
    let f = ev_fault(json!({ "$upper": 1 }));
    assert_fault(&f, "expr", "$upper", FaultKind::Type);
    let f = ev_fault(json!({ "$lower": null }));
    assert_fault(&f, "expr", "$lower", FaultKind::Type);
}

#[test]
fn string_results_are_limited() {
    let limits = Limits {
        max_string_bytes: 10,
        ..Limits::default()
    };
    let e = Expr::compile(
        &json!({ "$concat": ["12345", "678901"] }),
        "t",
        &[],
        &limits,
    )
    .unwrap();
    let f = e.eval(&[], GAS).unwrap_err();
    assert_fault(&f, "expr", "$concat", FaultKind::Limit);
    assert_eq!(
        f.message,
        "string result is longer than max_string_bytes (10)"
    );
    let e = Expr::compile(&json!({ "$str": [[1, 2, 3, 4, 5, 6]] }), "t", &[], &limits).unwrap();
    assert_eq!(e.eval(&[], GAS).unwrap_err().kind, FaultKind::Limit);
    let e = Expr::compile(&json!({ "$upper": "abcdefghijk" }), "t", &[], &limits).unwrap();
    assert_eq!(e.eval(&[], GAS).unwrap_err().kind, FaultKind::Limit);
    let e = Expr::compile(&json!({ "$concat": ["12345", "67890"] }), "t", &[], &limits).unwrap();
    assert_eq!(e.eval(&[], GAS).unwrap(), json!("1234567890"));
}

#[test]
fn time_add() {
    assert_eq!(
        ev(json!({ "$time_add": { "at": { "$get": "event.occurred_at" }, "ms": 900000 } })),
        json!("2026-11-27T10:15:00Z")
    );
    assert_eq!(
        ev(json!({ "$time_add": { "at": "2026-11-27T12:00:00+02:00", "ms": -1 } })),
        json!("2026-11-27T09:59:59.999Z")
    );
    assert_eq!(
        ev(json!({ "$time_add": { "at": "2024-02-28T23:00:00Z", "ms": 3600000 } })),
        json!("2024-02-29T00:00:00Z")
    );
    let f = ev_fault(json!({ "$time_add": { "at": "yesterday", "ms": 1 } }));
    assert_fault(&f, "expr", "$time_add", FaultKind::Type);
    assert_eq!(
        f.message,
        "invalid RFC 3339 timestamp \"yesterday\": expected a four-digit year"
    );
    let f = ev_fault(json!({ "$time_add": { "at": 5, "ms": 1 } }));
    assert_fault(&f, "expr", "$time_add", FaultKind::Type);
    let f = ev_fault(json!({ "$time_add": { "at": "2026-11-27T10:00:00Z", "ms": 1.5 } }));
    assert_fault(&f, "expr", "$time_add", FaultKind::Type);
    let f = ev_fault(json!({ "$time_add": { "at": "9999-12-31T23:59:59Z", "ms": 1000 } }));
    assert_fault(&f, "expr", "$time_add", FaultKind::Arithmetic);
}

#[test]
fn id_namespace_is_documented_derivation() {
    assert_eq!(
        ID_NAMESPACE,
        Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:runner:program:id")
    );
    assert_eq!(
        ID_NAMESPACE.to_string(),
        "b8f40854-844f-5d08-830b-105d13bedda9"
    );
}

#[test]
fn id_is_uuid_v5_over_canonical_parts() {
    let id = ev(json!({ "$id": ["order", { "$get": "event.aggregate_id" }, 1] }));
    let want = Uuid::new_v5(&ID_NAMESPACE, br#"["order","o-1001",1]"#).to_string();
    assert_eq!(id, json!(want));
    let s = id.as_str().unwrap();
    assert_eq!(
        (s.len(), s.to_lowercase() == s, &s[14..15]),
        (36, true, "5")
    );
    assert_ne!(ev(json!({ "$id": ["order", "o-1002", 1] })), id);
    // Parts are structural: ["a,b"] differs from ["a", "b"]; objects are key-sorted.
    assert_ne!(
        ev(json!({ "$id": ["a,b"] })),
        ev(json!({ "$id": ["a", "b"] }))
    );
    assert_eq!(
        ev(json!({ "$id": [{ "b": 1, "a": 2 }] })),
        json!(Uuid::new_v5(&ID_NAMESPACE, br#"[{"a":2,"b":1}]"#).to_string())
    );
}

#[test]
fn id_input_is_limited() {
    let limits = Limits {
        max_output_bytes: 16,
        ..Limits::default()
    };
    let e = Expr::compile(&json!({ "$id": ["0123456789abcdef"] }), "t", &[], &limits).unwrap();
    let f = e.eval(&[], GAS).unwrap_err();
    assert_fault(&f, "expr", "$id", FaultKind::Limit);
}
