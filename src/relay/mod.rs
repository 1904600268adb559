//! The outbox relay's parts: which items it holds and in what order it sends them
//! ([`tracker`]), the Gateway client ([`gateway`]), retry delays ([`backoff`]), what
//! happens when it gives up ([`verdict`]) and the hand-over of confirmed items to the
//! store writer ([`deleter`]). No thread starts here: the relay's loop is
//! `stages/relay.rs`, its Gateway workers' `stages/gateway.rs`.

pub mod backoff;
pub mod deleter;
pub mod gateway;
pub mod tracker;
pub mod verdict;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::store::OutboxItem;

/// The commit stage's side of the link to the relay: new outbox items, announced right
/// after their commit so the relay sends them without waiting for a scan. A notice that
/// does not fit is not waited for (saga intake must not stall on a slow destination):
/// the relay is told to scan the store instead, where the items are anyway.
#[derive(Debug, Clone)]
pub struct Notices {
    tx: Sender<Notice>,
    missed: Arc<AtomicBool>,
}

/// The relay's side of the link.
#[derive(Debug)]
pub struct NoticeInbox {
    pub rx: Receiver<Notice>,
    missed: Arc<AtomicBool>,
}

/// Outbox items of one commit, and when it committed.
#[derive(Debug)]
pub struct Notice {
    pub committed_at: Instant,
    pub items: Vec<OutboxItem>,
}

/// A link holding at most `capacity` batches of notices.
pub fn notices(capacity: usize) -> (Notices, NoticeInbox) {
    let (tx, rx) = bounded(capacity);
    let missed = Arc::new(AtomicBool::new(false));
    (
        Notices {
            tx,
            missed: missed.clone(),
        },
        NoticeInbox { rx, missed },
    )
}

impl Notices {
    pub fn offer(&self, items: Vec<OutboxItem>) {
        if items.is_empty() {
            return;
        }
        let notice = Notice {
            committed_at: Instant::now(),
            items,
        };
        match self.tx.try_send(notice) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.missed.store(true, Ordering::Release)
            }
        }
    }
}

impl NoticeInbox {
    /// Whether notices were lost since the last call (a scan must find their items).
    pub fn take_missed(&self) -> bool {
        self.missed.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_that_does_not_fit_asks_for_a_scan() {
        let (tx, inbox) = notices(1);
        tx.offer(Vec::new());
        assert!(inbox.rx.try_recv().is_err(), "empty batches are not sent");
        let item = || {
            let tenant: crate::types::TenantId = "acme".parse().unwrap();
            OutboxItem {
                kind: crate::keys::OutboxKind::Effect,
                tenant,
                work_id: "w".parse().unwrap(),
                saga: "s".parse().unwrap(),
                correlation: "c".parse().unwrap(),
                destination: "d".into(),
                envelope: crate::store::RawJson::of(&serde_json::json!({})).unwrap(),
                traceparent: None,
            }
        };
        tx.offer(vec![item()]);
        assert!(!inbox.take_missed());
        tx.offer(vec![item()]);
        assert!(inbox.take_missed(), "the second batch did not fit");
        assert!(!inbox.take_missed());
        assert_eq!(inbox.rx.try_recv().unwrap().items.len(), 1);
    }
}
