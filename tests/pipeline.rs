//! The saga pipeline against a real nats-server and a real LMDB store.

mod common;

use std::time::Duration;

use common::{await_stats, event, recorder_saga, wait_until, Rig, WAIT};
use runner::store::{InstanceStatus, QuarantineKind};
use runner::types::{CorrelationId, SagaName, TenantId};
use serde_json::json;

fn recorder() -> SagaName {
    "recorder".parse().unwrap()
}

fn acme() -> TenantId {
    "acme".parse().unwrap()
}

fn corr(s: &str) -> CorrelationId {
    s.parse().unwrap()
}

fn log_of(rig: &Rig, order: &str) -> Option<String> {
    rig.store
        .saga(&acme(), &recorder(), &corr(order))
        .unwrap()
        .map(|r| r.state["log"].as_str().unwrap_or_default().to_string())
}

#[test]
fn events_become_committed_transitions_and_are_acked() {
    let rig = Rig::new(recorder_saga());
    let pipeline = rig.start();
    let nc = rig.connect();
    rig.send(&nc, "e-1", "o-1", 1);
    await_stats(&pipeline, |s| s.acked == 1);
    assert_eq!(log_of(&rig, "o-1").as_deref(), Some("1,"));
    let cp = rig.store.checkpoint(&acme(), &recorder()).unwrap();
    assert_eq!(cp.streams[&rig.settings.streams.aggregate_events], 1);
    // The command left through the relay: published once, then deleted from the outbox.
    await_stats(&pipeline, |s| s.relayed == 1);
    assert!(rig.store.outbox(&acme(), 10).unwrap().is_empty());
    let published = rig.published_commands(&nc, 10);
    assert_eq!(published.len(), 1);
    assert_eq!(
        published[0].subject,
        format!("{}.workflow.cmd.acme.note", rig.ns)
    );
    assert!(wait_until(WAIT, || rig
        .consumer_info(&nc, "aggregate")
        .ack_floor
        .stream_seq
        == 1));
}

#[test]
fn redelivery_of_a_committed_event_changes_nothing() {
    let rig = Rig::new(recorder_saga());
    let nc = rig.connect();
    rig.send(&nc, "e-1", "o-1", 1);
    let first = rig.start();
    await_stats(&first, |s| s.acked == 1);
    first.shutdown();
    let before = rig
        .store
        .saga(&acme(), &recorder(), &corr("o-1"))
        .unwrap()
        .unwrap();

    // A new durable consumer delivers the same stream message again to the same store:
    // what JetStream does after a crash between commit and ack.
    let mut again = rig.settings.clone();
    again.consumer.durable = format!("{}-again", again.consumer.durable);
    let second = rig.start_with(again);
    await_stats(&second, |s| s.acked == 1);
    // And the same event_id published a second time, as a producer retry would.
    rig.send(&nc, "e-1", "o-1", 1);
    await_stats(&second, |s| s.acked == 2);
    let stats = second.stats();
    assert_eq!((stats.transitions, stats.duplicates), (0, 2));
    assert_eq!(
        rig.store
            .saga(&acme(), &recorder(), &corr("o-1"))
            .unwrap()
            .unwrap(),
        before
    );
    // The duplicates wrote no outbox items: one command in all.
    assert!(wait_until(WAIT, || rig
        .store
        .outbox(&acme(), 10)
        .unwrap()
        .is_empty()));
    assert_eq!(rig.published_commands(&nc, 10).len(), 1);
}

#[test]
fn a_failing_commit_is_not_acked_and_the_message_is_redelivered() {
    let rig = Rig::new(recorder_saga());
    let nc = rig.connect();
    rig.store.inject_commit_failures(1);
    let pipeline = rig.start();
    rig.send(&nc, "e-1", "o-1", 1);
    await_stats(&pipeline, |s| s.commit_failures == 1);
    // Nothing was written and nothing acked: the consumer still holds the message.
    assert_eq!(log_of(&rig, "o-1"), None);
    let info = rig.consumer_info(&nc, "aggregate");
    assert_eq!(info.ack_floor.stream_seq, 0);
    assert_eq!(pipeline.stats().acked, 0);
    // After the ack wait JetStream redelivers it; this time the commit succeeds.
    await_stats(&pipeline, |s| s.acked == 1);
    assert_eq!(
        log_of(&rig, "o-1").as_deref(),
        Some("1,"),
        "applied exactly once"
    );
    assert!(
        pipeline.stats().fetched >= 2,
        "the message came a second time"
    );
    assert!(wait_until(WAIT, || rig
        .consumer_info(&nc, "aggregate")
        .ack_floor
        .stream_seq
        == 1));
}

