//! Walks over values: numeric ordering, deep equality, canonical serialisation and the
//! short rendering used in fault messages. Walks charge gas per node and respect byte
//! budgets, so shared sub-values cannot make them exponential.

use std::cmp::Ordering;

use serde_json::Number;

use super::gas::{text_cost, Gas};
use super::value::{json_escape, Val, WalkError, MAX_VALUE_DEPTH};

/// Longest rendering of a value in a fault message, in bytes.
pub(crate) const RENDER_MAX: usize = 120;

enum Exact {
    Int(i128),
    Float(f64),
}

fn exact(n: &Number) -> Exact {
    if let Some(i) = n.as_i64() {
        Exact::Int(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        Exact::Int(i128::from(u))
    } else {
        Exact::Float(n.as_f64().unwrap_or(0.0))
    }
}

/// Compares an integer with a float exactly (no rounding of the integer).
fn cmp_int_float(i: i128, f: f64) -> Ordering {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    if f >= TWO_64 {
        return Ordering::Less;
    }
    if f < -TWO_63 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    // |t| < 2^64, so the conversion is exact.
    match i.cmp(&(t as i128)) {
        Ordering::Equal => {
            let frac = f - t;
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

/// Orders two JSON numbers by value (`1 == 1.0`), exactly across integer and float.
pub(crate) fn num_cmp(a: &Number, b: &Number) -> Ordering {
    match (exact(a), exact(b)) {
        (Exact::Int(x), Exact::Int(y)) => x.cmp(&y),
        (Exact::Int(x), Exact::Float(y)) => cmp_int_float(x, y),
        (Exact::Float(x), Exact::Int(y)) => cmp_int_float(y, x).reverse(),
        (Exact::Float(x), Exact::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// Deep JSON equality (numbers by value), 1 gas per node pair visited plus text cost.
pub(crate) fn deep_eq(a: &Val, b: &Val, gas: &mut Gas) -> Result<bool, WalkError> {
    eq_at(a, b, gas, 0)
}

fn eq_at(a: &Val, b: &Val, gas: &mut Gas, depth: usize) -> Result<bool, WalkError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(WalkError::TooDeep);
    }
    gas.charge(1).map_err(|_| WalkError::Gas)?;
    Ok(match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Num(x), Val::Num(y)) => num_cmp(x, y) == Ordering::Equal,
        (Val::Str(x), Val::Str(y)) => {
            gas.charge(text_cost(x.len().min(y.len())))
                .map_err(|_| WalkError::Gas)?;
            x == y
        }
        (Val::List(x), Val::List(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (p, q) in x.iter().zip(y.iter()) {
                if !eq_at(p, q, gas, depth + 1)? {
                    return Ok(false);
                }
            }
            true
        }
        (Val::Obj(x), Val::Obj(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for ((kp, p), (kq, q)) in x.iter().zip(y.iter()) {
                if kp != kq || !eq_at(p, q, gas, depth + 1)? {
                    return Ok(false);
                }
            }
            true
        }
        _ => false,
    })
}

/// Writes canonical compact JSON (sorted keys, `serde_json`'s exact formatting).
struct Writer<'a> {
    out: &'a mut String,
    cap: usize,
    gas: Option<&'a mut Gas>,
}

impl Writer<'_> {
    fn push(&mut self, s: &str) -> Result<(), WalkError> {
        if self.out.len() + s.len() > self.cap {
            let room = self.cap.saturating_sub(self.out.len());
            let mut cut = room.min(s.len());
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.out.push_str(&s[..cut]);
            return Err(WalkError::TooLarge);
        }
        self.out.push_str(s);
        Ok(())
    }

    fn string(&mut self, s: &str) -> Result<(), WalkError> {
        self.push("\"")?;
        let mut start = 0;
        for (i, ch) in s.char_indices() {
            if let Some(esc) = json_escape(ch) {
                self.push(&s[start..i])?;
                self.push(esc)?;
                start = i + ch.len_utf8();
            }
        }
        self.push(&s[start..])?;
        self.push("\"")
    }

    fn value(&mut self, v: &Val, depth: usize) -> Result<(), WalkError> {
        if depth > MAX_VALUE_DEPTH {
            return Err(WalkError::TooDeep);
        }
        if let Some(gas) = self.gas.as_deref_mut() {
            gas.charge(1).map_err(|_| WalkError::Gas)?;
        }
        match v {
            Val::Null => self.push("null"),
            Val::Bool(true) => self.push("true"),
            Val::Bool(false) => self.push("false"),
            Val::Num(n) => self.push(&n.to_string()),
            Val::Str(s) => self.string(s),
            Val::List(items) => {
                self.push("[")?;
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        self.push(",")?;
                    }
                    self.value(it, depth + 1)?;
                }
                self.push("]")
            }
            Val::Obj(map) => {
                self.push("{")?;
                for (i, (k, it)) in map.iter().enumerate() {
                    if i > 0 {
                        self.push(",")?;
                    }
                    self.string(k)?;
                    self.push(":")?;
                    self.value(it, depth + 1)?;
                }
                self.push("}")
            }
        }
    }
}

/// Appends the canonical compact JSON of `v` to `out` (byte-identical to
/// `serde_json::to_string` of the same value), failing once `out` would exceed `cap`
/// bytes. With a gas meter, charges 1 per node written (text cost is the caller's).
pub(crate) fn write_json(
    v: &Val,
    out: &mut String,
    cap: usize,
    gas: Option<&mut Gas>,
) -> Result<(), WalkError> {
    Writer { out, cap, gas }.value(v, 0)
}

/// A short rendering of a value for fault messages: canonical JSON, cut to at most
/// [`RENDER_MAX`] bytes (ending in `…` when cut). Never walks more than it shows.
pub(crate) fn render(v: &Val) -> String {
    let mut out = String::new();
    if write_json(v, &mut out, RENDER_MAX, None).is_err() {
        let mut cut = out.len().min(RENDER_MAX - '…'.len_utf8());
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// `<type> <rendering>`, e.g. `string "abc"`, for fault messages.
pub(crate) fn describe(v: &Val) -> String {
    format!("{} {}", v.type_name(), render(v))
}
