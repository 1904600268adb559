//! Loading the manifests the settings name into catalogs, with the checks that need the
//! settings too (retention floors, trigger subjects). `runner run` and `runner check`
//! load through here, and so do the ops port's reload and `runner shadow`: one reading
//! of the manifests for all of them.

use std::sync::Arc;

use crate::effects::EffectCatalog;
use crate::error::Error;
use crate::manifest::SagaCatalog;
use crate::program::Limits;
use crate::settings::Settings;

/// Program limits from the settings.
pub fn limits(settings: &Settings) -> Limits {
    Limits {
        max_depth: settings.programs.max_depth,
        max_output_bytes: settings.programs.max_output_bytes,
        max_state_bytes: settings.programs.max_state_bytes,
        ..Limits::default()
    }
}

/// Loads and compiles the saga manifests named by the settings.
pub fn load_catalog(settings: &Settings) -> Result<SagaCatalog, Error> {
    let catalog = SagaCatalog::load(
        &settings.manifests.sagas,
        settings.programs.gas,
        &limits(settings),
    )?;
    let least = settings.least_record_secs();
    for saga in &catalog.sagas {
        if let Some(dedupe) = saga.retention.dedupe.filter(|d| d.as_secs() < least) {
            return Err(Error::Other(format!(
                "{}: saga {}: retention.dedupe_secs is {} but must be at least {least}: {}",
                saga.source.display(),
                saga.name,
                dedupe.as_secs(),
                crate::settings::MARKER_FLOOR_REASON,
            )));
        }
    }
    Ok(catalog)
}

/// The sagas and effects the mode runs (an empty catalog for the side it does not).
pub fn catalogs_for_mode(
    settings: &Settings,
) -> Result<(Arc<SagaCatalog>, Arc<EffectCatalog>), Error> {
    let sagas = if settings.mode.runs_sagas() {
        let catalog = load_catalog(settings)?;
        for warning in trigger_warnings(settings, &catalog) {
            log::warn!("{warning}");
        }
        catalog
    } else {
        Default::default()
    };
    let effects = if settings.mode.runs_effects() {
        load_effects(settings)?
    } else {
        Default::default()
    };
    Ok((Arc::new(sagas), Arc::new(effects)))
}

/// Loads the effect manifests, resolving their secrets.
pub fn load_effects(settings: &Settings) -> Result<EffectCatalog, Error> {
    let catalog = EffectCatalog::load(
        &settings.manifests.effects,
        &settings.manifests.secrets_dir,
        &limits(settings),
    )?;
    let least = settings.least_record_secs();
    for def in catalog.effects.values() {
        if let Some(keep) = def.retention.filter(|d| d.as_secs() < least) {
            return Err(Error::Other(format!(
                "effect {}: retention_secs is {} but must be at least {least}: {}",
                def.name,
                keep.as_secs(),
                crate::settings::RECORD_FLOOR_REASON,
            )));
        }
    }
    Ok(catalog)
}

/// Warnings about saga triggers no message can reach: the subject names the tenant
/// (`{prefix}.{tenant}.…`), so a trigger under none of `streams.aggregate_prefix`,
/// `result_prefix` and `timer_prefix` only ever sees messages that are quarantined as
/// naming no tenant.
pub fn trigger_warnings(settings: &Settings, catalog: &SagaCatalog) -> Vec<String> {
    let s = &settings.streams;
    let prefixes = [&s.aggregate_prefix, &s.result_prefix, &s.timer_prefix];
    let mut warnings = Vec::new();
    for saga in &catalog.sagas {
        for trigger in &saga.triggers {
            if !prefixes.iter().any(|p| trigger.subject.may_lie_under(p)) {
                warnings.push(format!(
                    "saga {} triggers on {:?}, which lies under none of streams.aggregate_prefix {:?}, \
                     result_prefix {:?} and timer_prefix {:?}: the token after the prefix names the tenant, \
                     so every message it takes would be quarantined as naming no tenant; set the prefix the \
                     subjects use",
                    saga.name,
                    trigger.subject.as_str(),
                    s.aggregate_prefix,
                    s.result_prefix,
                    s.timer_prefix
                ));
            }
        }
    }
    warnings
}
