//! `[pipeline]`: the channels between stages and the group commit.

use serde::{Deserialize, Serialize};

use super::{bad, within, SettingsError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// Capacity, in batches, of each channel between stages.
    pub channel_capacity: usize,
    /// Most messages plus transitions in one LMDB write transaction (group commit): a
    /// message counts 1, and each transition it made 1 more.
    pub commit_batch_max: usize,
    /// Largest message body accepted (events, and commands on the effect side); larger
    /// ones are quarantined, never executed.
    pub max_message_bytes: usize,
    /// Largest publish (headers and body) when the NATS server states no `max_payload`
    /// in its INFO; the server's own figure is used when it does.
    pub max_payload_bytes: usize,
    /// Largest `metadata` (serialised) an event, result or reminder may carry; larger
    /// ones are quarantined at decode. Commands and reminders copy the causing event's
    /// metadata whole, so this bounds what each copy adds.
    pub max_metadata_bytes: usize,
    /// How often a stopped intake probes the store for writability again.
    pub storage_retry_ms: u64,
    /// How long the commit stage waits for more work after the first batch when the
    /// group is small (0 = commit at once). Each LMDB commit is an fsync whose CPU cost
    /// does not depend on its size, so at low load a linger trades this much latency per
    /// hop for fewer, fuller commits.
    pub commit_linger_us: u64,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            channel_capacity: 16,
            commit_batch_max: 1024,
            max_message_bytes: 1024 * 1024,
            max_payload_bytes: crate::nats_io::DEFAULT_MAX_PAYLOAD,
            max_metadata_bytes: 16 * 1024,
            storage_retry_ms: 1_000,
            commit_linger_us: 0,
        }
    }
}

impl PipelineSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        within(
            "pipeline.channel_capacity",
            self.channel_capacity as u64,
            1,
            4096,
        )?;
        within(
            "pipeline.commit_batch_max",
            self.commit_batch_max as u64,
            1,
            100_000,
        )?;
        within(
            "pipeline.max_message_bytes",
            self.max_message_bytes as u64,
            1024,
            64 * 1024 * 1024,
        )?;
        within(
            "pipeline.max_payload_bytes",
            self.max_payload_bytes as u64,
            1024,
            64 * 1024 * 1024,
        )?;
        within(
            "pipeline.max_metadata_bytes",
            self.max_metadata_bytes as u64,
            256,
            1024 * 1024,
        )?;
        if self.storage_retry_ms == 0 {
            return bad("pipeline.storage_retry_ms", "must be greater than 0");
        }
        if self.commit_linger_us > 100_000 {
            return bad(
                "pipeline.commit_linger_us",
                format!(
                    "must be at most 100000 (100 ms; got {})",
                    self.commit_linger_us
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
            (
                "RUNNER_PIPELINE_CHANNEL_CAPACITY",
                "0",
                "pipeline.channel_capacity",
            ),
            (
                "RUNNER_PIPELINE_COMMIT_BATCH_MAX",
                "0",
                "pipeline.commit_batch_max",
            ),
            (
                "RUNNER_PIPELINE_MAX_MESSAGE_BYTES",
                "10",
                "pipeline.max_message_bytes",
            ),
            (
                "RUNNER_PIPELINE_MAX_PAYLOAD_BYTES",
                "100",
                "pipeline.max_payload_bytes",
            ),
            (
                "RUNNER_PIPELINE_MAX_METADATA_BYTES",
                "100",
                "pipeline.max_metadata_bytes",
            ),
            (
                "RUNNER_PIPELINE_STORAGE_RETRY_MS",
                "0",
                "pipeline.storage_retry_ms",
            ),
            (
                "RUNNER_PIPELINE_COMMIT_LINGER_US",
                "100001",
                "pipeline.commit_linger_us",
            ),
        ]);
    }
}
