//! 3. Programs: compile and evaluate.

use super::*;

const PATHS: &[&str] = &[
    "event.payload.items",
    "event.payload.items.0.qty",
    "event.payload.n",
    "event.payload.big",
    "event.payload.text",
    "event.payload",
    "state",
    "state.count",
    "ctx.tenant_id",
    "x",
    "x.qty",
    "y",
    "a",
    "b.0",
    "nope.z",
    "event..x",
];

const LIST_OPS: &[&str] = &[
    "$coalesce",
    "$if",
    "$and",
    "$or",
    "$eq",
    "$ne",
    "$lt",
    "$lte",
    "$gt",
    "$gte",
    "$add",
    "$sub",
    "$mul",
    "$div",
    "$mod",
    "$min",
    "$max",
    "$concat",
    "$merge",
    "$id",
    "$not",
    "$str",
    "$lower",
    "$upper",
    "$len",
    "$sum",
    "$any",
    "$all",
    "$nope",
];

/// Ops that also take one bare argument.
const UNARY_OPS: &[&str] = &[
    "$not", "$str", "$lower", "$upper", "$len", "$sum", "$any", "$all",
];

/// Random expressions: mostly well-formed op shapes over roots, lets (`a`, `b`) and loop
/// variables (`x`, `y`), with hostile literals; malformed ones are load errors.
fn expression() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        4 => json_scalar(),
        4 => select(PATHS).prop_map(|p| op("$get", json!(p))),
        1 => select(PATHS).prop_map(|p| op("$exists", json!(p))),
        1 => json_value().prop_map(|v| op("$lit", v)),
    ];
    leaf.prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            4 => (select(LIST_OPS), prop::collection::vec(inner.clone(), 0..4)).prop_map(
                |(name, mut args)| {
                    let arg = if args.len() == 1 && UNARY_OPS.contains(&name) {
                        args.remove(0)
                    } else {
                        Value::Array(args)
                    };
                    op(name, arg)
                }
            ),
            2 => (
                select(vec!["$map", "$filter", "$any", "$all"]),
                inner.clone(),
                select(vec!["x", "y", "event", "1x"]),
                inner.clone(),
            )
                .prop_map(|(name, over, var, body)| {
                    let key = if name == "$map" { "do" } else { "where" };
                    op(name, json!({ "over": over, "as": var, key: body }))
                }),
            1 => (inner.clone(), select(vec!["a", "a.b", "items.0", "0", "a..b"]), inner.clone())
                .prop_map(|(target, path, value)| {
                    op("$set", json!({ "in": target, "path": path, "value": value }))
                }),
            1 => (
                inner.clone(),
                prop::collection::btree_map("[a-z0-9]{1,3}", inner.clone(), 0..3),
                prop::option::of(inner.clone()),
            )
                .prop_map(|(on, cases, default)| {
                    let cases: Map<String, Value> = cases.into_iter().collect();
                    let mut arg = json!({ "on": on, "cases": cases });
                    if let Some(d) = default {
                        arg["default"] = d;
                    }
                    op("$switch", arg)
                }),
            1 => (inner.clone(), inner.clone())
                .prop_map(|(at, ms)| op("$time_add", json!({ "at": at, "ms": ms }))),
            1 => prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            1 => prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn program_source() -> impl Strategy<Value = Value> {
    (
        prop::option::of(expression()),
        prop::option::of(expression()),
        expression(),
        select(vec![
            "state",
            "commands",
            "schedules",
            "cancel",
            "status",
            "whole",
        ]),
        expression(),
    )
        .prop_map(|(a, b, state, field, other)| {
            let mut lets = Map::new();
            if let Some(a) = a {
                lets.insert("a".into(), a);
            }
            if let Some(b) = b {
                lets.insert("b".into(), b);
            }
            let output = match field {
                "whole" => other,
                "state" | "status" => json!({ "state": state, field: other }),
                list => json!({ "state": state, list: [other] }),
            };
            json!({ "let": lets, "output": output })
        })
}

