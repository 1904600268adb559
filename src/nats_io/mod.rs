//! Everything that speaks to NATS: connecting, stream and consumer set-up, reading
//! JetStream delivery metadata, and pipelined publishing with acks.

mod flusher;
mod publisher;
mod setup;

use std::time::Duration;

pub use flusher::Flusher;
pub use publisher::{Completion, PublishError, Publisher};
pub use setup::{ensure_consumer, ensure_streams, saga_consumers, ConsumerSpec};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect { url: String, source: std::io::Error },
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

/// Connects with the Runner's client options: a name that identifies the process,
/// reconnecting forever (the fetch and publish paths handle the outage), and a bounded
/// reconnect buffer so an outage cannot grow memory without limit.
pub fn connect(url: &str, name: &str) -> Result<nats::Connection, StreamError> {
    nats::Options::new()
        .with_name(name)
        .max_reconnects(None)
        .reconnect_buffer_size(8 * 1024 * 1024)
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis((attempt as u64 * 100).min(2_000))
        })
        .connect(url)
        .map_err(|source| StreamError::Connect {
            url: url.to_string(),
            source,
        })
}

/// Where a JetStream message sits in its stream, and how often it was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub stream: String,
    pub stream_seq: u64,
    pub delivered: u64,
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

/// One header value of a message.
pub fn header<'m>(msg: &'m nats::Message, name: &str) -> Option<&'m str> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(String::as_str)
}
