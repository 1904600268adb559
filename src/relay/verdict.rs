//! Giving up on an outbox item: the dead-letter record that keeps it for redrive, and
//! the result event that tells its saga (docs/contracts.md §2: a Gateway rejection is a
//! `rejected` result on `workflow.result.{tenant}.gateway`; a spent retry budget is
//! `timed_out`, since the destination may have taken the command without our hearing).

use serde_json::{json, Value};
use uuid::Uuid;

use crate::envelope::{EffectResult, ResultError, ResultType};
use crate::keys::OutboxKind;
use crate::saga::scoped_uuid;
use crate::store::{DeadLetterRecord, OutboxItem};
use crate::types::TenantId;

/// The `effect_name` of results about aggregate commands.
pub const GATEWAY_EFFECT: &str = "gateway";

/// Namespace of result event ids. Never change it: a re-published result must keep its
/// id to be deduplicated.
const RESULT_NAMESPACE: Uuid = Uuid::from_u128(0x1d5c_07a4_8b39_4f0e_a2d6_93e1_7c48_b0f5);

/// The event id (and `Nats-Msg-Id`) of the result of `command_id` of `tenant` (the
/// tenant id as envelopes carry it: `""` or `_` for the single tenant): a UUIDv5 over
/// (tenant, command id), the effect side's dedupe key, so every re-publish of one result
/// carries the same id while two tenants' results never share one, whatever ids their
/// sagas name.
pub fn result_event_id(tenant: &str, command_id: &str) -> String {
    let tenant = if tenant.is_empty() {
        TenantId::SINGLE_TOKEN
    } else {
        tenant
    };
    scoped_uuid(&RESULT_NAMESPACE, &[tenant, command_id])
}

/// The result event id of completion records written before ids were scoped by tenant
/// (derived from the command id alone): a redelivered command rebuilds the result under
/// the id it was first published with.
pub fn unscoped_result_event_id(command_id: &str) -> String {
    Uuid::new_v5(&RESULT_NAMESPACE, command_id.as_bytes()).to_string()
}

/// Why the relay gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GiveUp {
    /// The destination refused the command for good (a Gateway 4xx).
    Rejected { status: u16, body: String },
    /// Transient failures (timeouts, 5xx, connection errors) lasted the whole retry
    /// budget: whether the destination took the command is unknown.
    BudgetSpent {
        last_error: String,
        budget: std::time::Duration,
    },
    /// Over the server's `max_payload`: no attempt can ever deliver it, so none is made.
    TooLarge { detail: String },
}

/// The error kind of a `timed_out` result after a spent retry budget.
pub const BUDGET_SPENT: &str = "retry_budget_spent";

/// How a dead letter's reason begins when the item was too large to send; its result
/// event then says `too_large`.
pub const TOO_LARGE: &str = "too large";

/// The metadata keys a `too_large` result keeps: the item's metadata may be what made
/// it too large, and the result must fit where the item did not.
const SMALL_METADATA: [&str; 4] = ["correlation_id", "causation_id", "saga_name", "traceparent"];

pub fn dead_letter(item: &OutboxItem, why: &GiveUp, attempts: u32, now: &str) -> DeadLetterRecord {
    let (reason, status) = match why {
        GiveUp::Rejected { status, body } => {
            (format!("rejected with {status}: {body}"), Some(*status))
        }
        GiveUp::BudgetSpent { last_error, budget } => (
            format!(
                "retry budget of {}s spent after {attempts} attempts (outcome unknown: \
                 the destination may have accepted it); last error: {last_error}",
                budget.as_secs()
            ),
            None,
        ),
        GiveUp::TooLarge { detail } => (format!("{TOO_LARGE}, never sent: {detail}"), None),
    };
    DeadLetterRecord {
        item: item.clone(),
        reason,
        status,
        attempts,
        dead_at: now.to_string(),
    }
}

