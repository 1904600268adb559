//! Shared control of intake: shutdown, and the stop that follows a storage failure.
//!
//! When a commit (or a read) fails, nothing of the affected batches is acked. To keep
//! per-instance order, intake then stops and the *epoch* changes: every stage drops the
//! work it holds from the old epoch (unacked, so JetStream redelivers it) and the
//! executor forgets its uncommitted overlay. Intake resumes only when a write probe
//! succeeds and one ack wait has passed since the stop and since the last drop, so the
//! dropped messages are due for redelivery; [`Drops`] then holds back anything that
//! arrives ahead of a message still owed.
//!
//! A drain (shutdown) runs in order: intake stops (fetching ends), the saga stages
//! finish what they hold and the commit stage ends ([`Intake::commits_ended`]), the
//! relay sends what the outbox still holds and reports what it left
//! ([`Intake::outbox_left`]), then the process exits (or stays drained).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::drops::Drops;

#[derive(Debug)]
pub struct Intake {
    epoch: AtomicU64,
    stopped: AtomicBool,
    shutdown: AtomicBool,
    /// When the shutdown was asked for (the drain deadline counts from here).
    shutdown_at: Mutex<Option<Instant>>,
    /// The commit stage has ended: no outbox item is written any more.
    commits_ended: AtomicBool,
    /// Outbox items left in the store when the relay stopped after a drain.
    outbox_left: Mutex<Option<u64>>,
    committed_through: AtomicU64,
    stop: Mutex<Option<(Instant, String)>>,
    resume_after: Duration,
    drops: Drops,
}

impl Intake {
    /// `resume_after`: the least time between a stop (or a drop) and the resumption
    /// (the ack wait). `drops_cap`: most dropped messages remembered.
    pub fn new(resume_after: Duration, drops_cap: usize) -> Intake {
        Intake {
            // An owed message gets a few ack waits to come back.
            drops: Drops::new(drops_cap, resume_after * 4),
            epoch: AtomicU64::new(1),
            stopped: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            shutdown_at: Mutex::new(None),
            commits_ended: AtomicBool::new(false),
            outbox_left: Mutex::new(None),
            committed_through: AtomicU64::new(0),
            stop: Mutex::new(None),
            resume_after,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Stops intake after a storage failure and invalidates all in-flight work.
    pub fn stop(&self, reason: String) {
        let mut stop = self.stop.lock();
        if stop.is_none() {
            *stop = Some((Instant::now(), reason));
        }
        self.stopped.store(true, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Why intake is stopped, if it is.
    pub fn stop_reason(&self) -> Option<String> {
        self.stop.lock().as_ref().map(|(_, r)| r.clone())
    }

    /// Whether enough time has passed since the stop, and since the last message was
    /// dropped (a pull request open at the stop may deliver a little longer), for every
    /// dropped message to be due for redelivery.
    pub fn may_resume(&self) -> bool {
        let quiet = |at: &Instant| at.elapsed() >= self.resume_after;
        self.stop.lock().as_ref().is_none_or(|(at, _)| quiet(at))
            && self.drops.last_drop().as_ref().is_none_or(quiet)
    }

    pub fn resume(&self) {
        *self.stop.lock() = None;
        self.stopped.store(false, Ordering::SeqCst);
    }

    pub fn request_shutdown(&self) {
        self.shutdown_at.lock().get_or_insert_with(Instant::now);
        self.shutdown.store(true, Ordering::SeqCst);
    }

    /// When the shutdown was first asked for, if it was.
    pub fn shutdown_at(&self) -> Option<Instant> {
        *self.shutdown_at.lock()
    }

    /// The commit stage says it has ended (also when it panicked): after a drain began,
    /// no more outbox items are written, so the relay can tell when it sent them all.
    pub fn mark_commits_ended(&self) {
        self.commits_ended.store(true, Ordering::SeqCst);
    }

    pub fn commits_ended(&self) -> bool {
        self.commits_ended.load(Ordering::SeqCst)
    }

    /// The relay stopped after a drain with `n` outbox items left in the store.
    pub fn set_outbox_left(&self, n: u64) {
        *self.outbox_left.lock() = Some(n);
    }

    /// Outbox items the drained relay left in the store (`None`: no relay has stopped
    /// after a drain of this pipeline, or it could not count them).
    pub fn outbox_left(&self) -> Option<u64> {
        *self.outbox_left.lock()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// The messages this process dropped unacked (see [`Drops`]).
    pub fn drops(&self) -> &Drops {
        &self.drops
    }

    /// The newest executor batch number whose transitions are durable.
    pub fn committed_through(&self) -> u64 {
        self.committed_through.load(Ordering::SeqCst)
    }

    pub fn mark_committed(&self, batch_no: u64) {
        self.committed_through.fetch_max(batch_no, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_changes_epoch_and_resume_waits_for_the_ack_wait() {
        let intake = Intake::new(Duration::from_millis(50), 8);
        let before = intake.epoch();
        intake.stop("disk".into());
        assert!(intake.is_stopped());
        assert_eq!(intake.epoch(), before + 1);
        assert_eq!(intake.stop_reason().as_deref(), Some("disk"));
        assert!(!intake.may_resume());
        std::thread::sleep(Duration::from_millis(40));
        // A late drop (an open pull request still delivering) pushes resumption back.
        intake.drops().record("S", 9);
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            !intake.may_resume(),
            "50 ms after the stop but 20 ms after the drop"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert!(intake.may_resume());
        intake.resume();
        assert!(!intake.is_stopped());
        assert_eq!(intake.epoch(), before + 1, "resuming keeps the new epoch");
    }

    #[test]
    fn a_drain_counts_from_the_first_request_and_reports_once_the_relay_stopped() {
        let intake = Intake::new(Duration::ZERO, 8);
        assert_eq!(intake.shutdown_at(), None);
        intake.request_shutdown();
        let first = intake.shutdown_at().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        intake.request_shutdown();
        assert_eq!(
            intake.shutdown_at(),
            Some(first),
            "a second request moves nothing"
        );
        assert!(!intake.commits_ended());
        intake.mark_commits_ended();
        assert!(intake.commits_ended());
        assert_eq!(intake.outbox_left(), None);
        intake.set_outbox_left(3);
        assert_eq!(intake.outbox_left(), Some(3));
    }

    #[test]
    fn committed_watermark_only_grows() {
        let intake = Intake::new(Duration::ZERO, 8);
        intake.mark_committed(5);
        intake.mark_committed(3);
        assert_eq!(intake.committed_through(), 5);
    }
}
