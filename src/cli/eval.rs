//! `runner eval`: one program transition, printed as JSON.

use std::path::Path;

use serde_json::{json, Value};

use crate::manifest::read_document;
use crate::program::{CommandSpec, Limits, Program, ProgramInput, ProgramOutput, ScheduleWhen};

pub fn eval(
    program: &Path,
    event: &Path,
    state: Option<&Path>,
    ctx: Option<&Path>,
    gas: u64,
) -> Result<(), String> {
    let read = |p: &Path| read_document(p).map_err(|e| format!("{}: {e}", p.display()));
    let source = read(program)?;
    let compiled = Program::compile(&source, &program.display().to_string(), &Limits::default())
        .map_err(|e| e.to_string())?;
    let event = read(event)?;
    let state = match state {
        Some(p) => read(p)?,
        None => Value::Null,
    };
    let ctx = match ctx {
        Some(p) => read(p)?,
        None => default_ctx(&event),
    };
    let input = ProgramInput {
        state: &state,
        event: &event,
        ctx: &ctx,
    };
    let output = compiled.eval(&input, gas).map_err(|f| f.to_string())?;
    let text = serde_json::to_string_pretty(&output_json(&output)).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// A ctx that looks like the pipeline's for this event.
fn default_ctx(event: &Value) -> Value {
    let kind = if event.get("result_type").is_some() {
        "result"
    } else if event.get("due_at").is_some() {
        "reminder"
    } else {
        "aggregate"
    };
    json!({
        "tenant_id": event.get("tenant_id").cloned().unwrap_or(json!("")),
        "saga": "eval",
        "correlation_id": event.get("aggregate_id").or_else(|| event.get("correlation_id")).cloned().unwrap_or(json!("eval")),
        "stream": "",
        "subject": "",
        "kind": kind,
        "seq": 0,
    })
}

pub fn output_json(o: &ProgramOutput) -> Value {
    let commands: Vec<Value> = o
        .commands
        .iter()
        .map(|c| match c {
            CommandSpec::Effect { effect, payload, command_id } => {
                json!({"to": "effect", "effect": effect, "payload": payload, "command_id": command_id})
            }
            CommandSpec::Aggregate { aggregate_type, aggregate_id, command_type, payload, command_id } => json!({
                "to": "aggregate", "aggregate_type": aggregate_type, "aggregate_id": aggregate_id,
                "command_type": command_type, "payload": payload, "command_id": command_id}),
        })
        .collect();
    let schedules: Vec<Value> = o
        .schedules
        .iter()
        .map(|s| match s.when {
            ScheduleWhen::AfterMs(ms) => {
                json!({"name": s.name, "after_ms": ms, "payload": s.payload})
            }
            ScheduleWhen::AtMs(ms) => json!({"name": s.name, "at_ms": ms, "payload": s.payload}),
        })
        .collect();
    json!({
        "status": o.status,
        "state": o.state,
        "commands": commands,
        "schedules": schedules,
        "cancel": o.cancel,
        "gas_used": o.gas_used,
    })
}
