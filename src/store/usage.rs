//! What the store holds, for operators: keys and bytes per keyspace and per tenant
//! (`GET /admin/store`), and the quarantine and dead-letter records with the age of the
//! oldest (`/metrics`). Both are bounded walks run by the ops port's threads, never on
//! the commit path, and a walk never holds one read transaction for long: it reads a
//! chunk of keys per transaction and starts a new one after the last key it saw (a
//! reader that stayed open would keep LMDB from reusing the pages freed since it began,
//! and the file would grow while it walks).

use std::collections::BTreeMap;

use lmdb::{Cursor, Transaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::keys::space;

/// Keys read per read transaction.
const CHUNK: usize = 10_000;

/// Whether a keyspace's second segment is the tenant (`_` the single tenant; `~` the
/// quarantine records whose tenant was in doubt): the records a tenant owns and its
/// status index. The others (`due:`, `expire:`, `meta:`) are counted by keyspace only.
fn names_tenant(keyspace: &str) -> bool {
    space::TENANT_RECORDS.contains(&keyspace) || keyspace == space::STATUS
}

/// Keys and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KeyBytes {
    pub keys: u64,
    pub key_bytes: u64,
    pub value_bytes: u64,
}

impl KeyBytes {
    fn add(&mut self, key: usize, value: usize) {
        self.keys += 1;
        self.key_bytes += key as u64;
        self.value_bytes += value as u64;
    }
}

/// What a walk of the store found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Per keyspace (the key's first segment).
    pub keyspaces: BTreeMap<String, KeyBytes>,
    /// Per tenant token, then keyspace (only the keyspaces that carry a tenant).
    pub tenants: BTreeMap<String, BTreeMap<String, KeyBytes>>,
    /// Keys visited.
    pub scanned: u64,
    /// The walk stopped at its limit before the store's last key.
    pub truncated: bool,
    /// The quarantine records and dead letters it saw (all of them unless truncated).
    #[serde(skip)]
    pub held: HeldRecords,
}

/// Records that stay until an operator acts (quarantine records, dead letters): how
/// many, and when the oldest came.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Held {
    pub records: u64,
    /// When the oldest dated record came (ms since the epoch); `None` when none has a
    /// date (quarantine records written before they carried one).
    pub oldest_ms: Option<i64>,
    /// Records without a readable date (counted, not aged).
    pub undated: u64,
    /// The walk stopped at its limit: there are more.
    pub truncated: bool,
}

impl Held {
    /// How long the oldest dated record has waited at `now_ms` (seconds; 0 when none).
    pub fn oldest_age_secs(&self, now_ms: i64) -> f64 {
        self.oldest_ms
            .map_or(0.0, |at| (now_ms - at).max(0) as f64 / 1000.0)
    }

    fn saw(&mut self, at: Option<&str>) {
        self.records += 1;
        match at.and_then(|t| crate::timefmt::parse_rfc3339_ms(t).ok()) {
            Some(ms) => self.oldest_ms = Some(self.oldest_ms.map_or(ms, |o| o.min(ms))),
            None => self.undated += 1,
        }
    }
}

/// Quarantine records and dead letters, every tenant's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HeldRecords {
    pub quarantine: Held,
    pub dead_letters: Held,
}

/// The date fields only: the rest of the record (a body excerpt, a whole outbox item)
/// is skipped, not built.
#[derive(Deserialize)]
struct QuarantinedAt {
    #[serde(default)]
    quarantined_at: Option<String>,
}

#[derive(Deserialize)]
struct DeadAt {
    #[serde(default)]
    dead_at: Option<String>,
}

fn quarantined_at(value: &[u8]) -> Option<String> {
    serde_json::from_slice::<QuarantinedAt>(value)
        .ok()?
        .quarantined_at
}

fn dead_at(value: &[u8]) -> Option<String> {
    serde_json::from_slice::<DeadAt>(value).ok()?.dead_at
}

