//! Resuming intake after a storage failure: whichever stage owns the store's writes
//! (the commit stage; in effect mode, the effect fetch) probes it while intake is stopped.

use crate::pipeline::Shared;
use crate::store::StoreError;

/// Room a full store must have again before intake resumes: a sixteenth of the map, at
/// most this much (a small probe write fitting is not room for the next group).
const FULL_STORE_HEADROOM: u64 = 64 << 20;

/// While intake is stopped: probe the store, and resume once it is writable (with room,
/// after a full store) and the dropped messages are due for redelivery.
pub fn try_resume(shared: &Shared) {
    if !shared.intake.may_resume() {
        return;
    }
    // Room comes back when relayed outbox items are deleted, or with a restart on a
    // larger `storage.map_size_mib`.
    if shared.intake.stop_reason() == Some(StoreError::MapFull.to_string()) {
        match shared.store.free_space() {
            Ok((free, map)) if free >= (map / 16).min(FULL_STORE_HEADROOM) => {}
            Ok((free, _)) => {
                log::warn!(free_bytes = free; "store still full; intake stays stopped");
                return;
            }
            Err(e) => {
                log::warn!(error = e.to_string(); "cannot read the store's free space; intake stays stopped");
                return;
            }
        }
    }
    match shared.store.probe_write() {
        Ok(()) => {
            log::info!(reason = shared.intake.stop_reason().unwrap_or_default(); "store writable again; intake resumes");
            shared.intake.resume();
        }
        Err(e) => {
            log::warn!(error = e.to_string(); "store still not writable; intake stays stopped")
        }
    }
}
