//! The size check before commit: what a transition would publish (effect commands and
//! reminders, headers included) must fit the server's `max_payload`. A transition that
//! would send more is never written: the server would refuse the publish (and close the
//! connection on every tenant), so the relay or the scheduler could never deliver it.
//! Aggregate commands go to the Gateway over HTTP and are not bound by it.

use crate::keys::OutboxKind;
use crate::nats_io::context_wire_size;
use crate::store::Transition;

/// Room left for a `Nats-Msg-Id` the relay sets (ids are at most 128 bytes; a scoped id
/// adds its tenant and saga).
const MSG_ID_ROOM: usize = 384;

/// Why the transition cannot be sent, if it cannot: the first envelope over
/// `max_payload`, its size and the limit. Sizes are counted, not built: no header map,
/// no reminder id, no bytes kept (it runs for every transition).
pub fn oversized(t: &Transition, max_payload: usize) -> Option<String> {
    for item in t.outbox.iter().filter(|i| i.kind == OutboxKind::Effect) {
        let size = context_wire_size(
            item.tenant.as_str(),
            Some(item.correlation.as_str()),
            item.traceparent.as_deref(),
            Some(MSG_ID_ROOM),
            item.envelope.as_str().len(),
        );
        if size > max_payload {
            return Some(too_large(
                "command",
                item.work_id.as_str(),
                size,
                max_payload,
            ));
        }
    }
    for timer in &t.schedules {
        let size = context_wire_size(
            timer.tenant.as_str(),
            Some(timer.correlation.as_str()),
            crate::timers::traceparent(timer),
            Some(MSG_ID_ROOM),
            crate::timers::reminder_body_len(timer),
        );
        if size > max_payload {
            return Some(too_large("reminder", &timer.name, size, max_payload));
        }
    }
    None
}

fn too_large(what: &str, name: &str, size: usize, max: usize) -> String {
    format!(
        "too large: its {what} {name:?} would be {size} bytes, over the server's max_payload \
         of {max}; nothing was written"
    )
}
