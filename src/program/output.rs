//! Checking and decoding a program's output value into a [`ProgramOutput`].

use serde_json::{Map, Value};

use super::error::{Fault, FaultKind};
use super::value::{json_str_len, Entry, Fields, Val, WalkError, MAX_VALUE_DEPTH};
use super::walk::describe;
use super::{CommandSpec, Limits, ProgramOutput, ScheduleSpec, ScheduleWhen, Status};
use crate::timefmt::parse_rfc3339_ms;

const FIELDS: [&str; 5] = ["cancel", "commands", "schedules", "state", "status"];

fn bad(node: impl Into<String>, message: impl Into<String>) -> Fault {
    Fault::new(node, "output", FaultKind::Output, message)
}

/// A short rendering of an (already size-bounded) value for messages.
fn show(v: &Val) -> String {
    describe(v)
}

fn size_fault(node: &str, e: WalkError, what: &str, limit_name: &str, limit: usize) -> Fault {
    match e {
        WalkError::TooDeep => bad(
            node,
            format!("{what} is nested deeper than {MAX_VALUE_DEPTH} levels"),
        ),
        _ => bad(
            node,
            format!("{what} exceeds {limit_name} ({limit} bytes serialised)"),
        ),
    }
}

/// Checks the shape and size of `out` and decodes it. `gas_used` is left at 0.
pub(crate) fn decode(out: &Val, limits: &Limits) -> Result<ProgramOutput, Fault> {
    let Val::Obj(map) = out else {
        return Err(bad(
            "output",
            format!("the output must be an object, got {}", describe(out)),
        ));
    };
    if let Some((k, _)) = map.iter().find(|(k, _)| !FIELDS.contains(&k.as_ref())) {
        return Err(bad(
            format!("output.{k}"),
            format!(
                "unknown output field `{k}` (expected one of {})",
                FIELDS.join(", ")
            ),
        ));
    }
    // Bytes of the whole output object, as `serde_json` would write it.
    let mut budget = limits.max_output_bytes;
    let overhead = 2
        + map.len().saturating_sub(1)
        + map.iter().map(|(k, _)| json_str_len(k) + 1).sum::<usize>();
    budget = budget.checked_sub(overhead).ok_or_else(|| {
        bad(
            "output",
            format!(
                "output exceeds max_output_bytes ({} bytes serialised)",
                limits.max_output_bytes
            ),
        )
    })?;

    let mut state = None;
    if let Some(v) = map.field("state").filter(|v| !v.is_null()) {
        let mut state_budget = limits.max_state_bytes;
        let json = v.to_json(&mut state_budget).map_err(|e| {
            size_fault(
                "output.state",
                e,
                "state",
                "max_state_bytes",
                limits.max_state_bytes,
            )
        })?;
        let used = limits.max_state_bytes - state_budget;
        budget = budget.checked_sub(used).ok_or_else(|| {
            bad(
                "output.state",
                format!(
                    "output exceeds max_output_bytes ({} bytes serialised)",
                    limits.max_output_bytes
                ),
            )
        })?;
        state = Some(json);
    } else if map.has("state") {
        budget = budget.saturating_sub(4);
    }

    // Every field is size-checked (in key order) before any is decoded, so a size fault
    // wins over a shape fault. Only what the output keeps (payloads, names) is converted.
    for (k, v) in map.iter().filter(|(k, _)| k.as_ref() != "state") {
        v.check_size(&mut budget).map_err(|e| {
            size_fault(
                &format!("output.{k}"),
                e,
                "output",
                "max_output_bytes",
                limits.max_output_bytes,
            )
        })?;
    }

    Ok(ProgramOutput {
        state,
        status: status(map.field("status"))?,
        commands: list(map.field("commands"), "output.commands", command)?,
        schedules: list(map.field("schedules"), "output.schedules", schedule)?,
        cancel: list(map.field("cancel"), "output.cancel", cancel)?,
        gas_used: 0,
    })
}

fn status(v: Option<&Val>) -> Result<Status, Fault> {
    match v {
        None | Some(Val::Null) => Ok(Status::Active),
        Some(Val::Str(s)) if &**s == "active" => Ok(Status::Active),
        Some(Val::Str(s)) if &**s == "completed" => Ok(Status::Completed),
        Some(Val::Str(s)) if &**s == "failed" => Ok(Status::Failed),
        Some(other) => Err(bad(
            "output.status",
            format!(
                "status must be \"active\", \"completed\" or \"failed\", got {}",
                show(other)
            ),
        )),
    }
}

/// A list field: null/absent → empty; null entries dropped; each other entry decoded.
fn list<T>(
    v: Option<&Val>,
    node: &str,
    item: fn(&Val, &str) -> Result<T, Fault>,
) -> Result<Vec<T>, Fault> {
    match v {
        None | Some(Val::Null) => Ok(Vec::new()),
        Some(Val::List(items)) => {
            let mut out = Vec::with_capacity(items.len());
            // Each item's node (`output.commands.0`) is written into one buffer, without
            // `format!`: most outputs have a few items, and every output is decoded.
            let mut at = String::with_capacity(node.len() + 4);
            at.push_str(node);
            at.push('.');
            let prefix = at.len();
            for (i, it) in items.iter().enumerate() {
                if !it.is_null() {
                    at.truncate(prefix);
                    crate::digits::push_zero_padded(&mut at, i as u64, 1);
                    out.push(item(it, &at)?);
                }
            }
            Ok(out)
        }
        Some(other) => Err(bad(node, format!("must be a list, got {}", show(other)))),
    }
}

