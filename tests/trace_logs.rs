//! Every log line about a message names its trace id (issue 21, point 5), and a
//! `traceparent` that comes only as a NATS header is taken and passed on to the work
//! the message causes (invariant 4).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{await_stats, config_file, recorder_saga, wait_until, Rig, RunnerProcess, WAIT};
use runner::dev::{example_manifest, FakeGateway, Reply};
use runner::settings::Mode;
use runner::types::TenantId;
use serde_json::{json, Value};

/// Trace ids of the orders, one each, so a line naming the wrong one is caught too.
const TRACES: [(&str, &str); 4] = [
    ("o-1", "11111111111111111111111111111111"),
    ("o-2", "22222222222222222222222222222222"),
    ("o-3", "33333333333333333333333333333333"),
    ("bad-1", "44444444444444444444444444444444"),
];

fn trace_of(correlation: &str) -> Option<&'static str> {
    TRACES
        .iter()
        .find(|(c, _)| *c == correlation)
        .map(|(_, t)| *t)
}

fn traceparent(correlation: &str) -> String {
    format!("00-{}-00f067aa0ba902b7-01", trace_of(correlation).unwrap())
}

fn acme() -> TenantId {
    "acme".parse().unwrap()
}

/// An `OrderPlaced` of the example workflow; its trace context in the body's metadata,
/// or (`in_body` false) in none.
fn order_placed(order: &str, in_body: bool) -> Value {
    let mut metadata = json!({"correlation_id": order});
    if in_body {
        metadata["traceparent"] = json!(traceparent(order));
    }
    json!({
        "event_id": format!("e-{order}"), "tenant_id": "acme", "aggregate_type": "order",
        "aggregate_id": order, "event_type": "OrderPlaced", "occurred_at": "2026-11-27T10:00:00Z",
        "payload": {"customer_id": "c-7", "total": 4200}, "metadata": metadata
    })
}

/// Publishes `body` with a `traceparent` header (and the tenant's), as an upstream
/// that traces in headers would.
fn publish_with_trace_header(nc: &nats::Connection, subject: &str, body: &Value, tp: &str) {
    let mut headers = nats::header::HeaderMap::new();
    headers.insert("x-tenant-id", "acme");
    headers.insert("traceparent", tp);
    let js = nats::jetstream::new(nc.clone());
    let msg = nats::Message::new(subject, None, body.to_string(), Some(headers));
    js.publish_message(&msg).unwrap();
}

