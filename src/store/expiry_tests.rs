//! Retention: what expires, what the sweep deletes and leaves, an older store adopted,
//! and a map that grows.

use std::time::Duration;

use serde_json::json;

use super::tests::{keys_of, opened_with as opened};
use super::*;
use crate::dev::TempDir;

const DAY: Duration = Duration::from_secs(86_400);

fn acme() -> TenantId {
    "acme".parse().unwrap()
}

/// Transition number `n` of instance `corr`, with the given status and retention.
fn step(corr: &str, event: &str, n: u64, status: InstanceStatus, keep: Keep) -> Transition {
    Transition {
        tenant: acme(),
        saga: "order".parse().unwrap(),
        correlation: corr.parse().unwrap(),
        event_id: event.parse().unwrap(),
        position: StreamPosition {
            stream: "AGGREGATE_EVENTS".into(),
            seq: n,
        },
        record: SagaRecord {
            status,
            state: json!({"n": n}),
            version: 1,
            transitions: n,
            last_event_id: event.into(),
            updated_at: "2026-12-05T10:00:00Z".into(),
            fault: None,
        },
        outbox: vec![],
        schedules: vec![],
        cancel: vec![],
        fired: None,
        keep,
        history: Default::default(),
    }
}

fn commit(store: &Store, transitions: Vec<Transition>) -> Vec<CommitOutcome> {
    store
        .commit(&CommitBatch {
            transitions,
            ..Default::default()
        })
        .unwrap()
}

fn keep(dedupe: Duration, finished: Duration) -> Keep {
    Keep { dedupe, finished }
}

fn later(secs: i64) -> i64 {
    now_ms() + secs * 1000
}

#[test]
fn a_finished_instance_and_its_markers_go_when_they_expire_and_not_before() {
    let dir = TempDir::new("expiry").unwrap();
    let store = opened(&dir, Retention::default());
    let short = keep(Duration::from_secs(60), Duration::from_secs(120));
    commit(
        &store,
        vec![step("o-1", "e-1", 1, InstanceStatus::Active, short)],
    );
    commit(
        &store,
        vec![step("o-1", "e-2", 2, InstanceStatus::Completed, short)],
    );
    let (corr, saga) = ("o-1".parse().unwrap(), "order".parse().unwrap());
    assert_eq!(keys_of(&store, "dedupe").len(), 2);
    assert_eq!(keys_of(&store, "status").len(), 1);

    // Nothing is due yet.
    assert_eq!(store.sweep_all(now_ms()).unwrap(), Swept::default());
    // The markers' minute passed: they go, the finished instance stays queryable.
    let swept = store.sweep_all(later(61)).unwrap();
    assert_eq!((swept.markers, swept.instances), (2, 0));
    assert!(store.saga(&acme(), &saga, &corr).unwrap().is_some());
    assert!(keys_of(&store, "dedupe").is_empty());
    // Then the instance, with its status index entry; the index is empty again.
    let swept = store.sweep_all(later(121)).unwrap();
    assert_eq!((swept.markers, swept.instances), (0, 1));
    assert_eq!(store.saga(&acme(), &saga, &corr).unwrap(), None);
    assert!(keys_of(&store, "status").is_empty());
    assert!(keys_of(&store, "expire").is_empty());
    let expired = store.expired();
    assert_eq!((expired.markers, expired.instances), (2, 1));
}

#[test]
fn an_active_instance_is_never_swept_and_its_event_stays_a_duplicate_while_its_marker_lives() {
    let dir = TempDir::new("expiry").unwrap();
    let store = opened(&dir, Retention::default());
    let k = keep(DAY, Duration::ZERO);
    commit(
        &store,
        vec![step("o-1", "e-1", 1, InstanceStatus::Active, k)],
    );
    // A finished instance kept no time at all goes at the next sweep; its marker stays.
    commit(
        &store,
        vec![step("o-2", "e-2", 1, InstanceStatus::Completed, k)],
    );
    let swept = store.sweep_all(later(2)).unwrap();
    assert_eq!((swept.instances, swept.markers), (1, 0));
    let saga: SagaName = "order".parse().unwrap();
    assert!(store
        .saga(&acme(), &saga, &"o-1".parse().unwrap())
        .unwrap()
        .is_some());
    // The finished instance's start event comes again: its marker says it was applied.
    assert_eq!(
        commit(
            &store,
            vec![step("o-2", "e-2", 1, InstanceStatus::Active, k)]
        ),
        vec![CommitOutcome::Duplicate]
    );
    assert_eq!(
        store.saga(&acme(), &saga, &"o-2".parse().unwrap()).unwrap(),
        None
    );
}

