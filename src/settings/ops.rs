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
}

impl Default for OpsSettings {
    fn default() -> Self {
        OpsSettings {
            listen: "0.0.0.0:9090".into(),
            admin_token_file: PathBuf::new(),
            drain_deadline_ms: 30_000,
            metrics_tenant_label: false,
            metrics_max_tenants: 100,
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
        ]);
    }
}
