use std::time::{Duration, Instant};

use super::*;
use crate::store::RawJson;

fn item(tenant: &str, kind: OutboxKind, n: usize) -> (String, OutboxItem) {
    let tenant: TenantId = tenant.parse().unwrap();
    let work = format!("w-{n}");
    let item = OutboxItem {
        kind,
        tenant: tenant.clone(),
        work_id: work.parse().unwrap(),
        saga: "order".parse().unwrap(),
        correlation: "o-1".parse().unwrap(),
        destination: "d".into(),
        envelope: RawJson::of(&serde_json::json!({})).unwrap(),
        traceparent: None,
    };
    (crate::keys::outbox(&tenant, kind, &item.work_id), item)
}

fn limits(in_flight: usize, held: usize, tenants: usize) -> Limits {
    Limits {
        per_tenant_in_flight: in_flight,
        per_tenant_held: held,
        tenants,
        held_bytes: usize::MAX,
    }
}

#[test]
fn the_byte_budget_stops_taking_items_of_every_tenant_until_some_leave() {
    let mut t = Tracker::new(Limits {
        held_bytes: 1_000,
        ..limits(4, 100, 10)
    });
    let big = |tenant: &str, n: usize| {
        let (k, mut i) = item(tenant, OutboxKind::Effect, n);
        i.envelope = RawJson::of(&serde_json::json!({"blob": "x".repeat(400)})).unwrap();
        (k, i)
    };
    let mut keys = Vec::new();
    for n in 0..3 {
        let (k, i) = big("a", n);
        keys.push(k.clone());
        assert_eq!(t.admit(k, i), Admit::Added);
    }
    assert!(t.bytes() >= 1_000 && t.bytes_full());
    let (k, i) = big("b", 9);
    assert_eq!(
        t.admit(k, i),
        Admit::Full,
        "another tenant waits in the store too"
    );
    assert!(t.take_overflow());
    t.done(&keys[0]);
    assert!(!t.bytes_full());
    let (k, i) = big("b", 9);
    assert_eq!(t.admit(k, i), Admit::Added);
}

fn any_room(_: OutboxKind, _: usize) -> bool {
    true
}

#[test]
fn a_tenant_with_a_backlog_does_not_starve_another() {
    let mut t = Tracker::new(limits(4, 100, 10));
    for n in 0..50 {
        let (k, i) = item("big", OutboxKind::Effect, n);
        assert_eq!(t.admit(k, i), Admit::Added);
    }
    let (k, i) = item("small", OutboxKind::Effect, 0);
    t.admit(k.clone(), i);
    let mut order = Vec::new();
    while let Some((key, entry)) = t.next(any_room) {
        order.push((key, entry.item.tenant.to_string()));
    }
    // "big" is capped at 4 in flight; "small" gets its turn among the first two.
    assert_eq!(order.len(), 5);
    assert!(order[..2].iter().any(|(key, _)| *key == k));
    assert_eq!(order.iter().filter(|(_, t)| t == "big").count(), 4);
}

#[test]
fn bounds_turn_items_away_and_report_it() {
    let mut t = Tracker::new(limits(4, 2, 1));
    let (k0, i0) = item("a", OutboxKind::Effect, 0);
    let (k1, i1) = item("a", OutboxKind::Effect, 1);
    let (k2, i2) = item("a", OutboxKind::Effect, 2);
    let (kb, ib) = item("b", OutboxKind::Effect, 0);
    assert_eq!(t.admit(k0.clone(), i0.clone()), Admit::Added);
    assert_eq!(t.admit(k0.clone(), i0), Admit::Known);
    assert_eq!(t.admit(k1, i1), Admit::Added);
    assert!(!t.take_overflow());
    assert_eq!(t.admit(k2, i2), Admit::Full, "per-tenant bound");
    assert_eq!(t.admit(kb, ib), Admit::Full, "tenant bound");
    assert!(t.take_overflow());
    assert!(!t.take_overflow(), "reported once");
    t.done(&k0);
    assert_eq!(t.len(), 1);
    let (k2, i2) = item("a", OutboxKind::Effect, 2);
    assert_eq!(t.admit(k2, i2), Admit::Added, "room again after done");
}

