//! Gas, limits and hostile programs: faults, never hangs, stack overflows or OOM.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::*;

#[test]
fn gas_is_counted_per_op_and_literal() {
    let p = program(json!({ "output": { "state": { "$add": [1, 2] } } }));
    let out = run_with(&p, &Value::Null, 2).unwrap();
    assert_eq!((out.state, out.gas_used), (Some(json!(3)), 2));
    let f = run_with(&p, &Value::Null, 1).unwrap_err();
    assert_fault(&f, "output.state", "$add", FaultKind::Gas);
    assert_eq!(f.message, "out of gas (budget 1)");
}

#[test]
fn gas_exhaustion_in_a_loop_names_the_node() {
    let p = program(json!({ "output": { "state": {
        "$map": { "over": { "$lit": [1, 2, 3, 4, 5, 6] }, "as": "x", "do": { "$get": "x" } }
    } } }));
    // object 1, $map 1, $lit 1, then per element: 1 ($map) + 1 ($get).
    assert_eq!(run_with(&p, &Value::Null, 15).unwrap().gas_used, 15);
    let f = run_with(&p, &Value::Null, 10).unwrap_err();
    assert_fault(&f, "output.state.$map.do", "$get", FaultKind::Gas);
    let f = run_with(&p, &Value::Null, 9).unwrap_err();
    assert_fault(&f, "output.state", "$map", FaultKind::Gas);
}

/// `a0` is a string; `a{i}` is a list of two references to `a{i-1}`: 2^n leaves.
fn doubling_lets(levels: usize, make: impl Fn(&str) -> Value) -> Map<String, Value> {
    let mut lets = Map::new();
    lets.insert("a0".into(), json!({ "$lit": "xxxxxxxxxxxxxxxx" }));
    for i in 1..=levels {
        lets.insert(format!("a{i}"), make(&format!("a{}", i - 1)));
    }
    lets
}

fn bomb(levels: usize, output: Value) -> Result<ProgramOutput, Fault> {
    let lets = doubling_lets(levels, |prev| json!([{ "$get": prev }, { "$get": prev }]));
    run(json!({ "let": lets, "output": output }))
}

#[test]
fn doubling_chain_is_a_fault_not_an_oom() {
    let start = Instant::now();
    let top = json!({ "$get": "a64" });

    let f = bomb(64, json!({ "state": top })).unwrap_err();
    assert_fault(&f, "output.state", "output", FaultKind::Output);
    assert_eq!(
        f.message,
        "state exceeds max_state_bytes (262144 bytes serialised)"
    );

    let f = bomb(
        64,
        json!({ "commands": [{ "to": "effect", "effect": "x", "payload": top }] }),
    )
    .unwrap_err();
    assert_fault(&f, "output.commands", "output", FaultKind::Output);

    for (op, src) in [
        ("$eq", json!({ "$eq": [top, top] })),
        ("$ne", json!({ "$ne": [top, top] })),
        ("$str", json!({ "$str": top })),
        ("$id", json!({ "$id": [top] })),
    ] {
        let f = bomb(64, json!({ "state": src })).unwrap_err();
        assert_eq!(
            (f.node.as_str(), f.op.as_str()),
            ("output.state", op),
            "{f}"
        );
        assert!(matches!(f.kind, FaultKind::Gas | FaultKind::Limit), "{f}");
    }
    // Cheap operations on the huge value are fine.
    let out = bomb(64, json!({ "state": { "$len": top } })).unwrap();
    assert_eq!(out.state, Some(json!(2)));
    let path = format!("a64{}", ".1".repeat(63));
    let out = bomb(64, json!({ "state": { "$get": path } })).unwrap();
    let x16 = "x".repeat(16);
    assert_eq!(out.state, Some(json!([x16, x16])));

    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn doubling_objects_and_strings_are_bounded() {
    let start = Instant::now();
    let lets = doubling_lets(
        64,
        |prev| json!({ "$merge": [{ "l": { "$get": prev } }, { "r": { "$get": prev } }] }),
    );
    let f = run(json!({ "let": lets, "output": { "state": { "$get": "a64" } } })).unwrap_err();
    assert_eq!(
        (f.node.as_str(), f.kind),
        ("output.state", FaultKind::Output)
    );

    let lets = doubling_lets(
        64,
        |prev| json!({ "$concat": [{ "$get": prev }, { "$get": prev }] }),
    );
    let f = run(json!({ "let": lets, "output": { "state": { "$get": "a64" } } })).unwrap_err();
    // 16 bytes × 2^12 = 64 KiB is the limit, so level 13 is the first too long.
    assert_fault(&f, "let.a13", "$concat", FaultKind::Limit);

    let lets = doubling_lets(64, |prev| json!([{ "$get": prev }, { "$get": prev }]));
    let mut src = Map::new();
    src.insert("let".into(), Value::Object(lets));
    src.insert(
        "output".into(),
        json!({ "state": { "$sum": { "$get": "a64" } } }),
    );
    let f = run(Value::Object(src)).unwrap_err();
    assert_fault(&f, "output.state", "$sum", FaultKind::Type);

    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn expression_result_is_bounded() {
    let limits = Limits {
        max_output_bytes: 8,
        ..Limits::default()
    };
    let e = Expr::compile(
        &json!({ "$get": "event.payload" }),
        "t",
        &["event"],
        &limits,
    )
    .unwrap();
    let f = e.eval(&[&event()], GAS).unwrap_err();
    assert_eq!(
        (f.node.as_str(), f.op.as_str(), f.kind),
        ("expr", "$get", FaultKind::Output)
    );
    assert_eq!(
        e.eval(&[&json!({ "payload": "abc" })], GAS).unwrap(),
        json!("abc")
    );
}

#[test]
fn deep_evaluation_fits_a_small_stack() {
    // Compiling 64 levels and evaluating ~225 levels fit in 1 MiB even in debug builds.
    // Seven lets, each 31 `$not`s around a `$get` of the previous: ~225 levels of
    // evaluation, close to the 4 × max_depth bound.
    let mut lets = Map::new();
    lets.insert("l0".into(), json!(true));
    for i in 1..=7 {
        let mut e = json!({ "$get": format!("l{}", i - 1) });
        for _ in 0..31 {
            e = json!({ "$not": e });
        }
        lets.insert(format!("l{i}"), e);
    }
    let src = json!({ "let": lets, "output": { "state": { "$get": "l7" } } });
    let handle = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || run(src).map(|o| o.state))
        .unwrap();
    assert_eq!(handle.join().unwrap().unwrap(), Some(json!(false)));
}

#[test]
fn deep_inputs_are_a_limit_fault() {
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!({ "x": deep });
    }
    let e = expr(json!({ "$if": [true, { "$get": "event.x" }, null] }));
    let f = e.eval(&[&deep], GAS).unwrap_err();
    assert_fault(&f, "expr.$if.1", "$get", FaultKind::Limit);
    assert_eq!(f.message, "input value is nested too deeply");
}

