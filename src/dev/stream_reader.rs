//! Reading what a stream holds, the way an outside consumer would: a fresh durable pull
//! consumer from the first message, deleted afterwards. The demo plays the effect worker
//! with it; tests check what the relay published with it.

use std::time::{Duration, Instant};

use nats::jetstream::{
    AckPolicy, BatchOptions, ConsumerConfig, DeliverPolicy, PullSubscribeOptions,
};

/// Up to `want` messages of `stream` matching `filter`, in stream order, waiting at most
/// `timeout` for them to exist. Fewer come back when the stream has fewer.
pub fn read_stream(
    nc: &nats::Connection,
    stream: &str,
    filter: &str,
    want: usize,
    timeout: Duration,
) -> Result<Vec<nats::Message>, String> {
    read(nc, stream, filter, Some(want), timeout)
}

/// Every message of `stream` matching `filter` that it holds now (however many that
/// is), in stream order.
pub fn read_all(
    nc: &nats::Connection,
    stream: &str,
    filter: &str,
    timeout: Duration,
) -> Result<Vec<nats::Message>, String> {
    read(nc, stream, filter, None, timeout)
}

/// `want`: how many to wait for; `None`: as many as match when the reader starts.
fn read(
    nc: &nats::Connection,
    stream: &str,
    filter: &str,
    want: Option<usize>,
    timeout: Duration,
) -> Result<Vec<nats::Message>, String> {
    let js = nats::jetstream::new(nc.clone());
    let err = |e: std::io::Error| format!("reading {stream}: {e}");
    let durable = format!(
        "reader-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let created = js
        .add_consumer(
            stream,
            ConsumerConfig {
                durable_name: Some(durable.clone()),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                filter_subject: filter.to_string(),
                ..Default::default()
            },
        )
        .map_err(err)?;
    let want = want.unwrap_or(usize::try_from(created.num_pending).unwrap_or(usize::MAX));
    let sub = js
        .pull_subscribe_with_options(
            filter,
            &PullSubscribeOptions::new()
                .bind_stream(stream.to_string())
                .durable_name(durable.clone()),
        )
        .map_err(err)?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let expires = left.min(Duration::from_millis(500));
        sub.request_batch(BatchOptions {
            batch: want - out.len(),
            expires: Some(expires.as_nanos() as usize),
            no_wait: false,
        })
        .map_err(err)?;
        while out.len() < want {
            match sub.next_timeout(expires + Duration::from_millis(100)) {
                Ok(m) if crate::nats_io::is_status(&m) => break,
                Ok(m) => {
                    let _ = m.ack();
                    out.push(m);
                }
                Err(_) => break,
            }
        }
    }
    let _ = js.delete_consumer(stream, &durable);
    Ok(out)
}
