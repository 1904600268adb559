//! Operator retries of quarantined messages. The admin API reads the message back from
//! its stream and hands it to the decode stage with a ticket; it then travels the
//! pipeline like a fetched message (so it is ordered with the instance's other events
//! and committed by the one writer), except that it has no delivery to ack. The commit
//! that applies it deletes its quarantine record in the same transaction, and the
//! ticket reports the outcome back.

use crossbeam_channel::Sender;

use crate::saga::MessageInfo;

/// A quarantined message on its way back in.
pub struct Retry {
    /// The message as its stream holds it (no reply subject: nothing to ack).
    pub msg: nats::Message,
    pub info: MessageInfo,
    pub ticket: RetryTicket,
}

/// Travels with a retried message; dropping it unanswered tells the caller the pipeline
/// let the message go (storage stopped, or a drain began).
pub struct RetryTicket {
    /// The quarantine record the retry may release.
    pub key: String,
    reply: Sender<RetryOutcome>,
}

/// What became of a retried message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RetryOutcome {
    /// Its transitions committed; the quarantine record is gone.
    Applied { transitions: usize },
    /// Every instance it reaches had applied it already; the record is gone.
    Duplicate,
    /// It changed nothing (no instance takes it, or its instance is done); the record
    /// stays, for the operator to discard.
    Ignored,
    /// Quarantined again: the record now carries this reason.
    Quarantined { reason: String },
}

impl RetryTicket {
    pub fn new(key: String, reply: Sender<RetryOutcome>) -> RetryTicket {
        RetryTicket { key, reply }
    }

    pub fn answer(self, outcome: RetryOutcome) {
        // The caller may have stopped waiting; nothing else to tell.
        let _ = self.reply.try_send(outcome);
    }
}
