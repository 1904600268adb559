//! Shared control of intake: shutdown, and the stop that follows a storage failure.
//!
//! When a commit (or a read) fails, nothing of the affected batches is acked. To keep
//! per-instance order, intake then stops and the *epoch* changes: every stage drops the
//! work it holds from the old epoch (unacked, so JetStream redelivers it) and the
//! executor forgets its uncommitted overlay. Intake resumes only when a write probe
//! succeeds and at least one ack wait has passed since the stop, so that every dropped
//! message is due for redelivery before any newer one is fetched: JetStream serves
//! redeliveries first, in stream order.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Deliveries this process caused itself by dropping messages unacked after a storage
/// failure. They do not count against `max_deliver`: a full disk must stop intake, not
/// push valid messages into quarantine. Bounded: the oldest entries are forgotten first
/// (which only makes the count stricter again).
#[derive(Debug, Default)]
struct Forgiven {
    counts: HashMap<(String, u64), u64>,
    order: VecDeque<(String, u64)>,
}

#[derive(Debug)]
pub struct Intake {
    epoch: AtomicU64,
    stopped: AtomicBool,
    shutdown: AtomicBool,
    committed_through: AtomicU64,
    stop: Mutex<Option<(Instant, String)>>,
    /// When a message was last dropped unacked: its redelivery is due one ack wait later.
    last_drop: Mutex<Option<Instant>>,
    resume_after: Duration,
    forgiven: Mutex<Forgiven>,
    forgiven_len: AtomicUsize,
    forgiven_cap: usize,
}

impl Intake {
    /// `resume_after`: the least time between a stop and the resumption (the ack wait).
    /// `forgiven_cap`: most messages whose self-caused redeliveries are remembered.
    pub fn new(resume_after: Duration, forgiven_cap: usize) -> Intake {
        Intake {
            forgiven: Mutex::new(Forgiven::default()),
            forgiven_len: AtomicUsize::new(0),
            forgiven_cap: forgiven_cap.max(1),
            epoch: AtomicU64::new(1),
            stopped: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            committed_through: AtomicU64::new(0),
            stop: Mutex::new(None),
            last_drop: Mutex::new(None),
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
            && self.last_drop.lock().as_ref().is_none_or(quiet)
    }

    pub fn resume(&self) {
        *self.stop.lock() = None;
        self.stopped.store(false, Ordering::SeqCst);
    }

    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Records that the message at (stream, seq) was dropped unacked by this process.
    pub fn forgive(&self, stream: &str, seq: u64) {
        *self.last_drop.lock() = Some(Instant::now());
        let mut f = self.forgiven.lock();
        let key = (stream.to_string(), seq);
        match f.counts.get_mut(&key) {
            Some(n) => *n += 1,
            None => {
                while f.order.len() >= self.forgiven_cap {
                    match f.order.pop_front() {
                        Some(old) => {
                            f.counts.remove(&old);
                        }
                        None => break,
                    }
                }
                f.counts.insert(key.clone(), 1);
                f.order.push_back(key);
            }
        }
        self.forgiven_len.store(f.counts.len(), Ordering::Relaxed);
    }

    /// Deliveries of (stream, seq) that this process caused itself.
    pub fn forgiven(&self, stream: &str, seq: u64) -> u64 {
        if self.forgiven_len.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let f = self.forgiven.lock();
        f.counts
            .get(&(stream.to_string(), seq))
            .copied()
            .unwrap_or(0)
    }

    /// The message's delivery ended (acked or terminated): forget it.
    pub fn settle(&self, stream: &str, seq: u64) {
        if self.forgiven_len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut f = self.forgiven.lock();
        // Its place in `order` stays until it reaches the front: O(1) here, and `order`
        // never exceeds the cap because only `forgive` pushes.
        f.counts.remove(&(stream.to_string(), seq));
        self.forgiven_len.store(f.counts.len(), Ordering::Relaxed);
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
        intake.forgive("S", 9);
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
    fn committed_watermark_only_grows() {
        let intake = Intake::new(Duration::ZERO, 8);
        intake.mark_committed(5);
        intake.mark_committed(3);
        assert_eq!(intake.committed_through(), 5);
    }

    #[test]
    fn self_caused_redeliveries_are_counted_settled_and_bounded() {
        let intake = Intake::new(Duration::ZERO, 2);
        intake.forgive("S", 1);
        intake.forgive("S", 1);
        intake.forgive("S", 2);
        assert_eq!(intake.forgiven("S", 1), 2);
        assert_eq!(intake.forgiven("T", 1), 0);
        intake.settle("S", 1);
        assert_eq!(intake.forgiven("S", 1), 0);
        intake.forgive("S", 3);
        intake.forgive("S", 4);
        assert_eq!(
            intake.forgiven("S", 2),
            0,
            "the oldest entry is forgotten at the cap"
        );
        assert_eq!(intake.forgiven("S", 4), 1);
    }
}
