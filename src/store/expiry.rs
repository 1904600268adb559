//! Retention: an ordered expiry index, written in the transactions that create what
//! expires, and the sweep that deletes what expired, a bounded batch at a time.
//!
//! An index entry is `expire:{at_ms:016}:{nonce:016x}` and its value the keys that
//! expire then, sorted, one per line, each written as the number of bytes it shares
//! with the key before and the rest (`29:0a1b…`: keys of one keyspace, tenant and saga
//! share most of their length; keys never hold control characters). The transaction that
//! writes dedupe markers, finishes instances or records effect completions gathers its
//! keys by expiry second ([`Expiries`]) and writes one entry per second and ~1.8 KB of
//! keys, so the index costs a few sequential puts per commit, not one per record, and
//! "what expired" is an ordered walk from `expire:` that stops at the first entry in
//! the future: no scan of the records themselves.
//!
//! The sweep ([`Store::sweep_in`]) rides in a transaction the process commits anyway
//! and off the workflow's path (a store-writer group of the relay's outbox deletes alone,
//! never one holding a saga commit or an effect record: `group.rs`) and, when none came
//! for a while, in one of its own ([`Store::sweep`], the `sweep` stage: at low load, and in
//! effect mode, which has no relay). What a key is says
//! how it goes: a marker or an effect record is deleted; a finished instance is
//! deleted with its status index entry and its history (an instance that is not
//! finished is left alone: only finishing schedules one); a timer whose reminder was
//! published and never applied is deleted (one back in the due index, pending again,
//! is left alone).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use lmdb::{Cursor, Transaction, WriteFlags};

use super::history::HistoryBound;
use super::instances::Indexed;
use super::{Store, StoreError};
use crate::keys::{self, space};

/// Bytes of keys one index entry holds at most: the entry stays on its leaf page
/// (LMDB moves values over about half a page to overflow pages of their own).
const ENTRY_BYTES: usize = 1800;

/// After a sweep, the next one looks at the index again within this long, whatever it
/// saw next (see [`Store::swept`]).
const RECHECK_MS: i64 = 1000;

/// What the sweep deletes, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Finished instances (with their status index entries and history).
    pub instances: u64,
    /// History entries of those instances.
    pub history: u64,
    /// Saga dedupe markers.
    pub markers: u64,
    /// Effect completion records.
    pub effect_records: u64,
    /// Timers whose reminder was published but never applied.
    pub timers: u64,
    /// Index entries consumed.
    pub entries: u64,
}

impl Swept {
    fn add(&mut self, other: Swept) {
        self.instances += other.instances;
        self.history += other.history;
        self.markers += other.markers;
        self.effect_records += other.effect_records;
        self.timers += other.timers;
        self.entries += other.entries;
    }
}

/// How long what the store writes is kept, unless a saga or effect says otherwise, and
/// how the sweep runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// A finished instance stays queryable this long after it finished.
    pub finished_instances: Duration,
    /// An applied event's dedupe marker is kept this long.
    pub dedupe: Duration,
    /// An effect's completion record is kept this long.
    pub effect_records: Duration,
    /// Records deleted per transaction at most (an index entry is taken whole; a
    /// finished instance counts as one, and its history, at most `history.first +
    /// history.last` entries, goes with it).
    pub sweep_batch: usize,
    /// Nothing is swept before this long after the store was opened: messages a
    /// predecessor left unacked come back first and still find their markers, however
    /// long the process was down.
    pub sweep_delay: Duration,
    /// History entries kept per instance (`store/history.rs`).
    pub history: HistoryBound,
}

impl Default for Retention {
    fn default() -> Self {
        let day = Duration::from_secs(86_400);
        Retention {
            finished_instances: day,
            dedupe: day,
            effect_records: day,
            sweep_batch: 512,
            sweep_delay: Duration::ZERO,
            history: HistoryBound::default(),
        }
    }
}

/// The sweep's state, shared by every thread that writes.
#[derive(Debug)]
pub(super) struct SweepState {
    /// When the earliest index entry expires (`i64::MAX`: none is known). Lowered by
    /// every write of an entry, set by every sweep: a transaction with nothing due
    /// skips the sweep without reading the index.
    next_ms: AtomicI64,
    /// Not before this (ms since the epoch): see [`Retention::sweep_delay`].
    not_before_ms: i64,
    /// When a sweep last ran (ms since the epoch).
    last_ms: AtomicI64,
    expired_instances: AtomicU64,
    expired_markers: AtomicU64,
    expired_effect_records: AtomicU64,
    expired_timers: AtomicU64,
    nonce: AtomicU64,
}

