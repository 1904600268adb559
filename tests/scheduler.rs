//! The scheduler against a real nats-server and a real LMDB store: timers fire through
//! the saga's own triggers, once.

mod common;

use std::time::Duration;

use common::{await_stats, config_file, event, wait_until, Rig, RunnerProcess};
use runner::types::{CorrelationId, SagaName, TenantId};
use serde_json::{json, Value};

/// On an order: timers "soon" (due a second after the event, long past) and "far" (ten
/// years on: the events are dated 2026-11-27, so a shorter "far" would one day be past
/// too). On a reminder: appends its name to `state.fired`.
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
                {"name": "far", "after_ms": 315_360_000_000_i64}
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

/// On `OrderPlaced`: timer "t" a second after the event (long past: due at once). On
/// `TimerCancelled`: cancels it; on `TimerMoved`: sets "t" again, five seconds after the
/// event; on `OrderClosed`: completes. On a reminder: appends `name@due_at,` to
/// `state.fired`, so the state shows exactly which timers a program ran on.
fn racing_saga() -> Value {
    let is = |t: &str| json!({"$eq": [{"$get": "event.event_type"}, t]});
    json!([{
        "name": "timed",
        "triggers": [
            {"subject": "{ns}.aggregate.*.order.*", "start": true, "correlate": {"$get": "event.aggregate_id"}},
            {"subject": "{ns}.workflow.timer.*.timed", "correlate": {"$get": "event.correlation_id"}}
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
    }])
}

/// The scheduler reads the due timer "t" of order o-1 and is held (pause point) before
/// it publishes its reminder; meanwhile `race` (an event type of [`racing_saga`])
/// commits. Returns the rig, the runner, its ops URL and the file that lets the
/// scheduler go on.
fn scheduler_held_while(race: &str) -> (Rig, RunnerProcess, String, std::path::PathBuf) {
    let mut rig = Rig::new(racing_saga());
    let ops = common::ops::admin_port(&mut rig);
    rig.settings.scheduler.idle_poll_ms = 50;
    let config = config_file(&rig);
    let go = rig.dir.path().join("go");
    let paused = rig.dir.path().join("go.paused");
    let runner = RunnerProcess::start_with_env(
        &config,
        None,
        &[
            (
                "RUNNER_PAUSE_AT",
                runner::crash::BEFORE_REMINDER.to_string(),
            ),
            ("RUNNER_PAUSE_UNTIL", go.display().to_string()),
            ("RUNNER_LOG", "info".to_string()),
            ("RUNNER_LOG_FORMAT", "json".to_string()),
        ],
        &rig.dir.path().join("runner.log"),
    );
    let nc = rig.connect();
    let send = |event_type: &str| {
        let subject = rig.aggregate_subject("acme", event_type);
        let body = event(
            &format!("e-{event_type}"),
            "acme",
            "o-1",
            event_type,
            json!({}),
        );
        rig.publish(&nc, &subject, &body);
    };
    send("OrderPlaced");
    assert!(
        wait_until(Duration::from_secs(30), || paused.exists()),
        "the scheduler read the due timer and holds its reminder; the runner's log: {}",
        std::fs::read_to_string(rig.dir.path().join("runner.log")).unwrap_or_default()
    );
    send(race);
    assert!(
        wait_until(common::WAIT, || transitions(&rig, "o-1") == Some(2)),
        "{race} committed while the reminder was held"
    );
    (rig, runner, ops, go)
}

fn transitions(rig: &Rig, order: &str) -> Option<u64> {
    let (tenant, saga, corr): (TenantId, SagaName, CorrelationId) = (
        "acme".parse().unwrap(),
        "timed".parse().unwrap(),
        order.parse().unwrap(),
    );
    rig.store
        .saga(&tenant, &saga, &corr)
        .unwrap()
        .map(|r| r.transitions)
}

fn stale_reminders(ops: &str) -> Option<f64> {
    let (status, body) = common::ops::call("GET", &format!("{ops}/metrics"), None);
    assert_eq!(status, 200);
    common::ops::metric(&body, "runner_timers_stale_total")
}

/// Lets the held reminder go and waits until it was dealt with: counted stale, or run
/// by the program (a third transition).
fn release_and_settle(rig: &Rig, ops: &str, go: &std::path::Path) {
    std::fs::write(go, "").unwrap();
    wait_until(common::WAIT, || {
        stale_reminders(ops) == Some(1.0) || transitions(rig, "o-1") != Some(2)
    });
    // Give a late second delivery the time to show.
    std::thread::sleep(Duration::from_millis(1_000));
}

#[test]
fn a_reminder_of_a_timer_cancelled_after_the_scheduler_read_it_does_not_run() {
    let (rig, _runner, ops, go) = scheduler_held_while("TimerCancelled");
    assert!(pending(&rig, "acme", "o-1").is_empty(), "cancelled");
    release_and_settle(&rig, &ops, &go);
    assert_eq!(
        fired(&rig, "acme", "o-1").as_deref(),
        Some(""),
        "the program ran on a cancelled timer"
    );
    assert_eq!(transitions(&rig, "o-1"), Some(2));
    assert_eq!(stale_reminders(&ops), Some(1.0), "counted as stale");
    let nc = rig.connect();
    assert_eq!(reminders(&rig, &nc, 10).len(), 1, "it was published");
    assert!(pending(&rig, "acme", "o-1").is_empty());
    // The log says so, naming the tenant, the correlation and the trace.
    let log = std::fs::read_to_string(rig.dir.path().join("runner.log")).unwrap();
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["msg"].as_str().is_some_and(|m| m.contains("stale")))
        .unwrap_or_else(|| panic!("no line about the stale reminder in {log}"));
    assert_eq!(
        (
            &line["tenant_id"],
            &line["correlation_id"],
            &line["trace_id"]
        ),
        (
            &json!("acme"),
            &json!("o-1"),
            &json!("0af7651916cd43dd8448eb211c80319c")
        ),
        "{line}"
    );
}

#[test]
fn a_reminder_of_a_timer_set_again_after_the_scheduler_read_it_does_not_run_only_the_new_one_does()
{
    let (rig, _runner, ops, go) = scheduler_held_while("TimerMoved");
    release_and_settle(&rig, &ops, &go);
    assert!(
        wait_until(common::WAIT, || fired(&rig, "acme", "o-1").as_deref()
            != Some("")),
        "the timer set again fires"
    );
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(
        fired(&rig, "acme", "o-1").as_deref(),
        Some("t@2026-11-27T10:00:05Z,"),
        "only the timer as set again ran, once"
    );
    assert_eq!(
        stale_reminders(&ops),
        Some(1.0),
        "the first one counted as stale"
    );
    assert!(
        pending(&rig, "acme", "o-1").is_empty(),
        "the fired timer is consumed"
    );
    let nc = rig.connect();
    assert_eq!(reminders(&rig, &nc, 10).len(), 2);
}

#[test]
fn a_reminder_for_an_instance_finished_after_the_scheduler_read_it_does_not_run() {
    let (rig, _runner, ops, go) = scheduler_held_while("OrderClosed");
    assert!(
        pending(&rig, "acme", "o-1").is_empty(),
        "a finished instance keeps no timers"
    );
    release_and_settle(&rig, &ops, &go);
    assert_eq!(fired(&rig, "acme", "o-1").as_deref(), Some(""));
    assert_eq!(transitions(&rig, "o-1"), Some(2));
    assert_eq!(stale_reminders(&ops), Some(1.0), "counted as stale");
}
