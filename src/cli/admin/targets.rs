//! Which ops ports `runner admin` asks, and with which token: `--url` (repeatable) and
//! `--urls-file`, else the ops port of the settings (`RUNNER_CONFIG`: inside a Runner's
//! container nothing needs to be given); the token from `--token-file`, else
//! `RUNNER_ADMIN_TOKEN_FILE`, else the settings' `ops.admin_token_file`.

use std::path::{Path, PathBuf};

use super::AdminError;
use crate::settings::Settings;

/// The most ops ports one command asks (one thread each).
pub const MAX_URLS: usize = 64;

/// Base URLs (no trailing `/`), in the order given, each once.
pub fn urls(given: &[String], file: Option<&Path>) -> Result<Vec<String>, AdminError> {
    let mut raw: Vec<String> = given.to_vec();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| AdminError::UrlsFile {
            path: path.to_path_buf(),
            source,
        })?;
        raw.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    if raw.is_empty() {
        raw.push(from_settings()?);
    }
    let mut out: Vec<String> = Vec::new();
    for url in raw {
        let url = base_url(&url)?;
        if !out.contains(&url) {
            out.push(url);
        }
    }
    if out.len() > MAX_URLS {
        return Err(AdminError::TooManyUrls { count: out.len() });
    }
    Ok(out)
}

/// `url` checked (http or https, a host) and without a trailing slash.
fn base_url(url: &str) -> Result<String, AdminError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => {
            Ok(url.trim_end_matches('/').to_string())
        }
        _ => Err(AdminError::BadUrl(url.to_string())),
    }
}

fn from_settings() -> Result<String, AdminError> {
    let settings = Settings::from_process(None).map_err(|e| AdminError::NoUrl(e.to_string()))?;
    super::super::healthcheck::base_url(&settings.ops.listen).map_err(AdminError::NoUrl)
}

/// The admin token: the first of `--token-file`/`RUNNER_ADMIN_TOKEN_FILE` (clap gives
/// either as `file`) and the settings' `ops.admin_token_file`.
pub fn token(file: Option<&Path>) -> Result<String, AdminError> {
    let path = match file {
        Some(p) => p.to_path_buf(),
        None => token_file_from_settings()?,
    };
    let text = std::fs::read_to_string(&path).map_err(|source| AdminError::TokenRead {
        path: path.clone(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(AdminError::TokenEmpty { path });
    }
    Ok(token.to_string())
}

fn token_file_from_settings() -> Result<PathBuf, AdminError> {
    let settings = Settings::from_process(None).map_err(|e| AdminError::NoToken(e.to_string()))?;
    let path = settings.ops.admin_token_file;
    if path.as_os_str().is_empty() {
        return Err(AdminError::NoToken(
            "the settings name no ops.admin_token_file".into(),
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_deduplicated_and_read_from_a_file() {
        let dir = crate::dev::TempDir::new("admin-urls").unwrap();
        let file = dir.path().join("shards");
        std::fs::write(
            &file,
            "# shards\nhttp://a:9090/\n\n  http://b:9090  # shard b\nhttp://a:9090\n",
        )
        .unwrap();
        let got = urls(&["https://c:9090".into()], Some(&file)).unwrap();
        assert_eq!(got, ["https://c:9090", "http://a:9090", "http://b:9090"]);
        for bad in ["a:9090", "ftp://a", "http://", "http:///x"] {
            let err = urls(&[bad.into()], None).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        let err = urls(&[], Some(&dir.path().join("none")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("none"), "{err}");
        let many: Vec<String> = (0..=MAX_URLS).map(|i| format!("http://h{i}")).collect();
        assert!(matches!(
            urls(&many, None),
            Err(AdminError::TooManyUrls { .. })
        ));
    }

    #[test]
    fn the_token_file_is_read_and_named_when_unusable() {
        let dir = crate::dev::TempDir::new("admin-token").unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cret\n").unwrap();
        assert_eq!(token(Some(&file)).unwrap(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        let err = token(Some(&file)).unwrap_err().to_string();
        assert!(
            err.contains(&file.display().to_string()) && err.contains("empty"),
            "{err}"
        );
        let missing = dir.path().join("missing");
        let err = token(Some(&missing)).unwrap_err().to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }
}
