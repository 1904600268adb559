//! The `store-writer` thread: writes what the commit stage, the effect-commit thread and
//! the relay hand it, every job waiting in one LMDB transaction and one pair of fsyncs
//! (group commit across writers; `store::group` holds the why and the failure rules).

use crate::pipeline::{Shared, Stats};
use crate::stages::StageError;
use crate::store::WriterJobs;

/// Runs until every writer handed out with its jobs is gone (the commit stage, the relay
/// and the effect-commit thread ended). A failed group is its jobs' (each is answered
/// with the error), never this thread's.
pub fn run(shared: &Shared, mut jobs: WriterJobs) -> Result<(), StageError> {
    while let Some(group) = jobs.next_group() {
        Stats::add(&shared.stats.store_groups, 1);
        Stats::add(&shared.stats.store_jobs, group.len() as u64);
        jobs.write(group);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::dev::{seed_outbox, TempDir};
    use crate::keys::OutboxKind;
    use crate::relay::deleter::{deleter, Deleter};
    use crate::store::{writer, Store};
    use crate::types::TenantId;

    /// A relay's deleter over a running writer loop (the stage's, without the counters).
    fn started(store: Arc<Store>) -> Deleter {
        let (writer, mut jobs) = writer(store);
        std::thread::spawn(move || {
            while let Some(group) = jobs.next_group() {
                jobs.write(group);
            }
        });
        deleter(writer)
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
        let again = deleter.wait(Duration::from_secs(10)).unwrap();
        assert_eq!(again.result.unwrap(), 0);
    }

    #[test]
    fn a_batch_dropped_unanswered_reads_as_closed_and_the_deleter_goes_on() {
        let (_dir, store, acme, keys) = seeded(1);
        // A writer whose jobs are taken but never written (a failed writer thread).
        let (writer, mut jobs) = writer(store.clone());
        let mut deleter = deleter(writer);
        deleter.submit(keys.clone()).unwrap();
        drop(jobs.next_group());
        let arrived = deleter.outcomes().recv_timeout(Duration::from_secs(5));
        assert!(arrived.is_err(), "the dropped batch's channel is closed");
        assert!(deleter.taken(Err(crossbeam_channel::RecvError)).is_none());
        assert!(!deleter.is_busy());
        // A closed channel would be always ready and spin a select!; the replacement
        // never is.
        assert_eq!(
            deleter.outcomes().try_recv().unwrap_err(),
            crossbeam_channel::TryRecvError::Empty
        );
        // The writer's thread is gone now: the next batch is written on this thread.
        drop(jobs);
        deleter.submit(keys).unwrap();
        let outcome = deleter.wait(Duration::from_secs(10)).unwrap();
        assert_eq!(outcome.result.unwrap(), 1);
        assert!(store.outbox(&acme, 10).unwrap().is_empty());
    }

    #[test]
    fn a_refused_batch_is_reported_as_an_error_and_deletes_nothing() {
        let (_dir, store, acme, mut keys) = seeded(1);
        // Not an outbox key: the whole batch is refused.
        keys.push("saga:acme:order:o-1".into());
        let mut deleter = started(store.clone());
        deleter.submit(keys).unwrap();
        let outcome = deleter.wait(Duration::from_secs(10)).unwrap();
        assert!(outcome.result.is_err());
        assert_eq!(store.outbox(&acme, 10).unwrap().len(), 1);
    }
}
