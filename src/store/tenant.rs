//! A tenant's records moved between stores, for handing a tenant from one saga shard
//! to another: exported as JSON lines (`["key", value]`), imported in one transaction,
//! deleted in one transaction. The due and status indexes are not exported: import
//! rebuilds them.

use std::io::{BufRead, Write};

use lmdb::WriteFlags;
use serde_json::value::RawValue;

use super::{Store, StoreError};
use crate::keys::{self, space};
use crate::types::TenantId;

fn prefixes(tenant: &TenantId) -> Vec<String> {
    space::TENANT_RECORDS
        .iter()
        .map(|s| format!("{s}:{}:", tenant.token()))
        .collect()
}

fn transfer(e: impl std::fmt::Display) -> StoreError {
    StoreError::Transfer(e.to_string())
}

impl Store {
    /// Writes every record of `tenant` to `out`, one JSON line each. Returns how many.
    pub fn export_tenant(
        &self,
        tenant: &TenantId,
        out: &mut impl Write,
    ) -> Result<u64, StoreError> {
        let reader = self.reader()?;
        let mut n = 0u64;
        for prefix in prefixes(tenant) {
            reader.for_each_raw_from(&prefix, &prefix, |key, value| {
                let value = std::str::from_utf8(value).map_err(transfer)?;
                let key = serde_json::to_string(key).map_err(transfer)?;
                writeln!(out, "[{key},{value}]").map_err(transfer)?;
                n += 1;
                Ok(true)
            })?;
        }
        out.flush().map_err(transfer)?;
        Ok(n)
    }

