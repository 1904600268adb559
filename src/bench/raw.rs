//! The saga phase's raw baselines: JetStream pull+ack of the same events as the fetch
//! stage does it (the figure the saga ratio of issues 2 and 8 is against), and the same
//! loop publishing one message per event as well (pipelined, with the relay's headers
//! and window): the server's side of what the example saga makes it do per event, as a
//! reference next to the first. [`RawOut`], that raw publishing, is also the relay
//! phase's baseline.

use std::time::{Duration, Instant};

use nats::jetstream::{
    AckPolicy, BatchOptions, ConsumerConfig, PullSubscribeOptions, StreamConfig,
};
use serde_json::Value;

use crate::dev::publish_all;
use crate::nats_io::Publisher;

/// What the raw loop does for each message besides acking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PerEvent {
    Ack,
    /// Ack it and publish its body (with a `Nats-Msg-Id` and the context headers) to a
    /// stream of its own, with at most `window` publishes awaiting their acks.
    AckAndPublish {
        window: usize,
    },
}

/// Publishes the events to a scratch stream, then pulls and acks them all the way the
/// fetch stage does (expiring pull requests, one ack per message), doing `per_event`
/// for each. Returns msgs/s.
pub(super) fn pull_ack(
    nc: &nats::Connection,
    events: &[(String, Value)],
    fetch_batch: usize,
    per_event: PerEvent,
) -> Result<f64, String> {
    let js = nats::jetstream::new(nc.clone());
    let err = |e: std::io::Error| e.to_string();
    // Unique per run, so a shared server never holds a leftover of an earlier run.
    let token = uuid::Uuid::new_v4().simple().to_string();
    let stream = format!("RUNNER_BENCH_RAW_{}", &token[..8]);
    let prefix = format!("runnerbench.{}", &token[..8]);
    js.add_stream(StreamConfig {
        name: stream.clone(),
        subjects: vec![format!("{prefix}.>")],
        ..Default::default()
    })
    .map_err(err)?;
    let mut out = match per_event {
        PerEvent::Ack => None,
        PerEvent::AckAndPublish { window } => Some(RawOut::open(nc, "RAW_OUT", window)?),
    };
    let raw: Vec<(String, Value)> = events
        .iter()
        .map(|(s, e)| (format!("{prefix}.{s}"), e.clone()))
        .collect();
    publish_all(nc, &raw)?;
    js.add_consumer(
        stream.as_str(),
        ConsumerConfig {
            durable_name: Some("raw".into()),
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: 4096,
            ..Default::default()
        },
    )
    .map_err(err)?;
    let sub = js
        .pull_subscribe_with_options(
            &format!("{prefix}.>"),
            &PullSubscribeOptions::new()
                .bind_stream(stream.clone())
                .durable_name("raw".into()),
        )
        .map_err(err)?;
    let started = Instant::now();
    let mut acked = 0usize;
    while acked < raw.len() {
        // Never ask for more than is left: a request for more would wait out its expiry.
        let want = fetch_batch.min(raw.len() - acked);
        sub.request_batch(BatchOptions {
            batch: want,
            expires: Some(Duration::from_millis(500).as_nanos() as usize),
            no_wait: false,
        })
        .map_err(err)?;
        nc.flush().map_err(err)?;
        let mut got = 0;
        while got < want {
            match sub.next_timeout(Duration::from_millis(500)) {
                Ok(m) if crate::nats_io::is_status(&m) => break,
                Ok(m) => {
                    m.ack().map_err(err)?;
                    if let Some(out) = out.as_mut() {
                        let headers = crate::nats_io::context_headers(
                            "acme",
                            Some("o-1"),
                            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                        );
                        out.publish((acked + got) as u64, headers, m.data.clone());
                    }
                    got += 1;
                }
                Err(_) => break,
            }
        }
        acked += got;
        if started.elapsed() > Duration::from_secs(600) {
            return Err("raw pull+ack did not finish in 600 s".into());
        }
    }
    if let Some(out) = out.as_mut() {
        out.settle();
    }
    nc.flush().map_err(err)?;
    let rate = acked as f64 / started.elapsed().as_secs_f64();
    let _ = js.delete_stream(&stream);
    out.map_or(Ok(()), RawOut::close)?;
    Ok(rate)
}

/// Raw pipelined publishing as the relay publishes, to a scratch stream of this run
/// (with a duplicate window, as the Runner's streams have): `Nats-Msg-Id`s of the run,
/// at most `window` acks outstanding, collected every few publishes.
pub(super) struct RawOut {
    js: nats::jetstream::JetStream,
    stream: String,
    subject: String,
    token: String,
    publisher: Publisher,
    failed: usize,
}

impl RawOut {
    /// Creates the stream `RUNNER_BENCH_{name}_{token}`.
    pub(super) fn open(nc: &nats::Connection, name: &str, window: usize) -> Result<RawOut, String> {
        let js = nats::jetstream::new(nc.clone());
        let token = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let stream = format!("RUNNER_BENCH_{name}_{token}");
        let subject = format!("runnerbench-out.{token}");
        js.add_stream(StreamConfig {
            name: stream.clone(),
            subjects: vec![subject.clone()],
            duplicate_window: Duration::from_secs(120).as_nanos() as i64,
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
        let publisher =
            Publisher::new(nc, window, Duration::from_secs(5), 3).map_err(|e| e.to_string())?;
        Ok(RawOut {
            js,
            stream,
            subject,
            token,
            publisher,
            failed: 0,
        })
    }

    /// The `n`-th publish of the run.
    pub(super) fn publish(&mut self, n: u64, headers: nats::header::HeaderMap, body: Vec<u8>) {
        let id = format!("raw-{}-{n}", self.token);
        self.publisher.publish(n, &self.subject, &id, headers, body);
        // Flush and collect acks every few publishes, as the relay does once per loop.
        if n % 32 == 31 {
            self.failed += failures(self.publisher.poll(Duration::ZERO));
        }
    }

    /// Waits for every outstanding ack.
    pub(super) fn settle(&mut self) {
        self.failed += failures(self.publisher.finish());
    }

    /// Deletes the stream; an error if any publish failed.
    pub(super) fn close(mut self) -> Result<(), String> {
        self.settle();
        let _ = self.js.delete_stream(&self.stream);
        match self.failed {
            0 => Ok(()),
            n => Err(format!("{n} raw publishes failed")),
        }
    }
}

fn failures(completions: Vec<crate::nats_io::Completion>) -> usize {
    completions.iter().filter(|c| c.result.is_err()).count()
}
