//! `$concat`, `$str`, `$lower`, `$upper`. String results are limited to
//! `Limits::max_string_bytes`; text work costs 1 gas per 64 bytes.

use std::sync::Arc;

use crate::program::ast::{Node, TextOp};
use crate::program::error::{Fault, FaultKind};
use crate::program::eval::{fault, type_fault, Eval};
use crate::program::gas::text_cost;
use crate::program::value::{Val, WalkError};
use crate::program::walk::write_json;

fn too_long(ev: &Eval<'_, '_>, node: &Node) -> Box<Fault> {
    fault(
        node,
        FaultKind::Limit,
        format!(
            "string result is longer than max_string_bytes ({})",
            ev.limits.max_string_bytes
        ),
    )
}

fn check_len(ev: &Eval<'_, '_>, node: &Node, len: usize) -> Result<(), Box<Fault>> {
    if len > ev.limits.max_string_bytes {
        Err(too_long(ev, node))
    } else {
        Ok(())
    }
}

/// One piece of a `$concat`: a shared string, or the text form of a number/boolean.
enum Piece {
    Shared(Arc<str>),
    Owned(String),
}

impl Piece {
    fn as_str(&self) -> &str {
        match self {
            Piece::Shared(s) => s,
            Piece::Owned(s) => s,
        }
    }
}

pub(super) fn concat(
    ev: &mut Eval<'_, '_>,
    node: &Node,
    items: &[Node],
) -> Result<Val, Box<Fault>> {
    let mut pieces = Vec::with_capacity(items.len());
    for it in items {
        pieces.push(match &ev.eval(it)? {
            Val::Str(s) => Piece::Shared(Arc::clone(s)),
            Val::Num(n) => Piece::Owned(n.to_string()),
            Val::Bool(b) => Piece::Owned(b.to_string()),
            other => {
                return Err(type_fault(
                    node,
                    "expected strings, numbers or booleans",
                    other,
                ))
            }
        });
    }
    let total: usize = pieces.iter().map(|p| p.as_str().len()).sum();
    check_len(ev, node, total)?;
    ev.charge(node, text_cost(total))?;
    let mut out = String::with_capacity(total);
    for p in &pieces {
        out.push_str(p.as_str());
    }
    Ok(Val::str(&out))
}

pub(super) fn text(
    ev: &mut Eval<'_, '_>,
    node: &Node,
    op: TextOp,
    a: &Node,
) -> Result<Val, Box<Fault>> {
    let v = ev.eval(a)?;
    match op {
        TextOp::Str => {
            if let Val::Str(_) = v {
                return Ok(v);
            }
            let mut out = String::new();
            let cap = ev.limits.max_string_bytes;
            match write_json(&v, &mut out, cap, Some(&mut ev.gas)) {
                Ok(()) => {}
                Err(WalkError::TooLarge) => return Err(too_long(ev, node)),
                Err(e) => return Err(ev.walk_fault(node, e, "operand")),
            }
            ev.charge(node, text_cost(out.len()))?;
            Ok(Val::str(&out))
        }
        TextOp::Lower | TextOp::Upper => {
            let Val::Str(s) = &v else {
                return Err(type_fault(node, "expected a string", &v));
            };
            ev.charge(node, text_cost(s.len()))?;
            let out = if op == TextOp::Lower {
                s.to_lowercase()
            } else {
                s.to_uppercase()
            };
            check_len(ev, node, out.len())?;
            Ok(Val::str(&out))
        }
    }
}
