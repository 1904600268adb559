//! The effect pool against a real nats-server, a real LMDB store and a real HTTP server
//! playing the upstream.

mod common;

use std::time::Duration;

use common::{await_stats, recorder_saga, Rig};
use runner::dev::{FakeGateway, Reply};
use runner::settings::Mode;
use runner::types::{TenantId, WorkId};
use serde_json::{json, Value};

/// A rig in effect mode whose `charge` effect POSTs to `upstream`.
fn effect_rig(upstream: &FakeGateway, max_attempts: u32) -> Rig {
    let mut rig = Rig::new(recorder_saga());
    let manifest = rig.dir.path().join("effects.json");
    let effects = json!({"effects": [{
        "name": "charge", "provider": "http", "timeout_ms": 500,
        "retry": {"max_attempts": max_attempts, "backoff_initial_ms": 20, "backoff_max_ms": 100},
        "http": {"url": format!("{}/v1/charges", upstream.url()),
                 "body": {"order": {"$get": "command.payload.order"}}}
    }]});
    std::fs::write(&manifest, effects.to_string()).unwrap();
    rig.settings.mode = Mode::Effect;
    rig.settings.manifests.effects = vec![manifest];
    rig.settings.effects.workers = 4;
    rig
}

fn command(rig: &Rig, id: &str) -> (String, Value) {
    (
        format!("{}.acme.charge", rig.settings.streams.command_prefix),
        json!({"tenant_id": "acme", "command_id": id, "effect_name": "charge",
               "payload": {"order": "o-1"},
               "metadata": {"correlation_id": "o-1", "saga_name": "order", "causation_id": "e-1",
                            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
               "issued_at": "2026-11-27T10:00:00Z"}),
    )
}

fn results(rig: &Rig, nc: &nats::Connection) -> Vec<(nats::Message, Value)> {
    rig.result_messages(nc, 10)
        .into_iter()
        .map(|m| {
            let body = serde_json::from_slice(&m.data).unwrap();
            (m, body)
        })
        .collect()
}

fn completion(rig: &Rig, id: &str) -> Option<runner::store::StoredCompletion> {
    let tenant: TenantId = "acme".parse().unwrap();
    let id: WorkId = id.parse().unwrap();
    rig.store.effect_completion(&tenant, &id).unwrap()
}

#[test]
fn a_command_is_called_and_its_result_published_with_the_commands_context() {
    let upstream = FakeGateway::start(|_, _| Reply {
        body: r#"{"charge_id": "ch-1"}"#.into(),
        ..Reply::status(201)
    })
    .unwrap();
    let rig = effect_rig(&upstream, 3);
    let pipeline = rig.start();
    let nc = rig.connect();
    let (subject, cmd) = command(&rig, "cmd-1");
    rig.publish(&nc, &subject, &cmd);
    await_stats(&pipeline, |s| {
        s.effect_results_published == 1 && s.effect_commands_acked == 1
    });
    let calls = upstream.received();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].header("idempotency-key"), Some("cmd-1"));
    assert_eq!(calls[0].body, json!({"order": "o-1"}));
    let results = results(&rig, &nc);
    assert_eq!(results.len(), 1);
    let (msg, r) = &results[0];
    assert_eq!(
        msg.subject,
        format!("{}.acme.charge", rig.settings.streams.result_prefix)
    );
    assert_eq!(
        runner::nats_io::header(msg, "Nats-Msg-Id"),
        r["event_id"].as_str()
    );
    assert_eq!(
        runner::nats_io::header(msg, "x-correlation-id"),
        Some("o-1")
    );
    assert_eq!(r["result_type"], "succeeded");
    assert_eq!(r["command_id"], "cmd-1");
    assert_eq!(r["payload"]["body"]["charge_id"], "ch-1");
    assert_eq!(
        r["metadata"]["causation_id"], "e-1",
        "metadata travels whole"
    );
    // The record keeps the outcome only (the command gives the rest), and so rebuilds
    // the result first published.
    let Some(runner::store::StoredCompletion::Outcome(done)) = completion(&rig, "cmd-1") else {
        panic!("the outcome is recorded");
    };
    assert_eq!(done.timestamp, r["timestamp"].as_str().unwrap());
    assert_eq!(json!(done.result_type), r["result_type"]);
}

