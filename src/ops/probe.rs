//! Is NATS there, and how far behind are our consumers? The blocking client has no
//! "connected" flag to read, and a flush during an outage waits without limit, so one
//! thread flushes every second and records when a flush last came back (health is "came
//! back recently"); every few seconds it also reads each consumer's info for the lag
//! metrics, so a scrape never waits on NATS.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::nats_io::ConsumerSpec;
use crate::timefmt::now_ms;

/// How often the probe flushes.
const EVERY: Duration = Duration::from_secs(1);
/// Consumer info is read every this many flushes.
const CONSUMERS_EVERY: u32 = 5;

/// One consumer as JetStream last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerLag {
    pub durable: String,
    /// Messages in the stream not yet delivered to this consumer.
    pub pending: u64,
    /// Delivered, not yet acked.
    pub ack_pending: u64,
    /// Delivered more than once and not yet acked.
    pub redelivered: u64,
}

#[derive(Debug, Clone)]
pub struct NatsProbe {
    last_ok_ms: Arc<AtomicI64>,
    /// When the PING now waiting for its PONG was sent (0: none waiting). The client's
    /// flush has no timeout of its own: it waits for the PONG or a disconnect.
    ping_sent_ms: Arc<AtomicI64>,
    consumers: Arc<Mutex<Vec<ConsumerLag>>>,
}

impl NatsProbe {
    /// Starts the probe thread for `consumers`; it runs for the life of the process.
    pub fn start(nc: nats::Connection, consumers: Vec<ConsumerSpec>) -> std::io::Result<NatsProbe> {
        let probe = NatsProbe {
            last_ok_ms: Arc::new(AtomicI64::new(0)),
            ping_sent_ms: Arc::new(AtomicI64::new(0)),
            consumers: Arc::default(),
        };
        let p = probe.clone();
        std::thread::Builder::new()
            .name("nats-probe".into())
            .spawn(move || {
                let js = nats::jetstream::new(nc.clone());
                for tick in 0u32.. {
                    p.ping_sent_ms.store(monotonic_ms(), Ordering::Relaxed);
                    let answered = nc.flush().is_ok();
                    p.ping_sent_ms.store(0, Ordering::Relaxed);
                    if answered {
                        p.last_ok_ms.store(now_ms(), Ordering::Relaxed);
                        if tick % CONSUMERS_EVERY == 0 {
                            p.read_consumers(&js, &consumers);
                        }
                    }
                    std::thread::sleep(EVERY);
                }
            })?;
        Ok(probe)
    }

    fn read_consumers(&self, js: &nats::jetstream::JetStream, specs: &[ConsumerSpec]) {
        let lags: Vec<ConsumerLag> = specs
            .iter()
            .filter_map(|s| js.consumer_info(&s.stream, &s.durable).ok())
            .map(|info| ConsumerLag {
                durable: info.name,
                pending: info.num_pending,
                ack_pending: info.num_ack_pending as u64,
                redelivered: info.num_redelivered as u64,
            })
            .collect();
        *self.consumers.lock() = lags;
    }

    /// Whether a flush came back within `within`.
    pub fn is_connected(&self, within: Duration) -> bool {
        now_ms() - self.last_ok_ms.load(Ordering::Relaxed) <= within.as_millis() as i64
    }

    /// How long the probe's last PING has waited for its PONG (zero when none waits).
    pub fn unanswered_for(&self) -> Duration {
        match self.ping_sent_ms.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            sent => Duration::from_millis((monotonic_ms() - sent).max(0) as u64),
        }
    }

    /// The consumers as last read (empty until the first read).
    pub fn consumers(&self) -> Vec<ConsumerLag> {
        self.consumers.lock().clone()
    }
}

/// Milliseconds on a clock that never jumps (a wall-clock step must not look like a
/// PING waiting for seconds), counted from 1 so that 0 can mean "none waiting".
fn monotonic_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
        + 1
}
