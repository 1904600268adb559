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
    /// Bytes of envelopes held, all tenants together: an item is taken only while the
    /// total is below it (so at most one envelope over it).
    pub held_bytes: usize,
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
    /// When the first counted dispatch began: the retry budget is measured from here. Kept
    /// in memory only, so a restart starts the budget again (the longer, safe way).
    pub first_attempt: Option<Instant>,
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
    /// Boxed, so the table itself stays small enough to stay in cache: most lookups
    /// only need the key.
    entries: HashMap<String, Box<Entry>>,
    /// Ready keys per tenant, one queue per kind (see [`slot`]).
    ready: HashMap<TenantId, [VecDeque<String>; 2]>,
    /// Queues with ready items, in dispatch order.
    rotation: VecDeque<Lane>,
    held: HashMap<TenantId, usize>,
    /// Dispatches in flight per tenant, by kind (see [`slot`]).
    in_flight: HashMap<TenantId, [usize; 2]>,
    in_flight_total: usize,
    waiting: BTreeSet<(Instant, String)>,
    /// An item was turned away since the last [`Tracker::take_overflow`].
    overflowed: bool,
    /// Bytes of the envelopes held.
    bytes: usize,
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
            bytes: 0,
        }
    }

    /// Bytes of the envelopes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the byte budget is spent: no item of any tenant is taken.
    pub fn bytes_full(&self) -> bool {
        self.bytes >= self.limits.held_bytes
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
        if self.bytes_full() {
            return false;
        }
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
        // Looked up before inserting: `entry()` would clone the tenant every time.
        match self.held.get_mut(&item.tenant) {
            Some(n) => *n += 1,
            None => {
                self.held.insert(item.tenant.clone(), 1);
            }
        }
        push_ready(
            &mut self.ready,
            &mut self.rotation,
            &key,
            &item.tenant,
            item.kind,
        );
        self.bytes += item.envelope.as_str().len();
        self.entries.insert(
            key,
            Box::new(Entry {
                item,
                attempts: 0,
                first_attempt: None,
                verdict: None,
                state: State::Ready,
            }),
        );
        Admit::Added
    }

    /// The next item to dispatch, fairly across tenants. `room(kind, n)` says whether the
    /// lane of `kind` takes another dispatch from a tenant that has `n` in it already.
    /// The item is counted in flight from here on.
    pub fn next(&mut self, room: impl Fn(OutboxKind, usize) -> bool) -> Option<(String, &Entry)> {
        for _ in 0..self.rotation.len() {
            let lane = self.rotation.pop_front()?;
            let counts = self.in_flight.get(&lane.0).copied().unwrap_or_default();
            let tenant_total: usize = counts.iter().sum();
            let mine = counts[slot(lane.1)];
            if tenant_total >= self.limits.per_tenant_in_flight || !room(lane.1, mine) {
                self.rotation.push_back(lane);
                continue;
            }
            let Some(queues) = self.ready.get_mut(&lane.0) else {
                continue;
            };
            let queue = &mut queues[slot(lane.1)];
            let popped = queue.pop_front();
            let more = !queue.is_empty();
            if queues.iter().all(VecDeque::is_empty) {
                self.ready.remove(&lane.0);
            }
            let Some(key) = popped else {
                continue;
            };
            if more {
                self.rotation.push_back(lane.clone());
            }
            match self.in_flight.get_mut(&lane.0) {
                Some(counts) => counts[slot(lane.1)] += 1,
                None => {
                    let mut counts = [0; 2];
                    counts[slot(lane.1)] = 1;
                    self.in_flight.insert(lane.0, counts);
                }
            }
            self.in_flight_total += 1;
            let entry = self.entries.get_mut(&key)?;
            entry.state = State::InFlight;
            if entry.verdict.is_none() {
                entry.attempts += 1;
                entry.first_attempt.get_or_insert_with(Instant::now);
            }
            return Some((key, &**entry));
        }
        None
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key).map(|e| &**e)
    }

    /// The item is dealt with (its delete committed): forget it.
    pub fn done(&mut self, key: &str) {
        let Some(entry) = self.entries.remove(key) else {
            return;
        };
        self.leave_state(key, &entry);
        self.bytes = self
            .bytes
            .saturating_sub(entry.item.envelope.as_str().len());
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
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if std::mem::replace(&mut entry.state, State::Confirmed) == State::InFlight {
            release(
                &mut self.in_flight,
                &mut self.in_flight_total,
                &entry.item.tenant,
                entry.item.kind,
            );
        }
    }

    /// A dispatch failed: try again at `at`. With `counted` false (the broker itself was
    /// unavailable) the attempt is given back.
    pub fn retry_at(&mut self, key: &str, at: Instant, counted: bool) {
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        let old = entry.state;
        if old == State::InFlight {
            release(
                &mut self.in_flight,
                &mut self.in_flight_total,
                &entry.item.tenant,
                entry.item.kind,
            );
        }
        if let State::Waiting(t) = old {
            self.waiting.remove(&(t, key.to_string()));
        }
        self.waiting.insert((at, key.to_string()));
        if let Some(entry) = self.entries.get_mut(key) {
            entry.state = State::Waiting(at);
            if !counted && entry.verdict.is_none() {
                entry.attempts = entry.attempts.saturating_sub(1);
                if entry.attempts == 0 {
                    // No counted attempt yet: the budget starts with the first one.
                    entry.first_attempt = None;
                }
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
            push_ready(
                &mut self.ready,
                &mut self.rotation,
                &key,
                &entry.item.tenant,
                entry.item.kind,
            );
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
        let (tenant, kind) = (&entry.item.tenant, entry.item.kind);
        match entry.state {
            State::InFlight => {
                release(&mut self.in_flight, &mut self.in_flight_total, tenant, kind)
            }
            State::Waiting(at) => {
                self.waiting.remove(&(at, key.to_string()));
            }
            State::Confirmed => {}
            State::Ready => {
                if let Some(queues) = self.ready.get_mut(tenant) {
                    let queue = &mut queues[slot(kind)];
                    queue.retain(|k| k != key);
                    if queue.is_empty() {
                        self.rotation.retain(|l| l.0 != *tenant || l.1 != kind);
                    }
                    if queues.iter().all(VecDeque::is_empty) {
                        self.ready.remove(tenant);
                    }
                }
            }
        }
    }
}

/// Index of a kind in the per-tenant in-flight counts.
fn slot(kind: OutboxKind) -> usize {
    match kind {
        OutboxKind::Effect => 0,
        OutboxKind::Aggregate => 1,
    }
}

/// Queues `key` on its lane, putting the lane into the rotation if it had nothing ready.
/// (Free functions over the fields they touch, so callers can hold an entry meanwhile.)
fn push_ready(
    ready: &mut HashMap<TenantId, [VecDeque<String>; 2]>,
    rotation: &mut VecDeque<Lane>,
    key: &str,
    tenant: &TenantId,
    kind: OutboxKind,
) {
    // Looked up before inserting: `entry()` would clone the tenant every time.
    let queue = match ready.get_mut(tenant) {
        Some(queues) => &mut queues[slot(kind)],
        None => &mut ready.entry(tenant.clone()).or_default()[slot(kind)],
    };
    if queue.is_empty() {
        rotation.push_back((tenant.clone(), kind));
    }
    queue.push_back(key.to_string());
}

/// One in-flight slot of the tenant's lane is free again.
fn release(
    in_flight: &mut HashMap<TenantId, [usize; 2]>,
    total: &mut usize,
    tenant: &TenantId,
    kind: OutboxKind,
) {
    if let Some(counts) = in_flight.get_mut(tenant) {
        counts[slot(kind)] = counts[slot(kind)].saturating_sub(1);
        if counts == &[0, 0] {
            in_flight.remove(tenant);
        }
    }
    *total = total.saturating_sub(1);
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
