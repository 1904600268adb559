use serde_json::json;

use super::*;
use crate::dev::TempDir;
use crate::keys::OutboxKind;

pub(super) fn t(s: &str) -> TenantId {
    s.parse().unwrap()
}

pub(super) fn open(dir: &TempDir, mib: usize) -> Store {
    Store::open(&dir.path().join("store"), mib * 1024 * 1024).unwrap()
}

fn record(state: serde_json::Value, event: &str) -> SagaRecord {
    SagaRecord {
        status: InstanceStatus::Active,
        state,
        version: 1,
        transitions: 1,
        last_event_id: event.into(),
        updated_at: "2026-11-27T10:00:00Z".into(),
        fault: None,
    }
}

pub(super) fn timer(tenant: &TenantId, corr: &str, name: &str, due: i64) -> ScheduleItem {
    ScheduleItem {
        tenant: tenant.clone(),
        saga: "order".parse().unwrap(),
        correlation: corr.parse().unwrap(),
        name: name.into(),
        due_at_ms: due,
        payload: json!({}),
        metadata: Default::default(),
    }
}

pub(super) fn outbox_item(tenant: &TenantId, work: &str) -> OutboxItem {
    OutboxItem {
        kind: OutboxKind::Effect,
        tenant: tenant.clone(),
        work_id: work.parse().unwrap(),
        saga: "order".parse().unwrap(),
        correlation: "o-1".parse().unwrap(),
        destination: "workflow.cmd.acme.charge_card".into(),
        envelope: RawJson::of(&json!({"command_id": work})).unwrap(),
        traceparent: None,
    }
}

pub(super) fn transition(
    tenant: &TenantId,
    corr: &str,
    event: &str,
    seq: u64,
    state: serde_json::Value,
) -> Transition {
    Transition {
        tenant: tenant.clone(),
        saga: "order".parse().unwrap(),
        correlation: corr.parse().unwrap(),
        event_id: event.parse().unwrap(),
        position: StreamPosition {
            stream: "AGGREGATE_EVENTS".into(),
            seq,
        },
        record: record(state, event),
        outbox: vec![outbox_item(tenant, &format!("cmd-{event}"))],
        schedules: vec![timer(tenant, corr, "payment_timeout", 1_000 + seq as i64)],
        cancel: vec![],
        fired: None,
        keep: Keep::of(&Retention::default()),
        history: Default::default(),
    }
}

pub(super) fn batch(transitions: Vec<Transition>) -> CommitBatch {
    CommitBatch {
        transitions,
        quarantine: vec![],
        ..Default::default()
    }
}

fn saga_name() -> SagaName {
    "order".parse().unwrap()
}

#[test]
fn state_and_checkpoint_round_trip() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let acme = t("acme");
    let corr: CorrelationId = "o-1".parse().unwrap();
    let out = store
        .commit(&batch(vec![transition(
            &acme,
            "o-1",
            "e-1",
            7,
            json!({"step": "charging"}),
        )]))
        .unwrap();
    assert_eq!(out, vec![CommitOutcome::Applied]);
    let rec = store.saga(&acme, &saga_name(), &corr).unwrap().unwrap();
    assert_eq!(rec.state, json!({"step": "charging"}));
    assert_eq!(
        store.checkpoint(&acme, &saga_name()).unwrap().streams["AGGREGATE_EVENTS"],
        7
    );
    assert!(store
        .is_duplicate(&acme, &saga_name(), &"e-1".parse().unwrap())
        .unwrap());
    assert_eq!(store.outbox(&acme, 10).unwrap().len(), 1);
    assert_eq!(
        store
            .instance_schedules(&acme, &saga_name(), &corr)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn checkpoint_never_moves_backwards() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let acme = t("acme");
    store
        .commit(&batch(vec![
            transition(&acme, "o-1", "e-2", 20, json!(2)),
            transition(&acme, "o-2", "e-1", 10, json!(1)),
        ]))
        .unwrap();
    store
        .commit(&batch(vec![transition(&acme, "o-3", "e-0", 5, json!(0))]))
        .unwrap();
    assert_eq!(
        store.checkpoint(&acme, &saga_name()).unwrap().streams["AGGREGATE_EVENTS"],
        20
    );
}

/// Commits instance o-1's first transition (event e-1, state "first").
fn commit_first(store: &Store, tenant: &TenantId) {
    let first = transition(tenant, "o-1", "e-1", 1, json!("first"));
    store.commit(&batch(vec![first])).unwrap();
}

