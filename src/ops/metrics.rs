//! `/metrics` in the Prometheus text format: every pipeline counter as
//! `runner_<name>_total`, every gauge as `runner_<name>`, and the latency histograms in
//! seconds. Names and meanings are listed in the README.

use std::fmt::Write as _;
use std::time::Duration;

use super::ConsumerLag;
use crate::pipeline::{Histogram, Shared};

/// `le` bounds of every histogram, in seconds.
const BOUNDS_MS: [u64; 14] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 60_000,
];

pub fn render(shared: &Shared, draining: bool, consumers: &[ConsumerLag]) -> String {
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
    out
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
        ] {
            // Labelled metrics are listed with their labels: `name{label}`.
            assert!(
                readme.contains(&format!("`{name}`")) || readme.contains(&format!("`{name}{{")),
                "{name} is not in the README"
            );
        }
    }
}
