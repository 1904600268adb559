//! Effect routing: each effect process takes only the commands of the effects its
//! manifest defines (a consumer per effect, filtered on `{command_prefix}.*.{effect}`),
//! a command no running process defines waits in the stream and is reported as
//! unclaimed, and a reload that changes the effect set moves the process to the new
//! effects' consumers.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::ops::{call, metric, ops_for, TOKEN};
use common::{recorder_saga, wait_until, Rig, WAIT};
use runner::dev::{FakeGateway, Reply};
use runner::settings::{Mode, Settings};
use runner::stages::Pipeline;
use runner::store::Store;
use serde_json::{json, Value};

/// An effects manifest with one http effect per (name, upstream).
fn manifest(rig: &Rig, file: &str, effects: &[(&str, &FakeGateway)]) -> std::path::PathBuf {
    let path = rig.dir.path().join(file);
    let list: Vec<Value> = effects
        .iter()
        .map(|(name, upstream)| {
            json!({"name": name, "provider": "http", "timeout_ms": 2000,
                   "http": {"url": format!("{}/v1/{name}", upstream.url())}})
        })
        .collect();
    std::fs::write(&path, json!({ "effects": list }).to_string()).unwrap();
    path
}

/// Settings of an effect process named `name` (a store of its own, as on another
/// host) whose manifest is `effects`, reporting commands unclaimed after `alert_secs`.
/// The alert goes in through the settings' serialised form, as a config file would
/// carry it.
fn process_settings(
    rig: &Rig,
    name: &str,
    effects: std::path::PathBuf,
    alert_secs: u64,
) -> Settings {
    let mut s = rig.settings.clone();
    s.mode = Mode::Effect;
    s.manifests.effects = vec![effects];
    s.effects.workers = 4;
    s.storage.path = rig.dir.path().join(format!("store-{name}"));
    let mut v = serde_json::to_value(&s).unwrap();
    v["effects"]["unclaimed_alert_secs"] = json!(alert_secs);
    serde_json::from_value(v).expect("the settings take effects.unclaimed_alert_secs")
}

fn start(rig: &Rig, settings: &Settings) -> Pipeline {
    settings.validate().unwrap();
    let store = Arc::new(Store::open(&settings.storage.path, 256 << 20).unwrap());
    let (sagas, effects) = runner::cli::catalogs_for_mode(settings).unwrap();
    Pipeline::start(settings.clone(), store, sagas, effects, rig.connect()).unwrap()
}

/// Starts the effect process `name` whose manifest (`{name}.json`) defines `effects`.
fn start_process(
    rig: &Rig,
    name: &str,
    effects: &[(&str, &FakeGateway)],
    alert_secs: u64,
) -> Pipeline {
    let path = manifest(rig, &format!("{name}.json"), effects);
    start(rig, &process_settings(rig, name, path, alert_secs))
}

/// The info of `effect`'s consumer on the commands stream.
fn effect_consumer(
    rig: &Rig,
    js: &nats::jetstream::JetStream,
    effect: &str,
) -> std::io::Result<nats::jetstream::ConsumerInfo> {
    let durable = &rig.settings.consumer.durable;
    js.consumer_info(
        &rig.settings.streams.workflow_commands,
        format!("{durable}-effects-{effect}"),
    )
}

/// `GET /admin/effects/unclaimed` of the ops server at `base`.
fn unclaimed(base: &str) -> (u16, String) {
    call(
        "GET",
        &format!("{base}/admin/effects/unclaimed"),
        Some(TOKEN),
    )
}

