//! Retention against the real binary and a real `nats-server`: a finished instance stays
//! queryable for its retention and is then gone from the admin API and the store; its
//! events stay duplicates while their markers live, and after that horizon the
//! documented behaviour holds (a start event that comes again starts a new instance). A
//! store written before retention existed is adopted and swept.

mod common;

use std::time::Duration;

use common::ops::{admin_port, call, metric, TOKEN};
use common::{config_file, event, wait_until, Rig, RunnerProcess};
use runner::settings::Mode;
use runner::store::Store;
use runner::types::TenantId;
use serde_json::{json, Value};

/// Completes on its start event; `OrderShipped` only reaches an existing instance.
fn one_step_saga() -> Value {
    json!([{
        "name": "quick",
        "triggers": [
            {"subject": "{ns}.aggregate.*.order.OrderPlaced", "start": true,
             "correlate": {"$get": "event.aggregate_id"}},
            {"subject": "{ns}.aggregate.*.order.OrderShipped",
             "correlate": {"$get": "event.aggregate_id"}}
        ],
        "on_event": {"output": {
            "state": {"seen": {"$add": [{"$coalesce": [{"$get": "state.seen"}, 0]}, 1]}},
            "status": "completed"
        }}
    }])
}

/// Retention short enough for a test: instances kept 1 s, markers 6 s (the least the
/// validation allows here: five deliveries of a 1 s ack wait, and a 1 s window).
fn short_retention(rig: &mut Rig) {
    let s = &mut rig.settings;
    s.mode = Mode::Saga;
    s.streams.duplicate_window_secs = 1;
    s.consumer.max_deliver = 5;
    s.retention.finished_instances_secs = 1;
    s.retention.dedupe_secs = 6;
}

