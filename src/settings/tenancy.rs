//! `[tenancy]`: which tenants this process serves, and tenant placement on shards.

use serde::{Deserialize, Serialize};

use super::{bad, is_name, SettingsError, StreamSettings, TENANT_PLACEHOLDER};
use crate::types::TenantId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenancySettings {
    /// When false, every message belongs to `default_tenant`; a message naming any other
    /// tenant is a tenant-access error.
    pub multi_tenant: bool,
    /// The tenant of messages that name none ("" = the single tenant).
    pub default_tenant: String,
    /// When non-empty, only these tenants are served; others are tenant-access errors.
    pub allowed_tenants: Vec<String>,
    /// This process's saga shard (with `placement_bucket`).
    pub shard: String,
    /// NATS KV bucket placing tenants on shards (`tenant → {"shard": name}`); the shard
    /// serves the tenants placed on it and hands moved ones over without a restart.
    /// "" = the static `allowed_tenants`.
    pub placement_bucket: String,
}

impl Default for TenancySettings {
    fn default() -> Self {
        TenancySettings {
            multi_tenant: true,
            default_tenant: String::new(),
            allowed_tenants: Vec::new(),
            shard: String::new(),
            placement_bucket: String::new(),
        }
    }
}

impl TenancySettings {
    /// The tenants, and placement with the per-tenant filters of `streams`.
    pub(super) fn validate(&self, streams: &StreamSettings) -> Result<(), SettingsError> {
        self.validate_placement(streams)?;
        if let Err(e) = TenantId::new(&self.default_tenant) {
            return bad("tenancy.default_tenant", e.to_string());
        }
        for t in &self.allowed_tenants {
            if let Err(e) = TenantId::new(t) {
                return bad("tenancy.allowed_tenants", e.to_string());
            }
        }
        Ok(())
    }

    /// Per-tenant consumers (`{tenant}` in the saga filters) and dynamic placement.
    fn validate_placement(&self, streams: &StreamSettings) -> Result<(), SettingsError> {
        let per_tenant = [
            ("streams.aggregate_filter", &streams.aggregate_filter),
            ("streams.workflow_filter", &streams.workflow_filter),
        ];
        let templated = per_tenant
            .iter()
            .filter(|(_, f)| f.contains(TENANT_PLACEHOLDER))
            .count();
        if templated == 1 {
            return bad(
                "streams.workflow_filter",
                "per-tenant consumers need {tenant} in both streams.aggregate_filter and streams.workflow_filter",
            );
        }
        if templated == 2 && !self.multi_tenant {
            return bad(
                "tenancy.multi_tenant",
                "per-tenant filters ({tenant}) need a multi-tenant runner",
            );
        }
        if self.placement_bucket.is_empty() {
            if templated == 2 && self.allowed_tenants.is_empty() {
                return bad(
                    "tenancy.allowed_tenants",
                    "per-tenant filters ({tenant}) without a placement bucket need the tenants listed here",
                );
            }
            return Ok(());
        }
        if !is_name(&self.placement_bucket) {
            return bad(
                "tenancy.placement_bucket",
                format!(
                    "a bucket name is letters, digits, '_' and '-' (got {:?})",
                    self.placement_bucket
                ),
            );
        }
        if self.shard.is_empty() || !is_name(&self.shard) {
            return bad(
                "tenancy.shard",
                format!(
                    "placement needs this shard's name: letters, digits, '_' and '-' (got {:?})",
                    self.shard
                ),
            );
        }
        if templated != 2 {
            return bad(
                "streams.aggregate_filter",
                "placement moves tenants with their consumers: put {tenant} in streams.aggregate_filter and streams.workflow_filter (e.g. \"aggregate.{tenant}.>\" and \"workflow.*.{tenant}.>\")",
            );
        }
        if !self.allowed_tenants.is_empty() {
            return bad(
                "tenancy.allowed_tenants",
                "must be empty with a placement bucket: the bucket says which tenants this shard serves",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::tests::{assert_each_rejected, env, invalid_field};
    use crate::settings::Settings;

    #[test]
    fn validation_rejects_each_bad_field() {
        assert_each_rejected(&[
            (
                "RUNNER_TENANCY_DEFAULT_TENANT",
                "a.b",
                "tenancy.default_tenant",
            ),
            (
                "RUNNER_TENANCY_ALLOWED_TENANTS",
                "ok,b*d",
                "tenancy.allowed_tenants",
            ),
            (
                "RUNNER_STREAMS_AGGREGATE_FILTER",
                "aggregate.{tenant}.>",
                "streams.workflow_filter",
            ),
            ("RUNNER_TENANCY_PLACEMENT_BUCKET", "PLACE", "tenancy.shard"),
        ]);
    }

    #[test]
    fn placement_needs_a_shard_per_tenant_filters_and_no_static_tenants() {
        let placed = env(&[
            ("RUNNER_TENANCY_PLACEMENT_BUCKET", "TENANT_PLACEMENT"),
            ("RUNNER_TENANCY_SHARD", "a"),
            ("RUNNER_STREAMS_AGGREGATE_FILTER", "aggregate.{tenant}.>"),
            ("RUNNER_STREAMS_WORKFLOW_FILTER", "workflow.*.{tenant}.>"),
        ]);
        let s = Settings::load(None, placed.clone()).unwrap();
        assert_eq!(s.tenancy.shard, "a");
        let with = |extra: (&str, &str)| {
            let mut e: Vec<_> = placed
                .iter()
                .filter(|(k, _)| k != extra.0)
                .cloned()
                .collect();
            e.push((extra.0.to_string(), extra.1.to_string()));
            invalid_field(Settings::load(None, e).unwrap_err())
        };
        assert_eq!(
            with(("RUNNER_TENANCY_ALLOWED_TENANTS", "acme")),
            "tenancy.allowed_tenants"
        );
        assert_eq!(with(("RUNNER_TENANCY_SHARD", "")), "tenancy.shard");
        assert_eq!(
            with(("RUNNER_STREAMS_WORKFLOW_FILTER", "workflow.>")),
            "streams.workflow_filter"
        );
        // Static per-tenant consumers list their tenants.
        let static_filters = env(&[
            ("RUNNER_STREAMS_AGGREGATE_FILTER", "aggregate.{tenant}.>"),
            ("RUNNER_STREAMS_WORKFLOW_FILTER", "workflow.*.{tenant}.>"),
        ]);
        assert_eq!(
            invalid_field(Settings::load(None, static_filters.clone()).unwrap_err()),
            "tenancy.allowed_tenants"
        );
        let mut listed = static_filters;
        listed.push((
            "RUNNER_TENANCY_ALLOWED_TENANTS".into(),
            "acme,globex".into(),
        ));
        let s = Settings::load(None, listed).unwrap();
        let consumers = crate::nats_io::saga_consumers(&s);
        assert_eq!(consumers.len(), 4);
        assert_eq!(consumers[0].durable, "runner-saga-acme-aggregate");
        assert_eq!(consumers[3].filter, "workflow.*.globex.>");
    }
}
