//! Operation implementations, one family per file. The op's base cost (1 gas) has been
//! charged by the evaluator before these run.

mod collections;
mod compare;
mod logic;
mod math;
mod misc;
mod text;

use super::ast::{Node, Op};
use super::error::Fault;
use super::eval::Eval;
use super::value::Val;

pub(crate) use logic::truthy;
#[cfg(test)]
pub(crate) use misc::ID_NAMESPACE;

/// Evaluates the operation `op` of `node`.
pub(crate) fn eval_op(ev: &mut Eval<'_, '_>, node: &Node, op: &Op) -> Result<Val, Box<Fault>> {
    match op {
        Op::Lit(v) => Ok(v.clone()),
        Op::Get(p) => ev.get(node, p),
        Op::Exists(p) => ev.exists(node, p),
        Op::Coalesce(items) => logic::coalesce(ev, items),
        Op::If(c, t, e) => logic::if_(ev, node, c, t, e),
        Op::Switch { on, cases, default } => logic::switch(ev, node, on, cases, default.as_ref()),
        Op::And(items) => logic::and_or(ev, node, items, true),
        Op::Or(items) => logic::and_or(ev, node, items, false),
        Op::Not(a) => logic::not(ev, node, a),
        Op::Compare(c, a, b) => compare::compare(ev, node, *c, a, b),
        Op::Arith(a, items) => math::arith(ev, node, *a, items),
        Op::Sum(a) => math::sum(ev, node, a),
        Op::Concat(items) => text::concat(ev, node, items),
        Op::Text(t, a) => text::text(ev, node, *t, a),
        Op::Merge(items) => collections::merge(ev, node, items),
        Op::Set {
            target,
            path,
            value,
        } => collections::set(ev, node, target, path, value),
        Op::Len(a) => collections::len(ev, node, a),
        Op::Map(l) => collections::map(ev, node, l),
        Op::Filter(l) => collections::filter(ev, node, l),
        Op::Any(q) => collections::quant(ev, node, q, true),
        Op::All(q) => collections::quant(ev, node, q, false),
        Op::TimeAdd { at, ms } => misc::time_add(ev, node, at, ms),
        Op::Id(items) => misc::id(ev, node, items),
    }
}