/// The result event of a dead-lettered item, and its subject.
pub fn result_event(
    record: &DeadLetterRecord,
    result_prefix: &str,
    now: &str,
) -> (String, EffectResult) {
    let item = &record.item;
    let envelope = item.envelope.to_value();
    let text = |field: &str| {
        envelope
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (effect_name, payload) = match item.kind {
        OutboxKind::Aggregate => (
            GATEWAY_EFFECT.to_string(),
            json!({
                "aggregate_type": text("aggregate_type"),
                "aggregate_id": text("aggregate_id"),
                "command_type": text("command_type"),
                "status": record.status,
            }),
        ),
        OutboxKind::Effect => (text("effect_name"), json!({})),
    };
    let too_large = is_too_large(record);
    let (result_type, kind) = match record.status {
        Some(_) => (ResultType::Rejected, "rejected"),
        None if too_large => (ResultType::Failed, "too_large"),
        None => (ResultType::TimedOut, BUDGET_SPENT),
    };
    let subject = format!("{result_prefix}.{}.{effect_name}", item.tenant.token());
    let mut metadata = match envelope.get("metadata") {
        Some(Value::Object(m)) => m.clone(),
        _ => Default::default(),
    };
    if too_large {
        metadata.retain(|k, v| SMALL_METADATA.contains(&k.as_str()) && v.is_string());
    }
    let event = EffectResult {
        event_id: result_event_id(item.tenant.as_str(), item.work_id.as_str()),
        tenant_id: item.tenant.to_string(),
        command_id: item.work_id.to_string(),
        effect_name,
        result_type,
        payload,
        error: Some(ResultError {
            kind: kind.into(),
            message: record.reason.clone(),
        }),
        attempts: record.attempts,
        timestamp: now.to_string(),
        metadata,
    };
    (subject, event)
}

/// Whether the item was dead-lettered for being over the server's `max_payload`.
pub fn is_too_large(record: &DeadLetterRecord) -> bool {
    record.status.is_none() && record.reason.starts_with(TOO_LARGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RawJson;

    fn command() -> OutboxItem {
        OutboxItem {
            kind: OutboxKind::Aggregate,
            tenant: "acme".parse().unwrap(),
            work_id: "cmd-1".parse().unwrap(),
            saga: "order".parse().unwrap(),
            correlation: "o-1".parse().unwrap(),
            destination: "order".into(),
            envelope: RawJson::of(&json!({
                "command_id": "cmd-1", "aggregate_type": "order", "aggregate_id": "o-1",
                "command_type": "MarkPaid", "payload": {},
                "metadata": {"correlation_id": "o-1", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "extra": 1}
            }))
            .unwrap(),
            traceparent: None,
        }
    }

    #[test]
    fn a_rejection_becomes_a_rejected_gateway_result_with_the_commands_metadata() {
        let why = GiveUp::Rejected {
            status: 422,
            body: "no such order".into(),
        };
        let record = dead_letter(&command(), &why, 1, "2026-11-27T10:00:00.000Z");
        assert_eq!(record.status, Some(422));
        assert!(record.reason.contains("no such order"));
        let (subject, event) = result_event(&record, "workflow.result", "2026-11-27T10:00:00.000Z");
        assert_eq!(subject, "workflow.result.acme.gateway");
        assert_eq!(event.result_type, ResultType::Rejected);
        assert_eq!(event.command_id, "cmd-1");
        assert_eq!(event.event_id, result_event_id("acme", "cmd-1"));
        assert_eq!(event.payload["command_type"], "MarkPaid");
        assert_eq!(event.payload["status"], 422);
        assert_eq!(event.metadata["extra"], 1, "metadata travels whole");
        assert_eq!(event.metadata["correlation_id"], "o-1");
    }

    #[test]
    fn a_spent_retry_budget_times_out_never_fails_and_ids_are_stable() {
        let why = GiveUp::BudgetSpent {
            last_error: "gateway answered 503".into(),
            budget: std::time::Duration::from_secs(21_600),
        };
        let record = dead_letter(&command(), &why, 40, "t");
        assert!(
            record
                .reason
                .contains("retry budget of 21600s spent after 40 attempts")
                && record.reason.contains("gateway answered 503"),
            "{}",
            record.reason
        );
        let (_, event) = result_event(&record, "workflow.result", "t");
        assert_eq!(event.result_type, ResultType::TimedOut);
        let error = event.error.unwrap();
        assert_eq!(error.kind, BUDGET_SPENT);
        assert_eq!(error.message, record.reason);
        assert_eq!(event.attempts, 40);
    }

    #[test]
    fn result_ids_are_stable_and_scoped_by_tenant() {
        let id = result_event_id("acme", "1001");
        assert_eq!(id, result_event_id("acme", "1001"), "stable");
        // A literal value (checked with Python's uuid5): changing the derivation would
        // re-publish results under new ids.
        assert_eq!(id, "f2eadc0b-77e2-5e27-b8d6-8d606a0f4f08");
        assert_ne!(id, result_event_id("globex", "1001"), "tenant");
        assert_ne!(id, result_event_id("acme", "1002"), "command");
        assert_eq!(result_event_id("", "1001"), result_event_id("_", "1001"));
        assert_ne!(id, unscoped_result_event_id("1001"));
        // Records written before keep their ids (the value every such result went out with).
        assert_eq!(
            unscoped_result_event_id("cmd-1"),
            Uuid::new_v5(&RESULT_NAMESPACE, b"cmd-1").to_string()
        );
    }

    #[test]
    fn a_too_large_item_fails_with_too_large_and_small_metadata() {
        let why = GiveUp::TooLarge {
            detail: "5000 bytes, the server takes at most 4096".into(),
        };
        let record = dead_letter(&command(), &why, 0, "t");
        assert!(record.reason.starts_with("too large"), "{}", record.reason);
        let (_, event) = result_event(&record, "workflow.result", "t");
        assert_eq!(event.result_type, ResultType::Failed);
        assert_eq!(event.error.as_ref().unwrap().kind, "too_large");
        assert_eq!(event.metadata["correlation_id"], "o-1");
        assert!(event.metadata.get("extra").is_none(), "only small metadata");
    }
}
