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
        let (kick, kicked) = bounded::<()>(1);
        let nc = nc.clone();
        std::thread::Builder::new()
            .name("nats-flush".into())
            .spawn(move || {
                for () in kicked {
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
