//! 2. Saga and effect manifests.

use super::*;

/// A valid saga manifest; the properties break one part of it.
fn saga_manifest() -> Value {
    json!({ "sagas": [{
        "name": "s",
        "version": 1,
        "triggers": [{
            "subject": "aggregate.*.order.OrderPlaced",
            "start": true,
            "correlate": { "$get": "event.aggregate_id" }
        }],
        "on_event": {
            "let": { "n": { "$get": "event.payload.n" } },
            "output": { "state": { "n": { "$get": "n" } } }
        },
        "compensation": { "output": {} },
        "gas": 1000
    }]})
}

/// A valid effect manifest; the properties break one part of it.
fn effect_manifest() -> Value {
    json!({ "effects": [{
        "name": "charge",
        "provider": "http",
        "timeout_ms": 5000,
        "concurrency": 8,
        "retry": { "max_attempts": 3, "backoff_initial_ms": 200, "backoff_max_ms": 5000 },
        "breaker": { "failure_threshold": 5, "open_ms": 30000, "half_open_probes": 1 },
        "http": {
            "url": "http://payments:8080/v1/charges/{command.payload.id}",
            "method": "POST",
            "headers": { "x-k": "v" },
            "body": { "$get": "command.payload" },
            "success": [200, 201]
        }
    }]})
}

