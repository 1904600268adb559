//! `[consumer]`: the saga consumers (durable pull consumers) and how they are fetched.

use serde::{Deserialize, Serialize};

use super::{bad, is_name, within, SettingsError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerSettings {
    /// Durable name prefix; the saga consumers are `{durable}-aggregate` and
    /// `{durable}-workflow`.
    pub durable: String,
    /// Messages delivered but not yet acked, per consumer (JetStream `max_ack_pending`).
    pub max_ack_pending: i64,
    pub ack_wait_ms: u64,
    /// Deliveries after which a message is quarantined instead of processed again.
    pub max_deliver: i64,
    /// Messages asked for per pull request (at most; see `fetch_max_bytes`).
    pub fetch_batch: usize,
    /// Bytes one pull request may bring in the worst case: a pull asks for no more
    /// messages than this many bytes of the largest the server takes (`max_payload`).
    /// (The client library sends no `max_bytes` with a pull, so the bound is kept by
    /// the count.)
    pub fetch_max_bytes: usize,
    /// How long a pull request waits for messages before it expires.
    pub fetch_wait_ms: u64,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            durable: "runner-saga".into(),
            max_ack_pending: 1024,
            ack_wait_ms: 30_000,
            max_deliver: 5,
            fetch_batch: 256,
            fetch_max_bytes: 64 * 1024 * 1024,
            fetch_wait_ms: 1_000,
        }
    }
}

impl ConsumerSettings {
    /// Messages one pull request asks for when no message may exceed `max_payload`
    /// bytes: `fetch_batch`, fewer when that many of the largest would pass
    /// `fetch_max_bytes`, and at least one.
    pub fn pull_batch(&self, max_payload: usize) -> usize {
        let by_bytes = self.fetch_max_bytes / max_payload.max(1);
        self.fetch_batch.min(by_bytes).max(1)
    }

    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.durable.is_empty() || !is_name(&self.durable) {
            return bad(
                "consumer.durable",
                format!(
                    "must be letters, digits, '_' or '-' (got {:?})",
                    self.durable
                ),
            );
        }
        if self.max_ack_pending < 1 {
            return bad(
                "consumer.max_ack_pending",
                format!("must be at least 1 (got {})", self.max_ack_pending),
            );
        }
        if self.ack_wait_ms < 100 {
            return bad(
                "consumer.ack_wait_ms",
                format!("must be at least 100 (got {})", self.ack_wait_ms),
            );
        }
        if self.max_deliver < 1 {
            return bad(
                "consumer.max_deliver",
                format!("must be at least 1 (got {})", self.max_deliver),
            );
        }
        within("consumer.fetch_batch", self.fetch_batch as u64, 1, 10_000)?;
        if self.fetch_batch as i64 > self.max_ack_pending {
            return bad(
                "consumer.fetch_batch",
                format!(
                    "must not exceed consumer.max_ack_pending ({})",
                    self.max_ack_pending
                ),
            );
        }
        within(
            "consumer.fetch_max_bytes",
            self.fetch_max_bytes as u64,
            1024 * 1024,
            4 * 1024 * 1024 * 1024,
        )?;
        within("consumer.fetch_wait_ms", self.fetch_wait_ms, 10, 60_000)?;
        if self.fetch_wait_ms >= self.ack_wait_ms {
            return bad(
                "consumer.fetch_wait_ms",
                format!(
                    "must be shorter than consumer.ack_wait_ms ({})",
                    self.ack_wait_ms
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::tests::{assert_each_rejected, env, invalid_field};
    use crate::settings::Settings;

    #[test]
    fn validation_rejects_each_bad_field() {
        assert_each_rejected(&[
            ("RUNNER_CONSUMER_DURABLE", "a.b", "consumer.durable"),
            (
                "RUNNER_CONSUMER_MAX_ACK_PENDING",
                "0",
                "consumer.max_ack_pending",
            ),
            ("RUNNER_CONSUMER_ACK_WAIT_MS", "5", "consumer.ack_wait_ms"),
            ("RUNNER_CONSUMER_MAX_DELIVER", "0", "consumer.max_deliver"),
            ("RUNNER_CONSUMER_FETCH_BATCH", "0", "consumer.fetch_batch"),
            (
                "RUNNER_CONSUMER_FETCH_MAX_BYTES",
                "1000",
                "consumer.fetch_max_bytes",
            ),
            (
                "RUNNER_CONSUMER_FETCH_WAIT_MS",
                "1",
                "consumer.fetch_wait_ms",
            ),
            (
                "RUNNER_CONSUMER_FETCH_WAIT_MS",
                "40000",
                "consumer.fetch_wait_ms",
            ),
        ]);
        let err = Settings::load(
            None,
            env(&[
                ("RUNNER_CONSUMER_FETCH_BATCH", "500"),
                ("RUNNER_CONSUMER_MAX_ACK_PENDING", "100"),
            ]),
        )
        .unwrap_err();
        assert_eq!(invalid_field(err), "consumer.fetch_batch");
    }

    #[test]
    fn a_pull_asks_for_no_more_than_fetch_max_bytes_of_the_largest_messages() {
        let c = super::ConsumerSettings::default();
        // 64 MiB of 1 MiB messages: 64, not 256.
        assert_eq!(c.pull_batch(1024 * 1024), 64);
        // Small messages: fetch_batch.
        assert_eq!(c.pull_batch(64 * 1024), 256);
        // A payload over the whole budget still pulls one.
        assert_eq!(c.pull_batch(usize::MAX), 1);
    }
}
