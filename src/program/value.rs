//! The evaluator's value type: JSON with cheap shared clones.
//!
//! Cloning a [`Val`] never copies a string, list or object — it bumps a reference count —
//! so a program that references the same large value many times (or builds a value out of
//! two references to another, repeatedly) stays linear in memory. Everything that *walks*
//! a value (equality, serialisation, conversion back to `serde_json`) is bounded by gas
//! or by a byte budget instead.

use std::fmt::{self, Write as _};
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
    /// Entries sorted by key in byte order (the order `serde_json` writes an object's
    /// keys in), each key once: found by binary search, and built and shared without
    /// the allocations of a map (its keys are the program's own, shared, where it names
    /// them).
    Obj(Arc<[Entry]>),
}

/// One entry of an object.
pub(crate) type Entry = (Arc<str>, Val);

/// Reading an object's entries by key.
pub(crate) trait Fields {
    /// The value at `key`.
    fn field(&self, key: &str) -> Option<&Val>;
    /// Whether `key` is present.
    fn has(&self, key: &str) -> bool {
        self.field(key).is_some()
    }
}

impl Fields for [Entry] {
    fn field(&self, key: &str) -> Option<&Val> {
        self.binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .and_then(|i| self.get(i))
            .map(|(_, v)| v)
    }
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

    /// An object of entries already sorted by key, each key once (a compiled object's
    /// fields, a walk over another object's entries).
    pub(crate) fn obj_sorted(entries: Vec<Entry>) -> Val {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        Val::Obj(Arc::from(entries))
    }

    /// An object of entries in any order; of entries with the same key the last wins.
    pub(crate) fn obj(mut entries: Vec<Entry>) -> Val {
        // A stable sort keeps equal keys in their order, so the last of each run wins.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
        for e in entries {
            match out.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => out.push(e),
            }
        }
        Val::Obj(Arc::from(out))
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

    /// Converts a value whose size was already checked (by [`Val::check_size`] or as
    /// part of a larger value): the same result as [`Val::to_json`] with a budget that
    /// cannot run out, without counting bytes again.
    pub(crate) fn to_json_checked(&self) -> Result<Value, WalkError> {
        convert_at(self, 0)
    }

    /// Spends `budget` exactly as [`Val::to_json`] would, failing where it would fail,
    /// without building the `serde_json` value: for outputs that are checked whole but
    /// converted only in part.
    pub(crate) fn check_size(&self, budget: &mut usize) -> Result<(), WalkError> {
        check_size_at(self, budget, 0)
    }
}

/// Drops a value without recursion. Programs can build values far deeper than
/// [`MAX_VALUE_DEPTH`] (a chain of lets, each `$set` nesting the previous one
/// `max_depth` levels down); they are refused when walked or output, but the derived,
/// recursive drop of such a value would overflow the stack. So a container this value
/// is the last owner of hands its container children to a work list instead of
/// dropping them inside its own drop.
impl Drop for Val {
    fn drop(&mut self) {
        let mut pending = Vec::new();
        take_children(self, &mut pending);
        while let Some(mut v) = pending.pop() {
            take_children(&mut v, &mut pending);
            // `v` now holds no containers of its own: dropping it does not recurse.
        }
    }
}

/// Moves the container children of `v` into `pending` when `v` is their only owner (a
/// shared container is only un-referenced, which does not recurse).
fn take_children(v: &mut Val, pending: &mut Vec<Val>) {
    let mut take = |child: &mut Val| {
        if matches!(child, Val::List(_) | Val::Obj(_)) {
            pending.push(std::mem::replace(child, Val::Null));
        }
    };
    match v {
        Val::List(items) => {
            if let Some(items) = Arc::get_mut(items) {
                items.iter_mut().for_each(&mut take);
            }
        }
        Val::Obj(map) => {
            if let Some(map) = Arc::get_mut(map) {
                map.iter_mut().for_each(|(_, v)| take(v));
            }
        }
        _ => {}
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
            // `serde_json`'s map iterates in key order, each key once.
            let mut out = Vec::with_capacity(map.len());
            for (k, it) in map {
                out.push((Arc::from(k.as_str()), from_json_at(it, depth + 1)?));
            }
            Val::obj_sorted(out)
        }
    })
}

fn spend(budget: &mut usize, n: usize) -> Result<(), WalkError> {
    *budget = budget.checked_sub(n).ok_or(WalkError::TooLarge)?;
    Ok(())
}

/// Bytes a node writes itself in compact JSON, not counting its children (nor, for an
/// object, its keys and colons, which are spent entry by entry).
fn own_bytes(v: &Val) -> usize {
    match v {
        Val::Null => 4,
        Val::Bool(b) => {
            if *b {
                4
            } else {
                5
            }
        }
        Val::Num(n) => number_len(n),
        Val::Str(s) => json_str_len(s),
        Val::List(items) => 2 + items.len().saturating_sub(1),
        Val::Obj(map) => 2 + map.len().saturating_sub(1),
    }
}

/// Length of a number as `serde_json` writes it, without building the string.
fn number_len(n: &Number) -> usize {
    // Integers (the usual case) are plain decimal digits, with a sign when negative.
    if let Some(u) = n.as_u64() {
        return decimal_digits(u);
    }
    if let Some(i) = n.as_i64() {
        return 1 + decimal_digits(i.unsigned_abs());
    }
    struct Count(usize);
    impl fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing into a counter cannot fail.
    let _ = write!(count, "{n}");
    count.0
}

fn decimal_digits(u: u64) -> usize {
    u.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Walks like [`to_json_at`], spending the same bytes in the same order (so it fails
/// exactly where the conversion would), but builds nothing.
fn check_size_at(v: &Val, budget: &mut usize, depth: usize) -> Result<(), WalkError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(WalkError::TooDeep);
    }
    spend(budget, own_bytes(v))?;
    match v {
        Val::List(items) => {
            for it in items.iter() {
                check_size_at(it, budget, depth + 1)?;
            }
        }
        Val::Obj(map) => {
            for (k, it) in map.iter() {
                spend(budget, json_str_len(k) + 1)?;
                check_size_at(it, budget, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// [`to_json_at`] without the byte budget (the depth is still bounded).
fn convert_at(v: &Val, depth: usize) -> Result<Value, WalkError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(WalkError::TooDeep);
    }
    Ok(match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => Value::Number(n.clone()),
        Val::Str(s) => Value::String(String::from(&**s)),
        Val::List(items) => Value::Array(
            items
                .iter()
                .map(|it| convert_at(it, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Val::Obj(map) => Value::Object(
            map.iter()
                .map(|(k, it)| Ok((String::from(&**k), convert_at(it, depth + 1)?)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn to_json_at(v: &Val, budget: &mut usize, depth: usize) -> Result<Value, WalkError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(WalkError::TooDeep);
    }
    spend(budget, own_bytes(v))?;
    Ok(match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => Value::Number(n.clone()),
        Val::Str(s) => Value::String(String::from(&**s)),
        Val::List(items) => {
            let mut out = Vec::with_capacity(items.len().min(*budget));
            for it in items.iter() {
                out.push(to_json_at(it, budget, depth + 1)?);
            }
            Value::Array(out)
        }
        Val::Obj(map) => {
            // Entries come in key order: collected first, the map is built in one pass.
            let mut out = Vec::with_capacity(map.len());
            for (k, it) in map.iter() {
                spend(budget, json_str_len(k) + 1)?;
                out.push((String::from(&**k), to_json_at(it, budget, depth + 1)?));
            }
            Value::Object(Map::from_iter(out))
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
    // Most strings need no escape: one cheap scan says so.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        return s.len() + 2;
    }
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
