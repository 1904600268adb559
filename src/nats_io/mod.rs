//! Everything that speaks to NATS: connecting, stream and consumer set-up, reading
//! JetStream delivery metadata, and pipelined publishing with acks.

mod client_options;
mod flusher;
mod publisher;
mod requester;
mod setup;
mod size;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use client_options::ClientOptions;
pub use flusher::Flusher;
pub use publisher::{Completion, PublishError, Publisher};
pub use requester::Requester;
pub use setup::{
    cas_headers, effect_consumer, effect_consumers, effect_of_consumer, ensure_consumer,
    ensure_streams, key_value, kv_write, kv_write_via, legacy_effect_consumer, reposition_consumer,
    saga_consumers, set_up, ConsumerSpec,
};
pub use size::{is_too_large_error, json_len, max_payload, wire_size, DEFAULT_MAX_PAYLOAD};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    /// The server answered but refused the Runner: its credentials or TLS. A restart
    /// cannot fix it, so start-up fails with what to change.
    #[error("NATS at {url} refused the connection: {reason}")]
    Refused { url: String, reason: String },
    /// A file `[nats]` names cannot be used (missing, empty, not what it should hold).
    #[error("setting {field}: {problem}")]
    Secret { field: String, problem: String },
    #[error("JetStream {what}: {source}")]
    JetStream {
        what: String,
        source: std::io::Error,
    },
    #[error("stream {0} does not exist (and the Runner is not configured to create it)")]
    MissingStream(String),
    #[error(
        "{consumer} exists but differs from the settings: {differences}; change the \
         settings or delete the consumer (it is recreated from the start of the stream; \
         dedupe makes the replay harmless)"
    )]
    ConsumerMismatch {
        consumer: String,
        differences: String,
    },
}

/// Connects without credentials (development and test servers): [`connect_linked`]
/// with [`ClientOptions::plain`].
pub fn connect(url: &str, name: &str) -> Result<nats::Connection, StreamError> {
    connect_linked(&ClientOptions::plain(url), name, Arc::new(Link::default()))
}

/// Whether the client believes its connection is up: set by its disconnect and reconnect
/// callbacks. A connection the client believes up that answers no PING is silent: the
/// client's own check (a PING every 2 minutes, given up after two unanswered) takes
/// minutes to notice, the probe (`ops::NatsProbe`) seconds.
#[derive(Debug, Default)]
pub struct Link {
    down: AtomicBool,
}

impl Link {
    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }
}

/// Connects with the Runner's client options: its credentials and TLS (`[nats]`), a
/// name that identifies the process, reconnecting forever (the fetch and publish paths
/// handle the outage), and a bounded reconnect buffer so an outage cannot grow memory
/// without limit; keeps `link` up to date with the connection's state.
///
/// The first connection is tried once per server: an unreachable server is
/// [`StreamError::Connect`] (the orchestrator restarts the process), a refusal of the
/// credentials or of a certificate is [`StreamError::Refused`], saying which setting.
pub fn connect_linked(
    options: &ClientOptions,
    name: &str,
    link: Arc<Link>,
) -> Result<nats::Connection, StreamError> {
    let (on_down, on_up) = (link.clone(), link);
    let url = options.url();
    options
        .nats_options()
        .with_name(name)
        .disconnect_callback(move || on_down.down.store(true, Ordering::Relaxed))
        .reconnect_callback(move || on_up.down.store(false, Ordering::Relaxed))
        .max_reconnects(None)
        .reconnect_buffer_size(8 * 1024 * 1024)
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis((attempt as u64 * 100).min(2_000))
        })
        .connect(url)
        .map_err(|source| match options.refusal(&source) {
            Some(reason) => StreamError::Refused {
                url: url.to_string(),
                reason,
            },
            None => StreamError::Connect {
                url: url.to_string(),
                source,
            },
        })
}

/// Where a JetStream message sits in its stream, and how often it was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub stream: String,
    pub stream_seq: u64,
    pub delivered: u64,
    /// When the stream stored the message (ms since the epoch, the server's clock): no
    /// delivery of it, so no ack wait of it, started earlier.
    pub published_ms: i64,
}

impl Delivery {
    /// Reads the delivery metadata from the message's reply subject; `None` for a message
    /// that did not come from a JetStream consumer.
    pub fn of(msg: &nats::Message) -> Option<Delivery> {
        let info = msg.jetstream_message_info()?;
        Some(Delivery {
            stream: info.stream.to_string(),
            stream_seq: info.stream_seq,
            delivered: info.delivered.max(0) as u64,
            published_ms: (info.published.unix_timestamp_nanos() / 1_000_000) as i64,
        })
    }
}

