//! `[retention]`: how long finished instances, dedupe records and effect completion
//! records are kept before the sweep deletes them.

use serde::{Deserialize, Serialize};

use super::{bad, within, SettingsError};

/// The shortest a dedupe or completion record may be kept, whatever the duplicate
/// window.
const MIN_RECORD_SECS: u64 = 60;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// How long a finished (completed, failed, faulted) instance stays queryable after
    /// it finished. 0 = removed at once, leaving only its tombstone.
    pub finished_instances_secs: u64,
    /// The saga dedupe horizon: how long an applied event is remembered (the markers of
    /// an active instance's events; a finished instance's record or tombstone, which
    /// rejects its events). Replays may not reach further back without an explicit
    /// confirmation.
    pub dedupe_secs: u64,
    /// How long an effect's completion record (the gate that stops a redelivered
    /// command being called again) is kept.
    pub effect_records_secs: u64,
    /// Most expired records deleted in one transaction.
    pub sweep_batch: usize,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            finished_instances_secs: 24 * 60 * 60,
            dedupe_secs: 24 * 60 * 60,
            effect_records_secs: 24 * 60 * 60,
            sweep_batch: 512,
        }
    }
}

impl RetentionSettings {
    /// `duplicate_window_secs` is `streams.duplicate_window_secs`, the least the dedupe
    /// and completion records may be kept.
    pub(super) fn validate(&self, duplicate_window_secs: u64) -> Result<(), SettingsError> {
        let floor = duplicate_window_secs.max(MIN_RECORD_SECS);
        if self.dedupe_secs < floor {
            return bad(
                "retention.dedupe_secs",
                format!(
                    "must be at least streams.duplicate_window_secs ({duplicate_window_secs}) and at least {MIN_RECORD_SECS} (got {}): an event re-published inside the stream's duplicate window must still find its marker",
                    self.dedupe_secs
                ),
            );
        }
        if self.effect_records_secs < floor {
            return bad(
                "retention.effect_records_secs",
                format!(
                    "must be at least streams.duplicate_window_secs ({duplicate_window_secs}) and at least {MIN_RECORD_SECS} (got {}): a command the outbox re-publishes inside the stream's duplicate window must still find its completion record",
                    self.effect_records_secs
                ),
            );
        }
        within("retention.sweep_batch", self.sweep_batch as u64, 1, 100_000)
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::tests::{assert_each_rejected, env};
    use crate::settings::{Settings, SettingsError};

    #[test]
    fn records_outlive_the_duplicate_window() {
        // Shorter than the stream's duplicate window (7200 s by default).
        let err =
            Settings::load(None, env(&[("RUNNER_RETENTION_DEDUPE_SECS", "3600")])).unwrap_err();
        assert!(
            matches!(&err, SettingsError::Invalid { field, problem }
                if field == "retention.dedupe_secs"
                    && problem.contains("streams.duplicate_window_secs (7200)")
                    && problem.contains("must still find its marker")),
            "{err}"
        );
        assert_each_rejected(&[(
            "RUNNER_RETENTION_EFFECT_RECORDS_SECS",
            "3600",
            "retention.effect_records_secs",
        )]);
        // As long as the window is enough.
        let s = Settings::load(
            None,
            env(&[
                ("RUNNER_RETENTION_DEDUPE_SECS", "7200"),
                ("RUNNER_RETENTION_EFFECT_RECORDS_SECS", "7200"),
            ]),
        )
        .unwrap();
        assert_eq!(s.retention.dedupe_secs, 7200);
        assert_eq!(s.retention.effect_records_secs, 7200);
    }

    #[test]
    fn records_are_kept_a_minute_at_least_even_with_a_shorter_window() {
        let short_window = ("RUNNER_STREAMS_DUPLICATE_WINDOW_SECS", "10");
        for (var, field) in [
            ("RUNNER_RETENTION_DEDUPE_SECS", "retention.dedupe_secs"),
            (
                "RUNNER_RETENTION_EFFECT_RECORDS_SECS",
                "retention.effect_records_secs",
            ),
        ] {
            let err = Settings::load(None, env(&[short_window, (var, "59")])).unwrap_err();
            assert!(
                matches!(&err, SettingsError::Invalid { field: f, .. } if f == field),
                "{var}=59: {err}"
            );
            Settings::load(None, env(&[short_window, (var, "60")])).unwrap();
        }
    }

    #[test]
    fn sweep_batch_is_between_1_and_100000() {
        assert_each_rejected(&[
            ("RUNNER_RETENTION_SWEEP_BATCH", "0", "retention.sweep_batch"),
            (
                "RUNNER_RETENTION_SWEEP_BATCH",
                "100001",
                "retention.sweep_batch",
            ),
        ]);
        Settings::load(None, env(&[("RUNNER_RETENTION_SWEEP_BATCH", "100000")])).unwrap();
    }

    #[test]
    fn finished_instances_may_go_at_once() {
        let s = Settings::load(
            None,
            env(&[("RUNNER_RETENTION_FINISHED_INSTANCES_SECS", "0")]),
        )
        .unwrap();
        assert_eq!(s.retention.finished_instances_secs, 0);
    }
}
