//! `[nats]`: the connection to the NATS server, its credentials and TLS.
//!
//! Secrets (the password, an nkey seed, a creds file, the client key) are only ever
//! named by their file (a Swarm secret, say), never given as values: a value would show
//! in the settings file, the environment (`docker inspect`) and `runner check`. These
//! checks are of the settings alone; the files are read, and their contents checked,
//! by `nats_io::ClientOptions::load` when the Runner (or `runner check`) starts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{bad, SettingsError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// The server; the blocking client connects once at start-up (a refused connection
    /// fails start-up at once) and then reconnects forever. It has no connect or API
    /// timeout of its own to configure: JetStream API requests time out after 5 s.
    pub url: String,
    /// Create `WORKFLOW_COMMANDS` / `WORKFLOW_EVENTS` when missing.
    pub create_streams: bool,
    /// Also create `AGGREGATE_EVENTS` when missing: for development and tests only, as
    /// the Aggregate nodes own that stream in production.
    pub create_aggregate_stream: bool,
    /// A connection the client believes up that answers no PING for this long is given
    /// up: the process exits (code 3) so that its orchestrator restarts it on a new
    /// connection; unacked work is redelivered. 0 = wait for the client's own check,
    /// which takes 4–6 minutes.
    pub unresponsive_exit_ms: u64,
    /// How the Runner proves who it is: at most one of `creds_file`, `nkey_file` and
    /// `user` (with `password_file`); none = no credentials.
    ///
    /// A `.creds` file (user JWT and nkey seed, from `nsc`): decentralised JWT auth.
    pub creds_file: PathBuf,
    /// A file holding an nkey seed (`SU…`): the server knows the user by its public key.
    pub nkey_file: PathBuf,
    /// A user of the server's `authorization` or `accounts` block, with `password_file`.
    pub user: String,
    /// The file holding `user`'s password (its whole content, a final newline dropped).
    pub password_file: PathBuf,
    /// Refuse a server that does not offer TLS. A server that requires TLS is spoken to
    /// in TLS either way, as is a `tls://` URL.
    pub tls_required: bool,
    /// PEM file of the CA(s) the server's certificate must chain to (a private CA);
    /// "" = the system's roots.
    pub tls_ca_file: PathBuf,
    /// The Runner's own certificate (PEM, chain first to last), for servers that verify
    /// clients (mutual TLS), with `tls_key_file`.
    pub tls_cert_file: PathBuf,
    /// The private key of `tls_cert_file` (PEM: PKCS#8, SEC1 or PKCS#1).
    pub tls_key_file: PathBuf,
    /// The name the server's certificate must carry; "" = the host of the URL it
    /// connects to. Set it when the URL names an address or an alias the certificate
    /// does not (needs `tls_ca_file`).
    pub tls_server_name: String,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            url: "nats://127.0.0.1:4222".into(),
            create_streams: true,
            create_aggregate_stream: false,
            unresponsive_exit_ms: 5_000,
            creds_file: PathBuf::new(),
            nkey_file: PathBuf::new(),
            user: String::new(),
            password_file: PathBuf::new(),
            tls_required: false,
            tls_ca_file: PathBuf::new(),
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
            tls_server_name: String::new(),
        }
    }
}

/// Whether a path setting is set ("" is not).
fn set(path: &Path) -> bool {
    !path.as_os_str().is_empty()
}

