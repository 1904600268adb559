//! The ops port: health, readiness (a nearly full store included), metrics (the store's
//! and retention's too), info and the admin drain, against a real pipeline (real
//! nats-server, real LMDB store); and SIGTERM on the real binary.

mod common;

use std::time::Duration;

use common::ops::{call, metric, ops_for, TOKEN};
use common::{
    await_stats, config_file, free_port, recorder_saga, wait_until, Rig, RunnerProcess, WAIT,
};
use serde_json::Value;

#[test]
fn health_readiness_metrics_info_and_drain() {
    let rig = Rig::new(recorder_saga());
    let pipeline = rig.start();
    let ops = ops_for(&rig, &pipeline, Some(TOKEN));
    let base = format!("http://{}", ops.addr());
    assert!(wait_until(WAIT, || call(
        "GET",
        &format!("{base}/ready"),
        None
    )
    .0 == 200));
    let (_, ready) = call("GET", &format!("{base}/ready"), None);
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["store_nearly_full"], Value::Null, "{ready}");
    assert_eq!(ready["nats"], "ok", "{ready}");
    let (status, health) = call("GET", &format!("{base}/health"), None);
    assert_eq!(status, 200, "{health}");
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        (health["storage"].as_str(), health["main_loop"].as_str()),
        (Some("ok"), Some("ok"))
    );

    let (_, info) = call("GET", &format!("{base}/info"), None);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["mode"], "saga");
    assert_eq!(info["sagas"][0]["name"], "recorder");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));

    let (status, before) = call("GET", &format!("{base}/metrics"), None);
    assert_eq!(status, 200);
    for name in [
        "runner_transitions_total",
        "runner_acked_total",
        "runner_quarantined_total",
        "runner_relayed_total",
        "runner_dead_letters_total",
        "runner_effects_called_total",
        "runner_timers_fired_total",
        "runner_outbox_depth",
        "runner_draining",
        "runner_relay_latency_seconds_count",
        "runner_timer_lag_seconds_count",
    ] {
        assert!(
            metric(&before, name).is_some(),
            "{name} missing from /metrics"
        );
    }
    assert!(before.contains("# TYPE runner_outbox_depth gauge"));
    assert!(before.contains("# TYPE runner_relay_latency_seconds histogram"));
    let nc = rig.connect();
    rig.send(&nc, "e-1", "o-1", 1);
    await_stats(&pipeline, |s| s.acked == 1 && s.relayed == 1);
    let (_, after) = call("GET", &format!("{base}/metrics"), None);
    assert_eq!(metric(&after, "runner_transitions_total"), Some(1.0));
    assert_eq!(metric(&after, "runner_relayed_total"), Some(1.0));
    assert_eq!(
        metric(&after, "runner_relay_latency_seconds_count"),
        Some(1.0)
    );
    for stage in [
        "runner_decode_batch_seconds_count",
        "runner_execute_batch_seconds_count",
        "runner_commit_group_seconds_count",
    ] {
        assert!(
            metric(&after, stage).is_some_and(|n| n >= 1.0),
            "{stage} did not move"
        );
    }
    // Consumer lag is read by the probe every few seconds.
    let aggregate = format!(
        "runner_consumer_ack_pending{{consumer=\"{}-aggregate\"}}",
        rig.settings.consumer.durable
    );
    assert!(
        wait_until(WAIT, || metric(
            &call("GET", &format!("{base}/metrics"), None).1,
            &aggregate
        ) == Some(0.0)),
        "{aggregate} not reported"
    );

    // Admin: wrong and missing tokens are refused; the right one drains.
    assert_eq!(call("POST", &format!("{base}/admin/drain"), None).0, 401);
    assert_eq!(
        call("POST", &format!("{base}/admin/drain"), Some("nope")).0,
        401
    );
    assert_eq!(
        call("GET", &format!("{base}/ready"), None).0,
        200,
        "not draining yet"
    );
    assert_eq!(
        call("POST", &format!("{base}/admin/drain"), Some(TOKEN)).0,
        202
    );
    let (status, ready) = call("GET", &format!("{base}/ready"), None);
    assert_eq!(status, 503, "{ready}");
    assert!(ready.contains("\"draining\":true"));
    let (_, drained) = call("GET", &format!("{base}/metrics"), None);
    assert_eq!(metric(&drained, "runner_draining"), Some(1.0));
    assert!(
        wait_until(WAIT, || pipeline.all_stopped()),
        "every stage finished"
    );
}