impl Store {
    /// Keys and bytes per keyspace and per tenant, over at most `limit` keys from the
    /// first, [`CHUNK`] keys per read transaction.
    pub fn usage(&self, limit: usize) -> Result<Usage, StoreError> {
        let mut usage = Usage::default();
        let (scanned, truncated) = self.walk("", limit, |key, value| {
            let mut parts = key.splitn(3, |b| *b == b':');
            let keyspace = String::from_utf8_lossy(parts.next().unwrap_or_default());
            usage
                .keyspaces
                .entry(keyspace.to_string())
                .or_default()
                .add(key.len(), value.len());
            if keyspace == space::QUARANTINE {
                usage.held.quarantine.saw(quarantined_at(value).as_deref());
            } else if keyspace == space::DEAD_LETTER {
                usage.held.dead_letters.saw(dead_at(value).as_deref());
            }
            if names_tenant(&keyspace) {
                if let Some(tenant) = parts.next() {
                    usage
                        .tenants
                        .entry(String::from_utf8_lossy(tenant).into_owned())
                        .or_default()
                        .entry(keyspace.into_owned())
                        .or_default()
                        .add(key.len(), value.len());
                }
            }
        })?;
        usage.scanned = scanned;
        usage.truncated = truncated;
        Ok(usage)
    }

    /// Quarantine records and dead letters of every tenant, and when the oldest of each
    /// came; at most `limit` keys of each keyspace are read.
    pub fn held_records(&self, limit: usize) -> Result<HeldRecords, StoreError> {
        let mut held = HeldRecords::default();
        let q = &mut held.quarantine;
        let (_, truncated) = self.walk(&format!("{}:", space::QUARANTINE), limit, |_, value| {
            q.saw(quarantined_at(value).as_deref())
        })?;
        q.truncated = truncated;
        let d = &mut held.dead_letters;
        let (_, truncated) =
            self.walk(&format!("{}:", space::DEAD_LETTER), limit, |_, value| {
                d.saw(dead_at(value).as_deref())
            })?;
        d.truncated = truncated;
        Ok(held)
    }