fn publish_command(rig: &Rig, nc: &nats::Connection, effect: &str, id: &str) {
    let subject = format!("{}.acme.{effect}", rig.settings.streams.command_prefix);
    let body = json!({"tenant_id": "acme", "command_id": id, "effect_name": effect,
        "payload": {"n": id}, "issued_at": "2026-11-27T10:00:00Z",
        "metadata": {"correlation_id": format!("corr-{id}"), "saga_name": "order",
                     "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}});
    rig.publish(nc, &subject, &body);
}

/// Result events by command id.
fn results(rig: &Rig, nc: &nats::Connection) -> HashMap<String, Value> {
    rig.result_messages(nc, 1_000)
        .into_iter()
        .map(|m| {
            let body: Value = serde_json::from_slice(&m.data).unwrap();
            (body["command_id"].as_str().unwrap().to_string(), body)
        })
        .collect()
}

fn calls(upstream: &FakeGateway) -> HashMap<String, usize> {
    let mut calls = HashMap::new();
    for c in upstream.received() {
        let key = c.header("idempotency-key").unwrap_or_default().to_string();
        *calls.entry(key).or_default() += 1;
    }
    calls
}

#[test]
fn two_effect_services_with_different_manifests_each_take_only_their_own_commands() {
    let payments = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let email = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let rig = Rig::new(recorder_saga());
    let pay = start_process(
        &rig,
        "payments",
        &[("charge", &payments), ("refund", &payments)],
        60,
    );
    let mail = start_process(&rig, "email", &[("send_email", &email)], 60);
    let nc = rig.connect();
    let n = 30;
    for i in 0..n {
        publish_command(&rig, &nc, "charge", &format!("c-{i}"));
        publish_command(&rig, &nc, "send_email", &format!("m-{i}"));
        if i % 3 == 0 {
            publish_command(&rig, &nc, "refund", &format!("r-{i}"));
        }
    }
    let total = n + n + n / 3;
    assert!(
        wait_until(WAIT, || results(&rig, &nc).len() >= total),
        "every command has a result: {} of {total}; payments {:?}, email {:?}",
        results(&rig, &nc).len(),
        pay.stats(),
        mail.stats()
    );
    // Time for a stray second call to show up.
    std::thread::sleep(Duration::from_millis(1_000));
    let results = results(&rig, &nc);
    let failed: Vec<_> = results
        .values()
        .filter(|r| r["result_type"] != "succeeded")
        .map(|r| (r["command_id"].clone(), r["error"].clone()))
        .collect();
    assert!(failed.is_empty(), "no command failed: {failed:?}");
    let (pay_calls, mail_calls) = (calls(&payments), calls(&email));
    assert_eq!(pay_calls.len(), n + n / 3, "{pay_calls:?}");
    assert!(pay_calls
        .iter()
        .all(|(id, k)| *k == 1 && !id.starts_with("m-")));
    assert_eq!(mail_calls.len(), n, "{mail_calls:?}");
    assert!(mail_calls
        .iter()
        .all(|(id, k)| *k == 1 && id.starts_with("m-")));
    assert_eq!(pay.stats().effects_failed + mail.stats().effects_failed, 0);
    // Each process pulls the consumers of its own effects only.
    let js = nats::jetstream::new(nc.clone());
    for effect in ["charge", "refund", "send_email"] {
        let info = effect_consumer(&rig, &js, effect)
            .unwrap_or_else(|e| panic!("the consumer of {effect}: {e}"));
        assert_eq!(
            info.config.filter_subject,
            format!("{}.*.{effect}", rig.settings.streams.command_prefix)
        );
    }
}

#[test]
fn a_command_nobody_defines_waits_is_reported_unclaimed_and_runs_once_its_effect_appears() {
    let payments = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let email = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let rig = Rig::new(recorder_saga());
    let pay = start_process(&rig, "payments", &[("charge", &payments)], 1);
    let ops = ops_for(&rig, &pay, Some(TOKEN));
    let base = format!("http://{}", ops.addr());
    let nc = rig.connect();
    publish_command(&rig, &nc, "send_email", "m-1");
    publish_command(&rig, &nc, "charge", "c-1");

    // Reported (admin listing, metric) once it has waited longer than the alert.
    let listed = |body: &Value| {
        body["effects"].as_array().is_some_and(|effects| {
            effects.iter().any(|e| {
                e["effect"] == "send_email"
                    && e["waiting"].as_u64() >= Some(1)
                    && e["oldest"]["correlation_id"] == "corr-m-1"
                    && e["oldest"]["tenant_id"] == "acme"
                    && e["oldest"]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
            })
        })
    };
    let mut last = Value::Null;
    let reported = wait_until(WAIT, || {
        let (status, text) = unclaimed(&base);
        last = serde_json::from_str(&text).unwrap_or(Value::String(format!("{status} {text}")));
        status == 200 && listed(&last)
    });
    assert!(reported, "listed as unclaimed: {last}");
    let (_, metrics) = call("GET", &format!("{base}/metrics"), None);
    assert!(
        metric(&metrics, "runner_effect_commands_unclaimed").unwrap_or(0.0) >= 1.0,
        "the gauge counts it"
    );
    // charge was taken: it is not listed; send_email was not failed.
    assert!(wait_until(WAIT, || results(&rig, &nc).contains_key("c-1")));
    let (_, text) = unclaimed(&base);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(
        body["effects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["effect"] != "charge"),
        "{body}"
    );
    assert!(
        !results(&rig, &nc).contains_key("m-1"),
        "it waits, not failed"
    );
    assert_eq!(pay.stats().effects_failed, 0);

    // A process that defines it takes it, once.
    let mail = start_process(&rig, "email", &[("send_email", &email)], 1);
    assert!(wait_until(WAIT, || results(&rig, &nc).contains_key("m-1")));
    assert_eq!(results(&rig, &nc)["m-1"]["result_type"], "succeeded");
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(calls(&email).get("m-1"), Some(&1), "{:?}", calls(&email));
    assert_eq!(calls(&payments).get("m-1"), None);
    assert_eq!(mail.stats().effects_called, 1);
    // No longer reported.
    let cleared = wait_until(WAIT, || {
        let (_, text) = unclaimed(&base);
        last = serde_json::from_str(&text).unwrap_or(Value::Null);
        last["effects"].as_array().is_some_and(|e| e.is_empty())
    });
    assert!(cleared, "nothing unclaimed once it ran: {last}");
}

#[test]
fn a_reload_that_changes_the_effect_set_moves_the_process_to_the_new_consumers() {
    let payments = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let email = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let rig = Rig::new(recorder_saga());
    let pipeline = start_process(&rig, "one", &[("charge", &payments)], 60);
    let ops = ops_for(&rig, &pipeline, Some(TOKEN));
    let base = format!("http://{}", ops.addr());
    let nc = rig.connect();
    publish_command(&rig, &nc, "charge", "c-1");
    assert!(wait_until(WAIT, || results(&rig, &nc).contains_key("c-1")));

    // The manifest now defines send_email instead of charge.
    manifest(&rig, "one.json", &[("send_email", &email)]);
    let (status, body) = call("POST", &format!("{base}/admin/reload"), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let js = nats::jetstream::new(nc.clone());
    let consumer = |effect: &str| effect_consumer(&rig, &js, effect);
    // The process moves: the new effect's consumer is pulled, the old one no longer.
    assert!(
        wait_until(WAIT, || consumer("send_email")
            .is_ok_and(|c| c.num_waiting > 0)
            && consumer("charge").is_ok_and(|c| c.num_waiting == 0)),
        "moved to the send_email consumer: {:?} / {:?}",
        consumer("send_email").map(|c| c.num_waiting),
        consumer("charge").map(|c| c.num_waiting)
    );
    publish_command(&rig, &nc, "send_email", "m-1");
    publish_command(&rig, &nc, "charge", "c-2");
    assert!(wait_until(WAIT, || results(&rig, &nc).contains_key("m-1")));
    // charge is no longer pulled here: c-2 waits for a process that defines charge.
    std::thread::sleep(Duration::from_millis(2_000));
    assert!(
        !results(&rig, &nc).contains_key("c-2"),
        "c-2 waits, not failed"
    );
    assert_eq!(pipeline.stats().effects_failed, 0);
    let charge = consumer("charge").expect("the old consumer is kept (another process may use it)");
    assert_eq!(charge.num_pending, 1, "c-2 waits on the charge consumer");
    assert_eq!(charge.num_ack_pending, 0);

    // Back to both: c-2 runs, once.
    manifest(
        &rig,
        "one.json",
        &[("charge", &payments), ("send_email", &email)],
    );
    let (status, body) = call("POST", &format!("{base}/admin/reload"), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert!(wait_until(WAIT, || results(&rig, &nc).contains_key("c-2")));
    std::thread::sleep(Duration::from_millis(1_000));
    let pay_calls = calls(&payments);
    assert_eq!(
        (pay_calls.get("c-1"), pay_calls.get("c-2")),
        (Some(&1), Some(&1)),
        "{pay_calls:?}"
    );
    assert_eq!(calls(&email).get("m-1"), Some(&1));
    assert!(results(&rig, &nc)
        .values()
        .all(|r| r["result_type"] == "succeeded"));
}

/// An upgrade from the single unfiltered consumer (`{durable}-effects`) of earlier
/// versions: a new effect consumer starts after what that consumer acked, so commands
/// executed before the upgrade are not delivered again, and the ones it left are.
#[test]
fn an_effect_consumer_created_next_to_the_legacy_consumer_starts_after_its_ack_floor() {
    let payments = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let rig = Rig::new(recorder_saga());
    let nc = rig.connect();
    publish_command(&rig, &nc, "charge", "c-1");
    publish_command(&rig, &nc, "charge", "c-2");
    // The legacy consumer took and acked c-1 (an older Runner executed it).
    let js = nats::jetstream::new(nc.clone());
    let stream = rig.settings.streams.workflow_commands.clone();
    let legacy = format!("{}-effects", rig.settings.consumer.durable);
    js.add_consumer(
        stream.as_str(),
        nats::jetstream::ConsumerConfig {
            durable_name: Some(legacy.clone()),
            ack_policy: nats::jetstream::AckPolicy::Explicit,
            ..Default::default()
        },
    )
    .unwrap();
    let sub = js
        .pull_subscribe_with_options(
            ">",
            &nats::jetstream::PullSubscribeOptions::new()
                .bind_stream(stream.clone())
                .durable_name(legacy.clone()),
        )
        .unwrap();
    sub.request_batch(nats::jetstream::BatchOptions {
        batch: 1,
        expires: Some(2_000_000_000),
        no_wait: false,
    })
    .unwrap();
    let first = sub.next_timeout(Duration::from_secs(5)).unwrap();
    first.ack().unwrap();
    assert!(wait_until(WAIT, || js
        .consumer_info(&stream, &legacy)
        .is_ok_and(|c| c.ack_floor.stream_seq == 1)));
    drop(sub);

    let pipeline = start_process(&rig, "upgraded", &[("charge", &payments)], 60);
    assert!(wait_until(WAIT, || results(&rig, &nc).contains_key("c-2")));
    std::thread::sleep(Duration::from_millis(1_000));
    let calls = calls(&payments);
    assert_eq!(calls.get("c-2"), Some(&1));
    assert_eq!(
        calls.get("c-1"),
        None,
        "executed before the upgrade: {calls:?}"
    );
    assert_eq!(pipeline.stats().fetched, 1);
    js.consumer_info(&stream, &legacy)
        .expect("the legacy consumer is left for older replicas");
}
