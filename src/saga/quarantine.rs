//! What becomes of a message whose transitions the store refuses as data (a record LMDB
//! cannot hold): the commit stage commits such a message alone, and when the store
//! still refuses it, quarantines it with the record built here instead of its work.
//! Kept apart from the stage so the choice of tenant, event and saga the record names
//! is tested without a store or a thread.

use super::{Disposition, LogCtx, MessageInfo, Outcome};
use crate::store::{excerpt, QuarantineKind, QuarantineRecord, StoreError, Transition};

/// The quarantine record of the message `info` (body `body`, log context `log`) whose
/// `transitions` the store refused with `e`. It names a saga only when it is clear which
/// one was refused: the one whose key `e` names, else the only one.
pub fn unstorable(
    info: &MessageInfo,
    log: &LogCtx,
    body: &[u8],
    transitions: &[Transition],
    e: &StoreError,
) -> QuarantineRecord {
    let first = transitions.first();
    // The transitions name the tenant proven at decoding; without any, the log's is
    // the best there is (a decoded message's, so proven too).
    let tenant = first
        .map(|t| t.tenant.clone())
        .or_else(|| log.tenant_id.parse().ok())
        .unwrap_or_default();
    // One message, one event: every transition carries the same event id.
    let event_id = first.map(|t| t.event_id.to_string());
    let refused = match e {
        StoreError::Encode { key, .. } => transitions
            .iter()
            .find(|t| crate::keys::saga(&t.tenant, &t.saga, &t.correlation) == *key),
        _ => None,
    };
    let only = (transitions.len() == 1).then_some(first).flatten();
    let saga = refused.or(only).map(|t| t.saga.to_string());
    QuarantineRecord {
        kind: QuarantineKind::Store,
        reason: format!("its transition cannot be stored: {e}"),
        stream: info.stream.clone(),
        seq: info.seq,
        subject: info.subject.clone(),
        delivered: info.delivered,
        tenant,
        event_id,
        correlation_id: Some(log.correlation_id.clone()).filter(|c| !c.is_empty()),
        saga,
        body_excerpt: excerpt(body),
        unattributed: false,
        quarantined_at: None,
    }
}

impl Outcome {
    /// Replaces the message's work by `record`: nothing of it is written but the
    /// record, its delivery is terminated, and the refusal counts as one fault.
    pub fn quarantine_instead(&mut self, record: QuarantineRecord) {
        self.transitions.clear();
        self.quarantine = Some(record);
        self.disposition = Disposition::Term;
        self.faults += 1;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::{InstanceStatus, Keep, SagaRecord, StreamPosition};
    use crate::types::TenantId;

    fn acme() -> TenantId {
        TenantId::new("acme").expect("a valid tenant id")
    }

    fn transition(saga: &str, corr: &str) -> Transition {
        Transition {
            tenant: acme(),
            saga: saga.parse().expect("a valid saga name"),
            correlation: corr.parse().expect("a valid correlation id"),
            event_id: "e-1".parse().expect("a valid event id"),
            position: StreamPosition {
                stream: "AGGREGATE_EVENTS".into(),
                seq: 7,
            },
            record: SagaRecord {
                status: InstanceStatus::Active,
                state: json!({}),
                version: 1,
                transitions: 1,
                last_event_id: "e-1".into(),
                updated_at: "2026-12-05T10:00:00Z".into(),
                fault: None,
            },
            outbox: vec![],
            schedules: vec![],
            cancel: vec![],
            fired: None,
            keep: Keep::of(&Default::default()),
            history: Default::default(),
        }
    }

    fn info() -> MessageInfo {
        MessageInfo {
            stream: "AGGREGATE_EVENTS".into(),
            seq: 7,
            delivered: 2,
            forgiven: 0,
            subject: "workflow.events.acme.order".into(),
            published_ms: 0,
        }
    }

    fn log(tenant: &str, correlation: &str) -> LogCtx {
        LogCtx {
            tenant_id: tenant.into(),
            correlation_id: correlation.into(),
            trace_id: String::new(),
        }
    }

    fn encode_error(t: &Transition) -> StoreError {
        StoreError::Encode {
            key: crate::keys::saga(&t.tenant, &t.saga, &t.correlation),
            message: "too large".into(),
        }
    }

    #[test]
    fn the_refused_saga_is_named_only_when_it_is_clear_which_one() {
        let (order, billing) = (transition("order", "o-1"), transition("billing", "o-1"));
        let both = [order.clone(), billing.clone()];
        // The error names the key of one of two: that one.
        let r = unstorable(
            &info(),
            &log("acme", ""),
            b"{}",
            &both,
            &encode_error(&billing),
        );
        assert_eq!(r.saga.as_deref(), Some("billing"));
        // Two transitions, an error naming no key: no saga.
        let r = unstorable(
            &info(),
            &log("acme", ""),
            b"{}",
            &both,
            &StoreError::Injected,
        );
        assert_eq!(r.saga, None);
        // A single transition is the refused one whatever the error says.
        let single = [order];
        let r = unstorable(
            &info(),
            &log("acme", ""),
            b"{}",
            &single,
            &StoreError::Injected,
        );
        assert_eq!(r.saga.as_deref(), Some("order"));
    }

    #[test]
    fn the_record_names_the_message_and_its_proven_tenant() {
        let t = [transition("order", "o-1")];
        let e = encode_error(&t[0]);
        let r = unstorable(&info(), &log("acme", "corr-1"), b"{\"a\":1}", &t, &e);
        assert_eq!(r.kind, QuarantineKind::Store);
        assert_eq!(
            (r.stream.as_str(), r.seq, r.delivered),
            ("AGGREGATE_EVENTS", 7, 2)
        );
        assert_eq!(r.subject, "workflow.events.acme.order");
        assert_eq!(r.tenant.as_str(), "acme");
        assert_eq!(r.event_id.as_deref(), Some("e-1"));
        assert_eq!(r.correlation_id.as_deref(), Some("corr-1"));
        assert_eq!(r.body_excerpt, "{\"a\":1}");
        assert!(r.reason.starts_with("its transition cannot be stored: "));
        // Decoded, so its tenant is proven: filed under it.
        assert_eq!(r.filing_tenant().map(TenantId::as_str), Some("acme"));
        // No transitions left to name them: the log's tenant, no event, no empty id.
        let r = unstorable(&info(), &log("globex", ""), b"", &[], &StoreError::Injected);
        assert_eq!(r.tenant.as_str(), "globex");
        assert_eq!((r.event_id, r.correlation_id, r.saga), (None, None, None));
    }

    #[test]
    fn a_quarantined_outcome_writes_only_its_record_and_is_terminated() {
        let t = transition("order", "o-1");
        let record = unstorable(&info(), &log("acme", ""), b"{}", &[], &encode_error(&t));
        // A message that did work: one transition, acked, one fault already.
        let mut out = Outcome::quarantined(record.clone());
        out.quarantine = None;
        out.disposition = Disposition::Ack;
        out.transitions.push(t);
        out.faults = 1;
        out.quarantine_instead(record.clone());
        assert!(out.transitions.is_empty());
        assert_eq!(out.quarantine, Some(record));
        assert_eq!(out.disposition, Disposition::Term);
        assert_eq!(out.faults, 2);
    }
}
