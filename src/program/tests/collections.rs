//! `$merge`, `$set`, `$len`, `$map`, `$filter`, `$any`, `$all`.

use serde_json::json;

use super::*;

#[test]
fn merge_is_shallow_right_wins_and_skips_null() {
    assert_eq!(
        ev(json!({ "$merge": [{ "a": 1, "b": { "x": 1 } }, null, { "b": { "y": 2 }, "c": 3 }] })),
        json!({ "a": 1, "b": { "y": 2 }, "c": 3 })
    );
    assert_eq!(ev(json!({ "$merge": [null] })), json!({}));
    let f = ev_fault(json!({ "$merge": [{ "a": 1 }, [1]] }));
    assert_fault(&f, "expr", "$merge", FaultKind::Type);
    assert_eq!(f.message, "expected objects (or null), got list [1]");
}

/// Objects are searched by key, so every object built (set into, merged, converted from
/// an input) must keep its keys in order: a key inserted first, between or last is found
/// again by the next `$set` into it, and `$eq` compares objects key by key.
#[test]
fn built_objects_keep_their_keys_in_order() {
    let base = json!({ "b": 1, "d": 2 });
    for key in ["a", "c", "e", "b"] {
        let set = json!({ "$set": { "in": base, "path": key, "value": 0 } });
        // Setting below the key just set finds it (a number), so this faults.
        let f = ev_fault(json!({ "$set": { "in": set, "path": format!("{key}.x"), "value": 1 } }));
        assert_fault(&f, "expr", "$set", FaultKind::Path);
        let mut want = base.clone();
        want[key] = json!(0);
        assert_eq!(ev(set.clone()), want);
        assert_eq!(ev(json!({ "$eq": [set, want] })), json!(true));
    }
    let merged = json!({ "$merge": [{ "d": 1, "b": 2 }, { "c": 3, "a": 4, "d": 5 }] });
    assert_eq!(ev(json!({ "$len": merged })), json!(4));
    assert_eq!(
        ev(json!({ "$eq": [merged, { "a": 4, "b": 2, "c": 3, "d": 5 }] })),
        json!(true)
    );
    let f = ev_fault(json!({ "$set": { "in": merged, "path": "d.x", "value": 1 } }));
    assert_fault(&f, "expr", "$set", FaultKind::Path);
}

#[test]
fn set_creates_intermediates_and_copies() {
    assert_eq!(
        ev(json!({ "$set": { "in": { "a": 1 }, "path": "b.c", "value": 2 } })),
        json!({ "a": 1, "b": { "c": 2 } })
    );
    assert_eq!(
        ev(json!({ "$set": { "in": null, "path": "x", "value": [1] } })),
        json!({ "x": [1] })
    );
    assert_eq!(
        ev(
            json!({ "$set": { "in": { "$get": "event.payload" }, "path": "items.1.qty", "value": 9 } })
        )["items"],
        json!([{ "sku": "a", "qty": 2, "price": 10 }, { "sku": "b", "qty": 9, "price": 5 }])
    );
    // The input is not modified (values are immutable).
    let out = state_of(json!({
        "a": { "$set": { "in": { "$get": "event.metadata" }, "path": "x", "value": 1 } },
        "b": { "$get": "event.metadata" }
    }));
    assert_eq!(
        out,
        json!({ "a": { "correlation_id": "o-1001", "x": 1 }, "b": { "correlation_id": "o-1001" } })
    );
}

#[test]
fn set_faults() {
    let f = ev_fault(json!({ "$set": { "in": { "a": 1 }, "path": "a.b", "value": 2 } }));
    assert_fault(&f, "expr", "$set", FaultKind::Path);
    assert_eq!(f.message, "cannot set `b` inside number 1");
    let f = ev_fault(json!({ "$set": { "in": [1, 2], "path": "5", "value": 0 } }));
    assert_fault(&f, "expr", "$set", FaultKind::Path);
    let f = ev_fault(json!({ "$set": { "in": "str", "path": "a", "value": 0 } }));
    assert_fault(&f, "expr", "$set", FaultKind::Type);
}

#[test]
fn len() {
    assert_eq!(ev(json!({ "$len": "héllo" })), json!(5));
    assert_eq!(
        ev(json!({ "$len": { "$get": "event.payload.items" } })),
        json!(2)
    );
    assert_eq!(ev(json!({ "$len": [1, 2, 3] })), json!(3));
    assert_eq!(ev(json!({ "$len": { "$get": "event.payload" } })), json!(6));
    assert_eq!(ev(json!({ "$len": null })), json!(0));
    let f = ev_fault(json!({ "$len": 12 }));
    assert_fault(&f, "expr", "$len", FaultKind::Type);
}

