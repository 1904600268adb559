//! Runner settings: defaults, then a TOML or JSON file, then `RUNNER_*` environment
//! variables, then validation that names the field and the problem.
//!
//! Environment names are `RUNNER_<SECTION>_<FIELD>` in upper case (`RUNNER_STORAGE_PATH`,
//! `RUNNER_CONSUMER_MAX_ACK_PENDING`), or `RUNNER_<FIELD>` for top-level fields
//! (`RUNNER_MODE`). Lists are comma-separated. A `RUNNER_` variable that names no
//! setting is an error, so a typo never passes silently; `RUNNER_CONFIG`, `RUNNER_LOG*`,
//! `RUNNER_NATS_SERVER_BIN`
//! and `RUNNER_TEST_*` are reserved for other uses and skipped.
//!
//! Each section has its own file (`nats.rs`, `storage.rs`, ...): its struct, its
//! defaults and the checks of its own fields. A check that compares two sections lives
//! with the field it refuses and is passed what it needs from the other. `env.rs` reads
//! the file and applies the variables. A new section is a new file, its `mod` line and
//! its line in `sections!` below.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::TenantId;

mod consumer;
mod effects;
mod env;
mod manifests;
mod nats;
mod ops;
mod pipeline;
mod programs;
mod relay;
mod retention;
mod scheduler;
mod storage;
mod streams;
mod tenancy;
#[cfg(test)]
mod tests;
mod tls;

pub use env::EnvValueError;
pub use nats::NatsAuth;
pub use streams::TENANT_PLACEHOLDER;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("settings file {path}: {problem}")]
    Parse {
        path: PathBuf,
        #[source]
        problem: FileProblem,
    },
    #[error("settings file {path}: unsupported extension (use .toml or .json)")]
    Extension { path: PathBuf },
    #[error("environment variable {var}: {problem}")]
    Env {
        var: String,
        #[source]
        problem: EnvProblem,
    },
    #[error("setting {field}: {problem}")]
    Invalid { field: String, problem: String },
}

