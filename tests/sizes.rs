//! Messages the server would refuse are never sent and never retried: against a real
//! nats-server whose `max_payload` is 4096 bytes, a saga whose command would exceed it
//! is quarantined before commit, an outbox item over it is dead-lettered at once with a
//! failed result, and an effect result over it becomes a small `failed` result.

mod common;

use common::{await_stats, event, Rig, WAIT};
use runner::dev::{FakeGateway, NatsServer, Reply};
use runner::keys::{self, OutboxKind};
use runner::settings::Mode;
use runner::store::{DeadLetterRecord, OutboxItem, RawJson};
use runner::types::TenantId;
use serde_json::{json, Value};

const MAX_PAYLOAD: usize = 4096;

/// A rig on its own server whose `max_payload` is [`MAX_PAYLOAD`].
fn small_server_rig(sagas: Value) -> Rig {
    let dir = runner::dev::TempDir::new("small-nats").unwrap();
    let conf = dir.path().join("nats.conf");
    std::fs::write(&conf, format!("max_payload: {MAX_PAYLOAD}\n")).unwrap();
    let server = NatsServer::start_with_config(&conf).expect("nats-server");
    let mut rig = Rig::on(&server.url(), sagas, 1);
    rig.server = Some(server);
    // The configuration file lives as long as the rig's directory.
    std::mem::forget(dir);
    let r = &mut rig.settings.relay;
    r.backoff_initial_ms = 50;
    r.backoff_max_ms = 200;
    r.scan_interval_ms = 200;
    rig
}

/// A saga whose effect command carries the event's `blob` twice: an event under the
/// limit makes a command over it when its blob is over half of it.
fn doubling_saga() -> Value {
    json!([{
        "name": "doubler",
        "triggers": [{"subject": "{ns}.aggregate.*.order.*", "start": true,
                      "correlate": {"$get": "event.aggregate_id"}}],
        "on_event": {"output": {
            "state": {"seen": true},
            "commands": [{"to": "effect", "effect": "note", "payload": {
                "a": {"$get": "event.payload.blob"}, "b": {"$get": "event.payload.blob"}}}]
        }}
    }])
}

/// Quarantine records filed under acme, unattributed or under the single tenant.
fn all_quarantined(rig: &Rig) -> Vec<runner::store::QuarantineRecord> {
    let mut all = rig.store.quarantined(None, 10).unwrap();
    for t in [tenant("acme"), TenantId::single()] {
        all.extend(rig.store.quarantined(Some(&t), 10).unwrap());
    }
    all
}

fn tenant(t: &str) -> TenantId {
    t.parse().unwrap()
}

#[test]
fn a_transition_whose_command_is_over_max_payload_is_quarantined_and_others_flow() {
    let rig = small_server_rig(doubling_saga());
    let pipeline = rig.start();
    let nc = rig.connect();
    let big = "x".repeat(2_500);
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    let body = event(
        "e-big",
        "acme",
        "o-big",
        "OrderPlaced",
        json!({"blob": big}),
    );
    assert!(
        body.to_string().len() < MAX_PAYLOAD,
        "the event itself fits"
    );
    rig.publish(&nc, &subject, &body);
    let subject = rig.aggregate_subject("globex", "OrderPlaced");
    let small = event(
        "e-small",
        "globex",
        "o-small",
        "OrderPlaced",
        json!({"blob": "y"}),
    );
    rig.publish(&nc, &subject, &small);

    await_stats(&pipeline, |s| s.quarantined == 1 && s.relayed == 1);
    let quarantined = all_quarantined(&rig);
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(
        quarantined[0].reason.contains("too large"),
        "{}",
        quarantined[0].reason
    );
    assert_eq!(quarantined[0].event_id.as_deref(), Some("e-big"));
    assert_eq!(pipeline.stats().too_large_quarantined, 1);
    // Nothing half-written: no instance, no outbox item for the refused transition.
    let saga = "doubler".parse().unwrap();
    let corr = "o-big".parse().unwrap();
    assert!(rig
        .store
        .saga(&tenant("acme"), &saga, &corr)
        .unwrap()
        .is_none());
    assert!(rig.store.outbox(&tenant("acme"), 10).unwrap().is_empty());
    // Only the other tenant's command went out.
    let published = rig.published_commands(&nc, 10);
    assert_eq!(published.len(), 1);
    assert!(published[0].subject.contains(".globex."));
}

/// An outbox item over the server's limit (written before the limit was lowered, say).
fn oversized_item(rig: &Rig) -> OutboxItem {
    let prefix = &rig.settings.streams.command_prefix;
    let envelope = json!({"tenant_id": "acme", "command_id": "cmd-big", "effect_name": "note",
        "payload": {"blob": "z".repeat(6_000)},
        "metadata": {"correlation_id": "o-1", "saga_name": "doubler", "causation_id": "e-1"},
        "issued_at": "2026-11-27T10:00:00Z"});
    OutboxItem {
        kind: OutboxKind::Effect,
        tenant: tenant("acme"),
        work_id: "cmd-big".parse().unwrap(),
        saga: "doubler".parse().unwrap(),
        correlation: "o-1".parse().unwrap(),
        destination: format!("{prefix}.acme.note"),
        envelope: RawJson::of(&envelope).unwrap(),
        traceparent: None,
    }
}

