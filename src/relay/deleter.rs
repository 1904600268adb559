//! Deletes of confirmed outbox items, on a thread of their own. A delete batch is one
//! LMDB write transaction and its fsync (0.7–1 ms each in the relay bench, about an
//! eighth of the drain's wall time); on the relay's thread, acks would wait behind it
//! and the publish window would not be refilled meanwhile. One batch is in flight at a
//! time: the relay gathers the next while this one commits.

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

pub struct Deleter {
    jobs: Sender<Vec<String>>,
    done: Receiver<Deleted>,
    busy: bool,
}

impl Deleter {
    /// Starts the `relay-delete` thread; it ends when the deleter is dropped.
    pub fn start(store: Arc<Store>) -> std::io::Result<Deleter> {
        let (jobs, job_rx) = bounded::<Vec<String>>(1);
        let (done_tx, done) = bounded(1);
        std::thread::Builder::new()
            .name("relay-delete".into())
            .spawn(move || {
                for keys in job_rx {
                    let result = store.delete_outbox(&keys);
                    if done_tx.send(Deleted { keys, result }).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Deleter {
            jobs,
            done,
            busy: false,
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::{seed_outbox, TempDir};
    use crate::keys::OutboxKind;
    use crate::types::TenantId;

    /// A store with `n` outbox items of tenant `acme`, and their keys.
    fn seeded(n: usize) -> (TempDir, Arc<Store>, TenantId, Vec<String>) {
        let dir = TempDir::new("deleter").unwrap();
        let store = Arc::new(Store::open(&dir.path().join("store"), 64 << 20).unwrap());
        seed_outbox(&store, "workflow.cmd", "acme", OutboxKind::Effect, n).unwrap();
        let acme: TenantId = "acme".parse().unwrap();
        let keys: Vec<String> = store
            .outbox(&acme, 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys.len(), n);
        (dir, store, acme, keys)
    }

    #[test]
    fn a_batch_is_deleted_once_and_reported_with_its_keys() {
        let (_dir, store, acme, keys) = seeded(3);

        let mut deleter = Deleter::start(store.clone()).unwrap();
        deleter.submit(keys.clone()).unwrap();
        assert!(deleter.is_busy());
        // A second batch waits for the first.
        assert_eq!(deleter.submit(vec!["x".into()]), Err(vec!["x".into()]));
        let outcome = deleter.wait(Duration::from_secs(10)).unwrap();
        assert_eq!(outcome.keys, keys);
        assert_eq!(outcome.result.unwrap(), 3);
        assert!(!deleter.is_busy());
        assert!(store.outbox(&acme, 10).unwrap().is_empty());

        // Deleting them again finds nothing: the count says so.
        deleter.submit(keys).unwrap();
        assert_eq!(
            deleter
                .wait(Duration::from_secs(10))
                .unwrap()
                .result
                .unwrap(),
            0
        );
    }

    #[test]
    fn a_closed_outcome_channel_stops_waking_its_reader() {
        let (_dir, store, _, _) = seeded(0);
        let mut deleter = Deleter::start(store).unwrap();
        deleter.submit(vec!["outbox:acme:effect:x".into()]).unwrap();
        assert!(deleter.taken(Err(crossbeam_channel::RecvError)).is_none());
        assert!(!deleter.is_busy());
        // A disconnected receiver is always ready and would spin a select!; the
        // replacement never is.
        assert_eq!(
            deleter.outcomes().try_recv().unwrap_err(),
            crossbeam_channel::TryRecvError::Empty
        );
        assert!(deleter.wait(Duration::from_millis(10)).is_none());
    }

    #[test]
    fn a_refused_batch_is_reported_as_an_error_and_deletes_nothing() {
        let (_dir, store, acme, mut keys) = seeded(1);
        // Not an outbox key: the whole transaction is refused.
        keys.push("saga:acme:order:o-1".into());
        let mut deleter = Deleter::start(store.clone()).unwrap();
        deleter.submit(keys).unwrap();
        assert!(deleter
            .wait(Duration::from_secs(10))
            .unwrap()
            .result
            .is_err());
        assert_eq!(store.outbox(&acme, 10).unwrap().len(), 1);
    }
}
