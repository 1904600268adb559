//! Durable consumers: reconciled with the settings at start, recreated when deleted.

mod common;

use common::{await_stats, recorder_saga, Rig};
use runner::nats_io::{ensure_consumer, saga_consumers, StreamError};

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
    rig.send(&nc, "e-1", "o-1", 1);
    await_stats(&pipeline, |s| s.acked == 1);

    let js = nats::jetstream::new(nc.clone());
    let spec = &saga_consumers(&rig.settings)[0];
    js.delete_consumer(&spec.stream, &spec.durable).unwrap();
    rig.send(&nc, "e-2", "o-1", 2);
    // The recreated consumer starts from the beginning: e-1 again (a duplicate), then e-2.
    await_stats(&pipeline, |s| s.acked == 3);
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
