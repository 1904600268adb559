//! Helpers for development, the demo, benchmarks and tests: throwaway directories and a
//! throwaway `nats-server`. Nothing here is used by `runner run`.

mod nats_server;
mod sandbox;
mod temp_dir;

pub use nats_server::{NatsServer, NatsServerError};
pub use sandbox::{example_manifest, publish_all, wait_until, Sandbox};
pub use temp_dir::TempDir;
