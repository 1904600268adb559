//! Execute: loads each instance (through the executor's overlay of not-yet-committed
//! transitions) and runs its saga's program. One thread, FIFO, so events of one instance
//! are applied in the order they were fetched, and a later event in the same batch sees
//! the state the earlier one produced.

use crossbeam_channel::{Receiver, Sender};

use crate::pipeline::{DecodedBatch, ExecutedBatch, ExecutedMsg, Shared, Stats};
use crate::saga::{Decoded, Disposition, Executor, Outcome};

pub fn run(shared: &Shared, input: &Receiver<DecodedBatch>, out: &Sender<ExecutedBatch>) {
    let mut executor = Executor::new(&shared.settings.streams.command_prefix);
    let mut batch_no = 0u64;
    for batch in input {
        let epoch = shared.intake.epoch();
        if batch.epoch != epoch {
            Stats::add(&shared.stats.dropped_stale, batch.items.len() as u64);
            continue;
        }
        batch_no += 1;
        executor.begin_batch(epoch, shared.intake.committed_through());
        let reader = match shared.store.reader() {
            Ok(r) => r,
            Err(e) => {
                log::error!(error = e.to_string(); "cannot read the store; stopping intake");
                shared.intake.stop(e.to_string());
                continue;
            }
        };
        let mut items = Vec::with_capacity(batch.items.len());
        let mut failed = false;
        for item in batch.items {
            let (log, outcome) = match item.decoded {
                Decoded::Quarantine(record, log) => {
                    let outcome = Outcome {
                        transitions: Vec::new(),
                        quarantine: Some(*record),
                        disposition: Disposition::Term,
                        ignored: 0,
                        duplicates: 0,
                        faults: 0,
                    };
                    (log, outcome)
                }
                Decoded::Event(event) => {
                    match executor.execute(&reader, &event, &item.info, batch_no) {
                        Ok(outcome) => {
                            if event.routes.is_empty() {
                                Stats::add(&shared.stats.ignored, 1);
                            }
                            (event.log, outcome)
                        }
                        Err(e) => {
                            log::error!(tenant_id = event.log.tenant_id.as_str(), correlation_id = event.log.correlation_id.as_str(),
                            trace_id = event.log.trace_id.as_str(), error = e.to_string(); "store read failed; stopping intake");
                            shared.intake.stop(e.to_string());
                            failed = true;
                            break;
                        }
                    }
                }
            };
            items.push(ExecutedMsg {
                msg: item.msg,
                info: item.info,
                log,
                outcome,
            });
        }
        drop(reader);
        if failed {
            continue;
        }
        if out
            .send(ExecutedBatch {
                epoch,
                batch_no,
                items,
            })
            .is_err()
        {
            return;
        }
    }
}
