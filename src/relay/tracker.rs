//! What the relay holds in memory: a bounded window onto the outbox. The store is the
//! truth; an item that does not fit here stays there until a scan picks it up, so every
//! bound below only delays work, never loses it.
//!
//! Fairness: ready items wait in one queue per (tenant, destination kind), and dispatch
//! takes one item from each queue in turn, skipping a tenant at its in-flight cap. A
//! tenant with ten thousand items waiting therefore holds at most its cap of slots, and
//! another tenant's single item goes out at the next free slot of its lane.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use crate::keys::OutboxKind;
use crate::store::{DeadLetterRecord, OutboxItem};
use crate::types::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Dispatches in flight per tenant, both lanes together.
    pub per_tenant_in_flight: usize,
    /// Items held per tenant (ready, in flight or waiting to retry).
    pub per_tenant_held: usize,
    /// Tenants with items held.
    pub tenants: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    InFlight,
    Waiting(Instant),
    /// The destination has it; only its delete is outstanding. It no longer takes an
    /// in-flight slot, but stays held so that a scan does not send it again.
    Confirmed,
}

#[derive(Debug)]
pub struct Entry {
    pub item: OutboxItem,
    /// Dispatches made so far (outages of the broker itself are not counted).
    pub attempts: u32,
    /// Set once the relay gave up on the item: what remains is publishing its result
    /// event and filing the dead letter.
    pub verdict: Option<DeadLetterRecord>,
    state: State,
}

/// Whether an offered item was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Added,
    /// Already held (a scan and a notice both found it).
    Known,
    /// No room: it stays in the store for a later scan.
    Full,
}

type Lane = (TenantId, OutboxKind);

#[derive(Debug)]
pub struct Tracker {
    limits: Limits,
    entries: HashMap<String, Entry>,
    ready: HashMap<Lane, VecDeque<String>>,
    /// Queues with ready items, in dispatch order.
    rotation: VecDeque<Lane>,
    held: HashMap<TenantId, usize>,
    in_flight: HashMap<Lane, usize>,
    in_flight_total: usize,
    waiting: BTreeSet<(Instant, String)>,
    /// An item was turned away since the last [`Tracker::take_overflow`].
    overflowed: bool,
}

