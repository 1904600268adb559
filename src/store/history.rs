//! Instance history: one compact entry per transition, written by the saga commit in the
//! transition's own transaction (`commit.rs`), bounded per instance, deleted with its
//! instance (the retention sweep, a tenant's move), read by the admin API
//! (`GET /admin/instances/{tenant}/{saga}/{corr}/history`).
//!
//! **One LMDB value per entry**, `history:{tenant}:{saga}:{corr}:{n:020}` (`n` the
//! transition's number, from 1, zero-padded so a range scan reads them in order), not
//! one value per instance: a blob of up to K + N entries would be read, grown and
//! rewritten whole by every transition (and copied to overflow pages once past half a
//! page), while an entry is one small put. **The bound**: the first K entries
//! ([`HistoryBound::first`]) and the last N ([`HistoryBound::last`]) are kept; writing
//! entry `n` deletes the entries after the first K that the last N no longer hold,
//! which in steady state is exactly one (`n - N`), so a transition costs one put and at
//! most one delete. N = 0 keeps the first K only (K = 0 too: no history, no write).
//! What was dropped is what the instance's transition count says is missing since its
//! first entry. Values use one-letter field names (an entry of the example order saga,
//! UUID ids, is ~310 bytes with its key).
//!
//! An instance that started before history existed has entries from its first
//! transition after the upgrade (none before, and those are not counted as dropped). A
//! migration (`POST /admin/instances/migrate`) is not a transition and writes none.

use lmdb::{Cursor, Transaction, WriteFlags};
use serde::{Deserialize, Serialize};

use super::commit::Transition;
use super::instances::Indexed;
use super::{decode, encode, InstanceStatus, Store, StoreError};
use crate::keys;
use crate::types::{CorrelationId, SagaName, TenantId};

/// The most either part of the bound may be (settings validate against these).
pub const MAX_FIRST: u32 = 1_000;
pub const MAX_LAST: u32 = 1_000;

/// Entries one read returns at most: the bound's largest, twice (entries a larger bound
/// left are trimmed by the instance's next transition).
const MAX_READ: usize = 2 * (MAX_FIRST as usize + MAX_LAST as usize);

/// Text an entry keeps of a free-text field at most (the instance record keeps the
/// whole fault).
const MAX_TYPE_BYTES: usize = 128;
const MAX_SUBJECT_BYTES: usize = 256;
const MAX_FAULT_BYTES: usize = 512;

/// What a transition's history entry needs that the store cannot see: where the event
/// came from besides its stream position, what it was, and what its programs cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFacts {
    /// The subject the event was published on.
    pub subject: String,
    /// `event_type` of an aggregate event, `result_type` of an effect result, the
    /// timer's `name` of a reminder.
    pub event_type: String,
    /// Gas the transition's programs used (those that finished).
    pub gas: u64,
}

/// Entries kept per instance: the first `first` and the last `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryBound {
    pub first: u32,
    pub last: u32,
}

impl Default for HistoryBound {
    fn default() -> Self {
        HistoryBound { first: 5, last: 50 }
    }
}

/// One transition of an instance, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Its number among the instance's transitions (from 1): the key's, not stored in
    /// the value.
    #[serde(skip)]
    pub n: u64,
    /// When it was committed (ms since the epoch).
    #[serde(rename = "a")]
    pub at_ms: i64,
    #[serde(rename = "e")]
    pub event_id: String,
    #[serde(rename = "j")]
    pub subject: String,
    #[serde(rename = "q")]
    pub stream: String,
    #[serde(rename = "s")]
    pub seq: u64,
    #[serde(rename = "y")]
    pub event_type: String,
    /// `None`: the transition started the instance.
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub status_before: Option<InstanceStatus>,
    #[serde(rename = "z")]
    pub status_after: InstanceStatus,
    /// Ids of the commands it issued (effect and aggregate).
    #[serde(rename = "c", default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    /// Names of the timers it set.
    #[serde(rename = "t", default, skip_serializing_if = "Vec::is_empty")]
    pub timers: Vec<String>,
    /// Names of the timers it cancelled.
    #[serde(rename = "x", default, skip_serializing_if = "Vec::is_empty")]
    pub cancelled: Vec<String>,
    #[serde(rename = "g")]
    pub gas: u64,
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

