//! The scheduler against a real nats-server and a real LMDB store: timers fire through
//! the saga's own triggers, once.

mod common;

use std::time::Duration;

use common::{await_stats, config_file, event, wait_until, Rig, RunnerProcess};
use runner::types::{CorrelationId, SagaName, TenantId};
use serde_json::{json, Value};

/// On an order: timers "soon" (due a second after the event, long past) and "far" (ten
/// days on). On a reminder: appends its name to `state.fired`.
fn timed_saga() -> Value {
    json!([{
        "name": "timed",
        "triggers": [
            {"subject": "{ns}.aggregate.*.order.*", "start": true, "correlate": {"$get": "event.aggregate_id"}},
            {"subject": "{ns}.workflow.timer.*.timed", "correlate": {"$get": "event.correlation_id"}}
        ],
        "on_event": {"output": {
            "state": {"fired": {"$concat": [
                {"$coalesce": [{"$get": "state.fired"}, ""]},
                {"$if": [{"$eq": [{"$get": "ctx.kind"}, "reminder"]}, {"$concat": [{"$get": "event.name"}, ","]}, ""]}
            ]}},
            "schedules": {"$if": [{"$eq": [{"$get": "ctx.kind"}, "aggregate"]}, [
                {"name": "soon", "after_ms": 1000, "payload": {"why": "test"}},
                {"name": "far", "after_ms": 864000000}
            ], []]}
        }}
    }])
}

fn place(rig: &Rig, nc: &nats::Connection, tenant: &str, order: &str) {
    let subject = rig.aggregate_subject(tenant, "OrderPlaced");
    rig.publish(
        nc,
        &subject,
        &event(
            &format!("e-{tenant}-{order}"),
            tenant,
            order,
            "OrderPlaced",
            json!({}),
        ),
    );
}

fn fired(rig: &Rig, tenant: &str, order: &str) -> Option<String> {
    let (tenant, saga, corr): (TenantId, SagaName, CorrelationId) = (
        tenant.parse().unwrap(),
        "timed".parse().unwrap(),
        order.parse().unwrap(),
    );
    rig.store
        .saga(&tenant, &saga, &corr)
        .unwrap()
        .map(|r| r.state["fired"].as_str().unwrap_or_default().to_string())
}

fn pending(rig: &Rig, tenant: &str, order: &str) -> Vec<String> {
    let (tenant, saga, corr): (TenantId, SagaName, CorrelationId) = (
        tenant.parse().unwrap(),
        "timed".parse().unwrap(),
        order.parse().unwrap(),
    );
    rig.store
        .instance_schedules(&tenant, &saga, &corr)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect()
}

fn reminders(rig: &Rig, nc: &nats::Connection, max: usize) -> Vec<nats::Message> {
    rig.reminder_messages(nc, max)
}

#[test]
fn a_due_timer_fires_once_through_the_saga_and_a_future_one_waits_per_tenant() {
    let rig = Rig::new(timed_saga());
    let pipeline = rig.start();
    let nc = rig.connect();
    place(&rig, &nc, "acme", "o-1");
    place(&rig, &nc, "globex", "o-1");
    await_stats(&pipeline, |s| s.timers_fired == 2);
    assert!(wait_until(common::WAIT, || fired(&rig, "acme", "o-1")
        .as_deref()
        == Some("soon,")
        && fired(&rig, "globex", "o-1").as_deref() == Some("soon,")));
    // Each tenant keeps its own far timer; nothing crossed tenants.
    assert_eq!(pending(&rig, "acme", "o-1"), vec!["far".to_string()]);
    assert_eq!(pending(&rig, "globex", "o-1"), vec!["far".to_string()]);
    let sent = reminders(&rig, &nc, 10);
    assert_eq!(sent.len(), 2);
    let acme = sent
        .iter()
        .find(|m| runner::nats_io::header(m, "x-tenant-id") == Some("acme"))
        .expect("acme's reminder");
    assert_eq!(
        acme.subject,
        format!("{}.acme.timed", rig.settings.streams.timer_prefix)
    );
    let body: Value = serde_json::from_slice(&acme.data).unwrap();
    assert_eq!(
        runner::nats_io::header(acme, "Nats-Msg-Id"),
        body["event_id"].as_str()
    );
    assert_eq!(
        (body["name"].as_str(), body["correlation_id"].as_str()),
        (Some("soon"), Some("o-1"))
    );
    assert_eq!(body["payload"]["why"], "test");
    assert_eq!(body["due_at"], "2026-11-27T10:00:01Z");
    assert!(
        runner::nats_io::header(acme, "traceparent").is_some(),
        "the trace continues"
    );
    // A second later nothing more fired: the far timers wait.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pipeline.stats().timers_fired, 2);
}

/// Kill the runner after reminders were published but before their timers were deleted:
/// after the restart the reminders go out again, and each saga applies its reminder once.
#[test]
fn a_crash_between_publish_and_delete_still_applies_each_reminder_once() {
    let rig = Rig::new(timed_saga());
    let config = config_file(&rig);
    let nc = rig.connect();
    let orders: Vec<String> = (0..10).map(|i| format!("o-{i}")).collect();
    for order in &orders {
        place(&rig, &nc, "acme", order);
    }
    let _recovered = RunnerProcess::crash_then_restart(&config, runner::crash::AFTER_REMINDER, 1);
    assert!(
        wait_until(Duration::from_secs(30), || orders.iter().all(|o| fired(
            &rig, "acme", o
        )
        .as_deref()
            == Some("soon,"))),
        "every instance got its reminder: {:?}",
        orders
            .iter()
            .map(|o| fired(&rig, "acme", o))
            .collect::<Vec<_>>()
    );
    // Give a duplicate time to show up, then check again.
    std::thread::sleep(Duration::from_millis(1_500));
    for o in &orders {
        assert_eq!(
            fired(&rig, "acme", o).as_deref(),
            Some("soon,"),
            "{o}: once"
        );
        assert_eq!(pending(&rig, "acme", o), vec!["far".to_string()]);
    }
    assert_eq!(
        reminders(&rig, &nc, 40).len(),
        orders.len(),
        "re-published reminders were deduplicated"
    );
}
