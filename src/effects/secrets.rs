//! Secrets by reference: a manifest value `secret:NAME` is read at start-up from the file
//! NAME in the secrets directory (Docker and Swarm mount secrets at `/run/secrets`). The
//! value is kept in a type whose `Debug` and `Display` show only the name, so it cannot
//! reach a log by accident.

use std::fmt;
use std::path::Path;

/// Marks a manifest string as a reference to a secret.
pub const PREFIX: &str = "secret:";

#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    name: String,
    value: String,
}

impl Secret {
    /// The value, for the one place that sends it (a request header, say).
    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secret:{} (redacted)", self.name)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a `secret:NAME` could not be resolved. The secret's value is never in it.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret name {0:?} must be 1-128 letters, digits, '_', '-' or '.', not starting with '.'"
    )]
    Name(String),
    #[error("secret {name}: cannot read {}: {source}", path.display())]
    Read {
        name: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `why` says what is wrong with the value without quoting it.
    #[error("secret {name}: its value {why}")]
    Value { name: String, why: &'static str },
}

/// A manifest string: literal text, or a secret resolved from the secrets directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    Plain(String),
    Secret(Secret),
}

impl Text {
    /// Resolves `raw` (`secret:NAME` reads `dir/NAME`, without a trailing newline).
    pub fn resolve(raw: &str, dir: &Path) -> Result<Text, SecretError> {
        let Some(name) = raw.strip_prefix(PREFIX) else {
            return Ok(Text::Plain(raw.to_string()));
        };
        let valid = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && !name.starts_with('.');
        if !valid {
            return Err(SecretError::Name(name.to_string()));
        }
        let path = dir.join(name);
        let value = match std::fs::read_to_string(&path) {
            Ok(value) => value,
            Err(source) => {
                return Err(SecretError::Read {
                    name: name.to_string(),
                    path,
                    source,
                })
            }
        };
        let value = value.strip_suffix('\n').unwrap_or(&value);
        let value = value.strip_suffix('\r').unwrap_or(value).to_string();
        check_value(&value).map_err(|why| SecretError::Value {
            name: name.to_string(),
            why,
        })?;
        Ok(Text::Secret(Secret {
            name: name.to_string(),
            value,
        }))
    }

    /// `text` with every occurrence of this secret's value replaced by its name, for
    /// text that came back from outside (an upstream may echo a credential).
    pub fn redact(&self, text: &str) -> String {
        match self {
            Text::Secret(s) if !s.value.is_empty() && text.contains(&s.value) => {
                text.replace(&s.value, &s.to_string())
            }
            _ => text.to_string(),
        }
    }

    pub fn expose(&self) -> &str {
        match self {
            Text::Plain(s) => s,
            Text::Secret(s) => s.expose(),
        }
    }
}

/// Why a secret's value cannot be sent as it is, never quoting it: a file written with
/// an editor's BOM, a stray space or a second newline would otherwise go out as part of
/// a credential and fail far from its cause.
fn check_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    if value.starts_with('\u{feff}') {
        return Err("starts with a byte order mark");
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        return Err("has leading or trailing whitespace");
    }
    if value.chars().any(|c| c.is_control() || c == '\u{feff}') {
        return Err("contains control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::TempDir;

    #[test]
    fn a_reference_reads_the_file_and_never_shows_the_value() {
        let dir = TempDir::new("secrets").unwrap();
        std::fs::write(dir.path().join("payments_token"), "s3cr3t-value\n").unwrap();
        let text = Text::resolve("secret:payments_token", dir.path()).unwrap();
        assert_eq!(text.expose(), "s3cr3t-value");
        for shown in [format!("{text:?}"), format!("{:?}", vec![text.clone()])] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("payments_token"), "{shown}");
        }
        assert_eq!(
            Text::resolve("Bearer x", dir.path()).unwrap(),
            Text::Plain("Bearer x".into())
        );
    }

    #[test]
    fn a_missing_or_badly_named_secret_is_a_clear_error() {
        let dir = TempDir::new("secrets").unwrap();
        let err = Text::resolve("secret:absent", dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("secret absent") && err.contains("cannot read"),
            "{err}"
        );
        for bad in [
            "secret:",
            "secret:../etc/passwd",
            "secret:.hidden",
            "secret:a b",
        ] {
            assert!(Text::resolve(bad, dir.path()).is_err(), "{bad}");
        }
    }
}
