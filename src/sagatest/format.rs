//! The test file format (docs/saga-tests.md): read as YAML or JSON, checked whole before
//! anything runs, so a typo in the file is reported as such (exit 2) and never as a
//! failing saga.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::matcher::{check_expected, ExpectError};
use super::SagaTestError;
use crate::envelope::EnvelopeKind;
use crate::manifest::{read_document, DocumentError, ManifestError, SagaCatalog};
use crate::settings::Settings;
use crate::store::InstanceStatus;
use crate::timefmt::{parse_rfc3339_ms, TimeError};
use crate::types::{CorrelationId, IdError, SagaName, TenantId};

/// The manifest a test file uses when it names none: the usual layout puts tests in
/// `manifests/<name>/tests/` beside `manifests/<name>/sagas.yaml`.
pub const DEFAULT_MANIFEST: &str = "../sagas.yaml";

/// When the first step of a case happens unless the file or case says otherwise.
pub const DEFAULT_START: &str = "2026-01-01T00:00:00Z";

/// The keys an `expect` block may use: what a step's observation holds.
pub const EXPECT_KEYS: [&str; 10] = [
    "outcome",
    "correlation",
    "status",
    "state",
    "fault",
    "commands",
    "schedules",
    "cancel",
    "timers",
    "quarantine",
];

const OUTCOMES: [&str; 4] = ["applied", "ignored", "duplicate", "quarantined"];
const STATUSES: [&str; 4] = ["active", "completed", "failed", "faulted"];

/// A loaded, validated test file with the sagas its manifest compiles to.
#[derive(Debug)]
pub struct TestFile {
    pub path: PathBuf,
    pub manifest: PathBuf,
    pub catalog: SagaCatalog,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub saga: SagaName,
    pub tenant: TenantId,
    /// When the first step happens (ms since the epoch), unless its envelope says.
    pub start_ms: i64,
    pub given: Option<Given>,
    pub steps: Vec<Step>,
}