/// Inputs with long lists, edge numbers and long text.
fn program_event() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((hostile_number(), "[a-z]{0,3}"), 0..200),
        hostile_number(),
        0usize..70_000,
    )
        .prop_map(|(items, n, text_len)| {
            let items: Vec<Value> = items
                .into_iter()
                .map(|(qty, sku)| json!({ "qty": qty, "sku": sku }))
                .collect();
            json!({
                "event_id": "e-1", "aggregate_id": "o-1", "occurred_at": "2026-11-27T10:00:00Z",
                "payload": { "items": items, "n": n, "big": u64::MAX, "text": "t".repeat(text_len) }
            })
        })
}

fn ctx() -> Value {
    json!({ "tenant_id": "acme", "saga": "s", "correlation_id": "o-1",
            "stream": "AGGREGATE_EVENTS", "subject": "aggregate.acme.order.OrderPlaced" })
}

fn run(program: &Program, state: &Value, event: &Value, gas: u64) -> Result<ProgramOutput, Fault> {
    let ctx = ctx();
    program.eval(
        &ProgramInput {
            state,
            event,
            ctx: &ctx,
        },
        gas,
    )
}

fn compile(source: &Value) -> Result<Program, String> {
    Program::compile(source, "programs/hostile.yaml", &Limits::default()).map_err(|e| {
        assert!(!e.node.is_empty() && !e.message.is_empty(), "{e:?}");
        let shown = e.to_string();
        assert!(
            shown.starts_with("invalid program programs/hostile.yaml at "),
            "{shown}"
        );
        shown
    })
}

/// What every fault must say: where (a node of the program), which op, and what.
fn check_fault(f: &Fault, gas: u64) -> Result<(), TestCaseError> {
    prop_assert!(
        f.node == "output" || f.node.starts_with("output.") || f.node.starts_with("let."),
        "fault names no node: {f:?}"
    );
    prop_assert!(!f.op.is_empty() && !f.message.is_empty(), "{f:?}");
    prop_assert!(f.message.len() <= 512, "{} bytes: {f}", f.message.len());
    if f.kind == FaultKind::Gas {
        prop_assert_eq!(&f.message, &format!("out of gas (budget {gas})"));
    }
    Ok(())
}

fn fault_of(r: Result<ProgramOutput, Fault>) -> Fault {
    match r {
        Ok(out) => panic!("expected a fault, got {out:?}"),
        Err(f) => f,
    }
}

/// `a0` is a 16-byte string; `a{i}` is built from two references to `a{i-1}`: 2^levels
/// copies of it once expanded.
fn doubling_lets(levels: usize, make: impl Fn(&str) -> Value) -> Map<String, Value> {
    let mut lets = Map::new();
    lets.insert("a0".into(), op("$lit", json!("xxxxxxxxxxxxxxxx")));
    for i in 1..=levels {
        lets.insert(format!("a{i}"), make(&format!("a{}", i - 1)));
    }
    lets
}

/// `levels` `$map`s over the event's items, nested.
fn nested_maps(levels: usize) -> Value {
    let mut body = op("$get", json!("event.payload.n"));
    for i in (0..levels).rev() {
        body = op(
            "$map",
            json!({ "over": op("$get", json!("event.payload.items")), "as": format!("v{i}"), "do": body }),
        );
    }
    body
}

/// A chain of `n` lets, each `$set`ting the previous one `path_len` levels down.
fn set_chain(n: usize, path_len: usize) -> Value {
    let path: Vec<String> = (0..path_len).map(|i| format!("k{i}")).collect();
    let path = path.join(".");
    let mut lets = Map::new();
    lets.insert("l0".into(), json!(1));
    for i in 1..=n {
        let prev = op("$get", json!(format!("l{}", i - 1)));
        lets.insert(
            format!("l{i}"),
            op("$set", json!({ "in": null, "path": path, "value": prev })),
        );
    }
    json!({ "let": lets, "output": { "state": op("$get", json!(format!("l{n}"))) } })
}

