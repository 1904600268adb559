//! The `gateway-N` threads: the relay's pool of HTTP workers for aggregate commands.
//! Each takes a job, makes the call (`relay::gateway`: the client and the contract's
//! reading of the answer) and reports the outcome. A pool, because a Gateway call blocks
//! its thread for up to `relay.gateway_timeout_ms` and the relay must keep publishing
//! and reading acks meanwhile.

use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::relay::gateway::{CommandHeaders, Gateway, GatewayOutcome};
use crate::settings::RelaySettings;
use crate::stages::StageError;
use crate::store::OutboxItem;

/// One call to make, tagged so that the relay can match its outcome.
pub struct Job {
    pub tag: u64,
    pub item: OutboxItem,
}

/// The relay's ends of the pool's channels: jobs out (one per worker at most, so a send
/// never blocks), outcomes back.
pub struct Lanes {
    pub jobs: Sender<Job>,
    pub results: Receiver<(u64, GatewayOutcome)>,
}

/// One worker's ends of the channels and its client.
pub struct Worker {
    gateway: Gateway,
    jobs: Receiver<Job>,
    results: Sender<(u64, GatewayOutcome)>,
}

/// The relay's lanes and `relay.gateway_workers` workers sharing them.
pub fn pool(cfg: &RelaySettings) -> (Lanes, Vec<Worker>) {
    let (jobs, job_rx) = bounded::<Job>(cfg.gateway_workers);
    let (result_tx, results) = bounded(cfg.gateway_workers);
    let gateway = Gateway::new(
        cfg.commands_url(),
        Duration::from_millis(cfg.gateway_timeout_ms),
    );
    let workers = (0..cfg.gateway_workers)
        .map(|_| Worker {
            gateway: gateway.clone(),
            jobs: job_rx.clone(),
            results: result_tx.clone(),
        })
        .collect();
    (Lanes { jobs, results }, workers)
}

/// Runs until the relay drops its job sender (or its outcome receiver: the relay
/// ended). A failed call is an outcome for the relay, never this thread's failure.
pub fn run(worker: Worker) -> Result<(), StageError> {
    for job in &worker.jobs {
        let outcome = worker
            .gateway
            .send(&job.item, &CommandHeaders::of(&job.item));
        if worker.results.send((job.tag, outcome)).is_err() {
            break;
        }
    }
    Ok(())
}