/// The way of authenticating `[nats]` names: the one place that decides it, for the
/// client (`nats_io::ClientOptions::load`) and for what `runner check` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsAuth<'a> {
    None,
    Creds(&'a Path),
    Nkey(&'a Path),
    UserPassword {
        user: &'a str,
        password_file: &'a Path,
    },
}

impl NatsSettings {
    /// The way of authenticating set (validation allows at most one).
    pub fn auth(&self) -> NatsAuth<'_> {
        if set(&self.creds_file) {
            NatsAuth::Creds(&self.creds_file)
        } else if set(&self.nkey_file) {
            NatsAuth::Nkey(&self.nkey_file)
        } else if !self.user.is_empty() {
            NatsAuth::UserPassword {
                user: &self.user,
                password_file: &self.password_file,
            }
        } else {
            NatsAuth::None
        }
    }

    /// Which way of authenticating the settings name, as `runner check` prints it: the
    /// user and the files, never what they hold.
    pub fn auth_summary(&self) -> String {
        match self.auth() {
            NatsAuth::Creds(path) => format!("credentials file {}", path.display()),
            NatsAuth::Nkey(path) => format!("nkey seed file {}", path.display()),
            NatsAuth::UserPassword {
                user,
                password_file,
            } => format!("user {user} (password from {})", password_file.display()),
            NatsAuth::None => "none".into(),
        }
    }

    /// The TLS settings, as `runner check` prints them.
    pub fn tls_summary(&self) -> String {
        let mut parts = Vec::new();
        if self.tls_required {
            parts.push("required".to_string());
        }
        if set(&self.tls_ca_file) {
            parts.push(format!("CA {}", self.tls_ca_file.display()));
        }
        if set(&self.tls_cert_file) {
            parts.push(format!(
                "client certificate {}",
                self.tls_cert_file.display()
            ));
        }
        if !self.tls_server_name.is_empty() {
            parts.push(format!("server name {}", self.tls_server_name));
        }
        if parts.is_empty() {
            "as the server asks".into()
        } else {
            parts.join(", ")
        }
    }

    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        // A list of servers (a cluster's seeds) is comma-separated.
        for url in self.url.split(',').map(str::trim) {
            let Some(rest) = url
                .strip_prefix("nats://")
                .or_else(|| url.strip_prefix("tls://"))
            else {
                return bad(
                    "nats.url",
                    format!("must start with nats:// or tls:// (got {url:?})"),
                );
            };
            // Credentials in the URL would be a secret in the settings, printed by
            // `runner check` and in errors. (Only the part before '@' could be one:
            // it is not repeated here.)
            if rest
                .split('/')
                .next()
                .is_some_and(|host| host.contains('@'))
            {
                return bad(
                    "nats.url",
                    "must not carry credentials (user:password@ or token@); use nats.user \
                     with nats.password_file, nats.nkey_file or nats.creds_file",
                );
            }
        }
        let methods = [
            ("nats.creds_file", set(&self.creds_file)),
            ("nats.nkey_file", set(&self.nkey_file)),
            ("nats.user", !self.user.is_empty()),
        ];
        let chosen: Vec<&str> = methods.iter().filter(|m| m.1).map(|m| m.0).collect();
        if chosen.len() > 1 {
            return bad(
                chosen[1],
                format!(
                    "{} are different ways of authenticating: set one",
                    chosen.join(" and ")
                ),
            );
        }
        if !self.user.is_empty() && !set(&self.password_file) {
            return bad(
                "nats.password_file",
                format!(
                    "nats.user is {:?}: name the file holding its password",
                    self.user
                ),
            );
        }
        if set(&self.password_file) && self.user.is_empty() {
            return bad("nats.user", "nats.password_file is set: name its user");
        }
        if self
            .user
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return bad("nats.user", "must not contain spaces or control characters");
        }
        match (set(&self.tls_cert_file), set(&self.tls_key_file)) {
            (true, false) => {
                return bad(
                    "nats.tls_key_file",
                    "nats.tls_cert_file is set: name its private key",
                )
            }
            (false, true) => {
                return bad(
                    "nats.tls_cert_file",
                    "nats.tls_key_file is set: name its certificate",
                )
            }
            _ => {}
        }
        if !self.tls_server_name.is_empty() {
            if !set(&self.tls_ca_file) {
                return bad(
                    "nats.tls_server_name",
                    "needs nats.tls_ca_file (the name is checked against that CA's certificates)",
                );
            }
            if nats::rustls::pki_types::ServerName::try_from(self.tls_server_name.as_str()).is_err()
            {
                return bad(
                    "nats.tls_server_name",
                    format!(
                        "must be a DNS name or an IP address (got {:?})",
                        self.tls_server_name
                    ),
                );
            }
        }
        if self.unresponsive_exit_ms != 0 && !(1_000..=600_000).contains(&self.unresponsive_exit_ms)
        {
            return bad(
                "nats.unresponsive_exit_ms",
                format!(
                    "must be 0 (off) or between 1000 and 600000 (got {})",
                    self.unresponsive_exit_ms
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::tests::{assert_each_rejected, env, invalid_field};
    use crate::settings::{Settings, SettingsError};

    #[test]
    fn validation_rejects_each_bad_field() {
        assert_each_rejected(&[
            ("RUNNER_NATS_URL", "http://x", "nats.url"),
            ("RUNNER_NATS_URL", "nats://a:4222,http://b:4222", "nats.url"),
            (
                "RUNNER_NATS_UNRESPONSIVE_EXIT_MS",
                "999",
                "nats.unresponsive_exit_ms",
            ),
            ("RUNNER_NATS_USER", "runner", "nats.password_file"),
            ("RUNNER_NATS_PASSWORD_FILE", "/run/secrets/p", "nats.user"),
            (
                "RUNNER_NATS_TLS_CERT_FILE",
                "/run/secrets/c",
                "nats.tls_key_file",
            ),
            (
                "RUNNER_NATS_TLS_KEY_FILE",
                "/run/secrets/k",
                "nats.tls_cert_file",
            ),
            (
                "RUNNER_NATS_TLS_SERVER_NAME",
                "nats",
                "nats.tls_server_name",
            ),
        ]);
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::load(None, env(pairs))
    }

    #[test]
    fn credentials_never_come_in_the_url() {
        for url in [
            "nats://runner:s3cret@nats:4222",
            "tls://t0ken@nats:4222",
            "nats://a:4222,nats://u:p@b:4222",
        ] {
            let err = load(&[("RUNNER_NATS_URL", url)]).unwrap_err();
            let text = err.to_string();
            assert!(
                !text.contains("s3cret") && !text.contains("t0ken"),
                "{text}"
            );
            assert_eq!(invalid_field(err), "nats.url", "{url}");
        }
        let s = load(&[("RUNNER_NATS_URL", "nats://a:4222, tls://b:4222")]).unwrap();
        assert_eq!(s.nats.url, "nats://a:4222, tls://b:4222");
    }

    #[test]
    fn one_way_of_authenticating_at_a_time() {
        let pairs = [
            ("RUNNER_NATS_CREDS_FILE", "/run/secrets/runner.creds"),
            ("RUNNER_NATS_NKEY_FILE", "/run/secrets/runner.nk"),
            ("RUNNER_NATS_USER", "runner"),
        ];
        for (i, a) in pairs.iter().enumerate() {
            for b in &pairs[i + 1..] {
                let mut both = vec![*a, *b];
                both.push(("RUNNER_NATS_PASSWORD_FILE", "/run/secrets/p"));
                if a.1 != "runner" && b.1 != "runner" {
                    both.pop();
                }
                let err = load(&both).unwrap_err();
                let text = err.to_string();
                assert!(text.contains("set one"), "{text}");
            }
        }
        // Each alone is fine, and is what check prints: files, never their contents.
        let s = load(&pairs[..1]).unwrap();
        assert_eq!(
            s.nats.auth_summary(),
            "credentials file /run/secrets/runner.creds"
        );
        let s = load(&pairs[1..2]).unwrap();
        assert_eq!(
            s.nats.auth_summary(),
            "nkey seed file /run/secrets/runner.nk"
        );
        let s = load(&[pairs[2], ("RUNNER_NATS_PASSWORD_FILE", "/run/secrets/p")]).unwrap();
        assert_eq!(
            s.nats.auth_summary(),
            "user runner (password from /run/secrets/p)"
        );
        assert_eq!(Settings::default().nats.auth_summary(), "none");
        let err = load(&[
            ("RUNNER_NATS_USER", "run ner"),
            ("RUNNER_NATS_PASSWORD_FILE", "/run/secrets/p"),
        ])
        .unwrap_err();
        assert_eq!(invalid_field(err), "nats.user");
    }

    #[test]
    fn tls_settings_load_from_the_environment() {
        let s = load(&[
            ("RUNNER_NATS_TLS_REQUIRED", "true"),
            ("RUNNER_NATS_TLS_CA_FILE", "/run/secrets/nats_ca.pem"),
            (
                "RUNNER_NATS_TLS_CERT_FILE",
                "/run/secrets/runner_nats_cert.pem",
            ),
            (
                "RUNNER_NATS_TLS_KEY_FILE",
                "/run/secrets/runner_nats_key.pem",
            ),
            ("RUNNER_NATS_TLS_SERVER_NAME", "nats.internal"),
        ])
        .unwrap();
        assert!(s.nats.tls_required);
        assert_eq!(
            s.nats.tls_summary(),
            "required, CA /run/secrets/nats_ca.pem, client certificate \
             /run/secrets/runner_nats_cert.pem, server name nats.internal"
        );
        let err = load(&[
            ("RUNNER_NATS_TLS_CA_FILE", "/ca.pem"),
            ("RUNNER_NATS_TLS_SERVER_NAME", "not a name"),
        ])
        .unwrap_err();
        assert_eq!(invalid_field(err), "nats.tls_server_name");
    }
}
