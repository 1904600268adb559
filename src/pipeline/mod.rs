//! Wiring of the saga pipeline: threads for fetch (one per consumer), decode, execute,
//! commit and relay, connected by bounded channels. A full channel blocks its sender, so a
//! slow stage slows fetching instead of growing memory.
//!
//! ```text
//! fetch(aggregate) ─┐
//!                   ├─▶ decode ─▶ execute ─▶ commit ─▶ ack / term
//! fetch(workflow) ──┘                          │ notices (and scans of the store)
//!                                              ▼
//!                                            relay ─▶ WORKFLOW_COMMANDS / Gateway
//! ```

mod catalogs;
mod drops;
mod histogram;
mod intake;
pub mod recovery;
mod retry;
mod stats;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

pub use catalogs::Catalogs;
pub use drops::{Admission, Drops};
pub use histogram::{Histogram, Recorded};
pub use intake::Intake;
pub use retry::{Retry, RetryOutcome, RetryTicket};
pub use stats::{Stats, StatsSnapshot};

use crate::effects::EffectCatalog;
use crate::error::Error;
use crate::manifest::SagaCatalog;
use crate::nats_io::{self, ConsumerSpec};
use crate::relay::{NoticeInbox, Notices};
use crate::saga::{DecodeConfig, Decoded, LogCtx, MessageInfo, Outcome};
use crate::settings::Settings;
use crate::stages;
use crate::store::Store;

/// Retried quarantine records waiting for the decode stage.
const RETRY_QUEUE: usize = 64;

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
    /// Effect commands nobody takes, as `stages::unclaimed` last found them.
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

/// A running saga pipeline.
pub struct Pipeline {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Ensures streams and consumers, then starts the stage threads.
    pub fn start(
        settings: Settings,
        store: Arc<Store>,
        catalog: Arc<SagaCatalog>,
        effects: Arc<EffectCatalog>,
        nc: nats::Connection,
    ) -> Result<Pipeline, Error> {
        Pipeline::start_with(settings, store, Catalogs::new(catalog, effects), nc)
    }

