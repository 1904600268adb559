use serde_json::{json, Value};

use super::*;
use crate::dev::{example_manifest, TempDir};

fn limits() -> Limits {
    Limits::default()
}

fn good_saga(name: &str) -> Value {
    json!({
        "name": name,
        "triggers": [{"subject": "aggregate.*.order.OrderPlaced", "start": true,
                      "correlate": {"$get": "event.aggregate_id"}}],
        "on_event": {"output": {"status": "completed"}}
    })
}

/// Writes `sagas` as a JSON manifest and loads it; returns the error text.
fn load_err(dir: &TempDir, sagas: Value) -> String {
    let path = dir.path().join("m.json");
    std::fs::write(&path, json!({ "sagas": sagas }).to_string()).unwrap();
    let err = SagaCatalog::load(std::slice::from_ref(&path), 1000, &limits()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&path.display().to_string()),
        "names the file: {text}"
    );
    text
}

#[test]
fn the_example_manifest_loads() {
    let catalog = SagaCatalog::load(&[example_manifest()], 20_000, &limits()).unwrap();
    assert_eq!(catalog.sagas.len(), 1);
    let saga = &catalog.sagas[0];
    assert_eq!(saga.name.as_str(), "order_fulfilment");
    assert_eq!(saga.version, 1);
    assert_eq!(saga.triggers.len(), 3);
    assert!(saga.compensation.is_some());
    assert_eq!(saga.gas, 20_000);
    let routed: Vec<&str> = catalog
        .route("workflow.result.acme.charge_card")
        .map(|(s, t)| {
            assert!(!t.start);
            s.name.as_str()
        })
        .collect();
    assert_eq!(routed, vec!["order_fulfilment"]);
    assert_eq!(catalog.route("workflow.result.acme.ship").count(), 0);
}

#[test]
fn bad_manifests_name_file_saga_and_problem() {
    let dir = TempDir::new("manifest").unwrap();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!([good_saga("a"), good_saga("a")]),
            "saga a: is declared more than once",
        ),
        (json!([good_saga("effect")]), "reserved"),
        (json!([good_saga("bad.name")]), "saga name"),
        (
            json!([{"name": "s", "triggers": [{"subject": "a.b", "correlate": {"$get": "event.x"}}],
                    "on_event": {"output": {}}}]),
            "no trigger has `start: true`",
        ),
        (
            json!([{"name": "s", "triggers": [{"subject": "a.>.b", "start": true, "correlate": {"$get": "event.x"}}],
                    "on_event": {"output": {}}}]),
            "trigger 1: subject filter",
        ),
        (
            json!([{"name": "s", "triggers": [{"subject": "a.b", "start": true, "correlate": {"$get": "state.x"}}],
                    "on_event": {"output": {}}}]),
            "trigger 1:",
        ),
        (
            json!([{"name": "s", "trigers": [], "on_event": {"output": {}}}]),
            "trigers",
        ),
        (
            json!([{"name": "s", "triggers": [], "on_event": {"output": {}}}]),
            "at least one trigger",
        ),
        (
            json!([{"name": "s", "triggers": [{"subject": "a", "start": true, "correlate": {"$get": "event.x"}}],
                    "on_event": "programs/missing.yaml"}]),
            "missing.yaml",
        ),
        (
            json!([{"name": "s", "triggers": [{"subject": "a", "start": true, "correlate": {"$get": "event.x"}}],
                    "on_event": {"output": {"$frobnicate": 1}}}]),
            "$frobnicate",
        ),
        (
            json!([{"name": "s", "triggers": [{"subject": "a", "start": true, "correlate": {"$get": "event.x"}}],
                    "on_event": {"output": {}}, "gas": 0}]),
            "gas must be between",
        ),
        (
            json!([{"name": "s", "version": 0, "triggers": [{"subject": "a", "start": true, "correlate": {"$get": "event.x"}}],
                    "on_event": {"output": {}}}]),
            "version must be at least 1",
        ),
        (json!([]), "lists no sagas"),
        (
            json!([{"name": "s", "version": 2, "triggers": [{"subject": "a", "start": true, "correlate": {"$get": "event.x"}}],
                    "on_event": {"output": {}}, "previous": [{"version": 2, "on_event": {"output": {}}}]}]),
            "previous version 2: must be at least 1 and older than the saga's version 2",
        ),
        (
            json!([{"name": "s", "version": 3, "triggers": [{"subject": "a", "start": true, "correlate": {"$get": "event.x"}}],
                    "on_event": {"output": {}}, "previous": [{"version": 1, "on_event": {"output": {}}},
                                                             {"version": 1, "on_event": {"output": {}}}]}]),
            "previous version 1: is listed twice",
        ),
        (
            json!([{"name": "s", "version": 2, "triggers": [{"subject": "a", "start": true, "correlate": {"$get": "event.x"}}],
                    "on_event": {"output": {}}, "migrate": [{"from": 2, "program": {"output": {}}}]}]),
            "migrate from 2: must move from a version older than 2",
        ),
        (
            json!([{"name": "s", "version": 2, "triggers": [{"subject": "a", "start": true, "correlate": {"$get": "event.x"}}],
                    "on_event": {"output": {}}, "previous": [{"version": 1, "on_event": {"output": {"$nope": 1}}}]}]),
            "previous version 1: ",
        ),
    ];
    for (sagas, expected) in cases {
        let text = load_err(&dir, sagas.clone());
        assert!(
            text.contains(expected),
            "expected {expected:?} in {text:?} for {sagas}"
        );
    }
}

