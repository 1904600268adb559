//! Effects: the manifest that defines them, the providers that call the outside world,
//! the circuit breaker and retry policy around each call, and secrets by reference. The
//! worker pool that consumes `WORKFLOW_COMMANDS` builds on these (issue 4); `unclaimed` finds
//! commands no process takes.

pub mod attempts;
pub mod breaker;
pub mod claims;
pub mod gate;
pub mod limit;
pub mod manifest;
pub mod provider;
pub mod providers;
pub mod recorder;
pub mod result;
pub mod secrets;
pub mod unclaimed;

pub use manifest::{EffectCatalog, EffectDef, EffectManifestError};
