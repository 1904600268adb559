//! `/metrics` in the Prometheus text format: every pipeline counter as
//! `runner_<name>_total`, every gauge as `runner_<name>`, and the latency histograms in
//! seconds; and the store's figures (its map, what retention expired, the records that
//! wait for an operator), read at scrape time by cheap reads (the quarantine and
//! dead-letter counts come from a bounded walk kept for a while, [`HeldCache`]). Names
//! and meanings are listed in the README.

use std::fmt::Write as _;
use std::time::Duration;

use super::storage::HeldCache;
use super::ConsumerLag;
use crate::pipeline::{Histogram, Shared};
use crate::timefmt::now_ms;

/// `le` bounds of every histogram, in seconds.
const BOUNDS_MS: [u64; 14] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 60_000,
];

pub fn render(
    shared: &Shared,
    draining: bool,
    consumers: &[ConsumerLag],
    held: &HeldCache,
) -> String {
    let mut out = String::with_capacity(8 * 1024);
    for (name, doc, value) in shared.stats.snapshot().named() {
        let (metric, kind, help) = match doc.strip_prefix("Gauge: ") {
            Some(help) => (format!("runner_{name}"), "gauge", help),
            None => (format!("runner_{name}_total"), "counter", doc),
        };
        let _ = writeln!(out, "# HELP {metric} {help}");
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        let _ = writeln!(out, "{metric} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP runner_draining 1 while the process drains (not ready)."
    );
    let _ = writeln!(out, "# TYPE runner_draining gauge");
    let _ = writeln!(out, "runner_draining {}", u8::from(draining));
    for (name, help, value) in [
        (
            "runner_consumer_pending",
            "Messages in the stream not yet delivered to the consumer (its lag).",
            (|c: &ConsumerLag| c.pending) as fn(&ConsumerLag) -> u64,
        ),
        (
            "runner_consumer_ack_pending",
            "Messages delivered to the consumer and not yet acked.",
            |c| c.ack_pending,
        ),
        (
            "runner_consumer_redelivered",
            "Messages delivered more than once and not yet acked.",
            |c| c.redelivered,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for c in consumers {
            let _ = writeln!(out, "{name}{{consumer=\"{}\"}} {}", c.durable, value(c));
        }
    }
    for (name, help, h) in [
        (
            "runner_relay_latency_seconds",
            "Commit to destination confirmation of relayed outbox items.",
            &shared.relay_latency,
        ),
        (
            "runner_timer_lag_seconds",
            "Reminder publish ack minus the timer's due time.",
            &shared.timer_lag,
        ),
        (
            "runner_timer_scan_seconds",
            "One scheduler scan for due timers.",
            &shared.timer_scan,
        ),
        (
            "runner_decode_batch_seconds",
            "Decoding and routing one fetched batch.",
            &shared.stage_latency.decode,
        ),
        (
            "runner_execute_batch_seconds",
            "Executing one decoded batch: store reads and programs.",
            &shared.stage_latency.execute,
        ),
        (
            "runner_commit_group_seconds",
            "One group commit of the saga side, acks included.",
            &shared.stage_latency.commit,
        ),
        (
            "runner_effect_seconds",
            "One effect command, every attempt and backoff wait included.",
            &shared.stage_latency.effect,
        ),
    ] {
        histogram(&mut out, name, help, h);
    }
    store(&mut out, shared, held);
    out
}

/// What the ops port's server refused: connections past its cap, heads that did not
/// arrive in time (slow or stuck clients, or a flood).
pub fn render_server(out: &mut String, counts: &super::http::ServerCounts) {
    use std::sync::atomic::Ordering::Relaxed;
    for (name, help, value) in [
        (
            "runner_ops_connections_refused_total",
            "Connections to the ops port answered 503 because too many were open.",
            counts.busy.load(Relaxed),
        ),
        (
            "runner_ops_head_timeouts_total",
            "Connections to the ops port closed because the request head did not arrive in time.",
            counts.head_timeouts.load(Relaxed),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {value}");
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

/// The store's figures. A read that fails leaves its lines out (`/health` says why).
fn store(out: &mut String, shared: &Shared, held: &HeldCache) {
    let store = &shared.store;
    if let Ok(space) = store.space() {
        for (name, help, value) in [
            (
                "runner_store_used_bytes",
                "Bytes of the store's pages in use (the file's pages minus those freed for reuse): what retention keeps flat.",
                space.used_bytes,
            ),
            (
                "runner_store_map_bytes",
                "The store's memory map now (it grows when full, up to runner_store_max_bytes).",
                space.map_bytes,
            ),
            (
                "runner_store_max_bytes",
                "The most the store's map may grow to (storage.max_size_mib); intake stops when that is full.",
                space.max_bytes,
            ),
            (
                "runner_store_file_bytes",
                "Size of the store's data file (it never shrinks; freed pages are reused).",
                space.file_bytes,
            ),
        ] {
            gauge(out, name, help, value);
        }
    }
    let expired = store.expired();
    let name = "runner_retention_expired_total";
    let _ = writeln!(
        out,
        "# HELP {name} Records the retention sweep deleted since the store was opened, by kind (finished instances, saga dedupe markers, effect completion records, timers whose published reminder no instance applied)."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for (kind, n) in [
        ("instance", expired.instances),
        ("marker", expired.markers),
        ("effect_record", expired.effect_records),
        ("timer", expired.timers),
    ] {
        let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {n}");
    }
    let now = now_ms();
    if let Ok(age) = store.oldest_expired_age(now) {
        gauge(
            out,
            "runner_retention_oldest_expired_age_seconds",
            "How long the oldest expired record not yet swept has waited for the sweep (0: none waits).",
            age.as_secs_f64(),
        );
    }
    let Ok(held) = held.get(store) else {
        return;
    };
    let never = "Never expired by retention: they stay until an operator retries or discards them.";
    let counted = format!(
        "counted every {} s, up to {} of each",
        super::storage::HELD_FRESH.as_secs(),
        crate::store::MAX_SCAN
    );
    for (name, help, value) in [
        (
            "runner_quarantine_records",
            format!("Quarantine records in the store, every tenant's ({counted}). {never}"),
            held.quarantine.records as f64,
        ),
        (
            "runner_quarantine_oldest_age_seconds",
            format!("Age of the oldest quarantine record (0: none; records written before quarantine records carried a date are counted, not aged). {never}"),
            held.quarantine.oldest_age_secs(now),
        ),
        (
            "runner_dead_letters",
            format!("Dead letters in the store, every tenant's ({counted}). {never}"),
            held.dead_letters.records as f64,
        ),
        (
            "runner_dead_letters_oldest_age_seconds",
            format!("Age of the oldest dead letter (0: none). {never}"),
            held.dead_letters.oldest_age_secs(now),
        ),
    ] {
        gauge(out, name, &help, value);
    }
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let bounds: Vec<Duration> = BOUNDS_MS
        .iter()
        .map(|ms| Duration::from_millis(*ms))
        .collect();
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (bound, count) in bounds.iter().zip(h.cumulative(&bounds)) {
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {count}",
            bound.as_secs_f64()
        );
    }
    let count = h.count();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", h.sum().as_secs_f64());
    let _ = writeln!(out, "{name}_count {count}");
}

#[cfg(test)]
mod tests {
    use crate::pipeline::StatsSnapshot;

    /// The README documents every metric the page exports.
    #[test]
    fn the_readme_lists_every_metric() {
        let readme = include_str!("../../README.md");
        for (name, doc, _) in StatsSnapshot::default().named() {
            let metric = if doc.starts_with("Gauge: ") {
                format!("`runner_{name}`")
            } else {
                format!("`runner_{name}_total`")
            };
            assert!(readme.contains(&metric), "{metric} is not in the README");
        }
        for name in [
            "runner_draining",
            "runner_ops_connections_refused_total",
            "runner_ops_head_timeouts_total",
            "runner_relay_latency_seconds",
            "runner_timer_lag_seconds",
            "runner_timer_scan_seconds",
            "runner_consumer_pending",
            "runner_consumer_ack_pending",
            "runner_consumer_redelivered",
            "runner_decode_batch_seconds",
            "runner_execute_batch_seconds",
            "runner_commit_group_seconds",
            "runner_effect_seconds",
            "runner_store_used_bytes",
            "runner_store_map_bytes",
            "runner_store_max_bytes",
            "runner_store_file_bytes",
            "runner_retention_expired_total",
            "runner_retention_oldest_expired_age_seconds",
            "runner_quarantine_records",
            "runner_quarantine_oldest_age_seconds",
            "runner_dead_letters",
            "runner_dead_letters_oldest_age_seconds",
        ] {
            // Labelled metrics are listed with their labels: `name{label}`.
            assert!(
                readme.contains(&format!("`{name}`")) || readme.contains(&format!("`{name}{{")),
                "{name} is not in the README"
            );
        }
    }
}
