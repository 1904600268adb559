//! `[programs]`: the limits saga programs run under.

use serde::{Deserialize, Serialize};

use super::{bad, within, SettingsError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProgramSettings {
    /// Default gas per transition; a saga may set its own.
    pub gas: u64,
    pub max_depth: usize,
    pub max_state_bytes: usize,
    pub max_output_bytes: usize,
}

impl Default for ProgramSettings {
    fn default() -> Self {
        ProgramSettings {
            gas: 20_000,
            max_depth: 64,
            max_state_bytes: 256 * 1024,
            max_output_bytes: 1024 * 1024,
        }
    }
}

impl ProgramSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.gas == 0 {
            return bad("programs.gas", "must be greater than 0");
        }
        within("programs.max_depth", self.max_depth as u64, 4, 1024)?;
        if self.max_state_bytes < 64 {
            return bad(
                "programs.max_state_bytes",
                format!("must be at least 64 (got {})", self.max_state_bytes),
            );
        }
        if self.max_output_bytes < self.max_state_bytes || self.max_output_bytes > 16 << 20 {
            return bad(
                "programs.max_output_bytes",
                "must be at least programs.max_state_bytes and at most 16 MiB",
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
            ("RUNNER_PROGRAMS_GAS", "0", "programs.gas"),
            ("RUNNER_PROGRAMS_MAX_DEPTH", "1", "programs.max_depth"),
            (
                "RUNNER_PROGRAMS_MAX_STATE_BYTES",
                "1",
                "programs.max_state_bytes",
            ),
            (
                "RUNNER_PROGRAMS_MAX_OUTPUT_BYTES",
                "100",
                "programs.max_output_bytes",
            ),
        ]);
    }
}
