//! The admin API's controls against a real pipeline (real nats-server, real LMDB):
//! manifest reload, retry and discard of quarantine records and dead letters, and a
//! replay on the real binary (drain → replay → resume).

mod common;

use std::time::Duration;

use common::ops::{admin_port, call, call_json, metric, ops_for, TOKEN};
use common::{await_stats, config_file, recorder_saga, wait_until, Rig, RunnerProcess, WAIT};
use runner::keys::OutboxKind;
use runner::store::DeadLetterRecord;
use runner::types::TenantId;
use serde_json::{json, Value};

/// Replaces the rig's saga manifest on disk (`{ns}` as in [`Rig::new`]).
fn write_manifest(rig: &Rig, text: &str) {
    std::fs::write(rig.manifest_path(), text.replace("{ns}", &rig.ns)).unwrap();
}

fn manifest_of(sagas: Value) -> String {
    json!({ "sagas": sagas }).to_string()
}

/// The recorder, but its correlate expression adds 1 to a string: a program fault.
fn faulty_recorder() -> Value {
    let mut sagas = recorder_saga();
    sagas[0]["triggers"][0]["correlate"] = json!({"$add": [{"$get": "event.aggregate_id"}, 1]});
    sagas
}

/// Starts `runner run`, waits for its ops port, then until the first `events` aggregate
/// events are applied and acked.
fn start_and_apply(rig: &Rig, config: &std::path::Path, base: &str, events: u64) -> RunnerProcess {
    let runner = RunnerProcess::start(config, None);
    let ready = format!("{base}/ready");
    assert!(wait_until(WAIT, || ureq::get(&ready).call().is_ok()));
    let nc = rig.connect();
    assert!(wait_until(WAIT, || rig
        .consumer_info(&nc, "aggregate")
        .ack_floor
        .stream_seq
        == events));
    runner
}

fn instance_log(base: &str, order: &str) -> Value {
    let url = format!("{base}/admin/instances/acme/recorder/{order}");
    let (status, body) = call("GET", &url, Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["state"]["log"].clone()
}

#[test]
fn reload_puts_valid_manifests_in_force_and_refuses_broken_ones() {
    let rig = Rig::new(recorder_saga());
    let pipeline = rig.start();
    let ops = ops_for(&rig, &pipeline, Some(TOKEN));
    let base = format!("http://{}", ops.addr());
    let reload = format!("{base}/admin/reload");
    let nc = rig.connect();
    rig.send(&nc, "e-1", "o-1", 1);
    await_stats(&pipeline, |s| s.acked == 1);

    assert_eq!(call("POST", &reload, None).0, 401, "reload needs the token");
    let mut broken = recorder_saga();
    broken[0]["on_event"] = json!({"output": {"state": {"$nope": 1}}});
    write_manifest(&rig, &manifest_of(broken));
    let (status, body) = call("POST", &reload, Some(TOKEN));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("$nope"),
        "the reason names the problem: {body}"
    );
    rig.send(&nc, "e-2", "o-1", 2);
    await_stats(&pipeline, |s| s.acked == 2);
    assert_eq!(
        instance_log(&base, "o-1"),
        "1,2,",
        "the old program still runs"
    );

    // Version 2 alone would drop version 1, which o-1 still runs on: refused.
    let mut v2 = recorder_saga();
    v2[0]["version"] = json!(2);
    v2[0]["on_event"]["output"]["state"]["log"]["$concat"][2] = json!(";");
    write_manifest(&rig, &manifest_of(v2.clone()));
    let (status, body) = call("POST", &reload, Some(TOKEN));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("version 1"), "{body}");

    // With version 1 kept: o-1 stays on it, a new instance starts on version 2.
    v2[0]["previous"] = json!([{"version": 1, "on_event": recorder_saga()[0]["on_event"]}]);
    write_manifest(&rig, &manifest_of(v2));
    let (status, body) = call("POST", &reload, Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    rig.send(&nc, "e-3", "o-1", 3);
    rig.send(&nc, "e-4", "o-2", 4);
    await_stats(&pipeline, |s| s.acked == 4);
    assert_eq!(instance_log(&base, "o-1"), "1,2,3,", "o-1 keeps version 1");
    assert_eq!(
        instance_log(&base, "o-2"),
        "4;",
        "a new instance runs version 2"
    );
    let (_, info) = call("GET", &format!("{base}/info"), None);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["sagas"][0]["version"], 2, "{info}");
    assert_eq!(info["sagas"][0]["versions"], json!([2, 1]), "{info}");
    let counts = info["instances"]["counts"].as_array().unwrap();
    for version in [1, 2] {
        assert!(
            counts.contains(
                &json!({"saga": "recorder", "version": version, "status": "active", "instances": 1})
            ),
            "{info}"
        );
    }
    // Migration needs a drained process (no transition of the instance in flight).
    let migrate = format!("{base}/admin/instances/migrate");
    let body = json!({"tenant": "acme", "saga": "recorder", "correlations": ["o-1"]});
    let (status, answer) = call_json("POST", &migrate, Some(TOKEN), &body);
    assert_eq!(status, 409, "{answer}");
}

