//! Deterministic ids: re-running a transition after a crash yields the same command ids
//! (CONTRACTS.md §3), which is what makes relay retries and effect dedupe safe.

use uuid::Uuid;

use crate::types::{CorrelationId, EventId, SagaName, TenantId};

/// Namespace of command ids derived by the Runner (UUIDv5). Never change it: stored and
/// in-flight command ids would stop matching their re-derivations.
const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x6f2b_6b8e_4c1d_4a57_9a0e_2c3d_5e7f_8a91);

/// The id of the `index`-th command of the transition (tenant, saga, correlation,
/// event): index counts the commands kept after null entries were dropped, those of
/// `on_event` first, then those of `compensation`.
pub fn derive_command_id(
    tenant: &TenantId,
    saga: &SagaName,
    corr: &CorrelationId,
    event: &EventId,
    index: usize,
) -> String {
    // The unit separator cannot appear in tenants or saga names and is rejected in ids,
    // so distinct tuples never join to the same name.
    let name = format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
        tenant.as_str(),
        saga,
        corr,
        event,
        index
    );
    Uuid::new_v5(&COMMAND_NAMESPACE, name.as_bytes()).to_string()
}

/// A W3C span id (16 hex digits) for work derived from `seed` (a command id), so the
/// `traceparent` sent with a command is the same on every re-send.
pub fn derive_span_id(seed: &str) -> String {
    let uuid = Uuid::new_v5(&COMMAND_NAMESPACE, seed.as_bytes());
    let simple = uuid.simple().to_string();
    let span = &simple[..16];
    // An all-zero span id is invalid in W3C trace context.
    if span.bytes().all(|b| b == b'0') {
        "0000000000000001".to_string()
    } else {
        span.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (TenantId, SagaName, CorrelationId, EventId) {
        (
            "acme".parse().unwrap(),
            "order".parse().unwrap(),
            "o-1".parse().unwrap(),
            "e-1".parse().unwrap(),
        )
    }

    #[test]
    fn command_ids_are_stable_and_distinct() {
        let (t, s, c, e) = ids();
        let a = derive_command_id(&t, &s, &c, &e, 0);
        assert_eq!(a, derive_command_id(&t, &s, &c, &e, 0));
        // A literal value: changing the derivation would orphan in-flight commands.
        assert_eq!(a, "bfd588ca-b736-5df2-bf9f-734be63685bc");
        assert_ne!(a, derive_command_id(&t, &s, &c, &e, 1));
        assert_ne!(a, derive_command_id(&TenantId::single(), &s, &c, &e, 0));
        assert_eq!(Uuid::parse_str(&a).unwrap().get_version_num(), 5);
    }

    #[test]
    fn span_ids_are_16_hex_digits() {
        let span = derive_span_id("cmd-1");
        assert_eq!(span.len(), 16);
        assert!(span.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(span, derive_span_id("cmd-1"));
    }
}
