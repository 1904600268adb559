//! Counters sliced by the labels operators filter on: `saga` on transitions, faults,
//! quarantines and dead letters; `effect` on effect outcomes and durations; and `tenant`
//! on all of them only when `ops.metrics_tenant_label` is on.
//!
//! Saga and effect names come from the manifests, so they are bounded by construction.
//! Tenants are not: at most `ops.metrics_max_tenants` of them get series of their own,
//! the rest count under `(other)`. Every family also has a fixed cap on its series
//! ([`MAX_SERIES`]), so reloads that keep renaming sagas cannot grow it for ever. The
//! plain counters of [`super::Stats`] stay as they are; these add the slices.
//!
//! One lock guards the lot: the commit stage takes it once per group commit, an effect
//! worker once per command, and neither holds it for more than a few map look-ups.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::Histogram;
use crate::envelope::ResultType;
use crate::saga::Outcome;
use crate::settings::OpsSettings;
use crate::store::{CommitOutcome, OutboxItem, QuarantineRecord, Transition};

/// The label value of a count that names no saga (an undecodable message, an effect
/// command) or no tenant (a quarantine record whose tenant was in doubt). Parentheses
/// never occur in saga, effect or tenant names, so it cannot clash with one.
pub const NONE: &str = "(none)";
/// The label value that collects what a cap kept from a series of its own.
pub const OTHER: &str = "(other)";
/// The single tenant, as subjects and keys write it.
pub const SINGLE_TENANT: &str = "_";
/// Most series of one family (saga × tenant, effect × tenant).
pub const MAX_SERIES: usize = 4096;

/// The saga-labelled families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaCount {
    Transitions = 0,
    Faults = 1,
    Quarantined = 2,
    DeadLetters = 3,
}

/// How an effect command ended, in the order of [`EffectSeries::outcomes`].
pub const OUTCOMES: [ResultType; 4] = [
    ResultType::Succeeded,
    ResultType::Failed,
    ResultType::TimedOut,
    ResultType::Rejected,
];

/// The label value of an outcome (the result event's `result_type`).
pub fn outcome_label(r: ResultType) -> &'static str {
    match r {
        ResultType::Succeeded => "succeeded",
        ResultType::Failed => "failed",
        ResultType::TimedOut => "timed_out",
        ResultType::Rejected => "rejected",
    }
}

/// One effect's (and tenant's) counts.
#[derive(Debug, Clone, Default)]
pub struct EffectSeries {
    /// Per [`OUTCOMES`].
    pub outcomes: [u64; 4],
    /// One command, every attempt and backoff wait included.
    pub seconds: Arc<Histogram>,
}

/// What `/metrics` prints: per saga, then per tenant (`""` when the tenant label is
/// off), the counts of each [`SagaCount`]; per effect and tenant an [`EffectSeries`].
#[derive(Debug, Clone, Default)]
pub struct LabelledSnapshot {
    /// Whether series carry a `tenant` label.
    pub tenant_label: bool,
    pub sagas: BTreeMap<String, BTreeMap<String, [u64; 4]>>,
    pub effects: BTreeMap<String, BTreeMap<String, EffectSeries>>,
}

#[derive(Debug, Default)]
struct Inner {
    sagas: BTreeMap<String, BTreeMap<String, [u64; 4]>>,
    saga_series: usize,
    effects: BTreeMap<String, BTreeMap<String, EffectSeries>>,
    effect_series: usize,
    /// Tenants that have series of their own (at most `max_tenants`).
    tenants: BTreeSet<String>,
}

#[derive(Debug)]
pub struct Labelled {
    /// `Some(cap)`: series carry the tenant, for at most `cap` tenants.
    max_tenants: Option<usize>,
    inner: Mutex<Inner>,
}

impl Default for Labelled {
    fn default() -> Self {
        Labelled::new(&OpsSettings::default())
    }
}

impl Labelled {
    pub fn new(ops: &OpsSettings) -> Labelled {
        Labelled {
            max_tenants: ops.metrics_tenant_label.then_some(ops.metrics_max_tenants),
            inner: Mutex::default(),
        }
    }

    /// The committed transitions (`outcomes[i]` says what became of `transitions[i]`).
    pub fn transitions(&self, transitions: &[Transition], outcomes: &[CommitOutcome]) {
        let mut inner = self.inner.lock();
        for (t, _) in transitions
            .iter()
            .zip(outcomes)
            .filter(|(_, o)| **o == CommitOutcome::Applied)
        {
            self.add_saga(
                &mut inner,
                t.saga.as_str(),
                t.tenant.as_str(),
                SagaCount::Transitions,
            );
        }
    }

