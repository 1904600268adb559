//! The `effect-split` thread: hands fetched commands to the effect workers, decoded, and
//! with claims in use with the facts their gate asks for before a call already read:
//! the completion record, and, where the gate then asks for the shared claim, the claim
//! created.
//!
//! A worker that created its own claim waited a round trip to the claims bucket inside
//! its cycle, and a worker waits for its record too before its next command, so the
//! pool's throughput was `effects.workers` commands per (claim round trip + record
//! commit). Here a fetched batch's creates are all outstanding at once
//! (`Claims::create_many`), one wait for the batch, off the workers' cycle. The gate is
//! asked in the same order as before and decides the same: the record is read first,
//! and a claim is created only for a command the gate would have claimed (its effect
//! defined here, no record, not delivered too often). A create that did not land (the
//! key exists, another worker here has the command, no answer) is left to the worker,
//! which runs the gate from its start, reading the record again; one that waited for a
//! worker longer than a tenth of the lease (at most
//! 1 s) is taken back by the worker's `Claims::acquire` with a fresh time. Without
//! claims the worker reads the record itself, as late as it can: nothing reads it again
//! before the call.
//!
//! Held here at once: one fetched batch (at most the pull batch), decoded.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::effects::claims::Claims;
use crate::nats_io::Publisher;
use crate::pipeline::{FetchedBatch, Shared};
use crate::stages::effect::{prepare, Prepared};
use crate::stages::StageError;

/// Runs until every effect fetch thread ended; `claims`, with the publisher of their
/// creates, when a claims bucket is in use.
pub fn run(
    shared: &Shared,
    mut claims: Option<(Arc<Claims>, Publisher)>,
    input: &Receiver<FetchedBatch>,
    out: &Sender<Prepared>,
) -> Result<(), StageError> {
    for batch in input {
        if batch.epoch != shared.intake.epoch() {
            batch.msgs.iter().for_each(|m| shared.drop_unacked_msg(m));
            continue;
        }
        let claims_in_use = claims.is_some();
        let mut prepared: Vec<Prepared> = batch
            .msgs
            .into_iter()
            .map(|msg| prepare(shared, claims_in_use, msg))
            .collect();
        if let Some((claims, publisher)) = claims.as_mut() {
            create_claims(claims, publisher, &mut prepared);
        }
        for p in prepared {
            if out.send(p).is_err() {
                return Err(StageError::DownstreamGone {
                    next: "effect worker",
                });
            }
        }
    }
    Ok(())
}

/// Creates the claims of the commands whose gate asks for one next, all at once.
fn create_claims(claims: &Arc<Claims>, publisher: &mut Publisher, prepared: &mut [Prepared]) {
    let (wanted, commands): (Vec<usize>, Vec<_>) = prepared
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.claim_wanted().map(|command| (i, command)))
        .unzip();
    if wanted.is_empty() {
        return;
    }
    let won = claims.create_many(publisher, &commands);
    for (i, won) in wanted.into_iter().zip(won) {
        prepared[i].set_won(won);
    }
}
