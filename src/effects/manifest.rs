//! Effect manifests (docs/contracts.md §4): each effect names its provider and the policy the
//! pool applies around it.
//!
//! ```yaml
//! effects:
//!   - name: charge_card
//!     provider: http            # http | noop | log
//!     timeout_ms: 5000          # one attempt
//!     concurrency: 8            # calls in flight at once
//!     retry: { max_attempts: 3, backoff_initial_ms: 200, backoff_max_ms: 5000 }
//!     breaker: { failure_threshold: 5, open_ms: 30000, half_open_probes: 1 }
//!     http: { url: "http://payments:8080/v1/charges", headers: { authorization: "secret:payments_token" } }
//! ```
//!
//! Which failures are retried is the provider's call (for `http`: timeouts, connection
//! errors, 408, 429 and 5xx unless `retry_statuses` says otherwise).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::breaker::{Breaker, BreakerPolicy};
use super::provider::{self, Provider, ProviderError};
use crate::manifest::{read_document, DocumentError, MAX_RETENTION_SECS};
use crate::program::Limits;
use crate::types::{EffectName, IdError};

/// Why the effect manifests could not be loaded; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum EffectManifestError {
    #[error("{file}: {source}")]
    Document {
        file: String,
        #[source]
        source: DocumentError,
    },
    /// The document is not an effect manifest (unknown or missing fields, wrong types).
    #[error("{file}: {source}")]
    Shape {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: effect {name} is defined twice")]
    Duplicate { file: String, name: String },
    /// `label` is "effect NAME", or "effect #N" for one without a name.
    #[error("{file}: {label}: {source}")]
    Effect {
        file: String,
        label: String,
        // Boxed: a program's load error inside is large.
        #[source]
        source: Box<EffectProblem>,
    },
}

