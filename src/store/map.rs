//! The memory map: opening transactions, growing the map when it is full, and what the
//! store takes of it.
//!
//! LMDB allows the map to grow (`mdb_env_set_mapsize`) only while this process has no
//! transaction open. Every transaction therefore holds a shared guard of the store's
//! gate for its life, and growing takes the gate exclusively: it waits until the
//! transactions in flight ended (they are short: a batch's reads, one commit) and lets
//! new ones wait the moment it takes. Another process sharing the store (effect workers)
//! that grew it makes our next transaction fail with `MAP_RESIZED`; adopting its size
//! is the same exclusive step.

use std::time::Duration;

use lmdb::Transaction;
use parking_lot::{RwLock, RwLockReadGuard};

use super::{Store, StoreError};

/// Each growth at least doubles the map, and adds at least this much.
const MIN_GROWTH: usize = 64 << 20;

/// How long growing waits for the transactions in flight before it gives up (the
/// caller then reports the store full, as without growth; the next commit tries again).
const GROW_WAIT: Duration = Duration::from_secs(10);

/// The map's gate: held shared by every transaction, exclusively while the map grows.
#[derive(Debug, Default)]
pub(super) struct Gate(RwLock<()>);

impl Gate {
    /// Shared, and never waiting behind a pending grow while this thread already holds
    /// the gate (a reader open during a write would otherwise deadlock).
    pub(super) fn enter(&self) -> RwLockReadGuard<'_, ()> {
        self.0.read_recursive()
    }
}

/// A write transaction with the gate held for its life.
pub(super) struct Write<'env> {
    pub txn: lmdb::RwTransaction<'env>,
    _gate: RwLockReadGuard<'env, ()>,
}

impl<'env> Write<'env> {
    pub fn commit(self) -> Result<(), StoreError> {
        self.txn.commit().map_err(StoreError::from)
    }
}

impl Store {
    /// A read-only transaction under the gate.
    pub(super) fn begin_ro(
        &self,
    ) -> Result<(lmdb::RoTransaction<'_>, RwLockReadGuard<'_, ()>), StoreError> {
        loop {
            let gate = self.gate.enter();
            match self.env.begin_ro_txn() {
                Ok(txn) => return Ok((txn, gate)),
                Err(lmdb::Error::MapResized) => {
                    drop(gate);
                    self.adopt_resized()?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A write transaction under the gate.
    pub(super) fn begin_rw(&self) -> Result<Write<'_>, StoreError> {
        loop {
            let gate = self.gate.enter();
            match self.env.begin_rw_txn() {
                Ok(txn) => return Ok(Write { txn, _gate: gate }),
                Err(lmdb::Error::MapResized) => {
                    drop(gate);
                    self.adopt_resized()?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Runs `body` in a write transaction and commits it. A full map is grown (up to
    /// the configured most) and `body` run again in a fresh transaction, so `body`
    /// must only depend on its inputs and the store. Returns what `body` returned.
    pub(super) fn write<R>(
        &self,
        mut body: impl FnMut(&mut lmdb::RwTransaction<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        loop {
            let attempt = self.begin_rw().and_then(|mut w| {
                let out = body(&mut w.txn)?;
                w.commit()?;
                Ok(out)
            });
            match attempt {
                Err(StoreError::MapFull) => self.grow()?,
                other => return other,
            }
        }
    }

    /// Grows the map after a commit found it full: at least doubled (by
    /// [`MIN_GROWTH`] at least), at most to the configured most. `MapFull` when it is
    /// that large already (or the transactions in flight did not end in time).
    pub(super) fn grow(&self) -> Result<(), StoreError> {
        let Some(_all) = self.gate.0.try_write_for(GROW_WAIT) else {
            log::warn!("the store is full and could not grow: transactions stayed open");
            return Err(StoreError::MapFull);
        };
        let current = self.env.info()?.map_size();
        if current >= self.max_map_bytes {
            return Err(StoreError::MapFull);
        }
        let target = current
            .saturating_mul(2)
            .max(current.saturating_add(MIN_GROWTH))
            .min(self.max_map_bytes);
        self.env.set_map_size(target)?;
        let now = self.env.info()?.map_size();
        log::warn!(from_bytes = current as u64, to_bytes = now as u64, max_bytes = self.max_map_bytes as u64; "the store's map was full and grew");
        Ok(())
    }

    /// Another process grew the map: take its size.
    fn adopt_resized(&self) -> Result<(), StoreError> {
        let _all = self.gate.0.write();
        self.env.set_map_size(0)?;
        Ok(())
    }

    /// What the store takes of its map and disk.
    pub fn space(&self) -> Result<Space, StoreError> {
        let _gate = self.gate.enter();
        let info = self.env.info()?;
        let page = self.env.stat()?.page_size().max(1) as u64;
        let freelist = self.env.freelist()? as u64;
        let last_page = info.last_pgno() as u64 + 1;
        Ok(Space {
            used_bytes: last_page.saturating_sub(freelist) * page,
            file_bytes: last_page * page,
            map_bytes: info.map_size() as u64,
            max_bytes: (self.max_map_bytes as u64).max(info.map_size() as u64),
            page_bytes: page,
        })
    }

    /// Bytes new writes can still use before the store is full for good (pages never
    /// used, pages freed by deletes, and what growing up to the most adds), and that
    /// most.
    pub fn free_space(&self) -> Result<(u64, u64), StoreError> {
        let s = self.space()?;
        Ok((s.max_bytes.saturating_sub(s.used_bytes), s.max_bytes))
    }

    /// The map's size now.
    #[cfg(test)]
    pub(super) fn map_bytes(&self) -> usize {
        self.env.info().map(|i| i.map_size()).unwrap_or(0)
    }
}

/// The store's use of its map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Space {
    /// Pages holding data (the file's pages minus those freed for reuse).
    pub used_bytes: u64,
    /// The data file's pages (it never shrinks; freed pages are reused).
    pub file_bytes: u64,
    /// The map now.
    pub map_bytes: u64,
    /// The most the map may grow to.
    pub max_bytes: u64,
    pub page_bytes: u64,
}

impl Space {
    /// Share of the most that is used, in percent.
    pub fn used_percent(&self) -> f64 {
        if self.max_bytes == 0 {
            return 100.0;
        }
        self.used_bytes as f64 * 100.0 / self.max_bytes as f64
    }
}
