//! Effect fetch: a fetch thread per effect the manifest in force defines, each pulling
//! that effect's own consumer (`nats_io::effect_consumer`, filtered on
//! `{command_prefix}.*.{effect}`), all feeding the effect pool's splitter.
//!
//! This thread reconciles them with the effect catalog every [`RECONCILE`]: after a
//! reload that changes the effect set, the consumers of new effects are created (or
//! found: another process may define them) and pulled, and those of effects no longer
//! defined stop being pulled (what their last pull request still delivers is handed
//! back). Those consumers are never deleted: other processes may pull them, and each
//! keeps its effect's position in the stream, so commands of an effect nobody runs at
//! the moment wait there, reported by `stages::unclaimed`, until a process that
//! defines it comes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use nats::jetstream::{JetStream, PullSubscription};

use crate::effects::EffectCatalog;
use crate::nats_io::{self, ConsumerSpec, Flusher};
use crate::pipeline::{FetchedBatch, Shared};
use crate::stages::{fetch, StageError};

/// How soon a reload's new effect set is pulled.
const RECONCILE: Duration = Duration::from_millis(200);

/// A fetch thread of one effect consumer.
struct Pulling<'scope> {
    stop: Arc<AtomicBool>,
    thread: std::thread::ScopedJoinHandle<'scope, Result<(), StageError>>,
}

/// Runs until the pipeline shuts down and every fetch thread it started has handed
/// back and ended. `started`: the consumers of the catalog in force at start-up, bound
/// by the caller (so that a consumer that cannot be set up fails start-up).
pub fn run(
    shared: &Shared,
    js: &JetStream,
    flusher: &Flusher,
    started: Vec<(ConsumerSpec, PullSubscription)>,
    out: Sender<FetchedBatch>,
) -> Result<(), StageError> {
    let mut catalog = shared.catalogs.effects();
    std::thread::scope(|scope| {
        // Why this stage ends other than by shutdown: the first failure it met.
        let mut failure = None;
        let mut pulling: BTreeMap<String, Pulling<'_>> = BTreeMap::new();
        let start = |spec: ConsumerSpec, sub: PullSubscription| {
            let stop = Arc::new(AtomicBool::new(false));
            let (flag, out) = (stop.clone(), out.clone());
            let thread = std::thread::Builder::new()
                .name(format!("fetch-effect-{}", effect_name(shared, &spec)))
                .spawn_scoped(scope, move || {
                    fetch::run_until(shared, js, &spec, sub, flusher, &out, &flag)
                });
            thread.map(|thread| Pulling { stop, thread })
        };
        for (spec, sub) in started {
            let durable = spec.durable.clone();
            match start(spec, sub) {
                Ok(p) => {
                    pulling.insert(durable, p);
                }
                Err(e) => {
                    log::error!(consumer = durable.as_str(), error = e.to_string(); "cannot start an effect fetch thread; stopping");
                    shared.intake.request_shutdown();
                    failure.get_or_insert(StageError::FetchThreadStart {
                        consumer: durable,
                        source: e,
                    });
                }
            }
        }
        let mut current = true;
        while !shared.intake.is_shutting_down() {
            std::thread::sleep(RECONCILE);
            // Threads told to stop end within a pull request's expiry.
            pulling.retain(|_, p| !(p.stop.load(Ordering::Relaxed) && p.thread.is_finished()));
            // One that ended by itself failed: end too, so the process is restarted. A
            // shutdown that began during the sleep ends them all (no failure).
            if shared.intake.is_shutting_down() {
                break;
            }
            let ended = pulling.iter().find(|(_, p)| p.thread.is_finished());
            if let Some(durable) = ended.map(|(durable, _)| durable.clone()) {
                // Joined here, so that its reason (a panic too) is this stage's.
                let reason = match pulling.remove(&durable).map(|p| p.thread.join()) {
                    Some(Ok(Err(e))) => e.to_string(),
                    Some(Err(_)) => "it panicked".to_string(),
                    Some(Ok(Ok(()))) | None => "it returned".to_string(),
                };
                log::error!(consumer = durable.as_str(), reason = reason.as_str(); "an effect fetch thread stopped unexpectedly");
                failure.get_or_insert(StageError::FetchThreadEnded {
                    consumer: durable,
                    reason,
                });
                break;
            }
            let now = shared.catalogs.effects();
            if current && Arc::ptr_eq(&now, &catalog) {
                if pulling.is_empty() && shared.intake.is_stopped() {
                    // No effect fetch thread probes the store: this does.
                    crate::pipeline::recovery::try_resume(shared);
                }
                continue;
            }
            catalog = now;
            current = reconcile(shared, js, &catalog, &mut pulling, &start);
        }
        for p in pulling.values() {
            p.stop.store(true, Ordering::Relaxed);
        }
        failure.map_or(Ok(()), Err)
    })
}

/// Stops pulling consumers of effects `catalog` no longer defines and starts pulling
/// those of the effects it adds; false when one could not be set up (tried again at
/// the next tick).
fn reconcile<'scope>(
    shared: &Shared,
    js: &JetStream,
    catalog: &EffectCatalog,
    pulling: &mut BTreeMap<String, Pulling<'scope>>,
    start: &impl Fn(ConsumerSpec, PullSubscription) -> std::io::Result<Pulling<'scope>>,
) -> bool {
    let wanted: BTreeMap<String, ConsumerSpec> =
        nats_io::effect_consumers(&shared.settings, catalog)
            .into_iter()
            .map(|spec| (spec.durable.clone(), spec))
            .collect();
    for (durable, p) in pulling.iter() {
        if !wanted.contains_key(durable) && !p.stop.swap(true, Ordering::Relaxed) {
            log::warn!(consumer = durable.as_str(); "effect no longer defined here: its consumer is no longer pulled (kept for other processes)");
        }
    }
    let mut all = true;
    for (durable, spec) in wanted {
        if pulling
            .get(&durable)
            .is_some_and(|p| !p.stop.load(Ordering::Relaxed))
        {
            continue;
        }
        let bound = nats_io::ensure_consumer(js, &spec, &shared.settings)
            .and_then(|_| fetch::subscribe(js, &spec));
        match bound.map_err(|e| e.to_string()).and_then(|sub| {
            start(spec.clone(), sub).map_err(|e| format!("cannot start its fetch thread: {e}"))
        }) {
            Ok(p) => {
                log::warn!(consumer = durable.as_str(), filter = spec.filter.as_str(); "effect defined here: its consumer is pulled");
                // A thread of the same consumer still stopping ends by itself.
                if let Some(old) = pulling.insert(durable, p) {
                    old.stop.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => {
                log::error!(consumer = durable.as_str(), error = e.as_str(); "cannot pull an effect's consumer; retrying");
                all = false;
            }
        }
    }
    all
}

fn effect_name<'a>(shared: &Shared, spec: &'a ConsumerSpec) -> &'a str {
    nats_io::effect_of_consumer(&shared.settings, &spec.durable).unwrap_or(&spec.durable)
}
