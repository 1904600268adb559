//! Reminder events (docs/contracts.md §2): what a due timer becomes on `WORKFLOW_EVENTS`,
//! with an `event_id` derived from the timer itself, so a reminder published twice (a
//! crash between its publish and its delete) is one event to JetStream and to the saga.

use uuid::Uuid;

use crate::envelope::Reminder;
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

pub fn reminder(item: &ScheduleItem) -> Reminder {
    Reminder {
        event_id: reminder_event_id(item),
        tenant_id: item.tenant.to_string(),
        saga_name: item.saga.to_string(),
        correlation_id: item.correlation.to_string(),
        name: item.name.clone(),
        due_at: crate::timefmt::format_rfc3339_ms(item.due_at_ms).unwrap_or_default(),
        payload: item.payload.clone(),
        metadata: item.metadata.clone(),
    }
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
}
