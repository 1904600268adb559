//! `[streams]`: the JetStream streams, the saga consumers' filters and the subject
//! prefixes of envelope kinds.

use serde::{Deserialize, Serialize};

use super::{bad, is_name, within, SettingsError};

/// The placeholder of per-tenant subject filters.
pub const TENANT_PLACEHOLDER: &str = "{tenant}";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSettings {
    pub aggregate_events: String,
    pub workflow_commands: String,
    pub workflow_events: String,
    /// Subjects of the aggregate stream, used only when the Runner creates it
    /// (`nats.create_aggregate_stream`, for development and tests).
    pub aggregate_subjects: Vec<String>,
    /// Subject filter of the saga consumer on the aggregate stream ("" = whole stream).
    pub aggregate_filter: String,
    /// Subject filter of the saga consumer on the workflow events stream.
    pub workflow_filter: String,
    /// Prefix of the aggregate events' subjects: the token after it is the tenant
    /// (`{aggregate_prefix}.{tenant}.{aggregate_type}.{event_type}`).
    pub aggregate_prefix: String,
    /// Subject prefixes that identify envelope kinds (docs/contracts.md §1); the token after
    /// each is the tenant.
    pub command_prefix: String,
    pub result_prefix: String,
    pub timer_prefix: String,
    /// Duplicate window of the streams the Runner creates: long enough for relay retries.
    pub duplicate_window_secs: u64,
    /// How long the Runner's own streams (commands, events) keep a message when it
    /// creates them (JetStream's `max_age`), so that they hold rate × this, not
    /// everything since they were made; 0 keeps every message for ever. A message still
    /// unconsumed then is gone: keep it longer than any outage to ride out
    /// (docs/guarantees.md). The aggregate stream's limits are its owner's.
    pub max_age_secs: u64,
    /// Replicas of the streams (and the claims bucket) the Runner creates: 3 on a
    /// JetStream cluster, 1 on a single server.
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            aggregate_events: "AGGREGATE_EVENTS".into(),
            workflow_commands: "WORKFLOW_COMMANDS".into(),
            workflow_events: "WORKFLOW_EVENTS".into(),
            aggregate_subjects: vec!["aggregate.>".into()],
            aggregate_filter: String::new(),
            workflow_filter: String::new(),
            aggregate_prefix: "aggregate".into(),
            command_prefix: "workflow.cmd".into(),
            result_prefix: "workflow.result".into(),
            timer_prefix: "workflow.timer".into(),
            duplicate_window_secs: 2 * 60 * 60,
            max_age_secs: 7 * 24 * 60 * 60,
            replicas: 1,
        }
    }
}

