//! `[relay]`: the outbox relay.

use serde::{Deserialize, Serialize};

use super::{bad, within, SettingsError};

/// The outbox relay: effect commands to `WORKFLOW_COMMANDS`, aggregate commands to the
/// Gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySettings {
    /// Base URL of the Gateway that accepts aggregate commands.
    pub gateway_url: String,
    /// Path of the command endpoint under `gateway_url`.
    pub commands_path: String,
    /// Whole-request timeout of one Gateway call (connect, send, answer).
    pub gateway_timeout_ms: u64,
    /// Threads making Gateway calls: the most Gateway calls in flight.
    pub gateway_workers: usize,
    /// Effect-command publishes awaiting their JetStream ack at once.
    pub publish_window: usize,
    /// How long one publish waits for its ack before it is re-sent (same `Nats-Msg-Id`).
    pub publish_timeout_ms: u64,
    /// Dispatches in flight for one tenant (both destinations together), so a tenant
    /// with a backlog cannot take every slot.
    pub max_in_flight_per_tenant: usize,
    /// Outbox items one tenant may have waiting in memory; more stay in the store until
    /// a scan picks them up.
    pub queue_per_tenant: usize,
    /// Tenants with items waiting in memory at once.
    pub max_tenants: usize,
    /// Bytes of envelopes held in memory, all tenants together: once reached, no more
    /// items are taken from the store until sends free some (the item counts above
    /// times the largest envelope would be far beyond a container's memory).
    pub max_held_bytes: usize,
    /// How long the relay keeps retrying one item after transient failures (Gateway
    /// timeouts, connection errors, 408, 429, 5xx), counted from its first attempt; then
    /// it is dead-lettered and its saga hears `timed_out` (the destination may have taken
    /// it). Outages of NATS itself do not count: they pause the lane instead. The clock
    /// lives in memory: a restart starts it again.
    pub retry_budget_secs: u64,
    /// First retry delay; doubles per attempt, with jitter, up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// How often the store is scanned for items no notice announced (a crash, a full
    /// channel); also done at start-up.
    pub scan_interval_ms: u64,
    /// Outbox items read per scan step.
    pub scan_batch: usize,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            gateway_url: "http://127.0.0.1:8080".into(),
            commands_path: "/v1/commands".into(),
            gateway_timeout_ms: 5_000,
            gateway_workers: 8,
            publish_window: 512,
            publish_timeout_ms: 5_000,
            max_in_flight_per_tenant: 256,
            queue_per_tenant: 1_024,
            max_tenants: 1_024,
            max_held_bytes: 64 * 1024 * 1024,
            retry_budget_secs: 6 * 3_600,
            backoff_initial_ms: 200,
            backoff_max_ms: 60_000,
            scan_interval_ms: 10_000,
            scan_batch: 256,
        }
    }
}

impl RelaySettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if !(self.gateway_url.starts_with("http://") || self.gateway_url.starts_with("https://")) {
            return bad(
                "relay.gateway_url",
                format!(
                    "must start with http:// or https:// (got {:?})",
                    self.gateway_url
                ),
            );
        }
        if !self.commands_path.starts_with('/') {
            return bad(
                "relay.commands_path",
                format!("must start with '/' (got {:?})", self.commands_path),
            );
        }
        let ranges: [(&str, u64, u64, u64); 12] = [
            (
                "relay.gateway_timeout_ms",
                self.gateway_timeout_ms,
                10,
                600_000,
            ),
            ("relay.gateway_workers", self.gateway_workers as u64, 1, 256),
            (
                "relay.publish_window",
                self.publish_window as u64,
                1,
                65_536,
            ),
            (
                "relay.publish_timeout_ms",
                self.publish_timeout_ms,
                10,
                600_000,
            ),
            (
                "relay.max_in_flight_per_tenant",
                self.max_in_flight_per_tenant as u64,
                1,
                65_536,
            ),
            (
                "relay.queue_per_tenant",
                self.queue_per_tenant as u64,
                1,
                1_000_000,
            ),
            ("relay.max_tenants", self.max_tenants as u64, 1, 1_000_000),
            (
                "relay.max_held_bytes",
                self.max_held_bytes as u64,
                1024 * 1024,
                16 * 1024 * 1024 * 1024,
            ),
            (
                "relay.retry_budget_secs",
                self.retry_budget_secs,
                1,
                7 * 86_400,
            ),
            (
                "relay.backoff_initial_ms",
                self.backoff_initial_ms,
                1,
                3_600_000,
            ),
            (
                "relay.scan_interval_ms",
                self.scan_interval_ms,
                100,
                3_600_000,
            ),
            ("relay.scan_batch", self.scan_batch as u64, 1, 100_000),
        ];
        for (field, value, min, max) in ranges {
            within(field, value, min, max)?;
        }
        if !(self.backoff_initial_ms..=86_400_000).contains(&self.backoff_max_ms) {
            return bad(
                "relay.backoff_max_ms",
                format!(
                    "must be between relay.backoff_initial_ms ({}) and 86400000 (got {})",
                    self.backoff_initial_ms, self.backoff_max_ms
                ),
            );
        }
        Ok(())
    }

    /// The Gateway's command endpoint.
    pub fn commands_url(&self) -> String {
        format!(
            "{}{}",
            self.gateway_url.trim_end_matches('/'),
            self.commands_path
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::tests::assert_each_rejected;

    #[test]
    fn validation_rejects_each_bad_field() {
        assert_each_rejected(&[
            (
                "RUNNER_RELAY_GATEWAY_URL",
                "gateway:8080",
                "relay.gateway_url",
            ),
            ("RUNNER_RELAY_COMMANDS_PATH", "v1", "relay.commands_path"),
            ("RUNNER_RELAY_GATEWAY_WORKERS", "0", "relay.gateway_workers"),
            ("RUNNER_RELAY_PUBLISH_WINDOW", "0", "relay.publish_window"),
            (
                "RUNNER_RELAY_RETRY_BUDGET_SECS",
                "0",
                "relay.retry_budget_secs",
            ),
            (
                "RUNNER_RELAY_RETRY_BUDGET_SECS",
                "604801",
                "relay.retry_budget_secs",
            ),
            ("RUNNER_RELAY_BACKOFF_MAX_MS", "1", "relay.backoff_max_ms"),
            (
                "RUNNER_RELAY_SCAN_INTERVAL_MS",
                "5",
                "relay.scan_interval_ms",
            ),
        ]);
    }
}
