//! The evaluator: gas, roots, lazily memoised lets, loop variables, and paths.

use std::sync::Arc;

use serde_json::Value;

use super::ast::{Node, NodeKind, PathRef, Ref, Seg};
use super::error::{Fault, FaultKind};
use super::gas::Gas;
use super::ops;
use super::value::{Fields, Val, WalkError};
use super::walk::describe;
use super::Limits;

enum RootSlot<'i> {
    Raw(&'i Value),
    Ready(Val),
}

enum LetSlot {
    Pending,
    Running,
    Done(Val),
}

/// One evaluation of a program or expression.
pub(crate) struct Eval<'p, 'i> {
    pub(crate) limits: &'p Limits,
    pub(crate) gas: Gas,
    roots: Vec<RootSlot<'i>>,
    lets: &'p [Node],
    memo: Vec<LetSlot>,
    env: Vec<Val>,
}

/// A fault at `node`, named after the node's op.
pub(crate) fn fault(node: &Node, kind: FaultKind, message: impl Into<String>) -> Box<Fault> {
    Box::new(Fault::new(&*node.path, node.op_name(), kind, message))
}

/// A type fault: `<what>, got <type> <value>`.
pub(crate) fn type_fault(node: &Node, what: &str, got: &Val) -> Box<Fault> {
    fault(
        node,
        FaultKind::Type,
        format!("{what}, got {}", describe(got)),
    )
}

impl<'p, 'i> Eval<'p, 'i> {
    pub(crate) fn new(limits: &'p Limits, gas: u64, roots: &[&'i Value], lets: &'p [Node]) -> Self {
        Eval {
            limits,
            gas: Gas::new(gas),
            roots: roots.iter().map(|r| RootSlot::Raw(r)).collect(),
            lets,
            memo: lets.iter().map(|_| LetSlot::Pending).collect(),
            env: Vec::new(),
        }
    }

    /// Spends `n` gas at `node`.
    pub(crate) fn charge(&mut self, node: &Node, n: u64) -> Result<(), Box<Fault>> {
        self.gas.charge(n).map_err(|_| self.out_of_gas(node))
    }

    pub(crate) fn out_of_gas(&self, node: &Node) -> Box<Fault> {
        fault(
            node,
            FaultKind::Gas,
            format!("out of gas (budget {})", self.gas.limit()),
        )
    }

    /// Turns a failed value walk at `node` into a fault.
    pub(crate) fn walk_fault(&self, node: &Node, e: WalkError, what: &str) -> Box<Fault> {
        match e {
            WalkError::Gas => self.out_of_gas(node),
            WalkError::TooLarge => fault(node, FaultKind::Limit, format!("{what} is too large")),
            WalkError::TooDeep => fault(
                node,
                FaultKind::Limit,
                format!("{what} is nested too deeply"),
            ),
        }
    }

    /// Evaluates a node.
    pub(crate) fn eval(&mut self, node: &Node) -> Result<Val, Box<Fault>> {
        match &node.kind {
            NodeKind::Scalar(v) => Ok(v.clone()),
            NodeKind::List(items) => {
                self.charge(node, 1)?;
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    out.push(self.eval(it)?);
                }
                Ok(Val::list(out))
            }
            NodeKind::Obj(fields) => {
                self.charge(node, 1)?;
                // The fields are sorted by key, each once: the object is built as they
                // come, its keys shared with the program's.
                let mut out = Vec::with_capacity(fields.len());
                for (k, it) in fields {
                    out.push((Arc::clone(k), self.eval(it)?));
                }
                Ok(Val::obj_sorted(out))
            }
            NodeKind::Op(op) => {
                self.charge(node, 1)?;
                ops::eval_op(self, node, op)
            }
        }
    }

    /// Runs `body` with `val` bound to loop-variable slot `slot` (the next one).
    pub(crate) fn with_var<T>(
        &mut self,
        node: &Node,
        slot: usize,
        val: Val,
        body: impl FnOnce(&mut Self) -> Result<T, Box<Fault>>,
    ) -> Result<T, Box<Fault>> {
        if self.env.len() != slot {
            return Err(fault(
                node,
                FaultKind::Path,
                "internal: variable slot mismatch",
            ));
        }
        self.env.push(val);
        let r = body(self);
        self.env.pop();
        r
    }

    fn root(&mut self, node: &Node, i: usize) -> Result<Val, Box<Fault>> {
        let slot = self
            .roots
            .get_mut(i)
            .ok_or_else(|| fault(node, FaultKind::Path, "internal: unknown root"))?;
        match slot {
            RootSlot::Ready(v) => Ok(v.clone()),
            RootSlot::Raw(raw) => {
                let v = Val::from_json(raw).map_err(|_| {
                    fault(node, FaultKind::Limit, "input value is nested too deeply")
                })?;
                *slot = RootSlot::Ready(v.clone());
                Ok(v)
            }
        }
    }

    fn set_memo(&mut self, i: usize, state: LetSlot) {
        if let Some(slot) = self.memo.get_mut(i) {
            *slot = state;
        }
    }

    fn let_value(&mut self, node: &Node, i: usize) -> Result<Val, Box<Fault>> {
        match self.memo.get(i) {
            Some(LetSlot::Done(v)) => return Ok(v.clone()),
            Some(LetSlot::Pending) => {}
            Some(LetSlot::Running) | None => {
                return Err(fault(node, FaultKind::Path, "internal: let cycle"));
            }
        }
        let lets = self.lets;
        let expr = lets
            .get(i)
            .ok_or_else(|| fault(node, FaultKind::Path, "internal: unknown let"))?;
        self.set_memo(i, LetSlot::Running);
        // A let sees no loop variables: evaluate it in an empty environment.
        let saved = std::mem::take(&mut self.env);
        let r = self.eval(expr);
        self.env = saved;
        let v = r?;
        self.set_memo(i, LetSlot::Done(v.clone()));
        Ok(v)
    }

    fn base(&mut self, node: &Node, r: Ref) -> Result<Val, Box<Fault>> {
        match r {
            Ref::Root(i) => self.root(node, i),
            Ref::Let(i) => self.let_value(node, i),
            Ref::Var(i) => self
                .env
                .get(i)
                .cloned()
                .ok_or_else(|| fault(node, FaultKind::Path, "internal: unbound variable")),
        }
    }

    /// `$get`: follows the path; missing keys, out-of-range indexes and nulls give null;
    /// stepping into a string/number/boolean, or into a list with a non-index, faults.
    pub(crate) fn get(&mut self, node: &Node, p: &PathRef) -> Result<Val, Box<Fault>> {
        if let Some(raw) = self.unconverted_root(p) {
            // Walk the input as it came and convert only what the path reaches: a saga
            // that reads three fields of a large event does not copy the whole event.
            return match step_raw_path(raw, &p.segs) {
                RawStep::Found(v) => Val::from_json(v)
                    .map_err(|_| fault(node, FaultKind::Limit, "input value is nested too deeply")),
                RawStep::Missing => Ok(Val::Null),
                RawStep::Blocked(at, seg) => Err(fault(
                    node,
                    FaultKind::Path,
                    format!("cannot read `{}` of {}", seg.key, describe_raw(at)),
                )),
            };
        }
        let mut cur = self.base(node, p.root)?;
        for seg in &p.segs {
            cur = match step(&cur, seg) {
                Step::Found(v) => v,
                Step::Missing => Val::Null,
                Step::Blocked => {
                    return Err(fault(
                        node,
                        FaultKind::Path,
                        format!("cannot read `{}` of {}", seg.key, describe(&cur)),
                    ))
                }
            };
            if cur.is_null() {
                return Ok(Val::Null);
            }
        }
        Ok(cur)
    }

    /// `$exists`: true when every segment is present (the final value may be null).
    pub(crate) fn exists(&mut self, node: &Node, p: &PathRef) -> Result<Val, Box<Fault>> {
        if p.segs.is_empty() {
            return Ok(Val::Bool(true));
        }
        if let Some(raw) = self.unconverted_root(p) {
            let mut cur = raw;
            for seg in &p.segs {
                cur = match raw_child(cur, seg) {
                    Some(v) => v,
                    None => return Ok(Val::Bool(false)),
                };
            }
            return Ok(Val::Bool(true));
        }
        let mut cur = self.base(node, p.root)?;
        for seg in &p.segs {
            cur = match step(&cur, seg) {
                Step::Found(v) => v,
                Step::Missing | Step::Blocked => return Ok(Val::Bool(false)),
            };
        }
        Ok(Val::Bool(true))
    }

    /// The input value of a path's root when it has not been converted yet and the path
    /// goes below it (a bare root is converted whole and kept).
    fn unconverted_root(&self, p: &PathRef) -> Option<&'i Value> {
        match (p.root, p.segs.is_empty()) {
            (Ref::Root(i), false) => match self.roots.get(i) {
                Some(RootSlot::Raw(raw)) => Some(raw),
                _ => None,
            },
            _ => None,
        }
    }
}