impl Tracker {
    pub fn new(limits: Limits) -> Tracker {
        Tracker {
            limits,
            entries: HashMap::new(),
            ready: HashMap::new(),
            rotation: VecDeque::new(),
            held: HashMap::new(),
            in_flight: HashMap::new(),
            in_flight_total: 0,
            waiting: BTreeSet::new(),
            overflowed: false,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight_total
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Whether this tenant can take one more item.
    pub fn has_room_for(&self, tenant: &TenantId) -> bool {
        match self.held.get(tenant) {
            Some(n) => *n < self.limits.per_tenant_held,
            None => self.held.len() < self.limits.tenants,
        }
    }

    pub fn admit(&mut self, key: String, item: OutboxItem) -> Admit {
        if self.entries.contains_key(&key) {
            return Admit::Known;
        }
        if !self.has_room_for(&item.tenant) {
            self.overflowed = true;
            return Admit::Full;
        }
        *self.held.entry(item.tenant.clone()).or_default() += 1;
        self.push_ready(&key, (item.tenant.clone(), item.kind));
        self.entries.insert(
            key,
            Entry {
                item,
                attempts: 0,
                verdict: None,
                state: State::Ready,
            },
        );
        Admit::Added
    }

    fn push_ready(&mut self, key: &str, lane: Lane) {
        let queue = self.ready.entry(lane.clone()).or_default();
        if queue.is_empty() {
            self.rotation.push_back(lane);
        }
        queue.push_back(key.to_string());
    }

    /// The next item to dispatch, fairly across tenants. `room(kind, n)` says whether the
    /// lane of `kind` takes another dispatch from a tenant that has `n` in it already.
    /// The item is counted in flight from here on.
    pub fn next(&mut self, room: impl Fn(OutboxKind, usize) -> bool) -> Option<(String, &Entry)> {
        for _ in 0..self.rotation.len() {
            let lane = self.rotation.pop_front()?;
            let tenant_total: usize = [OutboxKind::Effect, OutboxKind::Aggregate]
                .iter()
                .map(|k| self.in_flight_of(&(lane.0.clone(), *k)))
                .sum();
            let mine = self.in_flight_of(&lane);
            if tenant_total >= self.limits.per_tenant_in_flight || !room(lane.1, mine) {
                self.rotation.push_back(lane);
                continue;
            }
            let Some(queue) = self.ready.get_mut(&lane) else {
                continue;
            };
            let Some(key) = queue.pop_front() else {
                self.ready.remove(&lane);
                continue;
            };
            if queue.is_empty() {
                self.ready.remove(&lane);
            } else {
                self.rotation.push_back(lane.clone());
            }
            *self.in_flight.entry(lane).or_default() += 1;
            self.in_flight_total += 1;
            let entry = self.entries.get_mut(&key)?;
            entry.state = State::InFlight;
            if entry.verdict.is_none() {
                entry.attempts += 1;
            }
            let entry = self.entries.get(&key)?;
            return Some((key, entry));
        }
        None
    }

    fn in_flight_of(&self, lane: &Lane) -> usize {
        self.in_flight.get(lane).copied().unwrap_or(0)
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The item is dealt with (its delete committed): forget it.
    pub fn done(&mut self, key: &str) {
        let Some(entry) = self.entries.remove(key) else {
            return;
        };
        self.leave_state(key, &entry);
        let tenant = &entry.item.tenant;
        if let Some(n) = self.held.get_mut(tenant) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(tenant);
            }
        }
    }

    /// The destination confirmed the item: its in-flight slot is free; it stays held until
    /// [`Tracker::done`] (after its delete committed).
    pub fn confirm(&mut self, key: &str) {
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        if entry.state == State::InFlight {
            let lane = (entry.item.tenant.clone(), entry.item.kind);
            self.release(&lane);
        }
        if let Some(entry) = self.entries.get_mut(key) {
            entry.state = State::Confirmed;
        }
    }

    /// A dispatch failed: try again at `at`. With `counted` false (the broker itself was
    /// unavailable) the attempt is given back.
    pub fn retry_at(&mut self, key: &str, at: Instant, counted: bool) {
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        let (old, lane) = (entry.state, (entry.item.tenant.clone(), entry.item.kind));
        if old == State::InFlight {
            self.release(&lane);
        }
        if let State::Waiting(t) = old {
            self.waiting.remove(&(t, key.to_string()));
        }
        self.waiting.insert((at, key.to_string()));
        if let Some(entry) = self.entries.get_mut(key) {
            entry.state = State::Waiting(at);
            if !counted && entry.verdict.is_none() {
                entry.attempts = entry.attempts.saturating_sub(1);
            }
        }
    }

    /// The relay gave up on the item: from now on it is dispatched as its verdict.
    pub fn condemn(&mut self, key: &str, verdict: DeadLetterRecord) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.verdict = Some(verdict);
        }
    }

    /// Moves items whose retry time has come back to their queues.
    pub fn wake(&mut self, now: Instant) {
        while let Some((at, _)) = self.waiting.first() {
            if *at > now {
                break;
            }
            let Some((_, key)) = self.waiting.pop_first() else {
                break;
            };
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            entry.state = State::Ready;
            let lane = (entry.item.tenant.clone(), entry.item.kind);
            self.push_ready(&key, lane);
        }
    }

    /// When the earliest waiting item is due.
    pub fn next_wake(&self) -> Option<Instant> {
        self.waiting.first().map(|(at, _)| *at)
    }

    /// Whether an item was turned away since the last call.
    pub fn take_overflow(&mut self) -> bool {
        std::mem::take(&mut self.overflowed)
    }

    fn leave_state(&mut self, key: &str, entry: &Entry) {
        let lane = (entry.item.tenant.clone(), entry.item.kind);
        match entry.state {
            State::InFlight => self.release(&lane),
            State::Waiting(at) => {
                self.waiting.remove(&(at, key.to_string()));
            }
            State::Confirmed => {}
            State::Ready => {
                if let Some(queue) = self.ready.get_mut(&lane) {
                    queue.retain(|k| k != key);
                    if queue.is_empty() {
                        self.ready.remove(&lane);
                        self.rotation.retain(|l| *l != lane);
                    }
                }
            }
        }
    }

    fn release(&mut self, lane: &Lane) {
        if let Some(n) = self.in_flight.get_mut(lane) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(lane);
            }
        }
        self.in_flight_total = self.in_flight_total.saturating_sub(1);
    }
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
