//! The `fetch-idle` thread: stands in for the saga fetch threads of a shard that serves
//! no tenants (yet). It holds the decode stage's input open, so the saga stages (the
//! relay and the scheduler may have work) keep running until shutdown, when it drops
//! the sender and the stages after it end in order.

use std::time::Duration;

use crossbeam_channel::Sender;

use crate::pipeline::{FetchedBatch, Shared};
use crate::stages::StageError;

/// How often it looks for shutdown.
const POLL: Duration = Duration::from_millis(100);

pub fn run(shared: &Shared, out: Sender<FetchedBatch>) -> Result<(), StageError> {
    while !shared.intake.is_shutting_down() {
        std::thread::sleep(POLL);
    }
    drop(out);
    Ok(())
}
