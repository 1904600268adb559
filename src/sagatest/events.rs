//! A step's message: its envelope with the boilerplate filled in, and its subject.
//!
//! Defaults come from what the Runner itself would have produced, so a case reads like
//! the conversation it tests: a result answers the case's latest effect command (built
//! by the effect pool's own [`result_event`]), a reminder is the one the scheduler
//! would publish for a pending timer ([`crate::timers::reminder`]). Every field the
//! step writes replaces the default whole.

use serde_json::{Map, Value};

use super::format::{Case, Step};
use crate::effects::attempts::Final;
use crate::effects::result::result_event;
use crate::envelope::{EffectCommand, EnvelopeKind, ResultType};
use crate::keys;
use crate::settings::StreamSettings;
use crate::store::{ScheduleItem, Store, StoreError};
use crate::timefmt::{format_rfc3339_ms, parse_rfc3339_ms};
use crate::types::{CorrelationId, TenantId};

/// Why a step's message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The step leaves out something no default can supply: the case fails with this.
    #[error("{0}")]
    Step(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the case has produced so far that later steps' defaults draw on.
pub struct History<'a> {
    pub case: &'a Case,
    pub streams: &'a StreamSettings,
    pub store: &'a Store,
    /// Effect commands of earlier steps, oldest first.
    pub commands: &'a [EffectCommand],
    /// The case's instance, once known (`given`, or the first one a step reached).
    pub instance: Option<&'a CorrelationId>,
}

/// A step's message, ready for `decode`.
#[derive(Debug)]
pub struct Built {
    pub body: Value,
    pub stream: String,
    pub subject: String,
    /// What the report calls the step.
    pub label: String,
    /// The `schedule:` key of the pending timer this reminder fires: out of the due
    /// index before the reminder runs, as the scheduler takes a timer out once its
    /// reminder is published (the reminder's transition then consumes it).
    pub fired_timer: Option<String>,
}

/// Builds step `n` (1-based). `now_ms` is when the step happens unless its envelope
/// says otherwise.
pub fn build(step: &Step, n: usize, now_ms: i64, h: &History<'_>) -> Result<Built, BuildError> {
    let now = format_rfc3339_ms(now_ms)
        .map_err(|e| BuildError::Step(format!("the step's time is out of range: {e}")))?;
    let tenant = h.case.tenant.as_str();
    let (base, fired_timer) = match step.kind {
        EnvelopeKind::Aggregate => (aggregate_base(n, tenant, &now), None),
        EnvelopeKind::Result => (result_base(step, n, &now, h)?, None),
        EnvelopeKind::Reminder => reminder_base(step, h)?,
    };
    let mut body = base;
    body.extend(step.fields.clone());
    let subject = match &step.subject {
        Some(s) => s.clone(),
        None => subject(step.kind, &body, h.streams)?,
    };
    let stream = match step.kind {
        EnvelopeKind::Aggregate => h.streams.aggregate_events.clone(),
        EnvelopeKind::Result | EnvelopeKind::Reminder => h.streams.workflow_events.clone(),
    };
    let label = step.name.clone().unwrap_or_else(|| label(step.kind, &body));
    Ok(Built {
        body: Value::Object(body),
        stream,
        subject,
        label,
        fired_timer,
    })
}

fn aggregate_base(n: usize, tenant: &str, now: &str) -> Map<String, Value> {
    let mut base = Map::new();
    base.insert("event_id".into(), format!("step-{n}").into());
    base.insert("tenant_id".into(), tenant.into());
    base.insert("occurred_at".into(), now.into());
    base
}

/// The result of the command the step names (`command_id`), or else of the latest
/// effect command (of the step's `effect_name`, when it has one).
fn result_base(
    step: &Step,
    n: usize,
    now: &str,
    h: &History<'_>,
) -> Result<Map<String, Value>, BuildError> {
    let text = |key: &str| step.fields.get(key).and_then(Value::as_str);
    let command = match (text("command_id"), text("effect_name")) {
        (Some(id), _) => h.commands.iter().rev().find(|c| c.command_id == id),
        (None, Some(effect)) => h.commands.iter().rev().find(|c| c.effect_name == effect),
        (None, None) => h.commands.last(),
    };
    let Some(command) = command else {
        let has = |k: &str| step.fields.contains_key(k);
        if !(has("effect_name") && has("command_id")) {
            return Err(BuildError::Step(
                "a result step with no earlier effect command to answer must give \
                 `effect_name`, `command_id` and (for routing) `metadata.correlation_id`"
                    .into(),
            ));
        }
        let mut base = Map::new();
        let id = text("command_id").map_or_else(
            || format!("step-{n}"),
            |c| crate::relay::verdict::result_event_id(h.case.tenant.as_str(), c),
        );
        base.insert("event_id".into(), id.into());
        base.insert("tenant_id".into(), h.case.tenant.as_str().into());
        base.insert("payload".into(), Value::Object(Map::new()));
        base.insert("error".into(), Value::Null);
        base.insert("attempts".into(), 1.into());
        base.insert("timestamp".into(), now.into());
        return Ok(base);
    };
    // The step's `result_type` replaces this one; `succeeded` only fills the field.
    let end = Final {
        result_type: ResultType::Succeeded,
        payload: Value::Null,
        error: None,
        attempts: 1,
    };
    match serde_json::to_value(result_event(command, &end, now)) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(BuildError::Step("cannot build the result envelope".into())),
    }
}

