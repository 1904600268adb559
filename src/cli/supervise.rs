//! The main loop of `runner run`: watches the pipeline, turns SIGTERM/SIGINT into a
//! drain and an exit, and keeps a process drained over the ops port alive (answering
//! `/ready` 503) until it is told to resume — with a new pipeline on the same store,
//! NATS connection and catalogs — or signalled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::ops::Control;
use crate::pipeline::{Catalogs, Pipeline};
use crate::settings::Settings;
use crate::store::Store;

/// What a pipeline's life needs to start another.
pub struct Supervisor {
    pub settings: Settings,
    pub store: Arc<Store>,
    pub catalogs: Arc<Catalogs>,
    pub nc: nats::Connection,
    pub control: Arc<Control>,
    pub signalled: Arc<AtomicBool>,
    pub drain_deadline: Duration,
}

const TICK: Duration = Duration::from_millis(200);

impl Supervisor {
    pub fn run(&self, mut pipeline: Pipeline) -> Result<(), Error> {
        loop {
            self.watch(&pipeline)?;
            if !drain(&pipeline, self.drain_deadline) {
                log::warn!(deadline_ms = self.drain_deadline.as_millis() as u64; "drain deadline passed; exiting with work unacked (it is redelivered)");
                // Not joining the stages: they may be blocked on what made the drain slow.
                std::process::exit(0);
            }
            pipeline.shutdown();
            if self.signalled() {
                return Ok(());
            }
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
            pipeline = Pipeline::start_with(
                self.settings.clone(),
                self.store.clone(),
                self.catalogs.clone(),
                self.nc.clone(),
            )?;
            self.control.resumed(pipeline.shared().clone());
            log::warn!("resumed: the pipeline runs again");
        }
    }

    fn signalled(&self) -> bool {
        self.signalled.load(Ordering::Relaxed)
    }

    /// Returns once the pipeline drains (a signal, or the ops port asked); fails if a
    /// stage stopped on its own.
    fn watch(&self, pipeline: &Pipeline) -> Result<(), Error> {
        let mut last_progress = Instant::now();
        loop {
            std::thread::sleep(TICK);
            if self.signalled() && !pipeline.is_draining() {
                log::warn!("signal received: draining");
                pipeline.begin_drain();
            }
            if pipeline.is_draining() {
                return Ok(());
            }
            if !pipeline.all_running() {
                return Err(Error::Other(
                    "a pipeline stage stopped unexpectedly; exiting so that the process is restarted (unacked work is redelivered)".into(),
                ));
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
        log::info!(took_ms = started.elapsed().as_millis() as u64; "drained: every stage finished its work");
    }
    done
}
