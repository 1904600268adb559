//! The one way saga transitions reach the store: a [`CommitBatch`] applied in a single
//! LMDB write transaction (group commit). Each [`Transition`] carries every part of a
//! transition as a required field, so a caller cannot write state without its outbox,
//! schedules, checkpoint, dedupe marker and history entry; either the whole batch
//! commits or none of it.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use lmdb::{Cursor, Transaction, WriteFlags};

use super::expiry::{expiry_of, now_ms, Expiries, Retention};
use super::group::{Job, Writer};
use super::history::{self, HistoryBound, HistoryFacts};
use super::instances::Indexed;
use super::InstanceStatus;
use super::{
    encode_into, get_json, Checkpoint, OutboxItem, QuarantineRecord, SagaRecord, ScheduleItem,
    Store, StoreError, StreamPosition,
};
use crate::keys;
use crate::oneshot;
use crate::types::{CorrelationId, EventId, SagaName, TenantId};

/// Everything one event did to one saga instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub tenant: TenantId,
    pub saga: SagaName,
    pub correlation: CorrelationId,
    /// The event applied: its dedupe marker is written with the transition.
    pub event_id: EventId,
    /// Where the event came from: advances the (tenant, saga) checkpoint.
    pub position: StreamPosition,
    /// The instance after the transition.
    pub record: SagaRecord,
    pub outbox: Vec<OutboxItem>,
    /// Timers to set; one with the name of a pending timer replaces it.
    pub schedules: Vec<ScheduleItem>,
    /// Names of pending timers to drop.
    pub cancel: Vec<String>,
    /// The timer whose reminder this transition applies (its name): the reminder
    /// consumes it, so it goes unless the transition sets that name again. A timer's
    /// record lives until then, after its reminder was published (see
    /// [`Store::timers_published`]): a reminder runs only while its instance still holds
    /// it.
    pub fired: Option<String>,
    /// How long its dedupe marker, and the instance once finished, are kept.
    pub keep: Keep,
    /// What its history entry says beyond the parts above (`store/history.rs`).
    pub history: HistoryFacts,
}

/// How long a transition's traces stay in the store (its saga's retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    /// The event's dedupe marker.
    pub dedupe: Duration,
    /// The instance, from the transition that finishes it.
    pub finished: Duration,
}

impl Keep {
    /// The store's defaults.
    pub fn of(retention: &Retention) -> Keep {
        Keep {
            dedupe: retention.dedupe,
            finished: retention.finished_instances,
        }
    }
}

/// An event at a stream position, already applied by a saga.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub tenant: TenantId,
    pub saga: SagaName,
    pub position: StreamPosition,
}

/// What one group commit writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitBatch {
    pub transitions: Vec<Transition>,
    pub quarantine: Vec<QuarantineRecord>,
    /// Events every saga instance they reach had applied already: they write nothing
    /// but move their checkpoints (a replay ends where it began).
    pub seen: Vec<Seen>,
    /// Quarantine records that retried messages settle (deleted before `quarantine` is
    /// written, so a message quarantined again keeps a record).
    pub released: Vec<String>,
}

impl CommitBatch {
    pub fn is_empty(&self) -> bool {
        self.transitions.is_empty()
            && self.quarantine.is_empty()
            && self.released.is_empty()
            && self.seen.is_empty()
    }
}

/// What happened to each transition of a committed batch, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Applied,
    /// Its dedupe marker already existed: nothing of it was written.
    Duplicate,
}

impl Store {
    /// Applies the batch atomically and durably (LMDB syncs on commit). Markers and
    /// finished instances get their retention index entries in the same transaction.
    pub fn commit(&self, batch: &CommitBatch) -> Result<Vec<CommitOutcome>, StoreError> {
        self.injected_delay();
        let now = now_ms();
        let (outcomes, expiries) = self.write(|txn| self.commit_in(txn, batch, now))?;
        expiries.written(self);
        Ok(outcomes)
    }

