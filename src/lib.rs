//! Runner: executes sagas, relays their work through a transactional outbox, runs
//! effects and fires durable timers, over NATS JetStream and LMDB.
//! See ARCHITECTURE.md for the map.

#![forbid(unsafe_code)]

// The `dev` feature (off in release builds, on for tests and benches through the
// dev-dependency on this package) brings the test rig and what runs on it:
// `runner demo`, `runner bench`. See ARCHITECTURE.md, "The `dev` feature".
#[cfg(feature = "dev")]
pub mod bench;
pub mod cli;
pub mod crash;
#[cfg(feature = "dev")]
pub mod demo;
#[cfg(feature = "dev")]
pub mod dev;
pub mod digits;
pub mod effects;
pub mod envelope;
pub mod error;
pub mod https;
pub mod keys;
pub mod logging;
pub mod manifest;
pub mod nats_io;
pub mod oneshot;
pub mod ops;
pub mod pipeline;
pub mod placement;
pub mod program;
pub mod relay;
pub mod saga;
pub mod sagatest;
pub mod settings;
pub mod shadow;
// The runtime's top floor, one file per thread, lives at the repository's top level
// (stages/) so the architecture shows at a glance; it is part of this crate, and
// nothing below it imports it (tests/layering.rs).
#[path = "../stages/mod.rs"]
pub mod stages;
pub mod store;
pub mod temp_dir;
pub mod timefmt;
pub mod timers;
pub mod types;
