//! The `relay-delete` thread: deletes the batches of confirmed outbox items the relay
//! hands over, one transaction each (`relay::deleter` holds the why and the state).

use crate::relay::deleter::DeleteJobs;
use crate::stages::StageError;

/// Runs until the relay drops its deleter (or stops reading outcomes: a drain that
/// gave up waiting for the last batch). A failed delete is the relay's to retry, so
/// this thread itself never fails.
pub fn run(jobs: DeleteJobs) -> Result<(), StageError> {
    while let Some(keys) = jobs.next_batch() {
        if !jobs.delete(keys) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::dev::{seed_outbox, TempDir};
    use crate::keys::OutboxKind;
    use crate::relay::deleter::{deleter, Deleter};
    use crate::store::Store;
    use crate::types::TenantId;

    /// A deleter with its thread running.
    fn started(store: Arc<Store>) -> Deleter {
        let (deleter, jobs) = deleter(store);
        std::thread::spawn(move || run(jobs));
        deleter
    }

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

        let mut deleter = started(store.clone());
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
        let mut deleter = started(store);
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
        let mut deleter = started(store.clone());
        deleter.submit(keys).unwrap();
        assert!(deleter
            .wait(Duration::from_secs(10))
            .unwrap()
            .result
            .is_err());
        assert_eq!(store.outbox(&acme, 10).unwrap().len(), 1);
    }
}
