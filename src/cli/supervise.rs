//! The main loop of `runner run`: watches the pipeline, turns SIGTERM/SIGINT into a
//! drain and an exit, and keeps a process drained over the ops port alive (answering
//! `/ready` 503) until it is told to resume — with a new pipeline on the same store,
//! NATS connection and catalogs — or signalled. With a placement bucket it also reads
//! the tenants' placement every second and, when this shard's tenants change, drains,
//! hands tenants over (`crate::placement`) and starts a pipeline for the new set.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::ops::Control;
use crate::pipeline::Catalogs;
use crate::placement::{Placement, Plan};
use crate::settings::Settings;
use crate::stages::Pipeline;
use crate::store::Store;
use crate::types::TenantId;

/// What a pipeline's life needs to start another.
pub struct Supervisor {
    pub settings: Settings,
    pub store: Arc<Store>,
    pub catalogs: Arc<Catalogs>,
    pub nc: nats::Connection,
    pub control: Arc<Control>,
    pub signalled: Arc<AtomicBool>,
    pub drain_deadline: Duration,
    pub placement: Option<Shards>,
    pub silence: Silence,
}

/// Watch for a silent NATS connection: up as far as the client knows, answering no PING.
pub struct Silence {
    probe: crate::ops::NatsProbe,
    link: Arc<crate::nats_io::Link>,
    /// Zero: not watched.
    limit: Duration,
    /// Consecutive checks that found the connection silent.
    strikes: u32,
}

impl Silence {
    pub fn new(
        probe: crate::ops::NatsProbe,
        link: Arc<crate::nats_io::Link>,
        limit: Duration,
    ) -> Silence {
        Silence {
            probe,
            link,
            limit,
            strikes: 0,
        }
    }

    /// Exits the process (code 3) once the connection has been silent for the limit. No
    /// drain and no joining the stages: they may be blocked writing to that connection.
    fn check(&mut self) {
        let waited = self.probe.unanswered_for();
        if self.limit.is_zero() || waited < self.limit || !self.link.is_up() {
            self.strikes = 0;
            return;
        }
        // Twice in a row: a reconnect marks the link up a moment before it answers the
        // PINGs that waited through the outage.
        self.strikes += 1;
        if self.strikes < 2 {
            return;
        }
        log::error!(waited_ms = waited.as_millis() as u64, limit_ms = self.limit.as_millis() as u64;
            "the NATS connection answers no PING: exiting so that the process restarts on a new connection (unacked work is redelivered)");
        std::process::exit(EXIT_SILENT_NATS);
    }
}

/// Exit code of a process that gave up a silent NATS connection.
pub const EXIT_SILENT_NATS: i32 = 3;

/// This shard's side of tenant placement.
pub struct Shards {
    pub placement: Placement,
    store: Arc<Store>,
    /// Tenants the running pipeline serves.
    pub serving: BTreeSet<TenantId>,
    /// The bucket's last sequence when it was last read (unchanged: nothing to do).
    seen: u64,
    /// Tenants placed here whose handover has not arrived yet.
    waiting: bool,
    last_read: Instant,
}

impl Shards {
    /// Reads the placement once and carries out what it says, before any pipeline
    /// runs; the tenants to serve go into `settings`.
    pub fn start(
        placement: Placement,
        store: Arc<Store>,
        settings: &mut Settings,
    ) -> Result<Shards, Error> {
        let mut shards = Shards {
            placement,
            store,
            serving: BTreeSet::new(),
            seen: 0,
            waiting: false,
            last_read: Instant::now(),
        };
        let plan = shards.read().map_err(|e| Error::Other(e.to_string()))?;
        shards.carry_out(&plan, settings)?;
        Ok(shards)
    }

    fn read(&mut self) -> Result<Plan, crate::placement::PlacementError> {
        self.last_read = Instant::now();
        self.seen = self.placement.version()?;
        let plan = self.placement.plan(&self.store)?;
        self.waiting = !plan.waiting.is_empty();
        if self.waiting {
            log::info!(tenants = format!("{:?}", plan.waiting); "tenants placed here wait for their handover");
        }
        Ok(plan)
    }

    /// A plan that changes what this shard serves, if the placement moved.
    fn poll(&mut self) -> Option<Plan> {
        if self.last_read.elapsed() < crate::placement::POLL {
            return None;
        }
        self.last_read = Instant::now();
        let version = match self.placement.version() {
            Ok(v) => v,
            Err(e) => {
                log::warn!(error = e.to_string(); "cannot read the placement bucket");
                return None;
            }
        };
        if version == self.seen && !self.waiting {
            return None;
        }
        match self.read() {
            Ok(plan) if plan.changes(&self.serving) => Some(plan),
            Ok(_) => None,
            Err(e) => {
                log::warn!(error = e.to_string(); "cannot read the placement bucket");
                None
            }
        }
    }

