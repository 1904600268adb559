//! `noop` and `log`: succeed at once with a fixed payload (`result`, default `{}`), for
//! demos, tests and benchmarks. `log` also writes one line per call naming the command
//! (ids only: payloads may hold personal data).

use serde::Deserialize;
use serde_json::Value;

use crate::effects::provider::{Call, Outcome, Provider};

#[derive(Debug)]
pub struct Noop {
    effect: String,
    result: Value,
    log: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    result: Option<Value>,
}

/// The `noop:` / `log:` settings of an effect are not what these providers take.
#[derive(Debug, thiserror::Error)]
#[error("settings: {0}")]
pub struct NoopSettingsError(#[source] serde_json::Error);

impl Noop {
    pub fn from_settings(
        effect: &str,
        settings: &Value,
        log: bool,
    ) -> Result<Noop, NoopSettingsError> {
        let s: Settings = if settings.is_null() {
            Settings::default()
        } else {
            serde_json::from_value(settings.clone()).map_err(NoopSettingsError)?
        };
        Ok(Noop {
            effect: effect.to_string(),
            result: s
                .result
                .unwrap_or_else(|| Value::Object(Default::default())),
            log,
        })
    }
}

impl Provider for Noop {
    fn call(&self, call: &Call<'_>) -> Outcome {
        if self.log {
            let c = call.command;
            let correlation = c.meta(crate::envelope::meta::CORRELATION_ID).unwrap_or("");
            let trace_id = c.trace_id().unwrap_or("");
            log::info!(tenant_id = c.tenant_id.as_str(), correlation_id = correlation,
                trace_id = trace_id, effect = self.effect.as_str(), command_id = c.command_id.as_str();
                "effect called (log provider)");
        }
        Outcome::Succeeded(self.result.clone())
    }
}