/// A command published by someone other than the relay, its correlation id and trace
/// context in headers only: its result continues them (invariant 4).
#[test]
fn a_command_traced_in_headers_only_gets_a_result_in_that_trace() {
    let upstream = FakeGateway::start(|_, _| Reply::status(201)).unwrap();
    let rig = effect_rig(&upstream, 3);
    let pipeline = rig.start();
    let nc = rig.connect();
    let (subject, mut cmd) = command(&rig, "cmd-h");
    cmd["metadata"] = json!({"saga_name": "order"});
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut headers = nats::header::HeaderMap::new();
    headers.insert("x-tenant-id", "acme");
    headers.insert("x-correlation-id", "o-9");
    headers.insert("traceparent", tp);
    let msg = nats::Message::new(&subject, None, cmd.to_string(), Some(headers));
    nats::jetstream::new(nc.clone())
        .publish_message(&msg)
        .unwrap();
    await_stats(&pipeline, |s| s.effect_results_published == 1);
    let results = results(&rig, &nc);
    let (msg, r) = &results[0];
    assert_eq!(r["metadata"]["traceparent"], tp);
    assert_eq!(r["metadata"]["correlation_id"], "o-9");
    assert_eq!(runner::nats_io::header(msg, "traceparent"), Some(tp));
    assert_eq!(
        runner::nats_io::header(msg, "x-correlation-id"),
        Some("o-9")
    );
}

/// An effect pool that called `cmd-1` once and published its result (fields in the
/// order they are dropped).
struct CalledOnce {
    subject: String,
    cmd: Value,
    nc: nats::Connection,
    pipeline: runner::stages::Pipeline,
    rig: Rig,
    upstream: FakeGateway,
}

impl CalledOnce {
    fn start() -> CalledOnce {
        let upstream = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
        let rig = effect_rig(&upstream, 3);
        let pipeline = rig.start();
        let nc = rig.connect();
        let (subject, cmd) = command(&rig, "cmd-1");
        rig.publish(&nc, &subject, &cmd);
        await_stats(&pipeline, |s| s.effect_results_published == 1);
        CalledOnce {
            subject,
            cmd,
            nc,
            pipeline,
            rig,
            upstream,
        }
    }

    /// The same command again (published without a Nats-Msg-Id, so the stream keeps
    /// it), until its recorded result was published again.
    fn replayed(&self) {
        self.rig.publish(&self.nc, &self.subject, &self.cmd);
        await_stats(&self.pipeline, |s| {
            s.effect_results_replayed == 1 && s.effect_results_published == 2
        });
        assert_eq!(
            self.upstream.received().len(),
            1,
            "one call for one command id"
        );
    }
}

#[test]
fn the_idempotency_gate_stops_a_second_call_for_the_same_command() {
    let once = CalledOnce::start();
    once.replayed();
    assert_eq!(
        results(&once.rig, &once.nc).len(),
        1,
        "the re-published result was deduplicated"
    );
    assert_eq!(once.pipeline.stats().effects_called, 1);
}

#[test]
fn a_command_recorded_here_is_replayed_without_a_claim_created_for_it() {
    let once = CalledOnce::start();
    let js = nats::jetstream::new(once.nc.clone());
    let bucket = once.rig.settings.effects.claims_bucket.clone();
    let key = "acme.cmd-1";
    let put =
        |e: Option<nats::kv::Entry>| e.is_some_and(|e| e.operation == nats::kv::Operation::Put);
    let held = js.key_value(&bucket).unwrap().entry(key).unwrap();
    assert!(put(held), "the call held a claim");
    // The claims are gone (the bucket replaced by an empty one); the record stays.
    js.delete_key_value(&bucket).unwrap();
    let claims = js
        .create_key_value(&nats::kv::Config {
            bucket: bucket.clone(),
            history: 1,
            ..Default::default()
        })
        .unwrap();
    once.replayed();
    // The record answers the gate before it asks for a claim, so the splitter, which
    // creates the claims ahead of the workers, created none.
    assert!(!put(claims.entry(key).unwrap()), "no claim for a replay");
}

