//! `[storage]`: the LMDB store.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{bad, within, SettingsError};

/// The most `max_size_mib` may be: 4 TiB.
const MAX_SIZE_MIB_LIMIT: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    pub path: PathBuf,
    /// LMDB map size in MiB: the map the store opens with; it grows to `max_size_mib`
    /// when full.
    pub map_size_mib: u64,
    /// The most the map may grow to, in MiB: when a commit finds the map full, the map
    /// grows (doubling, at least 64 MiB a step) up to this; only then does intake stop.
    pub max_size_mib: u64,
    /// `/ready` says `store_nearly_full` once the pages in use exceed this share
    /// (percent) of `max_size_mib`.
    pub nearly_full_percent: u8,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            path: PathBuf::from("./data/runner"),
            map_size_mib: 8 * 1024,
            max_size_mib: 64 * 1024,
            nearly_full_percent: 90,
        }
    }
}

impl StorageSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.path.as_os_str().is_empty() {
            return bad("storage.path", "must not be empty");
        }
        within("storage.map_size_mib", self.map_size_mib, 1, 1024 * 1024)?;
        if !(self.map_size_mib..=MAX_SIZE_MIB_LIMIT).contains(&self.max_size_mib) {
            return bad(
                "storage.max_size_mib",
                format!(
                    "must be between storage.map_size_mib ({}) and {MAX_SIZE_MIB_LIMIT} (4 TiB; got {})",
                    self.map_size_mib, self.max_size_mib
                ),
            );
        }
        within(
            "storage.nearly_full_percent",
            self.nearly_full_percent.into(),
            1,
            99,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::tests::{assert_each_rejected, env};
    use crate::settings::{Settings, SettingsError};

    #[test]
    fn validation_rejects_each_bad_field() {
        assert_each_rejected(&[
            ("RUNNER_STORAGE_PATH", "", "storage.path"),
            ("RUNNER_STORAGE_MAP_SIZE_MIB", "0", "storage.map_size_mib"),
        ]);
    }

    #[test]
    fn the_map_grows_from_map_size_to_at_most_4_tib() {
        // Smaller than the map it opens with: the error names both.
        let err = Settings::load(
            None,
            env(&[
                ("RUNNER_STORAGE_MAP_SIZE_MIB", "8192"),
                ("RUNNER_STORAGE_MAX_SIZE_MIB", "4096"),
            ]),
        )
        .unwrap_err();
        assert!(
            matches!(&err, SettingsError::Invalid { field, problem }
                if field == "storage.max_size_mib" && problem.contains("storage.map_size_mib (8192)")),
            "{err}"
        );
        assert_each_rejected(&[(
            "RUNNER_STORAGE_MAX_SIZE_MIB",
            "4194305",
            "storage.max_size_mib",
        )]);
        // No growth at all, and the largest, are both allowed.
        for max in ["8192", "4194304"] {
            let s = Settings::load(None, env(&[("RUNNER_STORAGE_MAX_SIZE_MIB", max)])).unwrap();
            assert_eq!(s.storage.max_size_mib.to_string(), max);
        }
    }

    #[test]
    fn nearly_full_is_a_share_between_1_and_99_percent() {
        assert_each_rejected(&[
            (
                "RUNNER_STORAGE_NEARLY_FULL_PERCENT",
                "0",
                "storage.nearly_full_percent",
            ),
            (
                "RUNNER_STORAGE_NEARLY_FULL_PERCENT",
                "100",
                "storage.nearly_full_percent",
            ),
        ]);
        for percent in ["1", "99"] {
            let s = Settings::load(
                None,
                env(&[("RUNNER_STORAGE_NEARLY_FULL_PERCENT", percent)]),
            )
            .unwrap();
            assert_eq!(s.storage.nearly_full_percent.to_string(), percent);
        }
    }
}
