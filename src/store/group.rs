//! Group commit across writers: the saga commits, the effect completion records and the
//! relay's outbox deletes of one process share write transactions, and so their fsyncs.
//!
//! Each of them used to take LMDB's one writer lock in turn for a transaction and two
//! fsyncs of its own, and the others waited on the lock meanwhile (the commit thread
//! spent 77 % of its time in the kernel at 1,000 workflows/s). Now each hands its write
//! to the `store-writer` thread (`stages/store_writer.rs`) as a [`Job`]; the thread
//! takes every job waiting (up to [`GROUP_MAX`]) and writes them in one transaction.
//!
//! Every job stays atomic on its own and sees exactly what it would alone, written after
//! the jobs before it: a job that fails (bad data, a stale transition, an injected
//! fault) aborts the transaction, is answered with its error, and the others are written
//! again without it. A full map grows and the whole group is written again; a failed
//! commit answers every job of the group with its error (none of them was written).
//! Only after the commit does a job hear it is durable, so invariants 1, 2 and 5 hold
//! as they did with one transaction per writer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use super::expiry::{now_ms, Sweep};
use super::{Store, StoreError};

/// Most jobs written in one transaction: bounds a transaction's size (each job is a
/// batch of its own writer's, bounded there) and what a failed group writes again.
pub const GROUP_MAX: usize = 64;

/// How long a job that [may wait](Job::may_wait) is held for company: at a low load an
/// outbox delete then rides in the next saga commit's transaction instead of taking two
/// fsyncs of its own; with no other write coming it is written alone after this.
pub const LAZY_WAIT: Duration = Duration::from_millis(50);

/// Jobs waiting for the writer thread. The writers block on their answers, so few
/// jobs wait at once (one per writer thread, one per effect-commit batch).
const QUEUE: usize = 16;

