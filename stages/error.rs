//! Why a stage thread ended abnormally. A stage's `run` returns `Ok(())` for an end it
//! expects (shutdown, its input closed by the stage before it); anything else is one of
//! these, which [`crate::stages::Pipeline`] logs when it joins the thread. Outside a
//! drain, any stage that ends makes the main loop restart the process, so the reason is
//! what an operator reads to learn why.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The stage after this one ended first (it panicked or failed): nothing can take
    /// this stage's output any more.
    #[error("the {next} stage ended before this one: its channel is closed")]
    DownstreamGone { next: &'static str },
    /// A publisher's reply inbox could not be subscribed: NATS refused or is gone.
    #[error("cannot subscribe to the ack inbox: {0}")]
    AckInbox(#[source] std::io::Error),
    /// A store access the stage cannot go on without.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A fetch thread of one effect consumer could not be started.
    #[error("cannot start the fetch thread of consumer {consumer}: {source}")]
    FetchThreadStart {
        consumer: String,
        #[source]
        source: std::io::Error,
    },
    /// A fetch thread of one effect consumer ended without being told to.
    #[error("the fetch thread of consumer {consumer} stopped unexpectedly: {reason}")]
    FetchThreadEnded { consumer: String, reason: String },
}
