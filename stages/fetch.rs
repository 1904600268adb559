//! Fetch: pulls batches from one durable consumer and forwards them as they arrive.
//!
//! `fetch(n)` on a pull subscription would block until n messages exist, so each pull
//! request carries an expiry and the stage forwards whatever has arrived so far; a
//! forwarded batch holds at most `fetch_batch` messages, and no more than
//! `consumer.fetch_max_bytes` worth of the largest message the server takes. A full downstream channel
//! blocks the send, which stops further pull requests: that is the backpressure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use nats::jetstream::{BatchOptions, JetStream, PullSubscribeOptions, PullSubscription};

use crate::nats_io::{ensure_consumer, header, is_status, ConsumerSpec, Flusher, StreamError};
use crate::pipeline::{FetchedBatch, Shared, Stats};
use crate::stages::StageError;

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
/// Pause after a pull that ended abnormally (409, 503…), so a broken consumer is not
/// hammered with requests.
const BACKOFF: Duration = Duration::from_secs(1);

/// How one pull request ended.
enum PullEnd {
    /// Filled or expired: ask again.
    Done,
    /// The next stage is gone: the pipeline is shutting down.
    Closed,
    /// The server ended it with a status other than "request timeout".
    Status { code: String, description: String },
    /// The subscription itself is gone.
    Unsubscribed,
}

pub fn run(
    shared: &Shared,
    js: &JetStream,
    spec: &ConsumerSpec,
    sub: PullSubscription,
    flusher: &Flusher,
    out: &Sender<FetchedBatch>,
) -> Result<(), StageError> {
    run_until(shared, js, spec, sub, flusher, out, &AtomicBool::new(false))
}

/// [`run`] that also ends, handing back what its last pull still delivers, once `stop`
/// is set: an effect consumer the process stops pulling after a reload.
pub fn run_until(
    shared: &Shared,
    js: &JetStream,
    spec: &ConsumerSpec,
    mut sub: PullSubscription,
    flusher: &Flusher,
    out: &Sender<FetchedBatch>,
    stop: &AtomicBool,
) -> Result<(), StageError> {
    let intake = &shared.intake;
    let stopped = || intake.is_shutting_down() || stop.load(Ordering::Relaxed);
    // When the last pull request went out: at shutdown it may still be open.
    let mut last_request = Instant::now();
    log::info!(stream = spec.stream.as_str(), consumer = spec.durable.as_str(); "fetch stage started");
    while !stopped() {
        if intake.is_stopped() {
            // Whatever an earlier pull request still delivers is dropped now, so that on
            // resumption nothing fetched before the stop overtakes the redeliveries.
            while let Some(msg) = sub.try_next() {
                shared.drop_unacked_msg(&msg);
            }
            // Without sagas there is no commit stage to probe the store: this does.
            if !shared.settings.mode.runs_sagas() {
                crate::pipeline::recovery::try_resume(shared);
            }
            std::thread::sleep(POLL);
            continue;
        }
        let rebind = match pull(shared, &sub, flusher, out, &mut last_request) {
            PullEnd::Done => false,
            PullEnd::Closed => return Err(StageError::DownstreamGone { next: "decode" }),
            PullEnd::Unsubscribed => true,
            PullEnd::Status { code, description } => {
                log::warn!(stream = spec.stream.as_str(), consumer = spec.durable.as_str(), status = code.as_str(),
                    description = description.as_str(); "pull request ended abnormally");
                let deleted = description
                    .to_ascii_lowercase()
                    .contains("consumer deleted");
                if !deleted {
                    std::thread::sleep(BACKOFF);
                }
                deleted
            }
        };
        if rebind && !stopped() {
            drop(sub);
            match resubscribe(shared, js, spec) {
                Some(again) => sub = again,
                // Shutting down, with no subscription left to hand anything back from.
                None => return Ok(()),
            }
        }
    }
    if stopped() {
        hand_back(shared, &sub, last_request);
    }
    log::info!(stream = spec.stream.as_str(), consumer = spec.durable.as_str(); "fetch stage stopped");
    Ok(())
}

/// At shutdown: what the last pull request still delivers is negatively acked, so that
/// JetStream redelivers it at once — ahead of newer messages — to whoever pulls next (this
/// process restarted, or the shard a tenant moved to). Left alone, it would come back
/// only after the ack wait, behind newer messages of the same instances.
///
/// It listens until the last request has surely expired, not until the first status
/// message: the replies of all requests share one inbox, so a status may be a late
/// "expired" of an earlier request while the last one is still open, and whatever that
/// one delivered after the subscription is gone would wait out the ack wait.
fn hand_back(shared: &Shared, sub: &PullSubscription, last_request: Instant) {
    let until = last_request
        + Duration::from_millis(shared.settings.consumer.fetch_wait_ms)
        + Duration::from_millis(200);
    // Nacked only once the request is over: a message nacked while it is still open
    // would be delivered to it again at once, over and over.
    let mut late = Vec::new();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match sub.next_timeout(left.min(POLL)) {
            Ok(msg) if is_status(&msg) => continue,
            Ok(msg) => late.push(msg),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(_) => break,
        }
    }
    for msg in &late {
        let _ = msg.ack_kind(nats::jetstream::AckKind::Nak);
    }
    if !late.is_empty() {
        log::info!(handed = late.len() as u64; "messages delivered after the drain began were handed back (nak)");
    }
}