/// Why a settings file's text gives no settings.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A value the file set does not fit its setting (`field` is the dotted path).
    #[error("setting {field}: {source}")]
    Setting {
        field: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Why a `RUNNER_*` environment variable sets no setting.
#[derive(Debug, thiserror::Error)]
pub enum EnvProblem {
    #[error("settings tree is not an object")]
    NotObject,
    #[error("names no setting")]
    NoSetting,
    #[error(transparent)]
    Value(#[from] EnvValueError),
    /// The value does not fit its setting (`field` is the dotted path).
    #[error("setting {field}: {source}")]
    Setting {
        field: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Which stages a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Consume events, run sagas, commit transitions (and, later, relay and schedule).
    Saga,
    /// Consume effect commands and run effects.
    Effect,
    /// Both.
    Combined,
}

impl Mode {
    pub fn runs_sagas(self) -> bool {
        matches!(self, Mode::Saga | Mode::Combined)
    }
    pub fn runs_effects(self) -> bool {
        matches!(self, Mode::Effect | Mode::Combined)
    }
}

/// A mode name that is none of `saga`, `effect`, `combined`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?} (expected saga, effect or combined)")]
pub struct UnknownMode(pub String);

impl std::str::FromStr for Mode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Mode, UnknownMode> {
        match s {
            "saga" => Ok(Mode::Saga),
            "effect" => Ok(Mode::Effect),
            "combined" => Ok(Mode::Combined),
            other => Err(UnknownMode(other.to_string())),
        }
    }
}

/// Declares the sections of [`Settings`], one a line: the field (named like the
/// section's file), its type (re-exported from here) and what its `validate` is passed
/// from the other sections (`s` is the whole `Settings`). Generates the struct, its
/// `Default` (each section's own) and `validate_sections`, which runs every section's
/// checks in this order.
macro_rules! sections {
    (|$s:ident| $($field:ident: $ty:ident => validate($($arg:expr),*)),* $(,)?) => {
        $(pub use $field::$ty;)*

        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Settings {
            pub mode: Mode,
            $(pub $field: $ty,)*
        }

        impl Default for Settings {
            fn default() -> Self {
                Settings {
                    mode: Mode::Saga,
                    $($field: $ty::default(),)*
                }
            }
        }

        impl Settings {
            fn validate_sections(&self) -> Result<(), SettingsError> {
                let $s = self;
                $($s.$field.validate($($arg),*)?;)*
                Ok(())
            }
        }
    };
}

pub use retention::{MARKER_FLOOR_REASON, RECORD_FLOOR_REASON};

sections! { |s|
    nats: NatsSettings => validate(),
    storage: StorageSettings => validate(),
    tenancy: TenancySettings => validate(&s.streams),
    streams: StreamSettings => validate(s.nats.create_aggregate_stream, s.nats.create_streams),
    consumer: ConsumerSettings => validate(),
    retention: RetentionSettings => validate(s.streams.duplicate_window_secs, s.consumer.ack_wait_ms, s.consumer.max_deliver),
    pipeline: PipelineSettings => validate(),
    relay: RelaySettings => validate(),
    effects: EffectSettings => validate(s.consumer.ack_wait_ms),
    scheduler: SchedulerSettings => validate(),
    ops: OpsSettings => validate(),
    tls: TlsSettings => validate(),
    programs: ProgramSettings => validate(),
    manifests: ManifestSettings => validate(s.mode),
}

impl Settings {
    /// Defaults, overlaid by `file` (if any), overlaid by `env`, then validated.
    pub fn load<I>(file: Option<&Path>, env: I) -> Result<Settings, SettingsError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut tree =
            serde_json::to_value(Settings::default()).map_err(|e| SettingsError::Invalid {
                field: "(defaults)".into(),
                problem: e.to_string(),
            })?;
        if let Some(path) = file {
            env::merge(&mut tree, env::read_file(path)?);
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("RUNNER_"))
            .collect();
        env.sort();
        // Which variable set which setting, to name it when the value does not fit.
        let mut from_env: Vec<(String, String)> = Vec::new();
        for (var, raw) in env {
            if let Some(path) = env::apply_env(&mut tree, &var, &raw)? {
                from_env.push((path, var));
            }
        }
        let settings: Settings = serde_path_to_error::deserialize(tree).map_err(|e| {
            let field = e.path().to_string();
            let source = e.into_inner();
            match (from_env.iter().find(|(path, _)| *path == field), file) {
                (Some((_, var)), _) => SettingsError::Env {
                    var: var.clone(),
                    problem: EnvProblem::Setting { field, source },
                },
                (None, Some(path)) => SettingsError::Parse {
                    path: path.to_path_buf(),
                    problem: FileProblem::Setting { field, source },
                },
                // Only the defaults were deserialised: no file or variable to name.
                (None, None) => SettingsError::Invalid {
                    field,
                    problem: source.to_string(),
                },
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads from the process: `--config`/`RUNNER_CONFIG` file and the real environment.
    pub fn from_process(config: Option<&Path>) -> Result<Settings, SettingsError> {
        let from_env = std::env::var_os("RUNNER_CONFIG").map(PathBuf::from);
        let file = config.map(Path::to_path_buf).or(from_env);
        Settings::load(file.as_deref(), std::env::vars())
    }

    /// Checks every section (each with what it needs of the others); the first problem
    /// found is the error, naming its field.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.validate_sections()
    }

    /// The tenant of messages that name none.
    pub fn default_tenant(&self) -> TenantId {
        TenantId::new(&self.tenancy.default_tenant).unwrap_or_default()
    }

    pub fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.consumer.ack_wait_ms)
    }
}

/// The validation error of `field` (its dotted path, `section.field`).
fn bad<T>(field: &str, problem: impl Into<String>) -> Result<T, SettingsError> {
    Err(SettingsError::Invalid {
        field: field.into(),
        problem: problem.into(),
    })
}

/// `field` must be between `min` and `max`, both included.
fn within(field: &str, value: u64, min: u64, max: u64) -> Result<(), SettingsError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    bad(
        field,
        format!("must be between {min} and {max} (got {value})"),
    )
}

/// A NATS name the Runner accepts (durable, bucket, shard): letters, digits, '_', '-'.
fn is_name(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
