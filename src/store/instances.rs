//! Live instance queries (the admin API's instance list): the instances of one saga of
//! one tenant, narrowed by status, version and "has a timer due before T", a page at a
//! time. A status narrows through the status index (`status:` keys), which `commit.rs`
//! writes in the same transaction as the record, so a query can never disagree with
//! the stored states. A store written before the index existed gets it built once, at
//! open.

use lmdb::{Transaction, WriteFlags};
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

/// Status and version: all the index needs of a record.
#[derive(Deserialize)]
struct Indexed {
    status: InstanceStatus,
    version: u32,
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
            let mut txn = self.env.begin_rw_txn()?;
            for entry in chunk.iter().filter_map(|(_, e)| e.as_ref()) {
                txn.put(self.db, entry, &b"", WriteFlags::empty())?;
            }
            built += chunk.len() as u64;
            let done = chunk.len() < BUILD_CHUNK;
            if done {
                txn.put(self.db, &marker, &b"1", WriteFlags::empty())?;
            }
            txn.commit()?;
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
            _ => prefix.clone(),
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
        if q.version.is_some_and(|v| v != record.version) {
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
