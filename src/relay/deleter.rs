//! Deletes of confirmed outbox items, on a thread of their own. A delete batch is one
//! LMDB write transaction and its fsync (0.7–1 ms each in the relay bench, about an
//! eighth of the drain's wall time); on the relay's thread, acks would wait behind it
//! and the publish window would not be refilled meanwhile. One batch is in flight at a
//! time: the relay gathers the next while this one commits. The relay holds the
//! [`Deleter`]; the `relay-delete` thread (`stages/relay_delete.rs`) drives the
//! [`DeleteJobs`].

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, never, Receiver, Sender};

use crate::store::{Store, StoreError};

/// A batch of outbox keys that was submitted, and what its transaction did.
#[derive(Debug)]
pub struct Deleted {
    pub keys: Vec<String>,
    /// How many of the keys existed; an error leaves every one of them in place.
    pub result: Result<usize, StoreError>,
}

/// The relay's side: hands batches over, one in flight at a time, and takes their outcomes.
pub struct Deleter {
    jobs: Sender<Vec<String>>,
    done: Receiver<Deleted>,
    busy: bool,
}

/// The delete thread's side: batches in, their outcomes out.
pub struct DeleteJobs {
    store: Arc<Store>,
    jobs: Receiver<Vec<String>>,
    done: Sender<Deleted>,
}

/// The relay's deleter and the jobs for its delete thread, linked; the thread's jobs end
/// when the deleter is dropped.
pub fn deleter(store: Arc<Store>) -> (Deleter, DeleteJobs) {
    let (jobs, job_rx) = bounded::<Vec<String>>(1);
    let (done_tx, done) = bounded(1);
    let deleter = Deleter {
        jobs,
        done,
        busy: false,
    };
    let side = DeleteJobs {
        store,
        jobs: job_rx,
        done: done_tx,
    };
    (deleter, side)
}

impl DeleteJobs {
    /// The next batch, waiting for it; `None` once the deleter is dropped.
    pub fn next_batch(&self) -> Option<Vec<String>> {
        self.jobs.recv().ok()
    }

    /// Deletes one batch in one transaction and reports it; false when the relay is gone
    /// (it gave up waiting at the end of a drain) and nobody reads outcomes any more.
    pub fn delete(&self, keys: Vec<String>) -> bool {
        let result = self.store.delete_outbox(&keys);
        self.done.send(Deleted { keys, result }).is_ok()
    }
}

impl Deleter {
    /// Whether a batch is being deleted (its outcome not yet taken).
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// Hands a batch over, keys in key order. Never blocks: one batch at most is in
    /// flight, so the caller checks [`Deleter::is_busy`] first. Gives the batch back if
    /// one is still in flight or the thread is gone (the caller then deletes it itself).
    pub fn submit(&mut self, keys: Vec<String>) -> Result<(), Vec<String>> {
        if self.busy {
            return Err(keys);
        }
        self.jobs.send(keys).map_err(|e| e.into_inner())?;
        self.busy = true;
        Ok(())
    }

    /// Where outcomes arrive (for a `select!`); pass what arrives to [`Deleter::taken`].
    pub fn outcomes(&self) -> &Receiver<Deleted> {
        &self.done
    }

    /// Records what arrived on [`Deleter::outcomes`]. A closed channel means the thread
    /// is gone: nothing more arrives (so a `select!` does not wake on it again), and
    /// [`Deleter::submit`] gives every batch back from now on.
    pub fn taken(
        &mut self,
        arrived: Result<Deleted, crossbeam_channel::RecvError>,
    ) -> Option<Deleted> {
        self.busy = false;
        if arrived.is_err() {
            log::error!("the relay's delete thread is gone; the relay deletes on its own thread");
            self.done = never();
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