#[test]
fn a_new_event_twice_in_one_batch_is_applied_once() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let acme = t("acme");
    let corr: CorrelationId = "o-2".parse().unwrap();
    let first = transition(&acme, "o-2", "e-2", 1, json!("first"));
    let mut second = transition(&acme, "o-2", "e-2", 2, json!("second"));
    second.outbox = vec![outbox_item(&acme, "other")];
    let out = store.commit(&batch(vec![first, second])).unwrap();
    assert_eq!(out, vec![CommitOutcome::Applied, CommitOutcome::Duplicate]);
    let record = store.saga(&acme, &saga_name(), &corr).unwrap().unwrap();
    assert_eq!(record.state, json!("first"));
    assert_eq!(store.outbox_len().unwrap(), 1);
}

#[test]
fn a_refused_batch_leaves_no_dedupe_marker() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let acme = t("acme");
    commit_first(&store, &acme);
    // A new event, then one whose record was computed from a stale read of o-1 (it
    // carries o-1's first count again): the commit is refused whole, the new event's
    // marker (written first) with it.
    let fresh = transition(&acme, "o-3", "e-3", 2, json!("fresh"));
    let stale = transition(&acme, "o-1", "e-4", 3, json!("stale"));
    let err = store.commit(&batch(vec![fresh, stale])).unwrap_err();
    assert!(matches!(err, StoreError::Stale { .. }), "{err}");
    let e3: EventId = "e-3".parse().unwrap();
    assert!(!store.is_duplicate(&acme, &saga_name(), &e3).unwrap());
    let o3: CorrelationId = "o-3".parse().unwrap();
    assert!(store.saga(&acme, &saga_name(), &o3).unwrap().is_none());
}

#[test]
fn duplicate_event_changes_nothing() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let acme = t("acme");
    let corr: CorrelationId = "o-1".parse().unwrap();
    commit_first(&store, &acme);
    let mut again = transition(&acme, "o-1", "e-1", 2, json!("second"));
    again.outbox = vec![outbox_item(&acme, "other")];
    // Also twice within one batch.
    let out = store.commit(&batch(vec![again.clone(), again])).unwrap();
    assert_eq!(
        out,
        vec![CommitOutcome::Duplicate, CommitOutcome::Duplicate]
    );
    assert_eq!(
        store
            .saga(&acme, &saga_name(), &corr)
            .unwrap()
            .unwrap()
            .state,
        json!("first")
    );
    assert_eq!(store.outbox(&acme, 10).unwrap().len(), 1);
    // Only the checkpoint moves: the copy at sequence 2 is accounted for.
    assert_eq!(
        store.checkpoint(&acme, &saga_name()).unwrap().streams["AGGREGATE_EVENTS"],
        2
    );
}

