//! Saga versions in use: loading refuses a catalog that drops a version live instances
//! still run on, and an operator moves chosen instances to the newest version with the
//! saga's migration program (only while the process is drained, so no transition of
//! theirs is in flight).

use serde_json::{json, Value};

use crate::manifest::SagaCatalog;
use crate::program::ProgramInput;
use crate::store::{InstanceStatus, SagaRecord, Store, StoreError};
use crate::types::{CorrelationId, SagaName, TenantId};

/// Most instances one migration call moves.
pub const MAX_MIGRATE: usize = 1000;

/// Why a catalog may not be put in force over `store`.
#[derive(Debug, thiserror::Error)]
pub enum InUseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("saga {saga}: version {version} is not loaded (loaded: {loaded:?}) but live instances still run on it (tenant {tenant}, perhaps others); keep it under `previous:` or migrate those instances first")]
    NotLoaded {
        saga: String,
        version: u32,
        loaded: Vec<u32>,
        tenant: String,
    },
}

/// Fails, naming saga, version and a tenant, when `catalog` no longer loads a version
/// (or a saga) that active instances in `store` run on.
pub fn check_in_use(store: &Store, catalog: &SagaCatalog) -> Result<(), InUseError> {
    let in_use = store.versions_in_use()?;
    for (saga, versions) in &in_use.active {
        let loaded = SagaName::new(saga)
            .ok()
            .and_then(|name| catalog.get(&name))
            .map(|def| def.versions())
            .unwrap_or_default();
        for (version, tenant) in versions {
            if !loaded.contains(version) {
                return Err(InUseError::NotLoaded {
                    saga: saga.clone(),
                    version: *version,
                    loaded,
                    tenant: tenant.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Why a migration call did nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Request(String),
    /// An instance changed under the migration (nothing was written).
    #[error("{0}")]
    Conflict(String),
    #[error("store: {0}")]
    Store(String),
}

impl From<StoreError> for MigrateError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => MigrateError::Conflict(m),
            other => MigrateError::Store(other.to_string()),
        }
    }
}

/// What happened to one instance asked to migrate.
#[derive(Debug, Clone, PartialEq)]
pub enum Migration {
    Migrated {
        from: u32,
        to: u32,
    },
    /// Left as it was, and why.
    Skipped(String),
}

/// Moves the chosen instances of one saga to its newest version, running the saga's
/// migration program from each instance's version over its state. Every migrated
/// instance is written in one transaction; a fault leaves that instance alone.
pub fn migrate(
    store: &Store,
    catalog: &SagaCatalog,
    tenant: &TenantId,
    saga: &SagaName,
    correlations: &[CorrelationId],
) -> Result<Vec<(CorrelationId, Migration)>, MigrateError> {
    let def = catalog
        .get(saga)
        .ok_or_else(|| MigrateError::Request(format!("saga {saga} is not loaded")))?;
    if correlations.len() > MAX_MIGRATE {
        return Err(MigrateError::Request(format!(
            "at most {MAX_MIGRATE} instances per call"
        )));
    }
    let mut results = Vec::with_capacity(correlations.len());
    let mut writes: Vec<(CorrelationId, SagaRecord, SagaRecord)> = Vec::new();
    let mut asked = std::collections::HashSet::new();
    for corr in correlations {
        let skip = |why: String| (corr.clone(), Migration::Skipped(why));
        if !asked.insert(corr) {
            results.push(skip("listed more than once".into()));
            continue;
        }
        let Some(record) = store.saga(tenant, saga, corr)? else {
            results.push(skip("no such instance".into()));
            continue;
        };
        if record.status != InstanceStatus::Active {
            results.push(skip(format!("finished ({})", record.status.as_str())));
            continue;
        }
        if record.version == def.version {
            results.push(skip(format!("already on version {}", def.version)));
            continue;
        }
        let Some(program) = def.migrations.get(&record.version) else {
            results.push(skip(format!(
                "the manifest has no migration from version {}",
                record.version
            )));
            continue;
        };
        let ctx = json!({
            "tenant_id": tenant.as_str(), "saga": saga.as_str(), "correlation_id": corr.as_str(),
            "from_version": record.version, "to_version": def.version,
        });
        let input = ProgramInput {
            state: &record.state,
            event: &Value::Null,
            ctx: &ctx,
        };
        let output = match program.eval(&input, def.gas) {
            Ok(o) => o,
            Err(fault) => {
                results.push(skip(format!("the migration program faulted: {fault}")));
                continue;
            }
        };
        if !output.commands.is_empty() || !output.schedules.is_empty() || !output.cancel.is_empty()
        {
            results.push(skip(
                "a migration may change state only (it gave commands, schedules or cancel)".into(),
            ));
            continue;
        }
        let mut moved = record.clone();
        if let Some(state) = output.state {
            moved.state = state;
        }
        moved.version = def.version;
        results.push((
            corr.clone(),
            Migration::Migrated {
                from: record.version,
                to: def.version,
            },
        ));
        writes.push((corr.clone(), record, moved));
    }
    store.write_migrated(tenant, saga, &writes)?;
    Ok(results)
}