impl HistoryEntry {
    /// The entry of `t`, committed at `at_ms` over an instance that was `before`.
    fn of(t: &Transition, before: Option<InstanceStatus>, at_ms: i64) -> HistoryEntry {
        HistoryEntry {
            n: t.record.transitions,
            at_ms,
            event_id: t.event_id.to_string(),
            subject: clip(&t.history.subject, MAX_SUBJECT_BYTES),
            stream: t.position.stream.clone(),
            seq: t.position.seq,
            event_type: clip(&t.history.event_type, MAX_TYPE_BYTES),
            status_before: before,
            status_after: t.record.status,
            commands: t.outbox.iter().map(|o| o.work_id.to_string()).collect(),
            timers: t.schedules.iter().map(|s| s.name.clone()).collect(),
            cancelled: t.cancel.clone(),
            gas: t.history.gas,
            fault: t.record.fault.as_deref().map(|f| clip(f, MAX_FAULT_BYTES)),
        }
    }
}

/// An instance's history as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// In transition order.
    pub entries: Vec<HistoryEntry>,
    /// Entries removed from the middle by the bound.
    pub dropped: u64,
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Writes the history entry of `t` (applied over an instance that was `before`) and
/// drops the entries the bound no longer keeps, inside the transition's transaction.
pub(super) fn append(
    txn: &mut lmdb::RwTransaction<'_>,
    db: lmdb::Database,
    t: &Transition,
    before: Option<InstanceStatus>,
    at_ms: i64,
    bound: HistoryBound,
) -> Result<(), StoreError> {
    let n = t.record.transitions;
    let (first, last) = (u64::from(bound.first), u64::from(bound.last));
    if n > first && last == 0 {
        // Only the first entries are kept (none at all with `first` 0 too): nothing to
        // write, nothing to trim.
        return Ok(());
    }
    let key = keys::history(&t.tenant, &t.saga, &t.correlation, n);
    let bytes = encode(&key, &HistoryEntry::of(t, before, at_ms))?;
    txn.put(db, &key, &bytes, WriteFlags::empty())?;
    // Entries first+1 ..= n-last leave: normally just n-last (more only after the bound
    // was lowered). A seek from first+1 finds them without reading the others.
    let Some(upto) = n.checked_sub(last).filter(|u| *u > first) else {
        return Ok(());
    };
    let prefix = keys::history_prefix(&t.tenant, &t.saga, &t.correlation);
    let from = keys::history(&t.tenant, &t.saga, &t.correlation, first + 1);
    let mut doomed = Vec::new();
    {
        let mut cursor = txn.open_ro_cursor(db)?;
        for item in cursor.iter_from(from.as_bytes()) {
            let (k, _) = item?;
            if !k.starts_with(prefix.as_bytes()) || doomed.len() >= MAX_READ {
                break;
            }
            match keys::history_n(&String::from_utf8_lossy(k)) {
                Some(m) if m <= upto => doomed.push(k.to_vec()),
                _ => break,
            }
        }
    }
    for k in doomed {
        txn.del(db, &k, None)?;
    }
    Ok(())
}

/// Deletes every history entry of the instance stored under `saga_key` (it is being
/// deleted in `txn`). Returns how many.
pub(super) fn delete_of_instance(
    txn: &mut lmdb::RwTransaction<'_>,
    db: lmdb::Database,
    saga_key: &str,
) -> Result<u64, StoreError> {
    let Some(prefix) = keys::history_prefix_of_saga_key(saga_key) else {
        return Ok(0);
    };
    let mut doomed = Vec::new();
    {
        let mut cursor = txn.open_ro_cursor(db)?;
        for item in cursor.iter_from(prefix.as_bytes()) {
            let (k, _) = item?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            doomed.push(k.to_vec());
        }
    }
    for k in &doomed {
        txn.del(db, k, None)?;
    }
    Ok(doomed.len() as u64)
}

impl Store {
    /// The history of one instance; `None` when the instance is unknown.
    pub fn history(
        &self,
        tenant: &TenantId,
        saga: &SagaName,
        corr: &CorrelationId,
    ) -> Result<Option<History>, StoreError> {
        let reader = self.reader()?;
        let Some(instance) = reader.get::<Indexed>(&keys::saga(tenant, saga, corr))? else {
            return Ok(None);
        };
        let prefix = keys::history_prefix(tenant, saga, corr);
        let mut history = History::default();
        reader.for_each_raw_from(&prefix, &prefix, |key, bytes| {
            let Some(n) = keys::history_n(key) else {
                return Ok(true);
            };
            let mut entry: HistoryEntry = decode(key, bytes)?;
            entry.n = n;
            history.entries.push(entry);
            Ok(history.entries.len() < MAX_READ)
        })?;
        // Transitions since the first entry that have none: those the bound dropped
        // (the middle, or every one after the first entries when `last` is 0).
        if let Some(oldest) = history.entries.first() {
            let span = instance.transitions.saturating_sub(oldest.n) + 1;
            history.dropped = span.saturating_sub(history.entries.len() as u64);
        }
        Ok(Some(history))
    }
}
