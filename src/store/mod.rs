//! The LMDB store: saga instances, outbox, schedules, checkpoints, dedupe markers and
//! quarantine records in one environment, one database, prefixed keys (`crate::keys`).
//!
//! Saga transitions are written by one door, [`Store::commit`] (state + outbox +
//! schedules + checkpoint + dedupe + history, all or nothing, many per LMDB transaction); the
//! other writes each have a method of their own (outbox deletes, dead letters, effect
//! records, published timers, operator actions, tenant moves, the retention sweep). Every
//! write runs through [`Store::write`](map.rs), which grows a full map and tries again.
//! Reads are tenant-scoped and use short read transactions that are never held across
//! calls.

mod admin;
mod commit;
mod expiry;
mod group;
mod history;
mod instances;
mod legacy;
mod map;
mod records;
mod tenant;
mod usage;
mod writer_lock;

use std::path::{Path, PathBuf};
#[cfg(feature = "dev")]
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use lmdb::{Cursor, Database, Environment, EnvironmentFlags, Transaction, WriteFlags};
use serde::de::DeserializeOwned;

pub use admin::{Found, MAX_SCAN};
pub use commit::Committed;
pub use commit::{CommitBatch, CommitOutcome, Keep, Seen, Transition};
pub use expiry::{expiry_of, now_ms, Expired, Retention, Swept};
pub use group::{writer, Writer, WriterJobs};
pub use history::{History, HistoryBound, HistoryEntry, HistoryFacts, MAX_FIRST, MAX_LAST};
pub use instances::{
    FoundInstance, InstancePage, InstanceQuery, VersionCounts, VersionsInUse, MAX_PAGE,
};
pub use map::Space;
pub use records::{
    excerpt, Checkpoint, DeadLetterRecord, EffectCompletion, EffectOutcome, InstanceStatus,
    OutboxItem, QuarantineKind, QuarantineRecord, RawJson, SagaRecord, ScheduleItem,
    StoredCompletion, StreamPosition, QUARANTINE_EXCERPT_BYTES,
};
pub use usage::{Held, HeldRecords, KeyBytes, Usage};
pub use writer_lock::WriterLock;

use crate::keys;
use crate::types::{CorrelationId, EventId, SagaName, TenantId, WorkId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The map is full and has grown as far as it may: nothing more can be written
    /// until records expire or an operator makes room (a larger
    /// `storage.max_size_mib`). Intake must stop; nothing partial was written.
    #[error("store is full (LMDB MAP_FULL at storage.max_size_mib): raise storage.max_size_mib or shorten retention; intake stops until records expire")]
    MapFull,
    #[error("cannot open store at {path}: {source}")]
    Open {
        path: PathBuf,
        source: Box<StoreError>,
    },
    #[error("cannot create store directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another process runs sagas on this store (see [`WriterLock`]).
    #[error("the store at {path} is in use by another runner running sagas ({holder}); one store belongs to one saga runner: two would overwrite each other's transitions (stop the other one first, or give this one a store of its own)")]
    InUse { path: PathBuf, holder: String },
    #[error("cannot use the store's lock file {path}: {source}")]
    LockFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("storage error: {0}")]
    Lmdb(lmdb::Error),
    #[error("corrupt record at {key}: {message}")]
    Corrupt { key: String, message: String },
    #[error("cannot encode record for {key}: {message}")]
    Encode { key: String, message: String },
    /// A commit or write probe failed on purpose (test fault injection: `dev` builds
    /// only, see `Store::inject_commit_failures`).
    #[error("injected commit failure")]
    Injected,
    /// What a write was based on changed under it; nothing was written.
    #[error("{0}")]
    Conflict(String),
    /// A transition was computed from an older record than the stored one (a stale
    /// snapshot, or a transition built on one that was quarantined): the whole commit is
    /// refused, so its messages are redelivered and executed again over the stored
    /// record.
    #[error("instance {key} has {stored} transitions stored, but a transition computed from a record with {based_on} was to replace it; this commit was refused whole, and its messages will run again")]
    Stale {
        key: String,
        stored: u64,
        based_on: u64,
    },
    /// Moving a tenant's records out or in failed (I/O, or a bad export).
    #[error("tenant transfer: {0}")]
    Transfer(String),
    /// The thread that writes these records for others is gone (a failing pipeline).
    #[error("store writer: {0}")]
    WriterGone(String),
}

