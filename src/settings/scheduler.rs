//! `[scheduler]`: the timer scheduler.

use serde::{Deserialize, Serialize};

use super::{within, SettingsError};

/// The scheduler that fires timers (saga and combined modes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Timers fired per scan: the most reminders published at once.
    pub batch: usize,
    /// Longest sleep when nothing is due soon; also how late a timer set during that
    /// sleep can fire at worst.
    pub idle_poll_ms: u64,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            batch: 256,
            idle_poll_ms: 200,
        }
    }
}

impl SchedulerSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        within("scheduler.batch", self.batch as u64, 1, 10_000)?;
        within("scheduler.idle_poll_ms", self.idle_poll_ms, 1, 60_000)
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::tests::assert_each_rejected;

    #[test]
    fn validation_rejects_each_bad_field() {
        assert_each_rejected(&[("RUNNER_SCHEDULER_BATCH", "0", "scheduler.batch")]);
    }
}