#[test]
fn program_files_resolve_relative_to_the_manifest_and_yaml_errors_are_reported() {
    let dir = TempDir::new("manifest").unwrap();
    std::fs::create_dir_all(dir.path().join("programs")).unwrap();
    std::fs::write(
        dir.path().join("programs/p.yaml"),
        "output:\n  status: completed\n",
    )
    .unwrap();
    let manifest = dir.path().join("sagas.yaml");
    std::fs::write(
        &manifest,
        "sagas:\n  - name: s\n    triggers:\n      - subject: a.b\n        start: true\n        correlate: { $get: event.x }\n    on_event: programs/p.yaml\n",
    )
    .unwrap();
    let catalog = SagaCatalog::load(std::slice::from_ref(&manifest), 500, &limits()).unwrap();
    assert_eq!(catalog.sagas[0].gas, 500, "the settings' default gas");

    std::fs::write(dir.path().join("programs/p.yaml"), "output: [unclosed\n").unwrap();
    let err = SagaCatalog::load(std::slice::from_ref(&manifest), 500, &limits())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("p.yaml") && err.contains("invalid YAML"),
        "{err}"
    );

    let txt = dir.path().join("sagas.txt");
    std::fs::write(&txt, "sagas: []").unwrap();
    let err = SagaCatalog::load(&[txt], 500, &limits())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported extension"), "{err}");
}

#[test]
fn a_saga_may_set_its_own_retention_within_bounds() {
    let dir = TempDir::new("manifest").unwrap();
    let path = dir.path().join("m.json");
    let mut saga = good_saga("kept");
    saga["retention"] = json!({"finished_instances_secs": 0, "dedupe_secs": 7200});
    std::fs::write(&path, json!({ "sagas": [saga] }).to_string()).unwrap();
    let catalog = SagaCatalog::load(std::slice::from_ref(&path), 1000, &limits()).unwrap();
    let r = catalog.sagas[0].retention;
    assert_eq!(
        (r.finished_instances, r.dedupe),
        (
            Some(std::time::Duration::ZERO),
            Some(std::time::Duration::from_secs(7200))
        )
    );
    assert_eq!(
        SagaCatalog::load(&[example_manifest()], 1000, &limits())
            .unwrap()
            .sagas[0]
            .retention,
        SagaRetention::default(),
        "none set: the settings' retention"
    );
    for (retention, problem) in [
        (
            json!({"dedupe_secs": 0}),
            "retention.dedupe_secs must be between 1",
        ),
        (
            json!({"finished_instances_secs": MAX_RETENTION_SECS + 1}),
            "retention.finished_instances_secs must be between 0",
        ),
        (json!({"dedupe": 5}), "unknown field `dedupe`"),
    ] {
        let mut saga = good_saga("kept");
        saga["retention"] = retention;
        let err = load_err(&dir, json!([saga]));
        assert!(err.contains(problem), "{err}");
    }
}