/// What is wrong with one effect of a manifest.
#[derive(Debug, thiserror::Error)]
pub enum EffectProblem {
    #[error(transparent)]
    Name(#[from] IdError),
    #[error("{field} must be between {min} and {max} (got {got})")]
    OutOfRange {
        field: &'static str,
        min: u64,
        max: u64,
        got: u64,
    },
    #[error("retention_secs must be between 1 and {MAX_RETENTION_SECS} (got {0})")]
    Retention(u64),
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// What providers need while they are built.
pub struct LoadContext<'a> {
    /// Names the file and effect in errors.
    pub origin: &'a str,
    pub secrets_dir: &'a Path,
    pub timeout: Duration,
    pub limits: &'a Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// A loaded effect: its provider and the policy around it.
pub struct EffectDef {
    pub name: EffectName,
    pub provider_name: String,
    pub provider: Box<dyn Provider>,
    pub timeout: Duration,
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// One breaker per effect: an effect is one upstream.
    pub breaker: Breaker,
    /// Holds calls beyond `concurrency` back.
    pub limit: super::limit::Limit,
    /// How long its completion records are kept (`retention_secs`; `None`: the settings'
    /// `retention.effect_records_secs`).
    pub retention: Option<Duration>,
}

impl std::fmt::Debug for EffectDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EffectDef")
            .field("name", &self.name)
            .field("provider", &self.provider_name)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Every effect of the configured manifests, by name.
#[derive(Debug, Default)]
pub struct EffectCatalog {
    pub effects: BTreeMap<String, Arc<EffectDef>>,
}

impl EffectCatalog {
    pub fn load(
        paths: &[std::path::PathBuf],
        secrets_dir: &Path,
        limits: &Limits,
    ) -> Result<EffectCatalog, EffectManifestError> {
        let mut catalog = EffectCatalog::default();
        for path in paths {
            for def in load_file(path, secrets_dir, limits)? {
                let name = def.name.to_string();
                if catalog
                    .effects
                    .insert(name.clone(), Arc::new(def))
                    .is_some()
                {
                    return Err(EffectManifestError::Duplicate {
                        file: path.display().to_string(),
                        name,
                    });
                }
            }
        }
        Ok(catalog)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<EffectDef>> {
        self.effects.get(name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    effects: Vec<RawEffect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEffect {
    name: String,
    provider: String,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    breaker: RawBreaker,
    #[serde(default)]
    http: Value,
    #[serde(default)]
    noop: Value,
    #[serde(default)]
    log: Value,
    #[serde(default)]
    retention_secs: Option<u64>,
}

fn default_timeout() -> u64 {
    10_000
}
fn default_concurrency() -> usize {
    8
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRetry {
    max_attempts: u32,
    backoff_initial_ms: u64,
    backoff_max_ms: u64,
}

impl Default for RawRetry {
    fn default() -> Self {
        RawRetry {
            max_attempts: 3,
            backoff_initial_ms: 200,
            backoff_max_ms: 10_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBreaker {
    failure_threshold: u32,
    open_ms: u64,
    half_open_probes: u32,
}

impl Default for RawBreaker {
    fn default() -> Self {
        RawBreaker {
            failure_threshold: 5,
            open_ms: 30_000,
            half_open_probes: 1,
        }
    }
}

/// Loads one manifest file; errors name the file and the effect.
pub fn load_file(
    path: &Path,
    secrets_dir: &Path,
    limits: &Limits,
) -> Result<Vec<EffectDef>, EffectManifestError> {
    let file = path.display().to_string();
    let doc = read_document(path).map_err(|source| EffectManifestError::Document {
        file: file.clone(),
        source,
    })?;
    let raw: RawManifest =
        serde_json::from_value(doc).map_err(|source| EffectManifestError::Shape {
            file: file.clone(),
            source,
        })?;
    raw.effects
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let label = if e.name.is_empty() {
                format!("effect #{}", i + 1)
            } else {
                format!("effect {}", e.name)
            };
            compile(e, &format!("{file}: {label}"), secrets_dir, limits).map_err(|source| {
                EffectManifestError::Effect {
                    file: file.clone(),
                    label,
                    source: Box::new(source),
                }
            })
        })
        .collect()
}

fn compile(
    raw: RawEffect,
    origin: &str,
    secrets_dir: &Path,
    limits: &Limits,
) -> Result<EffectDef, EffectProblem> {
    let name = EffectName::new(&raw.name)?;
    // Every count and duration is bounded, so a typo is a load error. (`breaker.open_ms`
    // had no bound: 18446744073709551615 loaded, and the first few failures then opened
    // the breaker for 584 million years — the effect silently off until a restart.)
    let checks: [(&'static str, u64, u64, u64); 8] = [
        ("timeout_ms", raw.timeout_ms, 1, 3_600_000),
        ("concurrency", raw.concurrency as u64, 1, 1_024),
        ("retry.max_attempts", raw.retry.max_attempts.into(), 1, 100),
        (
            "retry.backoff_initial_ms",
            raw.retry.backoff_initial_ms,
            1,
            3_600_000,
        ),
        (
            "retry.backoff_max_ms",
            raw.retry.backoff_max_ms,
            raw.retry.backoff_initial_ms,
            86_400_000,
        ),
        (
            "breaker.failure_threshold",
            raw.breaker.failure_threshold.into(),
            1,
            10_000,
        ),
        ("breaker.open_ms", raw.breaker.open_ms, 0, 86_400_000),
        (
            "breaker.half_open_probes",
            raw.breaker.half_open_probes.into(),
            1,
            1_000,
        ),
    ];
    for (field, got, min, max) in checks {
        if !(min..=max).contains(&got) {
            return Err(EffectProblem::OutOfRange {
                field,
                min,
                max,
                got,
            });
        }
    }
    if let Some(secs) = raw.retention_secs {
        if !(1..=MAX_RETENTION_SECS).contains(&secs) {
            return Err(EffectProblem::Retention(secs));
        }
    }
    let timeout = Duration::from_millis(raw.timeout_ms);
    let ctx = LoadContext {
        origin,
        secrets_dir,
        timeout,
        limits,
    };
    let settings = match raw.provider.as_str() {
        "http" => &raw.http,
        "noop" => &raw.noop,
        "log" => &raw.log,
        _ => &Value::Null,
    };
    let provider = provider::build(name.as_str(), &raw.provider, settings, &ctx)?;
    Ok(EffectDef {
        name,
        provider_name: raw.provider,
        provider,
        timeout,
        concurrency: raw.concurrency,
        retry: RetryPolicy {
            max_attempts: raw.retry.max_attempts,
            backoff_initial: Duration::from_millis(raw.retry.backoff_initial_ms),
            backoff_max: Duration::from_millis(raw.retry.backoff_max_ms),
        },
        breaker: Breaker::new(BreakerPolicy {
            failure_threshold: raw.breaker.failure_threshold,
            open_for: Duration::from_millis(raw.breaker.open_ms),
            half_open_probes: raw.breaker.half_open_probes,
        }),
        limit: super::limit::Limit::new(raw.concurrency),
        retention: raw.retention_secs.map(Duration::from_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::TempDir;

    fn load(text: &str) -> Result<EffectCatalog, EffectManifestError> {
        let dir = TempDir::new("effects").unwrap();
        let path = dir.path().join("effects.yaml");
        std::fs::write(&path, text).unwrap();
        EffectCatalog::load(&[path], dir.path(), &Limits::default())
    }

    #[test]
    fn the_example_loads_with_its_policy() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("manifests/example/effects.yaml");
        let catalog =
            EffectCatalog::load(&[path], Path::new("/nonexistent"), &Limits::default()).unwrap();
        let charge = catalog.get("charge_card").expect("charge_card");
        assert_eq!(charge.provider_name, "log");
        assert_eq!(charge.retry.max_attempts, 4);
        assert_eq!(charge.timeout, Duration::from_secs(5));
        assert_eq!(charge.concurrency, 8);
    }

    #[test]
    fn defaults_apply_when_a_policy_is_left_out() {
        let catalog = load("effects:\n  - name: note\n    provider: noop\n").unwrap();
        let note = catalog.get("note").unwrap();
        assert_eq!(note.timeout, Duration::from_secs(10));
        assert_eq!(note.retry.max_attempts, 3);
        assert_eq!(note.concurrency, 8);
    }

    #[test]
    fn errors_name_the_file_the_effect_and_the_problem() {
        for (text, needle) in [
            ("effects:\n  - name: x\n    provider: smtp\n", "effect x: unknown provider \"smtp\""),
            ("effects:\n  - name: x\n    provider: noop\n  - name: x\n    provider: noop\n", "effect x is defined twice"),
            ("effects:\n  - name: x\n    provider: noop\n    timeout_ms: 0\n", "timeout_ms must be between"),
            ("effects:\n  - name: x\n    provider: noop\n    retry: { max_attempts: 0 }\n", "retry.max_attempts"),
            ("effects:\n  - name: x\n    provider: noop\n    retry: { backoff_initial_ms: 500, backoff_max_ms: 100 }\n", "retry.backoff_max_ms"),
            ("effects:\n  - name: x\n    provider: noop\n    breaker: { open_ms: 18446744073709551615 }\n", "breaker.open_ms must be between 0 and 86400000"),
            ("effects:\n  - name: x\n    provider: noop\n    colour: red\n", "unknown field"),
            ("effects:\n  - name: \"a b\"\n    provider: noop\n", "effect a b:"),
            ("effects:\n  - name: x\n    provider: http\n    http: { url: \"http://h\", headers: { a: \"secret:nope\" } }\n", "secret nope"),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains("effects.yaml"), "{err}");
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
    }
}