impl SweepState {
    pub(super) fn new(delay: Duration) -> SweepState {
        // Entries of two processes sharing a store (effect workers) must not collide:
        // each starts its nonces at a random point.
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        SweepState {
            next_ms: AtomicI64::new(i64::MAX),
            not_before_ms: now_ms().saturating_add(delay.as_millis() as i64),
            last_ms: AtomicI64::new(0),
            expired_instances: AtomicU64::new(0),
            expired_markers: AtomicU64::new(0),
            expired_effect_records: AtomicU64::new(0),
            expired_timers: AtomicU64::new(0),
            nonce: AtomicU64::new(seed),
        }
    }
}

/// Totals of what the sweep deleted since the store was opened, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    pub instances: u64,
    pub markers: u64,
    pub effect_records: u64,
    pub timers: u64,
}

/// Retention is wall-clock time.
pub use crate::timefmt::now_ms;

/// The expiry second a record kept `keep` from `now_ms` falls in (rounded up, so a
/// record is never swept early).
pub fn expiry_of(now_ms: i64, keep: Duration) -> i64 {
    let at = now_ms.saturating_add(keep.as_millis().min(i64::MAX as u128) as i64);
    at.saturating_add(999) / 1000 * 1000
}

/// Keys one transaction makes expire, by expiry second.
#[derive(Debug, Default)]
pub(super) struct Expiries {
    by_second: std::collections::BTreeMap<i64, Vec<String>>,
}

impl Expiries {
    pub fn add(&mut self, at_ms: i64, key: String) {
        self.by_second.entry(at_ms).or_default().push(key);
    }

    /// Writes the index entries into `txn`.
    pub fn write(
        &self,
        store: &Store,
        txn: &mut lmdb::RwTransaction<'_>,
    ) -> Result<(), StoreError> {
        for (at, keys) in &self.by_second {
            let mut keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            keys.sort_unstable();
            let mut value = String::with_capacity(ENTRY_BYTES);
            let mut previous = "";
            for key in keys {
                if value.len() + 24 + key.len() > ENTRY_BYTES && !value.is_empty() {
                    put_entry(store, txn, *at, &value)?;
                    value.clear();
                    previous = "";
                }
                push_line(&mut value, previous, key);
                previous = key;
            }
            if !value.is_empty() {
                put_entry(store, txn, *at, &value)?;
            }
        }
        Ok(())
    }

    /// After the transaction committed: the sweep learns of the earliest entry.
    pub fn written(&self, store: &Store) {
        if let Some(first) = self.by_second.keys().next() {
            store.sweep.next_ms.fetch_min(*first, Ordering::Relaxed);
        }
    }
}

