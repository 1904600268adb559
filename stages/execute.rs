//! Execute: loads each instance (through the executor's overlay of not-yet-committed
//! transitions) and runs its saga's program. One thread, FIFO, so events of one instance
//! are applied in the order they were fetched, and a later event in the same batch sees
//! the state the earlier one produced.

use crossbeam_channel::{Receiver, Sender};

use crate::manifest::SagaCatalog;
use crate::pipeline::{DecodedBatch, DecodedMsg, ExecutedBatch, ExecutedMsg, Shared, Stats};
use crate::saga::{Decoded, Executor, Outcome};
use crate::stages::StageError;
use crate::store::{Reader, StoreError};

pub fn run(
    shared: &Shared,
    input: &Receiver<DecodedBatch>,
    out: &Sender<ExecutedBatch>,
) -> Result<(), StageError> {
    // The store was opened with the settings' retention: sagas without their own keep it.
    let mut executor = Executor::new(&shared.settings.streams.command_prefix)
        .with_retention(crate::store::Keep::of(shared.store.retention()))
        .with_max_payload(shared.max_payload);
    let mut batch_no = 0u64;
    for batch in input {
        Stats::set(&shared.stats.queue_execute, input.len() as u64);
        let epoch = shared.intake.epoch();
        if batch.epoch != epoch {
            drop_batch(shared, &batch.items);
            continue;
        }
        batch_no += 1;
        executor.begin_batch(epoch, shared.intake.committed_through());
        let started = std::time::Instant::now();
        let catalog = shared.catalogs.sagas();
        let executed = shared.store.reader().and_then(|reader| {
            execute_batch(&mut executor, &reader, &catalog, &batch.items, batch_no)
        });
        shared.stage_latency.execute.record(started.elapsed());
        let outcomes = match executed {
            Ok(outcomes) => outcomes,
            Err(e) => {
                log::error!(error = e.to_string(); "store read failed; stopping intake");
                shared.intake.stop(e.to_string());
                drop_batch(shared, &batch.items);
                continue;
            }
        };
        let items = batch
            .items
            .into_iter()
            .zip(outcomes)
            .map(|(item, (log, outcome))| ExecutedMsg {
                msg: item.msg,
                info: item.info,
                log,
                outcome,
                retry: item.retry,
            })
            .collect();
        if out
            .send(ExecutedBatch {
                epoch,
                batch_no,
                items,
            })
            .is_err()
        {
            return Err(StageError::DownstreamGone { next: "commit" });
        }
    }
    Ok(())
}

/// Runs every message of the batch; a storage error fails the whole batch. The read
/// transaction lives only for this batch.
fn execute_batch(
    executor: &mut Executor,
    reader: &Reader<'_>,
    catalog: &SagaCatalog,
    items: &[DecodedMsg],
    batch_no: u64,
) -> Result<Vec<(crate::saga::LogCtx, Outcome)>, StoreError> {
    items
        .iter()
        .map(|item| match &item.decoded {
            Decoded::Quarantine(record, log) => {
                let outcome = executor
                    .over_delivered_duplicate(reader, catalog, record, &item.info)?
                    .unwrap_or_else(|| Outcome::quarantined((**record).clone()));
                Ok((log.clone(), outcome))
            }
            Decoded::Event(event) => {
                let outcome = executor.execute(reader, event, &item.info, batch_no)?;
                Ok((event.log.clone(), outcome))
            }
        })
        .collect()
}

/// Leaves the batch's deliveries unacked. A retried message has no delivery: dropping
/// its ticket tells the operator it was not finished.
fn drop_batch(shared: &Shared, items: &[DecodedMsg]) {
    for item in items.iter().filter(|i| i.retry.is_none()) {
        shared.drop_unacked(&item.info.stream, item.info.seq);
    }
}
