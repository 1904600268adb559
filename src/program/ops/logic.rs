//! `$coalesce`, `$if`, `$switch`, `$and`, `$or`, `$not`.

use std::collections::BTreeMap;

use crate::program::ast::Node;
use crate::program::error::Fault;
use crate::program::eval::{type_fault, Eval};
use crate::program::value::Val;

/// Strict truthiness: `true`/`false`; `null` is false; anything else is a type fault at
/// `node`.
pub(crate) fn truthy(node: &Node, v: &Val) -> Result<bool, Box<Fault>> {
    match v {
        Val::Bool(b) => Ok(*b),
        Val::Null => Ok(false),
        other => Err(type_fault(
            node,
            "expected a boolean (or null) condition",
            other,
        )),
    }
}

pub(super) fn coalesce(ev: &mut Eval<'_, '_>, items: &[Node]) -> Result<Val, Box<Fault>> {
    for it in items {
        let v = ev.eval(it)?;
        if !v.is_null() {
            return Ok(v);
        }
    }
    Ok(Val::Null)
}

pub(super) fn if_(
    ev: &mut Eval<'_, '_>,
    node: &Node,
    c: &Node,
    t: &Node,
    e: &Node,
) -> Result<Val, Box<Fault>> {
    let cond = ev.eval(c)?;
    if truthy(node, &cond)? {
        ev.eval(t)
    } else {
        ev.eval(e)
    }
}

pub(super) fn switch(
    ev: &mut Eval<'_, '_>,
    node: &Node,
    on: &Node,
    cases: &BTreeMap<String, Node>,
    default: Option<&Node>,
) -> Result<Val, Box<Fault>> {
    let v = ev.eval(on)?;
    // A string (the usual case) is looked up as it is, without a copy.
    let text;
    let key: &str = match &v {
        Val::Str(s) => s,
        Val::Num(n) => {
            text = n.to_string();
            &text
        }
        Val::Bool(b) => {
            if *b {
                "true"
            } else {
                "false"
            }
        }
        other => {
            return Err(type_fault(
                node,
                "`on` must be a string, number or boolean",
                other,
            ))
        }
    };
    match cases.get(key).or(default) {
        Some(branch) => ev.eval(branch),
        None => Ok(Val::Null),
    }
}

/// `$and` (`all == true`) / `$or` (`all == false`), short-circuiting; the result is a
/// boolean.
pub(super) fn and_or(
    ev: &mut Eval<'_, '_>,
    node: &Node,
    items: &[Node],
    all: bool,
) -> Result<Val, Box<Fault>> {
    for it in items {
        let v = ev.eval(it)?;
        if truthy(node, &v)? != all {
            return Ok(Val::Bool(!all));
        }
    }
    Ok(Val::Bool(all))
}

pub(super) fn not(ev: &mut Eval<'_, '_>, node: &Node, a: &Node) -> Result<Val, Box<Fault>> {
    let v = ev.eval(a)?;
    Ok(Val::Bool(!truthy(node, &v)?))
}