    fn commit_in(
        &self,
        txn: &mut lmdb::RwTransaction<'_>,
        batch: &CommitBatch,
        now: i64,
    ) -> Result<(Vec<CommitOutcome>, Expiries), StoreError> {
        let mut outcomes = Vec::with_capacity(batch.transitions.len());
        let mut expiries = Expiries::default();
        let mut checkpoints: BTreeMap<String, Checkpoint> = BTreeMap::new();
        let mut buf = Vec::with_capacity(1024);
        // Applied or not, an event's position is accounted for: checkpoints move past
        // it (never back).
        let mut advance = |txn: &lmdb::RwTransaction<'_>,
                           tenant: &TenantId,
                           saga: &SagaName,
                           position: &StreamPosition|
         -> Result<(), StoreError> {
            let cp_key = keys::checkpoint(tenant, saga);
            if !checkpoints.contains_key(&cp_key) {
                let stored = get_json(txn, self.db, &cp_key)?.unwrap_or_default();
                checkpoints.insert(cp_key.clone(), stored);
            }
            if let Some(cp) = checkpoints.get_mut(&cp_key) {
                let seq = cp.streams.entry(position.stream.clone()).or_insert(0);
                *seq = (*seq).max(position.seq);
            }
            Ok(())
        };
        for s in &batch.seen {
            advance(txn, &s.tenant, &s.saga, &s.position)?;
        }
        for t in &batch.transitions {
            advance(txn, &t.tenant, &t.saga, &t.position)?;
            let dedupe_key = keys::saga_dedupe(&t.tenant, &t.saga, &t.event_id);
            // The marker goes first, and only where there is none: one descent of the tree
            // both checks and writes it, and a marker found (stored, or written by an
            // earlier transition of this batch) makes the transition a duplicate before
            // any of it is written. Its value is only the stream sequence the event came
            // at (for whoever investigates): markers are many and kept for their
            // retention. A failure below aborts the transaction, the marker with it.
            if !put_new(&mut buf, txn, self.db, &dedupe_key, &t.position.seq)? {
                outcomes.push(CommitOutcome::Duplicate);
                continue;
            }
            if self.is_injected_unstorable(t) {
                return Err(StoreError::Encode {
                    key: keys::saga(&t.tenant, &t.saga, &t.correlation),
                    message: "refused on purpose (test fault injection)".into(),
                });
            }
            if let Some(finished) = apply(&mut buf, txn, self.db, t, now, self.retention.history)? {
                expiries.add(expiry_of(now, t.keep.finished), finished);
            }
            expiries.add(expiry_of(now, t.keep.dedupe), dedupe_key);
            outcomes.push(CommitOutcome::Applied);
        }
        for (key, cp) in &checkpoints {
            put(&mut buf, txn, self.db, key, cp)?;
        }
        for key in &batch.released {
            if !key.starts_with(keys::space::QUARANTINE) {
                continue;
            }
            match txn.del(self.db, key, None) {
                Ok(()) | Err(lmdb::Error::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut stamp = None;
        for q in &batch.quarantine {
            let key = keys::quarantine(q.filing_tenant(), &q.stream, q.seq);
            if q.quarantined_at.is_some() {
                put(&mut buf, txn, self.db, &key, q)?;
                continue;
            }
            // Records are kept until an operator acts; when they came tells how long
            // they have waited.
            let at = stamp.get_or_insert_with(crate::timefmt::now_rfc3339);
            let stamped = QuarantineRecord {
                quarantined_at: Some(at.clone()),
                ..q.clone()
            };
            put(&mut buf, txn, self.db, &key, &stamped)?;
        }
        expiries.write(self, txn)?;
        if self.take_injected_failure() {
            // The caller drops the transaction, which aborts it: none of the writes
            // above survive.
            return Err(StoreError::Injected);
        }
        crate::crash::point(crate::crash::MID_TRANSACTION);
        Ok((outcomes, expiries))
    }
}

/// A [`CommitBatch`] handed to the writer thread ([`Writer::commit`]).
struct CommitJob {
    batch: CommitBatch,
    /// What the last write made of it (its outcomes and the expiries to tell the sweep).
    written: Option<(Vec<CommitOutcome>, Expiries)>,
    answer: oneshot::Sender<Committed>,
}

/// The batch back, with what became of its transitions.
pub type Committed = (CommitBatch, Result<Vec<CommitOutcome>, StoreError>);

impl Job for CommitJob {
    fn write(
        &mut self,
        store: &Store,
        txn: &mut lmdb::RwTransaction<'_>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.written = None;
        self.written = Some(store.commit_in(txn, &self.batch, now_ms)?);
        Ok(())
    }

    fn committed(self: Box<Self>, store: &Store, _now_ms: i64) {
        let this = *self;
        let result = match this.written {
            Some((outcomes, expiries)) => {
                expiries.written(store);
                Ok(outcomes)
            }
            // Not reached: a job is answered as committed only after its write.
            None => Err(StoreError::WriterGone(
                "commit answered before its write".into(),
            )),
        };
        this.answer.send((this.batch, result));
    }

    fn failed(self: Box<Self>, error: StoreError) {
        let this = *self;
        this.answer.send((this.batch, Err(error)));
    }
}

impl Writer {
    /// [`Store::commit`] in the writer's next group transaction: waits until it is
    /// durable (or failed), and gives the batch back.
    pub fn commit(&self, batch: CommitBatch) -> Committed {
        self.store().injected_delay();
        let (answer, committed) = oneshot::oneshot();
        self.submit(Box::new(CommitJob {
            batch,
            written: None,
            answer,
        }));
        committed.recv().unwrap_or_else(|_| {
            let gone = StoreError::WriterGone("the store-writer thread is gone".into());
            (CommitBatch::default(), Err(gone))
        })
    }
}

/// Writes `value`'s JSON at `key`.
fn put<V: serde::Serialize>(
    buf: &mut Vec<u8>,
    txn: &mut lmdb::RwTransaction<'_>,
    db: lmdb::Database,
    key: &str,
    value: &V,
) -> Result<(), StoreError> {
    encode_into(buf, key, value)?;
    write(txn, db, key, buf, WriteFlags::empty())
}

/// Writes `value`'s JSON at `key` unless the key holds a value: whether it wrote.
fn put_new<V: serde::Serialize>(
    buf: &mut Vec<u8>,
    txn: &mut lmdb::RwTransaction<'_>,
    db: lmdb::Database,
    key: &str,
    value: &V,
) -> Result<bool, StoreError> {
    encode_into(buf, key, value)?;
    match write(txn, db, key, buf, WriteFlags::NO_OVERWRITE) {
        Ok(()) => Ok(true),
        Err(StoreError::Lmdb(lmdb::Error::KeyExist)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn write(
    txn: &mut lmdb::RwTransaction<'_>,
    db: lmdb::Database,
    key: &str,
    bytes: &[u8],
    flags: WriteFlags,
) -> Result<(), StoreError> {
    txn.put(db, &key, &bytes, flags).map_err(|e| match e {
        lmdb::Error::BadValSize => StoreError::Encode {
            key: key.to_string(),
            message: "key is longer than LMDB allows (511 bytes)".into(),
        },
        other => other.into(),
    })
}

/// Keeps an instance's status index entry in step with its record: moved from what
/// `before` had to what `after` has (written when new or moved, else left alone).
pub(super) fn reindex(
    txn: &mut lmdb::RwTransaction<'_>,
    db: lmdb::Database,
    tenant: &TenantId,
    saga: &SagaName,
    corr: &CorrelationId,
    before: Option<Indexed>,
    after: &SagaRecord,
) -> Result<(), StoreError> {
    let entry = |status: InstanceStatus, version| {
        keys::status_index(tenant, saga, status.as_str(), version, corr)
    };
    if let Some(b) = before {
        if (b.status, b.version) == (after.status, after.version) {
            return Ok(());
        }
        match txn.del(db, &entry(b.status, b.version), None) {
            Ok(()) | Err(lmdb::Error::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    txn.put(
        db,
        &entry(after.status, after.version),
        &b"",
        WriteFlags::empty(),
    )?;
    Ok(())
}

/// Writes state, timers, outbox and history entry (committed at `now`) of one
/// transition. The instance's key when the transition finished it (it then expires).
fn apply(
    buf: &mut Vec<u8>,
    txn: &mut lmdb::RwTransaction<'_>,
    db: lmdb::Database,
    t: &Transition,
    now: i64,
    bound: HistoryBound,
) -> Result<Option<String>, StoreError> {
    let saga_key = keys::saga(&t.tenant, &t.saga, &t.correlation);
    // Status, version and count only: the prior state is skipped over, never built.
    let before: Option<Indexed> = get_json(txn, db, &saga_key)?;
    // A transition replaces the record it was computed from, whose count it carries on
    // by one. Two things break that, and both are refused here instead of overwriting
    // the stored record: a stale read (tests/store_restart.rs), and a later transition
    // of an instance built, through the executor's overlay, on a transition the commit
    // stage then quarantined as unstorable. The commit fails, and the commit stage has
    // the messages run again over the stored record.
    let stored = before.map_or(0, |b| b.transitions);
    let based_on = t.record.transitions.saturating_sub(1);
    if stored != based_on {
        return Err(StoreError::Stale {
            key: saga_key,
            stored,
            based_on,
        });
    }
    put(buf, txn, db, &saga_key, &t.record)?;
    reindex(
        txn,
        db,
        &t.tenant,
        &t.saga,
        &t.correlation,
        before,
        &t.record,
    )?;
    history::append(txn, db, t, before.map(|b| b.status), now, bound)?;

    // A finished instance keeps no timers; otherwise drop cancelled, replaced and fired
    // names.
    let drop_all = t.record.status.is_done();
    let mut names: HashSet<&str> = t.cancel.iter().map(String::as_str).collect();
    names.extend(t.schedules.iter().map(|s| s.name.as_str()));
    names.extend(t.fired.as_deref());
    let prefix = keys::schedule_instance_prefix(&t.tenant, &t.saga, &t.correlation);
    let mut doomed = Vec::new();
    {
        let mut cursor = txn.open_ro_cursor(db)?;
        for entry in cursor.iter_from(prefix.as_bytes()) {
            let (key, _) = entry?;
            let Some(rest) = key.strip_prefix(prefix.as_bytes()) else {
                break;
            };
            // rest = "{due_at:016}:{escaped name}"
            let name = rest
                .get(17..)
                .map(|n| keys::unescape(&String::from_utf8_lossy(n)));
            if drop_all || name.is_some_and(|n| names.contains(n.as_str())) {
                doomed.push(key.to_vec());
            }
        }
    }
    for key in doomed {
        txn.del(db, &key, None)?;
        // Its due-index entry goes with it.
        if let Some(index) = keys::due_index(&String::from_utf8_lossy(&key)) {
            match txn.del(db, &index, None) {
                Ok(()) | Err(lmdb::Error::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    if !drop_all {
        // Later entries with the same name win.
        let mut set_names = HashSet::new();
        for s in t.schedules.iter().rev() {
            if set_names.insert(s.name.as_str()) {
                let key = keys::schedule(&t.tenant, &t.saga, &t.correlation, s.due_at_ms, &s.name);
                put(buf, txn, db, &key, s)?;
                if let Some(index) = keys::due_index(&key) {
                    txn.put(db, &index, &b"", WriteFlags::empty())?;
                }
            }
        }
    }
    for item in &t.outbox {
        put(
            buf,
            txn,
            db,
            &keys::outbox(&item.tenant, item.kind, &item.work_id),
            item,
        )?;
    }
    let was_done = before.is_some_and(|b| b.status.is_done());
    Ok((drop_all && !was_done).then_some(saga_key))
}
