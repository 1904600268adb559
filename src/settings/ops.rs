//! `[ops]`: the ops port and shutdown.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{bad, within, SettingsError};

/// The ops port (docs/contracts.md §6) and shutdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsSettings {
    /// Address of the ops HTTP port; "" turns it off.
    pub listen: String,
    /// File holding the bearer token of `/admin/*` (a Swarm secret, say); "" leaves
    /// the admin endpoints closed (403).
    pub admin_token_file: PathBuf,
    /// After SIGTERM/SIGINT or `/admin/drain`, how long in-flight work may take to
    /// finish before the process exits without acking it (it is redelivered).
    pub drain_deadline_ms: u64,
    /// Adds a `tenant` label to the saga- and effect-labelled metrics (off: a tenant
    /// count is not bounded by the manifests, and every tenant multiplies the series).
    pub metrics_tenant_label: bool,
    /// With the tenant label on, the most tenants with series of their own; the rest
    /// count under `tenant="(other)"`.
    pub metrics_max_tenants: usize,
    /// Ops-port URLs of the other shards (`http://runner-b:9090`): the web console
    /// (`GET /ui`) links to their consoles. Each shard serves its own console.
    pub console_shards: Vec<String>,
}

impl Default for OpsSettings {
    fn default() -> Self {
        OpsSettings {
            listen: "0.0.0.0:9090".into(),
            admin_token_file: PathBuf::new(),
            drain_deadline_ms: 30_000,
            metrics_tenant_label: false,
            metrics_max_tenants: 100,
            console_shards: Vec::new(),
        }
    }
}

impl OpsSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if !self.listen.is_empty() && self.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad(
                "ops.listen",
                format!(
                    "must be an address like 0.0.0.0:9090, or empty (got {:?})",
                    self.listen
                ),
            );
        }
        if self.console_shards.len() > MAX_CONSOLE_SHARDS {
            return bad(
                "ops.console_shards",
                format!("at most {MAX_CONSOLE_SHARDS} URLs"),
            );
        }
        for url in &self.console_shards {
            if let Err(why) = console_shard_url(url) {
                return bad("ops.console_shards", format!("{url:?}: {why}"));
            }
        }
        within(
            "ops.drain_deadline_ms",
            self.drain_deadline_ms,
            100,
            3_600_000,
        )?;
        within(
            "ops.metrics_max_tenants",
            self.metrics_max_tenants as u64,
            1,
            10_000,
        )
    }
}

/// Shards the console links to, at most (a bound on what `/ui/shards` serves).
const MAX_CONSOLE_SHARDS: usize = 256;

/// A shard's ops-port URL: `http(s)://host[:port][/path]`, no credentials, nothing the
/// page could turn into a script link.
fn console_shard_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err("names no host");
    }
    if host.contains('@') {
        return Err("must not carry credentials");
    }
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be a URL of at most 2048 characters without spaces");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::settings::tests::assert_each_rejected;

    #[test]
    fn validation_rejects_each_bad_field() {
        assert_each_rejected(&[
            ("RUNNER_OPS_LISTEN", "localhost", "ops.listen"),
            (
                "RUNNER_OPS_METRICS_MAX_TENANTS",
                "0",
                "ops.metrics_max_tenants",
            ),
            (
                "RUNNER_OPS_METRICS_MAX_TENANTS",
                "10001",
                "ops.metrics_max_tenants",
            ),
            (
                "RUNNER_OPS_CONSOLE_SHARDS",
                "javascript:alert(1)",
                "ops.console_shards",
            ),
            (
                "RUNNER_OPS_CONSOLE_SHARDS",
                "http://u:p@b:9090",
                "ops.console_shards",
            ),
            (
                "RUNNER_OPS_CONSOLE_SHARDS",
                "https://",
                "ops.console_shards",
            ),
        ]);
        let s = crate::settings::Settings::load(
            None,
            vec![(
                "RUNNER_OPS_CONSOLE_SHARDS".into(),
                "http://runner-a:9090,https://runner-b.example/ops".into(),
            )],
        )
        .unwrap();
        assert_eq!(
            s.ops.console_shards,
            ["http://runner-a:9090", "https://runner-b.example/ops"]
        );
    }
}
