//! Instance history: an entry per transition in the transition's transaction, the
//! first K and last N kept with what was dropped counted, gone with its instance, one
//! tenant's never another's.

use std::time::Duration;

use serde_json::json;

use super::tests::{keys_of, opened_with};
use super::*;
use crate::dev::TempDir;
use crate::keys::OutboxKind;

fn tenant(s: &str) -> TenantId {
    s.parse().unwrap()
}

fn order() -> SagaName {
    "order".parse().unwrap()
}

fn corr(s: &str) -> CorrelationId {
    s.parse().unwrap()
}

fn opened(dir: &TempDir, history: HistoryBound) -> Store {
    let retention = Retention {
        history,
        ..Retention::default()
    };
    opened_with(dir, retention)
}

/// Transition `n` of instance `corr_id` of `tenant_id`, caused by event `e-{n}`.
fn step(tenant_id: &str, corr_id: &str, n: u64, status: InstanceStatus) -> Transition {
    let event = format!("e-{corr_id}-{n}");
    Transition {
        tenant: tenant(tenant_id),
        saga: order(),
        correlation: corr(corr_id),
        event_id: event.parse().unwrap(),
        position: StreamPosition {
            stream: "AGGREGATE_EVENTS".into(),
            seq: 100 + n,
        },
        record: SagaRecord {
            status,
            state: json!({"n": n}),
            version: 1,
            transitions: n,
            last_event_id: event,
            updated_at: "2026-12-06T04:00:00Z".into(),
            fault: None,
        },
        outbox: vec![],
        schedules: vec![],
        cancel: vec![],
        fired: None,
        keep: Keep::of(&Retention::default()),
        history: HistoryFacts {
            subject: format!("aggregate.{tenant_id}.order.Step"),
            event_type: "Step".into(),
            gas: 10 * n,
        },
    }
}

fn commit(store: &Store, transitions: Vec<Transition>) -> Result<Vec<CommitOutcome>, StoreError> {
    store.commit(&CommitBatch {
        transitions,
        ..Default::default()
    })
}

/// Every `history:` key in the store.
fn history_keys(store: &Store) -> Vec<String> {
    keys_of(store, keys::space::HISTORY)
}

fn numbers(h: &History) -> Vec<u64> {
    h.entries.iter().map(|e| e.n).collect()
}

fn history_of(store: &Store, tenant_id: &str, corr_id: &str) -> Option<History> {
    store
        .history(&tenant(tenant_id), &order(), &corr(corr_id))
        .unwrap()
}

#[test]
fn every_transition_appends_an_entry_with_its_facts() {
    let dir = TempDir::new("history").unwrap();
    let store = opened(&dir, HistoryBound::default());
    let acme = tenant("acme");
    let before_ms = now_ms();

    let mut start = step("acme", "o-1", 1, InstanceStatus::Active);
    start.outbox.push(OutboxItem {
        kind: OutboxKind::Effect,
        tenant: acme.clone(),
        work_id: "cmd-1".parse().unwrap(),
        saga: order(),
        correlation: corr("o-1"),
        destination: "workflow.cmd.acme.charge_card".into(),
        envelope: RawJson::of(&json!({"command_id": "cmd-1"})).unwrap(),
        traceparent: None,
    });
    start
        .schedules
        .push(super::tests::timer(&acme, "o-1", "payment_timeout", 5_000));
    let mut fault = step("acme", "o-1", 2, InstanceStatus::Faulted);
    fault.cancel.push("payment_timeout".into());
    fault.record.fault = Some("division by zero at /output/state".into());
    commit(&store, vec![start]).unwrap();
    commit(&store, vec![fault]).unwrap();

    let h = history_of(&store, "acme", "o-1").unwrap();
    assert_eq!(h.dropped, 0);
    assert_eq!(numbers(&h), [1, 2]);
    let (first, second) = (&h.entries[0], &h.entries[1]);
    assert_eq!(
        (first.event_id.as_str(), first.stream.as_str(), first.seq),
        ("e-o-1-1", "AGGREGATE_EVENTS", 101)
    );
    assert_eq!(first.subject, "aggregate.acme.order.Step");
    assert_eq!(first.event_type, "Step");
    assert_eq!(
        (first.status_before, first.status_after),
        (None, InstanceStatus::Active),
        "the first transition started the instance"
    );
    assert_eq!(first.commands, ["cmd-1"]);
    assert_eq!(first.timers, ["payment_timeout"]);
    assert!(first.cancelled.is_empty() && first.fault.is_none());
    assert_eq!(first.gas, 10);
    assert!(first.at_ms >= before_ms && first.at_ms <= now_ms());
    assert_eq!(
        (second.status_before, second.status_after),
        (Some(InstanceStatus::Active), InstanceStatus::Faulted)
    );
    assert_eq!(second.cancelled, ["payment_timeout"]);
    assert_eq!(
        second.fault.as_deref(),
        Some("division by zero at /output/state")
    );
    assert_eq!(second.gas, 20);
}

