//! Running cases: every case gets a throwaway store and its own executor, and every step
//! goes the production way — `decode` (subject routing, `correlate`), `Executor::execute`
//! (programs, compensation, command ids) and `Store::commit` — before the next step
//! runs, so each step sees committed state, as a redelivered or later event would.

use std::collections::HashMap;
use std::io::Cursor;

use serde_json::json;

use super::events::{self, BuildError, History};
use super::format::{Case, Given, TestFile, EXPECT_KEYS};
use super::matcher::{compare, Mismatch};
use super::observe::{observe, Instance};
use super::SagaTestError;
use crate::envelope::{EffectCommand, EnvelopeKind};
use crate::keys::{self, OutboxKind};
use crate::saga::{decode, DecodeConfig, Decoded, Executor, MessageInfo, Outcome};
use crate::settings::Settings;
use crate::store::{CommitBatch, SagaRecord, Store, StoreError};
use crate::temp_dir::TempDir;
use crate::timefmt::format_rfc3339_ms;
use crate::types::CorrelationId;

/// LMDB map size of a case's store: a case writes a few records; the map is sparse.
const STORE_BYTES: usize = 64 << 20;

/// Steps happen this long after the one before unless their envelope says when.
const STEP_INTERVAL_MS: i64 = 1_000;

/// How one case went.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub name: String,
    pub steps: usize,
    pub verdict: CaseVerdict,
}

#[derive(Debug, Clone)]
pub enum CaseVerdict {
    Passed,
    /// The case stopped at `step` (1-based): later steps would build on a state that
    /// is already not the expected one.
    Failed {
        step: usize,
        label: String,
        failure: Failure,
    },
}

#[derive(Debug, Clone)]
pub enum Failure {
    /// The step ran; what it did differs from its expectation.
    Mismatches(Vec<Mismatch>),
    /// The step could not be built (no command to answer, no timer to fire…).
    Problem(String),
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        matches!(self.verdict, CaseVerdict::Passed)
    }
}