#[test]
fn admin_is_closed_without_a_token_and_readiness_sees_nats_go() {
    let mut rig = Rig::new(recorder_saga());
    let pipeline = rig.start();
    let ops = ops_for(&rig, &pipeline, None);
    let base = format!("http://{}", ops.addr());
    assert_eq!(
        call("POST", &format!("{base}/admin/drain"), Some(TOKEN)).0,
        403
    );
    assert!(wait_until(WAIT, || call(
        "GET",
        &format!("{base}/health"),
        None
    )
    .0 == 200));
    let Some(server) = rig.server.as_mut() else {
        return; // An external server (RUNNER_TEST_NATS_URL) is not ours to stop.
    };
    server.kill();
    assert!(
        wait_until(Duration::from_secs(10), || call(
            "GET",
            &format!("{base}/ready"),
            None
        )
        .0 == 503),
        "readiness noticed NATS is gone"
    );
    let (_, ready) = call("GET", &format!("{base}/ready"), None);
    assert!(ready.contains("\"nats\":\"unreachable\""), "{ready}");
    // Liveness is not about dependencies (tests/health.rs watches it through an outage).
    assert_eq!(call("GET", &format!("{base}/health"), None).0, 200);
}

/// SIGTERM drains the real binary: it stops taking work, finishes what it holds and
/// exits 0; everything it took was committed and acked.
#[test]
fn sigterm_drains_and_exits_cleanly() {
    let mut rig = Rig::new(recorder_saga());
    let port = free_port();
    rig.settings.ops.listen = format!("127.0.0.1:{port}");
    let config = config_file(&rig);
    let nc = rig.connect();
    for i in 0..50 {
        rig.send(&nc, &format!("e-{i}"), &format!("o-{i}"), i);
    }
    let mut runner = RunnerProcess::start(&config, None);
    let ready = format!("http://127.0.0.1:{port}/ready");
    assert!(
        wait_until(WAIT, || ureq::get(&ready).call().is_ok()),
        "the runner became ready"
    );
    assert!(wait_until(WAIT, || rig
        .consumer_info(&nc, "aggregate")
        .ack_floor
        .stream_seq
        == 50));
    let pid = runner.pid().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = runner
        .wait_exit(Duration::from_secs(30))
        .expect("exits after draining");
    assert_eq!(status.code(), Some(0), "a drain is a clean exit");
    let info = rig.consumer_info(&nc, "aggregate");
    assert_eq!(info.num_ack_pending, 0, "nothing left in flight");
}