impl StoreError {
    /// The same error again, for each of the writes a failed transaction held
    /// (`StoreError` is not `Clone`: it may hold an `io::Error`, which a write
    /// transaction never returns).
    pub fn copy(&self) -> StoreError {
        match self {
            StoreError::MapFull => StoreError::MapFull,
            StoreError::Lmdb(e) => StoreError::Lmdb(*e),
            StoreError::Corrupt { key, message } => StoreError::Corrupt {
                key: key.clone(),
                message: message.clone(),
            },
            StoreError::Encode { key, message } => StoreError::Encode {
                key: key.clone(),
                message: message.clone(),
            },
            StoreError::Injected => StoreError::Injected,
            StoreError::Transfer(m) => StoreError::Transfer(m.clone()),
            StoreError::WriterGone(m) => StoreError::WriterGone(m.clone()),
            StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
            StoreError::Stale {
                key,
                stored,
                based_on,
            } => StoreError::Stale {
                key: key.clone(),
                stored: *stored,
                based_on: *based_on,
            },
            // These come from opening the store, never from a write; an I/O error (EIO)
            // is the safe reading: not the data's fault, so intake stops.
            StoreError::Open { .. }
            | StoreError::CreateDir { .. }
            | StoreError::InUse { .. }
            | StoreError::LockFile { .. } => StoreError::Lmdb(lmdb::Error::Other(5)),
        }
    }

    /// The data is the problem (a key LMDB cannot hold, a record that no longer
    /// decodes): retrying the same write or read cannot help, so the message involved is
    /// quarantined instead of stopping intake.
    pub fn is_deterministic(&self) -> bool {
        matches!(self, StoreError::Encode { .. } | StoreError::Corrupt { .. })
    }
}

impl From<lmdb::Error> for StoreError {
    fn from(e: lmdb::Error) -> Self {
        match e {
            lmdb::Error::MapFull => StoreError::MapFull,
            other => StoreError::Lmdb(other),
        }
    }
}

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The map it opens with (bytes).
    pub map_size: usize,
    /// The most the map grows to when a commit finds it full (bytes).
    pub max_size: usize,
    pub retention: Retention,
    /// Slots of LMDB's reader table: read transactions open at once, over every
    /// process sharing the store ([`StoreOptions::readers_for`]).
    pub max_readers: u32,
}

impl StoreOptions {
    /// LMDB's own default, and the least a store opens with.
    pub const MIN_READERS: u32 = 126;
    /// Read transactions besides the effect workers' that may be open at once: the
    /// pipeline's stage threads (fetch, decode, execute, commit, relay, scheduler,
    /// sweep, effect fetch and recorder), the ops port's threads and `runner inspect`
    /// against a live store, with room to spare.
    pub const OTHER_READERS: u32 = 64;

    /// A map of `map_size` that never grows, and the default retention.
    pub fn fixed(map_size: usize) -> StoreOptions {
        StoreOptions {
            map_size,
            max_size: map_size,
            retention: Retention::default(),
            max_readers: Self::MIN_READERS,
        }
    }

    /// Reader slots for a process with `effect_workers` effect workers: each worker may
    /// hold a read transaction (its completion record) while every stage holds one
    /// too, and a full table refuses the next one (`MDB_READERS_FULL`). The table lives
    /// in the lock file and is sized by the first process to open the store; processes
    /// sharing one (effect workers) should run with the same settings.
    pub fn readers_for(effect_workers: usize) -> u32 {
        let workers = u32::try_from(effect_workers).unwrap_or(u32::MAX);
        workers
            .saturating_add(Self::OTHER_READERS)
            .max(Self::MIN_READERS)
    }
}