/// A transition computed from an older record than the stored one (a stale read) is
/// refused with the whole commit, instead of overwriting the newer record.
#[test]
fn a_transition_based_on_an_older_record_is_refused_whole() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let acme = t("acme");
    store
        .commit(&batch(vec![transition(
            &acme,
            "o-1",
            "e-1",
            1,
            json!("one"),
        )]))
        .unwrap();
    let mut second = transition(&acme, "o-1", "e-2", 2, json!("two"));
    second.record.transitions = 2;
    store.commit(&batch(vec![second])).unwrap();
    let before = snapshot(&store, &acme);
    // Computed from the record after e-1 (one transition), as a stale reader would.
    let mut stale = transition(&acme, "o-1", "e-3", 3, json!("lost two"));
    stale.record.transitions = 2;
    let fresh_elsewhere = transition(&acme, "o-2", "e-4", 4, json!("other"));
    let err = store
        .commit(&batch(vec![fresh_elsewhere, stale]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Stale {
                stored: 2,
                based_on: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        !err.is_deterministic(),
        "not the data's fault: nothing is quarantined, the messages run again"
    );
    assert_eq!(snapshot(&store, &acme), before);
    assert!(store
        .saga(&acme, &saga_name(), &"o-2".parse().unwrap())
        .unwrap()
        .is_none());
    // A new instance's first transition must find no record.
    let mut restart = transition(&acme, "o-1", "e-5", 5, json!("again"));
    restart.record.transitions = 1;
    assert!(matches!(
        store.commit(&batch(vec![restart])),
        Err(StoreError::Stale {
            stored: 2,
            based_on: 0,
            ..
        })
    ));
}

/// Snapshot of everything a transition can touch, for before/after comparisons.
pub(super) fn snapshot(store: &Store, tenant: &TenantId) -> serde_json::Value {
    let corr: CorrelationId = "o-1".parse().unwrap();
    json!({
        "saga": store.saga(tenant, &saga_name(), &corr).unwrap(),
        "checkpoint": store.checkpoint(tenant, &saga_name()).unwrap(),
        "outbox": store.outbox(tenant, 100).unwrap(),
        "schedules": store.instance_schedules(tenant, &saga_name(), &corr).unwrap(),
        "entries": store.entries().unwrap(),
    })
}

#[test]
fn failed_commit_leaves_everything_untouched() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let acme = t("acme");
    store
        .commit(&batch(vec![transition(
            &acme,
            "o-1",
            "e-1",
            1,
            json!("before"),
        )]))
        .unwrap();
    let before = snapshot(&store, &acme);
    store.inject_commit_failures(1);
    let mut next = transition(&acme, "o-1", "e-2", 2, json!("after"));
    next.record.transitions = 2;
    next.cancel = vec!["payment_timeout".into()];
    let err = store.commit(&batch(vec![next.clone()])).unwrap_err();
    assert!(matches!(err, StoreError::Injected));
    assert_eq!(snapshot(&store, &acme), before);
    assert!(!store
        .is_duplicate(&acme, &saga_name(), &"e-2".parse().unwrap())
        .unwrap());
    // The same batch commits once the fault is gone.
    assert_eq!(
        store.commit(&batch(vec![next])).unwrap(),
        vec![CommitOutcome::Applied]
    );
    assert_ne!(snapshot(&store, &acme), before);
}

#[test]
fn map_full_is_an_error_and_writes_nothing() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 1);
    let acme = t("acme");
    store
        .commit(&batch(vec![transition(
            &acme,
            "o-1",
            "e-1",
            1,
            json!("small"),
        )]))
        .unwrap();
    let before = snapshot(&store, &acme);
    // Many outbox items with big bodies: more than a 1 MiB map holds.
    let mut huge = transition(&acme, "o-1", "e-2", 2, json!("x".repeat(1000)));
    huge.record.transitions = 2;
    huge.outbox = (0..40)
        .map(|i| {
            let mut item = outbox_item(&acme, &format!("big-{i}"));
            item.envelope = RawJson::of(&json!({"blob": "y".repeat(64 * 1024)})).unwrap();
            item
        })
        .collect();
    let err = store.commit(&batch(vec![huge])).unwrap_err();
    assert!(matches!(err, StoreError::MapFull), "{err}");
    assert_eq!(snapshot(&store, &acme), before);
    // Small writes still work afterwards.
    store.probe_write().unwrap();
}

#[test]
fn outbox_delete_happens_once() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let acme = t("acme");
    store
        .commit(&batch(vec![transition(&acme, "o-1", "e-1", 1, json!(1))]))
        .unwrap();
    let items = store.outbox(&acme, 10).unwrap();
    let keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, vec!["outbox:acme:effect:cmd-e-1".to_string()]);
    assert_eq!(store.delete_outbox(&keys).unwrap(), 1);
    assert_eq!(store.delete_outbox(&keys).unwrap(), 0);
    assert!(store.outbox(&acme, 10).unwrap().is_empty());
    assert!(store
        .delete_outbox(&["saga:acme:order:o-1".to_string()])
        .is_err());
}