#[test]
fn a_quarantined_event_retried_after_a_fix_applies_once() {
    let rig = Rig::new(faulty_recorder());
    let pipeline = rig.start();
    let ops = ops_for(&rig, &pipeline, Some(TOKEN));
    let base = format!("http://{}", ops.addr());
    let nc = rig.connect();
    rig.send(&nc, "e-1", "o-1", 1);
    // On the single tenant's subject: its record is filed under `_`, not acme.
    rig.publish_raw(
        &nc,
        &rig.aggregate_subject("_", "OrderPlaced"),
        b"{ not json",
    );
    await_stats(&pipeline, |s| s.quarantined == 2);

    let list = |query: &str| {
        let (status, body) = call(
            "GET",
            &format!("{base}/admin/quarantine?{query}"),
            Some(TOKEN),
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["records"]
            .as_array()
            .cloned()
            .unwrap()
    };
    let program = list("tenant=acme&kind=program&saga=recorder");
    assert_eq!(program.len(), 1, "{program:?}");
    assert_eq!(list("tenant=acme&kind=decode").len(), 0);
    assert_eq!(list("tenant=acme&reason=nothing-like-this").len(), 0);
    let key = program[0]["key"].as_str().unwrap().to_string();

    let retry = format!("{base}/admin/quarantine/retry");
    let (status, body) = call_json("POST", &retry, Some(TOKEN), &json!({}));
    assert_eq!(status, 400, "a retry names its tenant: {body}");
    let (status, body) = call_json(
        "POST",
        &retry,
        Some(TOKEN),
        &json!({"tenant": "acme", "keys": [key]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"][0]["outcome"], "quarantined",
        "still faulty: {body}"
    );
    assert_eq!(list("tenant=acme&kind=program").len(), 1, "record kept");

    write_manifest(&rig, &manifest_of(recorder_saga()));
    assert_eq!(
        call("POST", &format!("{base}/admin/reload"), Some(TOKEN)).0,
        200
    );
    let (status, body) = call_json(
        "POST",
        &retry,
        Some(TOKEN),
        &json!({"tenant": "acme", "saga": "recorder"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["outcome"], "applied", "{body}");
    assert_eq!(body["results"][0]["transitions"], 1, "{body}");
    assert_eq!(instance_log(&base, "o-1"), "1,");
    assert_eq!(
        list("tenant=acme").len(),
        0,
        "the record went with the commit"
    );
    let (_, body) = call_json(
        "POST",
        &retry,
        Some(TOKEN),
        &json!({"tenant": "acme", "keys": [key]}),
    );
    assert_eq!(body["results"].as_array().map(Vec::len), Some(0), "{body}");
    // The transition happened once: one command left through the relay.
    assert!(wait_until(WAIT, || rig.published_commands(&nc, 10).len() == 1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rig.published_commands(&nc, 10).len(), 1);

    // The undecodable message, filed under the single tenant, is discarded.
    let (status, body) = call_json(
        "POST",
        &format!("{base}/admin/quarantine/discard"),
        Some(TOKEN),
        &json!({"tenant": "", "kind": "decode"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["discarded"], 1, "{body}");
    assert_eq!(list("tenant=").len(), 0);
    let (_, metrics) = call("GET", &format!("{base}/metrics"), None);
    assert_eq!(
        metric(&metrics, "runner_quarantine_retried_total"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "runner_quarantine_discarded_total"),
        Some(1.0)
    );
}

#[test]
fn dead_letters_are_redriven_or_discarded() {
    let rig = Rig::new(recorder_saga());
    let ids = runner::dev::seed_outbox(
        &rig.store,
        &rig.settings.streams.command_prefix,
        "acme",
        OutboxKind::Effect,
        2,
    )
    .unwrap();
    // Dead-letter both before any relay runs, as a relay that gave up would have.
    let tenant: TenantId = "acme".parse().unwrap();
    for (key, item) in rig.store.outbox(&tenant, 10).unwrap() {
        let record = DeadLetterRecord {
            item,
            reason: "attempts spent".into(),
            status: None,
            attempts: 8,
            dead_at: "2026-11-27T10:00:00Z".into(),
        };
        rig.store.dead_letter(&key, &record).unwrap();
    }
    let pipeline = rig.start();
    let ops = ops_for(&rig, &pipeline, Some(TOKEN));
    let base = format!("http://{}", ops.addr());
    let nc = rig.connect();
    let (status, body) = call(
        "GET",
        &format!("{base}/admin/deadletters?tenant=acme&kind=effect"),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed["records"].as_array().map(Vec::len), Some(2));

    let (status, body) = call_json(
        "POST",
        &format!("{base}/admin/deadletters/retry"),
        Some(TOKEN),
        &json!({"tenant": "acme", "limit": 1}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redriven"], 1, "{body}");
    assert_eq!(body["command_ids"][0], ids[0].as_str());
    assert!(
        wait_until(WAIT, || rig.published_commands(&nc, 10).len() == 1),
        "the redriven command is dispatched"
    );
    await_stats(&pipeline, |s| s.relayed == 1);

    let (status, body) = call_json(
        "POST",
        &format!("{base}/admin/deadletters/discard"),
        Some(TOKEN),
        &json!({"tenant": "acme", "reason": "attempts"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["discarded"], 1, "{body}");
    let (_, body) = call(
        "GET",
        &format!("{base}/admin/deadletters?tenant=acme"),
        Some(TOKEN),
    );
    let listed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed["records"].as_array().map(Vec::len), Some(0));
    assert_eq!(rig.published_commands(&nc, 10).len(), 1);
}

/// Replay on the real binary: refused without confirmation and while running; after a
/// drain it moves the checkpoint and the consumer back, and on resume every event is
/// delivered again and recognised as applied — no state changes twice, no command is
/// issued twice.
#[test]
fn replay_needs_confirmation_and_a_drain_and_changes_nothing_twice() {
    let mut rig = Rig::new(recorder_saga());
    let base = admin_port(&mut rig);
    let config = config_file(&rig);
    let nc = rig.connect();
    for i in 0..20 {
        rig.send(&nc, &format!("e-{i}"), &format!("o-{}", i % 4), i);
    }
    let _runner = start_and_apply(&rig, &config, &base, 20);
    let ready = || call("GET", &format!("{base}/ready"), None);
    let logs_before: Vec<Value> = (0..4)
        .map(|o| instance_log(&base, &format!("o-{o}")))
        .collect();
    assert_eq!(logs_before[1], "1,5,9,13,17,");

    let replay = format!("{base}/admin/replay");
    let request = json!({"tenant": "acme", "saga": "recorder", "from_seq": 1});
    let (status, body) = call_json("POST", &replay, Some(TOKEN), &request);
    assert_eq!(status, 400, "no confirmation: {body}");
    let mut confirmed = request.clone();
    confirmed["confirm"] = json!("recorder");
    let (status, body) = call_json("POST", &replay, Some(TOKEN), &confirmed);
    assert_eq!(status, 409, "not drained: {body}");
    let resume = format!("{base}/admin/resume");
    assert_eq!(
        call("POST", &resume, Some(TOKEN)).0,
        409,
        "nothing to resume"
    );

    assert_eq!(
        call("POST", &format!("{base}/admin/drain"), Some(TOKEN)).0,
        202
    );
    assert!(
        wait_until(WAIT, || {
            let (status, body) = ready();
            status == 503 && serde_json::from_str::<Value>(&body).unwrap()["drained"] == true
        }),
        "drained, and the process stays up"
    );
    let (status, body) = call_json("POST", &replay, Some(TOKEN), &confirmed);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["previous_checkpoint"], 20, "{body}");
    let checkpoint = rig
        .store
        .checkpoint(&"acme".parse().unwrap(), &"recorder".parse().unwrap())
        .unwrap();
    assert_eq!(
        checkpoint
            .streams
            .get(&rig.settings.streams.aggregate_events),
        Some(&0)
    );

    assert_eq!(call("POST", &resume, Some(TOKEN)).0, 202);
    assert!(wait_until(WAIT, || ready().0 == 200), "ready again");
    let duplicates = || {
        let (_, m) = call("GET", &format!("{base}/metrics"), None);
        metric(&m, "runner_duplicates_total").unwrap_or(0.0)
    };
    assert!(
        wait_until(WAIT, || duplicates() >= 20.0),
        "every event came again and was recognised: {}",
        duplicates()
    );
    assert!(wait_until(WAIT, || rig
        .consumer_info(&nc, "aggregate")
        .ack_floor
        .stream_seq
        == 20));
    let logs_after: Vec<Value> = (0..4)
        .map(|o| instance_log(&base, &format!("o-{o}")))
        .collect();
    assert_eq!(logs_after, logs_before, "no event applied twice");
    assert_eq!(
        rig.published_commands(&nc, 100).len(),
        20,
        "one command per event, not two"
    );
    let checkpoint = rig
        .store
        .checkpoint(&"acme".parse().unwrap(), &"recorder".parse().unwrap())
        .unwrap();
    assert_eq!(
        checkpoint
            .streams
            .get(&rig.settings.streams.aggregate_events),
        Some(&20),
        "the replayed events are accounted for again"
    );
}

#[test]
fn a_drained_process_migrates_chosen_instances_to_the_newest_version() {
    let mut rig = Rig::new(recorder_saga());
    let base = admin_port(&mut rig);
    let config = config_file(&rig);
    let nc = rig.connect();
    for (i, order) in ["o-1", "o-2"].iter().enumerate() {
        rig.send(&nc, &format!("e-{i}"), order, i as i64);
    }
    drop(start_and_apply(&rig, &config, &base, 2));

    // Version 2 keeps version 1 and offers a migration that marks the state.
    let mut v2 = recorder_saga();
    v2[0]["version"] = json!(2);
    v2[0]["previous"] = json!([{"version": 1, "on_event": recorder_saga()[0]["on_event"]}]);
    v2[0]["migrate"] = json!([{"from": 1, "program": {"output": {"state": {
        "log": {"$get": "state.log"}, "moved": true}}}}]);
    write_manifest(&rig, &manifest_of(v2));
    let _runner = RunnerProcess::start(&config, None);
    assert!(wait_until(WAIT, || ureq::get(&format!("{base}/ready"))
        .call()
        .is_ok()));
    assert_eq!(
        call("POST", &format!("{base}/admin/drain"), Some(TOKEN)).0,
        202
    );
    assert!(wait_until(WAIT, || {
        let (_, body) = call("GET", &format!("{base}/ready"), None);
        serde_json::from_str::<Value>(&body).unwrap()["drained"] == true
    }));
    let migrate = format!("{base}/admin/instances/migrate");
    let body = json!({"tenant": "acme", "saga": "recorder", "correlations": ["o-1", "o-9"]});
    let (status, answer) = call_json("POST", &migrate, Some(TOKEN), &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["results"],
        json!([{"correlation": "o-1", "migrated": true, "from": 1, "to": 2},
               {"correlation": "o-9", "migrated": false, "reason": "no such instance"}])
    );
    let view = |order: &str| {
        let (_, body) = call(
            "GET",
            &format!("{base}/admin/instances/acme/recorder/{order}"),
            Some(TOKEN),
        );
        serde_json::from_str::<Value>(&body).unwrap()
    };
    assert_eq!(
        (
            view("o-1")["version"].clone(),
            view("o-1")["state"]["moved"].clone()
        ),
        (json!(2), json!(true))
    );
    assert_eq!(view("o-2")["version"], 1, "only the chosen instance moves");
    let listed = |version: u32| {
        let url = format!("{base}/admin/instances?tenant=acme&saga=recorder&version={version}");
        let (_, body) = call("GET", &url, Some(TOKEN));
        let page: Value = serde_json::from_str(&body).unwrap();
        page["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["correlation"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(listed(1), vec![json!("o-2")]);
    assert_eq!(listed(2), vec![json!("o-1")]);
}

/// `GET /admin/store`: keys and bytes per keyspace and per tenant match what two
/// tenants' events wrote, with the quarantine record and the dead letter that wait for
/// an operator; a small limit truncates the walk.
#[test]
fn the_store_view_counts_keys_per_keyspace_and_tenant() {
    let rig = Rig::new(recorder_saga());
    // One dead letter of a third tenant, filed before any relay runs (the seeding
    // writes an instance of its own saga, `seeded`, for it too).
    runner::dev::seed_outbox(
        &rig.store,
        &rig.settings.streams.command_prefix,
        "gamma",
        OutboxKind::Effect,
        1,
    )
    .unwrap();
    let gamma: TenantId = "gamma".parse().unwrap();
    for (key, item) in rig.store.outbox(&gamma, 10).unwrap() {
        let record = DeadLetterRecord {
            item,
            reason: "attempts spent".into(),
            status: None,
            attempts: 8,
            dead_at: "2026-01-01T00:00:00Z".into(),
        };
        rig.store.dead_letter(&key, &record).unwrap();
    }
    let pipeline = rig.start();
    let ops = ops_for(&rig, &pipeline, Some(TOKEN));
    let base = format!("http://{}", ops.addr());
    let nc = rig.connect();
    rig.send(&nc, "e-1", "o-1", 1);
    rig.send(&nc, "e-2", "o-2", 2);
    let body = common::event("e-3", "beta", "o-1", "OrderPlaced", json!({"n": 3}));
    rig.publish(&nc, &rig.aggregate_subject("beta", "OrderPlaced"), &body);
    // On the single tenant's subject: its record is filed under `_`, not acme.
    rig.publish_raw(
        &nc,
        &rig.aggregate_subject("_", "OrderPlaced"),
        b"{ not json",
    );
    await_stats(&pipeline, |s| {
        s.acked == 3 && s.quarantined == 1 && s.relayed == 3
    });
    // The relay deletes confirmed items a moment after counting them.
    assert!(wait_until(WAIT, || rig.store.outbox_len().unwrap() == 0));

    let url = format!("{base}/admin/store");
    assert_eq!(call("GET", &url, None).0, 401, "the view needs the token");
    let (status, body) = call("GET", &url, Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    let tenants = &view["tenants"];
    let keys = |tenant: &str, space: &str| tenants[tenant][space]["keys"].clone();
    for (space, acme, beta) in [
        ("saga", 2, 1),
        ("dedupe", 2, 1),
        ("status", 2, 1),
        ("checkpoint", 1, 1),
    ] {
        assert_eq!(
            (keys("acme", space), keys("beta", space)),
            (json!(acme), json!(beta)),
            "{space}: {body}"
        );
        assert_eq!(keys("gamma", space), 1, "{space}: {body}");
        assert_eq!(
            view["keyspaces"][space]["keys"],
            acme + beta + 1,
            "{space}: {body}"
        );
    }
    let saga_key = |tenant: &str, corr: &str| {
        runner::keys::saga(
            &tenant.parse().unwrap(),
            &"recorder".parse().unwrap(),
            &corr.parse().unwrap(),
        )
        .len()
    };
    assert_eq!(
        tenants["acme"]["saga"]["key_bytes"],
        saga_key("acme", "o-1") + saga_key("acme", "o-2"),
        "{body}"
    );
    assert_eq!(
        tenants["beta"]["saga"]["key_bytes"],
        saga_key("beta", "o-1")
    );
    assert!(tenants["acme"]["saga"]["value_bytes"].as_u64() > Some(0));
    assert_eq!(
        keys("gamma", "deadletter"),
        1,
        "the dead letter waits: {body}"
    );
    assert_eq!(view["keyspaces"]["deadletter"]["keys"], 1, "{body}");
    assert_eq!(tenants["acme"].get("outbox"), None, "relayed and deleted");
    // The single tenant's subject and no readable body: filed under `_`.
    assert_eq!(keys("_", "quarantine"), 1, "{body}");
    assert_eq!(view["quarantine"]["records"], 1, "{body}");
    assert_eq!(view["quarantine"]["undated"], 0, "{body}");
    assert_eq!(view["dead_letters"]["records"], 1, "{body}");
    assert_eq!(
        view["dead_letters"]["oldest_at"], "2026-01-01T00:00:00Z",
        "{body}"
    );
    assert!(view["dead_letters"]["oldest_age_secs"].as_f64() > Some(86_400.0));
    // Timers' and retention's indexes have no tenant column.
    assert!(
        view["keyspaces"]["expire"]["keys"].as_u64() >= Some(1),
        "{body}"
    );
    assert!(tenants
        .as_object()
        .unwrap()
        .values()
        .all(|t| t.get("expire").is_none() && t.get("due").is_none()));
    assert_eq!(view["truncated"], false);
    let scanned = view["scanned"].as_u64().unwrap();
    assert!(view["entries"].as_u64() >= Some(scanned), "{body}");
    let space = &view["space"];
    assert!(space["used_bytes"].as_u64() > Some(0), "{body}");
    assert!(space["used_bytes"].as_u64() <= space["map_bytes"].as_u64());
    assert_eq!(view["expired"]["markers"], 0);

    let (status, body) = call("GET", &format!("{url}?limit=3"), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let cut: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (cut["scanned"].clone(), cut["truncated"].clone()),
        (json!(3), json!(true))
    );
    for bad in ["0", "1000001", "many"] {
        let (status, body) = call("GET", &format!("{url}?limit={bad}"), Some(TOKEN));
        assert_eq!(status, 400, "limit={bad}: {body}");
    }
    // The dead letter shows on /metrics too.
    let (_, page) = call("GET", &format!("{base}/metrics"), None);
    assert_eq!(metric(&page, "runner_dead_letters"), Some(1.0));
}

/// Replay and retention agree: a replay from a message older than the dedupe horizon
/// is refused with 409 naming the horizon, unless the request says `past_horizon`;
/// then the events whose markers were swept are applied again.
#[test]
fn a_replay_older_than_the_dedupe_horizon_needs_past_horizon() {
    let mut rig = Rig::new(recorder_saga());
    // Markers kept 2 s: the least the validation allows with a 1 s duplicate window
    // and 5 deliveries 400 ms apart.
    rig.settings.retention.dedupe_secs = 2;
    rig.settings.streams.duplicate_window_secs = 1;
    rig.settings.consumer.ack_wait_ms = 400;
    rig.settings.validate().unwrap();
    let base = admin_port(&mut rig);
    let config = config_file(&rig);
    let nc = rig.connect();
    for i in 0..3 {
        rig.send(&nc, &format!("e-{i}"), &format!("o-{i}"), i);
    }
    let _runner = start_and_apply(&rig, &config, &base, 3);
    let marker = "runner_retention_expired_total{kind=\"marker\"}";
    let expired = || metric(&call("GET", &format!("{base}/metrics"), None).1, marker);
    assert!(
        wait_until(WAIT, || expired() == Some(3.0)),
        "the three markers expired and were swept: {:?}",
        expired()
    );
    assert_eq!(
        call("POST", &format!("{base}/admin/drain"), Some(TOKEN)).0,
        202
    );
    assert!(wait_until(WAIT, || {
        let (_, body) = call("GET", &format!("{base}/ready"), None);
        serde_json::from_str::<Value>(&body).unwrap()["drained"] == true
    }));
    // The first message is gone from the stream: the horizon is checked on the next.
    let js = nats::jetstream::new(nc.clone());
    assert!(js
        .delete_message(&rig.settings.streams.aggregate_events, 1)
        .unwrap());

    let replay = format!("{base}/admin/replay");
    let request =
        json!({"tenant": "acme", "saga": "recorder", "from_seq": 1, "confirm": "recorder"});
    let (status, body) = call_json("POST", &replay, Some(TOKEN), &request);
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["horizon"]["dedupe_secs"], 2, "{body}");
    let horizon = body["horizon"]["at"].as_str().unwrap();
    let published = body["message"]["published_at"].as_str().unwrap();
    let ms = |t: &str| runner::timefmt::parse_rfc3339_ms(t).unwrap();
    assert!(ms(published) < ms(horizon), "{body}");
    assert_eq!(
        body["message"]["seq"], 2,
        "the first one still there: {body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("dedupe horizon"),
        "{body}"
    );
    assert!(
        body["to_go_on"].as_str().unwrap().contains("past_horizon"),
        "{body}"
    );

    // A message inside the horizon replays as before; past the stream's end, too.
    rig.send(&nc, "e-3", "o-3", 3);
    let mut recent = request.clone();
    recent["from_seq"] = json!(4);
    let (status, body) = call_json("POST", &replay, Some(TOKEN), &recent);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["past_horizon"], false, "{body}");
    let mut beyond = request.clone();
    beyond["from_seq"] = json!(100);
    let (status, body) = call_json("POST", &replay, Some(TOKEN), &beyond);
    assert_eq!(status, 200, "nothing at or after it: {body}");

    let mut past = request.clone();
    past["past_horizon"] = json!(true);
    let (status, body) = call_json("POST", &replay, Some(TOKEN), &past);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["past_horizon"], true, "{body}");
    assert_eq!(body["horizon"]["dedupe_secs"], 2, "{body}");

    assert_eq!(
        call("POST", &format!("{base}/admin/resume"), Some(TOKEN)).0,
        202
    );
    // Their markers swept, the events still in the stream are applied again; the new
    // one once.
    assert!(
        wait_until(WAIT, || instance_log(&base, "o-2") == "2,2,"),
        "{}",
        instance_log(&base, "o-2")
    );
    assert_eq!(instance_log(&base, "o-1"), "1,1,");
    assert_eq!(instance_log(&base, "o-0"), "0,", "its message was deleted");
    assert!(wait_until(WAIT, || instance_log(&base, "o-3") == "3,"));
}