/// A write handed to the writer thread: its writes, then one answer.
pub(super) trait Job: Send {
    /// Writes the job into the group's transaction; called again (from scratch) when
    /// the group is written anew, so it keeps nothing from an earlier call that the
    /// transaction did not hold.
    fn write(
        &mut self,
        store: &Store,
        txn: &mut lmdb::RwTransaction<'_>,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// The transaction holding the job's writes committed.
    fn committed(self: Box<Self>, store: &Store, now_ms: i64);

    /// Nothing of the job was written.
    fn failed(self: Box<Self>, error: StoreError);

    /// Whether the job may wait up to [`LAZY_WAIT`] for others to share its transaction
    /// (nobody waits on it, and writing it later is as safe as now).
    fn may_wait(&self) -> bool {
        false
    }
}

/// Where writes go: to the writer thread, or (once it is gone) straight into a
/// transaction of their own on the caller's thread. Both write a job the same way.
#[derive(Clone)]
pub struct Writer {
    store: Arc<Store>,
    jobs: Sender<Box<dyn Job>>,
}

/// The writer thread's side: jobs in; it ends once every [`Writer`] linked to it is gone.
pub struct WriterJobs {
    store: Arc<Store>,
    jobs: Receiver<Box<dyn Job>>,
    /// Jobs held for company (at most [`GROUP_MAX`]), and when they are written anyway.
    held: Vec<Box<dyn Job>>,
    held_until: Option<Instant>,
}

/// A writer and the jobs for its thread, linked.
pub fn writer(store: Arc<Store>) -> (Writer, WriterJobs) {
    let (tx, rx) = bounded(QUEUE);
    (
        Writer {
            store: store.clone(),
            jobs: tx,
        },
        WriterJobs {
            store,
            jobs: rx,
            held: Vec::new(),
            held_until: None,
        },
    )
}

impl Writer {
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Hands the job over; once the writer thread is gone the caller writes it itself,
    /// so a write is never lost to a missing thread.
    pub(super) fn submit(&self, job: Box<dyn Job>) {
        if let Err(gone) = self.jobs.send(job) {
            self.store.write_group(vec![gone.into_inner()]);
        }
    }
}

impl WriterJobs {
    /// The jobs waiting, at least one (waiting for it) and at most [`GROUP_MAX`];
    /// `None` once every writer is gone (and nothing is held). A job that may wait is
    /// held until another job comes or [`LAZY_WAIT`] passed.
    pub fn next_group(&mut self) -> Option<Group> {
        let mut group = Vec::new();
        while self.held.len() < GROUP_MAX {
            let job = match self.held_until {
                None => match self.jobs.recv() {
                    Ok(job) => job,
                    Err(_) => return None,
                },
                Some(until) => match self.jobs.recv_deadline(until) {
                    Ok(job) => job,
                    // Its time is up (or every writer is gone): the held jobs alone.
                    Err(_) => break,
                },
            };
            if job.may_wait() {
                self.held.push(job);
                self.held_until
                    .get_or_insert_with(|| Instant::now() + LAZY_WAIT);
                continue;
            }
            group.push(job);
            break;
        }
        group.append(&mut self.held);
        self.held_until = None;
        while group.len() < GROUP_MAX {
            match self.jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        Some(Group(group))
    }

    /// Writes a group in one transaction and answers each of its jobs.
    pub fn write(&self, group: Group) {
        self.store.write_group(group.0);
    }
}

/// Jobs to write in one transaction.
pub struct Group(Vec<Box<dyn Job>>);

impl Group {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Store {
    /// Writes the jobs in one transaction (see the module doc for failures) and answers
    /// every one of them.
    pub(super) fn write_group(&self, mut jobs: Vec<Box<dyn Job>>) {
        // The retention sweep rides only in a group nobody waits on (outbox deletes
        // alone): a saga commit or an effect record never waits behind a sweep batch.
        if jobs.iter().all(|job| job.may_wait()) {
            jobs.push(Box::new(SweepJob { swept: None }));
        }
        'group: while !jobs.is_empty() {
            let now = now_ms();
            let mut w = match self.begin_rw() {
                Ok(w) => w,
                Err(e) => return fail_all(jobs, &e),
            };
            for i in 0..jobs.len() {
                match jobs[i].write(self, &mut w.txn, now) {
                    Ok(()) => {}
                    Err(StoreError::MapFull) => {
                        drop(w);
                        if let Err(e) = self.grow() {
                            return fail_all(jobs, &e);
                        }
                        continue 'group;
                    }
                    Err(e) => {
                        // Its writes are in the transaction: drop them all, and write
                        // the others again without it.
                        drop(w);
                        jobs.remove(i).failed(e);
                        continue 'group;
                    }
                }
            }
            match w.commit() {
                Ok(()) => {
                    for job in jobs {
                        job.committed(self, now);
                    }
                    return;
                }
                Err(StoreError::MapFull) => {
                    if let Err(e) = self.grow() {
                        return fail_all(jobs, &e);
                    }
                }
                Err(e) => return fail_all(jobs, &e),
            }
        }
    }
}

/// A batch of the retention sweep riding in a group ([`Store::sweep_in`]). Nobody waits
/// on it: a failure only leaves the batch to the next sweep (the `sweep` stage's, at the
/// latest), and the group is written again without it.
struct SweepJob {
    swept: Option<Sweep>,
}

impl Job for SweepJob {
    fn write(
        &mut self,
        store: &Store,
        txn: &mut lmdb::RwTransaction<'_>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.swept = None;
        self.swept = Some(store.sweep_in(txn, now_ms)?);
        Ok(())
    }

    fn committed(self: Box<Self>, store: &Store, now_ms: i64) {
        if let Some(sweep) = &self.swept {
            store.swept(sweep, now_ms);
        }
    }

    fn failed(self: Box<Self>, error: StoreError) {
        log::warn!(error = error.to_string(); "the sweep riding in a write failed; the writes went without it");
    }

    fn may_wait(&self) -> bool {
        true
    }
}

fn fail_all(jobs: Vec<Box<dyn Job>>, e: &StoreError) {
    for job in jobs {
        job.failed(e.copy());
    }
}
