//! Decode: envelope validation, tenant checks, routing to sagas and correlation.
//! Pure CPU work on each message; see `saga::decode` for the rules. Messages that
//! arrive ahead of an earlier one this process dropped and is still owed are held back
//! here (dropped unacked), which keeps per-instance order across storage failures.

use crossbeam_channel::{Receiver, Sender};

use crate::envelope::header;
use crate::nats_io::{self, Delivery};
use crate::pipeline::{Admission, DecodedBatch, DecodedMsg, FetchedBatch, Shared, Stats};
use crate::saga::{self, Decoded, MessageInfo};

pub fn run(shared: &Shared, input: &Receiver<FetchedBatch>, out: &Sender<DecodedBatch>) {
    for batch in input {
        // Occupancy of the channel in front of this stage: backpressure shows here.
        Stats::set(&shared.stats.queue_decode, input.len() as u64);
        if batch.epoch != shared.intake.epoch() {
            batch.msgs.iter().for_each(|m| shared.drop_unacked_msg(m));
            continue;
        }
        let started = std::time::Instant::now();
        let items: Vec<DecodedMsg> = batch
            .msgs
            .into_iter()
            .filter_map(|msg| decode_one(shared, msg))
            .collect();
        shared.stage_latency.decode.record(started.elapsed());
        let events = items
            .iter()
            .filter(|i| matches!(i.decoded, Decoded::Event(_)))
            .count();
        Stats::add(&shared.stats.events, events as u64);
        if out
            .send(DecodedBatch {
                epoch: batch.epoch,
                items,
            })
            .is_err()
        {
            return;
        }
    }
}

fn decode_one(shared: &Shared, msg: nats::Message) -> Option<DecodedMsg> {
    let delivery = Delivery::of(&msg).unwrap_or(Delivery {
        stream: String::new(),
        stream_seq: 0,
        delivered: 1,
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
    };
    let tenant = nats_io::header(&msg, header::TENANT);
    let decoded = saga::decode(&shared.decode, &shared.catalog, &info, tenant, &msg.data);
    Some(DecodedMsg { msg, info, decoded })
}