    /// A message's program faults, under the saga its quarantine record names (the first
    /// saga that faulted: an event that faults in two sagas counts both there).
    /// Transitions refused as too large are not faults (`runner_faults_total` agrees).
    pub fn faults(&self, o: &Outcome) {
        let n = o.faults.saturating_sub(o.too_large);
        if n == 0 {
            return;
        }
        let (saga, tenant) = saga_and_tenant(o.quarantine.as_ref());
        let mut inner = self.inner.lock();
        for _ in 0..n {
            self.add_saga(&mut inner, saga, tenant, SagaCount::Faults);
        }
    }

    /// A quarantined message (saga side or effect side), under the saga its record
    /// names, else [`NONE`].
    pub fn quarantined(&self, record: Option<&QuarantineRecord>) {
        let (saga, tenant) = saga_and_tenant(record);
        let mut inner = self.inner.lock();
        self.add_saga(&mut inner, saga, tenant, SagaCount::Quarantined);
    }

    /// An outbox item filed as a dead letter.
    pub fn dead_letter(&self, item: &OutboxItem) {
        let mut inner = self.inner.lock();
        self.add_saga(
            &mut inner,
            item.saga.as_str(),
            item.tenant.as_str(),
            SagaCount::DeadLetters,
        );
    }

    /// An effect command ran to its end (`took`: every attempt and wait).
    pub fn effect_ended(&self, effect: &str, tenant: &str, outcome: ResultType, took: Duration) {
        let mut inner = self.inner.lock();
        let tenant = self.tenant_key(&mut inner, tenant);
        let inner = &mut *inner;
        let series = capped_series(&mut inner.effects, &mut inner.effect_series, effect, tenant);
        let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(1);
        series.outcomes[i] += 1;
        series.seconds.record(took);
    }

    /// A copy for `/metrics`. With the tenant label off, `sagas` and `effects` (the
    /// names in force) get zero series until they count something, so a rate or an
    /// alert over them has a series from the start.
    pub fn snapshot(&self, sagas: &[&str], effects: &[&str]) -> LabelledSnapshot {
        let inner = self.inner.lock();
        let mut snap = LabelledSnapshot {
            tenant_label: self.max_tenants.is_some(),
            sagas: inner.sagas.clone(),
            effects: inner.effects.clone(),
        };
        drop(inner);
        if !snap.tenant_label {
            zero_series(&mut snap.sagas, sagas);
            zero_series(&mut snap.effects, effects);
        }
        snap
    }

    fn add_saga(&self, inner: &mut Inner, saga: &str, tenant: &str, what: SagaCount) {
        let tenant = self.tenant_key(inner, tenant);
        capped_series(&mut inner.sagas, &mut inner.saga_series, saga, tenant)[what as usize] += 1;
    }

    /// The tenant label value: `""` with the label off, the tenant while it has (or may
    /// take) a series of its own, else [`OTHER`].
    fn tenant_key(&self, inner: &mut Inner, tenant: &str) -> String {
        let Some(max) = self.max_tenants else {
            return String::new();
        };
        let tenant = if tenant.is_empty() {
            SINGLE_TENANT
        } else {
            tenant
        };
        if inner.tenants.contains(tenant) || tenant == NONE {
            return tenant.to_string();
        }
        if inner.tenants.len() < max {
            inner.tenants.insert(tenant.to_string());
            return tenant.to_string();
        }
        OTHER.to_string()
    }
}

/// The series of `name` × `tenant` in `family` (`count`: how many it holds), or the
/// [`OTHER`] × [`OTHER`] one when it would be new and the family is at [`MAX_SERIES`].
fn capped_series<'a, V: Default>(
    family: &'a mut BTreeMap<String, BTreeMap<String, V>>,
    count: &mut usize,
    name: &str,
    tenant: String,
) -> &'a mut V {
    let fresh = !family.get(name).is_some_and(|t| t.contains_key(&tenant));
    let (name, tenant) = if fresh && *count >= MAX_SERIES {
        (OTHER, OTHER.to_string())
    } else {
        (name, tenant)
    };
    let per_tenant = family.entry(name.to_string()).or_default();
    if !per_tenant.contains_key(&tenant) {
        *count += 1;
    }
    per_tenant.entry(tenant).or_default()
}