    /// Deletes every record of `tenant` (and its due-index and status-index entries) in
    /// one transaction. Returns how many records (index entries not counted).
    pub fn delete_tenant(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let mut doomed = Vec::new();
        let mut derived = Vec::new();
        {
            let reader = self.reader()?;
            for prefix in prefixes(tenant) {
                reader.for_each_raw_from(&prefix, &prefix, |key, _| {
                    doomed.push(key.to_string());
                    Ok(true)
                })?;
            }
            let index = format!("{}:{}:", space::STATUS, tenant.token());
            reader.for_each_raw_from(&index, &index, |key, _| {
                derived.push(key.to_string());
                Ok(true)
            })?;
        }
        // The tenant's retention index entries stay: an entry whose keys are gone
        // deletes nothing when it expires.
        self.write(|txn| {
            for key in &derived {
                txn.del(self.db, key, None)?;
            }
            for key in &doomed {
                txn.del(self.db, key, None)?;
                if let Some(index) = keys::due_index(key) {
                    match txn.del(self.db, &index, None) {
                        Ok(()) | Err(lmdb::Error::NotFound) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Ok(())
        })?;
        Ok(doomed.len() as u64)
    }

    /// Whether the store holds any record of `tenant`.
    pub fn has_tenant(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        let reader = self.reader()?;
        let mut found = false;
        for prefix in prefixes(tenant) {
            reader.for_each_raw_from(&prefix, &prefix, |_, _| {
                found = true;
                Ok(false)
            })?;
        }
        Ok(found)
    }

    /// Writes the exported records of `tenant` in one transaction, rebuilding the due
    /// and status indexes (every timer goes back in the due index: one whose reminder
    /// the old shard published is published again, with the same id), and the retention
    /// index: what expires (markers, effect
    /// records, finished instances) is kept the store's default time from now, as when
    /// an older store is opened (when it was written did not travel). A line for another
    /// tenant, or an unreadable one, fails the whole import.
    pub fn import_tenant(&self, tenant: &TenantId, input: impl BufRead) -> Result<u64, StoreError> {
        let allowed = prefixes(tenant);
        let mut records: Vec<(String, Box<RawValue>)> = Vec::new();
        for line in input.lines() {
            let line = line.map_err(transfer)?;
            if line.is_empty() {
                continue;
            }
            let (key, value): (String, Box<RawValue>) = serde_json::from_str(&line)
                .map_err(|e| transfer(format!("line {}: {e}", records.len() + 1)))?;
            if !allowed.iter().any(|p| key.starts_with(p.as_str())) {
                return Err(transfer(format!(
                    "{key:?} is not a record of tenant {:?}",
                    tenant.as_str()
                )));
            }
            records.push((key, value));
        }
        let now = super::now_ms();
        let mut expiries = super::expiry::Expiries::default();
        for (key, value) in &records {
            if let Some(keep) = self.expires_after(key, value.get().as_bytes()) {
                expiries.add(super::expiry_of(now, keep), key.clone());
            }
        }
        self.write(|txn| {
            for (key, value) in &records {
                txn.put(self.db, key, &value.get(), WriteFlags::empty())?;
                if let Some(index) = keys::due_index(key) {
                    txn.put(self.db, &index, &b"", WriteFlags::empty())?;
                }
                if let Some(index) = super::instances::status_entry(key, value.get().as_bytes()) {
                    txn.put(self.db, &index, &b"", WriteFlags::empty())?;
                }
            }
            expiries.write(self, txn)
        })?;
        expiries.written(self);
        Ok(records.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::{seed_outbox, seed_timers, TempDir};
    use crate::keys::OutboxKind;

    #[test]
    fn a_tenant_moves_whole_and_alone() {
        let dir = TempDir::new("tenant-move").unwrap();
        let from = Store::open(&dir.path().join("a"), 64 << 20).unwrap();
        let to = Store::open(&dir.path().join("b"), 64 << 20).unwrap();
        let (acme, globex): (TenantId, TenantId) =
            ("acme".parse().unwrap(), "globex".parse().unwrap());
        seed_outbox(&from, "workflow.cmd", "acme", OutboxKind::Effect, 5).unwrap();
        seed_timers(&from, "acme", 4, 1_000, 1_000).unwrap();
        seed_timers(&from, "globex", 3, 1_000, 1_000).unwrap();
        let entries_before = from.entries().unwrap();

        let mut export = Vec::new();
        let exported = from.export_tenant(&acme, &mut export).unwrap();
        // 5 + 4 instances, their dedupe markers and checkpoint, 5 items, 4 timers.
        assert!(exported >= 18, "{exported}");
        assert_eq!(from.delete_tenant(&acme).unwrap(), exported);
        assert!(!from.has_tenant(&acme).unwrap());
        assert!(from.has_tenant(&globex).unwrap());
        assert_eq!(
            from.due_timers(i64::MAX, 100).unwrap().len(),
            3,
            "globex's stay"
        );
        assert_eq!(
            from.entries().unwrap(),
            entries_before - exported as usize - 4 - 9,
            "acme's records, its due-index entries (4 timers) and its status-index entries \
             (9 instances) are gone, nothing else"
        );

        assert_eq!(
            to.import_tenant(&acme, export.as_slice()).unwrap(),
            exported
        );
        assert_eq!(to.outbox(&acme, 100).unwrap().len(), 5);
        let saga = to
            .instances(&acme, &"seeded".parse().unwrap(), 100)
            .unwrap();
        let indexed = to
            .query_instances(&crate::store::InstanceQuery {
                tenant: acme.clone(),
                saga: "seeded".parse().unwrap(),
                status: Some(crate::store::InstanceStatus::Active),
                version: None,
                timer_before_ms: None,
                after: None,
                limit: 100,
            })
            .unwrap();
        assert_eq!(
            indexed.instances.len(),
            saga.len(),
            "the status index is rebuilt"
        );
        let due = to.due_timers(i64::MAX, 100).unwrap();
        assert_eq!(due.len(), 4, "the due index is rebuilt");
        assert!(due.iter().all(|(_, t)| t.tenant == acme));

        // An export of one tenant cannot be imported as another's.
        let refused = to.import_tenant(&globex, export.as_slice());
        assert!(
            matches!(refused, Err(StoreError::Transfer(_))),
            "{refused:?}"
        );
        assert!(
            !to.has_tenant(&globex).unwrap(),
            "nothing of it was written"
        );
    }
}