enum RawStep<'v, 's> {
    Found(&'v Value),
    Missing,
    /// Stepping into a scalar (or into a list with a non-index): which value, which step.
    Blocked(&'v Value, &'s Seg),
}

/// `$get` semantics over an unconverted input value (see [`step`]).
fn step_raw_path<'v, 's>(root: &'v Value, segs: &'s [Seg]) -> RawStep<'v, 's> {
    let mut cur = root;
    for seg in segs {
        match cur {
            Value::Null => return RawStep::Missing,
            Value::Object(_) | Value::Array(_) => match raw_child(cur, seg) {
                Some(Value::Null) => return RawStep::Missing,
                Some(v) => cur = v,
                None if matches!(cur, Value::Array(_)) && seg.index.is_none() => {
                    return RawStep::Blocked(cur, seg)
                }
                None => return RawStep::Missing,
            },
            _ => return RawStep::Blocked(cur, seg),
        }
    }
    RawStep::Found(cur)
}

/// One step into an object or list; `None` when absent (or not steppable).
fn raw_child<'v>(cur: &'v Value, seg: &Seg) -> Option<&'v Value> {
    match cur {
        Value::Object(map) => map.get(&*seg.key),
        Value::Array(items) => seg.index.and_then(|i| items.get(i)),
        _ => None,
    }
}

/// How a fault message shows an unconverted value (as [`describe`] does a converted one).
fn describe_raw(v: &Value) -> String {
    match Val::from_json(v) {
        Ok(val) => describe(&val),
        Err(_) => "a deeply nested value".into(),
    }
}

enum Step {
    Found(Val),
    Missing,
    Blocked,
}

fn step(cur: &Val, seg: &Seg) -> Step {
    match cur {
        Val::Obj(map) => match map.field(&seg.key) {
            Some(v) => Step::Found(v.clone()),
            None => Step::Missing,
        },
        Val::List(items) => match seg.index {
            Some(i) => match items.get(i) {
                Some(v) => Step::Found(v.clone()),
                None => Step::Missing,
            },
            None => Step::Blocked,
        },
        Val::Null => Step::Missing,
        _ => Step::Blocked,
    }
}
