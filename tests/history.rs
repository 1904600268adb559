//! Instance history against the real binary and a real `nats-server`: every transition
//! leaves an entry (`GET /admin/instances/{tenant}/{saga}/{corr}/history`), the first K
//! and last N are kept with the dropped ones counted, a tenant sees only its own
//! instances' history, and a finished instance's history expires with it.

mod common;

use std::time::Duration;

use common::ops::{admin_port, TOKEN};
use common::{config_file, event, wait_until, Rig, RunnerProcess};
use runner::settings::Mode;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Counts events; `OrderPlaced` asks for an effect and sets a timer, `OrderDone`
/// cancels it and completes the instance.
fn steps_saga() -> Value {
    let is = |t: &str| json!({"$eq": [{"$get": "event.event_type"}, t]});
    json!([{
        "name": "steps",
        "triggers": [{"subject": "{ns}.aggregate.*.order.*", "start": true,
                      "correlate": {"$get": "event.aggregate_id"}}],
        "on_event": {"output": {
            "state": {"seen": {"$add": [{"$coalesce": [{"$get": "state.seen"}, 0]}, 1]}},
            "status": {"$if": [is("OrderDone"), "completed", "active"]},
            "commands": [{"$if": [is("OrderPlaced"),
                {"to": "effect", "effect": "note", "payload": {}}, null]}],
            // Ten years past the event time (events are dated 2026-11-27): never due
            // while the test runs.
            "schedules": [{"$if": [is("OrderPlaced"),
                {"name": "remind", "after_ms": 315_360_000_000_i64, "payload": {}}, null]}],
            "cancel": {"$if": [is("OrderDone"), ["remind"], []]}
        }}
    }])
}

/// (status, body) of a GET, with the admin token if given; status 0 while the port does
/// not answer (starting up).
fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = ureq::get(url).timeout(Duration::from_secs(5));
    if let Some(t) = token {
        request = request.set("Authorization", &format!("Bearer {t}"));
    }
    match request.call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// The history of `order` of the `steps` saga, as the admin API answers it.
fn history(ops: &str, tenant: &str, order: &str) -> (u16, Value) {
    let url = format!("{ops}/admin/instances/{tenant}/steps/{order}/history");
    let (status, body) = get(&url, Some(TOKEN));
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn numbers(view: &Value) -> Vec<u64> {
    view["entries"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["n"].as_u64()).collect())
        .unwrap_or_default()
}