    /// Calls `f` with each key and value under `prefix` (`""`: every key), in key
    /// order, at most `limit` of them, a new read transaction every [`CHUNK`] keys.
    /// Returns the keys visited and whether it stopped at `limit` with keys left.
    fn walk(
        &self,
        prefix: &str,
        limit: usize,
        mut f: impl FnMut(&[u8], &[u8]),
    ) -> Result<(u64, bool), StoreError> {
        let prefix = prefix.as_bytes();
        let mut from = prefix.to_vec();
        let mut visited = 0usize;
        loop {
            let reader = self.reader()?;
            let mut cursor = reader.txn.open_ro_cursor(reader.db)?;
            let iter = if from.is_empty() {
                cursor.iter_start()
            } else {
                cursor.iter_from(&from)
            };
            let mut next = None;
            for (in_chunk, entry) in iter.enumerate() {
                let (key, value) = entry?;
                if !key.starts_with(prefix) {
                    break;
                }
                if visited >= limit {
                    return Ok((visited as u64, true));
                }
                if in_chunk == CHUNK {
                    // Not visited yet: the next chunk, in a new transaction, starts
                    // here (if it went meanwhile, at the key after it).
                    next = Some(key.to_vec());
                    break;
                }
                f(key, value);
                visited += 1;
            }
            match next {
                Some(key) => from = key,
                None => return Ok((visited as u64, false)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::TempDir;

    fn store(dir: &TempDir) -> Store {
        Store::open(&dir.path().join("store"), 64 << 20).unwrap()
    }

    fn put(store: &Store, key: &str, value: &str) {
        store.put_raw(key, value.as_bytes()).unwrap();
    }

    fn kb(keys: u64, key_bytes: usize, value_bytes: usize) -> KeyBytes {
        KeyBytes {
            keys,
            key_bytes: key_bytes as u64,
            value_bytes: value_bytes as u64,
        }
    }

    #[test]
    fn counts_keys_and_bytes_per_keyspace_and_tenant() {
        let dir = TempDir::new("usage").unwrap();
        let s = store(&dir);
        let before = s.usage(1_000).unwrap();
        let written = [
            ("saga:acme:order:o-1", "{\"s\":\"a\"}"),
            ("saga:acme:order:o-2", "{}"),
            ("saga:beta:order:o-1", "{\"x\":1}"),
            ("dedupe:acme:order:e-1", "{}"),
            ("dedupe:beta:effect:c-1", "{\"r\":2}"),
            ("quarantine:~:S:00000000000000000001", "{}"),
            ("due:0000000000000001:acme:order:o-1:t", ""),
            (
                "expire:0000000000000001:0000000000000001",
                "saga:acme:order:o-1",
            ),
        ];
        for (k, v) in written {
            put(&s, k, v);
        }
        let u = s.usage(1_000).unwrap();
        assert!(!u.truncated);
        assert_eq!(u.scanned, before.scanned + written.len() as u64);
        let sum = |space: &str, tenant: Option<&str>| {
            written
                .iter()
                .filter(|(k, _)| {
                    let parts: Vec<&str> = k.split(':').collect();
                    parts[0] == space && tenant.is_none_or(|t| parts[1] == t)
                })
                .fold(KeyBytes::default(), |mut acc, (k, v)| {
                    acc.add(k.len(), v.len());
                    acc
                })
        };
        assert_eq!(u.keyspaces["saga"], sum("saga", None));
        assert_eq!(u.keyspaces["saga"].keys, 3);
        assert_eq!(u.tenants["acme"]["saga"], sum("saga", Some("acme")));
        assert_eq!(
            u.tenants["acme"]["saga"],
            kb(2, 38, 11),
            "two instances of acme"
        );
        assert_eq!(u.tenants["beta"]["saga"], kb(1, 19, 7));
        assert_eq!(u.tenants["acme"]["dedupe"], sum("dedupe", Some("acme")));
        assert_eq!(u.tenants["beta"]["dedupe"], sum("dedupe", Some("beta")));
        assert_eq!(u.tenants["~"]["quarantine"].keys, 1);
        // Index keyspaces have no tenant column.
        assert_eq!(u.keyspaces["due"], sum("due", None));
        let expire_before = before.keyspaces.get("expire").map_or(0, |k| k.keys);
        assert_eq!(u.keyspaces["expire"].keys, expire_before + 1);
        assert!(u.tenants.values().all(|t| !t.contains_key("due")
            && !t.contains_key("expire")
            && !t.contains_key("meta")));
        assert_eq!(u.tenants.keys().collect::<Vec<_>>(), ["acme", "beta", "~"]);
    }

    #[test]
    fn a_walk_stops_at_its_limit_and_reads_in_chunks() {
        let dir = TempDir::new("usage").unwrap();
        let s = store(&dir);
        // More than two chunks of one keyspace, written in one transaction.
        let n = 2 * CHUNK + 17;
        s.write(|txn| {
            for i in 0..n {
                let key = format!("outbox:acme:effect:c-{i:06}");
                txn.put(s.db, &key, &b"{}", lmdb::WriteFlags::empty())?;
            }
            Ok(())
        })
        .unwrap();
        let all = s.usage(1_000_000).unwrap();
        assert!(!all.truncated);
        assert_eq!(all.tenants["acme"]["outbox"].keys, n as u64);
        assert_eq!(all.scanned, s.entries().unwrap() as u64);

        let cut = s.usage(CHUNK + 5).unwrap();
        assert!(cut.truncated);
        assert_eq!(cut.scanned, (CHUNK + 5) as u64);
        let exact = s.usage(all.scanned as usize).unwrap();
        assert!(!exact.truncated, "the limit reached at the very end");
        assert_eq!(exact, all);
    }

    #[test]
    fn held_records_are_counted_with_the_oldest_dated_one() {
        let dir = TempDir::new("usage").unwrap();
        let s = store(&dir);
        assert_eq!(s.held_records(100).unwrap(), HeldRecords::default());
        put(
            &s,
            "quarantine:acme:S:00000000000000000001",
            r#"{"kind":"decode","quarantined_at":"2026-01-01T00:00:10Z","body_excerpt":"x"}"#,
        );
        put(
            &s,
            "quarantine:beta:S:00000000000000000002",
            r#"{"kind":"decode","quarantined_at":"2026-01-01T00:00:00Z"}"#,
        );
        // Older records carry no date: counted, not aged.
        put(
            &s,
            "quarantine:~:S:00000000000000000003",
            r#"{"kind":"decode"}"#,
        );
        put(
            &s,
            "deadletter:acme:effect:c-1",
            r#"{"item":{},"dead_at":"2026-01-02T00:00:00Z"}"#,
        );
        let held = s.held_records(100).unwrap();
        let jan1 = crate::timefmt::parse_rfc3339_ms("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            held.quarantine,
            Held {
                records: 3,
                oldest_ms: Some(jan1),
                undated: 1,
                truncated: false
            }
        );
        assert_eq!(held.dead_letters.records, 1);
        assert_eq!(held.dead_letters.oldest_ms, Some(jan1 + 86_400_000));
        assert_eq!(held.quarantine.oldest_age_secs(jan1 + 1_500), 1.5);
        let cut = s.held_records(2).unwrap();
        assert_eq!(
            (cut.quarantine.records, cut.quarantine.truncated),
            (2, true)
        );
        assert!(!cut.dead_letters.truncated);
    }
}
