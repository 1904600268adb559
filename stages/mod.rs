//! The runtime's top floor: every thread the process runs has its loop here (one file
//! each), and [`Pipeline`] (`pipeline.rs`) wires them: it picks the stages of the
//! mode, connects them by bounded channels, spawns them, and on drop stops and joins
//! them, logging why each ended ([`StageError`]). The library below (`pipeline`, `saga`,
//! `store`, `relay`, `effects`, `nats_io`, ...) never imports this module
//! (`tests/layering.rs`); the threads talk only through bounded channels and
//! `pipeline::Shared`.
//!
//! # Threads
//!
//! Every thread a `combined` process runs (a `saga` process runs the saga side and
//! `sweep`, an `effect` process the effect side and `sweep`). "Shutdown" is
//! `Intake::request_shutdown` (a drain, SIGTERM, dropping the [`Pipeline`]).
//!
//! | thread | loop in | input | output | bound | ends when |
//! |---|---|---|---|---|---|
//! | `fetch-{stream}` (one per saga consumer) | `fetch.rs` | JetStream pull consumer | decode channel | `consumer.fetch_batch` per pull; `channel_capacity` batches | shutdown (hands back what its last pull delivers); decode gone: error |
//! | `fetch-idle` (saga side, no saga consumer) | `fetch_idle.rs` | — | holds the decode channel open | — | shutdown |
//! | `decode` | `decode.rs` | fetch channel, operator retries | execute channel | `channel_capacity` batches; retries 64 | every fetch thread ended; execute gone: error |
//! | `execute` | `execute.rs` | decode channel | commit channel | `channel_capacity` batches | decode ended; commit gone: error |
//! | `commit` | `commit.rs` | execute channel | store-writer, acks, relay notices | `commit_batch_max` per transaction; notices `4 × channel_capacity`, never waited on | execute ended (then `Intake::commits_ended`) |
//! | `relay` | `relay.rs` | notices, outbox scans, publish acks, Gateway outcomes, delete outcomes | `WORKFLOW_COMMANDS`, Gateway jobs, delete batches to store-writer (one in flight, ≤ 2,048 keys) | `relay.*` (window, per-tenant queues, held bytes) | drained (outbox empty after the last commit) or its share of `ops.drain_deadline_ms`; ack inbox refused or outbox not countable: error |
//! | `gateway-{n}` (`relay.gateway_workers`) | `gateway.rs` | Gateway jobs | HTTP calls, outcomes to the relay | one job per worker | the relay ended (after the call in hand, up to its timeout; not waited for) |
//! | `scheduler` | `scheduler.rs` | due timers in LMDB | reminder events (publish), LMDB | `scheduler.batch` per scan | shutdown; ack inbox refused: error |
//! | `effect-fetch` | `effect_fetch.rs` | the effect catalog in force | starts/stops `fetch-effect-*` | — | shutdown, after its fetch threads ended; one of them failed: error |
//! | `fetch-effect-{effect}` (one per effect defined; scoped in `effect-fetch`) | `fetch.rs` | its effect's pull consumer | effect-split channel | as `fetch-*`: `channel_capacity` batches | shutdown, or its effect no longer defined; effect-split gone: error |
//! | `effect-unclaimed` | `unclaimed.rs` | the commands stream (a scan) | `Shared::unclaimed`, logs | one scan per half `effects.unclaimed_alert_secs` | shutdown |
//! | `effect-split` | `effect_split.rs` | effect fetch channel | worker channel: each command decoded, with claims its record read and its claim created (a batch's creates at once) | one fetched batch; `effects.workers` commands; 256 claim creates in flight | every effect fetch thread ended; workers gone: error |
//! | `effect-{n}` (`effects.workers`) | `effect.rs` `work` | worker channel | provider calls, the recorder | one command each; its `effects.*` limits | effect-split ended |
//! | (unnamed, scoped in `effect-{n}`) | `effect.rs` `keep_alive` | — | in-progress acks | one per command in a long call | the call ended |
//! | `effect-commit` | `effect_commit.rs` | completed commands from the workers | claims, store-writer, result publishes, acks | workers' requests: `effects.workers`; 256 records per transaction; 256 publishes in flight | every worker ended and every result publish ended |
//! | `store-writer` | `store_writer.rs` | writes of `commit`, `effect-commit` and the relay (outbox deletes) | LMDB: every waiting write in one transaction; answers | 16 writes queued, 64 per transaction | every writer ended (commit, relay, effect-commit) |
//! | `sweep` | `sweep.rs` | expiry index in LMDB | LMDB deletes | `retention.sweep_batch` per transaction | shutdown |
//! | main | `cli/supervise.rs` (`runner run`) | signals, the ops port's requests | starts/drains [`Pipeline`]s | — | the process exits |
//!
//! ## Threads owned by I/O primitives
//!
//! These stay with the object that starts them: each is part of an object any caller
//! may construct (a test, a bench, `runner check`, the ops port), and moving their loop
//! up here would make the library depend on this module.
//!
//! | thread | file | input | output | bound | ends when |
//! |---|---|---|---|---|---|
//! | `nats-flush` (per [`crate::nats_io::Flusher`]) | `src/nats_io/flusher.rs` | kicks | `flush` on the connection | one pending kick | every `Flusher` clone dropped (not joined: may sit in a flush through an outage) |
//! | `nats-replies` (per `Requester`, the effect claims') | `src/nats_io/requester.rs` | the shared reply inbox | the waiting callers | `PENDING_REPLIES` messages | the requester dropped |
//! | `nats-probe` | `src/ops/probe.rs` | a flush each second, consumer info | health and readiness figures | — | the process exits |
//! | `ops-accept` | `src/ops/http.rs` | the ops listener | `ops-conn` threads | — | the server dropped |
//! | `ops-conn` (per connection) | `src/ops/http.rs` | one connection | its answer | 32 at once, plus 4 for loopback peers | the answer sent or a deadline passed |
//! | the `nats` crate's own (unnamed) | the `nats` 0.25 client | the server socket | subscriptions' queues, callbacks | the client's buffers, per-subscription limits | the connection closed |

pub mod commit;
pub mod decode;
pub mod effect;
pub mod effect_commit;
pub mod effect_fetch;
pub mod effect_split;
mod error;
pub mod execute;
pub mod fetch;
pub mod fetch_idle;
pub mod gateway;
mod pipeline;
pub mod relay;
pub mod scheduler;
pub mod store_writer;
pub mod sweep;
pub mod unclaimed;

pub use error::StageError;
pub use pipeline::Pipeline;