/// Raw texts that break any part of a manifest they replace.
const ANYWHERE: &[&str] = &["1e400", "-1e400", r#"{"$nope": 1}"#];

/// Leaving the part out, instead of replacing it.
const REMOVE: &str = "<remove>";

/// The parts of the saga manifest (dotted paths) and texts each must refuse.
#[rustfmt::skip]
const SAGA_SLOTS: &[(&str, &[&str])] = &[
    ("sagas", &[REMOVE, "[]", "null", "{}", "1", r#""x""#, "[1]", "[null]"]),
    ("sagas.0", &["null", "1", "[]", "{}", r#""s""#]),
    ("sagas.0.name", &[
        REMOVE, r#""""#, r#""a b""#, r#""a.b""#, r#""a:b""#, r#""effect""#, r#""é""#, "1",
        "null", "[]",
        // 65 characters, one over the limit.
        r#""xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx""#,
    ]),
    ("sagas.0.version", &[
        "0", "-1", "4294967296", "99999999999999999999999", "1.5", "1e3", r#""1""#, "true",
        "null", "[]",
    ]),
    ("sagas.0.triggers", &[REMOVE, "[]", "null", "{}", "1", "[1]", "[{}]"]),
    ("sagas.0.triggers.0.subject", &[
        REMOVE, r#""""#, r#""a..b""#, r#""a.>.b""#, r#""a b""#, r#""a*""#, r#"".""#, "1",
        "null", "[]",
    ]),
    ("sagas.0.triggers.0.start", &[REMOVE, "false", r#""yes""#, "1", "[]", "null"]),
    ("sagas.0.triggers.0.correlate", &[
        REMOVE,
        r#"{"$get": "nope.x"}"#,
        r#"{"$get": "state.x"}"#,
        r#"{"$get": ""}"#,
        r#"{"$get": "event..x"}"#,
        r#"{"$get": 1}"#,
        r#"{"$add": []}"#,
        r#"{"$if": [1]}"#,
        r#"{"$get": "event.a", "x": 1}"#,
        r#"{"$map": {"over": [], "as": "event", "do": 1}}"#,
        r#"{"$map": {"over": [], "as": "1x", "do": 1}}"#,
        r#"{"$map": {"over": [], "as": "x", "do": 1, "y": 2}}"#,
        r#"{"$switch": {"on": 1}}"#,
        r#"{"$time_add": {"at": 1}}"#,
    ]),
    ("sagas.0.on_event", &[
        REMOVE, "1", "[]", "null", r#""missing.yaml""#, r#""missing.txt""#, "{}",
        r#"{"output": {}, "extra": 1}"#,
        r#"{"let": 1, "output": {}}"#,
        r#"{"let": {"a": {"$get": "a"}}, "output": {}}"#,
        r#"{"let": {"a": {"$get": "b"}, "b": {"$get": "a"}}, "output": {}}"#,
        r#"{"let": {"state": 1}, "output": {}}"#,
        r#"{"let": {"1a": 1}, "output": {}}"#,
        r#"{"output": {"$nope": 1}}"#,
    ]),
    ("sagas.0.compensation", &[
        "1", "[]", "true", "{}", r#""missing.yaml""#, r#"{"output": {"$nope": 1}}"#,
    ]),
    ("sagas.0.gas", &[
        "0", "-1", "10000001", "18446744073709551615", "18446744073709551616", "1.5",
        r#""x""#, "[]", "true",
    ]),
    ("sagas.0.colour", &[r#""red""#, "null"]),
    ("colour", &[r#""red""#]),
];

/// The parts of the effect manifest and texts each must refuse.
#[rustfmt::skip]
const EFFECT_SLOTS: &[(&str, &[&str])] = &[
    ("effects", &[REMOVE, "null", "{}", "1", "[1]", "[null]"]),
    ("effects.0.name", &[REMOVE, r#""""#, r#""a b""#, r#""a.b""#, "1", "null"]),
    ("effects.0.provider", &[REMOVE, r#""smtp""#, r#""""#, "1", "null"]),
    ("effects.0.timeout_ms", &[
        "0", "3600001", "-1", "1.5", "18446744073709551616", r#""5""#, "null",
    ]),
    ("effects.0.concurrency", &["0", "1025", "-1", "99999999999999999999999", "null"]),
    ("effects.0.retry", &["1", r#""x""#, r#"{"colour": 1}"#]),
    ("effects.0.retry.max_attempts", &["0", "101", "4294967296", "-1"]),
    ("effects.0.retry.backoff_initial_ms", &["0", "3600001"]),
    ("effects.0.retry.backoff_max_ms", &["199", "86400001", "18446744073709551615"]),
    ("effects.0.breaker", &["1", r#""x""#, r#"{"colour": 1}"#]),
    ("effects.0.breaker.failure_threshold", &["0", "10001"]),
    ("effects.0.breaker.open_ms", &["86400001", "18446744073709551615", "-1"]),
    ("effects.0.breaker.half_open_probes", &["0", "1001"]),
    ("effects.0.http.url", &[
        REMOVE, r#""ftp://x""#, r#""x""#, r#""http://h/{command.}""#, r#""http://h/{x}""#,
        r#""http://h/{command.a""#, "1", "null",
    ]),
    ("effects.0.http.method", &[r#""TRACE""#, r#""""#, "1"]),
    ("effects.0.http.headers", &[
        r#"{"a": "secret:nope"}"#, r#"{"a": "secret:../etc/passwd"}"#, r#"{"a": "secret:"}"#,
        r#"{"a": 1}"#, "1",
    ]),
    ("effects.0.http.body", &[r#"{"$get": "event.x"}"#, r#"{"$add": []}"#]),
    ("effects.0.http.success", &["[99]", "[600]", "[-1]", r#"["x"]"#, "1"]),
    ("effects.0.http.colour", &["1"]),
    ("effects.0.colour", &["1"]),
];

/// Texts only YAML has, which must not slip through as something else.
const YAML_ONLY: &[&str] = &[".nan", ".inf", "-.inf", "*undefined"];

/// Writes `doc` as JSON text with the part at `slot` replaced by the raw `text`.
fn manifest_text(mut doc: Value, slot: &str, text: &str) -> String {
    const MARK: &str = "\u{1}hostile\u{1}";
    let segs: Vec<&str> = slot.split('.').collect();
    let (last, parents) = segs.split_last().expect("a slot has a segment");
    let mut parent = &mut doc;
    for seg in parents {
        parent = match seg.parse::<usize>() {
            Ok(i) => &mut parent[i],
            Err(_) => &mut parent[*seg],
        };
    }
    match (parent, last.parse::<usize>()) {
        (Value::Array(items), Ok(i)) if text == REMOVE => {
            items.remove(i);
        }
        (Value::Array(items), Ok(i)) => items[i] = json!(MARK),
        (Value::Object(obj), _) if text == REMOVE => {
            obj.remove(*last);
        }
        (Value::Object(obj), _) => {
            obj.insert(last.to_string(), json!(MARK));
        }
        _ => panic!("slot {slot} is not in the manifest"),
    }
    doc.to_string()
        .replacen(&Value::String(MARK.into()).to_string(), text, 1)
}

/// The slots of `slots` with every text that must fail there (and the generic ones).
fn breakages(
    slots: &'static [(&'static str, &'static [&'static str])],
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (slot, texts) in slots {
        for text in texts.iter().chain(ANYWHERE) {
            out.push((*slot, text.to_string()));
        }
        // Nesting past YAML's depth budget (64) and `max_depth` (64), under JSON's 128.
        out.push((*slot, nested_lists(100, "1")));
    }
    out
}

enum Loaded {
    Sagas(Result<SagaCatalog, ManifestError>),
    Effects(Result<EffectCatalog, EffectManifestError>),
}

impl Loaded {
    fn error(&self) -> Option<String> {
        match self {
            Loaded::Sagas(r) => r.as_ref().err().map(ToString::to_string),
            Loaded::Effects(r) => r.as_ref().err().map(ToString::to_string),
        }
    }
}

/// Writes `text` to a manifest file with extension `ext` in a fresh directory (the
/// secrets directory of effects too, empty) and loads it.
fn load(effects: bool, text: &[u8], ext: &str) -> (PathBuf, Loaded) {
    let dir = TempDir::new("hostile").expect("temp dir");
    let path = dir.path().join(format!("manifest.{ext}"));
    std::fs::write(&path, text).expect("write manifest");
    let loaded = if effects {
        Loaded::Effects(EffectCatalog::load(
            std::slice::from_ref(&path),
            dir.path(),
            &Limits::default(),
        ))
    } else {
        Loaded::Sagas(SagaCatalog::load(
            std::slice::from_ref(&path),
            20_000,
            &Limits::default(),
        ))
    };
    (path, loaded)
}

fn check_refused(path: &Path, loaded: &Loaded, what: &str) -> Result<(), TestCaseError> {
    let Some(error) = loaded.error() else {
        return Err(TestCaseError::fail(format!("accepted: {what}")));
    };
    let file = path.display().to_string();
    prop_assert!(error.contains(&file), "{error:?} does not name the file");
    prop_assert!(error.len() > file.len() + 2, "{error:?} says nothing");
    Ok(())
}

fn ext() -> impl Strategy<Value = &'static str> {
    select(vec!["yaml", "json", "yml"])
}

proptest! {
    #![proptest_config(config(CASES))]

    /// YAML's own non-JSON scalars in any part of either manifest.
    #[test]
    fn yaml_only_scalars_are_refused(
        effects in any::<bool>(),
        pick in any::<prop::sample::Index>(),
        text in select(YAML_ONLY.to_vec()),
    ) {
        let slots = if effects { EFFECT_SLOTS } else { SAGA_SLOTS };
        let slot = slots[pick.index(slots.len())].0;
        let base = if effects { effect_manifest() } else { saga_manifest() };
        let doc = manifest_text(base, slot, text);
        let (path, loaded) = load(effects, doc.as_bytes(), "yaml");
        // An undefined alias or a non-finite number where a structure was expected: the
        // YAML reader or the manifest refuses it.
        check_refused(&path, &loaded, &format!("{slot} = {text}"))?;
    }

    /// Any JSON value in any part of either manifest: loaded or refused, never a panic.
    #[test]
    fn any_value_anywhere_in_a_manifest_is_loaded_or_refused(
        effects in any::<bool>(),
        pick in any::<prop::sample::Index>(),
        value in json_value(),
        ext in ext(),
    ) {
        let slots = if effects { EFFECT_SLOTS } else { SAGA_SLOTS };
        let slot = slots[pick.index(slots.len())].0;
        let base = if effects { effect_manifest() } else { saga_manifest() };
        let doc = manifest_text(base, slot, &value.to_string());
        let (path, loaded) = load(effects, doc.as_bytes(), ext);
        if let Some(error) = loaded.error() {
            prop_assert!(error.contains(&path.display().to_string()), "{}", error);
        }
    }

    /// Garbage text (and bytes that are not UTF-8) as a manifest: refused.
    #[test]
    fn garbage_manifests_are_refused(
        effects in any::<bool>(),
        text in prop_oneof![
            any::<String>().prop_map(String::into_bytes),
            "[-:{}\\[\\]&*!|>'\"%@` \n\t#,?a-z0-9]{0,200}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..400),
        ],
        ext in ext(),
    ) {
        let (path, loaded) = load(effects, &text, ext);
        // An empty effects list is a valid manifest; garbage is not one.
        prop_assume!(!String::from_utf8_lossy(&text).contains("effects"));
        check_refused(&path, &loaded, &String::from_utf8_lossy(&text))?;
    }
}

/// Every listed breakage of either manifest, as YAML and as JSON: refused, naming the
/// file. (All of them, every run: the table is small enough.)
#[test]
fn every_broken_part_of_a_manifest_is_refused() {
    for (effects, slots) in [(false, SAGA_SLOTS), (true, EFFECT_SLOTS)] {
        for (slot, text) in breakages(slots) {
            let base = if effects {
                effect_manifest()
            } else {
                saga_manifest()
            };
            let doc = manifest_text(base, slot, &text);
            for ext in ["yaml", "json"] {
                let (path, loaded) = load(effects, doc.as_bytes(), ext);
                if let Err(e) = check_refused(&path, &loaded, &format!("{slot} = {text} ({ext})")) {
                    panic!("{e}");
                }
            }
        }
    }
}

#[test]
fn the_unbroken_manifests_load() {
    let (_, loaded) = load(false, saga_manifest().to_string().as_bytes(), "yaml");
    assert_eq!(loaded.error(), None);
    let (_, loaded) = load(true, effect_manifest().to_string().as_bytes(), "json");
    assert_eq!(loaded.error(), None);
}

/// Regression: `breaker.open_ms` had no upper bound; u64::MAX loaded, and after
/// `failure_threshold` failures the breaker stayed open for 584 million years (the
/// effect silently off until a restart).
#[test]
fn an_unbounded_breaker_open_time_is_refused() {
    let doc = manifest_text(
        effect_manifest(),
        "effects.0.breaker.open_ms",
        "18446744073709551615",
    );
    let (_, loaded) = load(true, doc.as_bytes(), "yaml");
    let error = loaded.error().expect("refused");
    assert!(
        error.contains("breaker.open_ms must be between 0 and 86400000"),
        "{error}"
    );
}

#[test]
fn a_yaml_alias_bomb_is_refused_quickly() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = i - 1;
        let refs = vec![format!("*a{p}"); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text.push_str("sagas: *a8\n");
    let start = Instant::now();
    let (path, loaded) = load(false, text.as_bytes(), "yaml");
    let error = loaded.error().expect("refused");
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains("budget breached"), "{error}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn deeply_nested_manifests_are_refused() {
    for (ext, text) in [
        ("yaml", format!("sagas: {}", nested_lists(10_000, ""))),
        (
            "json",
            format!("{{\"sagas\": {}}}", nested_lists(10_000, "")),
        ),
        ("yaml", {
            let mut block = String::from("sagas:\n");
            for i in 0..500 {
                block.push_str(&format!("{}- \n", " ".repeat(i + 2)));
            }
            block
        }),
    ] {
        let (path, loaded) = load(false, text.as_bytes(), ext);
        let error = loaded.error().expect("refused");
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(
            error.contains("recursion limit") || error.contains("budget breached"),
            "{error}"
        );
    }
}
