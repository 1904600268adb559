//! `$merge`, `$set`, `$len`, `$map`, `$filter`, `$any`, `$all`.

use std::sync::Arc;

use crate::program::ast::{Loop, Node, Quant, Seg};
use crate::program::error::{Fault, FaultKind};
use crate::program::eval::{fault, type_fault, Eval};
use crate::program::gas::text_cost;
use crate::program::ops::truthy;
use crate::program::value::{Entry, Val};
use crate::program::walk::describe;

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A list operand; null counts as the empty list.
fn as_list(node: &Node, v: Val) -> Result<Arc<[Val]>, Box<Fault>> {
    match &v {
        Val::List(items) => Ok(Arc::clone(items)),
        Val::Null => Ok(Arc::from(Vec::new())),
        other => Err(type_fault(node, "expected a list (or null)", other)),
    }
}

/// `$merge`: shallow, right wins, null operands skipped; 1 gas per entry copied.
pub(super) fn merge(ev: &mut Eval<'_, '_>, node: &Node, items: &[Node]) -> Result<Val, Box<Fault>> {
    let mut out: Vec<Entry> = Vec::new();
    for it in items {
        match &ev.eval(it)? {
            Val::Null => {}
            Val::Obj(map) => {
                ev.charge(node, count(map.len()))?;
                out.extend(map.iter().cloned());
            }
            other => return Err(type_fault(node, "expected objects (or null)", other)),
        }
    }
    Ok(Val::obj(out))
}

/// `$set`: a copy of `in` with `value` at `path`; 1 gas per entry copied.
pub(super) fn set(
    ev: &mut Eval<'_, '_>,
    node: &Node,
    target: &Node,
    path: &[Seg],
    value: &Node,
) -> Result<Val, Box<Fault>> {
    let base = ev.eval(target)?;
    if !matches!(base, Val::Obj(_) | Val::List(_) | Val::Null) {
        return Err(type_fault(
            node,
            "`in` must be an object, a list or null",
            &base,
        ));
    }
    let value = ev.eval(value)?;
    set_in(ev, node, &base, path, value)
}

fn set_in(
    ev: &mut Eval<'_, '_>,
    node: &Node,
    cur: &Val,
    segs: &[Seg],
    value: Val,
) -> Result<Val, Box<Fault>> {
    let Some((seg, rest)) = segs.split_first() else {
        return Ok(value);
    };
    match cur {
        Val::Obj(_) | Val::Null => {
            let mut map: Vec<Entry> = match cur {
                Val::Obj(m) => {
                    ev.charge(node, count(m.len()))?;
                    m.to_vec()
                }
                _ => Vec::new(),
            };
            let at = map.binary_search_by(|(k, _)| k.as_ref().cmp(&seg.key));
            let child = at
                .ok()
                .and_then(|i| map.get(i))
                .map_or(Val::Null, |(_, v)| v.clone());
            let new = set_in(ev, node, &child, rest, value)?;
            match at {
                Ok(i) => {
                    if let Some(slot) = map.get_mut(i) {
                        slot.1 = new;
                    }
                }
                Err(i) => map.insert(i, (Arc::from(&*seg.key), new)),
            }
            Ok(Val::obj_sorted(map))
        }
        Val::List(items) => {
            let Some(i) = seg.index.filter(|i| *i < items.len()) else {
                return Err(fault(
                    node,
                    FaultKind::Path,
                    format!(
                        "cannot set `{}` in a list of {} elements",
                        seg.key,
                        items.len()
                    ),
                ));
            };
            ev.charge(node, count(items.len()))?;
            let mut out = items.to_vec();
            let child = out.get(i).cloned().unwrap_or(Val::Null);
            let new = set_in(ev, node, &child, rest, value)?;
            if let Some(slot) = out.get_mut(i) {
                *slot = new;
            }
            Ok(Val::list(out))
        }
        other => Err(fault(
            node,
            FaultKind::Path,
            format!("cannot set `{}` inside {}", seg.key, describe(other)),
        )),
    }
}

/// `$len`: characters of a string, elements of a list, entries of an object; null → 0.
pub(super) fn len(ev: &mut Eval<'_, '_>, node: &Node, a: &Node) -> Result<Val, Box<Fault>> {
    let n = match &ev.eval(a)? {
        Val::Str(s) => {
            ev.charge(node, text_cost(s.len()))?;
            s.chars().count()
        }
        Val::List(items) => items.len(),
        Val::Obj(map) => map.len(),
        Val::Null => 0,
        other => {
            return Err(type_fault(
                node,
                "expected a string, list, object or null",
                other,
            ))
        }
    };
    Ok(Val::int(i64::try_from(n).unwrap_or(i64::MAX)))
}

/// Evaluates a loop body with the element bound, charging 1 gas for the element.
fn visit(ev: &mut Eval<'_, '_>, node: &Node, l: &Loop, item: &Val) -> Result<Val, Box<Fault>> {
    ev.charge(node, 1)?;
    ev.with_var(node, l.slot, item.clone(), |ev| ev.eval(&l.body))
}

pub(super) fn map(ev: &mut Eval<'_, '_>, node: &Node, l: &Loop) -> Result<Val, Box<Fault>> {
    let over = ev.eval(&l.over)?;
    let items = as_list(node, over)?;
    let mut out = Vec::with_capacity(items.len());
    for it in items.iter() {
        out.push(visit(ev, node, l, it)?);
    }
    Ok(Val::list(out))
}

pub(super) fn filter(ev: &mut Eval<'_, '_>, node: &Node, l: &Loop) -> Result<Val, Box<Fault>> {
    let over = ev.eval(&l.over)?;
    let items = as_list(node, over)?;
    let mut out = Vec::new();
    for it in items.iter() {
        let keep = visit(ev, node, l, it)?;
        if truthy(node, &keep)? {
            out.push(it.clone());
        }
    }
    Ok(Val::list(out))
}

/// `$any` (`any == true`) / `$all`, short-circuiting, in either form.
pub(super) fn quant(
    ev: &mut Eval<'_, '_>,
    node: &Node,
    q: &Quant,
    any: bool,
) -> Result<Val, Box<Fault>> {
    match q {
        Quant::Loop(l) => {
            let over = ev.eval(&l.over)?;
            for it in as_list(node, over)?.iter() {
                let r = visit(ev, node, l, it)?;
                if truthy(node, &r)? == any {
                    return Ok(Val::Bool(any));
                }
            }
        }
        Quant::List(a) => {
            let v = ev.eval(a)?;
            for it in as_list(node, v)?.iter() {
                ev.charge(node, 1)?;
                if truthy(node, it)? == any {
                    return Ok(Val::Bool(any));
                }
            }
        }
    }
    Ok(Val::Bool(!any))
}
