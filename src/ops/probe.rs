//! What `/health` (liveness) and `/ready` (readiness) answer, and the probes behind
//! them.
//!
//! Liveness fails only for what a restart fixes: a store that refuses writes (a real
//! write; a writer wedged in the store makes it hang, and the healthcheck's timeout
//! fails it) and a main loop that stopped ticking (it is what notices a stage that
//! stopped and a connection that answers no PING — that one exits the process, code
//! 3). It never depends on NATS or another service: an outage would fail every Runner
//! at once, and Swarm would kill and replace them all on top of it. Readiness adds the
//! dependencies and the process's own state: NATS answering, not draining, intake
//! running, the store not nearly full.
//!
//! Is NATS there, and how far behind are our consumers? The blocking client has no
//! "connected" flag to read, and a flush during an outage waits without limit, so one
//! thread flushes every second and records when a flush last came back (NATS counts as
//! up when one "came back recently"); every few seconds it also reads each consumer's
//! info for the lag metrics, so a scrape never waits on NATS.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::OpsState;
use crate::nats_io::ConsumerSpec;
use crate::pipeline::Shared;
use crate::store::StoreError;
use crate::timefmt::now_ms;

/// How often the probe flushes.
const EVERY: Duration = Duration::from_secs(1);
/// Consumer info is read every this many flushes.
const CONSUMERS_EVERY: u32 = 5;
/// NATS counts as up if a flush came back this recently.
pub(super) const NATS_FRESH: Duration = Duration::from_secs(3);
/// The main loop ticks every 200 ms; a placement read during a NATS outage can hold a
/// tick for its request timeout (5 s). Far longer than that: wedged.
const MAIN_LOOP_STALL: Duration = Duration::from_secs(60);

/// A store write probe's result is reused this long: a flood of probes costs at most
/// one write (and fsync, competing with the commit stage for the writer lock) per
/// interval.
const STORE_PROBE_FRESH: Duration = Duration::from_secs(1);
/// A probe that waits this long for another probe's write to come back answers that
/// the store is wedged, rather than holding its connection.
const STORE_PROBE_WEDGED: Duration = Duration::from_secs(10);

/// Why the store write behind `/health` failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum ProbeError {
    #[error("a store write probe has not come back for over {} s", STORE_PROBE_WEDGED.as_secs())]
    Wedged,
    /// Shared: one failed write answers every probe for [`STORE_PROBE_FRESH`].
    #[error(transparent)]
    Write(Arc<StoreError>),
}

/// The store write behind `/health`, done by one probe at a time and its result kept
/// for [`STORE_PROBE_FRESH`].
#[derive(Default)]
pub(super) struct StoreProbe {
    last: Mutex<Option<(Instant, Result<(), ProbeError>)>>,
}

impl StoreProbe {
    /// The last result if fresh, else `write`'s (one caller writes; the others wait
    /// for it, at most [`STORE_PROBE_WEDGED`]).
    pub(super) fn check(
        &self,
        write: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), ProbeError> {
        self.check_within(STORE_PROBE_FRESH, write)
    }