#[test]
fn outbox_pages_walk_every_tenant_in_key_order() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let (acme, globex) = (t("acme"), t("globex"));
    let mut transitions = Vec::new();
    for (tenant, n) in [(&acme, 3), (&globex, 2)] {
        for i in 0..n {
            transitions.push(transition(
                tenant,
                &format!("o-{i}"),
                &format!("e-{i}"),
                i + 1,
                json!(1),
            ));
        }
    }
    store.commit(&batch(transitions)).unwrap();
    // The transitions also wrote `saga:` keys, which sort right after the outbox
    // keyspace: none may leak into a page.
    let mut seen = Vec::new();
    let mut from = String::new();
    loop {
        let page = store.outbox_page(&from, 2, |_| false).unwrap();
        seen.extend(page.items.iter().map(|(k, _)| k.clone()));
        match page.next {
            Some(next) => from = next,
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "outbox:acme:effect:cmd-e-0",
            "outbox:acme:effect:cmd-e-1",
            "outbox:acme:effect:cmd-e-2",
            "outbox:globex:effect:cmd-e-0",
            "outbox:globex:effect:cmd-e-1"
        ]
    );
    // Starting past a tenant's prefix skips the rest of that tenant.
    let page = store.outbox_page("outbox:acme;", 10, |_| false).unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.items.iter().all(|(_, item)| item.tenant == globex));
    assert!(page.next.is_none(), "the keyspace ended");
    // Skipped keys count towards the page but are not returned.
    let page = store
        .outbox_page("", 3, |k| k.starts_with("outbox:acme:"))
        .unwrap();
    assert!(page.items.is_empty());
    assert_eq!(
        page.next.as_deref(),
        Some("outbox:acme:effect:cmd-e-2\u{0}")
    );
    assert_eq!(
        store
            .existing(&[seen[0].clone(), "outbox:acme:effect:nope".into()])
            .unwrap(),
        vec![true, false]
    );
}

#[test]
fn an_effect_completion_is_recorded_per_tenant_and_command() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let (acme, globex) = (t("acme"), t("globex"));
    let cmd: WorkId = "cmd-1".parse().unwrap();
    assert_eq!(store.effect_completion(&acme, &cmd).unwrap(), None);
    let done = StoredCompletion::Whole(EffectCompletion {
        event_id: "r-1".into(),
        result: RawJson::of(&json!({"event_id": "r-1", "result_type": "succeeded"})).unwrap(),
        recorded_at: "2026-11-27T10:00:00.000Z".into(),
    });
    store.record_effect_completion(&acme, &cmd, &done).unwrap();
    assert_eq!(store.effect_completion(&acme, &cmd).unwrap(), Some(done));
    assert_eq!(
        store.effect_completion(&globex, &cmd).unwrap(),
        None,
        "another tenant's command of the same id is not done"
    );
}

#[test]
fn a_dead_letter_is_filed_and_its_outbox_item_deleted_together() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let acme = t("acme");
    store
        .commit(&batch(vec![transition(&acme, "o-1", "e-1", 1, json!(1))]))
        .unwrap();
    let (key, item) = store.outbox(&acme, 10).unwrap().remove(0);
    let record = DeadLetterRecord {
        item: item.clone(),
        reason: "rejected with 400".into(),
        status: Some(400),
        attempts: 1,
        dead_at: "2026-11-27T10:00:00.000Z".into(),
    };
    store.dead_letter(&key, &record).unwrap();
    assert!(store.outbox(&acme, 10).unwrap().is_empty());
    assert_eq!(store.dead_letters(&acme, 10).unwrap(), vec![record]);
    assert!(store.dead_letters(&t("globex"), 10).unwrap().is_empty());
}

