//! The effect side's watch for commands nobody takes (`effects::unclaimed`): one scan
//! of the commands stream every half `effects.unclaimed_alert_secs` (at least every
//! 60 s, at most every 0.5 s). The latest report is kept in `Shared` (for `GET
//! /admin/effects/unclaimed`) and its count in `runner_effect_commands_unclaimed`; each
//! effect's oldest unclaimed command is logged (tenant, correlation, trace, command id)
//! when first seen, and again every [`REPEAT`] while it still waits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::effects::unclaimed;
use crate::pipeline::{Shared, Stats};
use crate::stages::StageError;

/// How often a command that still waits is logged again.
const REPEAT: Duration = Duration::from_secs(15 * 60);
/// Longest a sleep blocks, so shutdown is noticed promptly.
const POLL: Duration = Duration::from_millis(100);

pub fn run(shared: &Shared, nc: &nats::Connection) -> Result<(), StageError> {
    let alert = Duration::from_secs(shared.settings.effects.unclaimed_alert_secs);
    let every = (alert / 2).clamp(Duration::from_millis(500), Duration::from_secs(60));
    // (effect → oldest command's seq, when logged): one entry per reported effect.
    let mut logged: BTreeMap<String, (u64, Instant)> = BTreeMap::new();
    let mut next = Instant::now() + every;
    while !shared.intake.is_shutting_down() {
        if Instant::now() < next {
            std::thread::sleep(POLL.min(next.saturating_duration_since(Instant::now())));
            continue;
        }
        next = Instant::now() + every;
        let report = match unclaimed::scan(nc, &shared.settings) {
            Ok(report) => report,
            Err(e) => {
                log::warn!(error = e.to_string().as_str(); "cannot look for unclaimed effect commands");
                continue;
            }
        };
        logged.retain(|effect, _| report.effects.iter().any(|e| &e.effect == effect));
        for e in &report.effects {
            let due = match logged.get(&e.effect) {
                Some((seq, at)) => *seq != e.oldest.seq || at.elapsed() >= REPEAT,
                None => true,
            };
            if !due {
                continue;
            }
            logged.insert(e.effect.clone(), (e.oldest.seq, Instant::now()));
            let o = &e.oldest;
            log::warn!(tenant_id = o.tenant_id.as_str(), correlation_id = o.correlation_id.as_str(),
                trace_id = o.trace_id.as_str(), command_id = o.command_id.as_str(), effect = e.effect.as_str(),
                seq = o.seq, waited_secs = o.waited_secs, waiting = e.waiting,
                consumer = e.consumer.as_deref().unwrap_or("");
                "effect commands unclaimed: no running process has taken them (none defines the effect, or those that do fall behind)");
        }
        if report.skipped_effects > 0 {
            log::warn!(skipped = report.skipped_effects as u64, max = unclaimed::MAX_EFFECTS as u64;
                "more effects have commands than one unclaimed scan looks at");
        }
        Stats::set(&shared.stats.effect_commands_unclaimed, report.waiting());
        *shared.unclaimed.lock() = report;
    }
    Ok(())
}