#[test]
fn an_unknown_instance_has_no_history_and_a_duplicate_writes_no_entry() {
    let dir = TempDir::new("history").unwrap();
    let store = opened(&dir, HistoryBound::default());
    assert_eq!(history_of(&store, "acme", "o-1"), None);
    let first = step("acme", "o-1", 1, InstanceStatus::Active);
    commit(&store, vec![first.clone()]).unwrap();
    let again = commit(&store, vec![first]).unwrap();
    assert_eq!(again, [CommitOutcome::Duplicate]);
    assert_eq!(history_keys(&store).len(), 1);
}

/// Invariant 5: the entry is part of the transition's transaction, so a commit that
/// fails (or is refused as stale) leaves none.
#[test]
fn a_failed_or_refused_commit_writes_no_entry() {
    let dir = TempDir::new("history").unwrap();
    let store = opened(&dir, HistoryBound::default());
    store.inject_commit_failures(1);
    let failed = commit(&store, vec![step("acme", "o-1", 1, InstanceStatus::Active)]);
    assert!(matches!(failed, Err(StoreError::Injected)), "{failed:?}");
    assert!(history_keys(&store).is_empty());

    commit(&store, vec![step("acme", "o-1", 1, InstanceStatus::Active)]).unwrap();
    // Computed from a record with 2 transitions, but the store holds 1: refused whole.
    let stale = commit(&store, vec![step("acme", "o-1", 3, InstanceStatus::Active)]);
    assert!(matches!(stale, Err(StoreError::Stale { .. })), "{stale:?}");
    assert_eq!(numbers(&history_of(&store, "acme", "o-1").unwrap()), [1]);
}

/// Invariant 6: a long-running instance keeps K + N entries, never more, and says how
/// many it dropped; each transition past the bound deletes exactly one.
#[test]
fn a_long_running_instance_keeps_the_first_and_last_entries_and_counts_the_dropped() {
    let dir = TempDir::new("history").unwrap();
    let store = opened(&dir, HistoryBound { first: 2, last: 3 });
    for n in 1..=40 {
        // Several transitions of it in one group commit, as under load.
        let batch: Vec<Transition> = if n % 4 == 0 {
            continue;
        } else if n % 4 == 3 {
            vec![
                step("acme", "o-1", n, InstanceStatus::Active),
                step("acme", "o-1", n + 1, InstanceStatus::Active),
            ]
        } else {
            vec![step("acme", "o-1", n, InstanceStatus::Active)]
        };
        commit(&store, batch).unwrap();
        let kept = history_keys(&store).len() as u64;
        let applied = if n % 4 == 3 { n + 1 } else { n };
        assert_eq!(kept, applied.min(5), "after transition {applied}");
    }
    let h = history_of(&store, "acme", "o-1").unwrap();
    assert_eq!(numbers(&h), [1, 2, 38, 39, 40]);
    assert_eq!(h.dropped, 35);
    assert_eq!(h.entries[2].event_id, "e-o-1-38");
}

