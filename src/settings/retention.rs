//! `[retention]`: how long finished instances, dedupe records and effect completion
//! records are kept before the sweep deletes them, and how many history entries an
//! instance keeps.

use serde::{Deserialize, Serialize};

use super::{bad, within, SettingsError};
use crate::store::{HistoryBound, MAX_FIRST, MAX_LAST};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// How long a finished (completed, failed, faulted) instance stays queryable after
    /// it finished. 0 = deleted by the next sweep (its events' dedupe markers still
    /// reject them for `dedupe_secs`).
    pub finished_instances_secs: u64,
    /// The saga dedupe horizon: how long an applied event's dedupe marker is kept,
    /// whether its instance is still active or finished. Replays may not reach further
    /// back without an explicit confirmation.
    pub dedupe_secs: u64,
    /// How long an effect's completion record (the gate that stops a redelivered
    /// command being called again) is kept.
    pub effect_records_secs: u64,
    /// Most expired records deleted in one transaction.
    pub sweep_batch: usize,
    /// History entries an instance keeps from its start (`store/history.rs`)…
    pub history_first: u32,
    /// …and from its end; those between are dropped (and counted). 0 and 0: none.
    pub history_last: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            finished_instances_secs: 24 * 60 * 60,
            dedupe_secs: 24 * 60 * 60,
            effect_records_secs: 24 * 60 * 60,
            sweep_batch: 512,
            history_first: HistoryBound::default().first,
            history_last: HistoryBound::default().last,
        }
    }
}

/// How long a message can come back by redelivery after a lost ack.
fn redelivery_secs(ack_wait_ms: u64, max_deliver: i64) -> u64 {
    ack_wait_ms
        .saturating_mul(max_deliver.max(1) as u64)
        .div_ceil(1000)
}

/// The least a dedupe or completion record may be kept (see
/// [`RetentionSettings::validate`]).
fn least_record_secs(duplicate_window_secs: u64, ack_wait_ms: u64, max_deliver: i64) -> u64 {
    duplicate_window_secs
        .max(redelivery_secs(ack_wait_ms, max_deliver))
        .max(1)
}

impl super::Settings {
    /// The least a dedupe marker or completion record may be kept, here: a saga's or
    /// effect's own retention is held to it too.
    pub fn least_record_secs(&self) -> u64 {
        least_record_secs(
            self.streams.duplicate_window_secs,
            self.consumer.ack_wait_ms,
            self.consumer.max_deliver,
        )
    }
}

/// Why a dedupe marker may not be kept shorter than [`Settings::least_record_secs`]
/// (for the settings and for a saga's own retention).
///
/// [`Settings::least_record_secs`]: super::Settings::least_record_secs
pub const MARKER_FLOOR_REASON: &str = "an event that comes again (re-published where the stream's duplicate window no longer drops it, or redelivered after a lost ack) must still find its marker";

/// Why an effect completion record may not be kept shorter (settings and an effect's
/// own `retention_secs`).
pub const RECORD_FLOOR_REASON: &str = "a command that comes again (re-published by the outbox where the stream's duplicate window no longer drops it, or redelivered after a lost ack) must still find its completion record";

impl RetentionSettings {
    /// The history entries kept per instance.
    pub fn history_bound(&self) -> HistoryBound {
        HistoryBound {
            first: self.history_first,
            last: self.history_last,
        }
    }

    /// A dedupe or completion record must outlive every way its message comes again
    /// while the process runs: a re-publish the stream's duplicate window no longer
    /// drops (a publisher retrying as long as the window, `duplicate_window_secs`, is
    /// the shortest such), and redelivery after a lost ack (up to `max_deliver` ack
    /// waits of `ack_wait_ms`).
    pub(super) fn validate(
        &self,
        duplicate_window_secs: u64,
        ack_wait_ms: u64,
        max_deliver: i64,
    ) -> Result<(), SettingsError> {
        let redelivery_secs = redelivery_secs(ack_wait_ms, max_deliver);
        let floor = least_record_secs(duplicate_window_secs, ack_wait_ms, max_deliver);
        let why = format!(
            "at least streams.duplicate_window_secs ({duplicate_window_secs}) and consumer.ack_wait_ms × consumer.max_deliver ({redelivery_secs} s)"
        );
        if self.dedupe_secs < floor {
            return bad(
                "retention.dedupe_secs",
                format!(
                    "must be {why} (got {}): {MARKER_FLOOR_REASON}",
                    self.dedupe_secs
                ),
            );
        }
        if self.effect_records_secs < floor {
            return bad(
                "retention.effect_records_secs",
                format!(
                    "must be {why} (got {}): {RECORD_FLOOR_REASON}",
                    self.effect_records_secs
                ),
            );
        }
        let most = crate::manifest::MAX_RETENTION_SECS;
        for (field, secs) in [
            (
                "retention.finished_instances_secs",
                self.finished_instances_secs,
            ),
            ("retention.dedupe_secs", self.dedupe_secs),
            ("retention.effect_records_secs", self.effect_records_secs),
        ] {
            within(field, secs, 0, most)?;
        }
        within("retention.sweep_batch", self.sweep_batch as u64, 1, 100_000)?;
        // The history answer holds every entry kept, and the sweep deletes them with
        // their instance: both stay bounded.
        within(
            "retention.history_first",
            u64::from(self.history_first),
            0,
            u64::from(MAX_FIRST),
        )?;
        within(
            "retention.history_last",
            u64::from(self.history_last),
            0,
            u64::from(MAX_LAST),
        )
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
    fn records_outlive_redeliveries_after_a_lost_ack() {
        // A 1 s window, 2 s ack wait, 3 deliveries: 6 s at least.
        let short = [
            ("RUNNER_STREAMS_DUPLICATE_WINDOW_SECS", "1"),
            ("RUNNER_CONSUMER_ACK_WAIT_MS", "2000"),
            ("RUNNER_CONSUMER_MAX_DELIVER", "3"),
        ];
        for (var, field) in [
            ("RUNNER_RETENTION_DEDUPE_SECS", "retention.dedupe_secs"),
            (
                "RUNNER_RETENTION_EFFECT_RECORDS_SECS",
                "retention.effect_records_secs",
            ),
        ] {
            let mut vars = short.to_vec();
            vars.push((var, "5"));
            let err = Settings::load(None, env(&vars)).unwrap_err();
            assert!(
                matches!(&err, SettingsError::Invalid { field: f, problem }
                    if f == field && problem.contains("(6 s)")),
                "{var}=5: {err}"
            );
            vars.pop();
            vars.push((var, "6"));
            Settings::load(None, env(&vars)).unwrap();
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
    fn history_keeps_at_most_a_thousand_first_and_last_entries() {
        assert_each_rejected(&[
            (
                "RUNNER_RETENTION_HISTORY_FIRST",
                "1001",
                "retention.history_first",
            ),
            (
                "RUNNER_RETENTION_HISTORY_LAST",
                "1001",
                "retention.history_last",
            ),
        ]);
        for (first, last) in [("0", "1000"), ("1000", "0"), ("0", "0")] {
            let s = Settings::load(
                None,
                env(&[
                    ("RUNNER_RETENTION_HISTORY_FIRST", first),
                    ("RUNNER_RETENTION_HISTORY_LAST", last),
                ]),
            )
            .unwrap();
            assert_eq!(
                s.retention.history_bound(),
                crate::store::HistoryBound {
                    first: first.parse().unwrap(),
                    last: last.parse().unwrap()
                }
            );
        }
        assert_eq!(
            Settings::default().retention.history_bound(),
            crate::store::HistoryBound::default()
        );
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
