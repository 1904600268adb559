//! The store as operators see it: how full it is (`/ready`'s `store_nearly_full`),
//! what it holds (`GET /admin/store`), and the quarantine and dead-letter records that
//! stay until someone acts, counted by a bounded walk whose result is kept for a while
//! so that scrapes stay cheap.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::inspect::{Params, Refusal};
use crate::pipeline::Shared;
use crate::store::{Held, HeldRecords, Store, StoreError, MAX_SCAN};
use crate::timefmt::now_ms;

/// Keys `GET /admin/store` walks unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: usize = 100_000;
const MAX_LIMIT: usize = 1_000_000;
/// How long a count of quarantine records and dead letters serves scrapes before one
/// walks again (each keyspace read up to [`MAX_SCAN`] keys, as admin searches are).
pub(super) const HELD_FRESH: Duration = Duration::from_secs(30);

/// The quarantine and dead-letter counts as the last walk found them. A scrape that
/// finds them older than [`HELD_FRESH`] walks again while holding the lock, so scrapes
/// at the same moment wait for that one bounded walk and then share its result.
#[derive(Default)]
pub struct HeldCache(Mutex<Option<(Instant, HeldRecords)>>);

impl HeldCache {
    pub fn get(&self, store: &Store) -> Result<HeldRecords, StoreError> {
        let mut cached = self.0.lock();
        if let Some((at, held)) = cached.as_ref() {
            if at.elapsed() < HELD_FRESH {
                return Ok(*held);
            }
        }
        let held = store.held_records(MAX_SCAN)?;
        *cached = Some((Instant::now(), held));
        Ok(held)
    }

    /// A fresher count, walked for someone else (an admin view).
    pub fn put(&self, held: HeldRecords) {
        *self.0.lock() = Some((Instant::now(), held));
    }
}

/// `Some` (what `/ready` reports under `store_nearly_full`) when the pages in use take
/// more than `storage.nearly_full_percent` of the most the map may grow to.
pub fn nearly_full(shared: &Shared) -> Option<Value> {
    let space = shared.store.space().ok()?;
    let threshold = shared.settings.storage.nearly_full_percent;
    let percent = space.used_percent();
    (percent > f64::from(threshold)).then(|| {
        json!({"used_bytes": space.used_bytes, "max_bytes": space.max_bytes,
               "percent": round2(percent), "threshold_percent": threshold})
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn held_json(h: &Held, now: i64) -> Value {
    json!({
        "records": h.records,
        "oldest_at": h.oldest_ms.and_then(|ms| crate::timefmt::format_rfc3339_ms(ms).ok()),
        "oldest_age_secs": h.oldest_age_secs(now),
        "undated": h.undated,
        "truncated": h.truncated,
    })
}

/// `GET /admin/store[?limit=N]`: the map, LMDB's entry count, keys and bytes per
/// keyspace and per tenant over at most `limit` keys, what retention expired, and the
/// records that never expire.
pub fn view(shared: &Shared, held_cache: &HeldCache, query: &str) -> Result<Value, Refusal> {
    let params = Params::parse(query);
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(Refusal::BadRequest(format!(
                    "limit must be a number from 1 to {MAX_LIMIT} (got {raw:?})"
                )))
            }
        },
    };
    let store = &shared.store;
    let err = |e: crate::store::StoreError| Refusal::Store(e.to_string());
    let space = store.space().map_err(err)?;
    let entries = store.entries().map_err(err)?;
    let usage = store.usage(limit).map_err(err)?;
    // A walk that reached the store's end saw every quarantine record and dead letter.
    let held = if usage.truncated {
        store.held_records(MAX_SCAN).map_err(err)?
    } else {
        usage.held
    };
    held_cache.put(held);
    let now = now_ms();
    let expired = store.expired();
    let oldest_expired = store.oldest_expired_age(now).map_err(err)?;
    Ok(json!({
        "space": {
            "used_bytes": space.used_bytes, "file_bytes": space.file_bytes,
            "map_bytes": space.map_bytes, "max_bytes": space.max_bytes,
            "page_bytes": space.page_bytes, "percent": round2(space.used_percent()),
            "nearly_full_percent": shared.settings.storage.nearly_full_percent,
        },
        "entries": entries,
        "keyspaces": usage.keyspaces,
        "tenants": usage.tenants,
        "scanned": usage.scanned,
        "truncated": usage.truncated,
        "expired": {"instances": expired.instances, "markers": expired.markers,
                    "effect_records": expired.effect_records, "timers": expired.timers},
        "oldest_expired_age_secs": oldest_expired.as_secs_f64(),
        "quarantine": held_json(&held.quarantine, now),
        "dead_letters": held_json(&held.dead_letters, now),
    }))
}
