//! Prompt flushing without blocking the caller.
//!
//! The blocking client writes buffered messages at most every 5 ms unless `flush()` is
//! called, and `flush_timeout` is no help during an outage: its timeout covers only the
//! write, and it then waits for the server's PONG without limit (nats 0.25,
//! `client.rs` `flush`). So stages never flush themselves; they kick this thread, which
//! flushes (its PING forces the buffer out at once) and may block through an outage
//! without holding up anyone.

use crossbeam_channel::{bounded, Sender, TrySendError};

#[derive(Clone)]
pub struct Flusher {
    kick: Sender<()>,
}

impl Flusher {
    /// Starts the flushing thread; it ends when every `Flusher` clone is dropped. It is
    /// not joined: during an outage it may sit in `flush` until the server is back.
    pub fn start(nc: &nats::Connection) -> std::io::Result<Flusher> {
        Flusher::start_lagging(nc, std::time::Duration::ZERO)
    }

    /// A flusher that waits `lag` after a kick before it flushes: for a caller that
    /// kicks *before* a blocking request (which buffers its message and then waits), so
    /// the flush comes after the message is in the buffer.
    pub fn start_lagging(
        nc: &nats::Connection,
        lag: std::time::Duration,
    ) -> std::io::Result<Flusher> {
        let (kick, kicked) = bounded::<()>(1);
        let nc = nc.clone();
        std::thread::Builder::new()
            .name("nats-flush".into())
            .spawn(move || {
                for () in kicked {
                    if !lag.is_zero() {
                        std::thread::sleep(lag);
                    }
                    let _ = nc.flush();
                }
            })?;
        Ok(Flusher { kick })
    }

    /// Asks for a flush soon; never blocks (a pending kick already covers this one).
    pub fn kick(&self) {
        match self.kick.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}
