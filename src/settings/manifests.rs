//! `[manifests]`: where saga and effect manifests, and their secrets, are read from.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{bad, Mode, SettingsError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManifestSettings {
    /// Saga manifest files (YAML or JSON).
    pub sagas: Vec<PathBuf>,
    /// Effect manifest files (YAML or JSON).
    pub effects: Vec<PathBuf>,
    /// Where `secret:NAME` references in effect manifests are read from (Docker and
    /// Swarm mount secrets here).
    pub secrets_dir: PathBuf,
}

impl Default for ManifestSettings {
    fn default() -> Self {
        ManifestSettings {
            sagas: vec![PathBuf::from("manifests/example/sagas.yaml")],
            effects: vec![PathBuf::from("manifests/example/effects.yaml")],
            secrets_dir: PathBuf::from("/run/secrets"),
        }
    }
}

impl ManifestSettings {
    /// `mode` is the process's: saga manifests are needed only where sagas run.
    pub(super) fn validate(&self, mode: Mode) -> Result<(), SettingsError> {
        if mode.runs_sagas() && self.sagas.is_empty() {
            return bad(
                "manifests.sagas",
                "must list at least one saga manifest in saga or combined mode",
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
        assert_each_rejected(&[("RUNNER_MANIFESTS_SAGAS", "", "manifests.sagas")]);
    }
}
