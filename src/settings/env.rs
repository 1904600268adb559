//! Where settings come from besides the defaults: the file (TOML or JSON), merged over
//! the defaults' tree, and `RUNNER_<SECTION>_<FIELD>` variables, each typed like the
//! default it replaces.

use std::path::Path;

use serde_json::Value;

use super::{EnvProblem, FileProblem, SettingsError};

/// Environment variables under `RUNNER_` that are not settings.
const RESERVED_ENV: &[&str] = &[
    "RUNNER_CONFIG",
    "RUNNER_LOG",
    "RUNNER_LOG_FORMAT",
    // Where the dev tools and tests find nats-server.
    "RUNNER_NATS_SERVER_BIN",
    // `runner admin`'s token file (src/cli/admin), not a setting of the Runner's.
    "RUNNER_ADMIN_TOKEN_FILE",
    // The build's commit (build.rs); `cargo run`/`cargo test` put it in the environment.
    "RUNNER_GIT_SHA",
    // tests/console.rs skips its browser test when set (CI without a browser).
    "RUNNER_SKIP_BROWSER",
];
const RESERVED_ENV_PREFIXES: &[&str] = &["RUNNER_TEST_", "RUNNER_CRASH_", "RUNNER_PAUSE_"];

pub(super) fn read_file(path: &Path) -> Result<Value, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_err = |problem: FileProblem| SettingsError::Parse {
        path: path.to_path_buf(),
        problem,
    };
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => toml::from_str::<Value>(&text).map_err(|e| parse_err(e.into())),
        Some("json") => serde_json::from_str::<Value>(&text).map_err(|e| parse_err(e.into())),
        _ => Err(SettingsError::Extension {
            path: path.to_path_buf(),
        }),
    }
}

/// Overlays `overlay` onto `base`, object by object; other values replace.
pub(super) fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    // Unknown keys are kept so that deserialisation rejects them by name.
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// Sets the setting named by `var` from its raw text, typed by the default's JSON type.
/// Returns the dotted path of the setting it set (`None` for reserved variables).
pub(super) fn apply_env(
    tree: &mut Value,
    var: &str,
    raw: &str,
) -> Result<Option<String>, SettingsError> {
    if RESERVED_ENV.contains(&var) || RESERVED_ENV_PREFIXES.iter().any(|p| var.starts_with(p)) {
        return Ok(None);
    }
    let env_err = |problem: EnvProblem| SettingsError::Env {
        var: var.to_string(),
        problem,
    };
    let name = var["RUNNER_".len()..].to_ascii_lowercase();
    let Value::Object(root) = tree else {
        return Err(env_err(EnvProblem::NotObject));
    };
    // Top-level field, or `<section>_<field>` where the section is an object.
    let (path, slot) = if root.get(&name).is_some_and(|v| !v.is_object()) {
        (name.clone(), root.get_mut(&name))
    } else {
        let section = root
            .iter()
            .filter(|(k, v)| v.is_object() && name.starts_with(&format!("{k}_")))
            .map(|(k, _)| k.clone())
            .next();
        match section {
            Some(section) => {
                let field = name[section.len() + 1..].to_string();
                let slot = root.get_mut(&section).and_then(|s| s.get_mut(&field));
                (format!("{section}.{field}"), slot)
            }
            None => (name.clone(), None),
        }
    };
    let Some(slot) = slot else {
        return Err(env_err(EnvProblem::NoSetting));
    };
    *slot = typed_like(slot, raw).map_err(|e| env_err(e.into()))?;
    Ok(Some(path))
}

/// A variable's text that is not of its setting's type (the text is quoted trimmed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvValueError {
    #[error("expected true or false, got {0:?}")]
    Bool(String),
    #[error("expected an integer, got {0:?}")]
    Integer(String),
    #[error("expected a number, got {0:?}")]
    Number(String),
}

