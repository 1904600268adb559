//! Requests from many threads over one reply subscription.
//!
//! The blocking client's `request` (and so `js.publish`) subscribes a fresh inbox for
//! every request and unsubscribes it afterwards: three protocol messages, a client-side
//! channel and a change to the server's subscription index per request. The effect
//! workers create a claim per command, so that was most of what a claim cost.
//! Here one wildcard subscription takes every reply, a dispatcher thread hands each to
//! the caller waiting for its token, and callers block only on their own reply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use nats::header::HeaderMap;
use parking_lot::Mutex;

use super::Flusher;
use crate::oneshot;

/// How often the dispatcher checks whether its requester is gone.
const DISPATCH_TICK: Duration = Duration::from_secs(1);
/// Replies buffered in the subscription before the client drops them (each waiting caller
/// has at most one outstanding; strays beyond this are dropped, not hoarded).
const PENDING_REPLIES: usize = 4_096;

type Waiting = Mutex<HashMap<u64, oneshot::Sender<nats::Message>>>;

pub struct Requester {
    nc: nats::Connection,
    inbox: String,
    next_token: AtomicU64,
    /// One entry per caller blocked in [`Requester::request`]: bounded by the threads
    /// that share this requester.
    waiting: Arc<Waiting>,
    flusher: Flusher,
}

impl Requester {
    /// Subscribes the shared inbox and starts its dispatcher thread, which ends after the
    /// requester is dropped.
    pub fn start(nc: &nats::Connection) -> std::io::Result<Requester> {
        let inbox = nc.new_inbox();
        let sub = nc.subscribe(&format!("{inbox}.*"))?;
        sub.set_message_limits(PENDING_REPLIES);
        let waiting: Arc<Waiting> = Arc::default();
        let weak = Arc::downgrade(&waiting);
        std::thread::Builder::new()
            .name("nats-replies".into())
            .spawn(move || dispatch(&sub, &weak))?;
        Ok(Requester {
            nc: nc.clone(),
            inbox,
            next_token: AtomicU64::new(0),
            waiting,
            flusher: Flusher::start(nc)?,
        })
    }

    /// Sends `body` to `subject` and waits up to `timeout` for the reply. A timeout is
    /// `ErrorKind::TimedOut`; "no responders" is `ErrorKind::NotFound`, as the client's
    /// own `request` reports them.
    pub fn request(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        body: &[u8],
        timeout: Duration,
    ) -> std::io::Result<nats::Message> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        // A oneshot: the caller parks at once instead of spinning through a round trip.
        let (tx, rx) = oneshot::oneshot();
        self.waiting.lock().insert(token, tx);
        let reply = format!("{}.{token}", self.inbox);
        let sent = self
            .nc
            .publish_with_reply_or_headers(subject, Some(&reply), headers, body);
        if let Err(e) = sent {
            self.waiting.lock().remove(&token);
            return Err(e);
        }
        // The message sits in the client's buffer until a flush; without this kick it
        // would wait for the client's own, up to 5 ms later.
        self.flusher.kick();
        let answer = rx.recv_timeout(timeout);
        self.waiting.lock().remove(&token);
        match answer {
            Ok(msg) if super::is_status(&msg) && msg.data.is_empty() => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no responders",
            )),
            Ok(msg) => Ok(msg),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no reply from {subject} within {timeout:?}"),
            )),
        }
    }
}

/// Hands each reply to the caller waiting for its token; a reply nobody waits for (its
/// caller timed out) is dropped.
fn dispatch(sub: &nats::Subscription, waiting: &Weak<Waiting>) {
    loop {
        let msg = sub.next_timeout(DISPATCH_TICK);
        let Some(waiting) = waiting.upgrade() else {
            return;
        };
        let Ok(msg) = msg else {
            continue;
        };
        let token = msg
            .subject
            .rsplit('.')
            .next()
            .and_then(|t| t.parse::<u64>().ok());
        if let Some(tx) = token.and_then(|t| waiting.lock().remove(&t)) {
            tx.send(msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::NatsServer;

    #[test]
    fn concurrent_requests_each_get_their_own_reply() {
        let server = NatsServer::start().unwrap();
        let nc = nats::connect(server.url()).unwrap();
        let echo = nc.subscribe("echo").unwrap();
        let responder = std::thread::spawn(move || {
            for _ in 0..400 {
                let msg = echo.next().unwrap();
                let body = msg.data.clone();
                msg.respond(body).unwrap();
            }
        });
        let requester = Arc::new(Requester::start(&nc).unwrap());
        let callers: Vec<_> = (0..8)
            .map(|c| {
                let requester = requester.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let body = format!("{c}-{i}");
                        let reply = requester
                            .request("echo", None, body.as_bytes(), Duration::from_secs(5))
                            .unwrap();
                        assert_eq!(reply.data, body.as_bytes());
                    }
                })
            })
            .collect();
        for c in callers {
            c.join().unwrap();
        }
        responder.join().unwrap();
        assert!(requester.waiting.lock().is_empty());
    }

    #[test]
    fn unanswered_requests_time_out_and_unheard_subjects_have_no_responders() {
        let server = NatsServer::start().unwrap();
        let nc = nats::connect(server.url()).unwrap();
        let _silent = nc.subscribe("silent").unwrap();
        let requester = Requester::start(&nc).unwrap();
        let err = requester
            .request("silent", None, b"x", Duration::from_millis(200))
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        let err = requester
            .request("nobody.listens", None, b"x", Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(requester.waiting.lock().is_empty());
    }
}
