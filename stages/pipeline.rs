//! Wiring of the pipeline: ensures streams and consumers, builds [`Shared`], picks the
//! stages of the mode, connects them by bounded channels and spawns one thread each;
//! dropping the [`Pipeline`] stops and joins them, logging why each ended. A full
//! channel blocks its sender, so a slow stage slows fetching instead of growing memory.
//!
//! ```text
//! fetch(aggregate) ─┐
//!                   ├─▶ decode ─▶ execute ─▶ commit ─▶ ack / term
//! fetch(workflow) ──┘                          │ notices (and scans of the store)
//!                                              ▼
//!                                            relay ─▶ WORKFLOW_COMMANDS / Gateway
//! ```

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver};

use crate::effects::claims::Claims;
use crate::effects::EffectCatalog;
use crate::error::Error;
use crate::manifest::SagaCatalog;
use crate::nats_io::{self, ConsumerSpec};
use crate::pipeline::{
    Catalogs, FetchedBatch, Histogram, Intake, Retry, Shared, StageLatency, Stats, StatsSnapshot,
};
use crate::relay::NoticeInbox;
use crate::saga::DecodeConfig;
use crate::settings::Settings;
use crate::stages::{self, StageError};
use crate::store::{Store, Writer};

/// Retried quarantine records waiting for the decode stage.
const RETRY_QUEUE: usize = 64;

/// What a stage thread returns.
type Stage = JoinHandle<Result<(), StageError>>;

/// A running pipeline.
pub struct Pipeline {
    shared: Arc<Shared>,
    /// The stages: each one's end outside a drain is a failure ([`Pipeline::all_running`]).
    threads: Vec<Stage>,
    /// Threads the relay owns the work of (`gateway-N`): the relay counts a missing
    /// Gateway worker as a retryable failure, so their end is no reason to restart. They
    /// end once the relay has; a Gateway worker may still be in a call up to its
    /// timeout, so at drop only those that ended are joined.
    helpers: Vec<Stage>,
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
        nats_io::set_up("streams", || nats_io::ensure_streams(&js, &settings))?;
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
            let info = nats_io::set_up(&spec.durable, || {
                nats_io::ensure_consumer(&js, spec, &settings)
            })?;
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
            labelled: crate::pipeline::Labelled::new(&settings.ops),
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
            helpers: Vec::new(),
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
            pipeline.spawn("fetch-idle", move || stages::fetch_idle::run(&shared, tx))?;
        }
        drop((fetch_tx, effect_fetch_tx));
        // The hot paths' one writer: it ends once the commit stage, the relay and the
        // effect-commit thread have ended and dropped their handles.
        let (writer, writer_jobs) = crate::store::writer(shared.store.clone());
        let s = shared.clone();
        pipeline.spawn("store-writer", move || {
            stages::store_writer::run(&s, writer_jobs)
        })?;
        if mode.runs_sagas() {
            let (rx, retries) = (fetch_rx, retry_inbox);
            pipeline.start_saga_stages(&shared, &writer, rx, retries, &nc, notice_inbox)?;
        }
        if mode.runs_effects() {
            pipeline.start_effect_stages(&shared, &writer, effect_fetch_rx, &nc)?;
        }
        drop(writer);
        let s = shared.clone();
        pipeline.spawn("sweep", move || stages::sweep::run(&s))?;
        Ok(pipeline)
    }

    /// decode → execute → commit, the relay (with its Gateway workers)
    /// and the scheduler.
    fn start_saga_stages(
        &mut self,
        shared: &Arc<Shared>,
        writer: &Writer,
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
        let (s, w) = (shared.clone(), writer.clone());
        self.spawn("commit", move || stages::commit::run(&s, &exec_rx, w))?;
        let deleter = crate::relay::deleter::deleter(writer.clone());
        // The relay's helpers end when the relay drops its ends of their channels.
        let (lanes, workers) = stages::gateway::pool(&shared.settings.relay);
        for (n, worker) in workers.into_iter().enumerate() {
            self.spawn_helper(&format!("gateway-{n}"), move || {
                stages::gateway::run(worker)
            })?;
        }
        let (s, relay_nc) = (shared.clone(), nc.clone());
        self.spawn("relay", move || {
            stages::relay::run(&s, &relay_nc, notice_inbox, deleter, lanes)
        })?;
        let (s, nc) = (shared.clone(), nc.clone());
        self.spawn("scheduler", move || stages::scheduler::run(&s, &nc))
    }

    /// The split of fetched commands, the effect workers and their commit thread.
    fn start_effect_stages(
        &mut self,
        shared: &Arc<Shared>,
        writer: &Writer,
        fetched: Receiver<FetchedBatch>,
        nc: &nats::Connection,
    ) -> Result<(), Error> {
        let workers = shared.settings.effects.workers;
        let (tx, rx) = bounded(workers);
        let e = &shared.settings.effects;
        let claims = if e.claims_bucket.is_empty() {
            None
        } else {
            let claims = Claims::open(
                nc,
                &e.claims_bucket,
                Duration::from_millis(e.claim_lease_ms),
                Duration::from_secs(e.claims_ttl_secs),
                shared.settings.streams.replicas,
            )
            .map_err(|e| Error::Other(format!("effects cannot run without their claims: {e}")))?;
            Some(Arc::new(claims))
        };
        let creates = claims
            .as_ref()
            .map(|claims| Claims::create_publisher(nc).map(|p| (claims.clone(), p)))
            .transpose()
            .map_err(|e| {
                Error::Other(format!(
                    "effect claims cannot subscribe to their ack inbox: {e}"
                ))
            })?;
        let s = shared.clone();
        self.spawn("effect-split", move || {
            stages::effect_split::run(&s, creates, &fetched, &tx)
        })?;
        let (recorder, committer) = crate::effects::recorder::recorder(
            shared.clone(),
            writer.clone(),
            nc,
            claims.clone(),
            workers,
        )
        .map_err(|e| Error::Other(format!("effects cannot subscribe to their ack inbox: {e}")))?;
        // Ends once every worker (every recorder) is gone and its publishes ended.
        self.spawn("effect-commit", move || {
            stages::effect_commit::run(committer)
        })?;
        for n in 0..workers {
            let (s, rx) = (shared.clone(), rx.clone());
            let (recorder, claims) = (recorder.clone(), claims.clone());
            self.spawn(&format!("effect-{n}"), move || {
                stages::effect::work(&s, claims.as_deref(), recorder, &rx)
            })?;
        }
        Ok(())
    }

    fn spawn(
        &mut self,
        name: &str,
        f: impl FnOnce() -> Result<(), StageError> + Send + 'static,
    ) -> Result<(), Error> {
        let handle = spawn_named(name, f)?;
        self.threads.push(handle);
        Ok(())
    }

    /// [`Pipeline::spawn`] for a thread in [`Pipeline::helpers`].
    fn spawn_helper(
        &mut self,
        name: &str,
        f: impl FnOnce() -> Result<(), StageError> + Send + 'static,
    ) -> Result<(), Error> {
        let handle = spawn_named(name, f)?;
        self.helpers.push(handle);
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
            join_and_log(t);
        }
        for t in self.helpers.drain(..) {
            if t.is_finished() {
                join_and_log(t);
            } else {
                let name = t.thread().name().unwrap_or("?").to_string();
                log::debug!(thread = name.as_str(); "thread not joined: it is still in a call, which ends by its timeout");
            }
        }
    }
}

