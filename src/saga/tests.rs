use std::path::PathBuf;

use serde_json::{json, Value};

use super::*;
use crate::dev::TempDir;
use crate::envelope::EffectCommand;
use crate::keys::OutboxKind;
use crate::manifest::SagaCatalog;
use crate::program::Limits;
use crate::settings::Settings;
use crate::store::{CommitBatch, InstanceStatus, QuarantineKind, Store};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn example_catalog() -> SagaCatalog {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/example/sagas.yaml");
    SagaCatalog::load(&[path], 20_000, &Limits::default()).unwrap()
}

fn cfg() -> DecodeConfig {
    DecodeConfig::from_settings(&Settings::default())
}

fn info(stream: &str, subject: &str, seq: u64) -> MessageInfo {
    MessageInfo {
        stream: stream.into(),
        seq,
        delivered: 1,
        forgiven: 0,
        subject: subject.into(),
        published_ms: 0,
    }
}

fn placed(order: &str, event_id: &str) -> Value {
    json!({
        "event_id": event_id, "tenant_id": "acme", "aggregate_type": "order",
        "aggregate_id": order, "event_type": "OrderPlaced", "occurred_at": "2026-11-27T10:00:00Z",
        "payload": {"total": 4200, "customer_id": "c-7"},
        "metadata": {"correlation_id": "req-1", "traceparent": TRACEPARENT}
    })
}

fn charge_result(order: &str, event_id: &str, result_type: &str) -> Value {
    json!({
        "event_id": event_id, "tenant_id": "acme", "command_id": "cmd", "effect_name": "charge_card",
        "result_type": result_type, "payload": {"payment_id": "pay-1"},
        "error": if result_type == "succeeded" { Value::Null } else { json!({"kind": "card_declined", "message": "no"}) },
        "attempts": 1, "timestamp": "2026-11-27T10:00:02Z",
        "metadata": {"correlation_id": order, "saga_name": "order_fulfilment", "traceparent": TRACEPARENT}
    })
}

fn decode_event(catalog: &SagaCatalog, value: &Value, info: &MessageInfo) -> RoutedEvent {
    match decode(&cfg(), catalog, info, None, value.to_string().as_bytes()) {
        Decoded::Event(e) => *e,
        Decoded::Quarantine(q, _) => panic!("unexpectedly quarantined: {}", q.reason),
    }
}

fn quarantine_of(d: Decoded) -> crate::store::QuarantineRecord {
    match d {
        Decoded::Quarantine(q, _) => *q,
        Decoded::Event(e) => panic!("expected quarantine, got event {}", e.event_id),
    }
}

fn agg_info(seq: u64) -> MessageInfo {
    info("AGGREGATE_EVENTS", "aggregate.acme.order.OrderPlaced", seq)
}

fn result_info(seq: u64) -> MessageInfo {
    info("WORKFLOW_EVENTS", "workflow.result.acme.charge_card", seq)
}