#[test]
fn a_failed_result_publish_leaves_the_command_open_and_redelivery_does_not_call_again() {
    let upstream = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let rig = effect_rig(&upstream, 3);
    // First run: results go to a subject no stream captures, so their publish fails.
    let mut broken = rig.settings.clone();
    broken.streams.result_prefix = format!("{}.nowhere", rig.ns);
    let first = rig.start_with(broken);
    let nc = rig.connect();
    let (subject, cmd) = command(&rig, "cmd-1");
    rig.publish(&nc, &subject, &cmd);
    await_stats(&first, |s| s.effects_called == 1 && s.dropped_stale >= 1);
    completion(&rig, "cmd-1").expect("the call's end is recorded");
    assert_eq!(first.stats().effect_results_published, 0);
    assert_eq!(first.stats().effect_commands_acked, 0, "left unacked");
    first.shutdown();

    let second = rig.start();
    // Acked only after the recorded result's publish was acked.
    await_stats(&second, |s| s.effect_commands_acked == 1);
    assert_eq!(second.stats().effects_called, 0);
    assert_eq!(
        upstream.received().len(),
        1,
        "the upstream was called once in all"
    );
    let results = results(&rig, &nc);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].1["result_type"], "succeeded");
}

#[test]
fn retries_then_a_failed_result_and_an_effect_not_defined_here_waits() {
    let upstream = FakeGateway::start(|_, n| Reply::status(if n < 1 { 503 } else { 422 })).unwrap();
    let rig = effect_rig(&upstream, 3);
    let pipeline = rig.start();
    let nc = rig.connect();
    let (subject, cmd) = command(&rig, "cmd-1");
    rig.publish(&nc, &subject, &cmd);
    let (_, mut unknown) = command(&rig, "cmd-2");
    unknown["effect_name"] = json!("teleport");
    rig.publish(
        &nc,
        &format!("{}.acme.teleport", rig.settings.streams.command_prefix),
        &unknown,
    );
    await_stats(&pipeline, |s| {
        s.effect_results_published == 1 && s.effects_failed == 1
    });
    assert_eq!(upstream.received().len(), 2, "503 retried, 422 not");
    let results = results(&rig, &nc);
    assert_eq!(results.len(), 1, "only charge has a result");
    let charged = &results[0].1;
    assert_eq!(charged["command_id"], "cmd-1");
    assert_eq!(charged["result_type"], "failed");
    assert_eq!(charged["attempts"], 2);
    assert_eq!(charged["error"]["kind"], "http_422");
    // teleport is defined nowhere: its command waits in the stream (no consumer of
    // this process selects it), neither delivered here nor failed.
    std::thread::sleep(Duration::from_millis(500));
    let stats = pipeline.stats();
    assert_eq!((stats.fetched, stats.effects_unknown_put_back), (1, 0));
    assert_eq!(results.len(), 1);
}

