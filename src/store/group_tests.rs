//! Group commit across writers (`group.rs`): one transaction for every job waiting, each
//! job atomic on its own, and an answer for every job whatever happens.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver};
use serde_json::json;

use super::tests::{batch, open, outbox_item, snapshot, t, transition};
use super::*;
use crate::dev::TempDir;

/// Transactions the store's environment has committed so far.
fn txn_id(store: &Store) -> usize {
    store.env.info().unwrap().last_txnid()
}

/// Hands a delete to `writer`; its outcome arrives on the receiver.
fn delete(writer: &Writer, keys: &[&str]) -> Receiver<(Vec<String>, Result<usize, StoreError>)> {
    let (tx, rx) = bounded(1);
    let keys = keys.iter().map(|k| k.to_string()).collect();
    writer.delete_outbox(keys, move |keys, result| {
        let _ = tx.send((keys, result));
    });
    rx
}

/// A store holding outbox items `cmd-e-1` .. `cmd-e-n` of tenant acme.
fn seeded(dir: &TempDir, n: u64) -> Arc<Store> {
    let store = Arc::new(open(dir, 16));
    let acme = t("acme");
    for i in 1..=n {
        let tr = transition(&acme, &format!("o-{i}"), &format!("e-{i}"), i, json!(i));
        store.commit(&batch(vec![tr])).unwrap();
    }
    store
}

const ONE: &str = "outbox:acme:effect:cmd-e-1";
const TWO: &str = "outbox:acme:effect:cmd-e-2";
const THREE: &str = "outbox:acme:effect:cmd-e-3";

#[test]
fn every_job_waiting_is_written_in_one_transaction_and_answered() {
    let dir = TempDir::new("group").unwrap();
    let store = seeded(&dir, 2);
    let (writer, mut jobs) = writer(store.clone());
    let first = delete(&writer, &[ONE]);
    let second = delete(&writer, &[TWO, "outbox:acme:effect:never-written"]);
    let before = txn_id(&store);

    let group = jobs.next_group().unwrap();
    assert_eq!(group.len(), 2, "both waiting jobs form one group");
    jobs.write(group);

    assert_eq!(txn_id(&store), before + 1, "one transaction for both");
    let (keys, result) = first.try_recv().unwrap();
    assert_eq!((keys, result.unwrap()), (vec![ONE.to_string()], 1));
    assert_eq!(second.try_recv().unwrap().1.unwrap(), 1);
    assert!(store.outbox(&t("acme"), 10).unwrap().is_empty());
}

#[test]
fn a_failing_job_is_answered_with_its_error_and_the_others_commit_without_it() {
    let dir = TempDir::new("group").unwrap();
    let store = seeded(&dir, 3);
    let acme = t("acme");
    let (writer, mut jobs) = writer(store.clone());
    let first = delete(&writer, &[ONE]);
    // Deletes a real item, then meets a key that is not an outbox key: its whole job is
    // refused, so the item it deleted first is back.
    let refused = delete(&writer, &[TWO, "saga:acme:order:o-1"]);
    let third = delete(&writer, &[THREE]);
    let before = txn_id(&store);

    let group = jobs.next_group().unwrap();
    jobs.write(group);

    assert_eq!(first.try_recv().unwrap().1.unwrap(), 1);
    let (keys, result) = refused.try_recv().unwrap();
    assert_eq!(keys.len(), 2, "the refused job gets its keys back");
    assert!(
        matches!(result, Err(StoreError::Encode { .. })),
        "{result:?}"
    );
    assert_eq!(third.try_recv().unwrap().1.unwrap(), 1);
    let left: Vec<String> = store
        .outbox(&acme, 10)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left, vec![TWO.to_string()]);
    assert_eq!(
        txn_id(&store),
        before + 1,
        "the failed attempt was aborted, not committed"
    );
}

#[test]
fn a_commit_refused_in_a_group_writes_nothing_of_its_own_and_its_batch_comes_back() {
    let dir = TempDir::new("group").unwrap();
    let store = seeded(&dir, 1);
    let acme = t("acme");
    let (writer, mut jobs) = writer(store.clone());
    let before = snapshot(&store, &acme);
    store.inject_unstorable(Some("o-2"));
    let deleted = delete(&writer, &[ONE]);
    let committing = {
        let writer = writer.clone();
        std::thread::spawn(move || {
            let tr = transition(&t("acme"), "o-2", "e-2", 2, json!(2));
            writer.commit(batch(vec![tr]))
        })
    };
    // The commit is waiting behind the delete (or written in the next group).
    let mut answered = 0;
    while answered < 2 {
        let group = jobs.next_group().unwrap();
        answered += group.len();
        jobs.write(group);
    }
    let (back, result) = committing.join().unwrap();
    assert!(
        matches!(result, Err(StoreError::Encode { .. })),
        "{result:?}"
    );
    assert_eq!(back.transitions.len(), 1, "the batch comes back whole");
    assert_eq!(deleted.try_recv().unwrap().1.unwrap(), 1);
    // Nothing of the refused transition: no instance, the checkpoint where it was, and
    // of the outbox only the deleted item gone.
    let o2: CorrelationId = "o-2".parse().unwrap();
    let order: SagaName = "order".parse().unwrap();
    assert_eq!(store.saga(&acme, &order, &o2).unwrap(), None);
    let after = snapshot(&store, &acme);
    assert_eq!(after["checkpoint"], before["checkpoint"]);
    assert_eq!(after["saga"], before["saga"]);
    assert!(store.outbox(&acme, 10).unwrap().is_empty());
}

