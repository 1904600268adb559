//! The one trait between the effect pool and the outside world. A provider gets the
//! decoded command and says how the call went; retries, timeouts between attempts, the
//! circuit breaker and result events are the pool's business, not the provider's.
//! Adding a provider is one file in `providers/` and one line in [`build`].

use serde_json::Value;

use crate::envelope::EffectCommand;

/// One call of an effect.
pub struct Call<'a> {
    pub command: &'a EffectCommand,
    /// The command's body as it came; parsed into JSON only for a provider that asks
    /// ([`Call::json`]): building that tree for every command cost the noop pool a
    /// fifth of its time, and most providers never look at it.
    raw: &'a [u8],
    json: std::cell::OnceCell<Result<Value, serde_json::Error>>,
}

impl<'a> Call<'a> {
    pub fn new(command: &'a EffectCommand, raw: &'a [u8]) -> Call<'a> {
        Call {
            command,
            raw,
            json: std::cell::OnceCell::new(),
        }
    }

    /// The whole command as JSON, unknown fields included, for expressions over
    /// `command` (URL, body mappings); parsed once, on first use. A body the command's
    /// own decoding took may still not be a JSON tree (a lone surrogate escape in a field
    /// it ignores): that call fails for good, naming why.
    pub fn json(&self) -> Result<&Value, Failure> {
        self.json
            .get_or_init(|| serde_json::from_slice(self.raw))
            .as_ref()
            .map_err(|e| {
                Failure::invalid("bad_command", format!("the command is not valid JSON: {e}"))
            })
    }
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
    /// The command itself made the request impossible (a header value, a URL, a body
    /// it cannot form): the upstream was never asked, so this is no news about it and
    /// the circuit breaker ignores it. Always permanent.
    pub command_fault: bool,
}

impl Failure {
    pub fn retryable(kind: &str, message: impl Into<String>) -> Failure {
        Failure {
            retryable: true,
            kind: kind.into(),
            message: message.into(),
            command_fault: false,
        }
    }

    pub fn permanent(kind: &str, message: impl Into<String>) -> Failure {
        Failure {
            retryable: false,
            kind: kind.into(),
            message: message.into(),
            command_fault: false,
        }
    }

    /// A permanent failure the command caused before any request went out.
    pub fn invalid(kind: &str, message: impl Into<String>) -> Failure {
        Failure {
            command_fault: true,
            ..Failure::permanent(kind, message)
        }
    }
}

pub trait Provider: Send + Sync {
    fn call(&self, call: &Call<'_>) -> Outcome;
}

/// Why an effect's provider could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("unknown provider {0:?} (known: http, log, noop)")]
    Unknown(String),
    #[error(transparent)]
    Noop(#[from] super::providers::noop::NoopSettingsError),
    #[error(transparent)]
    Http(#[from] super::providers::http::HttpSettingsError),
}

/// The provider an effect definition names, built from its settings.
pub fn build(
    def_name: &str,
    provider: &str,
    settings: &Value,
    ctx: &super::manifest::LoadContext<'_>,
) -> Result<Box<dyn Provider>, ProviderError> {
    Ok(match provider {
        "noop" => Box::new(super::providers::noop::Noop::from_settings(
            def_name, settings, false,
        )?),
        "log" => Box::new(super::providers::noop::Noop::from_settings(
            def_name, settings, true,
        )?),
        "http" => Box::new(super::providers::http::Http::from_settings(settings, ctx)?),
        other => return Err(ProviderError::Unknown(other.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMAND: &str = r#"{"tenant_id": "acme", "command_id": "c-1", "effect_name": "charge",
        "payload": {"total": 4200}, "issued_at": "2026-11-27T10:00:00Z""#;

    #[test]
    fn the_json_tree_keeps_fields_the_command_ignores() {
        let raw = format!(r#"{COMMAND}, "extra": {{"x": 1}}}}"#);
        let command: EffectCommand = serde_json::from_str(&raw).unwrap();
        let call = Call::new(&command, raw.as_bytes());
        let json = call.json().unwrap();
        assert_eq!(json["extra"]["x"], 1);
        assert_eq!(json["payload"]["total"], 4200);
        // Parsed once: the second call hands out the same tree.
        assert!(std::ptr::eq(json, call.json().unwrap()));
    }

    #[test]
    fn a_body_the_command_took_but_no_json_tree_holds_fails_for_good() {
        // The parser skips an ignored field without decoding its escapes; the tree
        // cannot hold a lone surrogate.
        let raw = format!(r#"{COMMAND}, "extra": "\ud800"}}"#);
        let command: EffectCommand = serde_json::from_str(&raw).unwrap();
        let failure = Call::new(&command, raw.as_bytes()).json().unwrap_err();
        assert!(!failure.retryable);
        assert_eq!(failure.kind, "bad_command");
        assert!(
            failure.message.contains("not valid JSON"),
            "{}",
            failure.message
        );
    }
}