/// (status, body) of a GET; status 0 while the port does not answer (starting up).
fn get(url: &str) -> (u16, String) {
    let answer = ureq::get(url)
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .timeout(Duration::from_secs(5))
        .call();
    match answer {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

fn instance(ops: &str, order: &str) -> (u16, Value) {
    let (status, body) = get(&format!("{ops}/admin/instances/acme/quick/{order}"));
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn counter(ops: &str, name: &str) -> f64 {
    let (_, body) = get(&format!("{ops}/metrics"));
    metric(&body, name).unwrap_or(0.0)
}

#[test]
fn a_finished_instance_expires_and_its_events_stay_duplicates_until_their_markers_do() {
    let mut rig = Rig::new(one_step_saga());
    short_retention(&mut rig);
    let ops = admin_port(&mut rig);
    let config = config_file(&rig);
    let _runner = RunnerProcess::start(&config, None);
    let nc = rig.connect();
    let placed = event("e-1", "acme", "o-1", "OrderPlaced", json!({}));
    let placed_subject = rig.aggregate_subject("acme", "OrderPlaced");
    rig.publish(&nc, &placed_subject, &placed);
    assert!(
        wait_until(Duration::from_secs(20), || instance(&ops, "o-1").0 == 200),
        "the instance is there"
    );
    let (_, view) = instance(&ops, "o-1");
    assert_eq!(
        (&view["status"], &view["state"]["seen"]),
        (&json!("completed"), &json!(1))
    );

    // Gone from the API, the instance list and the store once its second passed (the
    // sweep starts two ack waits after start-up).
    assert!(
        wait_until(Duration::from_secs(20), || instance(&ops, "o-1").0 == 404),
        "the finished instance expired"
    );
    let (status, list) = call(
        "GET",
        &format!("{ops}/admin/instances?tenant=acme&saga=quick"),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        serde_json::from_str::<Value>(&list).unwrap()["instances"],
        json!([])
    );
    let acme: TenantId = "acme".parse().unwrap();
    let saga = "quick".parse().unwrap();
    assert_eq!(
        rig.store
            .saga(&acme, &saga, &"o-1".parse().unwrap())
            .unwrap(),
        None
    );
    assert!(counter(&ops, "runner_retention_expired_total{kind=\"instance\"}") >= 1.0);

    // Its start event comes again (a re-publish, its own stream message): the marker
    // still says it was applied, so nothing starts.
    let duplicates = counter(&ops, "runner_duplicates_total");
    rig.publish(&nc, &placed_subject, &placed);
    assert!(wait_until(Duration::from_secs(10), || counter(
        &ops,
        "runner_duplicates_total"
    ) > duplicates));
    assert_eq!(instance(&ops, "o-1").0, 404);

    // A later event of the expired instance reaches no instance: ignored.
    let shipped = event("e-2", "acme", "o-1", "OrderShipped", json!({}));
    let ignored = counter(&ops, "runner_ignored_total");
    rig.publish(
        &nc,
        &rig.aggregate_subject("acme", "OrderShipped"),
        &shipped,
    );
    assert!(wait_until(Duration::from_secs(10), || counter(
        &ops,
        "runner_ignored_total"
    ) > ignored));
    assert_eq!(instance(&ops, "o-1").0, 404);

    // Past the dedupe horizon the marker is gone too, and the documented behaviour
    // holds: the start event, come again, is applied as new and starts a new instance.
    let event_id = "e-1".parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || !rig
            .store
            .is_duplicate(&acme, &saga, &event_id)
            .unwrap()),
        "the marker expired"
    );
    rig.publish(&nc, &placed_subject, &placed);
    assert!(
        wait_until(Duration::from_secs(10), || instance(&ops, "o-1").0 == 200),
        "a start event past the horizon starts a new instance"
    );
    assert_eq!(instance(&ops, "o-1").1["state"]["seen"], json!(1));
}

/// Records as the binary before retention wrote them: long field names, no retention
/// index entries, no `meta:retention_index`.
fn write_older_store(path: &std::path::Path) {
    use lmdb::{Transaction, WriteFlags};
    std::fs::create_dir_all(path).unwrap();
    let env = lmdb::Environment::new()
        .set_flags(lmdb::EnvironmentFlags::NO_TLS)
        .set_map_size(64 << 20)
        .open(path)
        .unwrap();
    let db = env.open_db(None).unwrap();
    let mut txn = env.begin_rw_txn().unwrap();
    let records = [
        (
            "saga:acme:quick:o-old",
            json!({"status": "completed", "state": {"seen": 1}, "version": 1, "transitions": 1,
                   "last_event_id": "e-old", "updated_at": "2026-11-01T10:00:00Z"})
            .to_string(),
        ),
        (
            "status:acme:quick:completed:0000000001:o-old",
            String::new(),
        ),
        (
            "dedupe:acme:quick:e-old",
            json!({"stream": "AGGREGATE_EVENTS", "seq": 1}).to_string(),
        ),
        ("meta:status_index", "1".to_string()),
    ];
    for (key, value) in records {
        txn.put(db, &key, &value, WriteFlags::empty()).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn a_store_written_before_retention_is_adopted_and_swept() {
    let mut rig = Rig::new(one_step_saga());
    short_retention(&mut rig);
    let older = rig.dir.path().join("older-store");
    write_older_store(&older);
    rig.settings.storage.path = older.clone();
    let ops = admin_port(&mut rig);
    let config = config_file(&rig);
    let runner = RunnerProcess::start(&config, None);
    // Read back as it was written, then swept by its retention from start-up.
    assert!(
        wait_until(Duration::from_secs(20), || instance(&ops, "o-old").0 == 200),
        "the older instance is read"
    );
    assert_eq!(instance(&ops, "o-old").1["status"], json!("completed"));
    assert!(
        wait_until(Duration::from_secs(20), || counter(
            &ops,
            "runner_retention_expired_total{kind=\"marker\"}"
        ) >= 1.0),
        "its marker expired"
    );
    assert_eq!(instance(&ops, "o-old").0, 404);
    drop(runner);
    let store = Store::open(&older, 64 << 20).unwrap();
    let acme: TenantId = "acme".parse().unwrap();
    let saga = "quick".parse().unwrap();
    assert!(store.instances(&acme, &saga, 10).unwrap().is_empty());
    assert!(!store
        .is_duplicate(&acme, &saga, &"e-old".parse().unwrap())
        .unwrap());
}
