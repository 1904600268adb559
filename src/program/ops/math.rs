//! `$add`, `$sub`, `$mul`, `$div`, `$mod`, `$min`, `$max`, `$sum`.
//!
//! Integers (i64) stay integers with checked arithmetic; any float operand makes the
//! result a float, which must be finite.

use serde_json::Number;

use crate::program::ast::{ArithOp, Node};
use crate::program::error::{Fault, FaultKind};
use crate::program::eval::{fault, type_fault, Eval};
use crate::program::value::Val;

#[derive(Debug, Clone, Copy)]
enum Numeric {
    Int(i64),
    /// An integer above `i64::MAX` (only from inputs/literals).
    Big(u64),
    Float(f64),
}

fn numeric(node: &Node, v: &Val, what: &str) -> Result<Numeric, Box<Fault>> {
    match v {
        Val::Num(n) => Ok(if let Some(i) = n.as_i64() {
            Numeric::Int(i)
        } else if let Some(u) = n.as_u64() {
            Numeric::Big(u)
        } else {
            Numeric::Float(n.as_f64().unwrap_or(0.0))
        }),
        other => Err(type_fault(node, what, other)),
    }
}

fn as_f64(n: Numeric) -> f64 {
    match n {
        Numeric::Int(i) => i as f64,
        Numeric::Big(u) => u as f64,
        Numeric::Float(f) => f,
    }
}

fn arith_fault(node: &Node, message: impl Into<String>) -> Box<Fault> {
    fault(node, FaultKind::Arithmetic, message)
}

fn float_val(node: &Node, f: f64) -> Result<Val, Box<Fault>> {
    Number::from_f64(f)
        .map(Val::Num)
        .ok_or_else(|| arith_fault(node, "result is not a finite number"))
}

fn overflow(node: &Node) -> Box<Fault> {
    arith_fault(node, "integer overflow")
}

fn float_op(node: &Node, op: ArithOp, xs: &[f64]) -> Result<Val, Box<Fault>> {
    let r = match (op, xs) {
        (ArithOp::Add, _) => xs.iter().sum(),
        (ArithOp::Mul, _) => xs.iter().product(),
        (ArithOp::Min, [first, rest @ ..]) => rest.iter().fold(*first, |m, x| m.min(*x)),
        (ArithOp::Max, [first, rest @ ..]) => rest.iter().fold(*first, |m, x| m.max(*x)),
        (ArithOp::Sub, [a, b]) => a - b,
        (ArithOp::Div | ArithOp::Mod, [_, b]) if *b == 0.0 => {
            return Err(arith_fault(node, "division by zero"))
        }
        (ArithOp::Div, [a, b]) => a / b,
        (ArithOp::Mod, [a, b]) => a % b,
        _ => return Err(arith_fault(node, "internal: wrong operand count")),
    };
    float_val(node, r)
}

fn int_op(node: &Node, op: ArithOp, xs: &[i64]) -> Result<Val, Box<Fault>> {
    let r = match (op, xs) {
        (ArithOp::Add, _) => xs
            .iter()
            .try_fold(0i64, |acc, x| acc.checked_add(*x))
            .ok_or_else(|| overflow(node))?,
        (ArithOp::Mul, _) => xs
            .iter()
            .try_fold(1i64, |acc, x| acc.checked_mul(*x))
            .ok_or_else(|| overflow(node))?,
        (ArithOp::Min, [first, rest @ ..]) => rest.iter().fold(*first, |m, x| m.min(*x)),
        (ArithOp::Max, [first, rest @ ..]) => rest.iter().fold(*first, |m, x| m.max(*x)),
        (ArithOp::Sub, [a, b]) => a.checked_sub(*b).ok_or_else(|| overflow(node))?,
        (ArithOp::Div | ArithOp::Mod, [_, 0]) => return Err(arith_fault(node, "division by zero")),
        (ArithOp::Div, [a, b]) => {
            if a.wrapping_rem(*b) == 0 {
                a.checked_div(*b).ok_or_else(|| overflow(node))?
            } else {
                return float_val(node, *a as f64 / *b as f64);
            }
        }
        // `i64::MIN % -1` is mathematically 0; wrapping_rem gives exactly that.
        (ArithOp::Mod, [a, b]) => a.wrapping_rem(*b),
        _ => return Err(arith_fault(node, "internal: wrong operand count")),
    };
    Ok(Val::int(r))
}

fn apply(node: &Node, op: ArithOp, nums: &[Numeric]) -> Result<Val, Box<Fault>> {
    if nums.iter().any(|n| matches!(n, Numeric::Float(_))) {
        let xs: Vec<f64> = nums.iter().map(|n| as_f64(*n)).collect();
        return float_op(node, op, &xs);
    }
    let mut xs = Vec::with_capacity(nums.len());
    for n in nums {
        match n {
            Numeric::Int(i) => xs.push(*i),
            _ => {
                return Err(arith_fault(
                    node,
                    format!("integer {} is outside the signed 64-bit range", as_f64(*n)),
                ))
            }
        }
    }
    int_op(node, op, &xs)
}

pub(super) fn arith(
    ev: &mut Eval<'_, '_>,
    node: &Node,
    op: ArithOp,
    items: &[Node],
) -> Result<Val, Box<Fault>> {
    let mut nums = Vec::with_capacity(items.len());
    for it in items {
        let v = ev.eval(it)?;
        nums.push(numeric(node, &v, "expected a number")?);
    }
    apply(node, op, &nums)
}

/// `$sum`: the sum of a list of numbers (null counts as the empty list → 0).
pub(super) fn sum(ev: &mut Eval<'_, '_>, node: &Node, a: &Node) -> Result<Val, Box<Fault>> {
    let v = ev.eval(a)?;
    let items = match &v {
        Val::List(items) => items.clone(),
        Val::Null => return Ok(Val::int(0)),
        other => return Err(type_fault(node, "expected a list of numbers", other)),
    };
    if items.is_empty() {
        return Ok(Val::int(0));
    }
    let mut nums = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        ev.charge(node, 1)?;
        nums.push(numeric(
            node,
            it,
            &format!("element {i}: expected a number"),
        )?);
    }
    apply(node, ArithOp::Add, &nums)
}