/// Runs every case of `test`, handing each report to `on_case` as it finishes.
pub fn run_file(
    test: &TestFile,
    mut on_case: impl FnMut(&CaseReport),
) -> Result<Vec<CaseReport>, SagaTestError> {
    let mut reports = Vec::with_capacity(test.cases.len());
    for case in &test.cases {
        let report = run_case(test, case)?;
        on_case(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// Runs one case on a store of its own.
pub fn run_case(test: &TestFile, case: &Case) -> Result<CaseReport, SagaTestError> {
    let temp = TempDir::new("sagatest").map_err(|source| SagaTestError::TempDir {
        file: test.path.clone(),
        case: case.name.clone(),
        source,
    })?;
    let store_err = |source: StoreError| SagaTestError::Store {
        file: test.path.clone(),
        case: case.name.clone(),
        source,
    };
    let store = Store::open(&temp.path().join("store"), STORE_BYTES).map_err(store_err)?;
    let verdict = CaseRun::new(test, case, &store)
        .and_then(|mut run| run.steps())
        .map_err(store_err)?;
    Ok(CaseReport {
        name: case.name.clone(),
        steps: case.steps.len(),
        verdict,
    })
}

/// A case in progress.
struct CaseRun<'a> {
    test: &'a TestFile,
    case: &'a Case,
    store: &'a Store,
    settings: Settings,
    decode: DecodeConfig,
    executor: Executor,
    /// The instance the case follows, once known.
    instance: Option<CorrelationId>,
    /// Effect commands so far: results answer them.
    commands: Vec<EffectCommand>,
    /// Stream sequence per stream, as JetStream would number the messages.
    seqs: HashMap<String, u64>,
    /// The previous step's event time.
    last_time_ms: Option<i64>,
}

impl<'a> CaseRun<'a> {
    fn new(
        test: &'a TestFile,
        case: &'a Case,
        store: &'a Store,
    ) -> Result<CaseRun<'a>, StoreError> {
        // Default settings, not the deployment's: a test means the same on every machine.
        let settings = Settings::default();
        let mut run = CaseRun {
            test,
            case,
            store,
            decode: DecodeConfig::from_settings(&settings),
            executor: Executor::new(&settings.streams.command_prefix),
            settings,
            instance: None,
            commands: Vec::new(),
            seqs: HashMap::new(),
            last_time_ms: None,
        };
        if let Some(given) = &case.given {
            run.seed(given)?;
            run.instance = Some(given.correlation.clone());
        }
        Ok(run)
    }

    /// Writes the `given` instance, as if earlier events had made it.
    fn seed(&self, given: &Given) -> Result<(), StoreError> {
        let version = self
            .test
            .catalog
            .get(&self.case.saga)
            .map_or(1, |saga| saga.version);
        let record = SagaRecord {
            status: given.status,
            state: given.state.clone(),
            version,
            transitions: 0,
            last_event_id: String::new(),
            updated_at: format_rfc3339_ms(self.case.start_ms).unwrap_or_default(),
            fault: None,
        };
        let key = keys::saga(&self.case.tenant, &self.case.saga, &given.correlation);
        let line = json!([key, record]).to_string();
        self.store
            .import_tenant(&self.case.tenant, Cursor::new(line))
            .map(|_| ())
    }

    fn steps(&mut self) -> Result<CaseVerdict, StoreError> {
        for (i, step) in self.case.steps.iter().enumerate() {
            let n = i + 1;
            let now_ms = self
                .last_time_ms
                .map_or(self.case.start_ms, |t| t.saturating_add(STEP_INTERVAL_MS));
            let history = History {
                case: self.case,
                streams: &self.settings.streams,
                store: self.store,
                commands: &self.commands,
                instance: self.instance.as_ref(),
            };
            let built = match events::build(step, n, now_ms, &history) {
                Ok(built) => built,
                Err(BuildError::Store(e)) => return Err(e),
                Err(BuildError::Step(problem)) => {
                    return Ok(CaseVerdict::Failed {
                        step: n,
                        label: step.name.clone().unwrap_or_else(|| kind_label(step.kind)),
                        failure: Failure::Problem(problem),
                    })
                }
            };
            if let Some(key) = &built.fired_timer {
                self.store.timers_published(std::slice::from_ref(key))?;
            }
            let seq = self.seqs.entry(built.stream.clone()).or_insert(0);
            *seq += 1;
            let info = MessageInfo {
                stream: built.stream,
                seq: *seq,
                delivered: 1,
                forgiven: 0,
                subject: built.subject,
                published_ms: 0,
            };
            let body = built.body.to_string();
            let (outcome, event_time_ms) = self.execute(&info, body.as_bytes(), n as u64)?;
            self.store.commit(&CommitBatch {
                transitions: outcome.transitions.clone(),
                quarantine: outcome.quarantine.iter().cloned().collect(),
                seen: outcome.seen.clone(),
                released: Vec::new(),
            })?;
            self.last_time_ms = Some(event_time_ms.unwrap_or(now_ms));
            self.remember(&outcome);
            let observed = observe(
                &outcome,
                event_time_ms,
                &Instance {
                    tenant: &self.case.tenant,
                    saga: &self.case.saga,
                    correlation: self.instance.as_ref(),
                },
                self.store,
            )?;
            // In the order of EXPECT_KEYS (outcome, status, state, then work), which
            // reads better than the file's keys sorted.
            let mismatches: Vec<Mismatch> = EXPECT_KEYS
                .iter()
                .filter_map(|key| step.expect.get(*key).map(|want| (key, want)))
                .flat_map(|(key, want)| compare(want, observed.get(*key), key))
                .collect();
            if !mismatches.is_empty() {
                return Ok(CaseVerdict::Failed {
                    step: n,
                    label: built.label,
                    failure: Failure::Mismatches(mismatches),
                });
            }
        }
        Ok(CaseVerdict::Passed)
    }

    /// Decodes and executes one message as batch `batch`; the event's time, when it
    /// decoded.
    fn execute(
        &mut self,
        info: &MessageInfo,
        body: &[u8],
        batch: u64,
    ) -> Result<(Outcome, Option<i64>), StoreError> {
        match decode(&self.decode, &self.test.catalog, info, None, body) {
            Decoded::Event(event) => {
                // Everything before this batch is committed: the executor drops its
                // overlay and reads the store, as after a real commit.
                self.executor.begin_batch(0, batch - 1);
                let reader = self.store.reader()?;
                let outcome = self.executor.execute(&reader, &event, info, batch)?;
                Ok((outcome, Some(event.event_time_ms)))
            }
            Decoded::Quarantine(record, _) => Ok((Outcome::quarantined(*record), None)),
        }
    }

    /// Keeps the case's instance and effect commands for later steps' defaults.
    fn remember(&mut self, outcome: &Outcome) {
        for t in outcome
            .transitions
            .iter()
            .filter(|t| t.saga == self.case.saga)
        {
            if self.instance.is_none() {
                self.instance = Some(t.correlation.clone());
            }
            let effects = t.outbox.iter().filter(|o| o.kind == OutboxKind::Effect);
            // The envelope was written from an `EffectCommand`'s fields: it parses back.
            self.commands
                .extend(effects.filter_map(|o| serde_json::from_str(o.envelope.as_str()).ok()));
        }
    }
}

fn kind_label(kind: EnvelopeKind) -> String {
    crate::saga::kind_name(kind).to_string()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::sagatest::load_file;

    /// Runs the cases of `body` (a test file using the example manifest).
    fn run(body: &str) -> Vec<CaseReport> {
        let dir = TempDir::new("sagatest-run").unwrap();
        let manifest =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/example/sagas.yaml");
        let path = dir.path().join("t.yaml");
        let text = format!("manifest: {}\ntenant: acme\n{body}", manifest.display());
        std::fs::write(&path, text).unwrap();
        let test = load_file(&path).unwrap();
        run_file(&test, |_| {}).unwrap()
    }

    fn problem(report: &CaseReport) -> &str {
        match &report.verdict {
            CaseVerdict::Failed {
                failure: Failure::Problem(p),
                ..
            } => p,
            other => panic!("expected a problem, got {other:?}"),
        }
    }

    const PLACED: &str = "      - aggregate: { aggregate_type: order, aggregate_id: o-1, event_type: OrderPlaced, payload: { total: 5 } }\n";

    #[test]
    fn steps_that_defaults_cannot_complete_fail_the_case_with_the_reason() {
        let reports = run(&format!(
            "cases:\n  - name: no command\n    saga: order_fulfilment\n    steps:\n      - result: {{ result_type: succeeded }}\n\
             \x20 - name: no timer\n    saga: order_fulfilment\n    steps:\n{PLACED}      - reminder: {{ name: other_timer }}\n"
        ));
        assert!(problem(&reports[0]).contains("no earlier effect command"));
        let p = problem(&reports[1]);
        assert!(p.contains("no pending timer named \"other_timer\""), "{p}");
        assert!(matches!(
            reports[1].verdict,
            CaseVerdict::Failed { step: 2, .. }
        ));
    }

    #[test]
    fn a_pending_timer_fires_by_default_and_a_stray_reminder_to_a_given_instance_is_ignored() {
        // The given instance holds no timer: a reminder of one is stale, and no program
        // runs on it (as in the Runner).
        let reports = run(&format!(
            "cases:\n  - name: fired\n    saga: order_fulfilment\n    steps:\n{PLACED}\
             \x20     - reminder: {{}}\n        expect: {{ status: failed, timers: [], correlation: o-1 }}\n\
             \x20 - name: given\n    saga: order_fulfilment\n    given: {{ correlation: o-9, state: {{ step: charging, order_id: o-9 }} }}\n    steps:\n\
             \x20     - reminder: {{ name: payment_timeout, due_at: \"2026-01-01T00:15:00Z\" }}\n\
             \x20       expect: {{ outcome: ignored, status: active, commands: [] }}\n"
        ));
        for r in &reports {
            assert!(r.passed(), "{r:?}");
        }
    }

    #[test]
    fn a_mismatch_stops_the_case_at_its_step() {
        let reports = run(&format!(
            "cases:\n  - name: wrong\n    saga: order_fulfilment\n    steps:\n{PLACED}\
             \x20       expect: {{ status: completed, state: {{ total: 5 }} }}\n\
             \x20     - reminder: {{}}\n"
        ));
        let CaseVerdict::Failed {
            step,
            failure: Failure::Mismatches(m),
            ..
        } = &reports[0].verdict
        else {
            panic!("{:?}", reports[0]);
        };
        assert_eq!(*step, 1);
        assert_eq!(m.len(), 1);
        assert_eq!(
            (
                m[0].path.as_str(),
                m[0].expected.as_str(),
                m[0].actual.as_str()
            ),
            ("status", "\"completed\"", "\"active\"")
        );
    }
}
