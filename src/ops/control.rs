//! What the ops port steers besides reading: the pipeline in force (a new one after a
//! drained process resumes), whether it is drained, and a resume request for the main
//! loop, which owns the pipeline's threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::pipeline::Shared;

pub struct Control {
    current: Mutex<Arc<Shared>>,
    nc: nats::Connection,
    drained: AtomicBool,
    resume: AtomicBool,
    /// Held by operations that need the process drained throughout, and by a resume
    /// request, so neither overtakes the other.
    exclusive: Mutex<()>,
    /// Beaten by the main loop while it watches the pipeline (`/health`).
    heartbeat: super::Heartbeat,
}

impl Control {
    pub fn new(shared: Arc<Shared>, nc: nats::Connection) -> Arc<Control> {
        Arc::new(Control {
            current: Mutex::new(shared),
            nc,
            drained: AtomicBool::new(false),
            resume: AtomicBool::new(false),
            exclusive: Mutex::new(()),
            heartbeat: super::Heartbeat::default(),
        })
    }

    /// What the stages of the pipeline in force share.
    pub fn shared(&self) -> Arc<Shared> {
        self.current.lock().clone()
    }

    /// The main loop's heartbeat.
    pub fn heartbeat(&self) -> &super::Heartbeat {
        &self.heartbeat
    }

    pub fn nats(&self) -> &nats::Connection {
        &self.nc
    }

    /// A drained pipeline has stopped every stage: replay may move its consumers.
    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::SeqCst)
    }

    /// The main loop: the pipeline stopped after a drain requested over the ops port.
    pub fn set_drained(&self) {
        self.resume.store(false, Ordering::SeqCst);
        self.drained.store(true, Ordering::SeqCst);
    }

    /// Asks the main loop to start the pipeline again; false unless drained.
    pub fn request_resume(&self) -> bool {
        // Waits for an operation that needs the process drained to finish.
        let _held = self.exclusive.lock();
        if !self.is_drained() {
            return false;
        }
        self.resume.store(true, Ordering::SeqCst);
        true
    }

    /// For an operation that needs the process drained throughout (a migration, a
    /// replay): `None` when it is not drained; while the guard lives, no resume is
    /// requested.
    pub fn hold_drained(&self) -> Option<parking_lot::MutexGuard<'_, ()>> {
        let held = self.exclusive.lock();
        (self.is_drained() && !self.resume.load(Ordering::SeqCst)).then_some(held)
    }

    /// The main loop: whether a resume was asked for (and forget the request).
    pub fn take_resume(&self) -> bool {
        self.resume.swap(false, Ordering::SeqCst)
    }

    /// The main loop: a new pipeline runs.
    pub fn resumed(&self, shared: Arc<Shared>) {
        *self.current.lock() = shared;
        self.drained.store(false, Ordering::SeqCst);
    }
}
