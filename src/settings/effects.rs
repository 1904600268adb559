//! `[effects]`: the effect worker pool and its execution claims.

use serde::{Deserialize, Serialize};

use super::{bad, is_name, within, SettingsError};

/// The effect worker pool (`effect` and `combined` modes). Each effect's own policy
/// (timeout, retries, breaker, concurrency) is in its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EffectSettings {
    /// Worker threads: effect calls in flight at once, over all effects.
    pub workers: usize,
    /// NATS KV bucket of execution claims, shared by every effect replica: the gate
    /// that keeps a command from running twice across hosts. "" = local records only
    /// (one effect replica).
    pub claims_bucket: String,
    /// How long an unfinished claim keeps other replicas from taking the command over
    /// (its holder may still be calling). Longer than the longest effect run.
    pub claim_lease_ms: u64,
    /// How long the claims bucket keeps a finished claim (bucket `max_age`): longer
    /// than a command can be redelivered.
    pub claims_ttl_secs: u64,
    /// A command on an effect subject that no process has taken for this long is
    /// reported (log line, `runner_effect_commands_unclaimed`, `GET
    /// /admin/effects/unclaimed`): no running process defines its effect, or those that
    /// do fall this far behind.
    pub unclaimed_alert_secs: u64,
}

impl Default for EffectSettings {
    fn default() -> Self {
        EffectSettings {
            workers: 64,
            claims_bucket: "RUNNER_EFFECT_CLAIMS".into(),
            claim_lease_ms: 5 * 60 * 1000,
            claims_ttl_secs: 7 * 24 * 60 * 60,
            unclaimed_alert_secs: 300,
        }
    }
}

impl EffectSettings {
    /// `ack_wait_ms` is `consumer.ack_wait_ms`, the least a claim's lease may be.
    pub(super) fn validate(&self, ack_wait_ms: u64) -> Result<(), SettingsError> {
        within("effects.workers", self.workers as u64, 1, 1024)?;
        let bucket = &self.claims_bucket;
        if !is_name(bucket) {
            return bad(
                "effects.claims_bucket",
                format!("a bucket name is letters, digits, '_' and '-' (got {bucket:?})"),
            );
        }
        if self.claim_lease_ms < ack_wait_ms {
            return bad(
                "effects.claim_lease_ms",
                format!(
                    "must be at least consumer.ack_wait_ms ({}), got {}",
                    ack_wait_ms, self.claim_lease_ms
                ),
            );
        }
        if self.claims_ttl_secs < 60 {
            return bad(
                "effects.claims_ttl_secs",
                format!("must be at least 60 (got {})", self.claims_ttl_secs),
            );
        }
        within(
            "effects.unclaimed_alert_secs",
            self.unclaimed_alert_secs,
            1,
            7 * 24 * 60 * 60,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::tests::assert_each_rejected;

    #[test]
    fn validation_rejects_each_bad_field() {
        assert_each_rejected(&[
            ("RUNNER_EFFECTS_WORKERS", "0", "effects.workers"),
            (
                "RUNNER_EFFECTS_CLAIMS_BUCKET",
                "a.b",
                "effects.claims_bucket",
            ),
            (
                "RUNNER_EFFECTS_CLAIM_LEASE_MS",
                "10",
                "effects.claim_lease_ms",
            ),
            (
                "RUNNER_EFFECTS_CLAIMS_TTL_SECS",
                "1",
                "effects.claims_ttl_secs",
            ),
            (
                "RUNNER_EFFECTS_UNCLAIMED_ALERT_SECS",
                "0",
                "effects.unclaimed_alert_secs",
            ),
        ]);
    }
}
