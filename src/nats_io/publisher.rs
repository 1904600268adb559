//! Pipelined JetStream publishing. The blocking client flushes its write buffer only
//! every 5 ms and `js.publish` waits for each ack, so publish-then-wait runs at a few
//! hundred messages a second. Here many publishes are outstanding at once, their acks
//! arrive on one shared reply inbox, and a bounded window provides backpressure.
//!
//! Every [`Publisher::publish`] carries a `Nats-Msg-Id`; a publish whose ack does not
//! arrive in time has an unknown outcome and is re-sent with the same id, so JetStream's
//! duplicate window turns the retry into a no-op if the first attempt was stored. A
//! compare-and-set write ([`Publisher::publish_compare_and_set`]) carries none: a re-send
//! of one that was stored is refused ("wrong last sequence"), never stored twice. A 503
//! (no responders, or JetStream temporarily unavailable) is retried too, after a pause;
//! other errors are final. Every publish ends after at most `max_attempts` sends.
//!
//! A message over the connection's `max_payload` is never sent: the server would refuse
//! it and close the connection. It completes at once with [`PublishError::TooLarge`], a
//! permanent outcome, as does a publish the server reports over its maximum payload.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use nats::header::HeaderMap;
use serde::Deserialize;

use crate::envelope::header;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("no JetStream stream captures subject {0}")]
    NoStream(String),
    #[error("JetStream rejected the publish: {0}")]
    Rejected(String),
    #[error("no ack after {attempts} attempts")]
    Timeout { attempts: u32 },
    #[error("connection error: {0}")]
    Io(String),
    /// Over the server's `max_payload`: never sent, and no retry can help.
    #[error("too large: {size} bytes, the server takes at most {max} (max_payload)")]
    TooLarge { size: usize, max: usize },
}

impl PublishError {
    /// Whether retrying can never help: the message itself is too large.
    pub fn is_too_large(&self) -> bool {
        matches!(self, PublishError::TooLarge { .. })
    }
}

/// The outcome of one publish, identified by the caller's tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub tag: u64,
    pub result: Result<Ack, PublishError>,
}

/// JetStream's acknowledgement of a stored message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Ack {
    pub stream: String,
    pub seq: u64,
    #[serde(default)]
    pub duplicate: bool,
}

/// The reply to a publish: an ack's fields or an error. (Not `#[serde(flatten)]` of
/// [`Ack`]: flattening buffers every field first, which cost more than the rest of
/// reading the reply.)
#[derive(Deserialize)]
struct AckReply {
    stream: Option<String>,
    seq: Option<u64>,
    #[serde(default)]
    duplicate: bool,
    error: Option<AckError>,
}

impl AckReply {
    fn ack(self) -> Option<Ack> {
        Some(Ack {
            stream: self.stream?,
            seq: self.seq?,
            duplicate: self.duplicate,
        })
    }
}

#[derive(Deserialize)]
struct AckError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    description: String,
}

/// Pause before re-sending after a 503.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

struct Pending {
    tag: u64,
    subject: String,
    headers: HeaderMap,
    body: Vec<u8>,
    deadline: Instant,
    attempts: u32,
    /// False while it waits to be re-sent after a 503.
    in_flight: bool,
}

pub struct Publisher {
    nc: nats::Connection,
    flusher: super::Flusher,
    inbox: String,
    sub: nats::Subscription,
    window: usize,
    ack_timeout: Duration,
    max_attempts: u32,
    next_token: u64,
    /// Outstanding publishes by the token of their current attempt's reply subject.
    pending: HashMap<u64, Pending>,
    /// (deadline, token) of every pending entry: at most `window` entries.
    deadlines: BTreeSet<(Instant, u64)>,
    done: Vec<Completion>,
    unflushed: bool,
    /// Largest publish (headers and body) the server takes.
    max_payload: usize,
}

impl Publisher {
    /// `window` bounds outstanding publishes; `ack_timeout` is how long one attempt
    /// waits; after `max_attempts` a publish completes with its last error.
    pub fn new(
        nc: &nats::Connection,
        window: usize,
        ack_timeout: Duration,
        max_attempts: u32,
    ) -> std::io::Result<Publisher> {
        let inbox = nc.new_inbox();
        let sub = nc.subscribe(&format!("{inbox}.*"))?;
        let window = window.max(1);
        // Acks beyond the window cannot exist; the limit guards against strays.
        sub.set_message_limits(window * 2 + 16);
        Ok(Publisher {
            nc: nc.clone(),
            flusher: super::Flusher::start(nc)?,
            inbox,
            sub,
            window,
            ack_timeout,
            max_attempts: max_attempts.max(1),
            next_token: 0,
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            done: Vec::new(),
            unflushed: false,
            max_payload: super::max_payload(nc, super::DEFAULT_MAX_PAYLOAD),
        })
    }