fn typed_like(current: &Value, raw: &str) -> Result<Value, EnvValueError> {
    let raw = raw.trim();
    Ok(match current {
        Value::Bool(_) => match raw {
            "true" | "1" | "yes" => Value::Bool(true),
            "false" | "0" | "no" => Value::Bool(false),
            _ => return Err(EnvValueError::Bool(raw.to_string())),
        },
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            let parsed: i64 = raw
                .parse()
                .map_err(|_| EnvValueError::Integer(raw.to_string()))?;
            Value::from(parsed)
        }
        Value::Number(_) => {
            let parsed: f64 = raw
                .parse()
                .map_err(|_| EnvValueError::Number(raw.to_string()))?;
            Value::from(parsed)
        }
        Value::Array(_) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        _ => Value::String(raw.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::dev::TempDir;
    use crate::settings::tests::env;
    use crate::settings::{ConsumerSettings, Mode, Settings, SettingsError};

    #[test]
    fn env_sets_sections_top_level_and_lists() {
        let s = Settings::load(
            None,
            env(&[
                ("RUNNER_MODE", "combined"),
                ("RUNNER_NATS_URL", "nats://10.0.0.1:4222"),
                ("RUNNER_STORAGE_MAP_SIZE_MIB", "64"),
                ("RUNNER_CONSUMER_MAX_ACK_PENDING", "300"),
                ("RUNNER_TENANCY_MULTI_TENANT", "false"),
                ("RUNNER_TENANCY_ALLOWED_TENANTS", "acme, globex"),
                ("RUNNER_TEST_NATS_URL", "ignored"),
                ("RUNNER_NATS_SERVER_BIN", "/usr/sbin/nats-server"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(s.mode, Mode::Combined);
        assert_eq!(s.nats.url, "nats://10.0.0.1:4222");
        assert_eq!(s.storage.map_size_mib, 64);
        assert_eq!(s.consumer.max_ack_pending, 300);
        assert!(!s.tenancy.multi_tenant);
        assert_eq!(s.tenancy.allowed_tenants, vec!["acme", "globex"]);
    }

    #[test]
    fn file_toml_and_json_load_and_env_overrides_file() {
        let dir = TempDir::new("settings").unwrap();
        let toml_path = dir.path().join("runner.toml");
        std::fs::write(
            &toml_path,
            "mode = \"combined\"\n[storage]\npath = \"/var/lib/runner\"\nmap_size_mib = 128\n",
        )
        .unwrap();
        let s = Settings::load(Some(&toml_path), Vec::new()).unwrap();
        assert_eq!(s.storage.path, PathBuf::from("/var/lib/runner"));
        assert_eq!(s.storage.map_size_mib, 128);
        assert_eq!(s.mode, Mode::Combined);
        // Untouched sections keep their defaults.
        assert_eq!(s.consumer, ConsumerSettings::default());

        let s = Settings::load(
            Some(&toml_path),
            env(&[("RUNNER_STORAGE_MAP_SIZE_MIB", "256")]),
        )
        .unwrap();
        assert_eq!(s.storage.map_size_mib, 256);
        assert_eq!(s.storage.path, PathBuf::from("/var/lib/runner"));

        let json_path = dir.path().join("runner.json");
        std::fs::write(&json_path, r#"{"consumer": {"max_deliver": 9}}"#).unwrap();
        let s = Settings::load(Some(&json_path), Vec::new()).unwrap();
        assert_eq!(s.consumer.max_deliver, 9);
    }

    #[test]
    fn unknown_keys_and_bad_types_are_named() {
        let dir = TempDir::new("settings").unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[storage]\nmapsize = 5\n").unwrap();
        let err = Settings::load(Some(&path), Vec::new()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("setting storage") && text.contains("mapsize"),
            "{text}"
        );

        let err = Settings::load(None, env(&[("RUNNER_STORAGE_MAPSIZE", "5")])).unwrap_err();
        assert!(
            matches!(&err, SettingsError::Env { var, .. } if var == "RUNNER_STORAGE_MAPSIZE"),
            "{err}"
        );
        let err =
            Settings::load(None, env(&[("RUNNER_CONSUMER_MAX_DELIVER", "many")])).unwrap_err();
        assert!(err.to_string().contains("expected an integer"), "{err}");
        let err = Settings::load(None, env(&[("RUNNER_MODE", "turbo")])).unwrap_err();
        assert!(
            matches!(&err, SettingsError::Env { var, problem } if var == "RUNNER_MODE" && problem.to_string().contains("setting mode") && problem.to_string().contains("turbo")),
            "{err}"
        );
        let err = Settings::load(None, env(&[("RUNNER_STORAGE_MAP_SIZE_MIB", "-5")])).unwrap_err();
        assert!(
            matches!(&err, SettingsError::Env { var, problem } if var == "RUNNER_STORAGE_MAP_SIZE_MIB" && problem.to_string().contains("storage.map_size_mib")),
            "{err}"
        );
        let typed = dir.path().join("typed.toml");
        std::fs::write(&typed, "[consumer]\nmax_deliver = \"x\"\n").unwrap();
        let err = Settings::load(Some(&typed), Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("setting consumer.max_deliver"),
            "{err}"
        );

        let path = dir.path().join("runner.yaml");
        std::fs::write(&path, "mode: saga\n").unwrap();
        assert!(matches!(
            Settings::load(Some(&path), Vec::new()).unwrap_err(),
            SettingsError::Extension { .. }
        ));
    }

    #[test]
    fn env_sets_the_retention_section_and_the_storage_growth_limit() {
        let defaults = Settings::default();
        assert_eq!(defaults.retention.dedupe_secs, 86_400);
        assert_eq!(defaults.storage.max_size_mib, 65_536);
        let s = Settings::load(
            None,
            env(&[
                ("RUNNER_RETENTION_DEDUPE_SECS", "7200"),
                ("RUNNER_STORAGE_MAX_SIZE_MIB", "131072"),
            ]),
        )
        .unwrap();
        assert_eq!(s.retention.dedupe_secs, 7_200);
        assert_eq!(s.storage.max_size_mib, 131_072);
        // The rest of both sections keep their defaults.
        assert_eq!(
            s.retention.effect_records_secs,
            defaults.retention.effect_records_secs
        );
        assert_eq!(s.storage.map_size_mib, defaults.storage.map_size_mib);
    }
}
