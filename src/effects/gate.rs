//! The exactly-once gate of an effect command, as a decision over facts already read:
//! invariant 3 (an effect is never executed twice for the same `(tenant, command_id)`
//! once its end is recorded) is kept here, apart from the worker's I/O
//! (`stages::effect`), so every case is a row of a table test.
//!
//! What the gate asks for is read in the order it asks (by the effect splitter up to the
//! claim, by the worker from there; `stages/effect_split.rs`): the completion record
//! first; the shared claim only for a command still to be called by this process (a
//! claim is a write: a command this process cannot run, or gives up on, never holds
//! one); the record again once the claim is won. [`decide`] answers either the next fact
//! to read or what to do with the command.

use std::time::Duration;

/// What the store's completion record `dedupe:{tenant}:effect:{id}` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// Not read yet.
    Unread,
    /// No record: the call has not ended here (or its record was lost with a crash).
    Absent,
    /// The call ended and is recorded: its result is the one to publish.
    Present,
    /// The store could not be read (or the record not rebuilt into a result).
    Unreadable,
}

/// What the shared claims bucket answered (`effects::claims`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not asked yet.
    Unasked,
    /// This worker created (or took over) the claim: it alone may call.
    Won,
    /// Some replica finished the command: its result, in the claim, is the one to publish.
    Finished,
    /// Another worker or replica holds a live claim (it may be calling now).
    HeldElsewhere { retry_after: Duration },
    /// No claim could be had (NATS KV unreachable): no one knows who calls.
    Unavailable,
}

/// How often the command was delivered, and how many of those count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deliveries {
    pub delivered: u64,
    /// Deliveries this process caused itself (put back, store failures).
    pub forgiven: u64,
    /// `consumer.max_deliver`.
    pub max_deliver: i64,
}

impl Deliveries {
    /// Why the command was delivered too often to be called, if it was.
    fn exceeded(&self) -> Option<String> {
        let max = self.max_deliver.max(1) as u64;
        (self.delivered.saturating_sub(self.forgiven) > max)
            .then(|| format!("delivered {} times (max_deliver {max})", self.delivered))
    }
}

/// Everything the gate branches on, as plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateInput {
    /// The completion record, as first read.
    pub record: Record,
    /// The command's effect is in the catalog in force here.
    pub defined_here: bool,
    pub deliveries: Deliveries,
    /// A claims bucket is configured (`effects.claims_bucket` is not "").
    pub claims_in_use: bool,
    pub claim: Claim,
    /// The completion record, read again once the claim was won.
    pub record_under_claim: Record,
}

impl GateInput {
    /// A command about which nothing has been read yet.
    pub fn new(defined_here: bool, deliveries: Deliveries, claims_in_use: bool) -> GateInput {
        GateInput {
            record: Record::Unread,
            defined_here,
            deliveries,
            claims_in_use,
            claim: Claim::Unasked,
            record_under_claim: Record::Unread,
        }
    }
}

/// Why a command is put back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutBackWhy {
    /// Its effect is not defined here (a reload dropped it after the fetch): for a
    /// process that defines it.
    NotDefinedHere,
    /// Another worker or replica holds its claim.
    ClaimedElsewhere,
    /// The claims bucket could not be reached.
    NoClaim,
}

/// What the worker does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateAction {
    /// Read the completion record.
    ReadRecord,
    /// Ask the claims bucket for the command.
    Claim,
    /// Read the completion record again: another worker here may have recorded the
    /// call between the first read and the claim (a worker lets go of its claim once
    /// its record is durable), and now no one else can.
    ReadRecordUnderClaim,
    /// The store failed: the command stays unacked (and is redelivered).
    StoreFailed,
    /// The call is recorded here: publish its result again without calling.
    /// `repair_claim`: mark its claim done if it was left running (the completion
    /// write failed), or another replica calls again once the lease runs out.
    Replay { repair_claim: bool },
    /// Recorded here between the first read and the claim: publish it without
    /// calling, and write it into the claim just won.
    ReplayUnderClaim,
    /// Another replica finished it: record its result here and publish it, without
    /// calling.
    AdoptFinished,
    /// Leave it unacked and have it redelivered after `delay`; the delivery this
    /// causes is not held against `max_deliver`.
    PutBack { delay: Duration, why: PutBackWhy },
    /// Delivered too often to be called: quarantined, never called.
    GiveUp { reason: String },
    /// Call the provider; `claimed`: under the claim just won, into which the result
    /// is written alongside its record.
    Call { claimed: bool },
}

/// How soon a command of an effect not defined here comes back (to whoever pulls its
/// consumer then).
pub const NOT_DEFINED_RETRY: Duration = Duration::from_secs(5);

/// How soon a command comes back when the claims bucket could not be reached.
pub const CLAIM_RETRY: Duration = Duration::from_secs(2);

/// The gate: the next fact to read, or what to do with the command.
pub fn decide(input: &GateInput) -> GateAction {
    match input.record {
        Record::Unread => return GateAction::ReadRecord,
        Record::Unreadable => return GateAction::StoreFailed,
        // A recorded command is published and acked however often it came, whether its
        // effect is still defined or not: it is never called again.
        Record::Present => {
            return GateAction::Replay {
                repair_claim: input.claims_in_use,
            }
        }
        Record::Absent => {}
    }
    if !input.defined_here {
        return GateAction::PutBack {
            delay: NOT_DEFINED_RETRY,
            why: PutBackWhy::NotDefinedHere,
        };
    }
    // Only a command still to be called counts its deliveries.
    if let Some(reason) = input.deliveries.exceeded() {
        return GateAction::GiveUp { reason };
    }
    if !input.claims_in_use {
        return GateAction::Call { claimed: false };
    }
    match input.claim {
        Claim::Unasked => GateAction::Claim,
        Claim::Finished => GateAction::AdoptFinished,
        Claim::HeldElsewhere { retry_after } => GateAction::PutBack {
            delay: retry_after,
            why: PutBackWhy::ClaimedElsewhere,
        },
        // No claim, no call: another replica may be calling.
        Claim::Unavailable => GateAction::PutBack {
            delay: CLAIM_RETRY,
            why: PutBackWhy::NoClaim,
        },
        Claim::Won => match input.record_under_claim {
            Record::Unread => GateAction::ReadRecordUnderClaim,
            Record::Unreadable => GateAction::StoreFailed,
            Record::Present => GateAction::ReplayUnderClaim,
            Record::Absent => GateAction::Call { claimed: true },
        },
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