/// A status message (pull request ended: 404, 408, 409…) rather than a stream message.
pub fn is_status(msg: &nats::Message) -> bool {
    msg.reply.is_none()
        && msg
            .headers
            .as_ref()
            .is_some_and(|h| h.get("Status").is_some())
}

/// The context headers of docs/contracts.md §1 every publish carries: `x-tenant-id`, and
/// `x-correlation-id` and `traceparent` when known (empty counts as unknown). The
/// publisher adds `Nats-Msg-Id`.
pub fn context_headers(
    tenant: &str,
    correlation: Option<&str>,
    traceparent: Option<&str>,
) -> nats::header::HeaderMap {
    let mut headers = nats::header::HeaderMap::new();
    headers.insert(crate::envelope::header::TENANT, tenant);
    for (name, value) in [
        (crate::envelope::header::CORRELATION, correlation),
        (crate::envelope::header::TRACEPARENT, traceparent),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            headers.insert(name, v);
        }
    }
    headers
}

/// [`wire_size`] of a publish carrying [`context_headers`] of these values, counted
/// without building the header map: for the size check of every transition, which
/// publishes nothing.
pub fn context_wire_size(
    tenant: &str,
    correlation: Option<&str>,
    traceparent: Option<&str>,
    msg_id_len: Option<usize>,
    body: usize,
) -> usize {
    use crate::envelope::header::{CORRELATION, TENANT, TRACEPARENT};
    // As `wire_size` counts a header line: name, value and 4 bytes. The tenant's line
    // is always there, the others only when they have a value.
    let line = |name: &str, value: &str| name.len() + value.len() + 4;
    let optional = |name: &str, value: Option<&str>| {
        value.filter(|v| !v.is_empty()).map_or(0, |v| line(name, v))
    };
    let lines = line(TENANT, tenant)
        + optional(CORRELATION, correlation)
        + optional(TRACEPARENT, traceparent);
    wire_size(&nats::header::HeaderMap::new(), msg_id_len, body) + lines
}

/// One header value of a message. Header names are case-insensitive (as in HTTP), but
/// the client's map is not, so an exact match is tried first and then any spelling.
pub fn header<'m>(msg: &'m nats::Message, name: &str) -> Option<&'m str> {
    let headers = msg.headers.as_ref()?;
    let values = match headers.get(name) {
        Some(v) => return Some(v.as_str()),
        None => headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)?,
    };
    // Several values for one name: take the smallest, so the choice is stable.
    values.iter().min().map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_headers(pairs: &[(&str, &str)]) -> nats::Message {
        let mut h = nats::header::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, *v);
        }
        nats::Message::new("s", None, b"", Some(h))
    }

    #[test]
    fn headers_are_found_whatever_their_case() {
        let msg = with_headers(&[("X-Tenant-Id", "acme")]);
        assert_eq!(header(&msg, "x-tenant-id"), Some("acme"));
        assert_eq!(header(&msg, "x-correlation-id"), None);
        assert_eq!(header(&nats::Message::new("s", None, b"", None), "x"), None);
    }

    #[test]
    fn the_context_size_is_that_of_the_context_headers() {
        let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        for tenant in ["acme", "", "t\u{e9}n\u{e4}nt"] {
            for correlation in [None, Some(""), Some("o-1"), Some("ord\u{e8}r \"7\"")] {
                for traceparent in [None, Some(""), Some(trace)] {
                    for (msg_id, body) in [(None, 0), (Some(384), 1234)] {
                        let headers = context_headers(tenant, correlation, traceparent);
                        assert_eq!(
                            context_wire_size(tenant, correlation, traceparent, msg_id, body),
                            wire_size(&headers, msg_id, body),
                            "{tenant:?} {correlation:?} {traceparent:?} {msg_id:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn status_messages_are_told_apart_from_stream_messages() {
        assert!(is_status(&with_headers(&[("Status", "408")])));
        let mut stream_msg = with_headers(&[("Status", "408")]);
        stream_msg.reply = Some("$JS.ACK.S.C.1.1.1.0.0".into());
        assert!(!is_status(&stream_msg));
        assert!(!is_status(&nats::Message::new("s", None, b"x", None)));
    }
}
