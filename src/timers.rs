//! Reminder events (docs/contracts.md §2): what a due timer becomes on `WORKFLOW_EVENTS`,
//! with an `event_id` derived from the timer itself, so a reminder published twice (a
//! crash between its publish and its delete) is one event to JetStream and to the saga.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::{Metadata, Reminder};
use crate::store::ScheduleItem;

/// Namespace of reminder ids. Never change it: a re-published reminder must keep its id.
const REMINDER_NAMESPACE: Uuid = Uuid::from_u128(0x5e8a_41c2_97d3_4b6f_8c10_2f7e_d9a4_36b1);

/// The id of the reminder of (tenant, saga, correlation, name, due_at).
pub fn reminder_event_id(item: &ScheduleItem) -> String {
    // The unit separator cannot appear in tenants, saga names or ids.
    let name = format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
        item.tenant.as_str(),
        item.saga,
        item.correlation,
        item.name,
        item.due_at_ms
    );
    Uuid::new_v5(&REMINDER_NAMESPACE, name.as_bytes()).to_string()
}

/// The contract's reminder envelope of a timer, built whole (`runner saga test` feeds it
/// to a saga as a value; the published bytes, [`reminder_body`], are pinned to it).
pub fn reminder(item: &ScheduleItem) -> Reminder {
    Reminder {
        event_id: reminder_event_id(item),
        tenant_id: item.tenant.to_string(),
        saga_name: item.saga.to_string(),
        correlation_id: item.correlation.to_string(),
        name: item.name.clone(),
        due_at: due_at(item),
        payload: item.payload.clone(),
        metadata: item.metadata.clone(),
    }
}

/// A [`Reminder`] as it is published, its fields in the same order but borrowed from
/// the timer: the scheduler's publish and the executor's size check write the same
/// bytes (a test pins them to `Reminder`'s).
#[derive(Serialize)]
struct ReminderBody<'a> {
    event_id: &'a str,
    tenant_id: &'a str,
    saga_name: &'a str,
    correlation_id: &'a str,
    name: &'a str,
    due_at: &'a str,
    payload: &'a Value,
    metadata: &'a Metadata,
}

impl<'a> ReminderBody<'a> {
    fn of(item: &'a ScheduleItem, event_id: &'a str, due_at: &'a str) -> Self {
        ReminderBody {
            event_id,
            tenant_id: item.tenant.as_str(),
            saga_name: item.saga.as_str(),
            correlation_id: item.correlation.as_str(),
            name: &item.name,
            due_at,
            payload: &item.payload,
            metadata: &item.metadata,
        }
    }
}

fn due_at(item: &ScheduleItem) -> String {
    crate::timefmt::format_rfc3339_ms(item.due_at_ms).unwrap_or_default()
}

/// The reminder of a due timer, encoded for its publish: its event id and its body.
pub fn reminder_body(item: &ScheduleItem) -> serde_json::Result<(String, Vec<u8>)> {
    let event_id = reminder_event_id(item);
    let due_at = due_at(item);
    let body = serde_json::to_vec(&ReminderBody::of(item, &event_id, &due_at))?;
    Ok((event_id, body))
}

/// The length of [`reminder_body`]'s body, counted without computing the id (every id
/// is a hyphenated UUID, 36 characters that JSON does not escape) or keeping the bytes:
/// the executor checks it for every timer a transition sets.
pub fn reminder_body_len(item: &ScheduleItem) -> usize {
    const SAME_LENGTH_ID: &str = "00000000-0000-0000-0000-000000000000";
    let due_at = due_at(item);
    // Values read back from JSON always encode; never reached, and never below.
    crate::nats_io::json_len(&ReminderBody::of(item, SAME_LENGTH_ID, &due_at))
        .unwrap_or(usize::MAX / 2)
}

/// The trace context the transition that set the timer kept in its metadata: its
/// reminder's `traceparent` header.
pub fn traceparent(item: &ScheduleItem) -> Option<&str> {
    item.metadata
        .get(crate::envelope::meta::TRACEPARENT)
        .and_then(|v| v.as_str())
}

/// `{timer_prefix}.{tenant}.{saga}`.
pub fn reminder_subject(timer_prefix: &str, item: &ScheduleItem) -> String {
    format!("{timer_prefix}.{}.{}", item.tenant.token(), item.saga)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn item(name: &str, due: i64) -> ScheduleItem {
        ScheduleItem {
            tenant: "acme".parse().unwrap(),
            saga: "order".parse().unwrap(),
            correlation: "o-1".parse().unwrap(),
            name: name.into(),
            due_at_ms: due,
            payload: json!({"order_id": "o-1"}),
            metadata: json!({"correlation_id": "o-1", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
                .as_object()
                .cloned()
                .unwrap(),
        }
    }

    #[test]
    fn a_reminder_names_its_timer_and_its_id_is_stable() {
        let t = item("payment_timeout", 1_795_774_500_000);
        let r = reminder(&t);
        assert_eq!(r.event_id, reminder_event_id(&t));
        assert_eq!(r.event_id, reminder(&t.clone()).event_id);
        assert_ne!(
            r.event_id,
            reminder_event_id(&item("payment_timeout", 1_795_774_500_001))
        );
        assert_ne!(
            r.event_id,
            reminder_event_id(&item("other", 1_795_774_500_000))
        );
        assert_eq!(
            (r.saga_name.as_str(), r.correlation_id.as_str()),
            ("order", "o-1")
        );
        assert_eq!(r.due_at, "2026-11-27T10:15:00Z");
        assert_eq!(r.payload["order_id"], "o-1");
        assert_eq!(r.metadata["correlation_id"], "o-1");
        assert_eq!(
            reminder_subject("workflow.timer", &t),
            "workflow.timer.acme.order"
        );
    }

    #[test]
    fn the_published_body_is_the_reminder_and_its_length_is_counted_exactly() {
        let mut odd = item("n\u{e4}me \"quoted\"\n", 1_795_774_500_123);
        odd.correlation = "ord\u{e8}r/\u{1f600}".parse().unwrap();
        odd.payload = json!({"text": "tab\tcontrol\u{1}", "list": [1, 2.5, null, true], "nested": {"a": "\\"}});
        let mut bare = item("t", 0);
        bare.payload = Value::Null;
        bare.metadata.clear();
        for t in [item("payment_timeout", 1_795_774_500_000), odd, bare] {
            let (event_id, body) = reminder_body(&t).unwrap();
            assert_eq!(body, serde_json::to_vec(&reminder(&t)).unwrap());
            assert_eq!(event_id, reminder_event_id(&t));
            assert_eq!(reminder_body_len(&t), body.len(), "{:?}", t.name);
        }
    }
}
