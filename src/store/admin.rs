//! What operators do to stored records through the admin API: find quarantine and
//! dead-letter records by filter, discard them, redrive dead letters into the outbox,
//! and move a saga's checkpoint back for a replay. Each change is one write transaction.

use lmdb::WriteFlags;

use super::{encode, get_json, Checkpoint, DeadLetterRecord, OutboxItem, QuarantineRecord};
use super::{Store, StoreError};
use crate::keys;
use crate::types::{SagaName, TenantId};

/// Records visited per search at most, matching or not: a search over a huge backlog
/// answers with what it found in this many and says it stopped early.
pub const MAX_SCAN: usize = 100_000;

/// Records a search found, with their keys.
pub struct Found<T> {
    pub records: Vec<(String, T)>,
    /// The scan stopped at [`MAX_SCAN`] before the end of the tenant's records.
    pub truncated: bool,
}

impl Store {
    /// Up to `limit` quarantine records of a tenant (`None`: the unattributed ones) that
    /// `keep` accepts.
    pub fn find_quarantined(
        &self,
        tenant: Option<&TenantId>,
        limit: usize,
        keep: impl Fn(&str, &QuarantineRecord) -> bool,
    ) -> Result<Found<QuarantineRecord>, StoreError> {
        self.find(&keys::quarantine_prefix(tenant), limit, keep)
    }

    /// Up to `limit` dead letters of a tenant that `keep` accepts.
    pub fn find_dead_letters(
        &self,
        tenant: &TenantId,
        limit: usize,
        keep: impl Fn(&str, &DeadLetterRecord) -> bool,
    ) -> Result<Found<DeadLetterRecord>, StoreError> {
        let prefix = format!("{}:{}:", keys::space::DEAD_LETTER, tenant.token());
        self.find(&prefix, limit, keep)
    }

    fn find<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
        limit: usize,
        keep: impl Fn(&str, &T) -> bool,
    ) -> Result<Found<T>, StoreError> {
        let mut records = Vec::new();
        let mut visited = 0usize;
        let mut truncated = false;
        self.reader()?.for_each_prefixed(prefix, |key, value: T| {
            visited += 1;
            if keep(key, &value) {
                records.push((key.to_string(), value));
            }
            if visited >= MAX_SCAN {
                truncated = true;
            }
            records.len() < limit && !truncated
        })?;
        Ok(Found { records, truncated })
    }

    /// Deletes quarantine and dead-letter records (other keys are refused). Returns
    /// how many existed.
    pub fn discard_records(&self, record_keys: &[String]) -> Result<usize, StoreError> {
        self.delete_keys(
            record_keys,
            &[keys::space::QUARANTINE, keys::space::DEAD_LETTER],
            "not a quarantine or dead-letter key",
        )
    }

    /// Puts dead-lettered items back into the outbox and deletes their dead letters, in
    /// one transaction. Returns the items now waiting (for the relay to be told).
    pub fn redrive_dead_letters(
        &self,
        dead_letter_keys: &[String],
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.write(|txn| {
            let mut items = Vec::new();
            for key in dead_letter_keys {
                if !key.starts_with(&format!("{}:", keys::space::DEAD_LETTER)) {
                    continue;
                }
                let Some(record) = get_json::<_, DeadLetterRecord>(txn, self.db, key)? else {
                    continue;
                };
                let item = record.item;
                let outbox_key = keys::outbox(&item.tenant, item.kind, &item.work_id);
                let bytes = encode(&outbox_key, &item)?;
                txn.put(self.db, &outbox_key, &bytes, WriteFlags::empty())?;
                txn.del(self.db, key, None)?;
                items.push(item);
            }
            Ok(items)
        })
    }

    /// Sets the `stream` entry of `checkpoint:{tenant}:{saga}` to `seq`; returns what
    /// it was.
    pub fn reset_checkpoint(
        &self,
        tenant: &TenantId,
        saga: &SagaName,
        stream: &str,
        seq: u64,
    ) -> Result<Option<u64>, StoreError> {
        let key = keys::checkpoint(tenant, saga);
        self.write(|txn| {
            let mut checkpoint: Checkpoint = get_json(txn, self.db, &key)?.unwrap_or_default();
            let previous = checkpoint.streams.insert(stream.to_string(), seq);
            let bytes = encode(&key, &checkpoint)?;
            txn.put(self.db, &key, &bytes, WriteFlags::empty())?;
            Ok(previous)
        })
    }
}
