//! The result event that ends an effect command (CONTRACTS.md §2), and the completion
//! record that makes a redelivered command re-publish it instead of calling again.

use serde_json::Value;

use super::attempts::Final;
use crate::envelope::{EffectCommand, EffectResult};
use crate::relay::verdict::result_event_id;

/// The result event of `command` ended as `end`. Its `event_id` derives from the command
/// id alone, so every re-publish of it is deduplicated by JetStream and by the saga.
pub fn result_event(command: &EffectCommand, end: &Final, now: &str) -> EffectResult {
    EffectResult {
        event_id: result_event_id(&command.command_id),
        tenant_id: command.tenant_id.clone(),
        command_id: command.command_id.clone(),
        effect_name: command.effect_name.clone(),
        result_type: end.result_type,
        payload: if end.payload.is_null() {
            Value::Object(Default::default())
        } else {
            end.payload.clone()
        },
        error: end.error.clone(),
        attempts: end.attempts,
        timestamp: now.to_string(),
        // Metadata travels whole: correlation, causation, saga name and trace context.
        metadata: command.metadata.clone(),
    }
}

/// `{result_prefix}.{tenant}.{effect}`: where the result goes.
pub fn result_subject(result_prefix: &str, command: &EffectCommand) -> String {
    let tenant = if command.tenant_id.is_empty() {
        crate::types::TenantId::SINGLE_TOKEN
    } else {
        command.tenant_id.as_str()
    };
    format!("{result_prefix}.{tenant}.{}", command.effect_name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::envelope::{ResultError, ResultType};

    fn command(tenant: &str) -> EffectCommand {
        serde_json::from_value(json!({"tenant_id": tenant, "command_id": "c-1", "effect_name": "charge_card",
            "payload": {"amount": 1}, "metadata": {"correlation_id": "o-1", "saga_name": "order", "x": [1]},
            "issued_at": "2026-11-27T10:00:00Z"}))
        .unwrap()
    }

    #[test]
    fn a_result_carries_the_commands_identity_and_metadata_whole() {
        let end = Final {
            result_type: ResultType::TimedOut,
            payload: Value::Null,
            error: Some(ResultError {
                kind: "timeout".into(),
                message: "no answer".into(),
            }),
            attempts: 4,
        };
        let cmd = command("acme");
        let r = result_event(&cmd, &end, "2026-11-27T10:00:05.000Z");
        assert_eq!(r.event_id, result_event_id("c-1"));
        assert_eq!(
            r.event_id,
            result_event(&cmd, &end, "later").event_id,
            "stable"
        );
        assert_eq!(
            (r.tenant_id.as_str(), r.command_id.as_str()),
            ("acme", "c-1")
        );
        assert_eq!(r.result_type, ResultType::TimedOut);
        assert_eq!(r.payload, json!({}));
        assert_eq!(r.attempts, 4);
        assert_eq!(r.metadata["x"], json!([1]));
        assert_eq!(
            result_subject("workflow.result", &cmd),
            "workflow.result.acme.charge_card"
        );
        assert_eq!(
            result_subject("workflow.result", &command("")),
            "workflow.result._.charge_card",
            "the single tenant is written _"
        );
    }
}