#[test]
fn order_placed_routes_to_the_example_saga() {
    let catalog = example_catalog();
    let ev = decode_event(&catalog, &placed("o-1", "e-1"), &agg_info(1));
    assert_eq!(ev.tenant.as_str(), "acme");
    assert_eq!(ev.routes.len(), 1);
    assert_eq!(ev.routes[0].saga.name.as_str(), "order_fulfilment");
    assert_eq!(ev.routes[0].correlation.as_str(), "o-1");
    assert!(ev.routes[0].start);
    assert_eq!(ev.log.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(ev.log.correlation_id, "req-1");
}

#[test]
fn undecodable_messages_are_quarantined_with_a_reason() {
    let catalog = example_catalog();
    let q = quarantine_of(decode(
        &cfg(),
        &catalog,
        &agg_info(3),
        None,
        b"\xff{not json",
    ));
    assert_eq!(q.kind, QuarantineKind::Decode);
    assert!(q.reason.contains("not valid JSON"), "{}", q.reason);
    assert_eq!((q.stream.as_str(), q.seq), ("AGGREGATE_EVENTS", 3));

    let mut missing = placed("o-1", "e-1");
    missing.as_object_mut().unwrap().remove("aggregate_id");
    let q = quarantine_of(decode(
        &cfg(),
        &catalog,
        &agg_info(4),
        None,
        missing.to_string().as_bytes(),
    ));
    assert!(q.reason.contains("aggregate_id"), "{}", q.reason);
    assert_eq!(q.tenant.as_str(), "acme");
    assert_eq!(q.event_id.as_deref(), Some("e-1"));

    let mut bad_time = placed("o-1", "e-1");
    bad_time["occurred_at"] = json!("yesterday");
    let q = quarantine_of(decode(
        &cfg(),
        &catalog,
        &agg_info(5),
        None,
        bad_time.to_string().as_bytes(),
    ));
    assert!(q.reason.contains("RFC 3339"), "{}", q.reason);

    let mut small = cfg();
    small.max_message_bytes = 10;
    let q = quarantine_of(decode(
        &small,
        &catalog,
        &agg_info(6),
        None,
        placed("o", "e").to_string().as_bytes(),
    ));
    assert!(q.reason.contains("exceeds the limit"), "{}", q.reason);

    let q = quarantine_of(decode(&cfg(), &catalog, &agg_info(7), None, b"[1,2]"));
    assert!(q.reason.contains("not a JSON object"), "{}", q.reason);

    let odd = info("WORKFLOW_EVENTS", "workflow.other.acme.x", 8);
    let q = quarantine_of(decode(
        &cfg(),
        &catalog,
        &odd,
        None,
        charge_result("o", "r", "failed").to_string().as_bytes(),
    ));
    assert!(q.reason.contains("neither a result"), "{}", q.reason);
}

#[test]
fn tenant_disagreement_and_unserved_tenants_are_access_errors() {
    let catalog = example_catalog();
    let body = placed("o-1", "e-1").to_string();
    let q = quarantine_of(decode(
        &cfg(),
        &catalog,
        &agg_info(1),
        Some("globex"),
        body.as_bytes(),
    ));
    assert_eq!(q.kind, QuarantineKind::TenantAccess);
    assert!(q.reason.contains("disagree"), "{}", q.reason);
    // The header may name the subject's tenant when the body names none.
    let mut no_tenant = placed("o-1", "e-1");
    no_tenant["tenant_id"] = json!("");
    let Decoded::Event(ev) = decode(
        &cfg(),
        &catalog,
        &agg_info(1),
        Some("acme"),
        no_tenant.to_string().as_bytes(),
    ) else {
        panic!("header tenant should be accepted")
    };
    assert_eq!(ev.tenant.as_str(), "acme");

    let mut single = cfg();
    single.multi_tenant = false;
    let q = quarantine_of(decode(
        &single,
        &catalog,
        &agg_info(1),
        None,
        body.as_bytes(),
    ));
    assert_eq!(q.kind, QuarantineKind::TenantAccess);
    let single_subject = info("AGGREGATE_EVENTS", "aggregate._.order.OrderPlaced", 1);
    let Decoded::Event(ev) = decode(
        &single,
        &catalog,
        &single_subject,
        None,
        no_tenant.to_string().as_bytes(),
    ) else {
        panic!("no tenant in single-tenant mode is the default tenant")
    };
    assert!(ev.tenant.is_single());

    let mut shard = cfg();
    shard.allowed_tenants = ["globex".parse().unwrap()].into_iter().collect();
    let q = quarantine_of(decode(
        &shard,
        &catalog,
        &agg_info(1),
        None,
        body.as_bytes(),
    ));
    assert_eq!(q.kind, QuarantineKind::TenantAccess);
}

#[test]
fn over_delivered_messages_are_quarantined() {
    let catalog = example_catalog();
    let mut i = agg_info(9);
    i.delivered = 6;
    let q = quarantine_of(decode(
        &cfg(),
        &catalog,
        &i,
        None,
        placed("o-1", "e-9").to_string().as_bytes(),
    ));
    assert_eq!(q.kind, QuarantineKind::MaxDeliver);
    assert_eq!(q.event_id.as_deref(), Some("e-9"));
    assert_eq!(q.delivered, 6);
}

#[test]
fn events_no_saga_wants_have_no_routes() {
    let catalog = example_catalog();
    let mut shipped = placed("o-1", "e-1");
    shipped["event_type"] = json!("OrderShipped");
    let ev = decode_event(
        &catalog,
        &shipped,
        &info("AGGREGATE_EVENTS", "aggregate.acme.order.OrderShipped", 1),
    );
    assert!(ev.routes.is_empty());
    // A result without a correlation id does not reach the saga.
    let mut orphan = charge_result("o-1", "r-1", "succeeded");
    orphan["metadata"] = json!({});
    assert!(decode_event(&catalog, &orphan, &result_info(2))
        .routes
        .is_empty());
}

struct Env {
    _dir: TempDir,
    store: Store,
    catalog: SagaCatalog,
}

fn env() -> Env {
    let dir = TempDir::new("saga").unwrap();
    let store = Store::open(&dir.path().join("store"), 64 << 20).unwrap();
    Env {
        _dir: dir,
        store,
        catalog: example_catalog(),
    }
}

fn run(env: &Env, exec: &mut Executor, value: &Value, info: &MessageInfo, batch: u64) -> Outcome {
    let ev = decode_event(&env.catalog, value, info);
    let reader = env.store.reader().unwrap();
    exec.execute(&reader, &ev, info, batch).unwrap()
}

fn commit(env: &Env, outcome: &Outcome) {
    env.store
        .commit(&CommitBatch {
            transitions: outcome.transitions.clone(),
            quarantine: outcome.quarantine.iter().cloned().collect(),
            ..Default::default()
        })
        .unwrap();
}

#[test]
fn order_placed_asks_for_a_charge_and_sets_the_timeout() {
    let env = env();
    let mut exec = Executor::new("workflow.cmd");
    let out = run(&env, &mut exec, &placed("o-1", "e-1"), &agg_info(1), 1);
    assert_eq!(out.disposition, Disposition::Ack);
    let t = &out.transitions[0];
    assert_eq!(t.record.status, InstanceStatus::Active);
    assert_eq!(t.record.state["step"], "charging");
    assert_eq!(t.record.state["total"], 4200);
    assert_eq!(t.outbox.len(), 1);
    let item = &t.outbox[0];
    assert_eq!(item.kind, OutboxKind::Effect);
    assert_eq!(item.destination, "workflow.cmd.acme.charge_card");
    let cmd: EffectCommand = serde_json::from_str(item.envelope.as_str()).unwrap();
    // Kept beside the envelope for the relay's headers: the same value.
    assert_eq!(
        item.traceparent.as_deref(),
        cmd.metadata.get("traceparent").and_then(|v| v.as_str())
    );
    assert!(item.traceparent.is_some());
    assert_eq!(cmd.command_id, item.work_id.as_str());
    assert_eq!(
        cmd.command_id,
        derive_command_id(
            &t.tenant,
            &t.saga,
            &t.correlation,
            &t.event_id,
            1_795_773_600_000,
            0
        )
    );
    assert_eq!(cmd.payload["amount"], 4200);
    assert_eq!(cmd.issued_at, "2026-11-27T10:00:00Z");
    assert_eq!(cmd.metadata["saga_name"], "order_fulfilment");
    assert_eq!(cmd.metadata["correlation_id"], "o-1");
    assert_eq!(cmd.metadata["parent_correlation_id"], "req-1");
    assert_eq!(cmd.metadata["causation_id"], "e-1");
    let tp = cmd.metadata["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "{tp}"
    );
    assert!(!tp.contains("b7ad6b7169203331"), "a new span id: {tp}");
    assert_eq!(t.schedules.len(), 1);
    assert_eq!(t.schedules[0].name, "payment_timeout");
    // 15 minutes after the event's own time, not the wall clock.
    assert_eq!(
        t.schedules[0].due_at_ms,
        crate::timefmt::parse_rfc3339_ms("2026-11-27T10:15:00Z").unwrap()
    );
}

#[test]
fn later_event_in_the_same_batch_sees_the_earlier_state() {
    let env = env();
    let mut exec = Executor::new("workflow.cmd");
    exec.begin_batch(1, 0);
    let first = run(&env, &mut exec, &placed("o-1", "e-1"), &agg_info(1), 1);
    // Not committed yet: the executor's overlay carries the instance.
    let second = run(
        &env,
        &mut exec,
        &charge_result("o-1", "r-1", "succeeded"),
        &result_info(1),
        1,
    );
    assert_eq!(first.transitions.len(), 1);
    let t = &second.transitions[0];
    assert_eq!(t.record.status, InstanceStatus::Completed);
    assert_eq!(t.record.transitions, 2);
    assert_eq!(t.record.state["step"], "paid");
    assert_eq!(t.cancel, vec!["payment_timeout".to_string()]);
    assert_eq!(t.outbox.len(), 1);
    assert_eq!(t.outbox[0].kind, OutboxKind::Aggregate);
    assert_eq!(t.outbox[0].envelope.to_value()["command_type"], "MarkPaid");
    assert_eq!(t.outbox[0].envelope.to_value()["aggregate_id"], "o-1");
}

#[test]
fn failed_payment_runs_compensation() {
    let env = env();
    let mut exec = Executor::new("workflow.cmd");
    commit(
        &env,
        &run(&env, &mut exec, &placed("o-1", "e-1"), &agg_info(1), 1),
    );
    let out = run(
        &env,
        &mut exec,
        &charge_result("o-1", "r-1", "failed"),
        &result_info(1),
        2,
    );
    let t = &out.transitions[0];
    assert_eq!(t.record.status, InstanceStatus::Failed);
    assert_eq!(t.record.state["reason"], "card_declined");
    let kinds: Vec<Value> = t
        .outbox
        .iter()
        .map(|o| o.envelope.to_value()["command_type"].clone())
        .collect();
    assert_eq!(kinds, vec!["CancelOrder"]);
    assert_eq!(
        t.outbox[0].envelope.to_value()["payload"]["reason"],
        "card_declined"
    );
}

#[test]
fn events_without_an_instance_or_for_a_done_instance_are_ignored() {
    let env = env();
    let mut exec = Executor::new("workflow.cmd");
    let out = run(
        &env,
        &mut exec,
        &charge_result("o-404", "r-1", "succeeded"),
        &result_info(1),
        1,
    );
    assert_eq!((out.ignored, out.transitions.len()), (1, 0));

    commit(
        &env,
        &run(&env, &mut exec, &placed("o-1", "e-1"), &agg_info(1), 1),
    );
    commit(
        &env,
        &run(
            &env,
            &mut exec,
            &charge_result("o-1", "r-1", "succeeded"),
            &result_info(2),
            2,
        ),
    );
    let late = run(
        &env,
        &mut exec,
        &charge_result("o-1", "r-2", "failed"),
        &result_info(3),
        3,
    );
    assert_eq!((late.ignored, late.transitions.len()), (1, 0));
}

#[test]
fn redelivered_events_are_duplicates_before_and_after_commit() {
    let env = env();
    let mut exec = Executor::new("workflow.cmd");
    let first = run(&env, &mut exec, &placed("o-1", "e-1"), &agg_info(1), 1);
    let again = run(&env, &mut exec, &placed("o-1", "e-1"), &agg_info(1), 1);
    assert_eq!((again.duplicates, again.transitions.len()), (1, 0));
    commit(&env, &first);
    let mut fresh = Executor::new("workflow.cmd");
    let after = run(&env, &mut fresh, &placed("o-1", "e-1"), &agg_info(1), 1);
    assert_eq!((after.duplicates, after.transitions.len()), (1, 0));
}

#[test]
fn an_over_delivered_event_already_applied_is_a_duplicate_not_poison() {
    let env = env();
    let mut exec = Executor::new("workflow.cmd");
    commit(
        &env,
        &run(&env, &mut exec, &placed("o-1", "e-1"), &agg_info(1), 1),
    );
    // Delivered once more than allowed (crashes before the ack, say).
    let mut over = agg_info(1);
    over.delivered = 6;
    let quarantined = |event: &str| {
        let body = placed("o-1", event).to_string();
        quarantine_of(decode(&cfg(), &env.catalog, &over, None, body.as_bytes()))
    };
    let reader = env.store.reader().unwrap();
    let fresh = Executor::new("workflow.cmd");
    let applied = fresh
        .over_delivered_duplicate(&reader, &env.catalog, &quarantined("e-1"), &over)
        .unwrap()
        .expect("acked as a duplicate");
    assert_eq!(applied.duplicates, 1);
    assert_eq!(applied.disposition, Disposition::Ack);
    assert!(applied.quarantine.is_none());
    // One never applied stays quarantined.
    let unseen = fresh
        .over_delivered_duplicate(&reader, &env.catalog, &quarantined("e-2"), &over)
        .unwrap();
    assert!(unseen.is_none());
}

#[test]
fn transitions_are_deterministic() {
    let env = env();
    let a = run(
        &env,
        &mut Executor::new("workflow.cmd"),
        &placed("o-1", "e-1"),
        &agg_info(1),
        1,
    );
    let b = run(
        &env,
        &mut Executor::new("workflow.cmd"),
        &placed("o-1", "e-1"),
        &agg_info(1),
        1,
    );
    assert_eq!(a.transitions, b.transitions);
}

#[test]
fn a_new_epoch_forgets_uncommitted_state() {
    let env = env();
    let mut exec = Executor::new("workflow.cmd");
    exec.begin_batch(1, 0);
    run(&env, &mut exec, &placed("o-1", "e-1"), &agg_info(1), 1);
    assert!(exec.pending() > 0);
    // The commit of batch 1 failed: the epoch moved on.
    exec.begin_batch(2, 0);
    assert_eq!(exec.pending(), 0);
    let out = run(
        &env,
        &mut exec,
        &charge_result("o-1", "r-1", "succeeded"),
        &result_info(1),
        2,
    );
    assert_eq!(
        (out.ignored, out.transitions.len()),
        (1, 0),
        "no instance without the lost commit"
    );
    // A committed batch leaves the overlay once reported durable.
    let placed_out = run(&env, &mut exec, &placed("o-1", "e-1"), &agg_info(1), 3);
    commit(&env, &placed_out);
    exec.begin_batch(2, 3);
    assert_eq!(exec.pending(), 0);
}

fn faulty_catalog(dir: &TempDir, with_compensation: bool) -> SagaCatalog {
    let path = dir.path().join("faulty.yaml");
    let compensation = if with_compensation {
        json!({"output": {"commands": [{"to": "aggregate", "aggregate_type": "order",
            "aggregate_id": {"$get": "ctx.correlation_id"}, "command_type": "CancelOrder", "payload": {}}]}})
    } else {
        Value::Null
    };
    let manifest = json!({"sagas": [{
        "name": "faulty",
        "triggers": [{"subject": "aggregate.*.order.*", "start": true, "correlate": {"$get": "event.aggregate_id"}}],
        "on_event": {"output": {"state": {"n": {"$add": [1, {"$get": "event.payload.customer_id"}]}}}},
        "compensation": compensation
    }]});
    std::fs::write(&path, manifest.to_string()).unwrap();
    SagaCatalog::load(&[path], 1000, &Limits::default()).unwrap()
}

#[test]
fn program_fault_quarantines_marks_the_instance_faulted_and_compensates() {
    let dir = TempDir::new("saga").unwrap();
    let store = Store::open(&dir.path().join("store"), 64 << 20).unwrap();
    let catalog = faulty_catalog(&dir, true);
    let info = agg_info(4);
    let ev = decode_event(&catalog, &placed("o-1", "e-1"), &info);
    let mut exec = Executor::new("workflow.cmd");
    let out = exec
        .execute(&store.reader().unwrap(), &ev, &info, 1)
        .unwrap();
    assert_eq!(out.disposition, Disposition::Term);
    assert_eq!(out.faults, 1);
    let q = out.quarantine.as_ref().unwrap();
    assert_eq!(q.kind, QuarantineKind::Program);
    assert!(
        q.reason.contains("saga faulty") && q.reason.contains("$add"),
        "{}",
        q.reason
    );
    let t = &out.transitions[0];
    assert_eq!(t.record.status, InstanceStatus::Faulted);
    assert_eq!(
        t.record.state,
        Value::Null,
        "the faulting output is discarded"
    );
    assert_eq!(t.outbox.len(), 1, "compensation's command is kept");
    assert_eq!(
        t.outbox[0].envelope.to_value()["command_type"],
        "CancelOrder"
    );

    let catalog = faulty_catalog(&dir, false);
    let ev = decode_event(&catalog, &placed("o-2", "e-2"), &info);
    let out = Executor::new("workflow.cmd")
        .execute(&store.reader().unwrap(), &ev, &info, 1)
        .unwrap();
    assert!(out.transitions[0].outbox.is_empty());
    assert_eq!(out.disposition, Disposition::Term);
}

/// A fault on a later event leaves the instance's state as its last transition stored
/// it, and compensation reads that state, not the faulting output.
#[test]
fn a_fault_on_a_later_event_keeps_the_stored_state() {
    let dir = TempDir::new("saga").unwrap();
    let store = Store::open(&dir.path().join("store"), 64 << 20).unwrap();
    let catalog = faulty_catalog(&dir, true);
    let mut exec = Executor::new("workflow.cmd");
    let event = |id: &str, customer: Value| {
        let mut e = placed("o-1", id);
        e["payload"]["customer_id"] = customer;
        e
    };
    let first = decode_event(&catalog, &event("e-1", json!(41)), &agg_info(1));
    let out = exec
        .execute(&store.reader().unwrap(), &first, &agg_info(1), 1)
        .unwrap();
    assert_eq!(out.transitions[0].record.state, json!({"n": 42}));
    store
        .commit(&CommitBatch {
            transitions: out.transitions,
            ..Default::default()
        })
        .unwrap();
    exec.begin_batch(1, 1);
    let second = decode_event(&catalog, &event("e-2", json!("x")), &agg_info(2));
    let out = exec
        .execute(&store.reader().unwrap(), &second, &agg_info(2), 2)
        .unwrap();
    assert_eq!(out.faults, 1);
    let t = &out.transitions[0];
    assert_eq!(t.record.status, InstanceStatus::Faulted);
    assert_eq!(t.record.state, json!({"n": 42}), "the stored state is kept");
    assert_eq!(t.record.transitions, 2);
    assert_eq!(t.outbox.len(), 1, "compensation ran over the kept state");
}

/// The example saga's transition for order `o-1` placed (a command and a timer).
fn order_placed_transition(env: &Env) -> crate::store::Transition {
    let mut out = run(
        env,
        &mut Executor::new("workflow.cmd"),
        &placed("o-1", "e-1"),
        &agg_info(1),
        1,
    );
    out.transitions.remove(0)
}

/// Byte-for-byte output pinned as a literal: the same input must give the same bytes on
/// every machine and every run (a re-run transition after a crash must re-create the
/// same command ids and envelopes).
#[test]
fn example_transition_bytes_are_pinned() {
    let env = env();
    let t = &order_placed_transition(&env);
    let bytes = serde_json::to_string(&json!({
        "state": t.record.state,
        "outbox": t.outbox[0].envelope.to_value(),
        "due": t.schedules[0].due_at_ms,
    }))
    .unwrap();
    assert_eq!(bytes, GOLDEN);
}

/// Checked independently (Python's uuid module): the command id is
/// UUIDv5(COMMAND_NAMESPACE, "acme␟order_fulfilment␟o-1␟e-1␟0") with its first 48 bits
/// replaced by the event time in ms and version 8 set; the span id is the first 16 hex
/// digits of UUIDv5(COMMAND_NAMESPACE, command id); due = 2026-11-27T10:15:00Z in ms.
const GOLDEN: &str = r#"{"due":1795774500000,"outbox":{"command_id":"01a21c72-9100-83df-a3ea-d76c40d2b7f8","effect_name":"charge_card","issued_at":"2026-11-27T10:00:00Z","metadata":{"causation_id":"e-1","correlation_id":"o-1","parent_correlation_id":"req-1","saga_name":"order_fulfilment","traceparent":"00-0af7651916cd43dd8448eb211c80319c-55fa7189f52056e7-01"},"payload":{"amount":4200,"currency":"EUR","customer_id":"c-7","order_id":"o-1"},"tenant_id":"acme"},"state":{"currency":"EUR","customer_id":"c-7","order_id":"o-1","placed_at":"2026-11-27T10:00:00Z","step":"charging","total":4200}}"#;

#[test]
fn an_unreadable_instance_record_quarantines_the_message_without_failing_the_batch() {
    let env = env();
    let key = crate::keys::saga(
        &"acme".parse().unwrap(),
        &"order_fulfilment".parse().unwrap(),
        &"o-1".parse().unwrap(),
    );
    env.store
        .put_raw(&key, b"{\"written\": \"by an older version\"}")
        .unwrap();
    let mut exec = Executor::new("workflow.cmd");
    let out = run(
        &env,
        &mut exec,
        &charge_result("o-1", "r-1", "succeeded"),
        &result_info(1),
        1,
    );
    assert_eq!(out.disposition, Disposition::Term);
    assert!(out.transitions.is_empty());
    let q = out.quarantine.unwrap();
    assert_eq!(q.kind, QuarantineKind::Store);
    assert!(q.reason.contains("corrupt record"), "{}", q.reason);
    // Another instance in the same batch is unaffected.
    let ok = run(&env, &mut exec, &placed("o-2", "e-2"), &agg_info(2), 1);
    assert_eq!(
        (ok.transitions.len(), ok.disposition),
        (1, Disposition::Ack)
    );
}

#[test]
fn a_correlate_fault_in_one_saga_does_not_stop_the_others() {
    let dir = TempDir::new("saga").unwrap();
    let path = dir.path().join("two.json");
    let saga = |name: &str, correlate: Value| {
        json!({"name": name, "triggers": [{"subject": "aggregate.*.order.*", "start": true, "correlate": correlate}],
               "on_event": {"output": {"state": {"seen": true}}}})
    };
    let manifest = json!({"sagas": [
        saga("good", json!({"$get": "event.aggregate_id"})),
        saga("bad", json!({"$add": [1, {"$get": "event.aggregate_id"}]})),
    ]});
    std::fs::write(&path, manifest.to_string()).unwrap();
    let catalog = SagaCatalog::load(&[path], 1000, &Limits::default()).unwrap();
    let ev = decode_event(&catalog, &placed("o-1", "e-1"), &agg_info(1));
    assert_eq!(ev.routes.len(), 1);
    assert_eq!(ev.route_faults.len(), 1);
    assert_eq!(ev.route_faults[0].saga, "bad");
    let store = Store::open(&dir.path().join("store"), 64 << 20).unwrap();
    let out = Executor::new("workflow.cmd")
        .execute(&store.reader().unwrap(), &ev, &agg_info(1), 1)
        .unwrap();
    assert_eq!(out.transitions.len(), 1, "the good saga still runs");
    assert_eq!(out.disposition, Disposition::Term);
    let q = out.quarantine.unwrap();
    assert_eq!(
        (q.kind, q.saga.as_deref()),
        (QuarantineKind::Program, Some("bad"))
    );
}

/// A manifest of saga `vs` at `version` whose program writes `{"v": version, "n": n+1}`;
/// with `keep_v1`, version 1 stays loaded (and a migration from it is offered).
fn versioned_catalog(dir: &TempDir, version: u32, keep_v1: bool) -> SagaCatalog {
    let program = |v: u32| {
        json!({"output": {"state": {"v": v,
            "n": {"$add": [{"$coalesce": [{"$get": "state.n"}, 0]}, 1]}}}})
    };
    let mut saga = json!({
        "name": "vs", "version": version,
        "triggers": [{"subject": "aggregate.*.order.*", "start": true,
                      "correlate": {"$get": "event.aggregate_id"}}],
        "on_event": program(version),
    });
    if keep_v1 && version > 1 {
        saga["previous"] = json!([{"version": 1, "on_event": program(1)}]);
        saga["migrate"] = json!([{"from": 1, "program": {"output": {"state": {
            "v": version, "n": {"$get": "state.n"}, "migrated": true}}}}]);
    }
    let path = dir.path().join(format!("vs-{version}-{keep_v1}.json"));
    std::fs::write(&path, json!({ "sagas": [saga] }).to_string()).unwrap();
    SagaCatalog::load(&[path], 20_000, &Limits::default()).unwrap()
}

/// Applies one `OrderPlaced` of `order` under `catalog` and commits it.
fn apply_with(store: &Store, catalog: &SagaCatalog, order: &str, seq: u64) {
    let ev = decode_event(catalog, &placed(order, &format!("e-{seq}")), &agg_info(seq));
    let mut exec = Executor::new("workflow.cmd");
    let reader = store.reader().unwrap();
    let out = exec.execute(&reader, &ev, &agg_info(seq), 1).unwrap();
    drop(reader);
    assert_eq!(out.transitions.len(), 1, "{out:?}");
    store
        .commit(&CommitBatch {
            transitions: out.transitions,
            ..Default::default()
        })
        .unwrap();
}

#[test]
fn instances_keep_their_version_new_ones_take_the_newest_and_migration_moves_them() {
    use crate::saga::versions::{check_in_use, migrate, Migration};
    let dir = TempDir::new("versions").unwrap();
    let store = Store::open(&dir.path().join("store"), 64 << 20).unwrap();
    let (v1, v2, v2_alone) = (
        versioned_catalog(&dir, 1, false),
        versioned_catalog(&dir, 2, true),
        versioned_catalog(&dir, 2, false),
    );
    let (acme, vs): (crate::types::TenantId, crate::types::SagaName) =
        ("acme".parse().unwrap(), "vs".parse().unwrap());
    let record = |order: &str| {
        store
            .saga(&acme, &vs, &order.parse().unwrap())
            .unwrap()
            .unwrap()
    };

    apply_with(&store, &v1, "o-1", 1);
    // Version 2 loaded: o-1 keeps running on version 1, a new instance starts on 2.
    apply_with(&store, &v2, "o-1", 2);
    apply_with(&store, &v2, "o-2", 3);
    assert_eq!(
        (record("o-1").version, &record("o-1").state),
        (1, &json!({"v": 1, "n": 2}))
    );
    assert_eq!(
        (record("o-2").version, &record("o-2").state),
        (2, &json!({"v": 2, "n": 1}))
    );

    // A catalog without version 1 is refused while o-1 is live on it.
    check_in_use(&store, &v2).unwrap();
    let refused = check_in_use(&store, &v2_alone).unwrap_err().to_string();
    assert!(
        refused.contains("version 1") && refused.contains("acme"),
        "{refused}"
    );

    // An operator moves o-1 forward; the others are named and left alone.
    let ids: Vec<crate::types::CorrelationId> = ["o-1", "o-2", "o-3"]
        .iter()
        .map(|c| c.parse().unwrap())
        .collect();
    let results = migrate(&store, &v2, &acme, &vs, &ids).unwrap();
    assert_eq!(results[0].1, Migration::Migrated { from: 1, to: 2 });
    assert!(matches!(&results[1].1, Migration::Skipped(r) if r.contains("already on version 2")));
    assert!(matches!(&results[2].1, Migration::Skipped(r) if r.contains("no such instance")));
    assert_eq!(record("o-1").version, 2);
    assert_eq!(
        record("o-1").state,
        json!({"v": 2, "n": 2, "migrated": true})
    );
    check_in_use(&store, &v2_alone).unwrap();
    // From now on o-1 runs version 2's program.
    apply_with(&store, &v2_alone, "o-1", 4);
    assert_eq!(record("o-1").state, json!({"v": 2, "n": 3}));
    let counts = store.version_counts(1000).unwrap();
    assert_eq!(
        counts
            .counts
            .get(&("vs".to_string(), 2, "active".to_string())),
        Some(&2)
    );
    assert!(!counts
        .counts
        .contains_key(&("vs".to_string(), 1, "active".to_string())));
}

#[test]
fn an_instance_on_a_version_no_longer_loaded_is_quarantined_not_changed() {
    let dir = TempDir::new("versions").unwrap();
    let store = Store::open(&dir.path().join("store"), 64 << 20).unwrap();
    apply_with(&store, &versioned_catalog(&dir, 1, false), "o-1", 1);
    let v2_alone = versioned_catalog(&dir, 2, false);
    let ev = decode_event(&v2_alone, &placed("o-1", "e-2"), &agg_info(2));
    let reader = store.reader().unwrap();
    let out = Executor::new("workflow.cmd")
        .execute(&reader, &ev, &agg_info(2), 1)
        .unwrap();
    assert!(out.transitions.is_empty());
    let q = out.quarantine.expect("quarantined");
    assert!(
        q.reason.contains("version 1") && q.reason.contains("not loaded"),
        "{}",
        q.reason
    );
}

/// An upstream that traces in headers only: the `traceparent` header stands in for the
/// body's, in the log context and in the work the event causes (invariant 4); a body
/// that has a readable one keeps it.
#[test]
fn a_traceparent_only_in_the_header_is_taken_and_continued() {
    const HEADER_TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let env = env();
    let decode_with = |body: &Value, traceparent: Option<&str>| {
        let headers = Headers {
            tenant: Some("acme"),
            traceparent,
        };
        let bytes = body.to_string();
        match decode_message(
            &cfg(),
            &env.catalog,
            &agg_info(1),
            headers,
            bytes.as_bytes(),
        ) {
            Decoded::Event(e) => *e,
            Decoded::Quarantine(q, _) => panic!("quarantined: {}", q.reason),
        }
    };
    let mut untraced = placed("o-1", "e-1");
    untraced["metadata"] = json!({"correlation_id": "req-1"});
    let ev = decode_with(&untraced, Some(HEADER_TP));
    assert_eq!(ev.traceparent.as_deref(), Some(HEADER_TP));
    assert_eq!(ev.log.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    let reader = env.store.reader().unwrap();
    let out = Executor::new("workflow.cmd")
        .execute(&reader, &ev, &agg_info(1), 1)
        .unwrap();
    let t = &out.transitions[0];
    let cmd: EffectCommand = serde_json::from_str(t.outbox[0].envelope.as_str()).unwrap();
    let tp = cmd.metadata["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp != HEADER_TP,
        "the command continues the header's trace with a span of its own: {tp}"
    );
    assert_eq!(t.outbox[0].traceparent.as_deref(), Some(tp));
    let timer_tp = t.schedules[0].metadata["traceparent"].as_str().unwrap();
    assert!(timer_tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));

    // The body's own wins over the header's…
    let ev = decode_with(&placed("o-1", "e-1"), Some(HEADER_TP));
    assert_eq!(ev.traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!(ev.log.trace_id, "0af7651916cd43dd8448eb211c80319c");
    // …unless it cannot be read; a malformed header is ignored.
    let mut garbled = placed("o-1", "e-1");
    garbled["metadata"]["traceparent"] = json!("garbage");
    assert_eq!(
        decode_with(&garbled, Some(HEADER_TP))
            .traceparent
            .as_deref(),
        Some(HEADER_TP)
    );
    assert_eq!(
        decode_with(&untraced, Some("garbage")).log.trace_id,
        "",
        "no readable trace anywhere"
    );

    // A message quarantined before its envelope is read still names the header's trace.
    let quarantined = decode_message(
        &cfg(),
        &env.catalog,
        &agg_info(2),
        Headers {
            tenant: Some("acme"),
            traceparent: Some(HEADER_TP),
        },
        b"not json",
    );
    match quarantined {
        Decoded::Quarantine(_, log) => {
            assert_eq!(log.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736")
        }
        Decoded::Event(_) => panic!("not json is quarantined"),
    }
}

/// Saga `timed`: `OrderPlaced` sets timer "t" a second after the event, `TimerCancelled`
/// cancels it, `TimerMoved` sets it again five seconds after the event, `OrderClosed`
/// completes; a reminder appends `name@due_at,` to `state.fired`.
fn timer_catalog(dir: &TempDir) -> SagaCatalog {
    let is = |t: &str| json!({"$eq": [{"$get": "event.event_type"}, t]});
    let manifest = json!({"sagas": [{
        "name": "timed",
        "triggers": [
            {"subject": "aggregate.*.order.*", "start": true, "correlate": {"$get": "event.aggregate_id"}},
            {"subject": "workflow.timer.*.timed", "correlate": {"$get": "event.correlation_id"}}
        ],
        "on_event": {"output": {
            "state": {"fired": {"$concat": [
                {"$coalesce": [{"$get": "state.fired"}, ""]},
                {"$if": [{"$eq": [{"$get": "ctx.kind"}, "reminder"]},
                         {"$concat": [{"$get": "event.name"}, "@", {"$get": "event.due_at"}, ","]}, ""]}
            ]}},
            "status": {"$if": [is("OrderClosed"), "completed", "active"]},
            "schedules": {"$if": [is("OrderPlaced"), [{"name": "t", "after_ms": 1000}],
                          {"$if": [is("TimerMoved"), [{"name": "t", "after_ms": 5000}], []]}]},
            "cancel": {"$if": [is("TimerCancelled"), ["t"], []]}
        }}
    }]});
    let path = dir.path().join("timed.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    SagaCatalog::load(&[path], 20_000, &Limits::default()).unwrap()
}

struct Timed {
    _dir: TempDir,
    store: Store,
    catalog: SagaCatalog,
}

impl Timed {
    fn new() -> Timed {
        let dir = TempDir::new("saga").unwrap();
        let store = Store::open(&dir.path().join("store"), 64 << 20).unwrap();
        let catalog = timer_catalog(&dir);
        Timed {
            _dir: dir,
            store,
            catalog,
        }
    }

    /// The same store opened again (what it notes at open is read then).
    fn reopened(self) -> Timed {
        let Timed {
            _dir,
            store,
            catalog,
        } = self;
        let path = store.path().to_path_buf();
        drop(store);
        Timed {
            _dir,
            store: Store::open(&path, 64 << 20).unwrap(),
            catalog,
        }
    }

    fn aggregate(&self, exec: &mut Executor, order: &str, event_type: &str, seq: u64) -> Outcome {
        let mut value = placed(order, &format!("e-{order}-{event_type}"));
        value["event_type"] = json!(event_type);
        let info = info(
            "AGGREGATE_EVENTS",
            &format!("aggregate.acme.order.{event_type}"),
            seq,
        );
        self.run(exec, &value, &info)
    }

    /// The reminder the scheduler would publish for `timer`.
    fn reminder(
        &self,
        exec: &mut Executor,
        timer: &crate::store::ScheduleItem,
        seq: u64,
    ) -> Outcome {
        let value = serde_json::to_value(crate::timers::reminder(timer)).unwrap();
        self.run(
            exec,
            &value,
            &info("WORKFLOW_EVENTS", "workflow.timer.acme.timed", seq),
        )
    }

    fn run(&self, exec: &mut Executor, value: &Value, info: &MessageInfo) -> Outcome {
        let ev = decode_event(&self.catalog, value, info);
        let reader = self.store.reader().unwrap();
        exec.execute(&reader, &ev, info, 1).unwrap()
    }

    fn commit(&self, out: &Outcome) {
        self.store
            .commit(&CommitBatch {
                transitions: out.transitions.clone(),
                ..Default::default()
            })
            .unwrap();
    }

    fn timers(&self, order: &str) -> Vec<crate::store::ScheduleItem> {
        self.store
            .instance_schedules(
                &"acme".parse().unwrap(),
                &"timed".parse().unwrap(),
                &order.parse().unwrap(),
            )
            .unwrap()
    }
}

/// An executor with nothing in flight.
fn executor() -> Executor {
    Executor::new("workflow.cmd")
}

fn stale(out: &Outcome) -> bool {
    out.stale == 1 && out.transitions.is_empty() && out.duplicates == 0 && out.ignored == 0
}

/// A reminder runs only while its instance holds that exact timer, also when what
/// dropped it is not committed yet (the executor's overlay), and its transition consumes
/// the timer.
#[test]
fn a_reminder_runs_only_while_its_instance_still_holds_that_timer() {
    let env = Timed::new();
    env.commit(&env.aggregate(&mut executor(), "o-1", "OrderPlaced", 1));
    let timer = env.timers("o-1").pop().expect("timer t is set");

    // Held: it runs, and its transition consumes the timer.
    let mut exec = executor();
    let live = env.reminder(&mut exec, &timer, 1);
    assert_eq!((live.stale, live.transitions.len()), (0, 1));
    assert_eq!(live.transitions[0].fired.as_deref(), Some("t"));
    assert_eq!(
        live.transitions[0].record.state["fired"],
        "t@2026-11-27T10:00:01Z,"
    );

    // Cancelled, not committed yet: stale.
    let mut exec = executor();
    env.aggregate(&mut exec, "o-1", "TimerCancelled", 2);
    assert!(stale(&env.reminder(&mut exec, &timer, 1)));

    // Set again, not committed yet: the old reminder is stale, the new one runs.
    let mut exec = executor();
    let moved = env.aggregate(&mut exec, "o-1", "TimerMoved", 2);
    assert!(stale(&env.reminder(&mut exec, &timer, 1)));
    let new_timer = moved.transitions[0].schedules[0].clone();
    let new = env.reminder(&mut exec, &new_timer, 2);
    assert_eq!(new.transitions.len(), 1, "{new:?}");
    assert_eq!(
        new.transitions[0].record.state["fired"],
        "t@2026-11-27T10:00:05Z,"
    );

    // Finished, not committed yet: stale.
    let mut exec = executor();
    env.aggregate(&mut exec, "o-1", "OrderClosed", 2);
    assert!(stale(&env.reminder(&mut exec, &timer, 1)));

    // The live reminder committed: the timer is gone, and the same reminder again is a
    // duplicate (its marker), not stale.
    env.commit(&live);
    assert!(env.timers("o-1").is_empty(), "consumed");
    let again = env.reminder(&mut executor(), &timer, 1);
    assert_eq!((again.duplicates, again.stale), (1, 0));

    // Cancelled and committed: stale as read from the store.
    env.commit(&env.aggregate(&mut executor(), "o-2", "OrderPlaced", 3));
    let timer = env.timers("o-2").pop().unwrap();
    env.commit(&env.aggregate(&mut executor(), "o-2", "TimerCancelled", 4));
    assert!(stale(&env.reminder(&mut executor(), &timer, 3)));
    // A reminder naming a timer nobody could have set (an empty name): stale too.
    let mut odd = timer.clone();
    odd.name = String::new();
    assert!(stale(&env.reminder(&mut executor(), &odd, 5)));
}

/// A store an older Runner wrote (it deleted a timer once its reminder was published):
/// a reminder published before this store kept timer records runs without its record,
/// as it would have there; one published since is judged by the record.
#[test]
fn a_reminder_an_older_runner_published_runs_without_its_record() {
    let env = Timed::new();
    env.commit(&env.aggregate(&mut executor(), "o-1", "OrderPlaced", 1));
    let timer = env.timers("o-1").pop().unwrap();
    env.commit(&env.aggregate(&mut executor(), "o-1", "TimerCancelled", 2));
    let since = 1_800_000_000_000i64;
    env.store
        .put_raw("meta:timer_records_since", since.to_string().as_bytes())
        .unwrap();
    let env = env.reopened();
    let published = |ms: i64| {
        let value = serde_json::to_value(crate::timers::reminder(&timer)).unwrap();
        let mut info = info("WORKFLOW_EVENTS", "workflow.timer.acme.timed", 1);
        info.published_ms = ms;
        env.run(&mut executor(), &value, &info)
    };
    let before = published(since - 1);
    assert_eq!((before.stale, before.transitions.len()), (0, 1));
    assert!(stale(&published(since)));
}

/// A store opened for the first time by a Runner that keeps timer records notes since
/// when: now for a store with instances, 0 for a new one.
#[test]
fn a_store_notes_since_when_it_keeps_timer_records() {
    let dir = TempDir::new("saga").unwrap();
    let path = dir.path().join("store");
    let fresh = Store::open(&path, 64 << 20).unwrap();
    assert_eq!(fresh.reader().unwrap().timer_records_since(), 0);
    let catalog = timer_catalog(&dir);
    let value = {
        let mut v = placed("o-1", "e-1");
        v["event_type"] = json!("OrderPlaced");
        v
    };
    let info = info("AGGREGATE_EVENTS", "aggregate.acme.order.OrderPlaced", 1);
    let ev = decode_event(&catalog, &value, &info);
    let out = Executor::new("workflow.cmd")
        .execute(&fresh.reader().unwrap(), &ev, &info, 1)
        .unwrap();
    fresh
        .commit(&CommitBatch {
            transitions: out.transitions,
            ..Default::default()
        })
        .unwrap();
    // As written by an older Runner: no note.
    fresh.delete_raw("meta:timer_records_since").unwrap();
    drop(fresh);
    let before = crate::timefmt::now_ms();
    let upgraded = Store::open(&path, 64 << 20).unwrap();
    let since = upgraded.reader().unwrap().timer_records_since();
    assert!(since >= before, "{since} >= {before}");
    drop(upgraded);
    let again = Store::open(&path, 64 << 20).unwrap();
    assert_eq!(
        again.reader().unwrap().timer_records_since(),
        since,
        "noted once"
    );
}

// The subject names the tenant (docs/guarantees.md, "Tenant isolation"): body and
// header may only agree with it, and a record is filed under a tenant only when the
// message proved it.

fn reminder_body(tenant: &str) -> Value {
    json!({
        "event_id": "t-1", "tenant_id": tenant, "saga_name": "order_fulfilment",
        "correlation_id": "o-1", "name": "payment_timeout", "due_at": "2026-11-27T10:15:00Z",
        "payload": {}, "metadata": {"correlation_id": "o-1"}
    })
}

/// One envelope of each stream the saga side consumes, on a subject of tenant acme,
/// its body naming `body_tenant`.
fn each_stream(body_tenant: &str) -> Vec<(&'static str, MessageInfo, Value)> {
    let mut event = placed("o-1", "e-1");
    event["tenant_id"] = json!(body_tenant);
    let mut result = charge_result("o-1", "r-1", "succeeded");
    result["tenant_id"] = json!(body_tenant);
    let timer = info("WORKFLOW_EVENTS", "workflow.timer.acme.order_fulfilment", 3);
    vec![
        ("event", agg_info(1), event),
        ("result", result_info(2), result),
        ("reminder", timer, reminder_body(body_tenant)),
    ]
}

fn assert_unattributed_violation(what: &str, q: &crate::store::QuarantineRecord) {
    assert_eq!(q.kind, QuarantineKind::TenantAccess, "{what}: {}", q.reason);
    assert_eq!(q.filing_tenant(), None, "{what}: filed under no tenant");
}

#[test]
fn a_body_tenant_other_than_the_subjects_is_a_violation_on_every_stream() {
    let catalog = example_catalog();
    for (what, info, body) in each_stream("globex") {
        let d = decode(&cfg(), &catalog, &info, None, body.to_string().as_bytes());
        let q = quarantine_of(d);
        assert_unattributed_violation(what, &q);
        assert!(q.reason.contains("subject"), "{what}: {}", q.reason);
    }
}

#[test]
fn a_header_tenant_other_than_the_subjects_is_a_violation_on_every_stream() {
    let catalog = example_catalog();
    // Header disagreeing with subject and body; then with the subject alone (no body
    // tenant, so nothing else names one).
    for body_tenant in ["acme", ""] {
        for (what, info, body) in each_stream(body_tenant) {
            let d = decode(
                &cfg(),
                &catalog,
                &info,
                Some("globex"),
                body.to_string().as_bytes(),
            );
            assert_unattributed_violation(what, &quarantine_of(d));
        }
    }
}

#[test]
fn body_and_header_may_be_absent_or_agree_with_the_subject() {
    let catalog = example_catalog();
    for body_tenant in ["acme", ""] {
        for header in [None, Some("acme"), Some("")] {
            for (what, info, body) in each_stream(body_tenant) {
                let d = decode(&cfg(), &catalog, &info, header, body.to_string().as_bytes());
                let Decoded::Event(ev) = d else {
                    panic!("{what} (body {body_tenant:?}, header {header:?}) was quarantined")
                };
                assert_eq!(ev.tenant.as_str(), "acme", "{what}");
            }
        }
    }
    // `_` is the single tenant: a body naming a tenant there is a violation.
    let single = info("AGGREGATE_EVENTS", "aggregate._.order.OrderPlaced", 4);
    let mut none = placed("o-1", "e-1");
    none["tenant_id"] = json!("");
    let Decoded::Event(ev) = decode(&cfg(), &catalog, &single, None, none.to_string().as_bytes())
    else {
        panic!("the single tenant's subject and no body tenant agree")
    };
    assert!(ev.tenant.is_single());
    let q = quarantine_of(decode(
        &cfg(),
        &catalog,
        &single,
        None,
        placed("o-1", "e-1").to_string().as_bytes(),
    ));
    assert_unattributed_violation("acme on `_`", &q);
}

#[test]
fn a_subject_without_a_tenant_token_is_a_violation() {
    let catalog = example_catalog();
    for subject in ["aggregate", "elsewhere.acme.order.OrderPlaced"] {
        let i = info("AGGREGATE_EVENTS", subject, 5);
        let q = quarantine_of(decode(
            &cfg(),
            &catalog,
            &i,
            Some("acme"),
            placed("o-1", "e-1").to_string().as_bytes(),
        ));
        assert_unattributed_violation(subject, &q);
    }
}

#[test]
fn a_quarantine_record_names_a_tenant_only_when_the_message_proved_it() {
    let catalog = example_catalog();
    let mut broken = placed("o-1", "e-1");
    broken.as_object_mut().unwrap().remove("aggregate_id");
    // Subject and body agree: filed under acme.
    let q = quarantine_of(decode(
        &cfg(),
        &catalog,
        &agg_info(1),
        None,
        broken.to_string().as_bytes(),
    ));
    assert_eq!(q.kind, QuarantineKind::Decode);
    assert_eq!(q.filing_tenant().map(|t| t.as_str()), Some("acme"));
    // The body names another tenant: whatever else is wrong, no tenant's record.
    broken["tenant_id"] = json!("globex");
    let q = quarantine_of(decode(
        &cfg(),
        &catalog,
        &agg_info(2),
        None,
        broken.to_string().as_bytes(),
    ));
    assert_eq!(q.filing_tenant(), None, "{:?}: {}", q.kind, q.reason);
    // Unreadable body: subject and header prove acme.
    let q = quarantine_of(decode(
        &cfg(),
        &catalog,
        &agg_info(3),
        Some("acme"),
        b"{nope",
    ));
    assert_eq!(q.filing_tenant().map(|t| t.as_str()), Some("acme"));
    // Unreadable body, header naming another tenant: unattributed.
    let q = quarantine_of(decode(
        &cfg(),
        &catalog,
        &agg_info(4),
        Some("globex"),
        b"{nope",
    ));
    assert_eq!(q.filing_tenant(), None, "{:?}: {}", q.kind, q.reason);
    // Over-delivered, body naming another tenant: unattributed too.
    let mut over = agg_info(5);
    over.delivered = 99;
    let q = quarantine_of(decode(
        &cfg(),
        &catalog,
        &over,
        None,
        broken.to_string().as_bytes(),
    ));
    assert_eq!(q.filing_tenant(), None, "{:?}: {}", q.kind, q.reason);
}

#[test]
fn metadata_over_the_bound_is_quarantined_at_decode_on_every_stream() {
    let catalog = example_catalog();
    // The default bound is 16 KiB; 20 KiB of metadata is over it, the body well under
    // the message limit.
    let big = "x".repeat(20 * 1024);
    for (what, info, mut body) in each_stream("acme") {
        body["metadata"]["note"] = json!(big);
        let q = quarantine_of(decode(
            &cfg(),
            &catalog,
            &info,
            None,
            body.to_string().as_bytes(),
        ));
        assert_eq!(q.kind, QuarantineKind::Decode, "{what}: {}", q.reason);
        assert!(q.reason.contains("metadata"), "{what}: {}", q.reason);
        assert_eq!(
            q.filing_tenant().map(|t| t.as_str()),
            Some("acme"),
            "{what}"
        );
        assert!(
            q.reason.len() < 200,
            "{what}: the reason quotes no metadata"
        );
    }
}

/// The size check counts what the relay and the scheduler will send: a transition
/// exactly at `max_payload` passes, one byte less refuses it, for its command and for
/// its reminder alike.
#[test]
fn the_size_check_counts_exactly_what_is_published() {
    let env = env();
    let t = &order_placed_transition(&env);
    // The room the check keeps for a `Nats-Msg-Id`, as the publishers count an id.
    let id_room = Some(384);
    let item = &t.outbox[0];
    let command = crate::nats_io::wire_size(
        &crate::nats_io::context_headers(
            item.tenant.as_str(),
            Some(item.correlation.as_str()),
            item.traceparent.as_deref(),
        ),
        id_room,
        item.envelope.as_str().len(),
    );
    let timer = &t.schedules[0];
    let (_, body) = crate::timers::reminder_body(timer).unwrap();
    let reminder = crate::nats_io::wire_size(
        &crate::nats_io::context_headers(
            timer.tenant.as_str(),
            Some(timer.correlation.as_str()),
            timer.metadata.get("traceparent").and_then(|v| v.as_str()),
        ),
        id_room,
        body.len(),
    );
    assert_ne!(command, reminder, "the two limits tell the envelopes apart");
    let largest = command.max(reminder);
    assert_eq!(envelope_size::oversized(t, largest), None);
    let refused = envelope_size::oversized(t, largest - 1).expect("one byte over");
    let what = if command > reminder {
        "command"
    } else {
        "reminder"
    };
    assert!(
        refused.contains(&format!("its {what} ")) && refused.contains(&format!("{largest} bytes")),
        "{refused}"
    );
    // Both over: the command is named, checked first.
    let refused = envelope_size::oversized(t, command.min(reminder) - 1).expect("both over");
    assert!(
        refused.contains(&format!(
            "its command {:?} would be {command} bytes",
            item.work_id.as_str()
        )),
        "{refused}"
    );
}
