//! Prompt flushing without blocking the caller.
//!
//! The blocking client writes buffered messages at most every 5 ms unless `flush()` is
//! called, and `flush_timeout` is no help during an outage: its timeout covers only the
//! write, and it then waits for the server's PONG without limit (nats 0.25,
//! `client.rs` `flush`). So stages never flush themselves; they kick this thread, which
//! flushes (its PING forces the buffer out at once) and may block through an outage
//! without holding up anyone.
//!
//! The thread waits for a kick on a condition variable, not a channel: a blocking
//! crossbeam receive spins and calls `sched_yield` before it parks, and the flusher
//! waits between nearly every pair of kicks (`src/oneshot.rs` says the same of the
//! effect workers).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
struct Kicks {
    /// A flush was asked for and has not started yet.
    pending: bool,
    /// Every `Flusher` is gone: the thread ends.
    closed: bool,
}

#[derive(Default)]
struct Shared {
    kicks: Mutex<Kicks>,
    kicked: Condvar,
}

/// Closes the thread's queue when the last `Flusher` clone is dropped.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.kicks.lock().closed = true;
        self.shared.kicked.notify_one();
    }
}

#[derive(Clone)]
pub struct Flusher {
    handle: Arc<Handle>,
}

impl Flusher {
    /// Starts the flushing thread; it ends when every `Flusher` clone is dropped. It is
    /// not joined: during an outage it may sit in `flush` until the server is back.
    pub fn start(nc: &nats::Connection) -> std::io::Result<Flusher> {
        Flusher::start_lagging(nc, Duration::ZERO)
    }

    /// A flusher that waits `lag` after a kick before it flushes: for a caller that
    /// kicks *before* a blocking request (which buffers its message and then waits), so
    /// the flush comes after the message is in the buffer.
    pub fn start_lagging(nc: &nats::Connection, lag: Duration) -> std::io::Result<Flusher> {
        let nc = nc.clone();
        Flusher::start_with(lag, move || {
            let _ = nc.flush();
        })
    }

    /// The thread, flushing with `flush` (the connection's, or a test's counter).
    fn start_with(lag: Duration, flush: impl Fn() + Send + 'static) -> std::io::Result<Flusher> {
        let shared = Arc::new(Shared::default());
        let thread = shared.clone();
        std::thread::Builder::new()
            .name("nats-flush".into())
            .spawn(move || {
                while wait_for_kick(&thread) {
                    if !lag.is_zero() {
                        std::thread::sleep(lag);
                    }
                    flush();
                }
            })?;
        Ok(Flusher {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// Asks for a flush soon; never blocks for long (a pending kick already covers
    /// this one, and the thread holds the lock only to read and clear the flag).
    pub fn kick(&self) {
        let shared = &self.handle.shared;
        let mut kicks = shared.kicks.lock();
        if !kicks.pending {
            kicks.pending = true;
            drop(kicks);
            shared.kicked.notify_one();
        }
    }
}

/// Parks until a kick is pending (true, the kick taken) or every `Flusher` is gone and
/// none is pending (false).
fn wait_for_kick(shared: &Shared) -> bool {
    let mut kicks = shared.kicks.lock();
    loop {
        if kicks.pending {
            kicks.pending = false;
            return true;
        }
        if kicks.closed {
            return false;
        }
        shared.kicked.wait(&mut kicks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting() -> (Flusher, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let flusher = Flusher::start_with(Duration::ZERO, move || {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        (flusher, count)
    }

    fn wait_until(what: impl Fn() -> bool) -> bool {
        crate::dev::wait_until(Duration::from_secs(5), what)
    }

    #[test]
    fn every_kick_is_followed_by_a_flush() {
        let (flusher, count) = counting();
        for n in 1..=3 {
            flusher.kick();
            assert!(
                wait_until(|| count.load(Ordering::SeqCst) >= n),
                "kick {n} was not followed by a flush"
            );
        }
    }

    #[test]
    fn kicks_while_one_is_pending_share_its_flush() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock();
        let count = Arc::new(AtomicUsize::new(0));
        let (g, c) = (gate.clone(), count.clone());
        // Each flush waits for the gate: the first is in progress while we kick more.
        let flusher = Flusher::start_with(Duration::ZERO, move || {
            let _open = g.lock();
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        flusher.kick();
        assert!(wait_until(|| !flusher.handle.shared.kicks.lock().pending));
        for _ in 0..10 {
            flusher.kick();
        }
        drop(held);
        assert!(wait_until(|| count.load(Ordering::SeqCst) == 2));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            count.load(Ordering::SeqCst),
            2,
            "ten kicks while pending: one flush"
        );
    }

    #[test]
    fn the_thread_ends_when_the_last_clone_is_dropped() {
        let (flusher, _count) = counting();
        let shared = flusher.handle.shared.clone();
        let other = flusher.clone();
        drop(flusher);
        assert!(!shared.kicks.lock().closed, "a clone is still alive");
        drop(other);
        assert!(shared.kicks.lock().closed);
        // The thread let go of its reference when it returned.
        assert!(wait_until(|| Arc::strong_count(&shared) == 1));
    }
}