/// A zero series (tenant label off: tenant `""`) for each of `names` that has none.
fn zero_series<V: Default>(family: &mut BTreeMap<String, BTreeMap<String, V>>, names: &[&str]) {
    for name in names {
        family
            .entry(name.to_string())
            .or_default()
            .entry(String::new())
            .or_default();
    }
}

/// The saga and tenant a quarantine record is counted under.
fn saga_and_tenant(record: Option<&QuarantineRecord>) -> (&str, &str) {
    match record {
        Some(r) => (
            r.saga.as_deref().unwrap_or(NONE),
            if r.unattributed {
                NONE
            } else {
                r.tenant.as_str()
            },
        ),
        None => (NONE, NONE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(tenant_label: bool, max_tenants: usize) -> OpsSettings {
        OpsSettings {
            metrics_tenant_label: tenant_label,
            metrics_max_tenants: max_tenants,
            ..OpsSettings::default()
        }
    }

    fn quarantine(saga: Option<&str>, tenant: &str, unattributed: bool) -> QuarantineRecord {
        QuarantineRecord {
            kind: crate::store::QuarantineKind::Program,
            reason: "r".into(),
            stream: "s".into(),
            seq: 1,
            subject: "x".into(),
            delivered: 1,
            tenant: tenant.parse().unwrap(),
            event_id: None,
            correlation_id: None,
            saga: saga.map(str::to_string),
            body_excerpt: String::new(),
            unattributed,
            quarantined_at: None,
        }
    }

    #[test]
    fn without_the_tenant_label_counts_go_by_saga_and_known_names_start_at_zero() {
        let l = Labelled::new(&ops(false, 10));
        l.quarantined(Some(&quarantine(Some("order"), "acme", false)));
        l.quarantined(Some(&quarantine(Some("order"), "globex", false)));
        l.quarantined(None);
        let snap = l.snapshot(&["order", "refund"], &["charge_card"]);
        assert!(!snap.tenant_label);
        assert_eq!(snap.sagas["order"][""][SagaCount::Quarantined as usize], 2);
        assert_eq!(snap.sagas[NONE][""][SagaCount::Quarantined as usize], 1);
        assert_eq!(
            snap.sagas["refund"][""], [0; 4],
            "a loaded saga starts at zero"
        );
        assert_eq!(snap.effects["charge_card"][""].outcomes, [0; 4]);
    }

    #[test]
    fn tenants_past_the_cap_count_under_other() {
        let l = Labelled::new(&ops(true, 2));
        for tenant in ["a", "b", "c", "d", "a"] {
            l.effect_ended(
                "charge_card",
                tenant,
                ResultType::Failed,
                Duration::from_millis(3),
            );
        }
        l.effect_ended(
            "charge_card",
            "",
            ResultType::Succeeded,
            Duration::from_millis(3),
        );
        let snap = l.snapshot(&["order"], &["charge_card"]);
        let per_tenant = &snap.effects["charge_card"];
        let names: Vec<&str> = per_tenant.keys().map(String::as_str).collect();
        assert_eq!(names, ["(other)", "a", "b"]);
        assert_eq!(per_tenant["a"].outcomes, [0, 2, 0, 0]);
        assert_eq!(
            per_tenant[OTHER].outcomes,
            [1, 2, 0, 0],
            "c, d and the single tenant"
        );
        assert_eq!(per_tenant[OTHER].seconds.count(), 3);
        assert!(
            snap.sagas.is_empty(),
            "no zero series without a tenant to name"
        );
    }

    #[test]
    fn an_unattributed_quarantine_names_no_tenant_and_does_not_take_a_slot() {
        let l = Labelled::new(&ops(true, 1));
        l.quarantined(Some(&quarantine(None, "acme", true)));
        l.quarantined(Some(&quarantine(Some("order"), "globex", false)));
        let snap = l.snapshot(&[], &[]);
        assert_eq!(snap.sagas[NONE][NONE][SagaCount::Quarantined as usize], 1);
        assert_eq!(
            snap.sagas["order"]["globex"][SagaCount::Quarantined as usize],
            1
        );
    }

    #[test]
    fn series_are_capped_per_family() {
        let l = Labelled::new(&ops(false, 1));
        for i in 0..MAX_SERIES + 10 {
            l.quarantined(Some(&quarantine(Some(&format!("s{i}")), "acme", false)));
        }
        let snap = l.snapshot(&[], &[]);
        assert_eq!(snap.sagas.len(), MAX_SERIES + 1, "the cap, plus (other)");
        assert_eq!(
            snap.sagas[OTHER][OTHER][SagaCount::Quarantined as usize],
            10
        );
    }
}