#[test]
fn effect_records_expire_by_their_own_retention() {
    let dir = TempDir::new("expiry").unwrap();
    let store = opened(&dir, Retention::default());
    let done = StoredCompletion::Whole(EffectCompletion {
        event_id: "r-1".into(),
        result: RawJson::of(&json!({"ok": true})).unwrap(),
        recorded_at: "2026-12-05T10:00:00Z".into(),
    });
    let (c1, c2): (WorkId, WorkId) = ("c-1".parse().unwrap(), "c-2".parse().unwrap());
    store
        .record_effect_completions(&[
            (&acme(), &c1, &done, Duration::from_secs(10)),
            (&acme(), &c2, &done, DAY),
        ])
        .unwrap();
    let swept = store.sweep_all(later(11)).unwrap();
    assert_eq!(swept.effect_records, 1);
    assert_eq!(store.effect_completion(&acme(), &c1).unwrap(), None);
    assert!(store.effect_completion(&acme(), &c2).unwrap().is_some());
}

#[test]
fn a_sweep_takes_a_bounded_batch_and_transactions_the_process_commits_carry_it() {
    let dir = TempDir::new("expiry").unwrap();
    let store = opened(
        &dir,
        Retention {
            sweep_batch: 1,
            ..Retention::default()
        },
    );
    let gone = keep(Duration::ZERO, Duration::ZERO);
    for i in 0..3 {
        commit(
            &store,
            vec![step(
                &format!("o-{i}"),
                &format!("e-{i}"),
                1,
                InstanceStatus::Active,
                gone,
            )],
        );
    }
    assert_eq!(keys_of(&store, "expire").len(), 3, "one entry per commit");
    std::thread::sleep(Duration::from_millis(1100));
    // An outbox delete sweeps one entry (the batch is one record) as it commits.
    store.delete_outbox(&[]).unwrap();
    assert_eq!(keys_of(&store, "dedupe").len(), 2);
    assert!(store.sweep_due(now_ms()), "more is due");
    assert_eq!(store.sweep(now_ms()).unwrap().markers, 1);
    assert_eq!(store.sweep_all(now_ms()).unwrap().markers, 1);
    assert!(keys_of(&store, "dedupe").is_empty());
    assert!(keys_of(&store, "expire").is_empty());
}

#[test]
fn nothing_is_swept_before_the_delay_after_open() {
    let dir = TempDir::new("expiry").unwrap();
    let store = opened(
        &dir,
        Retention {
            sweep_delay: Duration::from_secs(3600),
            ..Retention::default()
        },
    );
    commit(
        &store,
        vec![step(
            "o-1",
            "e-1",
            1,
            InstanceStatus::Completed,
            keep(Duration::ZERO, Duration::ZERO),
        )],
    );
    assert_eq!(store.sweep_all(later(60)).unwrap(), Swept::default());
    assert_eq!(store.sweep_all(later(3601)).unwrap().instances, 1);
}

