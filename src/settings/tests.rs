//! Tests of the settings as a whole, and the helpers the sections' tests share.

use serde_json::Value;

use super::{Settings, SettingsError};

pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn invalid_field(err: SettingsError) -> String {
    match err {
        SettingsError::Invalid { field, .. } => field,
        other => panic!("expected a validation error, got {other}"),
    }
}

/// Each `(variable, value, field)`: the defaults with that one variable set are refused,
/// naming `field`.
pub(super) fn assert_each_rejected(cases: &[(&str, &str, &str)]) {
    for (var, value, field) in cases {
        let err = Settings::load(None, env(&[(var, value)])).unwrap_err();
        assert_eq!(&invalid_field(err), field, "{var}={value}");
    }
}

/// The README lists every setting with its default; this keeps it true.
#[test]
fn the_readme_lists_every_setting_with_its_default() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```toml\nmode =")
        .expect("settings block in README")
        + 8;
    let len = readme[start..].find("```").unwrap();
    let listed: Value = toml::from_str(&readme[start..start + len]).unwrap();
    let defaults = serde_json::to_value(Settings::default()).unwrap();
    assert_eq!(listed, defaults);
}

#[test]
fn defaults_are_valid() {
    let s = Settings::load(None, Vec::new()).unwrap();
    assert_eq!(s, Settings::default());
}