#[test]
fn deep_output_is_an_output_fault() {
    let path: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
    let path = path.join(".");
    let mut lets = Map::new();
    lets.insert("l0".into(), json!(1));
    for i in 1..=3 {
        lets.insert(
            format!("l{i}"),
            json!({ "$set": { "in": null, "path": path, "value": { "$get": format!("l{}", i - 1) } } }),
        );
    }
    let f = run(json!({ "let": lets, "output": { "state": { "$get": "l3" } } })).unwrap_err();
    assert_fault(&f, "output.state", "output", FaultKind::Output);
    assert_eq!(f.message, "state is nested deeper than 128 levels");
    // Walking it is refused too.
    let f = run(json!({ "let": lets, "output": { "state": { "$eq": [{ "$get": "l3" }, { "$get": "l3" }] } } })).unwrap_err();
    assert_eq!(f.kind, FaultKind::Limit);
}

#[test]
fn fault_messages_render_values_briefly() {
    let big: Vec<Value> = (0..1000).map(|i| json!(format!("item-{i}"))).collect();
    let f = ev_fault(json!({ "$add": [1, { "$lit": big }] }));
    assert!(
        f.message
            .starts_with("expected a number, got list [\"item-0\",\"item-1\""),
        "{}",
        f.message
    );
    assert!(f.message.ends_with('…'), "{}", f.message);
    let rendered = f.message.trim_start_matches("expected a number, got list ");
    assert!(
        rendered.chars().count() <= 120,
        "{} chars",
        rendered.chars().count()
    );
}

/// Regression: each let `$set`s the previous one 64 levels down, so 126 lets build a
/// value 8064 levels deep. Refusing it as output is not enough: it must also be freed
/// without recursion (the derived drop overflowed the stack and aborted the process).
#[test]
fn values_far_deeper_than_the_limit_are_freed_on_a_small_stack() {
    let path: Vec<String> = (0..64).map(|i| format!("k{i}")).collect();
    let mut lets = Map::new();
    lets.insert("l0".into(), json!(1));
    for i in 1..=126 {
        lets.insert(
            format!("l{i}"),
            json!({ "$set": { "in": null, "path": path.join("."), "value": { "$get": format!("l{}", i - 1) } } }),
        );
    }
    let src = json!({ "let": lets, "output": { "state": { "$get": "l126" } } });
    let handle = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || run(src))
        .unwrap();
    let f = handle.join().unwrap().unwrap_err();
    assert_fault(&f, "output.state", "output", FaultKind::Output);
    assert_eq!(f.message, "state is nested deeper than 128 levels");
}
