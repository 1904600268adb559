//! Durable consumers: reconciled with the settings at start, recreated when deleted.

mod common;

use common::{event, recorder_saga, wait_until, Rig, WAIT};
use runner::nats_io::{ensure_consumer, saga_consumers, StreamError};
use serde_json::json;

#[test]
fn an_existing_consumer_is_updated_or_refused_naming_the_field() {
    let rig = Rig::new(recorder_saga());
    let js = nats::jetstream::new(rig.connect());
    let spec = saga_consumers(&rig.settings)[0].clone();
    let created = ensure_consumer(&js, &spec, &rig.settings).unwrap();
    assert_eq!(
        created.config.max_deliver, -1,
        "the server never drops messages itself"
    );

    let mut longer = rig.settings.clone();
    longer.consumer.ack_wait_ms = 4_000;
    let updated = ensure_consumer(&js, &spec, &longer).unwrap();
    assert_eq!(updated.config.ack_wait.as_millis(), 4_000);

    let mut filtered = spec.clone();
    filtered.filter = format!("{}.aggregate.acme.>", rig.ns);
    let refiltered = ensure_consumer(&js, &filtered, &longer).unwrap();
    assert_eq!(refiltered.config.filter_subject, filtered.filter);

    // What the server cannot change is refused with the field named.
    let mut other = spec.clone();
    other.durable = format!("{}-ackall", spec.durable);
    js.add_consumer(
        spec.stream.as_str(),
        nats::jetstream::ConsumerConfig {
            durable_name: Some(other.durable.clone()),
            ack_policy: nats::jetstream::AckPolicy::All,
            ..Default::default()
        },
    )
    .unwrap();
    let err = ensure_consumer(&js, &other, &rig.settings).unwrap_err();
    assert!(
        matches!(&err, StreamError::ConsumerMismatch { differences, .. } if differences.contains("ack_policy")),
        "{err}"
    );
}

#[test]
fn a_deleted_consumer_is_recreated_and_nothing_is_applied_twice() {
    let rig = Rig::new(recorder_saga());
    let nc = rig.connect();
    let pipeline = rig.start();
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    rig.publish(
        &nc,
        &subject,
        &event("e-1", "acme", "o-1", "OrderPlaced", json!({"n": 1})),
    );
    assert!(wait_until(WAIT, || pipeline.stats().acked == 1));

    let js = nats::jetstream::new(nc.clone());
    let spec = &saga_consumers(&rig.settings)[0];
    js.delete_consumer(&spec.stream, &spec.durable).unwrap();
    rig.publish(
        &nc,
        &subject,
        &event("e-2", "acme", "o-1", "OrderPlaced", json!({"n": 2})),
    );
    // The recreated consumer starts from the beginning: e-1 again (a duplicate), then e-2.
    assert!(
        wait_until(WAIT, || pipeline.stats().acked == 3),
        "{:?}",
        pipeline.stats()
    );
    let stats = pipeline.stats();
    assert_eq!((stats.transitions, stats.duplicates), (2, 1));
    let rec = rig
        .store
        .saga(
            &"acme".parse().unwrap(),
            &"recorder".parse().unwrap(),
            &"o-1".parse().unwrap(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(rec.state["log"], "1,2,");
}