/// Appends `key` to an entry's value, front-coded against `previous`.
fn push_line(value: &mut String, previous: &str, key: &str) {
    let mut shared = previous
        .bytes()
        .zip(key.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    while !key.is_char_boundary(shared) {
        shared -= 1;
    }
    if !value.is_empty() {
        value.push('\n');
    }
    let _ = write!(value, "{shared}:{}", &key[shared..]);
}

/// The keys of an entry's value (lines that do not decode are skipped: an entry is
/// only ever written by [`Expiries::write`]).
fn entry_keys(value: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for line in value.lines() {
        let Some((shared, rest)) = line.split_once(':') else {
            continue;
        };
        let Ok(shared) = shared.parse::<usize>() else {
            continue;
        };
        let previous = keys.last().map_or("", String::as_str);
        let Some(head) = previous.get(..shared) else {
            continue;
        };
        keys.push(format!("{head}{rest}"));
    }
    keys
}

fn put_entry(
    store: &Store,
    txn: &mut lmdb::RwTransaction<'_>,
    at_ms: i64,
    value: &str,
) -> Result<(), StoreError> {
    // A nonce taken twice (two processes' sequences meeting) is skipped, never
    // overwritten: an overwritten entry's keys would never expire.
    loop {
        let nonce = store.sweep.nonce.fetch_add(1, Ordering::Relaxed);
        let key = keys::expiry(at_ms, nonce);
        match txn.put(store.db, &key, &value, WriteFlags::NO_OVERWRITE) {
            Ok(()) => return Ok(()),
            Err(lmdb::Error::KeyExist) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

impl Store {
    /// Whether a sweep would find something at `now_ms` (cheap: no read).
    pub fn sweep_due(&self, now_ms: i64) -> bool {
        now_ms >= self.sweep.not_before_ms && now_ms >= self.sweep.next_ms.load(Ordering::Relaxed)
    }

    /// When a sweep last ran, in any transaction (ms since the epoch; 0: never).
    pub fn last_sweep_ms(&self) -> i64 {
        self.sweep.last_ms.load(Ordering::Relaxed)
    }

    /// Deletes up to the sweep batch of what expired by `now_ms`, inside `txn` (a
    /// transaction its caller commits anyway). Call [`Store::swept`] with the result
    /// once `txn` committed.
    pub(super) fn sweep_in(
        &self,
        txn: &mut lmdb::RwTransaction<'_>,
        now_ms: i64,
    ) -> Result<Sweep, StoreError> {
        if !self.sweep_due(now_ms) {
            return Ok(Sweep::default());
        }
        let budget = self.retention.sweep_batch.max(1);
        let prefix = format!("{}:", space::EXPIRE);
        let end = keys::expiry_after(now_ms);
        let mut entries: Vec<(Vec<u8>, Vec<String>)> = Vec::new();
        let mut keys_taken = 0usize;
        let mut next_ms = i64::MAX;
        {
            let mut cursor = txn.open_ro_cursor(self.db)?;
            for item in cursor.iter_from(prefix.as_bytes()) {
                let (key, value) = item?;
                if !key.starts_with(prefix.as_bytes()) {
                    break;
                }
                if key >= end.as_bytes() || keys_taken >= budget {
                    next_ms = keys::expiry_at(&String::from_utf8_lossy(key)).unwrap_or(now_ms);
                    break;
                }
                let keys = entry_keys(&String::from_utf8_lossy(value));
                keys_taken += keys.len();
                entries.push((key.to_vec(), keys));
            }
        }
        let mut swept = Swept::default();
        // In key order: neighbours share leaf pages, so fewer pages are copied and
        // written.
        let mut doomed: Vec<&String> = entries.iter().flat_map(|(_, keys)| keys).collect();
        doomed.sort_unstable();
        for key in doomed {
            sweep_key(self, txn, key, &mut swept)?;
        }
        for (entry, _) in &entries {
            txn.del(self.db, entry, None)?;
            swept.entries += 1;
        }
        if swept.entries > 0 {
            crate::crash::point(crate::crash::SWEEP_MID_TRANSACTION);
        }
        Ok(Sweep {
            swept,
            next_ms,
            ran: true,
        })
    }

    /// Records what a committed transaction's sweep did.
    pub(super) fn swept(&self, sweep: &Sweep, now_ms: i64) {
        if !sweep.ran {
            return;
        }
        if sweep.swept.entries > 0 {
            crate::crash::point(crate::crash::SWEEP_AFTER_COMMIT);
        }
        self.sweep.last_ms.store(now_ms, Ordering::Relaxed);
        // An entry committed after this sweep read the index (its `written` may have
        // come first) can expire before what the sweep saw next: look again within
        // [`RECHECK_MS`] at the latest, so such an entry is never late by more.
        let next = sweep.next_ms.min(now_ms.saturating_add(RECHECK_MS));
        self.sweep.next_ms.store(next, Ordering::Relaxed);
        let s = &sweep.swept;
        self.sweep
            .expired_instances
            .fetch_add(s.instances, Ordering::Relaxed);
        self.sweep
            .expired_markers
            .fetch_add(s.markers, Ordering::Relaxed);
        self.sweep
            .expired_effect_records
            .fetch_add(s.effect_records, Ordering::Relaxed);
        self.sweep
            .expired_timers
            .fetch_add(s.timers, Ordering::Relaxed);
    }

    /// A sweep in a transaction of its own: up to the sweep batch of what expired by
    /// `now_ms`. For when no other transaction carried one for a while.
    pub fn sweep(&self, now_ms: i64) -> Result<Swept, StoreError> {
        if !self.sweep_due(now_ms) {
            return Ok(Swept::default());
        }
        // Only a due entry is worth a write transaction (and its fsync).
        self.load_next_expiry(now_ms)?;
        if !self.sweep_due(now_ms) {
            return Ok(Swept::default());
        }
        let sweep = self.write(|txn| self.sweep_in(txn, now_ms))?;
        self.swept(&sweep, now_ms);
        Ok(sweep.swept)
    }

    /// Sweeps until nothing more expired by `now_ms` (tests, tools).
    pub fn sweep_all(&self, now_ms: i64) -> Result<Swept, StoreError> {
        let mut total = Swept::default();
        loop {
            let s = self.sweep(now_ms)?;
            total.add(s);
            if s.entries == 0 {
                return Ok(total);
            }
        }
    }

    /// What the sweep deleted since the store was opened.
    pub fn expired(&self) -> Expired {
        Expired {
            instances: self.sweep.expired_instances.load(Ordering::Relaxed),
            markers: self.sweep.expired_markers.load(Ordering::Relaxed),
            effect_records: self.sweep.expired_effect_records.load(Ordering::Relaxed),
            timers: self.sweep.expired_timers.load(Ordering::Relaxed),
        }
    }

    /// How long the oldest expired entry has waited for the sweep (0 when none has).
    pub fn oldest_expired_age(&self, now_ms: i64) -> Result<Duration, StoreError> {
        Ok(match self.first_expiry()? {
            Some(at) if at <= now_ms => Duration::from_millis((now_ms - at) as u64),
            _ => Duration::ZERO,
        })
    }

    /// Reads when the earliest entry expires (looking again within [`RECHECK_MS`] of
    /// `now_ms` at the latest, as after a sweep).
    pub(super) fn load_next_expiry(&self, now_ms: i64) -> Result<(), StoreError> {
        let first = self.first_expiry()?.unwrap_or(i64::MAX);
        let next = first.min(now_ms.saturating_add(RECHECK_MS));
        self.sweep.next_ms.store(next, Ordering::Relaxed);
        Ok(())
    }

    /// When the earliest retention index entry expires (`None`: the index is empty).
    fn first_expiry(&self) -> Result<Option<i64>, StoreError> {
        let prefix = format!("{}:", space::EXPIRE);
        let mut first = None;
        self.reader()?
            .for_each_raw_from(&prefix, &prefix, |key, _| {
                // A key that does not parse sorts first: due at once.
                first = Some(keys::expiry_at(key).unwrap_or(0));
                Ok(false)
            })?;
        Ok(first)
    }
}

/// What one transaction's sweep did.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sweep {
    pub swept: Swept,
    /// When the next entry expires (`now` if the batch was full).
    next_ms: i64,
    /// It read the index (else there was nothing due and nothing to record).
    ran: bool,
}

impl Default for Sweep {
    fn default() -> Self {
        Sweep {
            swept: Swept::default(),
            next_ms: i64::MAX,
            ran: false,
        }
    }
}

/// Deletes one expired key as its kind requires.
fn sweep_key(
    store: &Store,
    txn: &mut lmdb::RwTransaction<'_>,
    key: &str,
    swept: &mut Swept,
) -> Result<(), StoreError> {
    let space_of = key.split(':').next().unwrap_or_default();
    if space_of == space::SAGA {
        let record = match super::get_json::<_, Indexed>(txn, store.db, key) {
            Ok(Some(record)) => record,
            // Gone already (a tenant moved away).
            Ok(None) => return Ok(()),
            // Unreadable: the operator's to look at, not the sweep's to remove.
            Err(e) if e.is_deterministic() => return Ok(()),
            Err(e) => return Err(e),
        };
        if !record.status.is_done() {
            return Ok(());
        }
        if let Some(index) =
            keys::status_index_of_saga_key(key, record.status.as_str(), record.version)
        {
            delete(store, txn, &index)?;
        }
        if delete(store, txn, key)? {
            swept.instances += 1;
            swept.history += super::history::delete_of_instance(txn, store.db, key)?;
        }
    } else if space_of == space::SCHEDULE {
        // Published and never applied (`Store::timers_published`). Back in the due
        // index (a tenant import re-indexes its timers), it is pending: not swept.
        let pending = match keys::due_index(key) {
            Some(index) => super::exists(txn, store.db, &index)?,
            None => true,
        };
        if !pending && delete(store, txn, key)? {
            swept.timers += 1;
        }
    } else if space_of == space::DEDUPE && delete(store, txn, key)? {
        if keys::is_effect_dedupe(key) {
            swept.effect_records += 1;
        } else {
            swept.markers += 1;
        }
    }
    Ok(())
}

fn delete(store: &Store, txn: &mut lmdb::RwTransaction<'_>, key: &str) -> Result<bool, StoreError> {
    match txn.del(store.db, &key, None) {
        Ok(()) => Ok(true),
        Err(lmdb::Error::NotFound) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_values_front_code_their_keys_and_read_back_whole() {
        let keys = [
            "dedupe:acme:order:0a1b2c",
            "dedupe:acme:order:0a1b3d",
            "dedupe:acme:effect:ff",
            "saga:acme:order:o-1",
            "saga:acme:order:é-2",
            "saga:acme:order:é-3",
        ];
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        let mut value = String::new();
        let mut previous = "";
        for key in &sorted {
            push_line(&mut value, previous, key);
            previous = key;
        }
        assert_eq!(entry_keys(&value), sorted);
        assert!(value.len() < sorted.iter().map(|k| k.len() + 1).sum::<usize>() * 2 / 3);
        assert!(value.contains("\n22:3d"), "{value}");
    }
}