impl StreamSettings {
    /// The streams' own fields; `aggregate_subjects` only matters when
    /// `nats.create_aggregate_stream` is on, `max_age_secs` when `nats.create_streams`
    /// is. (The per-tenant filters are checked with tenancy's placement.)
    pub(super) fn validate(
        &self,
        create_aggregate_stream: bool,
        create_streams: bool,
    ) -> Result<(), SettingsError> {
        for (field, name) in [
            ("streams.aggregate_events", &self.aggregate_events),
            ("streams.workflow_commands", &self.workflow_commands),
            ("streams.workflow_events", &self.workflow_events),
        ] {
            if name.is_empty() || name.len() > 64 || !is_name(name) {
                return bad(
                    field,
                    format!(
                        "must be a stream name of 1-64 letters, digits, '_' or '-' (got {name:?})"
                    ),
                );
            }
        }
        if create_aggregate_stream && self.aggregate_subjects.is_empty() {
            return bad(
                "streams.aggregate_subjects",
                "must list subjects when nats.create_aggregate_stream is on",
            );
        }
        for (field, prefix) in [
            ("streams.aggregate_prefix", &self.aggregate_prefix),
            ("streams.command_prefix", &self.command_prefix),
            ("streams.result_prefix", &self.result_prefix),
            ("streams.timer_prefix", &self.timer_prefix),
        ] {
            if prefix.is_empty() || prefix.contains(['*', '>', ' ']) || prefix.ends_with('.') {
                return bad(field, format!("must be a literal subject prefix without wildcards or a trailing '.' (got {prefix:?})"));
            }
        }
        if self.duplicate_window_secs == 0 {
            return bad("streams.duplicate_window_secs", "must be greater than 0");
        }
        // JetStream refuses a stream whose duplicate window is longer than its max age;
        // a Runner that creates no stream sets neither.
        if create_streams
            && self.max_age_secs != 0
            && self.max_age_secs < self.duplicate_window_secs
        {
            return bad(
                "streams.max_age_secs",
                format!(
                    "must be 0 (keep every message) or at least streams.duplicate_window_secs ({}) (got {})",
                    self.duplicate_window_secs, self.max_age_secs
                ),
            );
        }
        within("streams.replicas", self.replicas as u64, 1, 5)
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::tests::{assert_each_rejected, env, invalid_field};
    use crate::settings::Settings;

    #[test]
    fn validation_rejects_each_bad_field() {
        assert_each_rejected(&[
            (
                "RUNNER_STREAMS_AGGREGATE_EVENTS",
                "a.b",
                "streams.aggregate_events",
            ),
            (
                "RUNNER_STREAMS_AGGREGATE_PREFIX",
                "aggregate.>",
                "streams.aggregate_prefix",
            ),
            (
                "RUNNER_STREAMS_RESULT_PREFIX",
                "workflow.*",
                "streams.result_prefix",
            ),
            (
                "RUNNER_STREAMS_TIMER_PREFIX",
                "workflow.timer.",
                "streams.timer_prefix",
            ),
            (
                "RUNNER_STREAMS_DUPLICATE_WINDOW_SECS",
                "0",
                "streams.duplicate_window_secs",
            ),
            (
                "RUNNER_STREAMS_WORKFLOW_COMMANDS",
                "a b",
                "streams.workflow_commands",
            ),
            (
                "RUNNER_STREAMS_WORKFLOW_EVENTS",
                &"W".repeat(65),
                "streams.workflow_events",
            ),
            (
                "RUNNER_STREAMS_COMMAND_PREFIX",
                "workflow.>",
                "streams.command_prefix",
            ),
            ("RUNNER_STREAMS_REPLICAS", "7", "streams.replicas"),
            (
                "RUNNER_STREAMS_MAX_AGE_SECS",
                "3600",
                "streams.max_age_secs",
            ),
        ]);
        let max_age = |pairs: &[(&str, &str)]| {
            Settings::load(None, env(pairs))
                .unwrap()
                .streams
                .max_age_secs
        };
        let age = ("RUNNER_STREAMS_MAX_AGE_SECS", "0");
        assert_eq!(max_age(&[age]), 0, "0 keeps every message");
        let age = ("RUNNER_STREAMS_MAX_AGE_SECS", "600");
        let window = ("RUNNER_STREAMS_DUPLICATE_WINDOW_SECS", "600");
        assert_eq!(
            max_age(&[age, window]),
            600,
            "as long as the window is enough"
        );
        let age = ("RUNNER_STREAMS_MAX_AGE_SECS", "3600");
        let not_creating = ("RUNNER_NATS_CREATE_STREAMS", "false");
        assert_eq!(
            max_age(&[age, not_creating]),
            3600,
            "a Runner that creates no stream sets no age: nothing to refuse"
        );
        let err = Settings::load(
            None,
            env(&[
                ("RUNNER_NATS_CREATE_AGGREGATE_STREAM", "true"),
                ("RUNNER_STREAMS_AGGREGATE_SUBJECTS", ""),
            ]),
        )
        .unwrap_err();
        assert_eq!(invalid_field(err), "streams.aggregate_subjects");
    }
}
