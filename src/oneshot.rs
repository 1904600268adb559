//! A one-value hand-off whose receiver parks at once.
//!
//! A blocking receive on a crossbeam channel spins and then calls `sched_yield` several
//! times before it parks. For a wait of milliseconds (a group commit, a NATS round
//! trip) that is pure waste, and with 64 effect workers waiting at once the yields were
//! a third of the pool's CPU. Here the receiver sleeps on a condition variable until the
//! value comes, the sender is dropped, or the timeout passes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

enum State<T> {
    Empty,
    Full(T),
    /// The sender went away without sending.
    Closed,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// Why [`Receiver::recv_timeout`] returned no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    Timeout,
    /// The sender was dropped without sending.
    Closed,
}

pub fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::Empty),
        ready: Condvar::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Hands the value over (kept, unread, if the receiver is gone).
    pub fn send(self, value: T) {
        *self.shared.state.lock() = State::Full(value);
        self.shared.ready.notify_one();
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        if matches!(*state, State::Empty) {
            *state = State::Closed;
            self.shared.ready.notify_one();
        }
    }
}

impl<T> Receiver<T> {
    /// Waits for the value.
    pub fn recv(self) -> Result<T, RecvError> {
        self.wait(None)
    }

    /// Waits for the value at most `timeout`.
    pub fn recv_timeout(self, timeout: Duration) -> Result<T, RecvError> {
        self.wait(Some(Instant::now() + timeout))
    }

    fn wait(self, deadline: Option<Instant>) -> Result<T, RecvError> {
        let mut state = self.shared.state.lock();
        loop {
            match std::mem::replace(&mut *state, State::Closed) {
                State::Full(value) => return Ok(value),
                State::Closed => return Err(RecvError::Closed),
                State::Empty => *state = State::Empty,
            }
            match deadline {
                Some(deadline) => {
                    if self
                        .shared
                        .ready
                        .wait_until(&mut state, deadline)
                        .timed_out()
                        && matches!(*state, State::Empty)
                    {
                        return Err(RecvError::Timeout);
                    }
                }
                None => self.shared.ready.wait(&mut state),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_sent_from_another_thread_arrives() {
        let (tx, rx) = oneshot();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(42);
        });
        assert_eq!(rx.recv(), Ok(42));
        sender.join().unwrap();
    }

    #[test]
    fn a_value_sent_before_the_wait_is_there_at_once() {
        let (tx, rx) = oneshot();
        tx.send("x");
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok("x"));
    }

    #[test]
    fn a_dropped_sender_closes_and_silence_times_out() {
        let (tx, rx) = oneshot::<u8>();
        drop(tx);
        assert_eq!(rx.recv(), Err(RecvError::Closed));
        let (_tx, rx) = oneshot::<u8>();
        let started = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(30)),
            Err(RecvError::Timeout)
        );
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