#[test]
fn a_lowered_bound_trims_on_the_instances_next_transition() {
    let dir = TempDir::new("history").unwrap();
    {
        let store = opened(&dir, HistoryBound { first: 2, last: 10 });
        for n in 1..=15 {
            commit(&store, vec![step("acme", "o-1", n, InstanceStatus::Active)]).unwrap();
        }
        assert_eq!(history_keys(&store).len(), 12);
    }
    let store = opened(&dir, HistoryBound { first: 1, last: 3 });
    commit(
        &store,
        vec![step("acme", "o-1", 16, InstanceStatus::Active)],
    )
    .unwrap();
    let h = history_of(&store, "acme", "o-1").unwrap();
    assert_eq!(numbers(&h), [1, 14, 15, 16]);
    assert_eq!(h.dropped, 12);
}

/// `last` 0 keeps the first entries only, and counts every later transition as
/// dropped; 0 and 0 keep none and write nothing.
#[test]
fn a_bound_without_a_last_part_keeps_the_first_entries_or_none() {
    let dir = TempDir::new("history").unwrap();
    {
        let store = opened(&dir, HistoryBound { first: 2, last: 0 });
        for n in 1..=6 {
            commit(&store, vec![step("acme", "o-1", n, InstanceStatus::Active)]).unwrap();
        }
        let h = history_of(&store, "acme", "o-1").unwrap();
        assert_eq!((numbers(&h), h.dropped), (vec![1, 2], 4));
    }
    let store = opened(&dir, HistoryBound { first: 0, last: 0 });
    for n in 1..=3 {
        commit(&store, vec![step("acme", "o-2", n, InstanceStatus::Active)]).unwrap();
    }
    let h = history_of(&store, "acme", "o-2").unwrap();
    assert_eq!((h.entries.len(), h.dropped), (0, 0));
    assert_eq!(history_keys(&store).len(), 2, "o-1's two entries only");
}

/// Invariant 7: a finished instance's expiry takes its history with it; an active
/// instance's stays.
#[test]
fn a_finished_instance_takes_its_history_when_it_expires() {
    let dir = TempDir::new("history").unwrap();
    let store = opened(&dir, HistoryBound { first: 1, last: 2 });
    let short = Keep {
        dedupe: Duration::from_secs(60),
        finished: Duration::from_secs(120),
    };
    for n in 1..=5 {
        let status = if n == 5 {
            InstanceStatus::Completed
        } else {
            InstanceStatus::Active
        };
        let mut t = step("acme", "o-done", n, status);
        t.keep = short;
        commit(&store, vec![t]).unwrap();
    }
    commit(
        &store,
        vec![step("acme", "o-busy", 1, InstanceStatus::Active)],
    )
    .unwrap();
    assert_eq!(history_keys(&store).len(), 3 + 1);

    // Its minute has not come: kept, and still served.
    store.sweep_all(now_ms()).unwrap();
    assert_eq!(
        history_of(&store, "acme", "o-done").unwrap().entries.len(),
        3
    );
    let swept = store.sweep_all(now_ms() + 121_000).unwrap();
    assert_eq!((swept.instances, swept.history), (1, 3));
    assert_eq!(history_of(&store, "acme", "o-done"), None);
    assert_eq!(
        history_keys(&store),
        [keys::history(&tenant("acme"), &order(), &corr("o-busy"), 1)],
        "only the active instance's entry is left"
    );
}