#[test]
fn the_due_index_follows_every_timer_change_and_fires_in_due_order_across_tenants() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let (acme, globex) = (t("acme"), t("globex"));
    let mut a = transition(&acme, "o-1", "e-1", 1, json!(1));
    a.schedules = vec![
        timer(&acme, "o-1", "soon", 300),
        timer(&acme, "o-1", "later", 10_000),
    ];
    let mut g = transition(&globex, "o-1", "e-1", 1, json!(1));
    g.schedules = vec![timer(&globex, "o-1", "soon", 100)];
    store.commit(&batch(vec![a, g])).unwrap();
    assert_eq!(store.timers_len().unwrap(), 3);
    assert_eq!(store.next_due_ms().unwrap(), Some(100));
    let due: Vec<(String, i64)> = store
        .due_timers(500, 10)
        .unwrap()
        .into_iter()
        .map(|(_, item)| (item.tenant.to_string(), item.due_at_ms))
        .collect();
    assert_eq!(
        due,
        vec![("globex".into(), 100), ("acme".into(), 300)],
        "due order, across tenants"
    );
    assert_eq!(store.due_timers(500, 1).unwrap().len(), 1, "bounded");

    // Re-scheduling "soon" replaces it (index too); cancelling "later" drops it.
    let mut again = transition(&acme, "o-1", "e-2", 2, json!(2));
    again.record.transitions = 2;
    again.schedules = vec![timer(&acme, "o-1", "soon", 20_000)];
    again.cancel = vec!["later".into()];
    store.commit(&batch(vec![again])).unwrap();
    assert_eq!(store.timers_len().unwrap(), 2);
    let acme_due: Vec<i64> = store
        .due_timers(i64::MAX - 1, 10)
        .unwrap()
        .into_iter()
        .filter(|(_, i)| i.tenant == acme)
        .map(|(_, i)| i.due_at_ms)
        .collect();
    assert_eq!(acme_due, vec![20_000]);

    // Publishing takes exactly the given timers out of the due index; their records stay
    // until the transition that applies the reminder consumes them.
    let fired: Vec<String> = store
        .due_timers(500, 10)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(fired.len(), 1);
    assert_eq!(store.timers_published(&fired).unwrap(), 1);
    assert_eq!(store.timers_published(&fired).unwrap(), 0);
    assert_eq!(store.timers_len().unwrap(), 1);
    assert!(
        store.due_timers(500, 10).unwrap().is_empty(),
        "published once"
    );
    let (saga, corr) = ("order".parse().unwrap(), "o-1".parse().unwrap());
    assert_eq!(
        store
            .instance_schedules(&globex, &saga, &corr)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.instance_schedules(&acme, &saga, &corr).unwrap().len(),
        1
    );
    assert!(store
        .timers_published(&["outbox:acme:effect:x".to_string()])
        .is_err());
    let mut reminded = transition(&globex, "o-1", "r-1", 2, json!(2));
    reminded.record.transitions = 2;
    reminded.schedules = vec![];
    reminded.fired = Some("soon".into());
    store.commit(&batch(vec![reminded])).unwrap();
    assert!(
        store
            .instance_schedules(&globex, &saga, &corr)
            .unwrap()
            .is_empty(),
        "consumed"
    );

    // A finished instance keeps no timers, and no index entries.
    let mut done = transition(&acme, "o-1", "e-3", 3, json!(3));
    done.record.transitions = 3;
    done.record.status = InstanceStatus::Completed;
    store.commit(&batch(vec![done])).unwrap();
    assert_eq!(store.timers_len().unwrap(), 0);
    assert_eq!(store.next_due_ms().unwrap(), None);
}

#[test]
fn due_scan_returns_only_due_items_of_the_tenant() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let (acme, globex) = (t("acme"), t("globex"));
    let mut a = transition(&acme, "o-1", "e-1", 1, json!(1));
    a.schedules = vec![
        timer(&acme, "o-1", "soon", 100),
        timer(&acme, "o-1", "later", 10_000),
    ];
    let mut g = transition(&globex, "o-1", "e-1", 1, json!(1));
    g.schedules = vec![timer(&globex, "o-1", "soon", 50)];
    store.commit(&batch(vec![a, g])).unwrap();
    let due = store.due_schedules(&acme, 500, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].1.name, "soon");
    assert_eq!(due[0].1.tenant, acme);
    assert_eq!(
        store.due_schedules(&globex, 500, 10).unwrap()[0].1.tenant,
        globex
    );
    assert!(store.due_schedules(&acme, 99, 10).unwrap().is_empty());
    assert_eq!(
        store.due_schedules(&acme, 20_000, 1).unwrap().len(),
        1,
        "limit"
    );
}

#[test]
fn reschedule_replaces_and_cancel_removes_and_done_clears() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let acme = t("acme");
    let corr: CorrelationId = "o-1".parse().unwrap();
    let mut first = transition(&acme, "o-1", "e-1", 1, json!(1));
    first.schedules = vec![timer(&acme, "o-1", "a", 100), timer(&acme, "o-1", "b", 200)];
    store.commit(&batch(vec![first])).unwrap();

    let mut second = transition(&acme, "o-1", "e-2", 2, json!(2));
    second.record.transitions = 2;
    second.schedules = vec![timer(&acme, "o-1", "a", 500)];
    second.cancel = vec!["b".into()];
    store.commit(&batch(vec![second])).unwrap();
    let timers = store
        .instance_schedules(&acme, &saga_name(), &corr)
        .unwrap();
    let got: Vec<(String, i64)> = timers
        .iter()
        .map(|s| (s.name.clone(), s.due_at_ms))
        .collect();
    assert_eq!(got, vec![("a".to_string(), 500)]);

    let mut done = transition(&acme, "o-1", "e-3", 3, json!(3));
    done.record.transitions = 3;
    done.record.status = InstanceStatus::Completed;
    done.schedules = vec![timer(&acme, "o-1", "c", 900)];
    store.commit(&batch(vec![done])).unwrap();
    assert!(store
        .instance_schedules(&acme, &saga_name(), &corr)
        .unwrap()
        .is_empty());
}