    fn check_within(
        &self,
        fresh: Duration,
        write: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), ProbeError> {
        let Some(mut last) = self.last.try_lock_for(STORE_PROBE_WEDGED) else {
            return Err(ProbeError::Wedged);
        };
        if let Some((at, result)) = last.as_ref() {
            if at.elapsed() < fresh {
                return result.clone();
            }
        }
        let result = write().map_err(|e| ProbeError::Write(Arc::new(e)));
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// `GET /health`: (alive, body). A real store write (at most one a second, however
/// many probes come), and the main loop's heartbeat.
pub(super) fn liveness(state: &OpsState, shared: &Shared, store: &StoreProbe) -> (bool, Value) {
    let storage = store.check(|| shared.store.probe_write());
    let stalled = state
        .control
        .heartbeat()
        .stalled_for()
        .filter(|waited| *waited > MAIN_LOOP_STALL);
    let ok = storage.is_ok() && stalled.is_none();
    let main_loop = match stalled {
        Some(waited) => format!("no tick for {} s", waited.as_secs()),
        None => "ok".into(),
    };
    (
        ok,
        json!({
            "healthy": ok,
            "storage": storage.err().map_or_else(|| "ok".into(), |e| e.to_string()),
            "main_loop": main_loop,
        }),
    )
}

/// `GET /ready`: (ready, body). Alive, NATS answering, not draining, intake running,
/// the store not nearly full; the body says which.
pub(super) fn readiness(state: &OpsState, shared: &Shared, store: &StoreProbe) -> (bool, Value) {
    let (alive, health) = liveness(state, shared, store);
    let nats = state.probe.is_connected(NATS_FRESH);
    let draining = shared.intake.is_shutting_down();
    // Stopped intake (a failed commit: store full, I/O error) takes no work.
    let stopped = shared.intake.stop_reason();
    // Nearly full: still taking work, but time to make room (or move the traffic)
    // before intake stops for good.
    let nearly_full = super::storage::nearly_full(shared);
    let ready = alive && nats && !draining && stopped.is_none() && nearly_full.is_none();
    let body = json!({
        "ready": ready,
        "nats": if nats { "ok" } else { "unreachable" },
        "draining": draining,
        "drained": state.control.is_drained(),
        // What the drain's relay left in the outbox (null until it stopped).
        "outbox_left": shared.intake.outbox_left(),
        "intake_stopped": stopped,
        "store_nearly_full": nearly_full,
        "health": health,
    });
    (ready, body)
}

/// The main loop's heartbeat: it beats while it watches the pipeline. Not watched
/// (`stalled_for` is `None`) before the first beat and while the loop is paused for
/// work of bounded or operator-driven length (a drain, a handover, waiting to resume).
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// [`monotonic_ms`] of the last beat; 0: not watched.
    last_ms: Arc<AtomicI64>,
}

impl Heartbeat {
    pub fn beat(&self) {
        self.last_ms.store(monotonic_ms(), Ordering::Relaxed);
    }

    /// Stops watching until the next beat.
    pub fn pause(&self) {
        self.last_ms.store(0, Ordering::Relaxed);
    }

    /// How long since the last beat, when watched.
    pub fn stalled_for(&self) -> Option<Duration> {
        match self.last_ms.load(Ordering::Relaxed) {
            0 => None,
            last => Some(Duration::from_millis((monotonic_ms() - last).max(0) as u64)),
        }
    }
}

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
                // Until a read finds a consumer (none created yet, or every request of
                // a busy start timed out), the next flush reads again: the lag metrics
                // are then missing for a second, not for CONSUMERS_EVERY.
                let mut none_read = true;
                for tick in 0u32.. {
                    p.ping_sent_ms.store(monotonic_ms(), Ordering::Relaxed);
                    let answered = nc.flush().is_ok();
                    p.ping_sent_ms.store(0, Ordering::Relaxed);
                    if answered {
                        p.last_ok_ms.store(now_ms(), Ordering::Relaxed);
                        if none_read || tick % CONSUMERS_EVERY == 0 {
                            none_read = p.read_consumers(&js, &consumers) == 0;
                        }
                    }
                    std::thread::sleep(EVERY);
                }
            })?;
        Ok(probe)
    }

    /// Reads the consumers' lag; how many could be read.
    fn read_consumers(&self, js: &nats::jetstream::JetStream, specs: &[ConsumerSpec]) -> usize {
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
        let read = lags.len();
        *self.consumers.lock() = lags;
        read
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_health_probes_writes_the_store_once_per_interval() {
        const HOUR: Duration = Duration::from_secs(3600);
        let probe = StoreProbe::default();
        let writes = std::sync::atomic::AtomicU32::new(0);
        let write = || {
            writes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        assert!(probe.check_within(HOUR, write).is_ok());
                    }
                });
            }
        });
        assert_eq!(
            writes.load(Ordering::SeqCst),
            1,
            "400 probes within the interval"
        );
        // A failure is kept as long, and the next write comes once it aged.
        let failing = StoreProbe::default();
        assert!(failing
            .check_within(HOUR, || Err(StoreError::MapFull))
            .is_err());
        assert!(matches!(
            failing.check_within(HOUR, || Ok(())),
            Err(ProbeError::Write(e)) if matches!(*e, StoreError::MapFull)
        ));
        assert!(failing.check_within(Duration::ZERO, || Ok(())).is_ok());
    }

    #[test]
    fn a_heartbeat_is_watched_only_between_a_beat_and_a_pause() {
        let heart = Heartbeat::default();
        assert_eq!(
            heart.stalled_for(),
            None,
            "not watched before the first beat"
        );
        heart.beat();
        std::thread::sleep(Duration::from_millis(20));
        assert!(heart
            .stalled_for()
            .is_some_and(|d| d >= Duration::from_millis(20)));
        heart.pause();
        assert_eq!(heart.stalled_for(), None);
    }
}