#[test]
fn admin_views_show_quarantine_and_an_instance() {
    let rig = Rig::new(recorder_saga());
    let pipeline = rig.start();
    let ops = ops_for(&rig, &pipeline, Some(TOKEN));
    let base = format!("http://{}", ops.addr());
    let nc = rig.connect();
    rig.send(&nc, "e-1", "o:1", 7);
    rig.publish_raw(
        &nc,
        &rig.aggregate_subject("_", "OrderPlaced"),
        b"{ not json",
    );
    await_stats(&pipeline, |s| s.acked == 1 && s.quarantined == 1);

    // The single tenant's subject and no readable body: filed under the single tenant.
    let url = format!("{base}/admin/quarantine?tenant=");
    assert_eq!(call("GET", &url, None).0, 401, "reads need the token too");
    let (status, body) = call("GET", &url, Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["records"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["records"][0]["record"]["kind"], "decode");
    assert_eq!(
        call("GET", &format!("{base}/admin/quarantine"), Some(TOKEN)).0,
        400,
        "tenant required"
    );

    let (status, body) = call(
        "GET",
        &format!("{base}/admin/instances/acme/recorder/o%3A1"),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["state"]["log"], "7,");
    assert_eq!(body["status"], "active");
    assert_eq!(body["correlation"], "o:1");
    assert_eq!(
        call(
            "GET",
            &format!("{base}/admin/instances/acme/recorder/nope"),
            Some(TOKEN)
        )
        .0,
        404
    );
    assert_eq!(
        call(
            "GET",
            &format!("{base}/admin/deadletters?tenant=acme"),
            Some(TOKEN)
        )
        .0,
        200
    );
}

/// A store whose writes fail is unhealthy and not ready (the failure is injected: the
/// store's test hook fails its next write probes, as a full or read-only disk would).
#[test]
fn health_fails_when_the_store_cannot_write() {
    let rig = Rig::new(recorder_saga());
    let pipeline = rig.start();
    let ops = ops_for(&rig, &pipeline, None);
    let base = format!("http://{}", ops.addr());
    assert!(wait_until(WAIT, || call(
        "GET",
        &format!("{base}/health"),
        None
    )
    .0 == 200));
    rig.store.inject_probe_failures(2);
    // The probe's result is kept for a second: the failure shows at the next write.
    let mut health = String::new();
    assert!(
        wait_until(WAIT, || {
            let (status, body) = call("GET", &format!("{base}/health"), None);
            health = body;
            status == 503
        }),
        "never unhealthy: {health}"
    );
    assert!(health.contains("injected"), "{health}");
    assert_eq!(call("GET", &format!("{base}/ready"), None).0, 503);
    assert!(
        wait_until(WAIT, || call("GET", &format!("{base}/health"), None).0
            == 200),
        "healthy again once writes work"
    );
}

/// The store's figures on `/metrics`: plausible sizes, what retention expired (moving
/// after a sweep) and the quarantine records that wait for an operator.
#[test]
fn store_and_retention_metrics() {
    let rig = Rig::new(recorder_saga());
    let pipeline = rig.start();
    let ops = ops_for(&rig, &pipeline, None);
    let base = format!("http://{}", ops.addr());
    let nc = rig.connect();
    rig.send(&nc, "e-1", "o-1", 1);
    rig.send(&nc, "e-2", "o-2", 2);
    rig.publish_raw(
        &nc,
        &rig.aggregate_subject("acme", "OrderPlaced"),
        b"{ not json",
    );
    await_stats(&pipeline, |s| s.acked == 2 && s.quarantined == 1);

    let (status, page) = call("GET", &format!("{base}/metrics"), None);
    assert_eq!(status, 200);
    let m = |name: &str| metric(&page, name).unwrap_or_else(|| panic!("{name} missing"));
    let used = m("runner_store_used_bytes");
    let map = m("runner_store_map_bytes");
    assert!(used > 0.0 && used <= map, "used {used}, map {map}");
    assert!(m("runner_store_file_bytes") >= used);
    assert!(m("runner_store_max_bytes") >= map);
    assert_eq!(map, (256u64 << 20) as f64, "the rig's map");
    let marker = "runner_retention_expired_total{kind=\"marker\"}";
    assert_eq!(m(marker), 0.0);
    assert_eq!(m("runner_retention_expired_total{kind=\"instance\"}"), 0.0);
    assert_eq!(
        m("runner_retention_expired_total{kind=\"effect_record\"}"),
        0.0
    );
    assert_eq!(m("runner_retention_oldest_expired_age_seconds"), 0.0);
    assert_eq!(m("runner_quarantine_records"), 1.0);
    let age = m("runner_quarantine_oldest_age_seconds");
    assert!((0.0..60.0).contains(&age), "the record is dated: {age}");
    assert_eq!(m("runner_dead_letters"), 0.0);
    assert_eq!(m("runner_dead_letters_oldest_age_seconds"), 0.0);
    assert!(page.contains("# TYPE runner_retention_expired_total counter"));
    assert!(
        page.contains("until an operator"),
        "the help says quarantine records stay"
    );

    // Two days on, both events' markers have expired: the oldest has waited, then a
    // sweep deletes them and the counter moves.
    let later = runner::store::now_ms() + 2 * 86_400_000;
    assert!(rig.store.oldest_expired_age(later).unwrap() > Duration::ZERO);
    let swept = rig.store.sweep_all(later).unwrap();
    assert_eq!(swept.markers, 2, "{swept:?}");
    let (_, page) = call("GET", &format!("{base}/metrics"), None);
    assert_eq!(metric(&page, marker), Some(2.0));
    assert_eq!(
        metric(&page, "runner_quarantine_records"),
        Some(1.0),
        "quarantine records are never expired"
    );
}

/// Above `storage.nearly_full_percent` of the most the map may grow to, `/ready` says
/// `store_nearly_full` (503) while `/health` stays 200.
#[test]
fn ready_says_when_the_store_is_nearly_full() {
    let mut rig = Rig::new(recorder_saga());
    // A 1 MiB store that may not grow: the pages a fresh store uses are over 1% of it.
    rig.settings.storage.path = rig.dir.path().join("small-store");
    rig.store = std::sync::Arc::new(
        runner::store::Store::open(&rig.settings.storage.path, 1 << 20).unwrap(),
    );
    let mut settings = rig.settings.clone();
    settings.storage.nearly_full_percent = 1;
    let pipeline = rig.start_with(settings);
    let ops = ops_for(&rig, &pipeline, None);
    let base = format!("http://{}", ops.addr());
    let nc = rig.connect();
    rig.send(&nc, "e-1", "o-1", 1);
    await_stats(&pipeline, |s| s.acked == 1);
    assert!(wait_until(WAIT, || call(
        "GET",
        &format!("{base}/health"),
        None
    )
    .0 == 200));

    let (status, body) = call("GET", &format!("{base}/ready"), None);
    assert_eq!(status, 503, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    let full = &ready["store_nearly_full"];
    assert_eq!(full["threshold_percent"], 1, "{body}");
    assert_eq!(full["max_bytes"], 1 << 20, "{body}");
    let (used, percent) = (full["used_bytes"].as_f64(), full["percent"].as_f64());
    assert!(
        used.is_some_and(|u| u > 0.0) && percent.is_some_and(|p| p > 1.0),
        "{body}"
    );
    assert_eq!(ready["intake_stopped"], Value::Null, "still taking work");
    assert_eq!(ready["health"]["healthy"], true, "{body}");
    let (status, health) = call("GET", &format!("{base}/health"), None);
    assert_eq!(status, 200, "health is not about room: {health}");
}