/// Runs `f` on a thread with a 2 MiB stack (what test threads get by default, set
/// explicitly so the check does not depend on `RUST_MIN_STACK`).
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic")
}

/// Exact integer arithmetic of the language (`None`: an Arithmetic fault is due).
fn int_oracle(name: &str, xs: &[i128]) -> Option<Value> {
    let fits = |r: i128| i64::try_from(r).ok().map(Value::from);
    if xs.iter().any(|x| i64::try_from(*x).is_err()) {
        return None;
    }
    match (name, xs) {
        ("$add", _) => xs
            .iter()
            .try_fold(0i128, |acc, x| fits(acc + x).map(|_| acc + x))
            .and_then(fits),
        ("$mul", _) => xs
            .iter()
            .try_fold(1i128, |acc, x| {
                acc.checked_mul(*x).filter(|r| fits(*r).is_some())
            })
            .and_then(fits),
        ("$sub", [a, b]) => fits(a - b),
        ("$min", _) => xs.iter().min().copied().and_then(fits),
        ("$max", _) => xs.iter().max().copied().and_then(fits),
        ("$div" | "$mod", [_, 0]) => None,
        ("$div", [a, b]) if a % b == 0 => fits(a / b),
        ("$div", [a, b]) => serde_json::Number::from_f64(*a as f64 / *b as f64).map(Value::Number),
        ("$mod", [a, b]) => fits(a % b),
        _ => None,
    }
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Random programs over hostile inputs: a load error naming the node, or an
    /// evaluation that ends in an output or a fault naming the node — within its gas,
    /// deterministically, with gas accounted exactly.
    #[test]
    fn random_programs_load_or_fail_by_name_and_stay_within_gas(
        source in program_source(),
        event in program_event(),
        count in prop::option::of(hostile_number()),
        gas in 1u64..100_000,
    ) {
        let Ok(program) = compile(&source) else { return Ok(()) };
        let state = count.map_or(Value::Null, |c| json!({ "count": c }));
        let first = run(&program, &state, &event, gas);
        prop_assert_eq!(&first, &run(&program, &state, &event, gas), "not deterministic");
        match &first {
            Err(f) => check_fault(f, gas)?,
            Ok(out) => {
                prop_assert!(out.gas_used <= gas);
                // The budget it used is exactly enough, and one less is not.
                prop_assert_eq!(&run(&program, &state, &event, out.gas_used), &first);
                if out.gas_used > 0 {
                    let f = fault_of(run(&program, &state, &event, out.gas_used - 1));
                    prop_assert_eq!(f.kind, FaultKind::Gas, "{}", f);
                }
            }
        }
    }

    /// Nested `$map`s whose work (items^levels) is far beyond the budget: a gas fault
    /// inside the loops, quickly.
    #[test]
    fn nested_map_bombs_run_out_of_gas_by_name(
        (items, levels, gas) in (20usize..200, 2usize..5).prop_flat_map(|(items, levels)| {
            // At least twice the budget of work.
            let work = (items as u64).pow(levels as u32);
            (Just(items), Just(levels), 100u64..(work / 2).min(50_000))
        }),
    ) {
        let event = json!({ "payload": { "items": vec![json!(1); items], "n": 1 } });
        let program = compile(&json!({ "output": { "state": nested_maps(levels) } }))
            .map_err(TestCaseError::fail)?;
        let start = Instant::now();
        let f = fault_of(run(&program, &Value::Null, &event, gas));
        check_fault(&f, gas)?;
        prop_assert_eq!(f.kind, FaultKind::Gas);
        prop_assert!(f.node.starts_with("output.state"), "{}", f);
        prop_assert!(["$map", "$get"].contains(&f.op.as_str()), "{}", f);
        prop_assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    }

    /// Source nesting beyond `max_depth` is refused at load, naming the limit; nesting
    /// well within it loads and runs.
    #[test]
    fn nesting_beyond_max_depth_is_refused(
        wrappers in prop::collection::vec(select(vec!["list", "object", "$not", "$if", "$lit"]), 1..200),
        max_depth in 4usize..=128,
    ) {
        let mut src = op("$get", json!("event.a"));
        let mut lit = false;
        for w in &wrappers {
            src = match *w {
                "list" => json!([src]),
                "object" => json!({ "k": src }),
                "$not" => op("$not", src),
                "$if" => op("$if", json!([src, 1, 2])),
                _ => {
                    lit = true;
                    op("$lit", src)
                }
            };
        }
        let d = wrappers.len();
        let limits = Limits { max_depth, ..Limits::default() };
        let result = Expr::compile(&src, "hostile", &["event"], &limits);
        if d > max_depth {
            let e = result.err().ok_or_else(|| TestCaseError::fail("deep source accepted"))?;
            prop_assert!(e.message.contains(&format!("max_depth ({max_depth})")), "{}", e);
        } else if 2 * d < max_depth && !lit {
            let expr = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
            if let Err(f) = expr.eval(&[&json!({ "a": [1] })], 1_000_000) {
                prop_assert!(f.node.starts_with("expr"), "{}", f);
            }
        }
    }

    /// A chain of lets, each `$not` of the previous: refused once nesting through let
    /// references passes 4 × max_depth, evaluated exactly below.
    #[test]
    fn let_chains_are_bounded_through_references(n in 1usize..300) {
        let mut lets = Map::new();
        lets.insert("l0".into(), json!(true));
        for i in 1..=n {
            lets.insert(format!("l{i}"), op("$not", op("$get", json!(format!("l{}", i - 1)))));
        }
        let source = json!({ "let": lets, "output": { "state": op("$get", json!(format!("l{n}"))) } });
        match compile(&source) {
            // Nesting through references: output (1) + $get (1) + 2 per let + l0 (1).
            Err(e) => {
                prop_assert!(2 * n + 3 > 256, "refused at n = {n}: {e}");
                prop_assert!(e.contains("nesting through let references"), "{}", e);
            }
            Ok(program) => {
                prop_assert!(2 * n + 3 <= 256);
                let out = on_small_stack(move || run(&program, &Value::Null, &json!({}), 10_000));
                prop_assert_eq!(out.map(|o| o.state), Ok(Some(json!(n % 2 == 0))));
            }
        }
    }

    /// Arithmetic on edge numbers follows the language's rules exactly: integers stay
    /// integers or fault on overflow, floats fault when not finite.
    #[test]
    fn arithmetic_on_huge_numbers_is_exact_or_an_arithmetic_fault(
        (name, operands) in select(vec!["$add", "$sub", "$mul", "$div", "$mod", "$min", "$max"])
            .prop_flat_map(|name| {
                let count = if ["$sub", "$div", "$mod"].contains(&name) { 2..3 } else { 1..5 };
                (Just(name), prop::collection::vec(hostile_number(), count))
            }),
    ) {
        let src = json!({ "output": { "state": op(name, Value::Array(
            operands.iter().map(|v| op("$lit", v.clone())).collect())) } });
        let program = compile(&src).map_err(TestCaseError::fail)?;
        let result = run(&program, &Value::Null, &json!({}), 1_000).map(|o| o.state);
        if operands.iter().all(|v| v.is_i64() || v.is_u64()) {
            let xs: Vec<i128> = operands
                .iter()
                .map(|v| v.as_i64().map(i128::from).or(v.as_u64().map(i128::from)).unwrap_or(0))
                .collect();
            match int_oracle(name, &xs) {
                Some(v) => prop_assert_eq!(result, Ok(Some(v))),
                None => {
                    let f = result.err().ok_or_else(|| TestCaseError::fail("no fault"))?;
                    prop_assert_eq!(f.kind, FaultKind::Arithmetic, "{}", f);
                    prop_assert_eq!((f.node.as_str(), f.op.as_str()), ("output.state", name));
                }
            }
        } else {
            match result {
                Ok(Some(Value::Number(n))) => prop_assert!(n.as_f64().is_some_and(f64::is_finite)),
                Ok(other) => prop_assert!(false, "not a number: {other:?}"),
                Err(f) => prop_assert_eq!(f.kind, FaultKind::Arithmetic, "{}", f),
            }
        }
    }

    /// `$time_add` with any `ms`: a time or an arithmetic fault (outside years 0–9999).
    #[test]
    fn time_arithmetic_on_huge_offsets_faults_cleanly(ms in hostile_number()) {
        let src = json!({ "output": { "state": op("$time_add", json!({ "at": "2026-11-27T10:00:00Z", "ms": op("$lit", ms.clone()) })) } });
        let program = compile(&src).map_err(TestCaseError::fail)?;
        match run(&program, &Value::Null, &json!({}), 1_000) {
            Ok(out) => {
                let text = out.state.and_then(|s| s.as_str().map(str::to_string)).unwrap_or_default();
                prop_assert!(parse_rfc3339_ms(&text).is_ok(), "{}", text);
            }
            Err(f) => {
                let kinds = if ms.is_i64() { vec![FaultKind::Arithmetic] } else { vec![FaultKind::Type] };
                prop_assert!(kinds.contains(&f.kind), "{}", f);
            }
        }
    }
}