fn spawn_named(
    name: &str,
    f: impl FnOnce() -> Result<(), StageError> + Send + 'static,
) -> Result<Stage, Error> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|e| Error::Other(format!("cannot start thread {name}: {e}")))
}

/// Joins a stage thread and logs how it ended: info for a clean end, error with the
/// reason for a failure or a panic (its message, when it has one).
fn join_and_log(t: Stage) {
    let name = t.thread().name().unwrap_or("?").to_string();
    match t.join() {
        Ok(Ok(())) => log::info!(thread = name.as_str(); "stage thread ended"),
        Ok(Err(e)) => {
            log::error!(thread = name.as_str(), error = e.to_string(); "stage thread failed")
        }
        Err(panic) => {
            let message = panic_text(panic.as_ref());
            log::error!(thread = name.as_str(), error = message.as_str(); "stage thread panicked")
        }
    }
}

/// The text of a panic's payload (`panic!` with a literal or a formatted message).
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(f: impl FnOnce() -> Result<(), StageError> + Send + 'static) -> Stage {
        let t = spawn_named("test-stage", f).unwrap();
        while !t.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        t
    }

    #[test]
    fn a_join_keeps_the_reason_a_stage_ended() {
        let failed = ended(|| Err(StageError::DownstreamGone { next: "commit" }));
        let reason = failed.join().unwrap().unwrap_err().to_string();
        assert!(reason.contains("commit stage ended"), "{reason}");
        assert!(ended(|| Ok(())).join().unwrap().is_ok());
    }

    #[test]
    fn a_panic_payload_is_read_as_text() {
        let t = ended(|| panic!("boom {}", 7));
        let payload = t.join().unwrap_err();
        assert_eq!(panic_text(payload.as_ref()), "boom 7");
        let t = ended(|| std::panic::panic_any(42_u8));
        assert_eq!(
            panic_text(t.join().unwrap_err().as_ref()),
            "a panic without a message"
        );
    }
}
