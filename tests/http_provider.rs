//! The http provider against a real nats-server: one tenant's data cannot open the
//! shared circuit breaker for every tenant.

mod common;

use common::{await_stats, recorder_saga, Rig};
use runner::dev::{FakeGateway, Reply};
use runner::settings::Mode;
use serde_json::{json, Value};

/// A rig in effect mode whose `charge` effect POSTs to `upstream`; its breaker opens
/// after two failures in a row, and a call is tried once.
fn effect_rig(upstream: &FakeGateway) -> Rig {
    let mut rig = Rig::new(recorder_saga());
    let manifest = rig.dir.path().join("effects.json");
    let effects = json!({"effects": [{
        "name": "charge", "provider": "http", "timeout_ms": 2000,
        "retry": {"max_attempts": 1, "backoff_initial_ms": 20, "backoff_max_ms": 100},
        "breaker": {"failure_threshold": 2, "open_ms": 600000, "half_open_probes": 1},
        "http": {"url": format!("{}/v1/charges/{{command.payload.order}}", upstream.url())}
    }]});
    std::fs::write(&manifest, effects.to_string()).unwrap();
    rig.settings.mode = Mode::Effect;
    rig.settings.manifests.effects = vec![manifest];
    rig.settings.effects.workers = 1;
    rig
}

fn command(rig: &Rig, tenant: &str, id: &str, correlation: &str, order: &str) -> (String, Value) {
    (
        format!("{}.{tenant}.charge", rig.settings.streams.command_prefix),
        json!({"tenant_id": tenant, "command_id": id, "effect_name": "charge",
               "payload": {"order": order},
               "metadata": {"correlation_id": correlation, "saga_name": "order"},
               "issued_at": "2026-11-27T10:00:00Z"}),
    )
}

fn results_by_command(
    rig: &Rig,
    nc: &nats::Connection,
) -> std::collections::HashMap<String, Value> {
    rig.result_messages(nc, 20)
        .iter()
        .map(|m| serde_json::from_slice::<Value>(&m.data).unwrap())
        .map(|r| (r["command_id"].as_str().unwrap_or_default().to_string(), r))
        .collect()
}

#[test]
fn a_tenants_non_ascii_correlation_ids_and_bad_urls_do_not_stop_another_tenants_calls() {
    let upstream = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let rig = effect_rig(&upstream);
    let pipeline = rig.start();
    let nc = rig.connect();
    // Tenant A: correlation ids no HTTP header can hold as they are, and an order id
    // that would climb out of the path.
    for (id, correlation, order) in [
        ("a-1", "Zürich-1", "o-1"),
        ("a-2", "東京-2", "o-2"),
        ("a-3", "o-3", ".."),
        ("a-4", "o-4", ".."),
    ] {
        let (subject, cmd) = command(&rig, "acme", id, correlation, order);
        rig.publish(&nc, &subject, &cmd);
    }
    await_stats(&pipeline, |s| s.effect_results_published == 4);
    let (subject, cmd) = command(&rig, "globex", "b-1", "o-9", "o-9");
    rig.publish(&nc, &subject, &cmd);
    await_stats(&pipeline, |s| s.effect_results_published == 5);
    let results = results_by_command(&rig, &nc);
    assert_eq!(
        results["b-1"]["result_type"], "succeeded",
        "{:?}",
        results["b-1"]
    );
    for id in ["a-1", "a-2"] {
        assert_eq!(results[id]["result_type"], "succeeded", "{:?}", results[id]);
    }
    for id in ["a-3", "a-4"] {
        let r = &results[id];
        assert_eq!(r["result_type"], "failed", "{r}");
        assert_eq!(r["error"]["kind"], "bad_request", "{r}");
    }
    let got = upstream.received();
    assert_eq!(got.len(), 3, "the dot segments never went out: {got:?}");
    assert!(got
        .iter()
        .any(|c| c.header("x-correlation-id") == Some("Z%C3%BCrich-1")));
    assert!(got
        .iter()
        .any(|c| c.header("x-tenant-id") == Some("globex")));
}
