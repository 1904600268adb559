use super::*;

const MAX: i64 = 5;

/// A command delivered `n` times, none forgiven, under `max_deliver` 5.
fn delivered(n: u64) -> Deliveries {
    Deliveries {
        delivered: n,
        forgiven: 0,
        max_deliver: MAX,
    }
}

/// A first delivery of a defined effect's command, claims in use, whose record read
/// `record`.
fn read(record: Record) -> GateInput {
    GateInput {
        record,
        ..GateInput::new(true, delivered(1), true)
    }
}

/// `read(Absent)` with the claim answered `claim`.
fn claimed(claim: Claim) -> GateInput {
    GateInput {
        claim,
        ..read(Record::Absent)
    }
}

/// `claimed(Won)` with the record read again as `record`.
fn won(record: Record) -> GateInput {
    GateInput {
        record_under_claim: record,
        ..claimed(Claim::Won)
    }
}

fn put_back(delay: Duration, why: PutBackWhy) -> GateAction {
    GateAction::PutBack { delay, why }
}

fn give_up(reason: &str) -> GateAction {
    GateAction::GiveUp {
        reason: reason.into(),
    }
}

#[test]
fn every_case_of_the_gate() {
    use GateAction as A;
    let busy = Duration::from_millis(700);
    let rows: Vec<(&str, GateInput, GateAction)> = vec![
        // The record is the first fact: nothing is decided, and nothing claimed, before it.
        ("nothing read yet", read(Record::Unread), A::ReadRecord),
        (
            "nothing read yet, whatever else is known",
            GateInput {
                defined_here: false,
                deliveries: delivered(99),
                ..read(Record::Unread)
            },
            A::ReadRecord,
        ),
        // Store failures leave the command unacked: no call without knowing (invariant 3).
        (
            "record unreadable",
            read(Record::Unreadable),
            A::StoreFailed,
        ),
        // Invariant 3: a recorded call is never made again; its result is published.
        (
            "recorded here, claims in use",
            read(Record::Present),
            A::Replay { repair_claim: true },
        ),
        (
            "recorded here, no claims",
            GateInput {
                claims_in_use: false,
                ..read(Record::Present)
            },
            A::Replay {
                repair_claim: false,
            },
        ),
        (
            "recorded, effect since dropped by a reload: still replayed, not put back",
            GateInput {
                defined_here: false,
                ..read(Record::Present)
            },
            A::Replay { repair_claim: true },
        ),
        (
            "recorded, delivered too often: replayed, not quarantined",
            GateInput {
                deliveries: delivered(40),
                ..read(Record::Present)
            },
            A::Replay { repair_claim: true },
        ),
        // A command this process cannot run is put back for one that can, never failed,
        // and never claimed (it would hold the claim from the process that can run it).
        (
            "effect not defined here",
            GateInput {
                defined_here: false,
                ..read(Record::Absent)
            },
            put_back(NOT_DEFINED_RETRY, PutBackWhy::NotDefinedHere),
        ),
        (
            "effect not defined here, delivered too often: put back, not quarantined",
            GateInput {
                defined_here: false,
                deliveries: delivered(40),
                ..read(Record::Absent)
            },
            put_back(NOT_DEFINED_RETRY, PutBackWhy::NotDefinedHere),
        ),
        // max_deliver bounds the calls of a command that is never recorded; it is given up
        // before claiming, so it holds no claim.
        (
            "delivered once over max_deliver",
            GateInput {
                deliveries: delivered(6),
                ..read(Record::Absent)
            },
            give_up("delivered 6 times (max_deliver 5)"),
        ),
        (
            "delivered max_deliver times: still called",
            GateInput {
                deliveries: delivered(5),
                ..read(Record::Absent)
            },
            A::Claim,
        ),
        (
            "over max_deliver only by deliveries this process caused: still called",
            GateInput {
                deliveries: Deliveries {
                    delivered: 7,
                    forgiven: 2,
                    max_deliver: MAX,
                },
                ..read(Record::Absent)
            },
            A::Claim,
        ),
        (
            "max_deliver under 1 counts as 1",
            GateInput {
                deliveries: Deliveries {
                    delivered: 2,
                    forgiven: 0,
                    max_deliver: 0,
                },
                ..read(Record::Absent)
            },
            give_up("delivered 2 times (max_deliver 1)"),
        ),
        // Without a claims bucket this process's record is the only gate.
        (
            "not recorded, no claims",
            GateInput {
                claims_in_use: false,
                ..read(Record::Absent)
            },
            A::Call { claimed: false },
        ),
        (
            "not recorded, claims in use: claim before calling",
            read(Record::Absent),
            A::Claim,
        ),
        // Invariant 3 across replicas: only the claim's winner calls.
        (
            "another replica finished it",
            claimed(Claim::Finished),
            A::AdoptFinished,
        ),
        (
            "another worker or replica holds a live claim",
            claimed(Claim::HeldElsewhere { retry_after: busy }),
            put_back(busy, PutBackWhy::ClaimedElsewhere),
        ),
        (
            "no claim to be had: no call",
            claimed(Claim::Unavailable),
            put_back(CLAIM_RETRY, PutBackWhy::NoClaim),
        ),
        (
            "claim won: look at the record again before calling",
            won(Record::Unread),
            A::ReadRecordUnderClaim,
        ),
        (
            "claim won, record unreadable",
            won(Record::Unreadable),
            A::StoreFailed,
        ),
        (
            "claim won, recorded meanwhile by another worker here",
            won(Record::Present),
            A::ReplayUnderClaim,
        ),
        (
            "claim won, still not recorded",
            won(Record::Absent),
            A::Call { claimed: true },
        ),
    ];
    for (case, input, expected) in rows {
        assert_eq!(decide(&input), expected, "{case}");
    }
}

/// Invariant 3 over every combination of facts: the gate says call only for a command
/// that is defined here, within `max_deliver`, not recorded, and (with claims) whose
/// claim this worker won and under which it is still not recorded.
#[test]
fn the_gate_calls_only_an_unrecorded_command_it_alone_holds() {
    let records = [
        Record::Unread,
        Record::Absent,
        Record::Present,
        Record::Unreadable,
    ];
    let claims = [
        Claim::Unasked,
        Claim::Won,
        Claim::Finished,
        Claim::HeldElsewhere {
            retry_after: Duration::from_secs(1),
        },
        Claim::Unavailable,
    ];
    let mut calls = 0;
    for record in records {
        for record_under_claim in records {
            for claim in claims {
                for claims_in_use in [false, true] {
                    for defined_here in [false, true] {
                        for n in [1, 5, 6] {
                            let input = GateInput {
                                record,
                                defined_here,
                                deliveries: delivered(n),
                                claims_in_use,
                                claim,
                                record_under_claim,
                            };
                            let GateAction::Call { claimed } = decide(&input) else {
                                continue;
                            };
                            calls += 1;
                            assert_eq!(record, Record::Absent, "{input:?}");
                            assert!(defined_here && n <= 5, "{input:?}");
                            assert_eq!(claimed, claims_in_use, "{input:?}");
                            if claims_in_use {
                                assert_eq!(claim, Claim::Won, "{input:?}");
                                assert_eq!(record_under_claim, Record::Absent, "{input:?}");
                            }
                        }
                    }
                }
            }
        }
    }
    // Calls do happen: the sweep is not vacuous.
    assert!(calls > 0);
}