proptest! {
    // Each case builds (and refuses) values of thousands of nodes: fewer cases.
    #![proptest_config(config(SLOW_CASES))]

    /// Values that double at every let (2^levels leaves, shared in memory): consuming
    /// them whole is a gas, size or output fault at the consuming node, never an OOM.
    #[test]
    fn exponential_values_are_a_fault_at_the_consuming_node(
        levels in 20usize..=64,
        consumer in select(vec!["state", "$str", "$eq", "$id", "commands", "$len", "$concat"]),
        gas in 1_000u64..50_000,
    ) {
        let top = format!("a{levels}");
        let get = op("$get", json!(top));
        let lets = if consumer == "$concat" {
            doubling_lets(levels, |p| op("$concat", json!([op("$get", json!(p)), op("$get", json!(p))])))
        } else {
            doubling_lets(levels, |p| json!([op("$get", json!(p)), op("$get", json!(p))]))
        };
        let output = match consumer {
            "state" | "$concat" => json!({ "state": get }),
            "$eq" => json!({ "state": op("$eq", json!([get, get])) }),
            "commands" => json!({ "commands": [{ "to": "effect", "effect": "x", "payload": get }] }),
            "$id" => json!({ "state": op("$id", json!([get])) }),
            unary => json!({ "state": op(unary, get) }),
        };
        let program = compile(&json!({ "let": lets, "output": output })).map_err(TestCaseError::fail)?;
        let start = Instant::now();
        let result = run(&program, &Value::Null, &json!({}), gas);
        prop_assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        if consumer == "$len" {
            prop_assert_eq!(result.map(|o| o.state), Ok(Some(json!(2))));
            return Ok(());
        }
        let f = fault_of(result);
        check_fault(&f, gas)?;
        match consumer {
            "state" => prop_assert_eq!((f.node.as_str(), f.kind), ("output.state", FaultKind::Output)),
            "commands" => prop_assert_eq!((f.node.as_str(), f.kind), ("output.commands", FaultKind::Output)),
            "$concat" => {
                // Too long a string, or (on a small budget) out of gas first.
                prop_assert_eq!(f.op.as_str(), "$concat", "{}", f);
                prop_assert!(matches!(f.kind, FaultKind::Limit | FaultKind::Gas), "{}", f);
                prop_assert!(f.node.starts_with("let.a"), "{}", f);
            }
            name => {
                prop_assert_eq!((f.node.as_str(), f.op.as_str()), ("output.state", name));
                prop_assert!(matches!(f.kind, FaultKind::Gas | FaultKind::Limit), "{}", f);
            }
        }
    }

    /// Regression: a chain of `$set`s builds values thousands of levels deep (`n` ×
    /// `path_len`); they must be refused as output and dropped without recursion (the
    /// derived drop overflowed the stack).
    #[test]
    fn deep_values_built_at_run_time_are_refused_and_freed(n in 1usize..=126, path_len in 1usize..=64) {
        let program = compile(&set_chain(n, path_len)).map_err(TestCaseError::fail)?;
        let out = on_small_stack(move || run(&program, &Value::Null, &json!({}), 10_000));
        if n * path_len <= 128 {
            prop_assert!(out.is_ok(), "{:?}", out);
        } else {
            let f = fault_of(out);
            prop_assert_eq!((f.node.as_str(), f.kind), ("output.state", FaultKind::Output));
            prop_assert_eq!(f.message, "state is nested deeper than 128 levels");
        }
    }
}