    /// Refuses publishes over `max_payload` bytes (the pipeline's shared figure: the
    /// server's, or the setting's fallback) instead of the connection's own.
    pub fn with_max_payload(mut self, max_payload: usize) -> Publisher {
        self.max_payload = max_payload.max(1);
        self
    }

    /// Largest publish, headers included, this publisher sends.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Whether [`Publisher::publish`] would send without waiting.
    pub fn has_room(&self) -> bool {
        self.pending.len() < self.window
    }

    /// Where acks arrive: a caller that waits on several channels selects on this and
    /// hands each message to [`Publisher::on_message`].
    pub fn acks(&self) -> &crossbeam_channel::Receiver<nats::Message> {
        self.sub.receiver()
    }

    /// Takes in one message from [`Publisher::acks`].
    pub fn on_message(&mut self, msg: nats::Message) {
        self.on_ack(msg);
    }

    /// Flushes what was sent and retries or fails publishes past their deadline; call it
    /// after publishing and when [`Publisher::next_deadline`] has passed.
    pub fn tick(&mut self) {
        if self.unflushed {
            self.flusher.kick();
            self.unflushed = false;
        }
        self.expire();
    }

    /// When the earliest outstanding publish times out (or is due for re-sending).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// Completions gathered so far, without waiting.
    pub fn take_completions(&mut self) -> Vec<Completion> {
        std::mem::take(&mut self.done)
    }

    /// Sends one message, first waiting for acks while the window is full.
    /// `headers` should not contain `Nats-Msg-Id`; `msg_id` is set here.
    pub fn publish(
        &mut self,
        tag: u64,
        subject: &str,
        msg_id: &str,
        headers: HeaderMap,
        body: Vec<u8>,
    ) {
        self.enqueue(tag, subject, Some(msg_id), headers, body);
    }

    /// Sends a compare-and-set write (`headers` name the subject's expected last
    /// sequence, `nats_io::cas_headers`) without a `Nats-Msg-Id`. JetStream stores it
    /// only while the subject's last sequence is the one named, so a re-send of one
    /// that was stored is refused as "wrong last sequence" instead of stored again, and
    /// the caller reads back what is there. That holds for a write sent once, or one
    /// naming a revision above 0 (once stored, the subject's last sequence is past it for
    /// good); a create (revision 0) re-sent after it landed and was then deleted would be
    /// stored again, so send creates with `max_attempts` 1. The server keeps no id of it
    /// for its duplicate window, which saves it CPU per write (docs/performance.md).
    pub fn publish_compare_and_set(
        &mut self,
        tag: u64,
        subject: &str,
        headers: HeaderMap,
        body: Vec<u8>,
    ) {
        debug_assert!(
            headers
                .get(nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE)
                .is_some(),
            "a publish without an id must be a compare-and-set"
        );
        self.enqueue(tag, subject, None, headers, body);
    }

    fn enqueue(
        &mut self,
        tag: u64,
        subject: &str,
        msg_id: Option<&str>,
        mut headers: HeaderMap,
        body: Vec<u8>,
    ) {
        let size = super::wire_size(&headers, msg_id.map(str::len), body.len());
        if size > self.max_payload {
            self.done.push(Completion {
                tag,
                result: Err(PublishError::TooLarge {
                    size,
                    max: self.max_payload,
                }),
            });
            return;
        }
        while self.pending.len() >= self.window {
            self.collect(self.ack_timeout);
        }
        if let Some(msg_id) = msg_id {
            headers.insert(header::MSG_ID, msg_id);
        }
        let pending = Pending {
            tag,
            subject: subject.to_string(),
            headers,
            body,
            deadline: Instant::now(),
            attempts: 0,
            in_flight: false,
        };
        self.send(pending);
    }

    /// Completions gathered so far, waiting up to `wait` for at least one if none are.
    pub fn poll(&mut self, wait: Duration) -> Vec<Completion> {
        if self.done.is_empty() && !self.pending.is_empty() {
            self.collect(wait);
        }
        std::mem::take(&mut self.done)
    }

    /// Waits until every outstanding publish completed (bounded by the retry policy).
    pub fn finish(&mut self) -> Vec<Completion> {
        while !self.pending.is_empty() {
            self.collect(self.ack_timeout);
        }
        std::mem::take(&mut self.done)
    }