#[test]
fn events_of_one_instance_apply_in_order_while_instances_interleave() {
    let rig = Rig::new(recorder_saga());
    let nc = rig.connect();
    let mut settings = rig.settings.clone();
    // Small pulls and channels: many batches, pipelined across the stages.
    settings.consumer.fetch_batch = 7;
    settings.pipeline.channel_capacity = 2;
    settings.pipeline.commit_batch_max = 16;
    let subject = rig.aggregate_subject("acme", "Step");
    let orders = ["o-a", "o-b", "o-c", "o-d"];
    let per_order = 40;
    let events: Vec<(String, serde_json::Value)> = (0..per_order)
        .flat_map(|n| orders.iter().map(move |o| (format!("{o}-{n}"), *o, n)))
        .map(|(id, o, n)| {
            (
                subject.clone(),
                event(&id, "acme", o, "Step", json!({"n": n})),
            )
        })
        .collect();
    runner::dev::publish_all(&nc, &events).unwrap();
    let pipeline = rig.start_with(settings);
    let total = (orders.len() * per_order) as u64;
    await_stats(&pipeline, |s| s.acked == total);
    let expected: String = (0..per_order).map(|n| format!("{n},")).collect();
    for o in orders {
        assert_eq!(
            log_of(&rig, o).as_deref(),
            Some(expected.as_str()),
            "instance {o}"
        );
        let rec = rig
            .store
            .saga(&acme(), &recorder(), &corr(o))
            .unwrap()
            .unwrap();
        assert_eq!(rec.transitions, per_order as u64);
    }
    assert!(
        pipeline.stats().commits < total,
        "group commit: {:?}",
        pipeline.stats()
    );
}

#[test]
fn poison_message_is_quarantined_and_terminated() {
    let rig = Rig::new(recorder_saga());
    let nc = rig.connect();
    let pipeline = rig.start();
    let mut headers = nats::header::HeaderMap::new();
    headers.insert("x-tenant-id", "acme");
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    let js = nats::jetstream::new(nc.clone());
    // On the single tenant's subject, without a header: filed under `_`; the one on
    // acme's subject is acme's (the subject names the tenant).
    js.publish_with_options(
        &rig.aggregate_subject("_", "OrderPlaced"),
        b"{\"event_id\": 17",
        &nats::jetstream::PublishOptions::default(),
    )
    .unwrap();
    nc.publish_with_reply_or_headers(&subject, None, Some(&headers), b"not json at all")
        .unwrap();
    rig.send(&nc, "e-ok", "o-1", 1);
    await_stats(&pipeline, |s| s.finished() == 3);
    assert_eq!(pipeline.stats().quarantined, 2);
    let records = rig.store.quarantined(Some(&acme()), 10).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].kind, QuarantineKind::Decode);
    assert!(
        records[0].reason.contains("not valid JSON"),
        "{}",
        records[0].reason
    );
    assert_eq!(records[0].body_excerpt, "not json at all");
    assert_eq!(
        rig.store
            .quarantined(Some(&TenantId::single()), 10)
            .unwrap()
            .len(),
        1
    );
    // Terminated, not left for redelivery: after more than an ack wait nothing came back.
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(pipeline.stats().fetched, 3);
    let info = rig.consumer_info(&nc, "aggregate");
    assert_eq!((info.num_ack_pending, info.num_redelivered), (0, 0));
    assert_eq!(
        log_of(&rig, "o-1").as_deref(),
        Some("1,"),
        "good messages still flow"
    );
}