    /// Hands tenants over (the pipeline is not running) and sets the tenants to serve.
    fn carry_out(&mut self, plan: &Plan, settings: &mut Settings) -> Result<(), Error> {
        let serve = self
            .placement
            .apply(plan, &self.store, &settings.storage.path)
            .map_err(|e| Error::Other(e.to_string()))?;
        // An imported tenant's instances may run on a version this shard does not load:
        // their events would be quarantined. Say so now, loudly, rather than per event.
        if let Ok(catalog) = crate::cli::load_catalog(settings) {
            if let Err(e) = crate::saga::versions::check_in_use(&self.store, &catalog) {
                log::error!(error = e.to_string().as_str(); "after the handover, instances run on a saga version this shard does not load; their events will be quarantined until it is loaded");
            }
        }
        log::warn!(tenants = format!("{serve:?}"); "serving tenants");
        settings.tenancy.allowed_tenants = serve.iter().map(|t| t.to_string()).collect();
        self.serving = serve;
        Ok(())
    }
}

const TICK: Duration = Duration::from_millis(200);

/// Why a pipeline was drained.
enum Drained {
    /// A signal, or `POST /admin/drain`.
    Asked,
    /// This shard's tenants change.
    Placement(Plan),
}

impl Supervisor {
    pub fn run(&mut self, mut pipeline: Pipeline) -> Result<(), Error> {
        loop {
            let watched = self.watch(&pipeline);
            // Draining (up to its deadline), handing tenants over and waiting for a
            // resume are not ticks of the watch, and not a wedge: /health stops
            // watching the heartbeat until the loop watches again.
            self.control.heartbeat().pause();
            let why = watched?;
            if !drain(&pipeline, self.drain_deadline) {
                log::warn!(deadline_ms = self.drain_deadline.as_millis() as u64; "drain deadline passed; exiting with work unacked (it is redelivered)");
                // Not joining the stages: they may be blocked on what made the drain slow.
                std::process::exit(0);
            }
            pipeline.shutdown();
            if self.signalled() {
                return Ok(());
            }
            match why {
                Drained::Placement(plan) => {
                    if let Some(shards) = &mut self.placement {
                        shards.carry_out(&plan, &mut self.settings)?;
                    }
                }
                Drained::Asked => {
                    // Drained over the ops port: stay up until resumed or signalled.
                    self.control.set_drained();
                    log::warn!("drained; waiting for POST /admin/resume (or a signal to exit)");
                    loop {
                        std::thread::sleep(TICK);
                        if self.signalled() {
                            return Ok(());
                        }
                        if self.control.take_resume() {
                            break;
                        }
                    }
                }
            }
            pipeline = Pipeline::start_with(
                self.settings.clone(),
                self.store.clone(),
                self.catalogs.clone(),
                self.nc.clone(),
            )?;
            self.control.resumed(pipeline.shared().clone());
            log::warn!("the pipeline runs again");
        }
    }

    fn signalled(&self) -> bool {
        self.signalled.load(Ordering::Relaxed)
    }

    /// Returns once the pipeline drains (a signal, the ops port, or a placement change
    /// asked); fails if a stage stopped on its own.
    fn watch(&mut self, pipeline: &Pipeline) -> Result<Drained, Error> {
        let mut last_progress = Instant::now();
        loop {
            std::thread::sleep(TICK);
            self.control.heartbeat().beat();
            self.silence.check();
            if self.signalled() && !pipeline.is_draining() {
                log::warn!("signal received: draining");
                pipeline.begin_drain();
            }
            if pipeline.is_draining() {
                return Ok(Drained::Asked);
            }
            if !pipeline.all_running() {
                return Err(Error::Other(
                    "a pipeline stage stopped unexpectedly; exiting so that the process is restarted (unacked work is redelivered)".into(),
                ));
            }
            if let Some(plan) = self.placement.as_mut().and_then(Shards::poll) {
                log::warn!(release = format!("{:?}", plan.release), import = format!("{:?}", plan.import),
                    serve = format!("{:?}", plan.serve); "placement changed: draining to hand tenants over");
                pipeline.begin_drain();
                return Ok(Drained::Placement(plan));
            }
            if last_progress.elapsed() >= Duration::from_secs(10) {
                last_progress = Instant::now();
                let s = pipeline.stats();
                log::info!(fetched = s.fetched, transitions = s.transitions, acked = s.acked, quarantined = s.quarantined,
                    ignored = s.ignored, duplicates = s.duplicates, commit_failures = s.commit_failures,
                    intake_stopped = pipeline.intake().is_stopped(); "progress");
            }
        }
    }
}

/// Waits for the stages to finish what they hold, up to `deadline`; false if they did
/// not. Work unfinished at the deadline stays unacked and is redelivered, never lost.
fn drain(pipeline: &Pipeline, deadline: Duration) -> bool {
    let started = Instant::now();
    while !pipeline.all_stopped() && started.elapsed() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let done = pipeline.all_stopped();
    if done {
        let took_ms = started.elapsed().as_millis() as u64;
        // The relay's count (none in effect mode, which has no outbox).
        match pipeline.intake().outbox_left() {
            Some(left) => log::info!(took_ms = took_ms, outbox_left = left;
                "drained: every stage finished its work"),
            None => log::info!(took_ms = took_ms; "drained: every stage finished its work"),
        }
    }
    done
}