fn cancel(v: &Val, node: &str) -> Result<String, Fault> {
    match v {
        Val::Str(s) if !s.is_empty() => Ok(String::from(&**s)),
        other => Err(bad(
            node,
            format!(
                "a timer name must be a non-empty string, got {}",
                show(other)
            ),
        )),
    }
}

/// The entries of an output object.
type Entries = [Entry];

fn object<'v>(v: &'v Val, node: &str, what: &str) -> Result<&'v Entries, Fault> {
    match v {
        Val::Obj(map) => Ok(map),
        _ => Err(bad(
            node,
            format!("{what} must be an object (or null), got {}", show(v)),
        )),
    }
}

fn check_keys(m: &Entries, node: &str, allowed: &[&str], what: &str) -> Result<(), Fault> {
    match m
        .iter()
        .map(|(k, _)| k)
        .find(|k| !allowed.contains(&k.as_ref()))
    {
        Some(k) => Err(bad(
            format!("{node}.{k}"),
            format!(
                "unknown field `{k}` in {what} (expected {})",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// A present (non-null) field; null counts as absent.
fn field<'v>(m: &'v Entries, key: &str) -> Option<&'v Val> {
    m.field(key).filter(|v| !v.is_null())
}

fn req_str(m: &Entries, key: &str, node: &str) -> Result<String, Fault> {
    req_text(m, key, node).map(str::to_string)
}

/// A required non-empty string field, borrowed.
fn req_text<'v>(m: &'v Entries, key: &str, node: &str) -> Result<&'v str, Fault> {
    match field(m, key) {
        None => Err(bad(
            format!("{node}.{key}"),
            format!("missing required field `{key}`"),
        )),
        Some(Val::Str(s)) if !s.is_empty() => Ok(s),
        Some(other) => Err(bad(
            format!("{node}.{key}"),
            format!("`{key}` must be a non-empty string, got {}", show(other)),
        )),
    }
}

fn opt_str(m: &Entries, key: &str, node: &str) -> Result<Option<String>, Fault> {
    match field(m, key) {
        None => Ok(None),
        Some(_) => req_str(m, key, node).map(Some),
    }
}

/// A command's or timer's payload as JSON (`{}` when absent). The whole output was
/// size-checked already, so the conversion cannot exceed a budget; a failure would be a
/// bug, reported as a fault rather than a panic.
fn payload(m: &Entries, node: &str) -> Result<Value, Fault> {
    match field(m, "payload") {
        None => Ok(Value::Object(Map::new())),
        Some(v) => v.to_json_checked().map_err(|e| {
            bad(
                format!("{node}.payload"),
                format!("internal: payload conversion failed after the size check ({e:?})"),
            )
        }),
    }
}

fn command(v: &Val, node: &str) -> Result<CommandSpec, Fault> {
    const AGGREGATE: [&str; 6] = [
        "to",
        "aggregate_type",
        "aggregate_id",
        "command_type",
        "payload",
        "command_id",
    ];
    const EFFECT: [&str; 4] = ["to", "effect", "payload", "command_id"];
    let m = object(v, node, "a command")?;
    match req_text(m, "to", node)? {
        "aggregate" => {
            check_keys(m, node, &AGGREGATE, "an aggregate command")?;
            Ok(CommandSpec::Aggregate {
                aggregate_type: req_str(m, "aggregate_type", node)?,
                aggregate_id: req_str(m, "aggregate_id", node)?,
                command_type: req_str(m, "command_type", node)?,
                payload: payload(m, node)?,
                command_id: opt_str(m, "command_id", node)?,
            })
        }
        "effect" => {
            check_keys(m, node, &EFFECT, "an effect command")?;
            Ok(CommandSpec::Effect {
                effect: req_str(m, "effect", node)?,
                payload: payload(m, node)?,
                command_id: opt_str(m, "command_id", node)?,
            })
        }
        other => Err(bad(
            format!("{node}.to"),
            format!("`to` must be \"aggregate\" or \"effect\", got {other:?}"),
        )),
    }
}

fn schedule(v: &Val, node: &str) -> Result<ScheduleSpec, Fault> {
    let m = object(v, node, "a schedule")?;
    check_keys(
        m,
        node,
        &["name", "after_ms", "at", "payload"],
        "a schedule",
    )?;
    let name = req_str(m, "name", node)?;
    let when = match (field(m, "after_ms"), field(m, "at")) {
        (Some(after), None) => {
            let ms = match after {
                Val::Num(n) => n.as_u64(),
                _ => None,
            }
            .and_then(|u| i64::try_from(u).ok())
            .ok_or_else(|| {
                bad(
                    format!("{node}.after_ms"),
                    format!(
                        "`after_ms` must be a non-negative integer (milliseconds), got {}",
                        show(after)
                    ),
                )
            })?;
            ScheduleWhen::AfterMs(ms)
        }
        (None, Some(at)) => {
            let at_node = format!("{node}.at");
            let text = match at {
                Val::Str(s) => Some(&**s),
                _ => None,
            }
            .ok_or_else(|| {
                bad(
                    &*at_node,
                    format!("`at` must be an RFC 3339 string, got {}", show(at)),
                )
            })?;
            ScheduleWhen::AtMs(parse_rfc3339_ms(text).map_err(|e| bad(&*at_node, e.to_string()))?)
        }
        (Some(_), Some(_)) => {
            return Err(bad(
                node,
                "a schedule needs exactly one of `after_ms` and `at`, got both",
            ))
        }
        (None, None) => {
            return Err(bad(
                node,
                "a schedule needs exactly one of `after_ms` and `at`, got neither",
            ))
        }
    };
    Ok(ScheduleSpec {
        name,
        when,
        payload: payload(m, node)?,
    })
}