#[test]
fn retries_wait_their_time_and_uncounted_ones_give_the_attempt_back() {
    let mut t = Tracker::new(limits(4, 10, 10));
    let (k, i) = item("a", OutboxKind::Aggregate, 0);
    t.admit(k.clone(), i);
    let (key, entry) = t.next(any_room).unwrap();
    assert_eq!((key.as_str(), entry.attempts), (k.as_str(), 1));
    assert_eq!(t.in_flight(), 1);
    let now = Instant::now();
    t.retry_at(&k, now + Duration::from_secs(5), true);
    assert_eq!(t.in_flight(), 0);
    assert!(t.next(any_room).is_none(), "waiting, not ready");
    assert_eq!(t.next_wake(), Some(now + Duration::from_secs(5)));
    t.wake(now + Duration::from_secs(1));
    assert!(t.next(any_room).is_none(), "not due yet");
    t.wake(now + Duration::from_secs(5));
    let (_, entry) = t.next(any_room).unwrap();
    assert_eq!(entry.attempts, 2);
    t.retry_at(&k, now, false);
    t.wake(now);
    let (_, entry) = t.next(any_room).unwrap();
    assert_eq!(entry.attempts, 2, "an outage does not use up attempts");
}

#[test]
fn lanes_are_independent_and_respect_room() {
    let mut t = Tracker::new(limits(10, 10, 10));
    let (ka, ia) = item("a", OutboxKind::Aggregate, 0);
    let (ke, ie) = item("a", OutboxKind::Effect, 1);
    t.admit(ka.clone(), ia);
    t.admit(ke.clone(), ie);
    // The gateway lane is full: the effect still goes.
    let (key, _) = t.next(|kind, _| kind == OutboxKind::Effect).unwrap();
    assert_eq!(key, ke);
    assert!(t.next(|kind, _| kind == OutboxKind::Effect).is_none());
    let (key, _) = t.next(any_room).unwrap();
    assert_eq!(key, ka);
}

#[test]
fn done_forgets_items_in_any_state() {
    let mut t = Tracker::new(limits(10, 10, 10));
    let keys: Vec<String> = (0..3)
        .map(|n| {
            let (k, i) = item("a", OutboxKind::Effect, n);
            t.admit(k.clone(), i);
            k
        })
        .collect();
    t.next(any_room);
    t.next(any_room);
    t.retry_at(&keys[1], Instant::now() + Duration::from_secs(60), true);
    for k in &keys {
        t.done(k);
    }
    assert!(t.is_empty());
    assert_eq!(t.in_flight(), 0);
    assert!(t.next_wake().is_none());
    assert!(t.next(any_room).is_none());
}

#[test]
fn a_confirmed_item_frees_its_slot_but_stays_held_until_done() {
    let mut t = Tracker::new(limits(1, 10, 10));
    let (k0, i0) = item("a", OutboxKind::Effect, 0);
    let (k1, i1) = item("a", OutboxKind::Effect, 1);
    t.admit(k0.clone(), i0.clone());
    t.admit(k1.clone(), i1);
    assert_eq!(t.next(any_room).map(|(k, _)| k), Some(k0.clone()));
    assert!(t.next(any_room).is_none(), "the tenant's one slot is taken");
    t.confirm(&k0);
    assert_eq!(t.in_flight(), 0);
    assert_eq!(
        t.admit(k0.clone(), i0),
        Admit::Known,
        "not sent again while its delete is pending"
    );
    assert_eq!(t.next(any_room).map(|(k, _)| k), Some(k1));
    t.done(&k0);
    assert_eq!((t.len(), t.in_flight()), (1, 1));
}

#[test]
fn the_retry_budget_starts_at_the_first_counted_attempt_and_stays() {
    let mut t = Tracker::new(limits(4, 10, 10));
    let (k, i) = item("a", OutboxKind::Aggregate, 0);
    t.admit(k.clone(), i);
    assert_eq!(t.get(&k).unwrap().first_attempt, None);
    // A NATS outage on the first dispatch gives it back: no budget spent yet.
    t.next(any_room).unwrap();
    let now = Instant::now();
    t.retry_at(&k, now, false);
    assert_eq!(t.get(&k).unwrap().first_attempt, None);
    t.wake(now);
    let first = t.next(any_room).unwrap().1.first_attempt.unwrap();
    t.retry_at(&k, now, true);
    t.wake(now);
    t.next(any_room).unwrap();
    t.retry_at(&k, now, false);
    assert_eq!(
        t.get(&k).unwrap().first_attempt,
        Some(first),
        "later attempts keep the start"
    );
}