/// A command that reaches a worker although this process does not define its effect
/// (the way one does that was fetched just before a reload dropped the effect; here its
/// body names another effect than its subject) is put back for a process that defines
/// it: not called, not failed, not acked (invariants 1 and 3).
#[test]
fn a_command_of_an_effect_not_defined_here_that_reaches_a_worker_is_put_back_unacked() {
    let upstream = FakeGateway::accepting().unwrap();
    let rig = effect_rig(&upstream, 3);
    let pipeline = rig.start();
    let nc = rig.connect();
    let (subject, mut cmd) = command(&rig, "cmd-t");
    cmd["effect_name"] = json!("teleport");
    rig.publish(&nc, &subject, &cmd);
    await_stats(&pipeline, |s| s.effects_unknown_put_back >= 1);
    let stats = pipeline.stats();
    assert_eq!((stats.effects_called, stats.effects_failed), (0, 0));
    assert_eq!(stats.effect_commands_acked, 0);
    assert!(upstream.received().is_empty(), "no call");
    assert!(results(&rig, &nc).is_empty(), "no result");
    assert!(completion(&rig, "cmd-t").is_none(), "nothing recorded");
    let consumer = runner::nats_io::effect_consumer(&rig.settings, "charge");
    let info = nats::jetstream::new(nc.clone())
        .consumer_info(&consumer.stream, &consumer.durable)
        .unwrap();
    assert_eq!(
        (info.num_ack_pending, info.ack_floor.stream_seq),
        (1, 0),
        "left unacked, for redelivery"
    );
}

#[test]
fn a_command_that_is_not_an_effect_command_is_quarantined() {
    let upstream = FakeGateway::accepting().unwrap();
    let rig = effect_rig(&upstream, 3);
    let pipeline = rig.start();
    let nc = rig.connect();
    let subject = format!("{}.acme.charge", rig.settings.streams.command_prefix);
    rig.publish_raw(&nc, &subject, b"{ not json");
    await_stats(&pipeline, |s| s.quarantined == 1);
    // Its subject names acme and no header says otherwise: acme's record.
    let tenant: TenantId = "acme".parse().unwrap();
    let q = rig.store.quarantined(Some(&tenant), 10).unwrap();
    assert_eq!(q.len(), 1);
    assert!(q[0].reason.contains("not valid JSON"), "{}", q[0].reason);
    assert!(upstream.received().is_empty());
}

/// A call longer than the ack wait (1 s here) is kept alive with in-progress acks, so
/// JetStream does not hand the command to another worker mid-call.
#[test]
fn a_call_longer_than_the_ack_wait_is_not_redelivered_mid_call() {
    let upstream = FakeGateway::start(|_, _| Reply {
        delay: Duration::from_millis(2_500),
        ..Reply::status(200)
    })
    .unwrap();
    let mut rig = effect_rig(&upstream, 1);
    let manifest = rig.dir.path().join("slow.json");
    let effects = json!({"effects": [{"name": "charge", "provider": "http", "timeout_ms": 5000,
        "http": {"url": format!("{}/v1/charges", upstream.url())}}]});
    std::fs::write(&manifest, effects.to_string()).unwrap();
    rig.settings.manifests.effects = vec![manifest];
    let pipeline = rig.start();
    let nc = rig.connect();
    let (subject, cmd) = command(&rig, "cmd-slow");
    rig.publish(&nc, &subject, &cmd);
    await_stats(&pipeline, |s| s.effect_commands_acked == 1);
    // Longer than another ack wait: a redelivery would have shown up by now.
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(upstream.received().len(), 1);
    assert_eq!(pipeline.stats().effects_called, 1);
}

#[test]
fn an_effect_pool_whose_intake_stopped_on_a_store_failure_resumes_by_itself() {
    let upstream = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let rig = effect_rig(&upstream, 1);
    let pipeline = rig.start();
    // What a failed completion write does (I/O error, full store): intake stops. There
    // is no commit stage in effect mode; the effect fetch probes the store instead.
    pipeline.intake().stop("injected: store unavailable".into());
    let nc = rig.connect();
    let (subject, body) = command(&rig, "cmd-after-stop");
    rig.publish(&nc, &subject, &body);
    assert!(
        common::wait_until(common::WAIT, || !pipeline.intake().is_stopped()),
        "intake resumes once the store is writable"
    );
    await_stats(&pipeline, |s| s.effect_commands_acked == 1);
    assert!(completion(&rig, "cmd-after-stop").is_some());
}
