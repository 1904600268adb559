//! Records that exist without a retention index entry get one: those of a store
//! written before retention existed (once, at open, a chunk per transaction), and those
//! a tenant import brings in. Either way when they were written is unknown, so they are
//! kept the store's default time from now: never shorter than configured.

use std::time::Duration;

use lmdb::{Transaction, WriteFlags};

use super::expiry::{expiry_of, now_ms, Expiries};
use super::instances::Indexed;
use super::{Store, StoreError};
use crate::keys::{self, space};

/// Records given an entry per transaction while an older store is adopted.
const ADOPT_CHUNK: usize = 10_000;

/// `meta:` marker of a store whose every expiring record has its index entry.
const RETENTION_MARKER: &str = "retention_index";

/// `meta:` key: since when (ms since the epoch) this store keeps a timer's record until
/// its reminder is applied. Before, a timer was deleted once its reminder was published.
const TIMER_RECORDS_SINCE: &str = "timer_records_since";

impl Store {
    /// How long the record under `key` is kept from now, if it expires at all: dedupe
    /// markers and effect records always, instances once finished.
    pub(super) fn expires_after(&self, key: &str, value: &[u8]) -> Option<Duration> {
        let r = &self.retention;
        match key.split(':').next()? {
            space::DEDUPE if keys::is_effect_dedupe(key) => Some(r.effect_records),
            space::DEDUPE => Some(r.dedupe),
            space::SAGA => {
                let record: Indexed = serde_json::from_slice(value).ok()?;
                record.status.is_done().then_some(r.finished_instances)
            }
            _ => None,
        }
    }

    /// Gives every expiring record of a store written before the retention index
    /// existed its entry (once; a marker records that it is complete). A new store gets
    /// the marker at once. Logs its progress on large stores.
    pub(super) fn ensure_retention_index(&self) -> Result<(), StoreError> {
        let marker = keys::meta(RETENTION_MARKER);
        if super::exists(&self.reader()?.txn, self.db, &marker)? {
            return Ok(());
        }
        let mut adopted = 0u64;
        for space in [space::DEDUPE, space::SAGA] {
            let prefix = format!("{space}:");
            let mut from = prefix.clone();
            loop {
                let mut chunk: Vec<(String, Duration)> = Vec::new();
                let mut last = None;
                let mut visited = 0;
                self.reader()?
                    .for_each_raw_from(&from, &prefix, |key, value| {
                        visited += 1;
                        last = Some(key.to_string());
                        if let Some(keep) = self.expires_after(key, value) {
                            chunk.push((key.to_string(), keep));
                        }
                        Ok(visited < ADOPT_CHUNK)
                    })?;
                let now = now_ms();
                let mut expiries = Expiries::default();
                for (key, keep) in chunk {
                    expiries.add(expiry_of(now, keep), key);
                }
                self.write(|txn| expiries.write(self, txn))?;
                adopted += visited as u64;
                if visited < ADOPT_CHUNK {
                    break;
                }
                log::info!(records = adopted; "giving the records of an older store their retention");
                from = format!("{}\u{0}", last.unwrap_or_default());
            }
        }
        self.write(|txn| {
            txn.put(self.db, &marker, &b"1", WriteFlags::empty())?;
            Ok(())
        })?;
        if adopted > 0 {
            log::info!(records = adopted; "an older store's records now expire by the configured retention");
        }
        Ok(())
    }

    /// Since when timers keep their records, noted at the first open that keeps them
    /// (read once, at open). A store written by an older
    /// Runner may have reminders published whose timers it deleted then: the executor
    /// lets a reminder due before this moment run without its record, as the older
    /// Runner would have, so an upgrade in the middle of a timer's flight loses nothing.
    /// A new store has no such reminders (0).
    pub(super) fn ensure_timer_records_since(&self) -> Result<i64, StoreError> {
        let key = keys::meta(TIMER_RECORDS_SINCE);
        let reader = self.reader()?;
        match reader.txn.get(self.db, &key) {
            Ok(raw) => {
                return Ok(std::str::from_utf8(raw)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0))
            }
            Err(lmdb::Error::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let mut older = false;
        let prefix = format!("{}:", space::SAGA);
        reader.for_each_raw_from(&prefix, &prefix, |_, _| {
            older = true;
            Ok(false)
        })?;
        drop(reader);
        let since = if older { now_ms() } else { 0 };
        self.write(|txn| {
            txn.put(self.db, &key, &since.to_string(), WriteFlags::empty())?;
            Ok(())
        })?;
        Ok(since)
    }
}