    fn track(&mut self, p: Pending) {
        let token = self.next_token;
        self.next_token += 1;
        self.deadlines.insert((p.deadline, token));
        self.pending.insert(token, p);
    }

    fn send(&mut self, mut p: Pending) {
        let token = self.next_token;
        let reply = format!("{}.{token}", self.inbox);
        p.attempts += 1;
        p.in_flight = true;
        p.deadline = Instant::now() + self.ack_timeout;
        let sent = self.nc.publish_with_reply_or_headers(
            &p.subject,
            Some(&reply),
            Some(&p.headers),
            &p.body,
        );
        match sent {
            Ok(()) => {
                self.unflushed = true;
                self.track(p);
            }
            Err(e) => {
                let text = e.to_string();
                let error = if super::is_too_large_error(&text) {
                    PublishError::TooLarge {
                        size: super::wire_size(&p.headers, None, p.body.len()),
                        max: self.max_payload,
                    }
                } else {
                    PublishError::Io(text)
                };
                self.done.push(Completion {
                    tag: p.tag,
                    result: Err(error),
                })
            }
        }
    }

    /// Receives acks for up to `wait`, then retries or fails publishes past their deadline.
    fn collect(&mut self, wait: Duration) {
        if self.unflushed {
            // Without this the client holds the publishes for up to 5 ms.
            self.flusher.kick();
            self.unflushed = false;
        }
        let until = Instant::now() + wait;
        let first_deadline = self.deadlines.first().map(|(d, _)| *d).unwrap_or(until);
        let wait = until
            .min(first_deadline)
            .saturating_duration_since(Instant::now());
        if let Ok(msg) = self.sub.next_timeout(wait) {
            self.on_ack(msg);
            while let Some(msg) = self.sub.try_next() {
                self.on_ack(msg);
            }
        }
        self.expire();
    }

    fn on_ack(&mut self, msg: nats::Message) {
        let Some(token) = msg
            .subject
            .rsplit('.')
            .next()
            .and_then(|t| t.parse::<u64>().ok())
        else {
            return;
        };
        // A late ack of an attempt that was already re-sent: the retry will answer too.
        let Some(mut p) = self.pending.remove(&token) else {
            return;
        };
        self.deadlines.remove(&(p.deadline, token));
        let (result, retryable) = if super::is_status(&msg) && msg.data.is_empty() {
            (Err(PublishError::NoStream(p.subject.clone())), true)
        } else {
            match read_ack(&msg.data) {
                Ok(ack) => (Ok(ack), false),
                Err((e, retryable)) => (Err(e), retryable),
            }
        };
        let result = result.map_err(|e| match e {
            PublishError::TooLarge { .. } => PublishError::TooLarge {
                size: super::wire_size(&p.headers, None, p.body.len()),
                max: self.max_payload,
            },
            e => e,
        });
        match result {
            Err(_) if retryable && p.attempts < self.max_attempts => {
                // Re-sent by `expire` after a pause.
                p.in_flight = false;
                p.deadline = Instant::now() + RETRY_PAUSE;
                self.track(p);
            }
            result => self.done.push(Completion { tag: p.tag, result }),
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(&(deadline, token)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(p) = self.pending.remove(&token) else {
                continue;
            };
            if p.in_flight && p.attempts >= self.max_attempts {
                let attempts = p.attempts;
                self.done.push(Completion {
                    tag: p.tag,
                    result: Err(PublishError::Timeout { attempts }),
                });
            } else {
                self.send(p);
            }
        }
    }
}

/// A JetStream publish reply read as its ack, or the reason it is none and whether
/// that reason passes (a 503: JetStream briefly unavailable).
pub(super) fn read_ack(data: &[u8]) -> Result<Ack, (PublishError, bool)> {
    match serde_json::from_slice::<AckReply>(data) {
        Ok(AckReply {
            error: Some(err), ..
        }) if super::is_too_large_error(&err.description) => {
            Err((PublishError::TooLarge { size: 0, max: 0 }, false))
        }
        Ok(AckReply {
            error: Some(err), ..
        }) => Err((PublishError::Rejected(err.description), err.code == 503)),
        Ok(reply) => reply.ack().ok_or_else(|| (unreadable(data), false)),
        Err(_) => Err((unreadable(data), false)),
    }
}

fn unreadable(data: &[u8]) -> PublishError {
    PublishError::Rejected(format!("unreadable ack: {}", String::from_utf8_lossy(data)))
}

#[cfg(test)]
mod tests;
