//! The result event that ends an effect command (docs/contracts.md §2), and the completion
//! record that makes a redelivered command re-publish it instead of calling again.

use serde_json::Value;

use super::attempts::Final;
use crate::envelope::{EffectCommand, EffectResult};
use crate::relay::verdict::{result_event_id, unscoped_result_event_id};
use crate::store::{EffectCompletion, EffectOutcome, RawJson, StoredCompletion};

/// The result event of `command` ended as `end`. Its `event_id` derives from (tenant,
/// command id), the effect side's dedupe key, so every re-publish of it is deduplicated
/// by JetStream and by the saga, and another tenant's command of the same id gets a
/// result of its own.
pub fn result_event(command: &EffectCommand, end: &Final, now: &str) -> EffectResult {
    EffectResult {
        event_id: result_event_id(&command.tenant_id, &command.command_id),
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

/// What the completion record keeps of an effect that ended as `end` at `timestamp`
/// (the result event's timestamp).
pub fn outcome(end: &Final, timestamp: &str) -> EffectOutcome {
    EffectOutcome {
        result_type: end.result_type,
        payload: end.payload.clone(),
        error: end.error.clone(),
        attempts: end.attempts,
        timestamp: timestamp.to_string(),
        scoped_id: true,
    }
}

/// The result event a completion record stands for, as first published: rebuilt from
/// `command` for a record that keeps the outcome only.
pub fn completion_of(
    stored: StoredCompletion,
    command: &EffectCommand,
) -> Result<EffectCompletion, serde_json::Error> {
    match stored {
        StoredCompletion::Whole(whole) => Ok(whole),
        StoredCompletion::Outcome(o) => {
            let end = Final {
                result_type: o.result_type,
                payload: o.payload,
                error: o.error,
                attempts: o.attempts,
            };
            let mut event = result_event(command, &end, &o.timestamp);
            if !o.scoped_id {
                event.event_id = unscoped_result_event_id(&command.command_id);
            }
            Ok(EffectCompletion {
                event_id: event.event_id.clone(),
                result: RawJson::of(&event)?,
                recorded_at: o.timestamp,
            })
        }
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

    /// A redelivered command finds its record: the event rebuilt from the command and
    /// the kept outcome is, byte for byte, the one first published.
    #[test]
    fn the_kept_outcome_rebuilds_the_published_result_exactly() {
        let cmd = command("acme");
        for end in [
            Final {
                result_type: ResultType::Succeeded,
                payload: json!({"status": "charged", "n": [1, 2]}),
                error: None,
                attempts: 2,
            },
            Final {
                result_type: ResultType::Failed,
                payload: Value::Null,
                error: Some(ResultError {
                    kind: "declined".into(),
                    message: "card declined".into(),
                }),
                attempts: 1,
            },
        ] {
            let at = "2026-12-05T10:00:05.123Z";
            let published = RawJson::of(&result_event(&cmd, &end, at)).unwrap();
            let stored = StoredCompletion::Outcome(outcome(&end, at));
            let text = serde_json::to_string(&stored).unwrap();
            assert!(text.len() < 150, "{text}");
            let read = StoredCompletion::decode(text.as_bytes()).unwrap();
            let rebuilt = completion_of(read, &cmd).unwrap();
            assert_eq!(rebuilt.result.as_str(), published.as_str());
            assert_eq!(rebuilt.event_id, result_event_id("acme", "c-1"));
        }
        // A record written before ids were scoped rebuilds its result under the id it
        // went out with.
        let unscoped = r#"{"t":"succeeded","a":1,"at":"2026-11-01T10:00:00Z"}"#;
        let read = StoredCompletion::decode(unscoped.as_bytes()).unwrap();
        let rebuilt = completion_of(read, &cmd).unwrap();
        assert_eq!(rebuilt.event_id, unscoped_result_event_id("c-1"));
        let body: Value = serde_json::from_str(rebuilt.result.as_str()).unwrap();
        assert_eq!(body["event_id"], unscoped_result_event_id("c-1").as_str());
        // A record written before is read whole.
        let old = r#"{"event_id":"r-1","result":{"x":1},"recorded_at":"2026-11-01T10:00:00Z"}"#;
        let read = StoredCompletion::decode(old.as_bytes()).unwrap();
        let whole = completion_of(read, &cmd).unwrap();
        assert_eq!(
            (whole.event_id.as_str(), whole.result.as_str()),
            ("r-1", r#"{"x":1}"#)
        );
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
        assert_eq!(r.event_id, result_event_id("acme", "c-1"));
        assert_ne!(
            r.event_id,
            result_event(&command("globex"), &end, "t").event_id,
            "scoped by tenant"
        );
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
