//! Saga manifests (docs/contracts.md §4): which sagas exist, which subjects trigger them, how
//! an event finds its instance, and which programs run. Everything is validated and
//! compiled at load; a bad manifest stops start-up with a message naming the file, the
//! saga and the problem.

mod document;
mod subject;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

pub use document::{parse_document, read_document, DocumentError, MAX_DOCUMENT_BYTES};
pub use subject::{
    proven_tenant, tenant_token, SubjectFilter, SubjectFilterError, TenantProofError,
};

use crate::keys::EFFECT_DEDUPE_SEGMENT;
use crate::program::{Expr, Limits, LoadError, Program};
use crate::types::{IdError, SagaName};

/// Most gas a saga may ask for per transition.
pub const MAX_SAGA_GAS: u64 = 10_000_000;

#[derive(Debug, thiserror::Error)]
#[error("{file}: {context}{problem}")]
pub struct ManifestError {
    pub file: String,
    /// "saga NAME: " or "" when the problem is the whole file.
    pub context: String,
    // Boxed: a program's load error inside is large, and this travels in every
    // start-up `Result`.
    #[source]
    pub problem: Box<ManifestProblem>,
}

/// What is wrong with a manifest file (named by the [`ManifestError`] around it).
#[derive(Debug, thiserror::Error)]
pub enum ManifestProblem {
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The document is not a manifest (unknown or missing fields, wrong types).
    #[error(transparent)]
    Shape(#[from] serde_json::Error),
    #[error("lists no sagas")]
    NoSagas,
    #[error("is declared more than once")]
    Duplicate,
    #[error(transparent)]
    Saga(#[from] SagaProblem),
}

/// What is wrong with one saga of a manifest.
#[derive(Debug, thiserror::Error)]
pub enum SagaProblem {
    #[error(transparent)]
    Name(#[from] IdError),
    #[error("the name {EFFECT_DEDUPE_SEGMENT:?} is reserved (effect dedupe records use it)")]
    ReservedName,
    #[error("version must be at least 1")]
    ZeroVersion,
    #[error("needs at least one trigger")]
    NoTriggers,
    /// `trigger` counts from 1, as a reader of the file does.
    #[error("trigger {trigger}: {source}")]
    Subject {
        trigger: usize,
        #[source]
        source: SubjectFilterError,
    },
    #[error("trigger {trigger}: {source}")]
    Correlate {
        trigger: usize,
        #[source]
        source: LoadError,
    },
    #[error("no trigger has `start: true`, so no instance could ever begin")]
    NoStart,
    #[error("gas must be between 1 and {MAX_SAGA_GAS} (got {0})")]
    Gas(u64),
    #[error(transparent)]
    Program(#[from] ProgramSpecError),
    #[error("previous version {version}: must be at least 1 and older than the saga's version {current}")]
    PreviousNotOlder { version: u32, current: u32 },
    #[error("previous version {0}: is listed twice")]
    PreviousTwice(u32),
    #[error("previous version {version}: {source}")]
    PreviousProgram {
        version: u32,
        #[source]
        source: ProgramSpecError,
    },
    #[error("migrate from {from}: must move from a version older than {current}")]
    MigrateNotOlder { from: u32, current: u32 },
    #[error("migrate from {0}: is listed twice")]
    MigrateTwice(u32),
    #[error("migrate from {from}: {source}")]
    MigrateProgram {
        from: u32,
        #[source]
        source: ProgramSpecError,
    },
    #[error("retention.{field} must be between {least} and {MAX_RETENTION_SECS} (got {got})")]
    Retention {
        field: &'static str,
        least: u64,
        got: u64,
    },
}

/// Why a manifest's program field (`on_event`, `compensation`, a migration's `program`)
/// gave no program.
#[derive(Debug, thiserror::Error)]
pub enum ProgramSpecError {
    #[error("{field}: {}: {source}", path.display())]
    Read {
        field: &'static str,
        path: PathBuf,
        #[source]
        source: DocumentError,
    },
    #[error(transparent)]
    Compile(#[from] LoadError),
    #[error("{field} must be a program file path or an inline program object")]
    NotAProgram { field: &'static str },
}

/// One trigger: which subjects reach the saga, whether they may start an instance, and
/// the expression that names the instance.
#[derive(Debug)]
pub struct Trigger {
    pub subject: SubjectFilter,
    pub start: bool,
    pub correlate: Expr,
}

/// A loaded, compiled saga.
#[derive(Debug)]
pub struct SagaDef {
    pub name: SagaName,
    /// The newest version: new instances start on it.
    pub version: u32,
    pub triggers: Vec<Trigger>,
    pub on_event: Arc<Program>,
    pub compensation: Option<Arc<Program>>,
    /// Older versions that instances started on them keep running on.
    pub previous: Vec<ProgramVersion>,
    /// State programs that move an instance from a version to the newest, by the
    /// version they move from (run only when an operator asks).
    pub migrations: std::collections::BTreeMap<u32, Arc<Program>>,
    /// Gas per transition (the saga's own, else the settings default).
    pub gas: u64,
    /// The saga's own retention, where it sets one (else the settings' `[retention]`).
    pub retention: SagaRetention,
    /// The manifest file it came from.
    pub source: PathBuf,
}

/// How long a saga's records are kept, where its manifest says (`retention:` with
/// `finished_instances_secs` and `dedupe_secs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SagaRetention {
    pub finished_instances: Option<std::time::Duration>,
    pub dedupe: Option<std::time::Duration>,
}

/// Longest retention a manifest may ask for (ten years).
pub const MAX_RETENTION_SECS: u64 = 10 * 366 * 86_400;

/// The programs of one version of a saga.
#[derive(Debug)]
pub struct ProgramVersion {
    pub version: u32,
    pub on_event: Arc<Program>,
    pub compensation: Option<Arc<Program>>,
}

impl SagaDef {
    /// The programs an instance started on `version` runs: `None` when that version is
    /// not loaded.
    pub fn programs(&self, version: u32) -> Option<(&Arc<Program>, Option<&Arc<Program>>)> {
        if version == self.version {
            return Some((&self.on_event, self.compensation.as_ref()));
        }
        self.previous
            .iter()
            .find(|p| p.version == version)
            .map(|p| (&p.on_event, p.compensation.as_ref()))
    }

    /// Every loaded version, newest first.
    pub fn versions(&self) -> Vec<u32> {
        std::iter::once(self.version)
            .chain(self.previous.iter().map(|p| p.version))
            .collect()
    }

    /// The first trigger whose subject filter matches.
    pub fn trigger_for(&self, subject: &str) -> Option<&Trigger> {
        self.triggers.iter().find(|t| t.subject.matches(subject))
    }
}

/// Every saga the process runs, in manifest order.
#[derive(Debug, Default)]
pub struct SagaCatalog {
    pub sagas: Vec<Arc<SagaDef>>,
}

impl SagaCatalog {
    /// Loads and compiles every manifest; the first problem found is the error.
    pub fn load(
        paths: &[PathBuf],
        default_gas: u64,
        limits: &Limits,
    ) -> Result<SagaCatalog, ManifestError> {
        let mut catalog = SagaCatalog::default();
        let mut names = HashSet::new();
        for path in paths {
            for saga in load_file(path, default_gas, limits)? {
                if !names.insert(saga.name.clone()) {
                    return Err(ManifestError {
                        file: path.display().to_string(),
                        context: format!("saga {}: ", saga.name),
                        problem: Box::new(ManifestProblem::Duplicate),
                    });
                }
                catalog.sagas.push(Arc::new(saga));
            }
        }
        Ok(catalog)
    }

    /// Sagas that a message on `subject` reaches, each with its matching trigger.
    pub fn route<'a>(
        &'a self,
        subject: &'a str,
    ) -> impl Iterator<Item = (&'a Arc<SagaDef>, &'a Trigger)> + 'a {
        self.sagas
            .iter()
            .filter_map(move |saga| saga.trigger_for(subject).map(|t| (saga, t)))
    }

    /// Makes version `version` of saga `name` the one new instances start on (for a
    /// side-by-side run of a candidate): its programs take the newest place.
    pub fn pin(&mut self, name: &SagaName, version: u32) -> Result<(), PinError> {
        let def = self
            .sagas
            .iter_mut()
            .find(|s| &s.name == name)
            .ok_or_else(|| PinError::NoSaga(name.clone()))?;
        let loaded = def.versions();
        let def = Arc::get_mut(def).ok_or(PinError::Shared)?;
        if def.version == version {
            return Ok(());
        }
        let at = def
            .previous
            .iter()
            .position(|p| p.version == version)
            .ok_or_else(|| PinError::NoVersion {
                saga: name.clone(),
                version,
                loaded,
            })?;
        let older = def.previous.remove(at);
        def.version = older.version;
        def.on_event = older.on_event;
        def.compensation = older.compensation;
        Ok(())
    }

    pub fn get(&self, name: &SagaName) -> Option<&Arc<SagaDef>> {
        self.sagas.iter().find(|s| &s.name == name)
    }
}

/// Why [`SagaCatalog::pin`] could not pin a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("saga {0} is not in the manifest")]
    NoSaga(SagaName),
    #[error("the catalog is shared; pin a fresh one")]
    Shared,
    #[error("saga {saga} has no version {version} (loaded: {loaded:?})")]
    NoVersion {
        saga: SagaName,
        version: u32,
        loaded: Vec<u32>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    sagas: Vec<RawSaga>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSaga {
    name: String,
    #[serde(default = "one")]
    version: u32,
    triggers: Vec<RawTrigger>,
    on_event: Value,
    #[serde(default)]
    compensation: Option<Value>,
    #[serde(default)]
    gas: Option<u64>,
    #[serde(default)]
    previous: Vec<RawVersion>,
    #[serde(default)]
    migrate: Vec<RawMigration>,
    #[serde(default)]
    retention: Option<RawRetention>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    #[serde(default)]
    finished_instances_secs: Option<u64>,
    #[serde(default)]
    dedupe_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersion {
    version: u32,
    on_event: Value,
    #[serde(default)]
    compensation: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMigration {
    from: u32,
    program: Value,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    subject: String,
    #[serde(default)]
    start: bool,
    correlate: Value,
}

/// Loads one manifest file.
pub fn load_file(
    path: &Path,
    default_gas: u64,
    limits: &Limits,
) -> Result<Vec<SagaDef>, ManifestError> {
    let file = path.display().to_string();
    let whole = |problem: ManifestProblem| ManifestError {
        file: file.clone(),
        context: String::new(),
        problem: Box::new(problem),
    };
    let doc = read_document(path).map_err(|e| whole(e.into()))?;
    let raw: RawManifest = serde_json::from_value(doc).map_err(|e| whole(e.into()))?;
    if raw.sagas.is_empty() {
        return Err(whole(ManifestProblem::NoSagas));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    raw.sagas
        .into_iter()
        .enumerate()
        .map(|(i, saga)| {
            let label = if saga.name.is_empty() {
                format!("saga #{}: ", i + 1)
            } else {
                format!("saga {}: ", saga.name)
            };
            compile_saga(saga, base, path, default_gas, limits).map_err(|problem| ManifestError {
                file: file.clone(),
                context: label,
                problem: Box::new(problem.into()),
            })
        })
        .collect()
}

fn compile_saga(
    raw: RawSaga,
    base: &Path,
    source: &Path,
    default_gas: u64,
    limits: &Limits,
) -> Result<SagaDef, SagaProblem> {
    let name = SagaName::new(&raw.name)?;
    if name.as_str() == EFFECT_DEDUPE_SEGMENT {
        return Err(SagaProblem::ReservedName);
    }
    if raw.version == 0 {
        return Err(SagaProblem::ZeroVersion);
    }
    if raw.triggers.is_empty() {
        return Err(SagaProblem::NoTriggers);
    }
    let mut triggers = Vec::with_capacity(raw.triggers.len());
    for (i, t) in raw.triggers.into_iter().enumerate() {
        let trigger = i + 1;
        let subject = SubjectFilter::parse(&t.subject)
            .map_err(|source| SagaProblem::Subject { trigger, source })?;
        let origin = format!("{} triggers.{i}.correlate", source.display());
        let correlate = Expr::compile(&t.correlate, &origin, &["event", "ctx"], limits)
            .map_err(|source| SagaProblem::Correlate { trigger, source })?;
        triggers.push(Trigger {
            subject,
            start: t.start,
            correlate,
        });
    }
    if !triggers.iter().any(|t| t.start) {
        return Err(SagaProblem::NoStart);
    }
    let gas = raw.gas.unwrap_or(default_gas);
    if gas == 0 || gas > MAX_SAGA_GAS {
        return Err(SagaProblem::Gas(gas));
    }
    let on_event = load_program(&raw.on_event, base, "on_event", limits)?;
    let compensation = optional_program(raw.compensation.as_ref(), base, "compensation", limits)?;
    let mut previous: Vec<ProgramVersion> = Vec::with_capacity(raw.previous.len());
    for p in &raw.previous {
        let at = |source| SagaProblem::PreviousProgram {
            version: p.version,
            source,
        };
        if p.version == 0 || p.version >= raw.version {
            return Err(SagaProblem::PreviousNotOlder {
                version: p.version,
                current: raw.version,
            });
        }
        if previous.iter().any(|q| q.version == p.version) {
            return Err(SagaProblem::PreviousTwice(p.version));
        }
        previous.push(ProgramVersion {
            version: p.version,
            on_event: load_program(&p.on_event, base, "on_event", limits).map_err(at)?,
            compensation: optional_program(p.compensation.as_ref(), base, "compensation", limits)
                .map_err(at)?,
        });
    }
    let mut migrations = std::collections::BTreeMap::new();
    for m in &raw.migrate {
        let at = |source| SagaProblem::MigrateProgram {
            from: m.from,
            source,
        };
        if m.from == 0 || m.from >= raw.version {
            return Err(SagaProblem::MigrateNotOlder {
                from: m.from,
                current: raw.version,
            });
        }
        if migrations.contains_key(&m.from) {
            return Err(SagaProblem::MigrateTwice(m.from));
        }
        migrations.insert(
            m.from,
            load_program(&m.program, base, "program", limits).map_err(at)?,
        );
    }
    let retention = saga_retention(raw.retention.as_ref())?;
    Ok(SagaDef {
        name,
        version: raw.version,
        triggers,
        on_event,
        compensation,
        previous,
        migrations,
        gas,
        retention,
        source: source.to_path_buf(),
    })
}

fn saga_retention(raw: Option<&RawRetention>) -> Result<SagaRetention, SagaProblem> {
    let Some(raw) = raw else {
        return Ok(SagaRetention::default());
    };
    let secs = |field: &'static str, value: Option<u64>, least: u64| match value {
        Some(got) if !(least..=MAX_RETENTION_SECS).contains(&got) => {
            Err(SagaProblem::Retention { field, least, got })
        }
        v => Ok(v.map(std::time::Duration::from_secs)),
    };
    Ok(SagaRetention {
        finished_instances: secs("finished_instances_secs", raw.finished_instances_secs, 0)?,
        dedupe: secs("dedupe_secs", raw.dedupe_secs, 1)?,
    })
}

fn optional_program(
    spec: Option<&Value>,
    base: &Path,
    field: &'static str,
    limits: &Limits,
) -> Result<Option<Arc<Program>>, ProgramSpecError> {
    match spec {
        None | Some(Value::Null) => Ok(None),
        Some(v) => load_program(v, base, field, limits).map(Some),
    }
}

/// A program given as a path (relative to the manifest) or inline as an object.
fn load_program(
    spec: &Value,
    base: &Path,
    field: &'static str,
    limits: &Limits,
) -> Result<Arc<Program>, ProgramSpecError> {
    match spec {
        Value::String(rel) => {
            let path = base.join(rel);
            let doc = match read_document(&path) {
                Ok(doc) => doc,
                Err(source) => {
                    return Err(ProgramSpecError::Read {
                        field,
                        path,
                        source,
                    })
                }
            };
            let program = Program::compile(&doc, &path.display().to_string(), limits)?;
            Ok(Arc::new(program))
        }
        Value::Object(_) => {
            let program = Program::compile(spec, &format!("(inline {field})"), limits)?;
            Ok(Arc::new(program))
        }
        _ => Err(ProgramSpecError::NotAProgram { field }),
    }
}

#[cfg(test)]
mod tests;
