//! Messages this process dropped unacked (after a storage failure) and JetStream will
//! deliver again. Two things follow from a drop:
//!
//! - **Forgiveness.** The redelivery it causes does not count against `max_deliver`: a
//!   full disk must stop intake, not push valid messages into quarantine.
//! - **Order.** JetStream redelivers in the order ack timers expire, not in stream order
//!   (after two stops, a message dropped first can come back after one dropped later),
//!   so while a dropped message is still owed, any later message of the same stream is
//!   held back (dropped too) until the owed one has come back.
//!
//! Bounded: at most `cap` messages are remembered (the oldest are forgotten first, which
//! only makes the delivery count stricter again), and an owed message that has not come
//! back within `owe_limit` (deleted from the stream, say) stops holding others back.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

type Key = (String, u64);

#[derive(Debug, Default)]
struct Inner {
    /// Deliveries forgiven per message, until its delivery ends.
    counts: HashMap<Key, u64>,
    /// Insertion order of `counts`, for the cap (entries may be stale).
    order: VecDeque<Key>,
    /// Per stream: dropped messages not yet received again, with when they were dropped.
    owed: HashMap<String, BTreeMap<u64, Instant>>,
    last_drop: Option<Instant>,
}

#[derive(Debug)]
pub struct Drops {
    inner: Mutex<Inner>,
    /// Anything remembered at all: lets the hot path skip the lock.
    active: AtomicBool,
    cap: usize,
    owe_limit: Duration,
}

/// What to do with a message that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Process,
    /// An earlier message of its stream is still owed: drop it unacked for now.
    HoldBack,
}

impl Drops {
    pub fn new(cap: usize, owe_limit: Duration) -> Drops {
        Drops {
            inner: Mutex::new(Inner::default()),
            active: AtomicBool::new(false),
            cap: cap.max(1),
            owe_limit,
        }
    }

    /// The message at (stream, seq) was dropped unacked.
    pub fn record(&self, stream: &str, seq: u64) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        inner.last_drop = Some(now);
        let key = (stream.to_string(), seq);
        match inner.counts.get_mut(&key) {
            Some(n) => *n += 1,
            None => {
                while inner.order.len() >= self.cap {
                    let Some(old) = inner.order.pop_front() else {
                        break;
                    };
                    inner.counts.remove(&old);
                    if let Some(owed) = inner.owed.get_mut(&old.0) {
                        owed.remove(&old.1);
                    }
                }
                inner.counts.insert(key.clone(), 1);
                inner.order.push_back(key);
            }
        }
        inner
            .owed
            .entry(stream.to_string())
            .or_default()
            .insert(seq, now);
        self.active.store(true, Ordering::Release);
    }

    /// Deliveries of (stream, seq) this process caused itself.
    pub fn forgiven(&self, stream: &str, seq: u64) -> u64 {
        if !self.active.load(Ordering::Acquire) {
            return 0;
        }
        let inner = self.inner.lock();
        inner
            .counts
            .get(&(stream.to_string(), seq))
            .copied()
            .unwrap_or(0)
    }

    /// Called for every message as it arrives, in arrival order.
    pub fn admit(&self, stream: &str, seq: u64) -> Admission {
        if !self.active.load(Ordering::Acquire) {
            return Admission::Process;
        }
        let mut inner = self.inner.lock();
        let Some(owed) = inner.owed.get_mut(stream) else {
            return Admission::Process;
        };
        owed.remove(&seq);
        // Owed messages that never came back stop holding others back.
        while let Some((&first, &at)) = owed.first_key_value() {
            if at.elapsed() < self.owe_limit {
                break;
            }
            log::warn!(stream = stream, seq = first; "a dropped message was not redelivered in time; no longer waiting for it");
            owed.remove(&first);
        }
        let earlier_owed = owed
            .first_key_value()
            .is_some_and(|(&first, _)| first < seq);
        if owed.is_empty() {
            inner.owed.remove(stream);
        }
        self.refresh(&inner);
        if earlier_owed {
            Admission::HoldBack
        } else {
            Admission::Process
        }
    }

    /// The message's delivery ended (acked or terminated): forget it.
    pub fn settle(&self, stream: &str, seq: u64) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let mut inner = self.inner.lock();
        // Its place in `order` stays until it reaches the front: O(1) here.
        inner.counts.remove(&(stream.to_string(), seq));
        self.refresh(&inner);
    }

    pub fn last_drop(&self) -> Option<Instant> {
        self.inner.lock().last_drop
    }

    fn refresh(&self, inner: &Inner) {
        let active = !inner.counts.is_empty() || !inner.owed.is_empty();
        self.active.store(active, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_forgiven_until_settled_and_bounded() {
        let drops = Drops::new(2, Duration::from_secs(60));
        drops.record("S", 1);
        drops.record("S", 1);
        drops.record("S", 2);
        assert_eq!(drops.forgiven("S", 1), 2);
        assert_eq!(drops.forgiven("T", 1), 0);
        drops.settle("S", 1);
        assert_eq!(drops.forgiven("S", 1), 0);
        drops.record("S", 3);
        drops.record("S", 4);
        assert_eq!(
            drops.forgiven("S", 2),
            0,
            "the oldest entry is forgotten at the cap"
        );
        assert_eq!(drops.forgiven("S", 4), 1);
    }

    #[test]
    fn later_messages_wait_for_an_owed_earlier_one() {
        let drops = Drops::new(100, Duration::from_secs(60));
        assert_eq!(drops.admit("S", 5), Admission::Process);
        drops.record("S", 11);
        drops.record("S", 12);
        // 21 was delivered before 11 and 12 came back: it must wait.
        assert_eq!(drops.admit("S", 21), Admission::HoldBack);
        assert_eq!(
            drops.admit("T", 21),
            Admission::Process,
            "other streams are not held"
        );
        assert_eq!(drops.admit("S", 11), Admission::Process);
        assert_eq!(drops.admit("S", 12), Admission::Process);
        assert_eq!(drops.admit("S", 21), Admission::Process);
    }

    #[test]
    fn an_owed_message_that_never_returns_stops_holding_others() {
        let drops = Drops::new(100, Duration::from_millis(20));
        drops.record("S", 3);
        assert_eq!(drops.admit("S", 4), Admission::HoldBack);
        std::thread::sleep(Duration::from_millis(30));
        // 4 was held back (and recorded as dropped) after 3; once 3 is given up, 4 is
        // itself owed, so 5 waits for 4 while 4 passes.
        drops.record("S", 4);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(drops.admit("S", 4), Admission::Process);
        assert_eq!(drops.admit("S", 5), Admission::Process);
    }
}