#[test]
fn history_is_served_bounded_per_tenant_and_expires_with_its_instance() {
    let mut rig = Rig::new(steps_saga());
    let s = &mut rig.settings;
    s.mode = Mode::Saga;
    s.retention.history_first = 2;
    s.retention.history_last = 3;
    // Finished instances go after 3 s; markers are kept the least validation allows.
    s.streams.duplicate_window_secs = 1;
    s.consumer.max_deliver = 5;
    s.retention.finished_instances_secs = 3;
    s.retention.dedupe_secs = 6;
    let ops = admin_port(&mut rig);
    let config = config_file(&rig);
    let _runner = RunnerProcess::start(&config, None);
    let nc = rig.connect();
    let started_ms = runner::timefmt::now_ms();

    // Nine transitions of acme's o-1: entries 1, 2 and 7..9 are kept, 4 dropped.
    let placed = rig.aggregate_subject("acme", "OrderPlaced");
    rig.publish(
        &nc,
        &placed,
        &event("e-1", "acme", "o-1", "OrderPlaced", json!({})),
    );
    let step = rig.aggregate_subject("acme", "OrderStep");
    for i in 2..=9 {
        let id = format!("e-{i}");
        rig.publish(
            &nc,
            &step,
            &event(&id, "acme", "o-1", "OrderStep", json!({})),
        );
    }
    assert!(
        wait_until(WAIT, || numbers(&history(&ops, "acme", "o-1").1)
            .last()
            .copied()
            == Some(9)),
        "nine transitions: {:?}",
        history(&ops, "acme", "o-1")
    );
    let (status, view) = history(&ops, "acme", "o-1");
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (&view["tenant"], &view["saga"], &view["correlation"]),
        (&json!("acme"), &json!("steps"), &json!("o-1"))
    );
    assert_eq!(numbers(&view), [1, 2, 7, 8, 9]);
    assert_eq!(view["dropped"], 4);
    let first = &view["entries"][0];
    assert_eq!(
        first["event"],
        json!({"id": "e-1", "subject": placed, "stream": rig.settings.streams.aggregate_events,
               "seq": 1, "type": "OrderPlaced"})
    );
    assert_eq!(
        (&first["status_before"], &first["status_after"]),
        (&Value::Null, &json!("active"))
    );
    assert_eq!(first["commands"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (&first["timers"], &first["cancelled"], &first["fault"]),
        (&json!(["remind"]), &json!([]), &Value::Null)
    );
    assert!(first["gas"].as_u64().is_some_and(|g| g > 0), "{first}");
    let at = runner::timefmt::parse_rfc3339_ms(first["at"].as_str().unwrap()).unwrap();
    assert!(
        at >= started_ms - 1_000 && at <= runner::timefmt::now_ms(),
        "{first}"
    );
    let later = &view["entries"][2];
    assert_eq!(
        (&later["event"]["id"], &later["event"]["type"]),
        (&json!("e-7"), &json!("OrderStep"))
    );
    assert_eq!(
        (
            &later["status_before"],
            &later["commands"],
            &later["timers"]
        ),
        (&json!("active"), &json!([]), &json!([]))
    );

    // Another tenant's instance of the same name is its own; neither sees the other's.
    rig.publish(
        &nc,
        &rig.aggregate_subject("globex", "OrderPlaced"),
        &event("g-1", "globex", "o-g", "OrderPlaced", json!({})),
    );
    assert!(wait_until(WAIT, || history(&ops, "globex", "o-g").0 == 200));
    assert_eq!(numbers(&history(&ops, "globex", "o-g").1), [1]);
    assert_eq!(history(&ops, "acme", "o-g").0, 404, "not acme's");
    assert_eq!(history(&ops, "globex", "o-1").0, 404, "not globex's");
    let (status, body) = get(
        &format!("{ops}/admin/instances/acme/steps/o-1/history"),
        None,
    );
    assert_eq!(status, 401, "the token is required: {body}");

    // The tenth transition finishes it: entries 8..10 are the last three now.
    rig.publish(
        &nc,
        &rig.aggregate_subject("acme", "OrderDone"),
        &event("e-10", "acme", "o-1", "OrderDone", json!({})),
    );
    let mut done_view = Value::Null;
    assert!(
        wait_until(WAIT, || {
            done_view = history(&ops, "acme", "o-1").1;
            numbers(&done_view).last() == Some(&10)
        }),
        "the finishing transition is in the history: {done_view}"
    );
    assert_eq!(numbers(&done_view), [1, 2, 8, 9, 10]);
    assert_eq!(done_view["dropped"], 5);
    let done = &done_view["entries"][4];
    assert_eq!(
        (
            &done["status_before"],
            &done["status_after"],
            &done["cancelled"]
        ),
        (&json!("active"), &json!("completed"), &json!(["remind"]))
    );

    // Expired with its instance: gone from the API and from the store.
    assert!(
        wait_until(WAIT, || history(&ops, "acme", "o-1").0 == 404),
        "the finished instance expired"
    );
    let usage = rig.store.usage(100_000).unwrap();
    assert!(
        !usage
            .tenants
            .get("acme")
            .is_some_and(|t| t.contains_key("history")),
        "no history of acme is left: {:?}",
        usage.tenants.get("acme")
    );
    assert_eq!(
        usage.tenants["globex"]["history"].keys, 1,
        "globex's active instance keeps its entry"
    );
}
