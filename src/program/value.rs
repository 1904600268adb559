//! The evaluator's value type: JSON with cheap shared clones.
//!
//! Cloning a [`Val`] never copies a string, list or object — it bumps a reference count —
//! so a program that references the same large value many times (or builds a value out of
//! two references to another, repeatedly) stays linear in memory. Everything that *walks*
//! a value (equality, serialisation, conversion back to `serde_json`) is bounded by gas
//! or by a byte budget instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Number, Value};

/// Maximum nesting of run-time values (inputs, walked values, output). Matches the
/// recursion limit of `serde_json`'s parser, so everything a program outputs can be read
/// back.
pub(crate) const MAX_VALUE_DEPTH: usize = 128;

/// A JSON value with shared (reference-counted) strings, lists and objects.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Num(Number),
    Str(Arc<str>),
    List(Arc<[Val]>),
    Obj(Arc<BTreeMap<String, Val>>),
}

/// Why a walk over a value stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WalkError {
    /// The gas budget ran out.
    Gas,
    /// The byte budget ran out.
    TooLarge,
    /// The value is nested deeper than [`MAX_VALUE_DEPTH`].
    TooDeep,
}

impl Val {
    pub(crate) fn str(s: &str) -> Val {
        Val::Str(Arc::from(s))
    }

    pub(crate) fn list(items: Vec<Val>) -> Val {
        Val::List(Arc::from(items))
    }

    pub(crate) fn obj(map: BTreeMap<String, Val>) -> Val {
        Val::Obj(Arc::new(map))
    }

    pub(crate) fn int(i: i64) -> Val {
        Val::Num(Number::from(i))
    }

    /// The type name used in fault messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "boolean",
            Val::Num(_) => "number",
            Val::Str(_) => "string",
            Val::List(_) => "list",
            Val::Obj(_) => "object",
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    /// Converts a `serde_json` value (an input or a literal), refusing nesting deeper than
    /// [`MAX_VALUE_DEPTH`].
    pub(crate) fn from_json(v: &Value) -> Result<Val, WalkError> {
        from_json_at(v, 0)
    }

    /// Converts back to `serde_json`, spending `budget` bytes of the value's compact
    /// serialisation (exactly what `serde_json::to_vec` would produce). Fails with
    /// [`WalkError::TooLarge`] as soon as the budget is exceeded, so a value that is huge
    /// when expanded (shared sub-values repeated) is never materialised.
    pub(crate) fn to_json(&self, budget: &mut usize) -> Result<Value, WalkError> {
        to_json_at(self, budget, 0)
    }
}

fn from_json_at(v: &Value, depth: usize) -> Result<Val, WalkError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(WalkError::TooDeep);
    }
    Ok(match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => Val::Num(n.clone()),
        Value::String(s) => Val::str(s),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                out.push(from_json_at(it, depth + 1)?);
            }
            Val::list(out)
        }
        Value::Object(map) => {
            let mut out = BTreeMap::new();
            for (k, it) in map {
                out.insert(k.clone(), from_json_at(it, depth + 1)?);
            }
            Val::obj(out)
        }
    })
}

fn spend(budget: &mut usize, n: usize) -> Result<(), WalkError> {
    *budget = budget.checked_sub(n).ok_or(WalkError::TooLarge)?;
    Ok(())
}

fn to_json_at(v: &Val, budget: &mut usize, depth: usize) -> Result<Value, WalkError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(WalkError::TooDeep);
    }
    Ok(match v {
        Val::Null => {
            spend(budget, 4)?;
            Value::Null
        }
        Val::Bool(b) => {
            spend(budget, if *b { 4 } else { 5 })?;
            Value::Bool(*b)
        }
        Val::Num(n) => {
            spend(budget, n.to_string().len())?;
            Value::Number(n.clone())
        }
        Val::Str(s) => {
            spend(budget, json_str_len(s))?;
            Value::String(s.to_string())
        }
        Val::List(items) => {
            spend(budget, 2 + items.len().saturating_sub(1))?;
            let mut out = Vec::with_capacity(items.len().min(*budget));
            for it in items.iter() {
                out.push(to_json_at(it, budget, depth + 1)?);
            }
            Value::Array(out)
        }
        Val::Obj(map) => {
            spend(budget, 2 + map.len().saturating_sub(1))?;
            let mut out = Map::new();
            for (k, it) in map.iter() {
                spend(budget, json_str_len(k) + 1)?;
                out.insert(k.clone(), to_json_at(it, budget, depth + 1)?);
            }
            Value::Object(out)
        }
    })
}

/// The escape `serde_json` writes for a character, if it escapes it.
pub(crate) fn json_escape(ch: char) -> Option<&'static str> {
    const CONTROL: [&str; 32] = [
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
        "\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011",
        "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019",
        "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    ];
    match ch {
        '"' => Some("\\\""),
        '\\' => Some("\\\\"),
        c => CONTROL.get(c as usize).copied(),
    }
}

/// Length of a string serialised as a JSON string literal (with quotes), exactly as
/// `serde_json` writes it.
pub(crate) fn json_str_len(s: &str) -> usize {
    let extra: usize = s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x09 | 0x0a | 0x0c | 0x0d => 1,
            0..=0x1f => 5,
            _ => 0,
        })
        .sum();
    s.len() + extra + 2
}