/// `manifests/example/sagas.yaml` with its trigger subjects under the rig's namespace
/// and its program paths made absolute.
fn namespaced_example(rig: &Rig) -> std::path::PathBuf {
    let source = example_manifest();
    let base = source.parent().unwrap().to_path_buf();
    let mut doc = runner::manifest::read_document(&source).unwrap();
    for saga in doc["sagas"].as_array_mut().unwrap() {
        for trigger in saga["triggers"].as_array_mut().unwrap() {
            let subject = trigger["subject"].as_str().unwrap();
            trigger["subject"] = json!(format!("{}.{subject}", rig.ns));
        }
        for key in ["on_event", "compensation"] {
            if let Some(rel) = saga[key].as_str() {
                saga[key] = json!(base.join(rel));
            }
        }
    }
    let path = rig.dir.path().join("example-sagas.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// The example workflow in `runner run --mode combined` with JSON logs at debug: three
/// orders are charged (log provider) and marked paid at the Gateway, which answers the
/// first `MarkPaid` with 503 (a relay retry) and rejects o-3's (the relay gives up on
/// it); a malformed event is quarantined. o-2's and the malformed event's trace context
/// come only as a header. Every line naming a correlation id names the trace id of
/// that message. (Reminders are left out: the example's fires after 15 minutes.)
#[test]
fn every_log_line_naming_a_correlation_id_names_its_trace_id() {
    let refused_once = Arc::new(AtomicBool::new(false));
    let refused = refused_once.clone();
    let gateway = FakeGateway::start(move |req, _| match req.body["aggregate_id"].as_str() {
        Some("o-3") => Reply {
            body: r#"{"error": "order is closed"}"#.into(),
            ..Reply::status(400)
        },
        Some("o-1") if !refused.swap(true, Ordering::SeqCst) => Reply::status(503),
        _ => Reply::status(202),
    })
    .unwrap();
    let mut rig = Rig::new(json!([]));
    rig.settings.mode = Mode::Combined;
    rig.settings.manifests.sagas = vec![namespaced_example(&rig)];
    rig.settings.manifests.effects = vec![example_manifest().with_file_name("effects.yaml")];
    let r = &mut rig.settings.relay;
    r.gateway_url = gateway.url().to_string();
    r.backoff_initial_ms = 50;
    r.backoff_max_ms = 200;
    let config = config_file(&rig);
    let nc = rig.connect();
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    rig.publish(&nc, &subject, &order_placed("o-1", true));
    publish_with_trace_header(
        &nc,
        &subject,
        &order_placed("o-2", false),
        &traceparent("o-2"),
    );
    rig.publish(&nc, &subject, &order_placed("o-3", true));
    // Not an envelope (no event_type): quarantined, its trace context in a header only.
    let mut bad = order_placed("bad-1", false);
    bad.as_object_mut().unwrap().remove("event_type");
    publish_with_trace_header(&nc, &subject, &bad, &traceparent("bad-1"));

    let log = rig.dir.path().join("runner.log");
    let mut runner = RunnerProcess::start_logged_with(
        &config,
        &log,
        &[
            ("RUNNER_LOG", "info,runner=debug"),
            ("RUNNER_LOG_FORMAT", "json"),
        ],
    );
    let seen = |order: &str| {
        gateway
            .received()
            .iter()
            .filter(|c| c.body["aggregate_id"] == order)
            .count()
    };
    assert!(
        wait_until(WAIT, || seen("o-1") == 2
            && seen("o-2") == 1
            && !rig.store.dead_letters(&acme(), 10).unwrap().is_empty()
            && !rig.store.quarantined(Some(&acme()), 10).unwrap().is_empty()),
        "MarkPaid refused once then accepted (o-1), accepted (o-2), given up on (o-3), one message quarantined; gateway saw {:?}",
        gateway.received().iter().map(|c| c.body["aggregate_id"].clone()).collect::<Vec<_>>()
    );
    runner.terminate();
    let status = runner.wait_exit(Duration::from_secs(60)).expect("exits");
    assert_eq!(status.code(), Some(0));

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let mut about_messages = 0;
    for line in &lines {
        let Some(correlation) = line["correlation_id"].as_str().filter(|c| !c.is_empty()) else {
            continue;
        };
        about_messages += 1;
        let trace = line["trace_id"].as_str().unwrap_or_default();
        assert_eq!(
            Some(trace),
            trace_of(correlation),
            "a line about {correlation} names its trace id: {line}"
        );
    }
    let has = |msg: &str, correlation: &str| {
        lines.iter().any(|l| {
            l["msg"].as_str().is_some_and(|m| m.starts_with(msg))
                && l["correlation_id"] == correlation
        })
    };
    for (msg, correlation) in [
        ("dispatch failed; will retry", "o-1"),
        ("giving up on an outbox item", "o-3"),
        ("message quarantined", "bad-1"),
        ("effect called (log provider)", "o-2"),
    ] {
        assert!(
            has(msg, correlation),
            "a line {msg:?} about {correlation}:\n{text}"
        );
    }
    eprintln!("{about_messages} lines about a message, each with its trace id");

    // o-2's MarkPaid continues the trace its event brought in a header.
    let o2 = gateway
        .received()
        .into_iter()
        .find(|c| c.body["aggregate_id"] == "o-2")
        .unwrap();
    let tp = o2.header("traceparent").unwrap_or_default();
    assert!(tp.contains(trace_of("o-2").unwrap()), "{tp}");
}

/// A message whose trace context comes only as a header: the command it causes
/// continues that trace, in its metadata and in its own `traceparent` header.
#[test]
fn a_traceparent_header_reaches_the_command_the_message_causes() {
    let rig = Rig::new(recorder_saga());
    let nc = rig.connect();
    let pipeline = rig.start();
    let mut body = common::event("e-1", "acme", "o-2", "OrderPlaced", json!({"n": 1}));
    body["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("traceparent");
    let header_tp = traceparent("o-2");
    publish_with_trace_header(
        &nc,
        &rig.aggregate_subject("acme", "OrderPlaced"),
        &body,
        &header_tp,
    );
    await_stats(&pipeline, |s| s.acked == 1 && s.relayed == 1);
    let commands = rig.published_commands(&nc, 10);
    assert_eq!(commands.len(), 1);
    let trace = trace_of("o-2").unwrap();
    let tp = runner::nats_io::header(&commands[0], "traceparent").unwrap_or_default();
    assert!(
        tp.starts_with(&format!("00-{trace}-")) && tp != header_tp,
        "the command's header continues the trace with a span of its own: {tp:?}"
    );
    let envelope: Value = serde_json::from_slice(&commands[0].data).unwrap();
    assert_eq!(envelope["metadata"]["traceparent"], tp);
}
