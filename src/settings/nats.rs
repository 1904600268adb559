//! `[nats]`: the connection to the NATS server.

use serde::{Deserialize, Serialize};

use super::{bad, SettingsError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// The server; the blocking client connects once at start-up (a refused connection
    /// fails start-up at once) and then reconnects forever. It has no connect or API
    /// timeout of its own to configure: JetStream API requests time out after 5 s.
    pub url: String,
    /// Create `WORKFLOW_COMMANDS` / `WORKFLOW_EVENTS` when missing.
    pub create_streams: bool,
    /// Also create `AGGREGATE_EVENTS` when missing: for development and tests only, as
    /// the Aggregate nodes own that stream in production.
    pub create_aggregate_stream: bool,
    /// A connection the client believes up that answers no PING for this long is given
    /// up: the process exits (code 3) so that its orchestrator restarts it on a new
    /// connection; unacked work is redelivered. 0 = wait for the client's own check,
    /// which takes 4–6 minutes.
    pub unresponsive_exit_ms: u64,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            url: "nats://127.0.0.1:4222".into(),
            create_streams: true,
            create_aggregate_stream: false,
            unresponsive_exit_ms: 5_000,
        }
    }
}

impl NatsSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if !(self.url.starts_with("nats://") || self.url.starts_with("tls://")) {
            return bad(
                "nats.url",
                format!("must start with nats:// or tls:// (got {:?})", self.url),
            );
        }
        if self.unresponsive_exit_ms != 0 && !(1_000..=600_000).contains(&self.unresponsive_exit_ms)
        {
            return bad(
                "nats.unresponsive_exit_ms",
                format!(
                    "must be 0 (off) or between 1000 and 600000 (got {})",
                    self.unresponsive_exit_ms
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::tests::assert_each_rejected;

    #[test]
    fn validation_rejects_each_bad_field() {
        assert_each_rejected(&[
            ("RUNNER_NATS_URL", "http://x", "nats.url"),
            (
                "RUNNER_NATS_UNRESPONSIVE_EXIT_MS",
                "999",
                "nats.unresponsive_exit_ms",
            ),
        ]);
    }
}
