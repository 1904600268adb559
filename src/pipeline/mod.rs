//! The pipeline's shared parts: the batches that travel between the stages
//! (`FetchedBatch` → `DecodedBatch` → `ExecutedBatch`), the state every stage thread
//! shares ([`Shared`]: settings, store, catalogs, intake control, counters, histograms)
//! and operator retries. The threads themselves, and the wiring that starts them, are in
//! `stages/`; nothing here starts a thread.

mod catalogs;
mod drops;
mod histogram;
mod intake;
pub mod labelled;
mod load;
pub mod recovery;
mod retry;
mod stats;

use std::sync::Arc;

use crossbeam_channel::Sender;

pub use catalogs::Catalogs;
pub use drops::{Admission, Drops};
pub use histogram::{Histogram, Recorded};
pub use intake::Intake;
pub use labelled::Labelled;
pub use load::{catalogs_for_mode, limits, load_catalog, load_effects, trigger_warnings};
pub use retry::{Retry, RetryOutcome, RetryTicket};
pub use stats::{Stats, StatsSnapshot};

use crate::nats_io;
use crate::relay::Notices;
use crate::saga::{DecodeConfig, Decoded, LogCtx, MessageInfo, Outcome};
use crate::settings::Settings;
use crate::store::Store;

/// Messages from one pull, tagged with the intake epoch they were fetched in.
pub struct FetchedBatch {
    pub epoch: u64,
    pub msgs: Vec<nats::Message>,
}

/// A message with its decode result.
pub struct DecodedMsg {
    pub msg: nats::Message,
    pub info: MessageInfo,
    pub decoded: Decoded,
    /// Set when an operator retries a quarantined message (it has no delivery to ack).
    pub retry: Option<RetryTicket>,
}

pub struct DecodedBatch {
    pub epoch: u64,
    pub items: Vec<DecodedMsg>,
}

/// A message with what executing it produced.
pub struct ExecutedMsg {
    pub msg: nats::Message,
    pub info: MessageInfo,
    pub log: LogCtx,
    pub outcome: Outcome,
    pub retry: Option<RetryTicket>,
}

pub struct ExecutedBatch {
    pub epoch: u64,
    /// Increasing per executor batch; the commit stage reports it back when durable.
    pub batch_no: u64,
    pub items: Vec<ExecutedMsg>,
}

/// State shared by every stage thread.
pub struct Shared {
    pub settings: Settings,
    pub store: Arc<Store>,
    /// Saga and effect manifests in force (swapped by a reload).
    pub catalogs: Arc<Catalogs>,
    pub decode: DecodeConfig,
    pub intake: Intake,
    pub stats: Stats,
    /// Counts by saga and effect (and tenant, when asked for), for `/metrics`.
    pub labelled: Labelled,
    /// New outbox items, from the commit stage to the relay.
    pub notices: Notices,
    /// Time from commit to destination confirmation (publish ack, Gateway 2xx) of items
    /// the commit stage announced.
    pub relay_latency: Histogram,
    /// How late reminders are published: wall clock at the ack minus due time.
    pub timer_lag: Histogram,
    /// How long one scheduler scan for due timers takes.
    pub timer_scan: Histogram,
    /// Time each stage spends on its unit of work.
    pub stage_latency: StageLatency,
    /// Quarantined messages an operator retries, to the decode stage (disconnected
    /// when this process runs no sagas).
    pub retries: Sender<Retry>,
    /// Effect commands nobody takes, as the `effect-unclaimed` stage last found them.
    pub unclaimed: parking_lot::Mutex<crate::effects::unclaimed::UnclaimedReport>,
    /// Largest publish (headers and body) the server takes: its `max_payload`, read
    /// once from the connection, or `pipeline.max_payload_bytes` when it states none.
    pub max_payload: usize,
}

/// Processing time per stage, each on its own unit of work.
#[derive(Debug, Default)]
pub struct StageLatency {
    /// Decoding and routing one fetched batch.
    pub decode: Histogram,
    /// Executing one decoded batch (store reads and programs).
    pub execute: Histogram,
    /// One group commit, acks included.
    pub commit: Histogram,
    /// One effect command, all attempts and backoff waits included.
    pub effect: Histogram,
}

impl Shared {
    /// Drops a message without acking it (intake stopped or its epoch is over):
    /// JetStream redelivers it, and that redelivery is not held against `max_deliver`.
    pub fn drop_unacked(&self, stream: &str, seq: u64) {
        Stats::add(&self.stats.dropped_stale, 1);
        self.intake.drops().record(stream, seq);
    }

    /// [`Shared::drop_unacked`] for a raw message, reading its position from its reply subject.
    pub fn drop_unacked_msg(&self, msg: &nats::Message) {
        match nats_io::Delivery::of(msg) {
            Some(d) => self.drop_unacked(&d.stream, d.stream_seq),
            None => Stats::add(&self.stats.dropped_stale, 1),
        }
    }
}
