//! The labelled families of `/metrics`: counts by saga and by effect (and tenant, when
//! `ops.metrics_tenant_label` is on; `pipeline::labelled` keeps them bounded), and
//! each effect's circuit breaker. Label values are escaped as the text format asks.

use std::fmt::Write as _;
use std::time::Instant;

use super::metrics::{histogram_series, HistogramFamily};
use crate::effects::breaker::BreakerState;
use crate::effects::EffectCatalog;
use crate::pipeline::labelled::{outcome_label, LabelledSnapshot, SagaCount, OUTCOMES};

/// A label value in the Prometheus text format: `\`, `"` and line feeds escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `name="value",…` of the pairs (values escaped), and `tenant` when it is not `""`.
fn labels(pairs: &[(&str, &str)], tenant: &str) -> String {
    let mut out = String::new();
    for (name, value) in pairs
        .iter()
        .copied()
        .chain((!tenant.is_empty()).then_some(("tenant", tenant)))
    {
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"{}\"", escape_label(value));
    }
    out
}

/// The saga families, then the effect families.
pub fn render(out: &mut String, snap: &LabelledSnapshot) {
    for (what, name, help) in [
        (
            SagaCount::Transitions,
            "runner_saga_transitions_total",
            "Transitions committed, by saga (runner_transitions_total sliced).",
        ),
        (
            SagaCount::Faults,
            "runner_saga_faults_total",
            "Program faults, by the saga the quarantine record names (the first that faulted).",
        ),
        (
            SagaCount::Quarantined,
            "runner_saga_quarantined_total",
            "Messages quarantined, by the saga the record names ((none): undecodable, tenant-inconsistent, effect commands).",
        ),
        (
            SagaCount::DeadLetters,
            "runner_saga_dead_letters_total",
            "Outbox items filed as dead letters, by the saga that sent them.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (saga, per_tenant) in &snap.sagas {
            for (tenant, counts) in per_tenant {
                let l = labels(&[("saga", saga)], tenant);
                let _ = writeln!(out, "{name}{{{l}}} {}", counts[what as usize]);
            }
        }
    }
    let name = "runner_effect_outcomes_total";
    let _ = writeln!(
        out,
        "# HELP {name} Effect commands that ran to their end, by effect and outcome (the result event's result_type)."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for (effect, per_tenant) in &snap.effects {
        for (tenant, series) in per_tenant {
            for (outcome, n) in OUTCOMES.iter().zip(series.outcomes) {
                let l = labels(
                    &[("effect", effect), ("outcome", outcome_label(*outcome))],
                    tenant,
                );
                let _ = writeln!(out, "{name}{{{l}}} {n}");
            }
        }
    }
    let family = HistogramFamily::start(
        out,
        "runner_effect_duration_seconds",
        "One effect command by effect, every attempt and backoff wait included.",
    );
    for (effect, per_tenant) in &snap.effects {
        for (tenant, series) in per_tenant {
            let l = labels(&[("effect", effect)], tenant);
            histogram_series(out, &family, &l, &series.seconds);
        }
    }
}

/// Each effect's circuit breaker: 0 closed, 1 half-open (the next call is a probe;
/// also an open breaker whose time is up), 2 open (calls refused).
pub fn render_breakers(out: &mut String, effects: &EffectCatalog) {
    let name = "runner_effect_breaker_state";
    let _ = writeln!(
        out,
        "# HELP {name} Circuit breaker of the effect's upstream: 0 closed, 1 half-open (probing), 2 open (calls refused)."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    let now = Instant::now();
    for (effect, def) in &effects.effects {
        let l = labels(&[("effect", effect)], "");
        let _ = writeln!(
            out,
            "{name}{{{l}}} {}",
            breaker_value(def.breaker.state(), now)
        );
    }
}

fn breaker_value(state: BreakerState, now: Instant) -> u8 {
    match state {
        BreakerState::Closed { .. } => 0,
        BreakerState::HalfOpen { .. } => 1,
        BreakerState::Open { until } if now >= until => 1,
        BreakerState::Open { .. } => 2,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::envelope::ResultType;
    use crate::pipeline::Labelled;
    use crate::settings::OpsSettings;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(
            labels(&[("effect", "e\"1")], "acme"),
            r#"effect="e\"1",tenant="acme""#
        );
        assert_eq!(labels(&[("saga", "order")], ""), r#"saga="order""#);
    }

    #[test]
    fn families_print_their_series() {
        let ops = OpsSettings {
            metrics_tenant_label: true,
            ..OpsSettings::default()
        };
        let l = Labelled::new(&ops);
        l.effect_ended(
            "charge_card",
            "acme",
            ResultType::TimedOut,
            Duration::from_millis(30),
        );
        let mut out = String::new();
        render(&mut out, &l.snapshot(&["order"], &["charge_card"]));
        assert!(out.contains(
            "runner_effect_outcomes_total{effect=\"charge_card\",outcome=\"timed_out\",tenant=\"acme\"} 1\n"
        ), "{out}");
        assert!(out.contains(
            "runner_effect_duration_seconds_bucket{effect=\"charge_card\",tenant=\"acme\",le=\"0.05\"} 1\n"
        ), "{out}");
        assert!(
            out.contains(
                "runner_effect_duration_seconds_count{effect=\"charge_card\",tenant=\"acme\"} 1\n"
            ),
            "{out}"
        );
        assert_eq!(
            out.matches("# TYPE runner_effect_duration_seconds histogram")
                .count(),
            1
        );
    }

    #[test]
    fn breaker_states_map_to_values() {
        let now = Instant::now();
        assert_eq!(breaker_value(BreakerState::Closed { failures: 3 }, now), 0);
        let open = BreakerState::Open {
            until: now + Duration::from_secs(5),
        };
        assert_eq!(breaker_value(open, now), 2);
        assert_eq!(breaker_value(open, now + Duration::from_secs(6)), 1);
        let half = BreakerState::HalfOpen {
            admitted: 1,
            succeeded: 0,
        };
        assert_eq!(breaker_value(half, now), 1);
    }
}
