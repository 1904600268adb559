//! Scheduler: fires durable timers. It reads what is due now from the store's due-time
//! index (in due order, at most `scheduler.batch` at a time), publishes each as a
//! reminder event to `WORKFLOW_EVENTS` with `Nats-Msg-Id` = the reminder's id, and once
//! its publish was acked takes the timer out of the due index (`Store::timers_published`).
//! The timer's record stays until the saga transition that applies the reminder: what
//! this stage read is a snapshot, and a cancel, a re-schedule of the name or the
//! instance finishing may commit before the reminder is applied, so the executor runs a
//! reminder only while its instance still holds that exact timer (name and due time) and
//! ignores it as stale otherwise. Sagas take reminders through their ordinary triggers,
//! so after a crash between publish and the index delete the reminder is simply
//! published again: JetStream and the saga's dedupe both see the same event id.
//!
//! A reminder over the server's `max_payload` is never published: its timer leaves the
//! due index (counted in `timers_too_large` and logged with its reason) instead of being
//! tried again every pass. The executor refuses such timers before commit, so only one
//! written under a larger limit can meet this.
//!
//! Due times come from event time (programs compute them); the scheduler compares them
//! with the wall clock. A clock that jumps back only delays timers; after downtime the
//! overdue ones fire at once, oldest first, one batch at a time.

use std::time::{Duration, Instant};

use crate::nats_io::{context_headers, Publisher};
use crate::pipeline::{Shared, Stats};
use crate::stages::StageError;
use crate::store::ScheduleItem;
use crate::timefmt::now_ms;
use crate::timers::{reminder_body, reminder_subject, traceparent};

/// Pause after a failed store read or publish, so an outage is not hammered.
const PAUSE: Duration = Duration::from_secs(1);
/// Longest single sleep, so shutdown is noticed promptly.
const TICK: Duration = Duration::from_millis(100);

pub fn run(shared: &Shared, nc: &nats::Connection) -> Result<(), StageError> {
    let cfg = shared.settings.scheduler.clone();
    let timeout = Duration::from_millis(shared.settings.relay.publish_timeout_ms);
    let mut publisher = match Publisher::new(nc, cfg.batch, timeout, 3) {
        Ok(p) => p.with_max_payload(shared.max_payload),
        Err(e) => {
            log::error!(error = e.to_string(); "scheduler cannot subscribe to its ack inbox; scheduler stage ends");
            return Err(StageError::AckInbox(e));
        }
    };
    let prefix = shared.settings.streams.timer_prefix.clone();
    log::info!("scheduler stage started");
    while !shared.intake.is_shutting_down() {
        let now = now_ms();
        let scan = Instant::now();
        let due = match shared.store.due_timers(now, cfg.batch) {
            Ok(due) => due,
            Err(e) => {
                log::error!(error = e.to_string(); "scheduler cannot read due timers; retrying");
                sleep(shared, PAUSE);
                continue;
            }
        };
        shared.timer_scan.record(scan.elapsed());
        Stats::set(&shared.stats.timers_due, due.len() as u64);
        if due.is_empty() {
            let next = shared.store.next_due_ms().ok().flatten();
            let wait = next.map_or(u64::MAX, |d| d.saturating_sub(now).max(1) as u64);
            sleep(shared, Duration::from_millis(wait.min(cfg.idle_poll_ms)));
            continue;
        }
        crate::crash::point(crate::crash::BEFORE_REMINDER);
        for (tag, (_, item)) in due.iter().enumerate() {
            let Ok((event_id, body)) = reminder_body(item) else {
                // A reminder is built from a stored timer (JSON values): cannot happen.
                log::error!(tenant_id = item.tenant.as_str(), correlation_id = item.correlation.as_str(),
                    trace_id = trace_id(item), timer = item.name.as_str(); "cannot encode a reminder; the timer stays");
                continue;
            };
            let headers = context_headers(
                item.tenant.as_str(),
                Some(item.correlation.as_str()),
                traceparent(item),
            );
            let subject = reminder_subject(&prefix, item);
            publisher.publish(tag as u64, &subject, &event_id, headers, body);
        }
        let mut fired = Vec::with_capacity(due.len());
        let mut failed = 0;
        // Timers whose reminder can never be published.
        let mut dropped = Vec::new();
        for c in publisher.finish() {
            let Some((key, item)) = due.get(c.tag as usize) else {
                continue;
            };
            match c.result {
                Ok(_) => {
                    let lag = now_ms().saturating_sub(item.due_at_ms).max(0) as u64;
                    shared.timer_lag.record(Duration::from_millis(lag));
                    fired.push(key.clone());
                }
                // The server would never take it (the executor refuses such timers
                // before commit; this one was written under a larger limit): it leaves
                // the due index like a fired one, so it is never tried again.
                Err(e) if e.is_too_large() => {
                    Stats::add(&shared.stats.timers_too_large, 1);
                    log::error!(tenant_id = item.tenant.as_str(), correlation_id = item.correlation.as_str(),
                        trace_id = trace_id(item), timer = item.name.as_str(), error = e.to_string();
                        "reminder too large to publish; the timer is dropped from the due index and never fires");
                    dropped.push(key.clone());
                }
                Err(e) => {
                    failed += 1;
                    log::warn!(tenant_id = item.tenant.as_str(), correlation_id = item.correlation.as_str(),
                        trace_id = trace_id(item), timer = item.name.as_str(), error = e.to_string();
                        "reminder publish failed; the timer stays and fires again");
                }
            }
        }
        crate::crash::point(crate::crash::AFTER_REMINDER);
        if !dropped.is_empty() {
            if let Err(e) = shared.store.timers_published(&dropped) {
                log::error!(timers = dropped.len() as u64, error = e.to_string();
                    "cannot take too-large timers out of the due index; they are dropped again next pass");
            }
        }
        match shared.store.timers_published(&fired) {
            // Counted by publish: a reminder applied before this (a quick saga side)
            // took its index entry with it.
            Ok(_) => Stats::add(&shared.stats.timers_fired, fired.len() as u64),
            // Published but still in the due index: fired again later, deduplicated by
            // its id.
            Err(e) => {
                for (_, item) in due.iter().filter(|(k, _)| fired.contains(k)) {
                    log::error!(tenant_id = item.tenant.as_str(), correlation_id = item.correlation.as_str(),
                        trace_id = trace_id(item), timer = item.name.as_str(), error = e.to_string();
                        "cannot take a published timer out of the due index; its reminder is published again (deduplicated)");
                }
            }
        }
        if failed > 0 {
            sleep(shared, PAUSE);
        }
    }
    log::info!("scheduler stage stopped");
    Ok(())
}

/// The trace id of the event that set the timer ("" when it carried none).
fn trace_id(item: &ScheduleItem) -> &str {
    traceparent(item)
        .and_then(crate::envelope::trace_id)
        .unwrap_or_default()
}

/// Sleeps up to `d`, waking early on shutdown.
fn sleep(shared: &Shared, d: Duration) {
    let until = Instant::now() + d;
    while !shared.intake.is_shutting_down() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(TICK));
    }
}