/// Two earlier "runners" took the message and died without acking it (a message that
/// crashes the process looks like this); the third delivery exceeds max_deliver = 2.
#[test]
fn exceeding_max_deliver_is_quarantined() {
    let rig = Rig::new(recorder_saga());
    let nc = rig.connect();
    let mut settings = rig.settings.clone();
    settings.consumer.max_deliver = 2;
    let js = nats::jetstream::new(nc.clone());
    let spec = &runner::nats_io::saga_consumers(&settings)[0];
    runner::nats_io::ensure_consumer(&js, spec, &settings).unwrap();
    rig.send(&nc, "e-1", "o-1", 1);
    let crashed = runner::stages::fetch::subscribe(&js, spec).unwrap();
    for attempt in 1..=2 {
        crashed.request_batch(1).unwrap();
        let msg = crashed.next_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            runner::nats_io::Delivery::of(&msg).unwrap().delivered,
            attempt
        );
        // Not acked: redelivered after the ack wait.
    }
    drop(crashed);
    let pipeline = rig.start_with(settings);
    await_stats(&pipeline, |s| s.quarantined == 1);
    let records = rig.store.quarantined(Some(&acme()), 10).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].kind, QuarantineKind::MaxDeliver);
    assert_eq!(records[0].delivered, 3);
    assert_eq!(records[0].event_id.as_deref(), Some("e-1"));
    assert_eq!(log_of(&rig, "o-1"), None, "never applied");
}

/// Redeliveries the runner caused itself by failing to commit do not count against
/// max_deliver: a store that fails for a while must not quarantine valid messages.
#[test]
fn storage_failures_do_not_exhaust_max_deliver() {
    let rig = Rig::new(recorder_saga());
    let nc = rig.connect();
    let mut settings = rig.settings.clone();
    settings.consumer.max_deliver = 1;
    rig.store.inject_commit_failures(2);
    let pipeline = rig.start_with(settings);
    rig.send(&nc, "e-1", "o-1", 1);
    await_stats(&pipeline, |s| s.acked == 1);
    let stats = pipeline.stats();
    assert_eq!((stats.commit_failures, stats.quarantined), (2, 0));
    assert!(stats.fetched >= 3, "delivered three times: {stats:?}");
    assert_eq!(log_of(&rig, "o-1").as_deref(), Some("1,"));
}

#[test]
fn program_fault_faults_the_instance_and_terminates_the_message() {
    let saga = json!([{
        "name": "recorder",
        "triggers": [{"subject": "{ns}.aggregate.*.order.*", "start": true, "correlate": {"$get": "event.aggregate_id"}}],
        "on_event": {"output": {"state": {"n": {"$add": [1, {"$get": "event.payload.n"}]}}}}
    }]);
    let rig = Rig::new(saga);
    let nc = rig.connect();
    let pipeline = rig.start();
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    rig.publish(
        &nc,
        &subject,
        &event("e-1", "acme", "o-1", "OrderPlaced", json!({"n": "one"})),
    );
    rig.send(&nc, "e-2", "o-1", 2);
    await_stats(&pipeline, |s| s.finished() == 2);
    let rec = rig
        .store
        .saga(&acme(), &recorder(), &corr("o-1"))
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, InstanceStatus::Faulted);
    assert!(
        rec.fault.as_deref().unwrap_or_default().contains("$add"),
        "{:?}",
        rec.fault
    );
    let q = rig.store.quarantined(Some(&acme()), 10).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].kind, QuarantineKind::Program);
    let stats = pipeline.stats();
    assert_eq!(
        (stats.quarantined, stats.faults, stats.ignored),
        (1, 1, 1),
        "the faulted instance ignores e-2"
    );
}

/// One message whose transition the store refuses (deterministically) is quarantined;
/// the others of its group commit, and intake never stops.
#[test]
fn an_unstorable_transition_is_quarantined_and_its_group_still_commits() {
    let rig = Rig::new(recorder_saga());
    let nc = rig.connect();
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    let events: Vec<(String, serde_json::Value)> = ["o-1", "o-bad", "o-2"]
        .iter()
        .enumerate()
        .map(|(i, o)| {
            (
                subject.clone(),
                event(&format!("e-{i}"), "acme", o, "OrderPlaced", json!({"n": i})),
            )
        })
        .collect();
    runner::dev::publish_all(&nc, &events).unwrap();
    rig.store.inject_unstorable(Some("o-bad"));
    let pipeline = rig.start();
    await_stats(&pipeline, |s| s.finished() == 3);
    let stats = pipeline.stats();
    assert_eq!(
        (stats.acked, stats.quarantined, stats.commit_failures),
        (2, 1, 0)
    );
    assert!(!pipeline.intake().is_stopped());
    assert_eq!(log_of(&rig, "o-1").as_deref(), Some("0,"));
    assert_eq!(log_of(&rig, "o-2").as_deref(), Some("2,"));
    assert_eq!(log_of(&rig, "o-bad"), None);
    let q = rig.store.quarantined(Some(&acme()), 10).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].kind, QuarantineKind::Store);
    assert!(q[0].reason.contains("cannot be stored"), "{}", q[0].reason);
}

