//! The compiled form of a program: a tree of nodes, each knowing its source path.

use std::collections::BTreeMap;

use super::value::Val;

/// One compiled expression node.
#[derive(Debug)]
pub(crate) struct Node {
    /// The node's path in the source, e.g. `output.commands.0.$if.1`.
    pub path: Box<str>,
    pub kind: NodeKind,
}

#[derive(Debug)]
pub(crate) enum NodeKind {
    /// A string, number, boolean or null written in place. Costs no gas.
    Scalar(Val),
    /// A list literal; its items are expressions.
    List(Vec<Node>),
    /// An object literal; its values are expressions. Its fields are sorted by key, each
    /// once (as `serde_json`'s map gave them), and its keys are shared with every object
    /// built from it.
    Obj(Vec<(std::sync::Arc<str>, Node)>),
    /// An operation.
    Op(Box<Op>),
}

/// What the first segment of a `$get`/`$exists` path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ref {
    /// An input root (`state`, `event`, `ctx`, or an `Expr` root), by position.
    Root(usize),
    /// A `let` node, by index.
    Let(usize),
    /// A `$map`/`$filter`/`$any`/`$all` variable, by scope slot.
    Var(usize),
}

/// One segment of a dotted path after the root.
#[derive(Debug)]
pub(crate) struct Seg {
    /// The segment as written: an object key.
    pub key: Box<str>,
    /// The segment as a list index, when it is all ASCII digits.
    pub index: Option<usize>,
}

#[derive(Debug)]
pub(crate) struct PathRef {
    pub root: Ref,
    pub segs: Vec<Seg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextOp {
    Str,
    Lower,
    Upper,
}

/// `{over, as, do|where}`: iterate a list with the element bound to a variable slot.
#[derive(Debug)]
pub(crate) struct Loop {
    pub over: Node,
    pub slot: usize,
    pub body: Node,
}

/// The two forms of `$any` / `$all`.
#[derive(Debug)]
pub(crate) enum Quant {
    Loop(Loop),
    List(Node),
}

#[derive(Debug)]
pub(crate) enum Op {
    Lit(Val),
    Get(PathRef),
    Exists(PathRef),
    Coalesce(Vec<Node>),
    If(Node, Node, Node),
    Switch {
        on: Node,
        cases: BTreeMap<String, Node>,
        default: Option<Node>,
    },
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Node),
    Compare(CmpOp, Node, Node),
    Arith(ArithOp, Vec<Node>),
    Concat(Vec<Node>),
    Text(TextOp, Node),
    Merge(Vec<Node>),
    Set {
        target: Node,
        path: Vec<Seg>,
        value: Node,
    },
    Len(Node),
    Sum(Node),
    Map(Loop),
    Filter(Loop),
    Any(Quant),
    All(Quant),
    TimeAdd {
        at: Node,
        ms: Node,
    },
    Id(Vec<Node>),
}

impl Op {
    /// The operation's name as written in programs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Lit(_) => "$lit",
            Op::Get(_) => "$get",
            Op::Exists(_) => "$exists",
            Op::Coalesce(_) => "$coalesce",
            Op::If(..) => "$if",
            Op::Switch { .. } => "$switch",
            Op::And(_) => "$and",
            Op::Or(_) => "$or",
            Op::Not(_) => "$not",
            Op::Compare(c, ..) => match c {
                CmpOp::Eq => "$eq",
                CmpOp::Ne => "$ne",
                CmpOp::Lt => "$lt",
                CmpOp::Lte => "$lte",
                CmpOp::Gt => "$gt",
                CmpOp::Gte => "$gte",
            },
            Op::Arith(a, _) => match a {
                ArithOp::Add => "$add",
                ArithOp::Sub => "$sub",
                ArithOp::Mul => "$mul",
                ArithOp::Div => "$div",
                ArithOp::Mod => "$mod",
                ArithOp::Min => "$min",
                ArithOp::Max => "$max",
            },
            Op::Concat(_) => "$concat",
            Op::Text(t, _) => match t {
                TextOp::Str => "$str",
                TextOp::Lower => "$lower",
                TextOp::Upper => "$upper",
            },
            Op::Merge(_) => "$merge",
            Op::Set { .. } => "$set",
            Op::Len(_) => "$len",
            Op::Sum(_) => "$sum",
            Op::Map(_) => "$map",
            Op::Filter(_) => "$filter",
            Op::Any(_) => "$any",
            Op::All(_) => "$all",
            Op::TimeAdd { .. } => "$time_add",
            Op::Id(_) => "$id",
        }
    }

    /// The op's sub-expressions, in source order.
    pub(crate) fn children(&self) -> Vec<&Node> {
        match self {
            Op::Lit(_) | Op::Get(_) | Op::Exists(_) => Vec::new(),
            Op::Coalesce(v)
            | Op::And(v)
            | Op::Or(v)
            | Op::Arith(_, v)
            | Op::Concat(v)
            | Op::Merge(v)
            | Op::Id(v) => v.iter().collect(),
            Op::If(a, b, c) => vec![a, b, c],
            Op::Switch { on, cases, default } => {
                let mut out = vec![on];
                out.extend(cases.values());
                out.extend(default.iter());
                out
            }
            Op::Not(a) | Op::Text(_, a) | Op::Len(a) | Op::Sum(a) => vec![a],
            Op::Compare(_, a, b) => vec![a, b],
            Op::Set { target, value, .. } => vec![target, value],
            Op::Map(l) | Op::Filter(l) => vec![&l.over, &l.body],
            Op::Any(q) | Op::All(q) => match q {
                Quant::Loop(l) => vec![&l.over, &l.body],
                Quant::List(a) => vec![a],
            },
            Op::TimeAdd { at, ms } => vec![at, ms],
        }
    }
}

impl Node {
    /// The name used for this node in faults: the op name, or `list` / `object` /
    /// `literal`.
    pub(crate) fn op_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(_) => "literal",
            NodeKind::List(_) => "list",
            NodeKind::Obj(_) => "object",
            NodeKind::Op(op) => op.name(),
        }
    }

    /// The node's direct sub-expressions.
    pub(crate) fn children(&self) -> Vec<&Node> {
        match &self.kind {
            NodeKind::Scalar(_) => Vec::new(),
            NodeKind::List(items) => items.iter().collect(),
            NodeKind::Obj(fields) => fields.iter().map(|(_, n)| n).collect(),
            NodeKind::Op(op) => op.children(),
        }
    }

    /// The let referenced by this node (a `$get`/`$exists` of a let name), if any.
    pub(crate) fn let_ref(&self) -> Option<usize> {
        match &self.kind {
            NodeKind::Op(op) => match op.as_ref() {
                Op::Get(p) | Op::Exists(p) => match p.root {
                    Ref::Let(i) => Some(i),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        }
    }
}
