//! Helpers for tests of what the repository ships (docker/, swarm/): its root, the NATS
//! secrets docker/nats-secrets.sh makes and clients that use them, and list values of
//! the stack files as `docker stack config` or a YAML parser gives them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The repository's root: the shipped files are named relative to it.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs docker/nats-secrets.sh into `dir` with `names` in the server certificate (none:
/// the script's default, `nats localhost`).
pub fn make_nats_secrets(dir: &Path, names: &[&str]) {
    let out = Command::new("sh")
        .arg(root().join("docker/nats-secrets.sh"))
        .arg(dir)
        .args(names)
        .output()
        .expect("run docker/nats-secrets.sh (needs sh and openssl)");
    assert!(
        out.status.success(),
        "docker/nats-secrets.sh failed (it needs openssl): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Client options of `user` of a NATS secured with the secrets in `secrets` (as
/// [`make_nats_secrets`] makes them): its password and client certificate, the CA.
pub fn nats_client(secrets: &Path, user: &str) -> nats::Options {
    let password = std::fs::read_to_string(secrets.join(format!("{user}_nats_password")))
        .unwrap_or_else(|e| panic!("{user}'s password: {e}"));
    nats::Options::with_user_pass(user, &password)
        .add_root_certificate(secrets.join("nats_ca.pem"))
        .client_cert(
            secrets.join(format!("{user}_nats_cert.pem")),
            secrets.join(format!("{user}_nats_key.pem")),
        )
}

/// A list of strings (a service's `command`, `healthcheck.test`…); anything else: empty.
pub fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}
