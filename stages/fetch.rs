//! Fetch: pulls batches from one durable consumer and forwards them as they arrive.
//!
//! `fetch(n)` on a pull subscription would block until n messages exist, so each pull
//! request carries an expiry and the stage forwards whatever has arrived so far; a
//! forwarded batch holds at most `fetch_batch` messages. A full downstream channel
//! blocks the send, which stops further pull requests: that is the backpressure.

use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use nats::jetstream::{BatchOptions, JetStream, PullSubscribeOptions, PullSubscription};

use crate::nats_io::{is_status, ConsumerSpec, StreamError};
use crate::pipeline::{FetchedBatch, Shared, Stats};

/// Binds to the durable consumer `spec` (which must exist).
pub fn subscribe(js: &JetStream, spec: &ConsumerSpec) -> Result<PullSubscription, StreamError> {
    let options = PullSubscribeOptions::new()
        .bind_stream(spec.stream.clone())
        .durable_name(spec.durable.clone());
    // The subject only has to match the consumer's filter; an unfiltered consumer
    // takes any.
    let subject = if spec.filter.is_empty() {
        ">"
    } else {
        spec.filter.as_str()
    };
    js.pull_subscribe_with_options(subject, &options)
        .map_err(|source| StreamError::JetStream {
            what: format!("bind consumer {} on {}", spec.durable, spec.stream),
            source,
        })
}

/// Longest a single wait blocks, so shutdown is noticed promptly.
const POLL: Duration = Duration::from_millis(100);

pub fn run(
    shared: &Shared,
    spec: &ConsumerSpec,
    sub: &PullSubscription,
    nc: &nats::Connection,
    out: &Sender<FetchedBatch>,
) {
    let batch = shared.settings.consumer.fetch_batch;
    let wait = Duration::from_millis(shared.settings.consumer.fetch_wait_ms);
    let intake = &shared.intake;
    log::info!(stream = spec.stream.as_str(), consumer = spec.durable.as_str(); "fetch stage started");
    while !intake.is_shutting_down() {
        if intake.is_stopped() {
            // Whatever an earlier pull request still delivers is dropped now, so that on
            // resumption nothing fetched before the stop overtakes the redeliveries.
            while let Some(msg) = sub.try_next() {
                shared.drop_unacked_msg(&msg);
            }
            std::thread::sleep(POLL);
            continue;
        }
        let request = BatchOptions {
            batch,
            expires: Some(wait.as_nanos() as usize),
            no_wait: false,
        };
        if let Err(e) = sub.request_batch(request) {
            log::warn!(stream = spec.stream.as_str(), error = e.to_string(); "pull request failed; retrying");
            std::thread::sleep(POLL);
            continue;
        }
        // The client would otherwise hold the request for up to 5 ms.
        let _ = nc.flush_timeout(wait);
        let deadline = Instant::now() + wait + Duration::from_millis(50);
        let mut remaining = batch;
        while remaining > 0 && Instant::now() < deadline && !intake.is_shutting_down() {
            let first = match sub
                .next_timeout(POLL.min(deadline.saturating_duration_since(Instant::now())))
            {
                Ok(msg) => msg,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                // The request expired (408) or the subscription ended.
                Err(_) => break,
            };
            if is_status(&first) {
                break;
            }
            let mut msgs = Vec::with_capacity(remaining.min(64));
            msgs.push(first);
            while msgs.len() < remaining {
                match sub.try_next() {
                    Some(m) if is_status(&m) => break,
                    Some(m) => msgs.push(m),
                    None => break,
                }
            }
            remaining -= msgs.len();
            Stats::add(&shared.stats.fetched, msgs.len() as u64);
            if intake.is_stopped() {
                // Not acked: JetStream redelivers them once intake resumes.
                msgs.iter().for_each(|m| shared.drop_unacked_msg(m));
                continue;
            }
            let batch = FetchedBatch {
                epoch: intake.epoch(),
                msgs,
            };
            if out.send(batch).is_err() {
                return;
            }
        }
    }
    log::info!(stream = spec.stream.as_str(); "fetch stage stopped");
}
