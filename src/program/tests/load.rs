//! Load-time validation: every error names the origin, the node and the problem.

use serde_json::json;

use super::*;

fn at(e: &LoadError) -> (&str, &str) {
    (e.node.as_str(), e.message.as_str())
}

#[test]
fn unknown_op_names_the_node() {
    let e = load_err(json!({ "output": { "commands": [1, { "$frobnicate": [] }] } }));
    assert_eq!(e.origin, "programs/test.yaml");
    assert_eq!(
        at(&e),
        ("output.commands.1", "unknown operation `$frobnicate`")
    );
}

#[test]
fn op_with_sibling_keys_is_rejected() {
    let e = load_err(json!({ "output": { "state": { "$get": "event.x", "other": 1 } } }));
    assert_eq!(e.node, "output.state");
    assert!(e.message.contains("exactly one key"), "{}", e.message);
}

#[test]
fn unknown_root_names_the_node() {
    let e = load_err(
        json!({ "let": { "a": 1 }, "output": { "state": { "$if": [true, { "$get": "evnt.payload" }, 1] } } }),
    );
    assert_eq!(
        at(&e),
        (
            "output.state.$if.1.$get",
            "unknown root `evnt` in path \"evnt.payload\" (known: state, event, ctx, a)"
        )
    );
    // Expression roots are restricted to those given.
    let e = expr_err(json!({ "$get": "state.x" }));
    assert_eq!(e.node, "expr.$get");
    // A loop variable is not visible outside its loop.
    let e = load_err(json!({ "output": { "state": [
        { "$map": { "over": [], "as": "x", "do": 1 } },
        { "$get": "x" }
    ] } }));
    assert_eq!(e.node, "output.state.1.$get");
}

#[test]
fn arity_errors_name_node_and_op() {
    let cases = [
        (
            json!({ "$if": [true, 1] }),
            "expr.$if",
            "`$if` takes a list of exactly 3 expressions, got 2",
        ),
        (
            json!({ "$eq": [1, 2, 3] }),
            "expr.$eq",
            "`$eq` takes a list of exactly 2 expressions, got 3",
        ),
        (
            json!({ "$eq": 1 }),
            "expr.$eq",
            "`$eq` takes a list of exactly 2 expressions",
        ),
        (
            json!({ "$sub": [1] }),
            "expr.$sub",
            "`$sub` takes a list of exactly 2 expressions, got 1",
        ),
        (
            json!({ "$add": [] }),
            "expr.$add",
            "`$add` takes a list of at least 1 expression, got 0",
        ),
        (
            json!({ "$and": [] }),
            "expr.$and",
            "`$and` takes a list of at least 1 expression, got 0",
        ),
        (
            json!({ "$not": [true, false] }),
            "expr.$not",
            "`$not` takes one expression (bare or a 1-element list), got a list of 2",
        ),
        (
            json!({ "$get": ["event"] }),
            "expr.$get",
            "`$get` takes a literal path string like \"event.payload.total\"",
        ),
        (
            json!({ "$get": "event..x" }),
            "expr.$get",
            "`$get` path \"event..x\" has an empty segment",
        ),
        (
            json!({ "$map": { "over": [], "as": "x" } }),
            "expr.$map",
            "`$map` requires `do`",
        ),
        (
            json!({ "$map": { "over": [], "as": "x", "do": 1, "where": 2 } }),
            "expr.$map.where",
            "unknown key `where` for `$map` (expected over, as, do)",
        ),
        (
            json!({ "$switch": { "on": 1, "cases": [] } }),
            "expr.$switch.cases",
            "`cases` must be an object",
        ),
        (
            json!({ "$switch": { "on": 1, "cases": {}, "else": 2 } }),
            "expr.$switch.else",
            "unknown key `else` for `$switch` (expected on, cases, default)",
        ),
        (
            json!({ "$set": { "in": {}, "path": { "$get": "event.x" }, "value": 1 } }),
            "expr.$set.path",
            "`$set` path must be a literal string",
        ),
        (
            json!({ "$time_add": { "at": "x" } }),
            "expr.$time_add",
            "`$time_add` requires `ms`",
        ),
        (
            json!({ "$id": [] }),
            "expr.$id",
            "`$id` takes a list of at least 1 expression, got 0",
        ),
    ];
    for (src, node, message) in cases {
        let e = expr_err(src.clone());
        assert_eq!(at(&e), (node, message), "for {src}");
    }
}

