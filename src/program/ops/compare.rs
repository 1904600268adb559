//! `$eq`, `$ne` (deep, numbers by value) and `$lt`, `$lte`, `$gt`, `$gte` (two numbers or
//! two strings).

use std::cmp::Ordering;

use crate::program::ast::{CmpOp, Node};
use crate::program::error::{Fault, FaultKind};
use crate::program::eval::{fault, Eval};
use crate::program::gas::text_cost;
use crate::program::value::Val;
use crate::program::walk::{deep_eq, describe, num_cmp};

pub(super) fn compare(
    ev: &mut Eval<'_, '_>,
    node: &Node,
    op: CmpOp,
    a: &Node,
    b: &Node,
) -> Result<Val, Box<Fault>> {
    let x = ev.eval(a)?;
    let y = ev.eval(b)?;
    if matches!(op, CmpOp::Eq | CmpOp::Ne) {
        let eq = deep_eq(&x, &y, &mut ev.gas).map_err(|e| ev.walk_fault(node, e, "operand"))?;
        return Ok(Val::Bool(eq == (op == CmpOp::Eq)));
    }
    let ord = match (&x, &y) {
        (Val::Num(p), Val::Num(q)) => num_cmp(p, q),
        (Val::Str(p), Val::Str(q)) => {
            ev.charge(node, text_cost(p.len().min(q.len())))?;
            p.as_bytes().cmp(q.as_bytes())
        }
        _ => {
            return Err(fault(
                node,
                FaultKind::Type,
                format!(
                    "needs two numbers or two strings, got {} and {}",
                    describe(&x),
                    describe(&y)
                ),
            ))
        }
    };
    Ok(Val::Bool(match op {
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Lte => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    }))
}