pub struct Store {
    env: Environment,
    db: Database,
    path: PathBuf,
    /// Held shared by every transaction, exclusively while the map grows (`map.rs`).
    gate: map::Gate,
    max_map_bytes: usize,
    retention: Retention,
    sweep: expiry::SweepState,
    /// What the tests' `inject_*` hooks arm (`dev` builds only).
    #[cfg(feature = "dev")]
    faults: Faults,
    /// Reminders published before this (ms since the epoch) may come from an older
    /// Runner that deleted their timers at publish (`legacy.rs`); 0 for a store that
    /// never did. Noted once, read at open.
    timer_records_since: i64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path` with a fixed map size.
    pub fn open(path: &Path, map_size_bytes: usize) -> Result<Store, StoreError> {
        Store::open_with(path, &StoreOptions::fixed(map_size_bytes))
    }

    /// Opens (creating if needed) the store at `path`. A store written before the
    /// status index or the retention index existed gets them here, once.
    pub fn open_with(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let map_size_bytes = options.map_size;
        std::fs::create_dir_all(path).map_err(|source| StoreError::CreateDir {
            path: path.to_path_buf(),
            source,
        })?;
        let open_err = |e: lmdb::Error| StoreError::Open {
            path: path.to_path_buf(),
            source: Box::new(e.into()),
        };
        // NO_TLS: read transactions are not tied to OS threads, so a stage may open one
        // without regard to which reader slots other threads hold.
        let env = Environment::new()
            .set_flags(EnvironmentFlags::NO_TLS)
            .set_map_size(map_size_bytes)
            .set_max_readers(options.max_readers.max(StoreOptions::MIN_READERS))
            .open(path)
            .map_err(open_err)?;
        let db = env.open_db(None).map_err(open_err)?;
        // A writer killed between writing its meta page and publishing the new
        // transaction id in the lock file leaves readers one commit behind, unless the
        // lock file is rebuilt (which only the first process to open the store does).
        // Taking the write lock repairs it (LMDB finds the lock's owner dead and
        // publishes the newest meta page), so do so before any record is read: a reader
        // on the older snapshot would execute events over state that lacks the last
        // commit, and lose it (tests/store_restart.rs).
        drop(env.begin_rw_txn().map_err(open_err)?);
        let opened_map = env.info().map_err(open_err)?.map_size();
        let mut store = Store {
            env,
            db,
            path: path.to_path_buf(),
            gate: map::Gate::default(),
            // A file larger than the configured map opens at its own size: never
            // smaller than that.
            max_map_bytes: options.max_size.max(map_size_bytes).max(opened_map),
            retention: options.retention,
            sweep: expiry::SweepState::new(options.retention.sweep_delay),
            #[cfg(feature = "dev")]
            faults: Faults::default(),
            timer_records_since: 0,
        };
        store.ensure_status_index()?;
        store.ensure_retention_index()?;
        store.timer_records_since = store.ensure_timer_records_since()?;
        store.load_next_expiry(now_ms())?;
        Ok(store)
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes raw bytes under a key: for tests that need a record no current code
    /// would write (one from an incompatible version, say).
    #[cfg(test)]
    pub(crate) fn put_raw(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.put(self.db, &key, &value, WriteFlags::empty())?;
            Ok(())
        })
    }

    /// Deletes a key: for tests that need a store as an older version left it.
    #[cfg(test)]
    pub(crate) fn delete_raw(&self, key: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.del(self.db, &key, None)?;
            Ok(())
        })
    }

    /// A short-lived reader for lookups that belong together (one pipeline batch).
    pub fn reader(&self) -> Result<Reader<'_>, StoreError> {
        let (txn, gate) = self.begin_ro()?;
        Ok(Reader {
            txn,
            db: self.db,
            _gate: gate,
            timer_records_since: self.timer_records_since,
        })
    }

    /// The retention the store applies where a saga or effect names none.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    pub fn saga(
        &self,
        tenant: &TenantId,
        saga: &SagaName,
        corr: &CorrelationId,
    ) -> Result<Option<SagaRecord>, StoreError> {
        self.reader()?.saga(tenant, saga, corr)
    }

    pub fn checkpoint(&self, tenant: &TenantId, saga: &SagaName) -> Result<Checkpoint, StoreError> {
        let r = self.reader()?;
        Ok(r.get(&keys::checkpoint(tenant, saga))?.unwrap_or_default())
    }

    pub fn is_duplicate(
        &self,
        tenant: &TenantId,
        saga: &SagaName,
        event: &EventId,
    ) -> Result<bool, StoreError> {
        self.reader()?.is_duplicate(tenant, saga, event)
    }

    /// Up to `limit` outbox items of one tenant, in key order, with their keys.
    pub fn outbox(
        &self,
        tenant: &TenantId,
        limit: usize,
    ) -> Result<Vec<(String, OutboxItem)>, StoreError> {
        self.scan(&keys::outbox_prefix(tenant), limit)
    }

    /// Up to `limit` timers of one tenant that are due at `now_ms`, in key order.
    pub fn due_schedules(
        &self,
        tenant: &TenantId,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, ScheduleItem)>, StoreError> {
        let mut due = Vec::new();
        let r = self.reader()?;
        r.for_each_prefixed(&keys::schedule_prefix(tenant), |key, item: ScheduleItem| {
            if item.due_at_ms <= now_ms {
                due.push((key.to_string(), item));
            }
            due.len() < limit
        })?;
        Ok(due)
    }

    /// Up to `limit` timers of every tenant due at `now_ms`, in due order, with their
    /// `schedule:` keys (read through the due-time index: only due entries are visited).
    pub fn due_timers(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, ScheduleItem)>, StoreError> {
        let prefix = format!("{}:", keys::space::DUE);
        let end = keys::due_after(now_ms);
        let r = self.reader()?;
        let mut keys_due = Vec::new();
        r.for_each_raw_from(&prefix, &prefix, |key, _| {
            if key >= end.as_str() || keys_due.len() >= limit {
                return Ok(false);
            }
            keys_due.extend(keys::schedule_of_due(key));
            Ok(true)
        })?;
        let mut due = Vec::with_capacity(keys_due.len());
        for key in keys_due {
            // An index entry without its timer would be a bug; skip it rather than stop.
            if let Some(item) = r.get::<ScheduleItem>(&key)? {
                due.push((key, item));
            }
        }
        Ok(due)
    }

    /// When the earliest pending timer of any tenant is due.
    pub fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        let prefix = format!("{}:", keys::space::DUE);
        let mut next = None;
        self.reader()?
            .for_each_raw_from(&prefix, &prefix, |key, _| {
                next = keys::due_of_index(key);
                Ok(false)
            })?;
        Ok(next)
    }

    /// Timers of every tenant not yet published (keys only are read).
    pub fn timers_len(&self) -> Result<u64, StoreError> {
        self.count_keys(keys::space::DUE)
    }

    /// Records that the reminders of these timers (their `schedule:` keys) were
    /// published, in one transaction: each timer leaves the due index, so it is not
    /// published again, but its record stays until the transition that applies the
    /// reminder consumes it (or a cancel, a re-schedule of its name or the instance
    /// finishing removes it): a reminder runs only while its instance still holds that
    /// timer (`saga::Executor`). So that a reminder nobody applies (lost, or taken by no
    /// instance) leaves nothing behind for ever, a record still there then expires
    /// after the store's dedupe horizon (`retention.dedupe_secs`), through the
    /// retention index; the sweep deletes a timer only while it is out of the due index.
    /// Returns how many index entries existed (timers published for the first time).
    pub fn timers_published(&self, schedule_keys: &[String]) -> Result<usize, StoreError> {
        let mut indexes = Vec::with_capacity(schedule_keys.len());
        for key in schedule_keys {
            let Some(index) = keys::due_index(key) else {
                return Err(StoreError::Encode {
                    key: key.clone(),
                    message: "not a timer key".into(),
                });
            };
            indexes.push(index);
        }
        let now = now_ms();
        let expire_at = expiry_of(now, self.retention.dedupe);
        let (published, expiries) = self.write(|txn| {
            let mut published = 0;
            let mut expiries = expiry::Expiries::default();
            for (key, index) in schedule_keys.iter().zip(&indexes) {
                match txn.del(self.db, index, None) {
                    Ok(()) => published += 1,
                    Err(lmdb::Error::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
                // Consumed already (the reminder was quick), or cancelled: nothing
                // waits.
                if exists(txn, self.db, key)? {
                    expiries.add(expire_at, key.clone());
                }
            }
            expiries.write(self, txn)?;
            Ok((published, expiries))
        })?;
        expiries.written(self);
        Ok(published)
    }

    /// Every timer of one instance, in due order.
    pub fn instance_schedules(
        &self,
        tenant: &TenantId,
        saga: &SagaName,
        corr: &CorrelationId,
    ) -> Result<Vec<ScheduleItem>, StoreError> {
        let prefix = keys::schedule_instance_prefix(tenant, saga, corr);
        Ok(self
            .scan(&prefix, usize::MAX)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Up to `limit` quarantine records of one tenant (`None`: the unattributed ones,
    /// whose tenant was in doubt).
    pub fn quarantined(
        &self,
        tenant: Option<&TenantId>,
        limit: usize,
    ) -> Result<Vec<QuarantineRecord>, StoreError> {
        Ok(self
            .scan(&keys::quarantine_prefix(tenant), limit)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Up to `limit` instances of one saga of one tenant.
    pub fn instances(
        &self,
        tenant: &TenantId,
        saga: &SagaName,
        limit: usize,
    ) -> Result<Vec<(String, SagaRecord)>, StoreError> {
        self.scan(&keys::saga_prefix(tenant, saga), limit)
    }

    fn scan<T: DeserializeOwned>(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.reader()?.for_each_prefixed(prefix, |key, value| {
            out.push((key.to_string(), value));
            out.len() < limit
        })?;
        Ok(out)
    }

    /// The relay's recovery scan: visits up to `limit` outbox keys of every tenant, in
    /// key order, from key `from`, and returns the items whose key `skip` does not
    /// reject (skipped ones are not decoded). The page says where the next one starts.
    pub fn outbox_page(
        &self,
        from: &str,
        limit: usize,
        skip: impl Fn(&str) -> bool,
    ) -> Result<OutboxPage, StoreError> {
        let prefix = format!("{}:", keys::space::OUTBOX);
        let from = if from < prefix.as_str() {
            &prefix
        } else {
            from
        };
        let mut page = OutboxPage::default();
        let mut visited = 0;
        let mut last = None;
        self.reader()?
            .for_each_raw_from(from, &prefix, |key, bytes| {
                visited += 1;
                last = Some(key.to_string());
                if !skip(key) {
                    page.items.push((key.to_string(), decode(key, bytes)?));
                }
                Ok(visited < limit)
            })?;
        if visited >= limit.max(1) {
            page.next = last.map(|k| format!("{k}\u{0}"));
        }
        Ok(page)
    }

    /// Outbox items of every tenant (keys only are read: about a millisecond per
    /// 10,000 items).
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        self.count_keys(keys::space::OUTBOX)
    }

    /// Records in a keyspace (keys only are read).
    fn count_keys(&self, space: &str) -> Result<u64, StoreError> {
        let prefix = format!("{space}:");
        let mut n = 0;
        self.reader()?.for_each_raw_from(&prefix, &prefix, |_, _| {
            n += 1;
            Ok(true)
        })?;
        Ok(n)
    }

    /// Which of `keys` still exist (one read transaction).
    pub fn existing(&self, keys: &[String]) -> Result<Vec<bool>, StoreError> {
        let r = self.reader()?;
        keys.iter().map(|k| exists(&r.txn, r.db, k)).collect()
    }

    /// Files the item as a dead letter and deletes it from the outbox, in one transaction.
    pub fn dead_letter(
        &self,
        outbox_key: &str,
        record: &DeadLetterRecord,
    ) -> Result<(), StoreError> {
        let key = keys::dead_letter(&record.item.tenant, record.item.kind, &record.item.work_id);
        let bytes = encode(&key, record)?;
        self.write(|txn| {
            txn.put(self.db, &key, &bytes, WriteFlags::empty())?;
            match txn.del(self.db, &outbox_key, None) {
                Ok(()) | Err(lmdb::Error::NotFound) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// The completion record of an effect command, if it was executed.
    pub fn effect_completion(
        &self,
        tenant: &TenantId,
        command: &WorkId,
    ) -> Result<Option<StoredCompletion>, StoreError> {
        let key = keys::effect_dedupe(tenant, command);
        let reader = self.reader()?;
        match reader.txn.get(reader.db, &key) {
            Ok(bytes) => {
                StoredCompletion::decode(bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        key,
                        message: e.to_string(),
                    })
            }
            Err(lmdb::Error::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Records that an effect command was executed, with its result, kept for the
    /// store's default retention. The record is what stops a second call.
    pub fn record_effect_completion(
        &self,
        tenant: &TenantId,
        command: &WorkId,
        completion: &StoredCompletion,
    ) -> Result<(), StoreError> {
        let keep = self.retention.effect_records;
        self.record_effect_completions(&[(tenant, command, completion, keep)])
    }

    /// [`Store::record_effect_completion`] for many commands in one transaction, each
    /// kept as long as it says. (It does not carry the sweep: a result is published only
    /// once its record committed, so this transaction is on the workflow's path.)
    pub fn record_effect_completions(
        &self,
        records: &[(&TenantId, &WorkId, &StoredCompletion, std::time::Duration)],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut job = RecordsJob::new(records, now)?;
        self.write(|txn| group::Job::write(&mut job, self, txn, now))?;
        job.expiries.written(self);
        Ok(())
    }

    /// Up to `limit` dead letters of one tenant.
    pub fn dead_letters(
        &self,
        tenant: &TenantId,
        limit: usize,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        let prefix = format!("{}:{}:", keys::space::DEAD_LETTER, tenant.token());
        Ok(self
            .scan(&prefix, limit)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Deletes dispatched outbox items in one transaction, which also sweeps what
    /// expired (the relay deletes all the time under load, so the sweep rides along
    /// instead of taking the writer lock for itself). Returns how many items existed.
    pub fn delete_outbox(&self, keys: &[String]) -> Result<usize, StoreError> {
        let now = now_ms();
        let (deleted, sweep) = self.write(|txn| {
            let deleted = self.delete_outbox_in(txn, keys)?;
            Ok((deleted, self.sweep_in(txn, now)?))
        })?;
        self.swept(&sweep, now);
        Ok(deleted)
    }

    fn delete_outbox_in(
        &self,
        txn: &mut lmdb::RwTransaction<'_>,
        keys: &[String],
    ) -> Result<usize, StoreError> {
        self.delete_keys_in(
            txn,
            keys,
            &[crate::keys::space::OUTBOX],
            "not an outbox key",
        )
    }

    /// Deletes keys of the `allowed` keyspaces in one transaction (any other key fails
    /// it, naming `refusal`). Returns how many existed.
    fn delete_keys(
        &self,
        keys: &[String],
        allowed: &[&str],
        refusal: &str,
    ) -> Result<usize, StoreError> {
        self.write(|txn| self.delete_keys_in(txn, keys, allowed, refusal))
    }

    fn delete_keys_in(
        &self,
        txn: &mut lmdb::RwTransaction<'_>,
        keys: &[String],
        allowed: &[&str],
        refusal: &str,
    ) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for key in keys {
            let space = key.split(':').next().unwrap_or_default();
            if !allowed.contains(&space) {
                return Err(StoreError::Encode {
                    key: key.clone(),
                    message: refusal.into(),
                });
            }
            match txn.del(self.db, key, None) {
                Ok(()) => deleted += 1,
                Err(lmdb::Error::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(deleted)
    }

    /// Proves the store is writable: one durable write of a probe record.
    pub fn probe_write(&self) -> Result<(), StoreError> {
        if self.take_injected_probe_failure() {
            return Err(StoreError::Injected);
        }
        let stamp = now_ms().to_string();
        self.write(|txn| {
            txn.put(self.db, &keys::meta("probe"), &stamp, WriteFlags::empty())?;
            Ok(())
        })
    }

    /// Number of records of every kind (for the demo and diagnostics).
    pub fn entries(&self) -> Result<usize, StoreError> {
        let _gate = self.gate.enter();
        Ok(self.env.stat()?.entries())
    }
}

/// Effect completion records, encoded (by the caller's thread) for one transaction.
struct RecordsJob {
    encoded: Vec<(String, Vec<u8>)>,
    expiries: expiry::Expiries,
    answer: Option<crate::oneshot::Sender<Result<(), StoreError>>>,
}

impl RecordsJob {
    fn new(
        records: &[(&TenantId, &WorkId, &StoredCompletion, std::time::Duration)],
        now: i64,
    ) -> Result<RecordsJob, StoreError> {
        let mut encoded = Vec::with_capacity(records.len());
        let mut expiries = expiry::Expiries::default();
        for (tenant, command, completion, keep) in records {
            let key = keys::effect_dedupe(tenant, command);
            let bytes = encode(&key, completion)?;
            expiries.add(expiry_of(now, *keep), key.clone());
            encoded.push((key, bytes));
        }
        Ok(RecordsJob {
            encoded,
            expiries,
            answer: None,
        })
    }
}

impl group::Job for RecordsJob {
    fn write(
        &mut self,
        store: &Store,
        txn: &mut lmdb::RwTransaction<'_>,
        _now_ms: i64,
    ) -> Result<(), StoreError> {
        for (key, bytes) in &self.encoded {
            txn.put(store.db, key, bytes, WriteFlags::empty())?;
        }
        self.expiries.write(store, txn)
    }

    fn committed(self: Box<Self>, store: &Store, _now_ms: i64) {
        self.expiries.written(store);
        if let Some(answer) = self.answer {
            answer.send(Ok(()));
        }
    }

    fn failed(self: Box<Self>, error: StoreError) {
        if let Some(answer) = self.answer {
            answer.send(Err(error));
        }
    }
}

/// Confirmed outbox items to delete ([`Store::delete_outbox`]); the outcome goes to
/// `done` with the keys. (The sweep rides in a group of deletes alone: `group.rs`.)
struct DeleteJob<F: FnOnce(Vec<String>, Result<usize, StoreError>) + Send> {
    keys: Vec<String>,
    deleted: Option<usize>,
    done: F,
}

impl<F: FnOnce(Vec<String>, Result<usize, StoreError>) + Send> group::Job for DeleteJob<F> {
    fn write(
        &mut self,
        store: &Store,
        txn: &mut lmdb::RwTransaction<'_>,
        _now_ms: i64,
    ) -> Result<(), StoreError> {
        self.deleted = None;
        self.deleted = Some(store.delete_outbox_in(txn, &self.keys)?);
        Ok(())
    }

    fn committed(self: Box<Self>, _store: &Store, _now_ms: i64) {
        let this = *self;
        let result = this.deleted.ok_or_else(|| {
            // Not reached: a job is answered as committed only after its write.
            StoreError::WriterGone("delete answered before its write".into())
        });
        (this.done)(this.keys, result);
    }

    fn failed(self: Box<Self>, error: StoreError) {
        let this = *self;
        (this.done)(this.keys, Err(error));
    }

    /// The items were confirmed: deleting them a little later is as safe (a restart in
    /// between sends them again, which their ids make duplicates), and nobody waits.
    fn may_wait(&self) -> bool {
        true
    }
}

impl Writer {
    /// [`Store::record_effect_completions`] in the writer's next group transaction:
    /// waits until the records are durable (or failed).
    pub fn record_effect_completions(
        &self,
        records: &[(&TenantId, &WorkId, &StoredCompletion, std::time::Duration)],
    ) -> Result<(), StoreError> {
        let mut job = RecordsJob::new(records, now_ms())?;
        let (answer, recorded) = crate::oneshot::oneshot();
        job.answer = Some(answer);
        self.submit(Box::new(job));
        recorded.recv().unwrap_or_else(|_| {
            Err(StoreError::WriterGone(
                "the store-writer thread is gone".into(),
            ))
        })
    }

    /// [`Store::delete_outbox`] in the writer's next group transaction, without
    /// waiting: `done` gets the keys back with how many existed, once the transaction
    /// committed (or failed), on the writer's thread.
    pub fn delete_outbox(
        &self,
        keys: Vec<String>,
        done: impl FnOnce(Vec<String>, Result<usize, StoreError>) + Send + 'static,
    ) {
        self.submit(Box::new(DeleteJob {
            keys,
            deleted: None,
            done,
        }));
    }
}

/// Faults the tests inject on purpose through [`Store`]'s `inject_*` hooks. Only `dev`
/// builds have them; without the feature the checks below are empty and inlined away.
#[cfg(feature = "dev")]
#[derive(Default)]
struct Faults {
    /// Commits still to fail on purpose (tests of the no-ack-on-failure path).
    commit_failures: AtomicU32,
    /// Write probes still to fail on purpose (tests of the health check).
    probe_failures: AtomicU32,
    /// A correlation id whose transitions are refused as unstorable (tests of the
    /// isolate-and-quarantine path).
    unstorable: parking_lot::Mutex<Option<String>>,
    /// Extra time every saga commit takes (tests of backpressure).
    commit_delay_ms: AtomicU64,
}

#[cfg(feature = "dev")]
impl Store {
    /// Makes every commit take `ms` longer, as a slow disk would (test fault injection
    /// for backpressure); 0 turns it off.
    pub fn inject_commit_delay(&self, ms: u64) {
        self.faults.commit_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Makes the next `n` commits fail after all their writes, before the LMDB commit:
    /// the on-disk effect is that of a transaction that never happened.
    pub fn inject_commit_failures(&self, n: u32) {
        self.faults.commit_failures.store(n, Ordering::SeqCst);
    }

    /// Makes the next `n` write probes ([`Store::probe_write`]) fail, as on a full or
    /// read-only disk (test fault injection for health checks).
    pub fn inject_probe_failures(&self, n: u32) {
        self.faults.probe_failures.store(n, Ordering::SeqCst);
    }

    /// Makes every transition of this correlation id, or of the event with this id, fail
    /// to store as if LMDB refused its record (a deterministic error), until called with
    /// `None`.
    pub fn inject_unstorable(&self, correlation_or_event: Option<&str>) {
        *self.faults.unstorable.lock() = correlation_or_event.map(str::to_string);
    }

    fn injected_delay(&self) {
        let ms = self.faults.commit_delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }

    fn is_injected_unstorable(&self, t: &Transition) -> bool {
        let injected = self.faults.unstorable.lock();
        injected.as_deref() == Some(t.correlation.as_str())
            || injected.as_deref() == Some(t.event_id.as_str())
    }

    fn take_injected_failure(&self) -> bool {
        take_one(&self.faults.commit_failures)
    }

    fn take_injected_probe_failure(&self) -> bool {
        take_one(&self.faults.probe_failures)
    }
}

/// Counts one injected failure off `left`; false once none are left.
#[cfg(feature = "dev")]
fn take_one(left: &AtomicU32) -> bool {
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// A build without the `dev` feature injects nothing.
#[cfg(not(feature = "dev"))]
impl Store {
    #[inline(always)]
    fn injected_delay(&self) {}

    #[inline(always)]
    fn is_injected_unstorable(&self, _t: &Transition) -> bool {
        false
    }

    #[inline(always)]
    fn take_injected_failure(&self) -> bool {
        false
    }

    #[inline(always)]
    fn take_injected_probe_failure(&self) -> bool {
        false
    }
}

/// One step of the relay's scan.
#[derive(Debug, Default)]
pub struct OutboxPage {
    pub items: Vec<(String, OutboxItem)>,
    /// Where the next page starts; `None` when the keyspace ended.
    pub next: Option<String>,
}

/// A read transaction. Dropped at the end of the batch it serves.
pub struct Reader<'env> {
    txn: lmdb::RoTransaction<'env>,
    db: Database,
    _gate: parking_lot::RwLockReadGuard<'env, ()>,
    timer_records_since: i64,
}

impl Reader<'_> {
    pub fn saga(
        &self,
        tenant: &TenantId,
        saga: &SagaName,
        corr: &CorrelationId,
    ) -> Result<Option<SagaRecord>, StoreError> {
        self.get(&keys::saga(tenant, saga, corr))
    }

    pub fn is_duplicate(
        &self,
        tenant: &TenantId,
        saga: &SagaName,
        event: &EventId,
    ) -> Result<bool, StoreError> {
        exists(&self.txn, self.db, &keys::saga_dedupe(tenant, saga, event))
    }

    /// Whether the timer of this `schedule:` key (name and due time) is held.
    pub fn holds_timer(&self, schedule_key: &str) -> Result<bool, StoreError> {
        exists(&self.txn, self.db, schedule_key)
    }

    /// Reminders published before this (ms since the epoch) may come from an older
    /// Runner that deleted their timers at publish (`legacy.rs`); 0 for a store that
    /// never did. Read once, when the store was opened.
    pub fn timer_records_since(&self) -> i64 {
        self.timer_records_since
    }

    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        get_json(&self.txn, self.db, key)
    }

    /// Calls `f` with each key and undecoded value under `prefix`, starting at key
    /// `from`, until it returns false or an error.
    fn for_each_raw_from(
        &self,
        from: &str,
        prefix: &str,
        mut f: impl FnMut(&str, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut cursor = self.txn.open_ro_cursor(self.db)?;
        for entry in cursor.iter_from(from.as_bytes()) {
            let (key, value) = entry?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            if !f(&String::from_utf8_lossy(key), value)? {
                break;
            }
        }
        Ok(())
    }

    /// Calls `f` for each record under `prefix` until it returns false.
    fn for_each_prefixed<T: DeserializeOwned>(
        &self,
        prefix: &str,
        mut f: impl FnMut(&str, T) -> bool,
    ) -> Result<(), StoreError> {
        self.for_each_raw_from(prefix, prefix, |key, bytes| Ok(f(key, decode(key, bytes)?)))
    }
}

fn exists<T: Transaction>(txn: &T, db: Database, key: &str) -> Result<bool, StoreError> {
    match txn.get(db, &key) {
        Ok(_) => Ok(true),
        Err(lmdb::Error::NotFound) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn get_json<T: Transaction, V: DeserializeOwned>(
    txn: &T,
    db: Database,
    key: &str,
) -> Result<Option<V>, StoreError> {
    match txn.get(db, &key) {
        Ok(bytes) => decode(key, bytes).map(Some),
        Err(lmdb::Error::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn decode<V: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<V, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

fn encode<V: serde::Serialize>(key: &str, value: &V) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::new();
    encode_into(&mut bytes, key, value)?;
    Ok(bytes)
}

/// `value`'s JSON in `buf`, replacing what it held (a commit reuses one buffer for all
/// its writes).
fn encode_into<V: serde::Serialize>(
    buf: &mut Vec<u8>,
    key: &str,
    value: &V,
) -> Result<(), StoreError> {
    buf.clear();
    serde_json::to_writer(&mut *buf, value).map_err(|e| StoreError::Encode {
        key: key.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod expiry_tests;
#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod history_tests;
#[cfg(test)]
mod tests;
