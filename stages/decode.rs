//! Decode: envelope validation, tenant checks, routing to sagas and correlation.
//! Pure CPU work on each message; see `saga::decode` for the rules. Messages that
//! arrive ahead of an earlier one this process dropped and is still owed are held back
//! here (dropped unacked), which keeps per-instance order across storage failures.
//! Quarantined messages an operator retries come in here too, one at a time.

use crossbeam_channel::{select, Receiver, Sender};

use crate::envelope::header;
use crate::manifest::SagaCatalog;
use crate::nats_io::{self, Delivery};
use crate::pipeline::{Admission, DecodedBatch, DecodedMsg, FetchedBatch, Retry, Shared, Stats};
use crate::saga::{self, Decoded, MessageInfo};
use crate::stages::StageError;

pub fn run(
    shared: &Shared,
    input: &Receiver<FetchedBatch>,
    retries: &Receiver<Retry>,
    out: &Sender<DecodedBatch>,
) -> Result<(), StageError> {
    let gone = || StageError::DownstreamGone { next: "execute" };
    loop {
        let batch = select! {
            recv(input) -> batch => match batch {
                Ok(batch) => batch,
                Err(_) => return Ok(()),
            },
            recv(retries) -> retry => match retry {
                Ok(retry) => {
                    if !send(shared, out, retried(shared, retry)) {
                        return Err(gone());
                    }
                    continue;
                }
                // Unreachable while `shared` holds the sender; fetching decides the end.
                Err(_) => continue,
            },
        };
        // Occupancy of the channel in front of this stage: backpressure shows here.
        Stats::set(&shared.stats.queue_decode, input.len() as u64);
        if batch.epoch != shared.intake.epoch() {
            batch.msgs.iter().for_each(|m| shared.drop_unacked_msg(m));
            continue;
        }
        let started = std::time::Instant::now();
        // Taken once per batch: a reload never splits a batch between two catalogs.
        let catalog = shared.catalogs.sagas();
        let items: Vec<DecodedMsg> = batch
            .msgs
            .into_iter()
            .filter_map(|msg| decode_one(shared, &catalog, msg))
            .collect();
        shared.stage_latency.decode.record(started.elapsed());
        let decoded = DecodedBatch {
            epoch: batch.epoch,
            items,
        };
        if !send(shared, out, decoded) {
            return Err(gone());
        }
    }
}

/// Counts the batch's events and passes it on; false once execute is gone.
fn send(shared: &Shared, out: &Sender<DecodedBatch>, batch: DecodedBatch) -> bool {
    let events = batch
        .items
        .iter()
        .filter(|i| matches!(i.decoded, Decoded::Event(_)))
        .count();
    Stats::add(&shared.stats.events, events as u64);
    out.send(batch).is_ok()
}

fn decode_one(shared: &Shared, catalog: &SagaCatalog, msg: nats::Message) -> Option<DecodedMsg> {
    let delivery = Delivery::of(&msg).unwrap_or(Delivery {
        stream: String::new(),
        stream_seq: 0,
        delivered: 1,
        published_ms: 0,
    });
    let drops = shared.intake.drops();
    if drops.admit(&delivery.stream, delivery.stream_seq) == Admission::HoldBack {
        shared.drop_unacked(&delivery.stream, delivery.stream_seq);
        return None;
    }
    let info = MessageInfo {
        forgiven: drops.forgiven(&delivery.stream, delivery.stream_seq),
        stream: delivery.stream,
        seq: delivery.stream_seq,
        delivered: delivery.delivered,
        subject: msg.subject.clone(),
        published_ms: delivery.published_ms,
    };
    let decoded = saga::decode_message(&shared.decode, catalog, &info, headers(&msg), &msg.data);
    Some(DecodedMsg {
        msg,
        info,
        decoded,
        retry: None,
    })
}

/// The headers decoding reads: tenant and trace context.
fn headers(msg: &nats::Message) -> saga::Headers<'_> {
    saga::Headers {
        tenant: nats_io::header(msg, header::TENANT),
        traceparent: nats_io::header(msg, header::TRACEPARENT),
    }
}

/// A retried message, decoded with the catalog in force now (a reload may be why it
/// is retried), as a batch of its own.
fn retried(shared: &Shared, retry: Retry) -> DecodedBatch {
    let catalog = shared.catalogs.sagas();
    let decoded = saga::decode_message(
        &shared.decode,
        &catalog,
        &retry.info,
        headers(&retry.msg),
        &retry.msg.data,
    );
    DecodedBatch {
        epoch: shared.intake.epoch(),
        items: vec![DecodedMsg {
            msg: retry.msg,
            info: retry.info,
            decoded,
            retry: Some(retry.ticket),
        }],
    }
}