/// One pull request: forwards messages as they arrive until the batch is full or the
/// request expires.
fn pull(
    shared: &Shared,
    sub: &PullSubscription,
    flusher: &Flusher,
    out: &Sender<FetchedBatch>,
    last_request: &mut Instant,
) -> PullEnd {
    let intake = &shared.intake;
    // Bounded in bytes too: never more than `fetch_max_bytes` of the largest messages.
    let batch = shared.settings.consumer.pull_batch(shared.max_payload);
    let wait = Duration::from_millis(shared.settings.consumer.fetch_wait_ms);
    let request = BatchOptions {
        batch,
        expires: Some(wait.as_nanos() as usize),
        no_wait: false,
    };
    *last_request = Instant::now();
    if let Err(e) = sub.request_batch(request) {
        log::warn!(error = e.to_string(); "pull request failed; retrying");
        std::thread::sleep(POLL);
        return PullEnd::Done;
    }
    // The client would otherwise hold the request for up to 5 ms.
    flusher.kick();
    let deadline = Instant::now() + wait + Duration::from_millis(50);
    let mut remaining = batch;
    while remaining > 0 && Instant::now() < deadline && !intake.is_shutting_down() {
        let first =
            match sub.next_timeout(POLL.min(deadline.saturating_duration_since(Instant::now()))) {
                Ok(msg) => msg,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(e) if e.to_string().contains("unsubscribed") => return PullEnd::Unsubscribed,
                // The request expired (408).
                Err(_) => return PullEnd::Done,
            };
        if let Some(end) = status_end(&first) {
            return end;
        }
        let mut msgs = Vec::with_capacity(remaining.min(64));
        msgs.push(first);
        let mut ended = None;
        while msgs.len() < remaining {
            match sub.try_next() {
                Some(m) if is_status(&m) => {
                    ended = status_end(&m);
                    break;
                }
                Some(m) => msgs.push(m),
                None => break,
            }
        }
        remaining -= msgs.len();
        if !msgs.is_empty() {
            crate::crash::point(crate::crash::AFTER_FETCH);
        }
        Stats::add(&shared.stats.fetched, msgs.len() as u64);
        Stats::add(&shared.stats.fetched_batches, 1);
        // Epoch first: a stop between the two reads is then seen as stopped, or the
        // batch carries the old epoch and is dropped downstream.
        let epoch = intake.epoch();
        if intake.is_stopped() {
            // Not acked: JetStream redelivers them once intake resumes.
            msgs.iter().for_each(|m| shared.drop_unacked_msg(m));
        } else if out.send(FetchedBatch { epoch, msgs }).is_err() {
            return PullEnd::Closed;
        }
        if let Some(end) = ended {
            return end;
        }
    }
    PullEnd::Done
}

/// For a status message: how the pull ended. 404 (nothing left) and 408 (expired) are
/// ordinary; anything else is reported.
fn status_end(msg: &nats::Message) -> Option<PullEnd> {
    if !is_status(msg) {
        return None;
    }
    let code = header(msg, "Status").unwrap_or_default().to_string();
    if code == "404" || code == "408" {
        return Some(PullEnd::Done);
    }
    let description = header(msg, "Description").unwrap_or_default().to_string();
    Some(PullEnd::Status { code, description })
}

/// Recreates the consumer if it was deleted and binds again, retrying with a pause until
/// it works; `None` once the pipeline is shutting down.
fn resubscribe(shared: &Shared, js: &JetStream, spec: &ConsumerSpec) -> Option<PullSubscription> {
    while !shared.intake.is_shutting_down() {
        match ensure_consumer(js, spec, &shared.settings).and_then(|_| subscribe(js, spec)) {
            Ok(sub) => {
                log::warn!(stream = spec.stream.as_str(), consumer = spec.durable.as_str(); "consumer bound again");
                return Some(sub);
            }
            Err(e) => {
                log::error!(stream = spec.stream.as_str(), consumer = spec.durable.as_str(), error = e.to_string();
                    "cannot bind the consumer; retrying");
                std::thread::sleep(BACKOFF);
            }
        }
    }
    None
}