#[test]
fn map_and_filter() {
    assert_eq!(
        ev(
            json!({ "$map": { "over": { "$get": "event.payload.items" }, "as": "it", "do": { "$get": "it.sku" } } })
        ),
        json!(["a", "b"])
    );
    assert_eq!(
        ev(
            json!({ "$filter": { "over": { "$get": "event.payload.items" }, "as": "it",
                                "where": { "$gt": [{ "$get": "it.qty" }, 1] } } })
        ),
        json!([{ "sku": "a", "qty": 2, "price": 10 }])
    );
    assert_eq!(
        ev(json!({ "$map": { "over": null, "as": "x", "do": 1 } })),
        json!([])
    );
    // Nested loops see the outer variable; lets and roots stay visible.
    assert_eq!(
        ev(json!({ "$map": { "over": [1, 2], "as": "a",
            "do": { "$map": { "over": [10, 20], "as": "b",
                "do": { "$add": [{ "$get": "a" }, { "$get": "b" }] } } } } })),
        json!([[11, 21], [12, 22]])
    );
    let f = ev_fault(json!({ "$map": { "over": "abc", "as": "x", "do": 1 } }));
    assert_fault(&f, "expr", "$map", FaultKind::Type);
    let f = ev_fault(json!({ "$filter": { "over": [1], "as": "x", "where": { "$get": "x" } } }));
    assert_fault(&f, "expr", "$filter", FaultKind::Type);
    let f = ev_fault(
        json!({ "$map": { "over": [1, "a"], "as": "x", "do": { "$add": [{ "$get": "x" }, 1] } } }),
    );
    assert_fault(&f, "expr.$map.do", "$add", FaultKind::Type);
}

#[test]
fn loop_variable_inside_a_let_expression() {
    let out = run(json!({
        "let": { "skus": { "$map": { "over": { "$get": "event.payload.items" }, "as": "i", "do": { "$get": "i.sku" } } } },
        "output": { "state": { "$map": { "over": [1, 2], "as": "n", "do": [{ "$get": "n" }, { "$get": "skus" }] } } }
    }))
    .unwrap();
    assert_eq!(out.state, Some(json!([[1, ["a", "b"]], [2, ["a", "b"]]])));
}

#[test]
fn any_all_both_forms() {
    let items = json!({ "$get": "event.payload.items" });
    let q = |op: &str, cond: serde_json::Value| {
        ev(json!({ op: { "over": items.clone(), "as": "i", "where": cond } }))
    };
    assert_eq!(
        q("$any", json!({ "$eq": [{ "$get": "i.sku" }, "b"] })),
        json!(true)
    );
    assert_eq!(
        q("$all", json!({ "$eq": [{ "$get": "i.sku" }, "b"] })),
        json!(false)
    );
    assert_eq!(
        q("$all", json!({ "$gt": [{ "$get": "i.qty" }, 0] })),
        json!(true)
    );
    assert_eq!(
        q("$any", json!({ "$gt": [{ "$get": "i.qty" }, 5] })),
        json!(false)
    );
    assert_eq!(
        ev(json!({ "$any": { "$get": "event.payload.flags" } })),
        json!(true)
    );
    assert_eq!(
        ev(json!({ "$all": { "$get": "event.payload.flags" } })),
        json!(false)
    );
    assert_eq!(ev(json!({ "$all": [true, true] })), json!(true));
    assert_eq!(ev(json!({ "$any": [null, false] })), json!(false));
    assert_eq!(ev(json!({ "$any": [] })), json!(false));
    assert_eq!(ev(json!({ "$all": [] })), json!(true));
    assert_eq!(ev(json!({ "$all": null })), json!(true));
    // Short-circuit: stops before the non-boolean element.
    assert_eq!(ev(json!({ "$any": [true, 5] })), json!(true));
    let f = ev_fault(json!({ "$all": [true, 5] }));
    assert_fault(&f, "expr", "$all", FaultKind::Type);
    let f = ev_fault(json!({ "$any": { "over": [1], "as": "x", "where": "yes" } }));
    assert_fault(&f, "expr", "$any", FaultKind::Type);
}
