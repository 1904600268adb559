//! `$time_add` and `$id`.

use uuid::Uuid;

use crate::program::ast::Node;
use crate::program::error::{Fault, FaultKind};
use crate::program::eval::{fault, type_fault, Eval};
use crate::program::gas::text_cost;
use crate::program::value::{Val, WalkError};
use crate::program::walk::write_json;
use crate::timefmt::{format_rfc3339_ms, parse_rfc3339_ms};

/// The UUIDv5 namespace of `$id`: `b8f40854-844f-5d08-830b-105d13bedda9`, itself
/// UUIDv5(NAMESPACE_URL, "urn:runner:program:id"). Never change it: ids derived by
/// running programs are persisted.
pub(crate) const ID_NAMESPACE: Uuid = Uuid::from_u128(0xb8f4_0854_844f_5d08_830b_105d_13be_dda9);

pub(super) fn time_add(
    ev: &mut Eval<'_, '_>,
    node: &Node,
    at: &Node,
    ms: &Node,
) -> Result<Val, Box<Fault>> {
    let at = ev.eval(at)?;
    let Val::Str(text) = &at else {
        return Err(type_fault(node, "`at` must be an RFC 3339 string", &at));
    };
    let base = parse_rfc3339_ms(text).map_err(|e| fault(node, FaultKind::Type, e.to_string()))?;
    let delta = ev.eval(ms)?;
    let Some(delta) = (match &delta {
        Val::Num(n) => n.as_i64(),
        _ => None,
    }) else {
        return Err(type_fault(node, "`ms` must be an integer", &delta));
    };
    let sum = base
        .checked_add(delta)
        .ok_or_else(|| fault(node, FaultKind::Arithmetic, "time overflow"))?;
    let out =
        format_rfc3339_ms(sum).map_err(|e| fault(node, FaultKind::Arithmetic, e.to_string()))?;
    Ok(Val::str(&out))
}

pub(super) fn id(ev: &mut Eval<'_, '_>, node: &Node, items: &[Node]) -> Result<Val, Box<Fault>> {
    let mut parts = Vec::with_capacity(items.len());
    for it in items {
        parts.push(ev.eval(it)?);
    }
    let parts = Val::list(parts);
    let mut text = String::new();
    let cap = ev.limits.max_output_bytes;
    match write_json(&parts, &mut text, cap, Some(&mut ev.gas)) {
        Ok(()) => {}
        Err(WalkError::TooLarge) => {
            return Err(fault(
                node,
                FaultKind::Limit,
                format!("parts serialise to more than max_output_bytes ({cap})"),
            ))
        }
        Err(e) => return Err(ev.walk_fault(node, e, "parts")),
    }
    ev.charge(node, text_cost(text.len()))?;
    let id = Uuid::new_v5(&ID_NAMESPACE, text.as_bytes());
    Ok(Val::str(&id.hyphenated().to_string()))
}
