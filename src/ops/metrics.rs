//! `/metrics` in the Prometheus text format: every pipeline counter as
//! `runner_<name>_total`, every gauge as `runner_<name>`, and the latency histograms in
//! seconds; and the store's figures (its map, what retention expired, the records that
//! wait for an operator), read at scrape time by cheap reads (the quarantine and
//! dead-letter counts come from a bounded walk kept for a while, [`HeldCache`]). Names
//! and meanings are listed in the README.

use std::fmt::Write as _;
use std::time::Duration;

use super::labelled_metrics::escape_label;
use super::process_metrics::ProcessFigures;
use super::storage::HeldCache;
use super::{ConsumerLag, NatsProbe};
use crate::pipeline::{Histogram, Shared};
use crate::timefmt::now_ms;

/// `le` bounds of every histogram, in seconds.
const BOUNDS_MS: [u64; 14] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 60_000,
];

pub fn render(shared: &Shared, draining: bool, probe: &NatsProbe, held: &HeldCache) -> String {
    let consumers = probe.consumers();
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
        for c in &consumers {
            let consumer = escape_label(&c.durable);
            let _ = writeln!(out, "{name}{{consumer=\"{consumer}\"}} {}", value(c));
        }
    }
    let list: [(&'static str, &str, &Histogram); 7] = [
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
    ];
    for (name, help, h) in list {
        histogram(&mut out, name, help, h);
    }
    store(&mut out, shared, held);
    operator(&mut out, shared, probe);
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

/// What an operator reaches for first: which build runs in which mode, whether intake
/// is stopped and why, whether NATS answers, the counts by saga and effect, the effect
/// breakers and the process's own CPU, memory and file descriptors.
fn operator(out: &mut String, shared: &Shared, probe: &NatsProbe) {
    let name = "runner_build_info";
    let _ = writeln!(
        out,
        "# HELP {name} Always 1: the version, git commit and mode of this process."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    let mode = serde_json::to_value(shared.settings.mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{name}{{version=\"{}\",git_sha=\"{}\",mode=\"{}\"}} 1",
        escape_label(env!("CARGO_PKG_VERSION")),
        escape_label(option_env!("RUNNER_GIT_SHA").unwrap_or("unknown")),
        escape_label(&mode)
    );
    let name = "runner_intake_stopped";
    let _ = writeln!(
        out,
        "# HELP {name} 1 while intake is stopped, on the series of the reason (store_full, stale_commit, storage_error); 0 on the others. A drain is runner_draining."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    let stopped = shared.intake.stop_reason().map(|r| intake_stop_reason(&r));
    for reason in INTAKE_STOP_REASONS {
        let value = u8::from(stopped == Some(reason));
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {value}");
    }
    gauge(
        out,
        "runner_nats_connected",
        "1 while NATS answered a flush (PING) within the last 3 s, as /ready requires; 0 while it does not.",
        u8::from(probe.is_connected(super::probe::NATS_FRESH)),
    );
    gauge(
        out,
        "runner_nats_ping_unanswered_seconds",
        "How long the probe's PING now waiting has waited for its PONG (0: none waits).",
        probe.unanswered_for().as_secs_f64(),
    );
    let catalogs = &shared.catalogs;
    let (sagas, effects) = (catalogs.sagas(), catalogs.effects());
    let saga_names: Vec<&str> = sagas.sagas.iter().map(|s| s.name.as_str()).collect();
    let effect_names: Vec<&str> = effects.effects.keys().map(String::as_str).collect();
    let snapshot = shared.labelled.snapshot(&saga_names, &effect_names);
    super::labelled_metrics::render(out, &snapshot);
    super::labelled_metrics::render_breakers(out, &effects);
    ProcessFigures::read(std::path::Path::new("/proc")).render(out);
}

/// The values of `runner_intake_stopped`'s `reason` label.
pub const INTAKE_STOP_REASONS: [&str; 3] = ["store_full", "stale_commit", "storage_error"];

/// The bounded reason of an intake stop, from the text the stage stopped it with (the
/// store error's message: `intake_stop_reasons_follow_the_store_errors` keeps the two
/// in step).
fn intake_stop_reason(reason: &str) -> &'static str {
    use crate::store::StoreError;
    if reason == StoreError::MapFull.to_string() {
        "store_full"
    } else if reason.ends_with(STALE_TAIL) {
        "stale_commit"
    } else {
        "storage_error"
    }
}

/// How the message of `StoreError::Stale` ends.
const STALE_TAIL: &str = "this commit was refused whole, and its messages will run again";

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

fn histogram(out: &mut String, name: &'static str, help: &str, h: &Histogram) {
    let family = HistogramFamily::start(out, name, help);
    histogram_series(out, &family, "", h);
}

/// A histogram family whose `# HELP` and `# TYPE` lines are written: its series follow.
pub struct HistogramFamily {
    name: &'static str,
    bounds: Vec<Duration>,
}

impl HistogramFamily {
    pub fn start(out: &mut String, name: &'static str, help: &str) -> HistogramFamily {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        HistogramFamily {
            name,
            bounds: BOUNDS_MS
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
        }
    }
}

/// One series of `family`; `labels`: its labels rendered (`a="x",b="y"`), or "".
pub fn histogram_series(out: &mut String, family: &HistogramFamily, labels: &str, h: &Histogram) {
    let name = family.name;
    // The labels go before `le` in a bucket, alone in braces on the sum and count.
    let (before_le, braced) = if labels.is_empty() {
        (String::new(), String::new())
    } else {
        (format!("{labels},"), format!("{{{labels}}}"))
    };
    for (bound, count) in family.bounds.iter().zip(h.cumulative(&family.bounds)) {
        let _ = writeln!(
            out,
            "{name}_bucket{{{before_le}le=\"{}\"}} {count}",
            bound.as_secs_f64()
        );
    }
    let count = h.count();
    let _ = writeln!(out, "{name}_bucket{{{before_le}le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{braced} {}", h.sum().as_secs_f64());
    let _ = writeln!(out, "{name}_count{braced} {count}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::StatsSnapshot;

    #[test]
    fn intake_stop_reasons_follow_the_store_errors() {
        use crate::store::StoreError;
        assert_eq!(
            intake_stop_reason(&StoreError::MapFull.to_string()),
            "store_full"
        );
        let stale = StoreError::Stale {
            key: "saga:acme:order:o-1".into(),
            stored: 4,
            based_on: 3,
        };
        assert_eq!(intake_stop_reason(&stale.to_string()), "stale_commit");
        assert_eq!(
            intake_stop_reason(&StoreError::Injected.to_string()),
            "storage_error"
        );
        assert_eq!(intake_stop_reason("disk"), "storage_error");
        for reason in ["store_full", "stale_commit", "storage_error"] {
            assert!(INTAKE_STOP_REASONS.contains(&reason));
        }
    }

    #[test]
    fn a_labelled_histogram_puts_le_last() {
        let h = Histogram::default();
        h.record(Duration::from_millis(3));
        let mut out = String::new();
        let family = HistogramFamily::start(&mut out, "runner_x_seconds", "x");
        histogram_series(&mut out, &family, "effect=\"a\"", &h);
        histogram_series(&mut out, &family, "", &h);
        assert!(
            out.contains("runner_x_seconds_bucket{effect=\"a\",le=\"0.005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("runner_x_seconds_bucket{le=\"0.002\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("runner_x_seconds_count{effect=\"a\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("runner_x_seconds_sum 0.003\n"), "{out}");
    }

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
            "runner_build_info",
            "runner_intake_stopped",
            "runner_nats_connected",
            "runner_nats_ping_unanswered_seconds",
            "runner_saga_transitions_total",
            "runner_saga_faults_total",
            "runner_saga_quarantined_total",
            "runner_saga_dead_letters_total",
            "runner_effect_outcomes_total",
            "runner_effect_duration_seconds",
            "runner_effect_breaker_state",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "process_threads",
        ] {
            // Labelled metrics are listed with their labels: `name{label}`.
            assert!(
                readme.contains(&format!("`{name}`")) || readme.contains(&format!("`{name}{{")),
                "{name} is not in the README"
            );
        }
    }
}