/// An instance that exists before the first step.
#[derive(Debug, Clone)]
pub struct Given {
    pub correlation: CorrelationId,
    pub state: Value,
    pub status: InstanceStatus,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// A label for the report; built from the envelope when absent.
    pub name: Option<String>,
    pub kind: EnvelopeKind,
    /// The envelope as written; left-out fields get defaults when the step runs.
    pub fields: Map<String, Value>,
    /// Replaces the subject built from the envelope.
    pub subject: Option<String>,
    /// Partial expectation, keyed by [`EXPECT_KEYS`].
    pub expect: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    manifest: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    start: Option<String>,
    cases: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    saga: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    given: Option<RawGiven>,
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGiven {
    correlation: String,
    #[serde(default)]
    state: Value,
    #[serde(default)]
    status: Option<InstanceStatus>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    aggregate: Option<Map<String, Value>>,
    #[serde(default)]
    result: Option<Map<String, Value>>,
    #[serde(default)]
    reminder: Option<Map<String, Value>>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    expect: Map<String, Value>,
}

/// What is wrong with a test file (named by the [`SagaTestError`] around it).
#[derive(Debug, thiserror::Error)]
pub enum FormatProblem {
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The document as a whole is not a test file.
    #[error(transparent)]
    Shape(serde_json::Error),
    /// A field is not what the format says (`at`: its path, `cases[0].steps`).
    #[error("{at}: {source}")]
    ShapeAt {
        at: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest: {0}")]
    Manifest(#[source] ManifestError),
    #[error("lists no cases")]
    NoCases,
    /// `at` names the case: `cases[1] ("its name")`.
    #[error("{at}: another case has the same name")]
    DuplicateCase { at: String },
    #[error("{at}.{source}")]
    Case {
        at: String,
        #[source]
        source: CaseError,
    },
}

/// What is wrong with one case; the message starts with the field, to follow `cases[i].`.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("saga: {0}")]
    Saga(#[source] IdError),
    /// `known` lists the manifest's sagas, comma-separated.
    #[error("saga: {saga:?} is not in the manifest (it has: {known})")]
    UnknownSaga { saga: String, known: String },
    #[error("tenant: {0}")]
    Tenant(#[source] IdError),
    #[error("start: {start:?} is not RFC 3339: {source}")]
    Start {
        start: String,
        #[source]
        source: TimeError,
    },
    #[error("given.correlation: {0}")]
    GivenCorrelation(#[source] IdError),
    #[error("steps: a case needs at least one step")]
    NoSteps,
    #[error("steps[{index}].{source}")]
    Step {
        index: usize,
        #[source]
        source: StepError,
    },
}

/// What is wrong with one step; the message starts with the field, to follow `steps[i].`.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("a step needs one of `aggregate`, `result` or `reminder` (the event's envelope)")]
    NoEnvelope,
    #[error("a step has exactly one of `aggregate`, `result` or `reminder`")]
    TwoEnvelopes,
    #[error("expect.{key}: unknown key (expect may use {})", EXPECT_KEYS.join(", "))]
    UnknownExpectKey { key: String },
    #[error(transparent)]
    Expect(#[from] ExpectError),
    #[error("expect.{key}: {value:?} is none of {}", allowed.join(", "))]
    NotAllowed {
        key: String,
        value: String,
        allowed: &'static [&'static str],
    },
}

/// Reads and validates `path`, and loads the manifest it names (with the default gas
/// and limits of the settings, as `runner check` and `runner run` do).
pub fn load_file(path: &Path) -> Result<TestFile, SagaTestError> {
    let invalid = |problem: FormatProblem| SagaTestError::Invalid {
        file: path.to_path_buf(),
        problem: Box::new(problem),
    };
    let doc = read_document(path).map_err(|e| invalid(e.into()))?;
    let raw: RawFile = serde_path_to_error::deserialize(doc).map_err(|e| {
        let at = e.path().to_string();
        let source = e.into_inner();
        invalid(if at == "." {
            FormatProblem::Shape(source)
        } else {
            FormatProblem::ShapeAt { at, source }
        })
    })?;
    let manifest = resolve_manifest(path, raw.manifest.as_deref());
    let settings = Settings::default();
    let catalog = SagaCatalog::load(
        std::slice::from_ref(&manifest),
        settings.programs.gas,
        &crate::pipeline::limits(&settings),
    )
    .map_err(|e| invalid(FormatProblem::Manifest(e)))?;
    if raw.cases.is_empty() {
        return Err(invalid(FormatProblem::NoCases));
    }
    let file_tenant = raw.tenant.as_deref().unwrap_or("");
    let file_start = raw.start.as_deref().unwrap_or(DEFAULT_START);
    let mut names = HashSet::new();
    let mut cases = Vec::with_capacity(raw.cases.len());
    for (i, rc) in raw.cases.into_iter().enumerate() {
        let at = format!("cases[{i}] ({:?})", rc.name);
        if !names.insert(rc.name.clone()) {
            return Err(invalid(FormatProblem::DuplicateCase { at }));
        }
        let case = case(rc, &catalog, file_tenant, file_start)
            .map_err(|source| invalid(FormatProblem::Case { at, source }))?;
        cases.push(case);
    }
    Ok(TestFile {
        path: path.to_path_buf(),
        manifest,
        catalog,
        cases,
    })
}

/// The manifest path: as written when absolute, else relative to the test file's
/// directory.
fn resolve_manifest(test_file: &Path, written: Option<&str>) -> PathBuf {
    let written = Path::new(written.unwrap_or(DEFAULT_MANIFEST));
    if written.is_absolute() {
        written.to_path_buf()
    } else {
        tidy(&test_file.parent().unwrap_or(Path::new(".")).join(written))
    }
}

/// `a/tests/../sagas.yaml` as `a/sagas.yaml`, for messages. Lexical only (a `..` after
/// a symlink could differ), so it is used where the path is shown and opened alike:
/// when `a/tests` is a real directory, as it is for a file found in it.
fn tidy(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match (c, out.last()) {
            (Component::CurDir, _) => {}
            (Component::ParentDir, Some(Component::Normal(_))) => {
                out.pop();
            }
            _ => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

/// Validates one case. Errors start with the field, to follow `cases[i].`.
fn case(
    rc: RawCase,
    catalog: &SagaCatalog,
    file_tenant: &str,
    file_start: &str,
) -> Result<Case, CaseError> {
    let saga = SagaName::new(&rc.saga).map_err(CaseError::Saga)?;
    if catalog.get(&saga).is_none() {
        let known: Vec<&str> = catalog.sagas.iter().map(|s| s.name.as_str()).collect();
        return Err(CaseError::UnknownSaga {
            saga: rc.saga,
            known: known.join(", "),
        });
    }
    let tenant =
        TenantId::new(rc.tenant.as_deref().unwrap_or(file_tenant)).map_err(CaseError::Tenant)?;
    let start = rc.start.as_deref().unwrap_or(file_start);
    let start_ms = parse_rfc3339_ms(start).map_err(|source| CaseError::Start {
        start: start.to_string(),
        source,
    })?;
    let given = match rc.given {
        None => None,
        Some(g) => Some(Given {
            correlation: CorrelationId::new(&g.correlation).map_err(CaseError::GivenCorrelation)?,
            state: g.state,
            status: g.status.unwrap_or(InstanceStatus::Active),
        }),
    };
    if rc.steps.is_empty() {
        return Err(CaseError::NoSteps);
    }
    let steps = rc
        .steps
        .into_iter()
        .enumerate()
        .map(|(index, s)| step(s).map_err(|source| CaseError::Step { index, source }))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Case {
        name: rc.name,
        saga,
        tenant,
        start_ms,
        given,
        steps,
    })
}

fn step(rs: RawStep) -> Result<Step, StepError> {
    let kinds = [
        (EnvelopeKind::Aggregate, rs.aggregate),
        (EnvelopeKind::Result, rs.result),
        (EnvelopeKind::Reminder, rs.reminder),
    ];
    let mut given = kinds.into_iter().filter_map(|(k, f)| f.map(|f| (k, f)));
    let (kind, fields) = given.next().ok_or(StepError::NoEnvelope)?;
    if given.next().is_some() {
        return Err(StepError::TwoEnvelopes);
    }
    for (key, value) in &rs.expect {
        if !EXPECT_KEYS.contains(&key.as_str()) {
            return Err(StepError::UnknownExpectKey { key: key.clone() });
        }
        check_expected(value, &format!("expect.{key}"))?;
        let allowed: &'static [&'static str] = match key.as_str() {
            "outcome" => &OUTCOMES,
            "status" => &STATUSES,
            _ => continue,
        };
        if let Value::String(s) = value {
            if !allowed.contains(&s.as_str()) {
                return Err(StepError::NotAllowed {
                    key: key.clone(),
                    value: s.clone(),
                    allowed,
                });
            }
        }
    }
    Ok(Step {
        name: rs.name,
        kind,
        fields,
        subject: rs.subject,
        expect: rs.expect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::TempDir;

    /// A test file in a temp dir whose manifest is the example's, by absolute path.
    fn write(dir: &TempDir, body: &str) -> PathBuf {
        let manifest =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/example/sagas.yaml");
        let path = dir.path().join("t.yaml");
        std::fs::write(&path, format!("manifest: {}\n{body}", manifest.display())).unwrap();
        path
    }

    fn problem(body: &str) -> String {
        let dir = TempDir::new("sagatest-format").unwrap();
        load_file(&write(&dir, body)).unwrap_err().to_string()
    }

    #[test]
    fn a_valid_file_loads_with_defaults() {
        let dir = TempDir::new("sagatest-format-ok").unwrap();
        let path = write(
            &dir,
            "tenant: acme\ncases:\n  - name: a\n    saga: order_fulfilment\n    steps:\n      - reminder: {}\n        expect: {status: failed}\n",
        );
        let file = load_file(&path).unwrap();
        let case = &file.cases[0];
        assert_eq!(case.tenant.as_str(), "acme");
        assert_eq!(case.start_ms, parse_rfc3339_ms(DEFAULT_START).unwrap());
        assert_eq!(case.steps[0].kind, EnvelopeKind::Reminder);
        assert_eq!(case.steps[0].expect["status"], "failed");
    }

    #[test]
    fn problems_name_where_they_are() {
        let case = "cases:\n  - name: a\n    saga: order_fulfilment\n    steps:\n";
        let e = problem(&format!(
            "{case}      - aggregate: {{}}\n        expct: {{}}\n"
        ));
        assert!(
            e.contains("cases[0].steps[0]") && e.contains("expct"),
            "{e}"
        );
        let e = problem(&format!("{case}      - expect: {{}}\n"));
        assert!(e.contains("one of `aggregate`"), "{e}");
        let e = problem(&format!(
            "{case}      - aggregate: {{}}\n        result: {{}}\n"
        ));
        assert!(e.contains("exactly one"), "{e}");
        let e = problem(&format!(
            "{case}      - aggregate: {{}}\n        expect: {{staus: active}}\n"
        ));
        assert!(e.contains("expect.staus: unknown key"), "{e}");
        let e = problem(&format!(
            "{case}      - aggregate: {{}}\n        expect: {{status: complete}}\n"
        ));
        assert!(e.contains("\"complete\" is none of"), "{e}");
        let e = problem(&format!(
            "{case}      - aggregate: {{}}\n        expect: {{state: {{$has: 1}}}}\n"
        ));
        assert!(e.contains("expect.state") && e.contains("$has"), "{e}");
        let e = problem("cases:\n  - name: a\n    saga: nope\n    steps: []\n");
        assert!(e.contains("not in the manifest"), "{e}");
        let e = problem("cases:\n  - name: a\n    saga: order_fulfilment\n    steps: []\n");
        assert!(e.contains("at least one step"), "{e}");
        let e = problem(&format!(
            "start: yesterday\n{case}      - aggregate: {{}}\n"
        ));
        assert!(e.contains("start") && e.contains("RFC 3339"), "{e}");
        let e = problem(&format!("{case}      - aggregate: {{}}\n  - name: a\n    saga: order_fulfilment\n    steps:\n      - aggregate: {{}}\n"));
        assert!(e.contains("same name"), "{e}");
        let e = problem("cases: []\n");
        assert!(e.contains("no cases"), "{e}");
    }

    #[test]
    fn the_manifest_is_found_beside_the_tests_directory() {
        let at = |file: &str, written: Option<&str>| resolve_manifest(Path::new(file), written);
        assert_eq!(
            at("m/x/tests/t.yaml", None),
            PathBuf::from("m/x/sagas.yaml")
        );
        assert_eq!(at("tests/t.yaml", None), PathBuf::from("sagas.yaml"));
        assert_eq!(at("t.yaml", None), PathBuf::from("../sagas.yaml"));
        assert_eq!(
            at("m/tests/t.yaml", Some("/abs/s.yaml")),
            PathBuf::from("/abs/s.yaml")
        );
        assert_eq!(
            at("m/tests/t.yaml", Some("./other.yaml")),
            PathBuf::from("m/tests/other.yaml")
        );
    }

    #[test]
    fn a_missing_manifest_is_named() {
        let dir = TempDir::new("sagatest-format-manifest").unwrap();
        let path = dir.path().join("t.yaml");
        std::fs::write(&path, "cases: []\n").unwrap();
        let e = load_file(&path).unwrap_err().to_string();
        assert!(e.contains("manifest") && e.contains("sagas.yaml"), "{e}");
    }
}
