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

pub use document::{parse_document, read_document, MAX_DOCUMENT_BYTES};
pub use subject::{proven_tenant, tenant_token, SubjectFilter};

use crate::keys::EFFECT_DEDUPE_SEGMENT;
use crate::program::{Expr, Limits, Program};
use crate::types::SagaName;

/// Most gas a saga may ask for per transition.
pub const MAX_SAGA_GAS: u64 = 10_000_000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: {context}{message}")]
pub struct ManifestError {
    pub file: String,
    /// "saga NAME: " or "" when the problem is the whole file.
    pub context: String,
    pub message: String,
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
                        message: "is declared more than once".into(),
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
    pub fn pin(&mut self, name: &SagaName, version: u32) -> Result<(), String> {
        let def = self
            .sagas
            .iter_mut()
            .find(|s| &s.name == name)
            .ok_or_else(|| format!("saga {name} is not in the manifest"))?;
        let loaded = def.versions();
        let def = Arc::get_mut(def).ok_or("the catalog is shared; pin a fresh one")?;
        if def.version == version {
            return Ok(());
        }
        let at = def
            .previous
            .iter()
            .position(|p| p.version == version)
            .ok_or_else(|| format!("saga {name} has no version {version} (loaded: {loaded:?})"))?;
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
    let whole = |message: String| ManifestError {
        file: file.clone(),
        context: String::new(),
        message,
    };
    let doc = read_document(path).map_err(whole)?;
    let raw: RawManifest = serde_json::from_value(doc).map_err(|e| whole(e.to_string()))?;
    if raw.sagas.is_empty() {
        return Err(whole("lists no sagas".into()));
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
            compile_saga(saga, base, path, default_gas, limits).map_err(|message| ManifestError {
                file: file.clone(),
                context: label,
                message,
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
) -> Result<SagaDef, String> {
    let name = SagaName::new(&raw.name).map_err(|e| e.to_string())?;
    if name.as_str() == EFFECT_DEDUPE_SEGMENT {
        return Err(format!(
            "the name {EFFECT_DEDUPE_SEGMENT:?} is reserved (effect dedupe records use it)"
        ));
    }
    if raw.version == 0 {
        return Err("version must be at least 1".into());
    }
    if raw.triggers.is_empty() {
        return Err("needs at least one trigger".into());
    }
    let mut triggers = Vec::with_capacity(raw.triggers.len());
    for (i, t) in raw.triggers.into_iter().enumerate() {
        let at = |m: String| format!("trigger {}: {m}", i + 1);
        let subject = SubjectFilter::parse(&t.subject).map_err(at)?;
        let origin = format!("{} triggers.{i}.correlate", source.display());
        let correlate = Expr::compile(&t.correlate, &origin, &["event", "ctx"], limits)
            .map_err(|e| at(e.to_string()))?;
        triggers.push(Trigger {
            subject,
            start: t.start,
            correlate,
        });
    }
    if !triggers.iter().any(|t| t.start) {
        return Err("no trigger has `start: true`, so no instance could ever begin".into());
    }
    let gas = raw.gas.unwrap_or(default_gas);
    if gas == 0 || gas > MAX_SAGA_GAS {
        return Err(format!(
            "gas must be between 1 and {MAX_SAGA_GAS} (got {gas})"
        ));
    }
    let on_event = load_program(&raw.on_event, base, "on_event", limits)?;
    let compensation = optional_program(raw.compensation.as_ref(), base, "compensation", limits)?;
    let mut previous: Vec<ProgramVersion> = Vec::with_capacity(raw.previous.len());
    for p in &raw.previous {
        let at = |m: String| format!("previous version {}: {m}", p.version);
        if p.version == 0 || p.version >= raw.version {
            return Err(at(format!(
                "must be at least 1 and older than the saga's version {}",
                raw.version
            )));
        }
        if previous.iter().any(|q| q.version == p.version) {
            return Err(at("is listed twice".into()));
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
        let at = |e: String| format!("migrate from {}: {e}", m.from);
        if m.from == 0 || m.from >= raw.version {
            return Err(at(format!(
                "must move from a version older than {}",
                raw.version
            )));
        }
        if migrations.contains_key(&m.from) {
            return Err(at("is listed twice".into()));
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

fn saga_retention(raw: Option<&RawRetention>) -> Result<SagaRetention, String> {
    let Some(raw) = raw else {
        return Ok(SagaRetention::default());
    };
    let secs = |field: &str, value: Option<u64>, least: u64| match value {
        Some(v) if !(least..=MAX_RETENTION_SECS).contains(&v) => Err(format!(
            "retention.{field} must be between {least} and {MAX_RETENTION_SECS} (got {v})"
        )),
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
    field: &str,
    limits: &Limits,
) -> Result<Option<Arc<Program>>, String> {
    match spec {
        None | Some(Value::Null) => Ok(None),
        Some(v) => load_program(v, base, field, limits).map(Some),
    }
}

/// A program given as a path (relative to the manifest) or inline as an object.
fn load_program(
    spec: &Value,
    base: &Path,
    field: &str,
    limits: &Limits,
) -> Result<Arc<Program>, String> {
    match spec {
        Value::String(rel) => {
            let path = base.join(rel);
            let doc =
                read_document(&path).map_err(|e| format!("{field}: {}: {e}", path.display()))?;
            let program = Program::compile(&doc, &path.display().to_string(), limits)
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(program))
        }
        Value::Object(_) => {
            let program = Program::compile(spec, &format!("(inline {field})"), limits)
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(program))
        }
        _ => Err(format!(
            "{field} must be a program file path or an inline program object"
        )),
    }
}

#[cfg(test)]
mod tests;