/// The reminder of the pending timer the step names (`name`, default: the instance's
/// earliest), or, with no such timer, one built from the step's own `due_at`.
fn reminder_base(
    step: &Step,
    h: &History<'_>,
) -> Result<(Map<String, Value>, Option<String>), BuildError> {
    let text = |key: &str| step.fields.get(key).and_then(Value::as_str);
    let tenant = &h.case.tenant;
    let correlation = match text("correlation_id") {
        Some(c) => Some(
            CorrelationId::new(c).map_err(|e| BuildError::Step(format!("correlation_id: {e}")))?,
        ),
        None => h.instance.cloned(),
    };
    let Some(correlation) = correlation else {
        return Err(BuildError::Step(
            "a reminder step before any instance exists must give `correlation_id`".into(),
        ));
    };
    let name = text("name");
    let pending = h
        .store
        .instance_schedules(tenant, &h.case.saga, &correlation)?
        .into_iter()
        .filter(|t| name.is_none_or(|n| t.name == n))
        .min_by_key(|t| t.due_at_ms);
    let (item, fired) = match pending {
        Some(item) => {
            let key = keys::schedule(
                tenant,
                &item.saga,
                &item.correlation,
                item.due_at_ms,
                &item.name,
            );
            (item, Some(key))
        }
        None => (own_timer(step, tenant, h, correlation, name)?, None),
    };
    match serde_json::to_value(crate::timers::reminder(&item)) {
        Ok(Value::Object(map)) => Ok((map, fired)),
        _ => Err(BuildError::Step(
            "cannot build the reminder envelope".into(),
        )),
    }
}

/// A timer that is not pending (never set, cancelled, fired already): the step must say
/// which and when, as a late or stray reminder would.
fn own_timer(
    step: &Step,
    tenant: &TenantId,
    h: &History<'_>,
    correlation: CorrelationId,
    name: Option<&str>,
) -> Result<ScheduleItem, BuildError> {
    let (Some(name), Some(due_at)) = (name, step.fields.get("due_at").and_then(Value::as_str))
    else {
        return Err(BuildError::Step(format!(
            "no pending timer{} for instance {correlation:?}; to send a reminder anyway, \
             give its `name` and `due_at`",
            name.map(|n| format!(" named {n:?}")).unwrap_or_default()
        )));
    };
    let due_at_ms = parse_rfc3339_ms(due_at)
        .map_err(|e| BuildError::Step(format!("due_at {due_at:?} is not RFC 3339: {e}")))?;
    Ok(ScheduleItem {
        tenant: tenant.clone(),
        saga: h.case.saga.clone(),
        correlation,
        name: name.to_string(),
        due_at_ms,
        payload: Value::Object(Map::new()),
        metadata: Map::new(),
    })
}

/// The subject the envelope would be published on (docs/contracts.md §1).
fn subject(
    kind: EnvelopeKind,
    body: &Map<String, Value>,
    streams: &StreamSettings,
) -> Result<String, BuildError> {
    let field = |key: &str| {
        body.get(key).and_then(Value::as_str).ok_or_else(|| {
            BuildError::Step(format!(
                "cannot build the subject without `{key}`; give it, or the step's `subject`"
            ))
        })
    };
    let tenant = match body.get("tenant_id").and_then(Value::as_str) {
        None | Some("") => TenantId::SINGLE_TOKEN,
        Some(t) => t,
    };
    Ok(match kind {
        EnvelopeKind::Aggregate => format!(
            "{}.{tenant}.{}.{}",
            streams.aggregate_prefix,
            field("aggregate_type")?,
            field("event_type")?
        ),
        EnvelopeKind::Result => {
            format!(
                "{}.{tenant}.{}",
                streams.result_prefix,
                field("effect_name")?
            )
        }
        EnvelopeKind::Reminder => {
            format!("{}.{tenant}.{}", streams.timer_prefix, field("saga_name")?)
        }
    })
}

fn label(kind: EnvelopeKind, body: &Map<String, Value>) -> String {
    let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or("?");
    match kind {
        EnvelopeKind::Aggregate => {
            format!("aggregate {} {}", text("event_type"), text("aggregate_id"))
        }
        EnvelopeKind::Result => format!("result {} {}", text("effect_name"), text("result_type")),
        EnvelopeKind::Reminder => format!("reminder {}", text("name")),
    }
}