/// Puts `item` into the outbox the way an operator's redrive does.
fn put_in_outbox(rig: &Rig, item: OutboxItem) {
    let record = DeadLetterRecord {
        item: item.clone(),
        reason: "setup".into(),
        status: None,
        attempts: 0,
        dead_at: "2026-11-27T10:00:00.000Z".into(),
    };
    let outbox_key = keys::outbox(&item.tenant, item.kind, &item.work_id);
    rig.store.dead_letter(&outbox_key, &record).unwrap();
    let dead_key = keys::dead_letter(&item.tenant, item.kind, &item.work_id);
    let back = rig.store.redrive_dead_letters(&[dead_key]).unwrap();
    assert_eq!(back.len(), 1);
}

#[test]
fn an_outbox_item_over_max_payload_is_dead_lettered_once_with_a_failed_result() {
    let rig = small_server_rig(doubling_saga());
    put_in_outbox(&rig, oversized_item(&rig));
    let pipeline = rig.start();
    let nc = rig.connect();
    await_stats(&pipeline, |s| s.dead_letters == 1);
    let dead = rig.store.dead_letters(&tenant("acme"), 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("too large"), "{}", dead[0].reason);
    assert!(rig.store.outbox(&tenant("acme"), 10).unwrap().is_empty());
    let results = rig.result_messages(&nc, 10);
    assert_eq!(results.len(), 1, "one result event tells the saga");
    let result: Value = serde_json::from_slice(&results[0].data).unwrap();
    assert_eq!(result["result_type"], "failed");
    assert_eq!(result["command_id"], "cmd-big");
    assert_eq!(result["error"]["kind"], "too_large");
    assert!(rig.published_commands(&nc, 10).is_empty(), "never sent");
    // Not retried: the counters stay where they are.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let s = pipeline.stats();
    assert_eq!((s.dead_letters, s.relay_retries), (1, 0), "{s:?}");
    assert_eq!(s.relay_too_large, 1);
}

#[test]
fn an_effect_result_over_max_payload_becomes_a_small_failed_result_and_the_call_is_not_repeated() {
    let upstream = FakeGateway::start(|_, _| Reply {
        body: json!({"blob": "r".repeat(6_000)}).to_string(),
        ..Reply::status(200)
    })
    .unwrap();
    let mut rig = small_server_rig(doubling_saga());
    let manifest = rig.dir.path().join("effects.json");
    let effects = json!({"effects": [{
        "name": "charge", "provider": "http", "timeout_ms": 500,
        "retry": {"max_attempts": 2, "backoff_initial_ms": 20, "backoff_max_ms": 100},
        "http": {"url": format!("{}/v1/charges", upstream.url()), "body": {}}
    }]});
    std::fs::write(&manifest, effects.to_string()).unwrap();
    rig.settings.mode = Mode::Effect;
    rig.settings.manifests.effects = vec![manifest];
    rig.settings.effects.workers = 2;
    let pipeline = rig.start();
    let nc = rig.connect();
    let subject = format!("{}.acme.charge", rig.settings.streams.command_prefix);
    let cmd = json!({"tenant_id": "acme", "command_id": "cmd-1", "effect_name": "charge",
        "payload": {}, "metadata": {"correlation_id": "o-1", "saga_name": "order"},
        "issued_at": "2026-11-27T10:00:00Z"});
    rig.publish(&nc, &subject, &cmd);
    await_stats(&pipeline, |s| s.effect_commands_acked == 1);
    let results = rig.result_messages(&nc, 10);
    assert_eq!(results.len(), 1);
    assert!(results[0].data.len() < MAX_PAYLOAD);
    let result: Value = serde_json::from_slice(&results[0].data).unwrap();
    assert_eq!(result["result_type"], "failed");
    assert_eq!(result["error"]["kind"], "result_too_large");
    assert_eq!(result["command_id"], "cmd-1");
    assert_eq!(upstream.count(), 1, "the effect ran once");
    assert_eq!(pipeline.stats().effect_results_too_large, 1);
    let _ = WAIT;
}

#[test]
fn an_effect_command_over_max_message_bytes_is_never_executed() {
    let upstream = FakeGateway::accepting().unwrap();
    let mut rig = small_server_rig(doubling_saga());
    let manifest = rig.dir.path().join("effects.json");
    let effects = json!({"effects": [{
        "name": "charge", "provider": "http", "timeout_ms": 500,
        "http": {"url": format!("{}/v1/charges", upstream.url()), "body": {}}
    }]});
    std::fs::write(&manifest, effects.to_string()).unwrap();
    rig.settings.mode = Mode::Effect;
    rig.settings.manifests.effects = vec![manifest];
    rig.settings.pipeline.max_message_bytes = 1024;
    let pipeline = rig.start();
    let nc = rig.connect();
    let subject = format!("{}.acme.charge", rig.settings.streams.command_prefix);
    let cmd = json!({"tenant_id": "acme", "command_id": "cmd-2", "effect_name": "charge",
        "payload": {"blob": "q".repeat(2_000)}, "metadata": {"correlation_id": "o-2"},
        "issued_at": "2026-11-27T10:00:00Z"});
    rig.publish(&nc, &subject, &cmd);
    await_stats(&pipeline, |s| s.quarantined == 1);
    assert_eq!(upstream.count(), 0, "never executed");
    let q = all_quarantined(&rig);
    assert!(q[0].reason.contains("too large"), "{}", q[0].reason);
    assert_eq!(pipeline.stats().effect_commands_too_large, 1);
}
