//! Group commit of effect completion records. Every worker's record is one fsync if
//! written alone, and LMDB has one writer at a time, so the pool would be bound to the
//! disk's sync rate; here one thread writes whatever records are waiting in one
//! transaction and answers each worker once it is durable.

use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::store::{EffectCompletion, Store, StoreError};
use crate::types::{TenantId, WorkId};

/// Most records in one transaction.
const BATCH_MAX: usize = 256;

struct Request {
    tenant: TenantId,
    command: WorkId,
    completion: EffectCompletion,
    done: Sender<Result<(), StoreError>>,
}

/// The workers' handle: [`Recorder::record`] returns once the record is durable.
#[derive(Clone)]
pub struct Recorder {
    tx: Sender<Request>,
}

/// The committing side, run by its own thread ([`Committer::run`]).
pub struct Committer {
    store: Arc<Store>,
    rx: Receiver<Request>,
}

/// A recorder for `workers` workers (each has at most one request outstanding).
pub fn recorder(store: Arc<Store>, workers: usize) -> (Recorder, Committer) {
    let (tx, rx) = bounded(workers.max(1));
    (Recorder { tx }, Committer { store, rx })
}

impl Recorder {
    pub fn record(
        &self,
        tenant: &TenantId,
        command: &WorkId,
        completion: &EffectCompletion,
    ) -> Result<(), StoreError> {
        let (done, answer) = bounded(1);
        let request = Request {
            tenant: tenant.clone(),
            command: command.clone(),
            completion: completion.clone(),
            done,
        };
        let gone = || StoreError::Encode {
            key: String::new(),
            message: "the effect commit thread is gone".into(),
        };
        self.tx.send(request).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

impl Committer {
    /// Commits batches until every [`Recorder`] is dropped.
    pub fn run(self) {
        while let Ok(first) = self.rx.recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH_MAX {
                match self.rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let records: Vec<(&TenantId, &WorkId, &EffectCompletion)> = batch
                .iter()
                .map(|r| (&r.tenant, &r.command, &r.completion))
                .collect();
            let result = self.store.record_effect_completions(&records);
            for r in batch {
                let _ = r.done.send(result.as_ref().map(|_| ()).map_err(same_error));
            }
        }
    }
}

/// The batch's error for each of its requests (`StoreError` is not `Clone`: it may hold
/// an `io::Error`, which a commit never returns).
fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::MapFull => StoreError::MapFull,
        StoreError::Lmdb(e) => StoreError::Lmdb(*e),
        StoreError::Corrupt { key, message } => StoreError::Corrupt {
            key: key.clone(),
            message: message.clone(),
        },
        StoreError::Encode { key, message } => StoreError::Encode {
            key: key.clone(),
            message: message.clone(),
        },
        StoreError::Injected => StoreError::Injected,
        StoreError::Transfer(m) => StoreError::Transfer(m.clone()),
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::Stale {
            key,
            stored,
            based_on,
        } => StoreError::Stale {
            key: key.clone(),
            stored: *stored,
            based_on: *based_on,
        },
        // These come from opening the store, never from a commit; an I/O
        // error (EIO) is the safe reading: not the data's fault, so intake stops.
        StoreError::Open { .. }
        | StoreError::CreateDir { .. }
        | StoreError::InUse { .. }
        | StoreError::LockFile { .. } => StoreError::Lmdb(lmdb::Error::Other(5)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::TempDir;
    use crate::store::RawJson;

    #[test]
    fn records_from_many_threads_are_all_durable_when_answered() {
        let dir = TempDir::new("recorder").unwrap();
        let store = Arc::new(Store::open(&dir.path().join("store"), 64 << 20).unwrap());
        let (recorder, committer) = recorder(store.clone(), 8);
        let thread = std::thread::spawn(move || committer.run());
        let tenant: TenantId = "acme".parse().unwrap();
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let (recorder, tenant) = (recorder.clone(), tenant.clone());
                std::thread::spawn(move || {
                    for i in 0..20 {
                        let id: WorkId = format!("c-{w}-{i}").parse().unwrap();
                        let c = EffectCompletion {
                            event_id: format!("r-{w}-{i}"),
                            result: RawJson::of(&serde_json::json!({"i": i})).unwrap(),
                            recorded_at: "t".into(),
                        };
                        recorder.record(&tenant, &id, &c).unwrap();
                    }
                })
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
        drop(recorder);
        thread.join().unwrap();
        for w in 0..8 {
            for i in 0..20 {
                let id: WorkId = format!("c-{w}-{i}").parse().unwrap();
                let c = store.effect_completion(&tenant, &id).unwrap().unwrap();
                assert_eq!(c.event_id, format!("r-{w}-{i}"));
            }
        }
    }
}
