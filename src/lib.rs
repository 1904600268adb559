//! Runner: executes sagas, relays their work through a transactional outbox, runs
//! effects and fires durable timers, over NATS JetStream and LMDB.
//! See ARCHITECTURE.md for the map.

#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod crash;
pub mod demo;
pub mod dev;
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
#[path = "../stages/mod.rs"]
pub mod stages;
pub mod store;
pub mod timefmt;
pub mod timers;
pub mod types;
