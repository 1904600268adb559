//! Ids across tenants, against a real nats-server: two tenants whose sagas name the same
//! `command_id` inside the streams' duplicate window both get their effect run, their
//! result delivered and their instance completed, and the Gateway sees each tenant's
//! command under its own `x-tenant-id`.

mod common;

use std::collections::BTreeSet;

use common::{event, wait_until, Rig, WAIT};
use runner::dev::{FakeGateway, Reply};
use runner::settings::Mode;
use runner::store::InstanceStatus;
use serde_json::{json, Value};

const TENANTS: [&str; 2] = ["acme", "globex"];

/// A saga that, on `OrderPlaced`, asks for `charge` and sends `Ship` to the Gateway,
/// both under the explicit id `event.payload.order_id`, and completes on the charge's
/// result.
fn explicit_id_saga() -> Value {
    let placed = json!({"$eq": [{"$get": "ctx.kind"}, "aggregate"]});
    json!([{
        "name": "order",
        "triggers": [
            {"subject": "{ns}.aggregate.*.order.OrderPlaced", "start": true,
             "correlate": {"$get": "event.aggregate_id"}},
            {"subject": "{ns}.workflow.result.*.charge",
             "correlate": {"$get": "event.metadata.correlation_id"}}
        ],
        "on_event": {"output": {
            "state": {"paid": {"$not": placed.clone()}},
            "status": {"$if": [placed.clone(), "active", "completed"]},
            "commands": [
                {"$if": [placed.clone(),
                    {"to": "effect", "effect": "charge", "command_id": {"$get": "event.payload.order_id"},
                     "payload": {"order": {"$get": "event.payload.order_id"}}},
                    null]},
                {"$if": [placed,
                    {"to": "aggregate", "aggregate_type": "order", "aggregate_id": {"$get": "event.aggregate_id"},
                     "command_type": "Ship", "command_id": {"$get": "event.payload.order_id"}, "payload": {}},
                    null]}
            ]
        }}
    }])
}

#[test]
fn two_tenants_naming_the_same_command_id_both_get_their_effect_and_complete() {
    let upstream = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let gateway = FakeGateway::accepting().unwrap();
    let mut rig = Rig::new(explicit_id_saga());
    let effects = rig.dir.path().join("effects.json");
    let manifest = json!({"effects": [{"name": "charge", "provider": "http", "timeout_ms": 2000,
        "http": {"url": format!("{}/v1/charges", upstream.url())}}]});
    std::fs::write(&effects, manifest.to_string()).unwrap();
    let s = &mut rig.settings;
    s.mode = Mode::Combined;
    s.manifests.effects = vec![effects];
    s.relay.gateway_url = gateway.url().to_string();
    s.relay.scan_interval_ms = 100;
    let pipeline = rig.start();
    let nc = rig.connect();

    // The same order id ("1001") in both tenants, one right after the other: well
    // inside the duplicate window of the command and result streams.
    for (i, tenant) in TENANTS.iter().enumerate() {
        let body = event(
            &format!("e-{i}"),
            tenant,
            "o-1",
            "OrderPlaced",
            json!({"order_id": "1001"}),
        );
        rig.publish(&nc, &rig.aggregate_subject(tenant, "OrderPlaced"), &body);
    }

    let saga = "order".parse().unwrap();
    let corr = "o-1".parse().unwrap();
    let status = |tenant: &str| {
        rig.store
            .saga(&tenant.parse().unwrap(), &saga, &corr)
            .unwrap()
            .map(|r| r.status)
    };
    let completed = wait_until(WAIT, || {
        TENANTS
            .iter()
            .all(|t| status(t) == Some(InstanceStatus::Completed))
    });
    let called: BTreeSet<String> = upstream
        .received()
        .iter()
        .filter_map(|c| c.header("x-tenant-id").map(str::to_string))
        .collect();
    assert!(
        completed,
        "both instances complete: acme {:?}, globex {:?}; effect called for {called:?}; {:?}",
        status("acme"),
        status("globex"),
        pipeline.stats()
    );
    assert_eq!(called, TENANTS.iter().map(|t| t.to_string()).collect());

    // The envelope keeps the saga's own id; the message ids differ per tenant.
    let commands = rig.published_commands(&nc, 10);
    assert_eq!(commands.len(), 2, "one command per tenant on the stream");
    let mut msg_ids = BTreeSet::new();
    for m in &commands {
        let body: Value = serde_json::from_slice(&m.data).unwrap();
        assert_eq!(body["command_id"], "1001");
        msg_ids.insert(
            runner::nats_io::header(m, "Nats-Msg-Id")
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(msg_ids.len(), 2, "tenant-scoped Nats-Msg-Ids: {msg_ids:?}");
    let results = rig.result_messages(&nc, 10);
    let result_ids: BTreeSet<String> = results
        .iter()
        .map(|m| serde_json::from_slice::<Value>(&m.data).unwrap()["event_id"].to_string())
        .collect();
    assert_eq!(result_ids.len(), 2, "one result per tenant, distinct ids");

    // The Gateway gets each tenant's command: the same idempotency key (the saga's
    // command id), told apart by x-tenant-id (docs/guarantees.md, "Ids across tenants").
    assert!(wait_until(WAIT, || gateway.received().len() >= 2));
    let keys: BTreeSet<(String, String)> = gateway
        .received()
        .iter()
        .map(|c| {
            (
                c.header("x-tenant-id").unwrap_or_default().to_string(),
                c.header("idempotency-key").unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = TENANTS
        .iter()
        .map(|t| (t.to_string(), "1001".to_string()))
        .collect();
    assert_eq!(keys, expected);
}
