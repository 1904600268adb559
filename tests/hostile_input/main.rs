//! Hostile input (issue 9, "Reliability"). Property tests feed generated hostile input to
//! the three places where outside input enters the Runner: the decode stage (message
//! bodies and headers), the manifest loaders (saga and effect manifests) and the program
//! compiler and evaluator. Each must end in a clear error — a quarantine reason, a
//! manifest error, a load error or a program fault naming the node — and never in a
//! panic, a stack overflow or unbounded work. Fixed "known nasty" inputs follow each
//! group as plain tests, including the regressions of the bugs this suite found.
//!
//! Runtime: every property runs [`CASES`] cases ([`SLOW_CASES`] for the slow ones),
//! which keeps the suite well under 20 s in a debug build. For a soak, raise the count
//! for all of them: `PROPTEST_CASES=20000 cargo test --test hostile_input`. Failures are
//! not persisted (`failure_persistence: None`), so nothing is written into the
//! repository; proptest prints the minimal failing input instead.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

use runner::dev::TempDir;
use runner::effects::{EffectCatalog, EffectManifestError};
use runner::manifest::{ManifestError, SagaCatalog};
use runner::program::{Expr, Fault, FaultKind, Limits, Program, ProgramInput, ProgramOutput};
use runner::saga::{decode, DecodeConfig, Decoded, MessageInfo};
use runner::settings::Settings;
use runner::store::{QuarantineKind, QuarantineRecord, QUARANTINE_EXCERPT_BYTES};
use runner::timefmt::parse_rfc3339_ms;
use runner::types::{CorrelationId, EventId, TenantId};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 256;
/// Cases of the properties whose every case does thousands of steps.
const SLOW_CASES: u32 = 128;

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// An operation object `{name: arg}` (the `json!` macro cannot take a variable key).
fn op(name: &str, arg: Value) -> Value {
    let mut map = Map::new();
    map.insert(name.to_string(), arg);
    Value::Object(map)
}

/// `depth` levels of `[` around `inner`, as JSON text.
fn nested_lists(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

// ---------------------------------------------------------------------------------------
// Generated JSON
// ---------------------------------------------------------------------------------------

/// Numbers at and beyond the edges of what JSON readers hold exactly.
fn hostile_number() -> BoxedStrategy<Value> {
    prop_oneof![
        select(vec![
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(0),
            json!(-1),
            json!(1.797_693_134_862_315_7e308),
            json!(-1.797_693_134_862_315_7e308),
            json!(5e-324),
            json!(-0.0),
            json!(0.5),
        ]),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
    ]
    .boxed()
}

/// Strings that ids, names and times must survive: empty, around the length limits,
/// separators and wildcards, control characters, any Unicode, and very long.
fn hostile_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => any::<String>(),
        1 => Just(String::new()),
        2 => "[a-zA-Z0-9_-]{1,70}",
        2 => "[:%.*> \\x00-\\x1f\\u{202e}\\u{fffd}]{1,20}",
        1 => "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})",
        1 => (0usize..100_000).prop_map(|n| "é".repeat(n)),
        1 => prop::collection::vec(any::<char>(), 0..300).prop_map(|c| c.into_iter().collect()),
    ]
    .boxed()
}

fn json_scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        hostile_number(),
        "[a-z$._ ]{0,12}".prop_map(Value::String),
        Just(json!("2026-11-27T10:00:00Z")),
    ]
    .boxed()
}

/// Any JSON document: wide, nested, with hostile numbers and strings (a few huge).
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        8 => json_scalar(),
        2 => hostile_string().prop_map(Value::String),
        1 => (0usize..50_000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(12, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_$]{0,8}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

mod envelopes;
mod manifests;
mod programs;
