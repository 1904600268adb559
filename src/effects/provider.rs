//! The one trait between the effect pool and the outside world. A provider gets the
//! decoded command and says how the call went; retries, timeouts between attempts, the
//! circuit breaker and result events are the pool's business, not the provider's.
//! Adding a provider is one file in `providers/` and one line in [`build`].

use serde_json::Value;

use crate::envelope::EffectCommand;

/// One call of an effect.
pub struct Call<'a> {
    pub command: &'a EffectCommand,
    /// The command as JSON, for expressions over `command` (URL, body mappings).
    pub json: &'a Value,
}

/// How a call went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done; the payload goes into the result event.
    Succeeded(Value),
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Worth another attempt (timeouts, connection errors, 429, 5xx). Such failures also
    /// count against the upstream's circuit breaker; permanent ones (a 4xx the request
    /// caused) do not.
    pub retryable: bool,
    /// Short machine-readable kind: `timeout`, `connection`, `http_503`, `circuit_open`…
    pub kind: String,
    pub message: String,
}

impl Failure {
    pub fn retryable(kind: &str, message: impl Into<String>) -> Failure {
        Failure {
            retryable: true,
            kind: kind.into(),
            message: message.into(),
        }
    }

    pub fn permanent(kind: &str, message: impl Into<String>) -> Failure {
        Failure {
            retryable: false,
            kind: kind.into(),
            message: message.into(),
        }
    }
}

pub trait Provider: Send + Sync {
    fn call(&self, call: &Call<'_>) -> Outcome;
}

/// The provider an effect definition names, built from its settings.
pub fn build(
    def_name: &str,
    provider: &str,
    settings: &Value,
    ctx: &super::manifest::LoadContext<'_>,
) -> Result<Box<dyn Provider>, String> {
    match provider {
        "noop" => super::providers::noop::Noop::from_settings(def_name, settings, false)
            .map(|p| Box::new(p) as Box<dyn Provider>),
        "log" => super::providers::noop::Noop::from_settings(def_name, settings, true)
            .map(|p| Box::new(p) as Box<dyn Provider>),
        "http" => super::providers::http::Http::from_settings(settings, ctx)
            .map(|p| Box::new(p) as Box<dyn Provider>),
        other => Err(format!(
            "unknown provider {other:?} (known: http, log, noop)"
        )),
    }
}
