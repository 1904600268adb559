//! Helpers for development, the demo, benchmarks and tests: throwaway directories and a
//! throwaway `nats-server` and a stand-in Gateway. Nothing here is used by `runner run`.

mod gateway;
mod http_stub;
mod nats_cluster;
mod nats_server;
mod sandbox;
mod seed;
mod stream_reader;
mod temp_dir;

pub use gateway::{FakeGateway, ReceivedCommand, Reply};
pub use http_stub::{HttpStub, StubRequest, StubResponse};
pub use nats_cluster::{ClientOptionsFn, NatsCluster, NatsClusterError, NodeConfigFn, NodeSetup};
pub(crate) use nats_server::free_port;
pub use nats_server::{NatsServer, NatsServerError};
pub use sandbox::{example_manifest, namespace, publish_all, wait_until, Sandbox};
pub use seed::{seed_outbox, seed_outbox_as, seed_timers};
pub use stream_reader::{read_all, read_stream};
pub use temp_dir::TempDir;