#[test]
fn a_map_over_a_thousand_items_three_deep_runs_out_of_gas_at_the_inner_loop() {
    let event = json!({ "payload": { "items": vec![json!(1); 1000], "n": 1 } });
    let program = compile(&json!({ "output": { "state": nested_maps(3) } })).expect("compiles");
    let start = Instant::now();
    let f = fault_of(run(&program, &Value::Null, &event, 20_000));
    assert_eq!(f.kind, FaultKind::Gas);
    assert_eq!(f.message, "out of gas (budget 20000)");
    assert!(f.node.starts_with("output.state.$map.do"), "{f}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

/// Regression: 126 lets each `$set`ting the previous one 64 levels down build a value
/// 8064 levels deep; dropping it recursively overflowed the stack (SIGABRT).
#[test]
fn the_deepest_set_chain_is_freed_without_overflow() {
    let program = compile(&set_chain(126, 64)).expect("compiles");
    let f = fault_of(on_small_stack(move || {
        run(&program, &Value::Null, &json!({}), 10_000)
    }));
    assert_eq!(f.message, "state is nested deeper than 128 levels");
    // Kept alive and consumed cheaply, it is fine too.
    let mut source = set_chain(126, 64);
    source["output"] = json!({ "state": op("$len", op("$get", json!("l126"))) });
    let program = compile(&source).expect("compiles");
    let out = on_small_stack(move || run(&program, &Value::Null, &json!({}), 10_000));
    assert_eq!(out.map(|o| o.state), Ok(Some(json!(1))));
}

#[test]
fn programs_with_huge_literals_load_or_fail_by_name() {
    // 1e400 cannot reach a program through the readers (JSON and YAML refuse it); the
    // largest numbers that can are handled by the arithmetic rules.
    let f = fault_of(run(
        &compile(&json!({ "output": { "state": op("$add", json!([u64::MAX, 1])) } }))
            .expect("compiles"),
        &Value::Null,
        &json!({}),
        100,
    ));
    assert_eq!(f.kind, FaultKind::Arithmetic);
    assert!(f.message.contains("outside the signed 64-bit range"), "{f}");
    let e = compile(&json!({ "output": { "state": op("$lit", serde_json::from_str::<Value>(&nested_lists(100, "1")).expect("json")) } }))
        .expect_err("too deep");
    assert!(e.contains("nesting deeper than max_depth (64)"), "{e}");
    // A huge output is refused by size, not built.
    let huge = "x".repeat(1 << 20);
    let event = json!({ "payload": { "text": huge } });
    let program =
        compile(&json!({ "output": { "state": op("$get", json!("event.payload.text")) } }))
            .expect("compiles");
    let f = fault_of(run(&program, &Value::Null, &event, 100));
    assert_eq!(
        (f.node.as_str(), f.kind),
        ("output.state", FaultKind::Output)
    );
}