#[test]
fn a_full_map_grows_and_the_whole_group_is_written_again() {
    let dir = TempDir::new("group").unwrap();
    let options = StoreOptions {
        max_size: 64 << 20,
        ..StoreOptions::fixed(1 << 20)
    };
    let store = Arc::new(Store::open_with(&dir.path().join("store"), &options).unwrap());
    let acme = t("acme");
    store
        .commit(&batch(vec![transition(&acme, "o-1", "e-1", 1, json!(1))]))
        .unwrap();
    let (writer, mut jobs) = writer(store.clone());
    let deleted = delete(&writer, &[ONE]);
    let committing = {
        let writer = writer.clone();
        std::thread::spawn(move || {
            // More than the 1 MiB map holds.
            let mut huge = transition(&t("acme"), "o-2", "e-2", 2, json!(2));
            huge.outbox = (0..40)
                .map(|i| {
                    let mut item = outbox_item(&t("acme"), &format!("big-{i}"));
                    item.envelope = RawJson::of(&json!({"blob": "y".repeat(64 * 1024)})).unwrap();
                    item
                })
                .collect();
            writer.commit(batch(vec![huge]))
        })
    };
    let mut answered = 0;
    while answered < 2 {
        let group = jobs.next_group().unwrap();
        answered += group.len();
        jobs.write(group);
    }
    let (_, result) = committing.join().unwrap();
    assert_eq!(result.unwrap(), vec![CommitOutcome::Applied]);
    assert_eq!(deleted.try_recv().unwrap().1.unwrap(), 1);
    assert!(store.map_bytes() > 1 << 20, "the map grew");
    assert_eq!(store.outbox(&acme, 100).unwrap().len(), 40);
}

#[test]
fn without_its_thread_a_writer_writes_on_the_callers_thread() {
    let dir = TempDir::new("group").unwrap();
    let store = seeded(&dir, 1);
    let acme = t("acme");
    // Never started, then gone: every write still happens, on the caller's thread.
    let (writer, jobs) = writer(store.clone());
    drop(jobs);
    let (_, result) = writer.commit(batch(vec![transition(&acme, "o-2", "e-2", 2, json!(2))]));
    assert_eq!(result.unwrap(), vec![CommitOutcome::Applied]);
    let deleted = delete(&writer, &[ONE]);
    assert_eq!(
        deleted
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .1
            .unwrap(),
        1
    );
    let cmd: WorkId = "cmd-1".parse().unwrap();
    let done = StoredCompletion::Whole(EffectCompletion {
        event_id: "r-1".into(),
        result: RawJson::of(&json!({"event_id": "r-1"})).unwrap(),
        recorded_at: "2026-12-06T04:00:00.000Z".into(),
    });
    let keep = Duration::from_secs(60);
    writer
        .record_effect_completions(&[(&acme, &cmd, &done, keep)])
        .unwrap();
    assert_eq!(store.effect_completion(&acme, &cmd).unwrap(), Some(done));
}

#[test]
fn a_delete_waits_for_the_next_commit_and_shares_its_transaction() {
    let dir = TempDir::new("group").unwrap();
    let store = seeded(&dir, 1);
    let (writer, mut jobs) = writer(store.clone());
    let deleted = delete(&writer, &[ONE]);
    let committing = {
        let writer = writer.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            let tr = transition(&t("acme"), "o-2", "e-2", 2, json!(2));
            writer.commit(batch(vec![tr]))
        })
    };
    let before = txn_id(&store);
    let group = jobs.next_group().unwrap();
    assert_eq!(group.len(), 2, "the delete waited for the commit");
    jobs.write(group);
    assert_eq!(txn_id(&store), before + 1);
    assert_eq!(
        committing.join().unwrap().1.unwrap(),
        vec![CommitOutcome::Applied]
    );
    assert_eq!(deleted.try_recv().unwrap().1.unwrap(), 1);
}

#[test]
fn a_delete_with_no_company_is_written_alone_after_its_wait() {
    let dir = TempDir::new("group").unwrap();
    let store = seeded(&dir, 1);
    let (writer, mut jobs) = writer(store.clone());
    let started = std::time::Instant::now();
    let deleted = delete(&writer, &[ONE]);
    let group = jobs.next_group().unwrap();
    assert!(started.elapsed() >= super::group::LAZY_WAIT);
    assert_eq!(group.len(), 1);
    jobs.write(group);
    assert_eq!(deleted.try_recv().unwrap().1.unwrap(), 1);
    // Every writer gone and nothing held: the thread's loop ends.
    drop(writer);
    assert!(jobs.next_group().is_none());
}