/// A message quarantined as unstorable after a later message of the same instance was
/// executed on top of it: that later transition is refused as stale (it would carry the
/// quarantined message's state), nothing of its commit is acked, and it runs again over
/// the stored record, after intake paused for one ack wait (so they come back in order).
#[test]
fn a_transition_built_on_a_quarantined_one_runs_again_over_the_stored_record() {
    let rig = Rig::new(recorder_saga());
    let nc = rig.connect();
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    let events: Vec<(String, serde_json::Value)> = [("e-bad", 1), ("e-next", 2)]
        .iter()
        .map(|(id, n)| {
            (
                subject.clone(),
                event(id, "acme", "o-x", "OrderPlaced", json!({"n": n})),
            )
        })
        .collect();
    runner::dev::publish_all(&nc, &events).unwrap();
    rig.store.inject_unstorable(Some("e-bad"));
    let mut settings = rig.settings.clone();
    // Both in one batch: e-next is executed over e-bad's transition.
    settings.consumer.fetch_batch = 16;
    let pipeline = rig.start_with(settings);
    await_stats(&pipeline, |s| s.finished() == 2);
    let stats = pipeline.stats();
    assert!(stats.stale_refused >= 1, "{stats:?}");
    assert_eq!(
        (stats.acked, stats.quarantined, stats.commit_failures),
        (1, 1, 0),
        "{stats:?}"
    );
    assert!(
        pipeline.intake().stop_reason().is_none(),
        "intake resumed after its pause"
    );
    // e-next applied once, over the stored (empty) record: e-bad's "1," is not in it.
    assert_eq!(log_of(&rig, "o-x").as_deref(), Some("2,"));
    let q = rig.store.quarantined(Some(&acme()), 10).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].event_id.as_deref(), Some("e-bad"));
}

/// Order survives a storage failure in the middle of a live stream: the dropped messages
/// come back before anything newer is applied, and nothing is applied twice.
#[test]
fn order_holds_across_a_commit_failure_while_events_keep_arriving() {
    let rig = Rig::new(recorder_saga());
    let nc = rig.connect();
    let mut settings = rig.settings.clone();
    settings.consumer.fetch_batch = 5;
    settings.pipeline.channel_capacity = 2;
    settings.pipeline.commit_batch_max = 8;
    let pipeline = rig.start_with(settings);
    let subject = rig.aggregate_subject("acme", "Step");
    let orders = ["o-a", "o-b", "o-c"];
    let per_order = 30;
    let all: Vec<(String, serde_json::Value)> = (0..per_order)
        .flat_map(|n| orders.iter().map(move |o| (*o, n)))
        .map(|(o, n)| {
            (
                subject.clone(),
                event(&format!("{o}-{n}"), "acme", o, "Step", json!({"n": n})),
            )
        })
        .collect();
    let (first, rest) = all.split_at(all.len() / 3);
    runner::dev::publish_all(&nc, first).unwrap();
    await_stats(&pipeline, |s| s.acked >= 6);
    rig.store.inject_commit_failures(2);
    for chunk in rest.chunks(7) {
        runner::dev::publish_all(&nc, chunk).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let total = all.len() as u64;
    await_stats(&pipeline, |s| s.acked == total);
    assert!(
        pipeline.stats().commit_failures >= 1,
        "{:?}",
        pipeline.stats()
    );
    let expected: String = (0..per_order).map(|n| format!("{n},")).collect();
    for o in orders {
        assert_eq!(
            log_of(&rig, o).as_deref(),
            Some(expected.as_str()),
            "instance {o}"
        );
    }
}