#[test]
fn quarantine_records_are_tenant_scoped() {
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 16);
    let q = QuarantineRecord {
        kind: QuarantineKind::Decode,
        reason: "not JSON".into(),
        stream: "AGGREGATE_EVENTS".into(),
        seq: 3,
        subject: "aggregate.acme.order.X".into(),
        delivered: 1,
        tenant: t("acme"),
        event_id: None,
        correlation_id: None,
        saga: None,
        body_excerpt: excerpt(b"\xff\xfe not json"),
        unattributed: false,
        quarantined_at: None,
    };
    store
        .commit(&CommitBatch {
            transitions: vec![],
            quarantine: vec![q.clone()],
            ..Default::default()
        })
        .unwrap();
    // The store stamps when a record came (records wait for an operator: their age
    // is shown).
    let stored = store.quarantined(Some(&t("acme")), 10).unwrap();
    assert!(stored[0]
        .quarantined_at
        .as_deref()
        .is_some_and(|at| at.starts_with("20")));
    let unstamped: Vec<QuarantineRecord> = stored
        .into_iter()
        .map(|r| QuarantineRecord {
            quarantined_at: None,
            ..r
        })
        .collect();
    assert_eq!(unstamped, vec![q.clone()]);
    assert!(store
        .quarantined(Some(&t("globex")), 10)
        .unwrap()
        .is_empty());

    // A tenant-access record is filed under no tenant: its body belongs to a tenant
    // that may not be the one it claims.
    let access = QuarantineRecord {
        kind: QuarantineKind::TenantAccess,
        seq: 4,
        ..q
    };
    store
        .commit(&CommitBatch {
            transitions: vec![],
            quarantine: vec![access.clone()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.quarantined(Some(&t("acme")), 10).unwrap().len(), 1);
    let unattributed = store.quarantined(None, 10).unwrap();
    assert_eq!(unattributed.len(), 1);
    assert_eq!(
        QuarantineRecord {
            quarantined_at: None,
            ..unattributed[0].clone()
        },
        access
    );
}

/// Instance queries against the status index agree with a filter over every stored
/// record, after a randomized run of transitions (statuses and versions changing, timers
/// set and cleared), for every status × version × timer bound, page by page.
#[test]
fn instance_queries_agree_with_the_stored_states() {
    use crate::store::{InstanceQuery, InstanceStatus};
    let dir = TempDir::new("store").unwrap();
    let store = open(&dir, 64);
    let acme = t("acme");
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut seq = 0;
    let mut counts: std::collections::HashMap<String, u64> = Default::default();
    for round in 0..12 {
        let mut transitions = Vec::new();
        for _ in 0..25 {
            seq += 1;
            let corr = format!("o:{}", next(60));
            let mut tr = transition(&acme, &corr, &format!("e-{seq}"), seq, json!({"r": round}));
            tr.record.status = InstanceStatus::ALL[next(4) as usize];
            tr.record.version = 1 + next(3) as u32;
            let count = counts.entry(corr.clone()).or_default();
            *count += 1;
            tr.record.transitions = *count;
            tr.schedules = match next(3) {
                0 => vec![],
                _ => vec![timer(&acme, &corr, "t", 1_000 + next(1_000) as i64)],
            };
            transitions.push(tr);
        }
        store.commit(&batch(transitions)).unwrap();
    }
    let all = store.instances(&acme, &saga_name(), 10_000).unwrap();
    assert!(all.len() > 40, "{} instances", all.len());
    let statuses = InstanceStatus::ALL.map(Some);
    for status in statuses.into_iter().chain([None]) {
        for version in [None, Some(1), Some(2), Some(3)] {
            for timer_before in [None, Some(1_500)] {
                let expected: Vec<String> = all
                    .iter()
                    .filter(|(key, r)| {
                        let corr = keys::unescape(key.rsplit(':').next().unwrap());
                        let next_timer = store
                            .instance_schedules(&acme, &saga_name(), &corr.parse().unwrap())
                            .unwrap()
                            .iter()
                            .map(|s| s.due_at_ms)
                            .min();
                        status.is_none_or(|s| r.status == s)
                            && version.is_none_or(|v| r.version == v)
                            && timer_before.is_none_or(|t| next_timer.is_some_and(|d| d < t))
                    })
                    .map(|(key, _)| keys::unescape(key.rsplit(':').next().unwrap()))
                    .collect();
                // Pages of 7, followed through `next`.
                let mut got = Vec::new();
                let mut after = None;
                loop {
                    let page = store
                        .query_instances(&InstanceQuery {
                            tenant: acme.clone(),
                            saga: saga_name(),
                            status,
                            version,
                            timer_before_ms: timer_before,
                            after: after.clone(),
                            limit: 7,
                        })
                        .unwrap();
                    assert!(page.instances.len() <= 7);
                    for found in &page.instances {
                        let stored = store
                            .saga(&acme, &saga_name(), &found.correlation.parse().unwrap())
                            .unwrap();
                        assert_eq!(stored.as_ref(), Some(&found.record));
                    }
                    got.extend(page.instances.into_iter().map(|f| f.correlation));
                    match page.next {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
                let (mut expected, mut got) = (expected, got);
                expected.sort();
                got.sort();
                assert_eq!(
                    got, expected,
                    "status {status:?}, version {version:?}, timer before {timer_before:?}"
                );
            }
        }
    }
}

/// A store written before the status index existed gets it built when opened.
#[test]
fn the_status_index_is_built_at_open_for_an_older_store() {
    use crate::store::{InstanceQuery, InstanceStatus};
    let dir = TempDir::new("store").unwrap();
    let acme = t("acme");
    {
        let store = open(&dir, 64);
        let transitions = (0..30)
            .map(|i| transition(&acme, &format!("o-{i}"), &format!("e-{i}"), i, json!({})))
            .collect();
        store.commit(&batch(transitions)).unwrap();
        // What an older version left: records, no index, no marker.
        let mut txn = store.env.begin_rw_txn().unwrap();
        let doomed: Vec<Vec<u8>> = {
            let mut cursor = lmdb::Transaction::open_ro_cursor(&txn, store.db).unwrap();
            lmdb::Cursor::iter(&mut cursor)
                .map(|e| e.unwrap().0.to_vec())
                .filter(|k| k.starts_with(b"status:") || k.as_slice() == b"meta:status_index")
                .collect()
        };
        assert_eq!(doomed.len(), 31);
        for key in doomed {
            txn.del(store.db, &key, None).unwrap();
        }
        lmdb::Transaction::commit(txn).unwrap();
    }
    let store = open(&dir, 64);
    let page = store
        .query_instances(&InstanceQuery {
            tenant: acme,
            saga: saga_name(),
            status: Some(InstanceStatus::Active),
            version: Some(1),
            timer_before_ms: None,
            after: None,
            limit: 100,
        })
        .unwrap();
    assert_eq!(page.instances.len(), 30);
    assert_eq!(page.next, None);
}

#[test]
fn only_the_datas_own_faults_are_deterministic() {
    // Deterministic errors quarantine the message and go on; the rest stop intake. A gone
    // effect-commit thread must stop intake: effect workers calling on without records
    // would call again on every redelivery.
    let writer_gone = StoreError::WriterGone("the effect-commit thread is gone".into());
    assert!(!writer_gone.is_deterministic());
    assert!(!StoreError::MapFull.is_deterministic());
    let unencodable = StoreError::Encode {
        key: "k".into(),
        message: "too long".into(),
    };
    assert!(unencodable.is_deterministic());
}

/// A 64 MiB store with this retention.
pub(super) fn opened_with(dir: &TempDir, retention: Retention) -> Store {
    let options = StoreOptions {
        map_size: 64 << 20,
        max_size: 64 << 20,
        retention,
        max_readers: StoreOptions::MIN_READERS,
    };
    Store::open_with(&dir.path().join("store"), &options).unwrap()
}

/// Keys of a keyspace.
pub(super) fn keys_of(store: &Store, space: &str) -> Vec<String> {
    let prefix = format!("{space}:");
    let mut out = Vec::new();
    store
        .reader()
        .unwrap()
        .for_each_raw_from(&prefix, &prefix, |k, _| {
            out.push(k.to_string());
            Ok(true)
        })
        .unwrap();
    out
}
