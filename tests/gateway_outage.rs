//! A Gateway outage is not a saga failure: transient Gateway errors spend the relay's
//! retry budget (`relay.retry_budget_secs`), and once it is spent the saga hears
//! `timed_out` (the Gateway may have accepted the command), never `failed`.

mod common;

use common::{await_stats, event, wait_until, Rig, WAIT};
use runner::dev::{FakeGateway, Reply};
use serde_json::{json, Value};

/// Sends `Ship` per order and records the Gateway's result for it in its state.
fn listening_shipper() -> Value {
    json!([{
        "name": "shipper",
        "triggers": [
            {"subject": "{ns}.aggregate.*.order.*", "start": true,
             "correlate": {"$get": "event.aggregate_id"}},
            {"subject": "{ns}.workflow.result.*.gateway",
             "correlate": {"$get": "event.metadata.correlation_id"}}
        ],
        "on_event": {"output": {
            "state": {"gateway": {"$coalesce": [{"$get": "event.result_type"}, "none"]},
                      "kind": {"$coalesce": [{"$get": "event.error.kind"}, "none"]}},
            "commands": [{"$if": [{"$eq": [{"$get": "ctx.kind"}, "aggregate"]},
                {"to": "aggregate", "aggregate_type": "order",
                 "aggregate_id": {"$get": "event.aggregate_id"},
                 "command_type": "Ship", "payload": {}}, null]}]
        }}
    }])
}

#[test]
fn a_gateway_that_answers_503_until_the_budget_is_spent_gives_the_saga_timed_out() {
    let gateway = FakeGateway::start(|_, _| Reply::status(503)).unwrap();
    let mut rig = Rig::new(listening_shipper());
    let r = &mut rig.settings.relay;
    r.gateway_url = gateway.url().to_string();
    r.gateway_timeout_ms = 300;
    r.backoff_initial_ms = 50;
    r.backoff_max_ms = 400;
    r.retry_budget_secs = 2;
    let pipeline = rig.start();
    let nc = rig.connect();
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    rig.publish(
        &nc,
        &subject,
        &event("e-1", "acme", "o-1", "OrderPlaced", json!({})),
    );
    await_stats(&pipeline, |s| s.dead_letters == 1);
    let acme = "acme".parse().unwrap();
    let dead = rig.store.dead_letters(&acme, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert!(gateway.count() >= 2, "retried within the budget");
    let results = rig.result_messages(&nc, 10);
    assert_eq!(results.len(), 1);
    let result: Value = serde_json::from_slice(&results[0].data).unwrap();
    assert_eq!(result["result_type"], "timed_out", "{result}");
    assert_eq!(result["error"]["kind"], "retry_budget_spent", "{result}");
    assert!(
        dead[0].reason.contains("retry budget"),
        "the dead letter says why: {}",
        dead[0].reason
    );
    let saga = "shipper".parse().unwrap();
    wait_until(WAIT, || {
        rig.store
            .instances(&acme, &saga, 10)
            .unwrap()
            .first()
            .is_some_and(|(_, i)| i.state["gateway"] != "none")
    });
    let (_, instance) = &rig.store.instances(&acme, &saga, 10).unwrap()[0];
    assert_eq!(
        instance.state["gateway"], "timed_out",
        "{:?}",
        instance.state
    );
    assert_eq!(instance.state["kind"], "retry_budget_spent");
}
