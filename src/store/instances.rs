//! Live instance queries (the admin API's instance list): the instances of one saga of
//! one tenant, narrowed by status, version and "has a timer due before T", a page at a
//! time. A status narrows through the status index (`status:` keys), which `commit.rs`
//! writes in the same transaction as the record, so a query can never disagree with
//! the stored states. A store written before the index existed gets it built once, at
//! open.

use lmdb::WriteFlags;
use serde::Deserialize;

use super::{decode, Reader, SagaRecord, Store, StoreError, MAX_SCAN};
use crate::keys::{self, space};
use crate::store::InstanceStatus;
use crate::types::{CorrelationId, SagaName, TenantId};

/// Most instances one page returns.
pub const MAX_PAGE: usize = 1000;

/// Index entries written per transaction while the index is built at open.
const BUILD_CHUNK: usize = 10_000;

/// `meta:` marker of a store whose status index is complete.
const INDEX_MARKER: &str = "status_index";

#[derive(Debug, Clone)]
pub struct InstanceQuery {
    pub tenant: TenantId,
    pub saga: SagaName,
    pub status: Option<InstanceStatus>,
    /// Only instances started on this manifest version.
    pub version: Option<u32>,
    /// Only instances with a pending timer due before this time (ms since the epoch).
    pub timer_before_ms: Option<i64>,
    /// The `next` of the previous page.
    pub after: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FoundInstance {
    pub correlation: String,
    pub record: SagaRecord,
    /// The instance's earliest pending timer (ms since the epoch).
    pub next_timer_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstancePage {
    pub instances: Vec<FoundInstance>,
    /// Where the next page starts; `None` when this one reached the end.
    pub next: Option<String>,
    /// The page stopped after scanning `MAX_SCAN` keys without filling up: ask again
    /// from `next`.
    pub scan_truncated: bool,
}

/// Status and version (all the index needs of a record) and the transition count a
/// commit checks its transition against, read without the record's state.
#[derive(Debug, Clone, Copy, Deserialize)]
pub(super) struct Indexed {
    #[serde(rename = "s", alias = "status")]
    pub status: InstanceStatus,
    #[serde(rename = "v", alias = "version")]
    pub version: u32,
    #[serde(rename = "n", alias = "transitions")]
    pub transitions: u64,
}

/// The status index entry of a record stored under `key`, if it is an instance.
pub(super) fn status_entry(key: &str, value: &[u8]) -> Option<String> {
    if !key.starts_with(&format!("{}:", space::SAGA)) {
        return None;
    }
    let r: Indexed = serde_json::from_slice(value).ok()?;
    keys::status_index_of_saga_key(key, r.status.as_str(), r.version)
}

impl Store {
    /// Builds the status index of a store written before it existed (once; a marker
    /// records that it is complete). Logs its progress on large stores.
    pub(super) fn ensure_status_index(&self) -> Result<(), StoreError> {
        let marker = keys::meta(INDEX_MARKER);
        if super::exists(&self.reader()?.txn, self.db, &marker)? {
            return Ok(());
        }
        let prefix = format!("{}:", space::SAGA);
        let mut from = prefix.clone();
        let mut built = 0u64;
        loop {
            let mut chunk: Vec<(String, Option<String>)> = Vec::new();
            self.reader()?
                .for_each_raw_from(&from, &prefix, |key, value| {
                    chunk.push((key.to_string(), status_entry(key, value)));
                    Ok(chunk.len() < BUILD_CHUNK)
                })?;
            let done = chunk.len() < BUILD_CHUNK;
            self.write(|txn| {
                for entry in chunk.iter().filter_map(|(_, e)| e.as_ref()) {
                    txn.put(self.db, entry, &b"", WriteFlags::empty())?;
                }
                if done {
                    txn.put(self.db, &marker, &b"1", WriteFlags::empty())?;
                }
                Ok(())
            })?;
            built += chunk.len() as u64;
            if done {
                if built > 0 {
                    log::info!(instances = built; "status index built");
                }
                return Ok(());
            }
            log::info!(instances = built; "building the status index");
            // The smallest key after the last one read.
            from = format!("{}\u{0}", chunk.last().map_or("", |(k, _)| k.as_str()));
        }
    }

    pub fn query_instances(&self, q: &InstanceQuery) -> Result<InstancePage, StoreError> {
        let reader = self.reader()?;
        let limit = q.limit.clamp(1, MAX_PAGE);
        // With a status the index narrows the walk; without one, the records are walked.
        let prefix = match q.status {
            Some(s) => keys::status_index_prefix(&q.tenant, &q.saga, Some(s.as_str()), q.version),
            None => keys::saga_prefix(&q.tenant, &q.saga),
        };
        let from = match &q.after {
            Some(after) if after.starts_with(&prefix) => format!("{after}\u{0}"),
            Some(_) => {
                return Err(StoreError::Conflict(
                    "`after` is the cursor of another query (other saga, status or version)".into(),
                ))
            }
            None => prefix.clone(),
        };
        let mut page = InstancePage {
            instances: Vec::new(),
            next: None,
            scan_truncated: false,
        };
        let mut scanned = 0usize;
        let mut last = None;
        let mut failure = None;
        reader.for_each_raw_from(&from, &prefix, |key, value| {
            scanned += 1;
            last = Some(key.to_string());
            match self.candidate(&reader, q, &prefix, key, value) {
                Ok(Some(found)) => page.instances.push(found),
                Ok(None) => {}
                Err(e) => {
                    failure = Some(e);
                    return Ok(false);
                }
            }
            if page.instances.len() >= limit {
                page.next = Some(key.to_string());
                return Ok(false);
            }
            if scanned >= MAX_SCAN {
                page.scan_truncated = true;
                page.next = Some(key.to_string());
                return Ok(false);
            }
            Ok(true)
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        // A full page that happened to end on the last key: the next one is empty.
        if page.next.is_some() && !page.scan_truncated && last.is_some() {
            let probe = format!("{}\u{0}", page.next.as_deref().unwrap_or_default());
            let mut more = false;
            reader.for_each_raw_from(&probe, &prefix, |_, _| {
                more = true;
                Ok(false)
            })?;
            if !more {
                page.next = None;
            }
        }
        Ok(page)
    }

    /// The instance behind one walked key, if it passes the query's filters.
    fn candidate(
        &self,
        reader: &Reader<'_>,
        q: &InstanceQuery,
        prefix: &str,
        key: &str,
        value: &[u8],
    ) -> Result<Option<FoundInstance>, StoreError> {
        let (correlation, record) = if q.status.is_some() {
            let Some((corr, _)) = keys::status_index_parts(key) else {
                return Ok(None);
            };
            let Ok(id) = CorrelationId::new(&corr) else {
                return Ok(None);
            };
            match reader.saga(&q.tenant, &q.saga, &id)? {
                Some(record) => (corr, record),
                None => return Ok(None),
            }
        } else {
            let corr = keys::unescape(&key[prefix.len()..]);
            (corr, decode::<SagaRecord>(key, value)?)
        };
        // The index and the record are written together; checking both costs nothing.
        if q.version.is_some_and(|v| v != record.version)
            || q.status.is_some_and(|s| s != record.status)
        {
            return Ok(None);
        }
        let next_timer_ms = match CorrelationId::new(&correlation) {
            Ok(id) => first_timer(reader, &q.tenant, &q.saga, &id)?,
            Err(_) => None,
        };
        if let Some(before) = q.timer_before_ms {
            if next_timer_ms.is_none_or(|due| due >= before) {
                return Ok(None);
            }
        }
        Ok(Some(FoundInstance {
            correlation,
            record,
            next_timer_ms,
        }))
    }
}

/// The due time of an instance's earliest pending timer (its keys sort by due time).
fn first_timer(
    reader: &Reader<'_>,
    tenant: &TenantId,
    saga: &SagaName,
    corr: &CorrelationId,
) -> Result<Option<i64>, StoreError> {
    let prefix = keys::schedule_instance_prefix(tenant, saga, corr);
    let mut due = None;
    reader.for_each_raw_from(&prefix, &prefix, |key, _| {
        // {prefix}{due_at:016}:{name}
        due = key
            .get(prefix.len()..prefix.len() + 16)
            .and_then(|d| d.parse().ok());
        Ok(false)
    })?;
    Ok(due)
}

/// Which saga versions active instances run on: what a manifest must keep loading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionsInUse {
    /// saga → version → a tenant with active instances on it (for the message).
    pub active: std::collections::BTreeMap<String, std::collections::BTreeMap<u32, String>>,
}

/// Instances per saga, version and status, counted over at most `limit` index entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionCounts {
    /// (saga, version, status) → instances, over every tenant.
    pub counts: std::collections::BTreeMap<(String, u32, String), u64>,
    /// The count stopped at the limit: the figures are lower bounds.
    pub truncated: bool,
}

impl Store {
    /// The versions active instances run on, found by seeking through the status index:
    /// one key read per (tenant, saga, status, version), however many instances.
    pub fn versions_in_use(&self) -> Result<VersionsInUse, StoreError> {
        let reader = self.reader()?;
        let space = format!("{}:", space::STATUS);
        let mut out = VersionsInUse::default();
        let mut from = space.clone();
        loop {
            let mut found = None;
            reader.for_each_raw_from(&from, &space, |key, _| {
                found = Some(key.to_string());
                Ok(false)
            })?;
            let Some(key) = found else {
                return Ok(out);
            };
            // status:{tenant}:{saga}:{status}:{version}:{corr}
            let parts: Vec<&str> = key.splitn(6, ':').collect();
            let [_, tenant, saga, status, version, _] = parts.as_slice() else {
                // Not an entry of this layout: step past it.
                from = format!("{key}\u{0}");
                continue;
            };
            let head = format!("{}:{tenant}:{saga}:{status}:", space::STATUS);
            if *status == InstanceStatus::Active.as_str() {
                if let Ok(v) = version.parse::<u32>() {
                    out.active
                        .entry(saga.to_string())
                        .or_default()
                        .entry(v)
                        .or_insert_with(|| tenant.to_string());
                }
                // The next version of this (tenant, saga): ';' sorts right after ':'.
                from = format!("{head}{version};");
            } else {
                // Past this status of this (tenant, saga).
                from = format!("{};", &head[..head.len() - 1]);
            }
        }
    }

    /// Counts instances per saga, version and status over at most `limit` entries of the
    /// status index (for `/info`).
    pub fn version_counts(&self, limit: usize) -> Result<VersionCounts, StoreError> {
        let reader = self.reader()?;
        let space = format!("{}:", space::STATUS);
        let mut out = VersionCounts::default();
        let mut seen = 0usize;
        reader.for_each_raw_from(&space, &space, |key, _| {
            seen += 1;
            if seen > limit {
                out.truncated = true;
                return Ok(false);
            }
            let parts: Vec<&str> = key.splitn(6, ':').collect();
            if let [_, _, saga, status, version, _] = parts.as_slice() {
                if let Ok(v) = version.parse::<u32>() {
                    *out.counts
                        .entry((saga.to_string(), v, status.to_string()))
                        .or_default() += 1;
                }
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// Writes records an operator's migration produced, with their index entries, in one
    /// transaction; each must still be as `expected` (unchanged since it was read).
    pub fn write_migrated(
        &self,
        tenant: &TenantId,
        saga: &SagaName,
        migrated: &[(CorrelationId, SagaRecord, SagaRecord)],
    ) -> Result<(), StoreError> {
        self.write(|txn| {
            for (corr, expected, record) in migrated {
                let key = keys::saga(tenant, saga, corr);
                let now: Option<SagaRecord> = super::get_json(txn, self.db, &key)?;
                if now.as_ref() != Some(expected) {
                    return Err(StoreError::Conflict(format!(
                        "instance {corr} changed while it was migrated; nothing was written"
                    )));
                }
                let bytes = super::encode(&key, record)?;
                txn.put(self.db, &key, &bytes, WriteFlags::empty())?;
                super::commit::reindex(
                    txn,
                    self.db,
                    tenant,
                    saga,
                    corr,
                    Some(Indexed {
                        status: expected.status,
                        version: expected.version,
                        transitions: expected.transitions,
                    }),
                    record,
                )?;
            }
            Ok(())
        })
    }
}