    /// [`Pipeline::start`] with catalogs that outlive it: a reload swaps them, and a
    /// pipeline started again after a drain runs what was last loaded.
    pub fn start_with(
        settings: Settings,
        store: Arc<Store>,
        catalogs: Arc<Catalogs>,
        nc: nats::Connection,
    ) -> Result<Pipeline, Error> {
        let js = nats::jetstream::new(nc.clone());
        nats_io::ensure_streams(&js, &settings)?;
        let mode = settings.mode;
        let mut consumers: Vec<ConsumerSpec> = Vec::new();
        if mode.runs_sagas() {
            consumers.extend(nats_io::saga_consumers(&settings));
        }
        if mode.runs_effects() {
            consumers.extend(nats_io::effect_consumers(&settings, &catalogs.effects()));
        }
        let mut subs = Vec::new();
        // Resumption after a storage stop waits for the consumers' real ack wait.
        let mut ack_wait = settings.ack_wait();
        for spec in &consumers {
            let info = nats_io::ensure_consumer(&js, spec, &settings)?;
            ack_wait = ack_wait.max(info.config.ack_wait);
            subs.push((spec.clone(), stages::fetch::subscribe(&js, spec)?));
        }
        let (notices, notice_inbox) = crate::relay::notices(settings.pipeline.channel_capacity * 4);
        let stats = Stats::default();
        // The relay and the commit stage keep this up to date from here on.
        Stats::set(&stats.outbox_depth, store.outbox_len()?);
        let (retries, retry_inbox) = bounded(RETRY_QUEUE);
        let max_payload = nats_io::max_payload(&nc, settings.pipeline.max_payload_bytes);
        let shared = Arc::new(Shared {
            max_payload,
            retries,
            unclaimed: Default::default(),
            notices,
            relay_latency: Histogram::default(),
            timer_lag: Histogram::default(),
            timer_scan: Histogram::default(),
            stage_latency: StageLatency::default(),
            decode: DecodeConfig::from_settings(&settings),
            intake: Intake::new(
                ack_wait + std::time::Duration::from_millis(200),
                // Every message that can be in flight, a few times over (room for the
                // effect consumers a reload may add).
                4 * consumers.len().max(8) * settings.consumer.max_ack_pending.max(1) as usize,
            ),
            stats,
            settings,
            store,
            catalogs,
        });
        let cap = shared.settings.pipeline.channel_capacity;
        let (fetch_tx, fetch_rx) = bounded(cap);
        let (effect_fetch_tx, effect_fetch_rx) = bounded(cap);

        // If a spawn fails, dropping `pipeline` stops and joins the threads already started.
        let mut pipeline = Pipeline {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        let flusher = nats_io::Flusher::start(&nc)
            .map_err(|e| Error::Other(format!("cannot start the flush thread: {e}")))?;
        let effect_stream = shared.settings.streams.workflow_commands.clone();
        let (effect_subs, saga_subs): (Vec<_>, Vec<_>) = subs
            .into_iter()
            .partition(|(spec, _)| spec.stream == effect_stream && mode.runs_effects());
        let subs_for_sagas = !saga_subs.is_empty();
        for (spec, sub) in saga_subs {
            let (shared, flusher, js, tx) = (
                shared.clone(),
                flusher.clone(),
                js.clone(),
                fetch_tx.clone(),
            );
            pipeline.spawn(&format!("fetch-{}", spec.stream), move || {
                stages::fetch::run(&shared, &js, &spec, sub, &flusher, &tx)
            })?;
        }
        if mode.runs_effects() {
            // A fetch thread per effect defined, reconciled with the catalog on reload.
            let (s, flusher, js) = (shared.clone(), flusher.clone(), js.clone());
            let tx = effect_fetch_tx.clone();
            pipeline.spawn("effect-fetch", move || {
                stages::effect_fetch::run(&s, &js, &flusher, effect_subs, tx)
            })?;
            let (s, nc) = (shared.clone(), nc.clone());
            pipeline.spawn("effect-unclaimed", move || stages::unclaimed::run(&s, &nc))?;
        }
        if mode.runs_sagas() && !subs_for_sagas {
            // A shard with no tenants (yet): nothing to fetch, but the saga stages keep
            // running (the relay and scheduler may have work) until shutdown ends them.
            let (shared, tx) = (shared.clone(), fetch_tx.clone());
            pipeline.spawn("fetch-idle", move || {
                while !shared.intake.is_shutting_down() {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                drop(tx);
            })?;
        }
        drop((fetch_tx, effect_fetch_tx));
        if mode.runs_sagas() {
            pipeline.start_saga_stages(&shared, fetch_rx, retry_inbox, &nc, notice_inbox)?;
        }
        if mode.runs_effects() {
            pipeline.start_effect_stages(&shared, effect_fetch_rx, &nc)?;
        }
        let s = shared.clone();
        pipeline.spawn("sweep", move || stages::sweep::run(&s))?;
        Ok(pipeline)
    }

    /// decode → execute → commit, the relay and the scheduler.
    fn start_saga_stages(
        &mut self,
        shared: &Arc<Shared>,
        fetched: Receiver<FetchedBatch>,
        retries: Receiver<Retry>,
        nc: &nats::Connection,
        notice_inbox: NoticeInbox,
    ) -> Result<(), Error> {
        let cap = shared.settings.pipeline.channel_capacity;
        let (decode_tx, decode_rx) = bounded(cap);
        let (exec_tx, exec_rx) = bounded(cap);
        let s = shared.clone();
        self.spawn("decode", move || {
            stages::decode::run(&s, &fetched, &retries, &decode_tx)
        })?;
        let s = shared.clone();
        self.spawn("execute", move || {
            stages::execute::run(&s, &decode_rx, &exec_tx)
        })?;
        let s = shared.clone();
        self.spawn("commit", move || stages::commit::run(&s, &exec_rx))?;
        let (s, relay_nc) = (shared.clone(), nc.clone());
        self.spawn("relay", move || {
            stages::relay::run(&s, &relay_nc, notice_inbox)
        })?;
        let (s, nc) = (shared.clone(), nc.clone());
        self.spawn("scheduler", move || stages::scheduler::run(&s, &nc))
    }

    /// The split of fetched commands, the effect workers and their commit thread.
    fn start_effect_stages(
        &mut self,
        shared: &Arc<Shared>,
        fetched: Receiver<FetchedBatch>,
        nc: &nats::Connection,
    ) -> Result<(), Error> {
        let workers = shared.settings.effects.workers;
        let (tx, rx) = bounded(workers);
        let s = shared.clone();
        self.spawn("effect-split", move || {
            stages::effect::split(&s, &fetched, &tx)
        })?;
        let e = &shared.settings.effects;
        let claims = if e.claims_bucket.is_empty() {
            None
        } else {
            let claims = crate::effects::claims::Claims::open(
                nc,
                &e.claims_bucket,
                Duration::from_millis(e.claim_lease_ms),
                Duration::from_secs(e.claims_ttl_secs),
                shared.settings.streams.replicas,
            )
            .map_err(|e| Error::Other(format!("effects cannot run without their claims: {e}")))?;
            Some(Arc::new(claims))
        };
        let (recorder, committer) =
            crate::effects::recorder::recorder(shared.clone(), nc, claims.clone(), workers)
                .map_err(|e| {
                    Error::Other(format!("effects cannot subscribe to their ack inbox: {e}"))
                })?;
        // Ends once every worker (every recorder) is gone and its publishes ended.
        self.spawn("effect-commit", move || committer.run())?;
        for n in 0..workers {
            let (s, rx) = (shared.clone(), rx.clone());
            let (recorder, claims) = (recorder.clone(), claims.clone());
            self.spawn(&format!("effect-{n}"), move || {
                stages::effect::work(&s, claims.as_deref(), recorder, &rx)
            })?;
        }
        Ok(())
    }

    fn spawn(&mut self, name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), Error> {
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(f)
            .map_err(|e| Error::Other(format!("cannot start thread {name}: {e}")))?;
        self.threads.push(handle);
        Ok(())
    }

    /// Whether every stage thread still runs. Outside shutdown, a stage that ended has
    /// failed (a panic, say): the process should exit and be restarted, which loses
    /// nothing because nothing unacked was committed.
    pub fn all_running(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// What the stages share (settings, store, counters, histograms): for the ops port.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops taking work: fetching ends, and every stage finishes what it holds and
    /// stops; the relay, once the commit stage ended, sends what the outbox holds (up to
    /// `ops.drain_deadline_ms`) and reports what it left ([`Intake::outbox_left`]).
    /// Threads are not joined here.
    pub fn begin_drain(&self) {
        self.shared.intake.request_shutdown();
    }

    pub fn is_draining(&self) -> bool {
        self.shared.intake.is_shutting_down()
    }

    /// Whether every stage thread has ended (after a drain: all work finished).
    pub fn all_stopped(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Reminder lag (publish ack minus due time) and scheduler scan durations.
    pub fn timer_histograms(&self) -> (&Histogram, &Histogram) {
        (&self.shared.timer_lag, &self.shared.timer_scan)
    }

    /// Commit-to-confirmation latency of relayed items.
    pub fn relay_latency(&self) -> &Histogram {
        &self.shared.relay_latency
    }

    pub fn intake(&self) -> &Intake {
        &self.shared.intake
    }

    /// Stops fetching, lets in-flight work commit and ack, and joins every thread
    /// (what dropping the pipeline does; this names it at call sites).
    pub fn shutdown(self) {}
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shared.intake.request_shutdown();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
