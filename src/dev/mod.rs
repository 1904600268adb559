//! The test rig, for development, the demo, benchmarks and tests: throwaway
//! `nats-server`s and clusters, a stand-in Gateway and HTTP stubs, seeding, stream
//! reading. Compiled only with the `dev` cargo feature (tests and benches get it from
//! the package's dev-dependency on itself), so the shipped binary carries none of it.

mod gateway;
mod http_stub;
mod nats_cluster;
mod nats_server;
mod sandbox;
mod seed;
mod stream_reader;

pub use gateway::{FakeGateway, ReceivedCommand, Reply};
pub use http_stub::{HttpStub, StubRequest, StubResponse};
pub use nats_cluster::{ClientOptionsFn, NatsCluster, NatsClusterError, NodeConfigFn, NodeSetup};
pub(crate) use nats_server::free_port;
pub use nats_server::{NatsServer, NatsServerError};
pub use sandbox::{example_manifest, namespace, publish_all, wait_until, Sandbox};
pub use seed::{seed_outbox, seed_outbox_as, seed_timers};
pub use stream_reader::{read_all, read_stream};
// Kept here too: tests, benches and the rig name it `dev::TempDir`.
pub use crate::temp_dir::TempDir;
