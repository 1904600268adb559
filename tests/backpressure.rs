//! Backpressure: a slow stage slows fetching instead of growing memory. With commits
//! slowed down on purpose (a slow disk), messages wait in the stream, not in the
//! Runner: what it holds fetched-but-unfinished stays within what its bounded channels
//! can hold, however large the consumer's own `max_ack_pending`; the channel-occupancy
//! gauge in front of the commit stage shows where the pressure is.

mod common;

use std::time::{Duration, Instant};

use common::{await_stats, recorder_saga, Rig};
use runner::nats_io::Publisher;
use serde_json::json;

const EVENTS: u64 = 3_000;

#[test]
fn a_slow_commit_stage_slows_fetching_instead_of_growing_memory() {
    let mut rig = Rig::new(recorder_saga());
    let s = &mut rig.settings;
    s.pipeline.channel_capacity = 4;
    s.consumer.fetch_batch = 32;
    s.pipeline.commit_batch_max = 32;
    // JetStream alone would let this many wait unacked in the Runner's memory.
    s.consumer.max_ack_pending = 10_000;
    // What the stages can hold: three channels of `channel_capacity` batches, one batch
    // in each of fetch, decode and execute, and one commit group (with its batches).
    let bound = (3 * 4 + 3) * 32 + 2 * 32;
    let pipeline = rig.start();
    rig.store.inject_commit_delay(20);

    let nc = rig.connect();
    let mut publisher = Publisher::new(&nc, 256, Duration::from_secs(5), 3).unwrap();
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    for i in 0..EVENTS {
        let id = format!("e-{i}");
        let body = common::event(
            &id,
            "acme",
            &format!("o-{}", i % 50),
            "OrderPlaced",
            json!({"n": i}),
        );
        publisher.publish(
            i,
            &subject,
            &id,
            nats::header::HeaderMap::new(),
            body.to_string().into_bytes(),
        );
    }
    assert!(publisher.finish().iter().all(|c| c.result.is_ok()));

    let (mut most_held, mut most_waiting_in_stream, mut fullest_commit_queue) = (0, 0, 0);
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let s = pipeline.stats();
        most_held = most_held.max(s.fetched.saturating_sub(s.finished()));
        fullest_commit_queue = fullest_commit_queue.max(s.queue_commit);
        let info = rig.consumer_info(&nc, "aggregate");
        most_waiting_in_stream = most_waiting_in_stream.max(info.num_pending);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        most_held <= bound,
        "held {most_held} fetched-but-unfinished messages; the channels bound it at {bound}"
    );
    assert!(
        most_waiting_in_stream >= 1_000,
        "the backlog waited in the stream ({most_waiting_in_stream} pending at most)"
    );
    assert!(
        fullest_commit_queue >= 3,
        "the gauge in front of the slow stage filled up ({fullest_commit_queue} of 4)"
    );

    rig.store.inject_commit_delay(0);
    await_stats(&pipeline, |s| s.acked == EVENTS);
}