/// What the binary before retention wrote: long field names, no retention index.
#[test]
fn an_older_store_is_read_and_its_records_expire_from_when_it_is_opened() {
    let dir = TempDir::new("expiry").unwrap();
    {
        let store = opened(&dir, Retention::default());
        let old_record = json!({"status": "completed", "state": {"paid": true}, "version": 1,
            "transitions": 3, "last_event_id": "e-3", "updated_at": "2026-11-01T10:00:00Z"});
        store
            .put_raw("saga:acme:order:o-1", old_record.to_string().as_bytes())
            .unwrap();
        store
            .put_raw("status:acme:order:completed:0000000001:o-1", b"")
            .unwrap();
        store
            .put_raw(
                "dedupe:acme:order:e-3",
                br#"{"stream":"AGGREGATE_EVENTS","seq":3}"#,
            )
            .unwrap();
        store
            .put_raw(
                "dedupe:acme:effect:c-1",
                br#"{"event_id":"r-1","result":{},"recorded_at":"2026-11-01T10:00:00Z"}"#,
            )
            .unwrap();
        store
            .put_raw(
                "saga:acme:order:o-2",
                json!({"status": "active", "state": {}, "version": 1, "transitions": 1,
                    "last_event_id": "e-4", "updated_at": "2026-11-01T10:00:00Z"})
                .to_string()
                .as_bytes(),
            )
            .unwrap();
        // Written before retention: no index entries, no marker.
        let doomed: Vec<String> = keys_of(&store, "expire")
            .into_iter()
            .chain(["meta:retention_index".to_string()])
            .collect();
        store
            .write(|txn| {
                for k in &doomed {
                    match txn.del(store.db, k, None) {
                        Ok(()) | Err(lmdb::Error::NotFound) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(())
            })
            .unwrap();
    }
    let store = opened(
        &dir,
        Retention {
            finished_instances: Duration::from_secs(100),
            dedupe: Duration::from_secs(200),
            effect_records: Duration::from_secs(300),
            ..Retention::default()
        },
    );
    let saga: SagaName = "order".parse().unwrap();
    let old = store
        .saga(&acme(), &saga, &"o-1".parse().unwrap())
        .unwrap()
        .expect("the older record is read");
    assert_eq!(
        (old.status, old.transitions),
        (InstanceStatus::Completed, 3)
    );
    assert_eq!(old.state, json!({"paid": true}));
    assert_eq!(store.sweep_all(later(99)).unwrap(), Swept::default());
    let at = |s| store.sweep_all(later(s)).unwrap();
    assert_eq!(at(101).instances, 1);
    assert_eq!(at(201).markers, 1);
    assert_eq!(at(301).effect_records, 1);
    // The active instance stays; the finished one left no index entry behind.
    assert!(store
        .saga(&acme(), &saga, &"o-2".parse().unwrap())
        .unwrap()
        .is_some());
    assert!(keys_of(&store, "status").is_empty());
    // A record written now uses the short names.
    commit(
        &store,
        vec![step(
            "o-9",
            "e-9",
            1,
            InstanceStatus::Active,
            keep(DAY, DAY),
        )],
    );
    let raw: serde_json::Value = store
        .reader()
        .unwrap()
        .get("saga:acme:order:o-9")
        .unwrap()
        .unwrap();
    assert_eq!(raw["s"], json!("active"));
    assert!(raw.get("status").is_none());
}

#[test]
fn an_imported_tenant_gets_its_retention() {
    let dir = TempDir::new("expiry").unwrap();
    let from = opened(&dir, Retention::default());
    let k = keep(DAY, DAY);
    commit(
        &from,
        vec![step("o-1", "e-1", 1, InstanceStatus::Completed, k)],
    );
    let mut exported = Vec::new();
    from.export_tenant(&acme(), &mut exported).unwrap();
    let other = TempDir::new("expiry").unwrap();
    let to = opened(
        &other,
        Retention {
            finished_instances: Duration::from_secs(10),
            dedupe: Duration::from_secs(20),
            ..Retention::default()
        },
    );
    to.import_tenant(&acme(), exported.as_slice()).unwrap();
    let swept = to.sweep_all(later(21)).unwrap();
    assert_eq!((swept.instances, swept.markers), (1, 1));
}

#[test]
fn a_full_map_grows_up_to_its_most_and_only_then_is_full() {
    let dir = TempDir::new("expiry").unwrap();
    let options = StoreOptions {
        map_size: 1 << 20,
        max_size: 8 << 20,
        retention: Retention::default(),
        max_readers: StoreOptions::MIN_READERS,
    };
    let path = dir.path().join("store");
    let store = Store::open_with(&path, &options).unwrap();
    let big = |i: u64| {
        let mut t = step(
            &format!("o-{i}"),
            &format!("e-{i}"),
            1,
            InstanceStatus::Active,
            keep(DAY, DAY),
        );
        t.record.state = json!("x".repeat(200 * 1024));
        t
    };
    // 3 MiB of state: more than the map it opened with.
    for i in 0..15 {
        commit(&store, vec![big(i)]);
    }
    assert!(store.map_bytes() > 1 << 20, "the map grew");
    let space = store.space().unwrap();
    assert!(space.used_bytes > 3 << 20, "{space:?}");
    assert_eq!(space.max_bytes, 8 << 20);
    // Past the most: full, and the refused commit left nothing behind.
    let err = store
        .commit(&CommitBatch {
            transitions: (100..140).map(big).collect(),
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::MapFull), "{err}");
    assert_eq!(
        store
            .saga(
                &acme(),
                &"order".parse().unwrap(),
                &"o-100".parse().unwrap()
            )
            .unwrap(),
        None
    );
    drop(store);
    // Opened again with a smaller map than its file holds: it keeps working.
    let smaller = StoreOptions {
        map_size: 1 << 20,
        max_size: 16 << 20,
        retention: Retention::default(),
        max_readers: StoreOptions::MIN_READERS,
    };
    let store = Store::open_with(&path, &smaller).unwrap();
    assert!(
        store.map_bytes() > 1 << 20,
        "LMDB opens it at its data's size"
    );
    assert!(store
        .saga(&acme(), &"order".parse().unwrap(), &"o-14".parse().unwrap())
        .unwrap()
        .is_some());
    store.probe_write().unwrap();
}

fn timer(corr: &str, name: &str, due_at_ms: i64) -> ScheduleItem {
    super::tests::timer(&acme(), corr, name, due_at_ms)
}

/// A timer's record outlives its reminder's publish (the reminder runs only while it is
/// there), but one whose reminder nobody applies expires after the dedupe horizon; a
/// timer pending in the due index, or consumed, is never the sweep's.
#[test]
fn a_published_timer_nobody_applies_expires_after_the_dedupe_horizon() {
    let dir = TempDir::new("expiry").unwrap();
    let store = opened(
        &dir,
        Retention {
            dedupe: Duration::from_secs(60),
            ..Retention::default()
        },
    );
    let k = keep(DAY, DAY);
    let mut set = step("o-1", "e-1", 1, InstanceStatus::Active, k);
    set.schedules = vec![timer("o-1", "lost", 100), timer("o-1", "pending", 200)];
    let mut other = step("o-2", "e-2", 1, InstanceStatus::Active, k);
    other.schedules = vec![timer("o-2", "applied", 100)];
    commit(&store, vec![set, other]);
    let published: Vec<String> = store
        .due_timers(100, 10)
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(published.len(), 2);
    assert_eq!(store.timers_published(&published).unwrap(), 2);
    // o-2 applies its reminder: the timer goes with that transition.
    let mut applied = step("o-2", "r-2", 2, InstanceStatus::Active, k);
    applied.fired = Some("applied".into());
    commit(&store, vec![applied]);

    let (saga, o1) = ("order".parse().unwrap(), "o-1".parse().unwrap());
    let names = |store: &Store| -> Vec<String> {
        let held = store.instance_schedules(&acme(), &saga, &o1).unwrap();
        held.into_iter().map(|t| t.name).collect()
    };
    // Within the horizon the published timer waits for its reminder.
    store.sweep_all(later(59)).unwrap();
    assert_eq!(names(&store), vec!["lost", "pending"]);
    // After it, it goes; the pending one (in the due index) stays.
    let swept = store.sweep_all(later(61)).unwrap();
    assert_eq!(swept.timers, 1);
    assert_eq!(names(&store), vec!["pending"]);
    assert_eq!(store.timers_len().unwrap(), 1);
    assert_eq!(store.expired().timers, 1);
}

#[test]
fn the_sweep_rides_in_a_group_of_deletes_alone_and_never_in_one_with_a_commit() {
    let dir = TempDir::new("expiry").unwrap();
    let store = std::sync::Arc::new(opened(
        &dir,
        Retention {
            sweep_batch: 1,
            ..Retention::default()
        },
    ));
    let gone = keep(Duration::ZERO, Duration::ZERO);
    for i in 0..2 {
        let (corr, event) = (format!("o-{i}"), format!("e-{i}"));
        commit(
            &store,
            vec![step(&corr, &event, 1, InstanceStatus::Active, gone)],
        );
    }
    std::thread::sleep(Duration::from_millis(1100));
    let (writer, mut jobs) = crate::store::writer(store.clone());
    let delete = |w: &crate::store::Writer| {
        let (tx, rx) = crossbeam_channel::bounded(1);
        w.delete_outbox(vec![], move |_, result| {
            let _ = tx.send(result);
        });
        rx
    };

    // A delete and a commit in one group: the commit does not wait behind a sweep.
    let deleted = delete(&writer);
    let committing = {
        let writer = writer.clone();
        std::thread::spawn(move || {
            let t = step(
                "o-9",
                "e-9",
                1,
                InstanceStatus::Active,
                Keep::of(&Retention::default()),
            );
            writer.commit(CommitBatch {
                transitions: vec![t],
                ..Default::default()
            })
        })
    };
    let group = jobs.next_group().unwrap();
    assert_eq!(group.len(), 2, "the delete waited for the commit");
    jobs.write(group);
    assert!(committing.join().unwrap().1.is_ok());
    assert!(deleted.try_recv().unwrap().is_ok());
    assert_eq!(keys_of(&store, "dedupe").len(), 3, "nothing swept");

    // A delete alone (after its wait): it carries a sweep batch.
    let deleted = delete(&writer);
    let group = jobs.next_group().unwrap();
    assert_eq!(group.len(), 1);
    jobs.write(group);
    assert!(deleted.try_recv().unwrap().is_ok());
    assert_eq!(keys_of(&store, "dedupe").len(), 2, "one marker swept");
}