/// Invariant 8: keys are per tenant; a tenant's move carries its history, its removal
/// removes it, and the store's usage view counts it as its own keyspace per tenant.
#[test]
fn history_belongs_to_its_tenant() {
    let dir = TempDir::new("history").unwrap();
    let store = opened(&dir, HistoryBound::default());
    commit(
        &store,
        vec![
            step("acme", "o-1", 1, InstanceStatus::Active),
            step("globex", "o-1", 1, InstanceStatus::Active),
        ],
    )
    .unwrap();
    commit(&store, vec![step("acme", "o-1", 2, InstanceStatus::Active)]).unwrap();
    assert_eq!(numbers(&history_of(&store, "acme", "o-1").unwrap()), [1, 2]);
    let globex = history_of(&store, "globex", "o-1").unwrap();
    assert_eq!(numbers(&globex), [1]);
    assert_eq!(globex.entries[0].subject, "aggregate.globex.order.Step");

    let usage = store.usage(1_000).unwrap();
    assert_eq!(usage.keyspaces["history"].keys, 3);
    assert_eq!(usage.tenants["acme"]["history"].keys, 2);
    assert_eq!(usage.tenants["globex"]["history"].keys, 1);

    let mut export = Vec::new();
    store.export_tenant(&tenant("acme"), &mut export).unwrap();
    store.delete_tenant(&tenant("acme")).unwrap();
    assert_eq!(history_of(&store, "acme", "o-1"), None);
    assert_eq!(history_keys(&store).len(), 1, "globex's entry stays");

    let elsewhere = Store::open(&dir.path().join("other"), 64 << 20).unwrap();
    elsewhere
        .import_tenant(&tenant("acme"), export.as_slice())
        .unwrap();
    let moved = history_of(&elsewhere, "acme", "o-1").unwrap();
    assert_eq!(numbers(&moved), [1, 2]);
    assert_eq!(history_of(&elsewhere, "globex", "o-1"), None);
}

/// Entries stay small: free text is clipped (the record keeps the whole fault), and the
/// example's entry is about 250 bytes with its key.
#[test]
fn entries_are_compact_and_free_text_is_clipped() {
    let dir = TempDir::new("history").unwrap();
    let store = opened(&dir, HistoryBound::default());
    let acme = tenant("acme");
    // The example order saga's start: one effect command, one timer, UUID ids.
    let mut start = step(
        "acme",
        "0192f0c4-7e1b-7c3a-9d2e-3b4a5c6d7e8f",
        1,
        InstanceStatus::Active,
    );
    start.event_id = "0192f0c4-7e1b-7c3a-9d2e-3b4a5c6d7e90".parse().unwrap();
    start.history = HistoryFacts {
        subject: "aggregate.acme.order.OrderPlaced".into(),
        event_type: "OrderPlaced".into(),
        gas: 312,
    };
    start.outbox.push(OutboxItem {
        kind: OutboxKind::Effect,
        tenant: acme.clone(),
        work_id: "5b0c7f0e-2d4f-5a8e-b1c3-9e8d7f6a5b4c".parse().unwrap(),
        saga: order(),
        correlation: start.correlation.clone(),
        destination: "workflow.cmd.acme.charge_card".into(),
        envelope: RawJson::of(&json!({})).unwrap(),
        traceparent: None,
    });
    start.schedules.push(super::tests::timer(
        &acme,
        start.correlation.as_str(),
        "payment_timeout",
        5_000,
    ));
    let example_key = keys::history(&acme, &order(), &start.correlation, 1);
    commit(&store, vec![start]).unwrap();
    let stored = store
        .reader()
        .unwrap()
        .txn
        .get(store.db, &example_key)
        .unwrap()
        .len();
    let size = example_key.len() + stored;
    assert!((250..=350).contains(&size), "{size} bytes");

    let mut hostile = step("acme", "o-2", 1, InstanceStatus::Faulted);
    hostile.history.event_type = "é".repeat(10_000);
    hostile.record.fault = Some("x".repeat(100_000));
    commit(&store, vec![hostile]).unwrap();
    let entry = &history_of(&store, "acme", "o-2").unwrap().entries[0];
    assert!(entry.event_type.len() <= 128 && entry.event_type.starts_with('é'));
    assert_eq!(entry.fault.as_ref().map(String::len), Some(512));
    let record = store.saga(&acme, &order(), &corr("o-2")).unwrap().unwrap();
    assert_eq!(record.fault.map(|f| f.len()), Some(100_000));
}
