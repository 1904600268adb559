//! Is NATS there? The blocking client has no "connected" flag to read, and a flush
//! during an outage waits without limit, so one thread flushes every second and
//! records when a flush last came back; health is "came back recently".

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::timefmt::now_ms;

/// How often the probe flushes.
const EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct NatsProbe {
    last_ok_ms: Arc<AtomicI64>,
}

impl NatsProbe {
    /// Starts the probe thread; it runs for the life of the process.
    pub fn start(nc: nats::Connection) -> std::io::Result<NatsProbe> {
        let last_ok_ms = Arc::new(AtomicI64::new(0));
        let last = last_ok_ms.clone();
        std::thread::Builder::new()
            .name("nats-probe".into())
            .spawn(move || loop {
                if nc.flush().is_ok() {
                    last.store(now_ms(), Ordering::Relaxed);
                }
                std::thread::sleep(EVERY);
            })?;
        Ok(NatsProbe { last_ok_ms })
    }

    /// Whether a flush came back within `within`.
    pub fn is_connected(&self, within: Duration) -> bool {
        now_ms() - self.last_ok_ms.load(Ordering::Relaxed) <= within.as_millis() as i64
    }
}