#[test]
fn loop_variables_must_not_clash() {
    let e = load_err(json!({ "let": { "items": [] },
        "output": { "state": { "$map": { "over": [], "as": "items", "do": 1 } } } }));
    assert_eq!(e.node, "output.state.$map.as");
    assert!(e.message.contains("clashes"), "{}", e.message);
    let e = expr_err(json!({ "$map": { "over": [], "as": "event", "do": 1 } }));
    assert_eq!(e.node, "expr.$map.as");
    let e = expr_err(json!({ "$map": { "over": [], "as": "x",
        "do": { "$filter": { "over": [], "as": "x", "where": true } } } }));
    assert_eq!(e.node, "expr.$map.do.$filter.as");
    let e = expr_err(json!({ "$map": { "over": [], "as": "a.b", "do": 1 } }));
    assert_eq!(e.node, "expr.$map.as");
}

#[test]
fn let_names_are_identifiers_and_do_not_shadow_roots() {
    let e = load_err(json!({ "let": { "state": 1 }, "output": {} }));
    assert_eq!(at(&e), ("let.state", "let name `state` shadows a root"));
    let e = load_err(json!({ "let": { "a-b": 1 }, "output": {} }));
    assert_eq!(e.node, "let.a-b");
    let e = load_err(json!({ "let": [1], "output": {} }));
    assert_eq!(e.node, "let");
}

#[test]
fn program_shape() {
    let e = load_err(json!({ "let": {} }));
    assert_eq!(at(&e), ("output", "missing required `output`"));
    let e = load_err(json!({ "output": {}, "ouput": {} }));
    assert_eq!(e.node, "ouput");
    let e = load_err(json!([1]));
    assert_eq!(e.node, "(program)");
}

#[test]
fn cycles_are_rejected_naming_the_cycle() {
    let e = load_err(json!({
        "let": {
            "a": { "$get": "b.x" },
            "b": { "$add": [{ "$get": "c" }, 1] },
            "c": { "$if": [true, { "$get": "a" }, 0] },
            "d": { "$get": "a" }
        },
        "output": {}
    }));
    assert_eq!(at(&e), ("let.a", "let cycle: a -> b -> c -> a"));
    let e = load_err(json!({ "let": { "me": { "$exists": "me.x" } }, "output": {} }));
    assert_eq!(at(&e), ("let.me", "let cycle: me -> me"));
}

#[test]
fn deep_nesting_is_rejected() {
    let mut src = json!(1);
    for _ in 0..64 {
        src = json!([src]);
    }
    // 64 lists + the scalar = 65 levels.
    let e = load_err(json!({ "output": { "state": src.clone() } }));
    assert_eq!(e.message, "nesting deeper than max_depth (64)");
    assert!(e.node.starts_with("output.state.0.0.0"), "{}", e.node);
    // One level less fits (output object + state = 2 levels, so strip two).
    let ok = src[0][0].clone();
    assert!(Program::compile(
        &json!({ "output": { "state": ok } }),
        "t",
        &Limits::default()
    )
    .is_ok());
    // $lit contents count too.
    let e = load_err(json!({ "output": { "state": { "$lit": src } } }));
    assert_eq!(e.message, "nesting deeper than max_depth (64)");
}

#[test]
fn nesting_through_lets_is_bounded() {
    let limits = Limits {
        max_depth: 8,
        ..Limits::default()
    };
    // Each let adds 2 levels ($add + $get); 4 × 8 = 32 levels allowed in total.
    let chain = |n: usize| {
        let mut lets = serde_json::Map::new();
        lets.insert("l0".into(), json!(0));
        for i in 1..=n {
            lets.insert(
                format!("l{i}"),
                json!({ "$add": [{ "$get": format!("l{}", i - 1) }, 1] }),
            );
        }
        json!({ "let": lets, "output": { "state": { "$get": format!("l{n}") } } })
    };
    let p = Program::compile(&chain(14), "t", &limits).unwrap();
    assert_eq!(
        run_with(&p, &json!(null), GAS).unwrap().state,
        Some(json!(14))
    );
    let e = Program::compile(&chain(16), "t", &limits).unwrap_err();
    assert_eq!(e.node, "let.l16");
    assert!(
        e.message
            .starts_with("nesting through let references is 33 levels"),
        "{}",
        e.message
    );
}

#[test]
fn expr_roots_are_validated() {
    let e = Expr::compile(&json!(1), "t", &["event", "event"], &Limits::default()).unwrap_err();
    assert_eq!(e.node, "expr");
    let x = Expr::compile(
        &json!({ "$get": "ctx.tenant_id" }),
        "t",
        &["event", "ctx"],
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(x.eval(&[&json!({}), &ctx()], 10).unwrap(), json!("acme"));
    let f = x.eval(&[&json!({})], 10).unwrap_err();
    assert_eq!((f.node.as_str(), f.kind), ("expr", FaultKind::Type));
}
