//! Deletes of confirmed outbox items, handed to the `store-writer` thread
//! (`stages/store_writer.rs`) without waiting. A delete batch is a write transaction and
//! its fsyncs; on the relay's thread, acks would wait behind it and the publish window
//! would not be refilled meanwhile. On the writer's thread it shares its transaction with
//! the saga commits and effect records waiting at the same time. One batch is in flight
//! at a time: the relay gathers the next while this one commits.

use std::time::Duration;

use crossbeam_channel::{bounded, never, Receiver};

use crate::store::{StoreError, Writer};

/// A batch of outbox keys that was submitted, and what its transaction did.
#[derive(Debug)]
pub struct Deleted {
    pub keys: Vec<String>,
    /// How many of the keys existed; an error leaves every one of them in place.
    pub result: Result<usize, StoreError>,
}

/// The relay's side: hands batches to the store writer, one in flight at a time, and
/// takes their outcomes.
pub struct Deleter {
    writer: Writer,
    /// The batch in flight's outcome: a channel of its own per batch, so that a batch
    /// dropped unanswered (a failed writer thread) shows as a closed channel;
    /// [`never`] while none is in flight.
    done: Receiver<Deleted>,
    busy: bool,
}

/// The relay's deleter, writing through `writer`.
pub fn deleter(writer: Writer) -> Deleter {
    Deleter {
        writer,
        done: never(),
        busy: false,
    }
}

impl Deleter {
    /// Whether a batch is being deleted (its outcome not yet taken).
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// Hands a batch over, keys in key order. Never blocks on the transaction: one
    /// batch at most is in flight, so the caller checks [`Deleter::is_busy`] first.
    /// Gives the batch back if one is still in flight.
    pub fn submit(&mut self, keys: Vec<String>) -> Result<(), Vec<String>> {
        if self.busy {
            return Err(keys);
        }
        let (tx, rx) = bounded(1);
        self.writer.delete_outbox(keys, move |keys, result| {
            // Never full (one outcome per channel); the relay may be gone at the end
            // of a drain, which loses nothing (the keys are deleted again on restart).
            let _ = tx.send(Deleted { keys, result });
        });
        self.done = rx;
        self.busy = true;
        Ok(())
    }

    /// Where outcomes arrive (for a `select!`); pass what arrives to [`Deleter::taken`].
    pub fn outcomes(&self) -> &Receiver<Deleted> {
        &self.done
    }

    /// Records what arrived on [`Deleter::outcomes`]. A closed channel means the batch
    /// was dropped unanswered (the store-writer thread failed, which ends the pipeline):
    /// its items stay in the outbox and are sent and deleted again after a restart.
    pub fn taken(
        &mut self,
        arrived: Result<Deleted, crossbeam_channel::RecvError>,
    ) -> Option<Deleted> {
        self.busy = false;
        self.done = never();
        if arrived.is_err() {
            log::error!("a batch of outbox deletes was dropped unanswered; its items are deleted again after a restart");
        }
        arrived.ok()
    }

    /// Waits up to `limit` for the batch in flight, if any (shutdown). `None` if there
    /// is none, it did not end in time, or the thread is gone.
    pub fn wait(&mut self, limit: Duration) -> Option<Deleted> {
        if !self.busy {
            return None;
        }
        match self.done.recv_timeout(limit) {
            Ok(deleted) => self.taken(Ok(deleted)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                self.taken(Err(crossbeam_channel::RecvError))
            }
        }
    }
}
