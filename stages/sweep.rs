//! Sweep: deletes what expired (`store/expiry.rs`) when nothing else does. The relay's
//! outbox deletes carry the sweep (a store-writer group of deletes alone: transactions
//! the process commits anyway, off the workflow's path), so under load a saga-side process's thread never writes; once none
//! swept for [`QUIET`] and something is due (low load, or an effect-mode process, which
//! has no relay), it sweeps a batch in a transaction of its own, and keeps going while a
//! backlog lasts.

use std::time::Duration;

use crate::pipeline::Shared;
use crate::stages::StageError;
use crate::store::now_ms;

/// How long no other transaction swept before this thread does.
const QUIET: Duration = Duration::from_secs(1);
/// How often it looks.
const TICK: Duration = Duration::from_millis(250);
/// Pause after a failed sweep (a full or failing store), so it is not hammered.
const PAUSE: Duration = Duration::from_secs(5);

pub fn run(shared: &Shared) -> Result<(), StageError> {
    // When this thread swept last: while the last sweep is its own, it is the one
    // sweeping (a backlog, nothing else writing), so it goes on without waiting.
    let mut mine = -1;
    while !shared.intake.is_shutting_down() {
        let now = now_ms();
        let last = shared.store.last_sweep_ms();
        let quiet = last == mine || now.saturating_sub(last) >= QUIET.as_millis() as i64;
        if !(quiet && shared.store.sweep_due(now)) {
            std::thread::sleep(TICK);
            continue;
        }
        match shared.store.sweep(now) {
            Ok(swept) if swept.entries > 0 => {
                mine = shared.store.last_sweep_ms();
                log::debug!(instances = swept.instances, markers = swept.markers,
                    effect_records = swept.effect_records, timers = swept.timers; "swept expired records");
            }
            Ok(_) => std::thread::sleep(TICK),
            Err(e) => {
                log::warn!(error = e.to_string(); "cannot sweep expired records; trying again later");
                std::thread::sleep(PAUSE);
            }
        }
    }
    Ok(())
}
