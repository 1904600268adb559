//! Source (parsed YAML/JSON) → compiled nodes: op recognition, arity, paths, scopes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

mod ops;

use super::ast::{Loop, Node, NodeKind, PathRef, Quant, Ref, Seg};
use super::error::LoadError;
use super::value::Val;

/// `[A-Za-z_][A-Za-z0-9_]*`: the shape of let names and loop variables.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Compiles expressions within one scope of roots and let names.
pub(crate) struct Compiler<'a> {
    origin: &'a str,
    max_depth: usize,
    roots: &'a [String],
    lets: &'a BTreeMap<String, usize>,
    vars: Vec<String>,
    /// The lets referenced by what was compiled so far.
    pub(crate) deps: BTreeSet<usize>,
}

fn seg(key: &str) -> Seg {
    let index = if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
        key.parse::<usize>().ok()
    } else {
        None
    };
    Seg {
        key: key.into(),
        index,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

impl<'a> Compiler<'a> {
    pub(crate) fn new(
        origin: &'a str,
        max_depth: usize,
        roots: &'a [String],
        lets: &'a BTreeMap<String, usize>,
    ) -> Compiler<'a> {
        Compiler {
            origin,
            max_depth,
            roots,
            lets,
            vars: Vec::new(),
            deps: BTreeSet::new(),
        }
    }

    pub(crate) fn err(&self, node: &str, message: impl Into<String>) -> LoadError {
        LoadError {
            origin: self.origin.to_string(),
            node: node.to_string(),
            message: message.into(),
        }
    }

    fn too_deep(&self, path: &str) -> LoadError {
        self.err(
            path,
            format!("nesting deeper than max_depth ({})", self.max_depth),
        )
    }

    /// Compiles the expression `src` found at `path`, at nesting level `depth` (the root
    /// of an expression is level 1).
    pub(crate) fn expr(
        &mut self,
        src: &Value,
        path: &str,
        depth: usize,
    ) -> Result<Node, LoadError> {
        if depth > self.max_depth {
            return Err(self.too_deep(path));
        }
        let kind = match src {
            Value::Array(items) => self.list_literal(items, path, depth)?,
            Value::Object(map) => self.object(map, path, depth)?,
            scalar => NodeKind::Scalar(self.literal(scalar, path, depth)?),
        };
        Ok(Node {
            path: path.into(),
            kind,
        })
    }

    fn list_literal(
        &mut self,
        items: &[Value],
        path: &str,
        depth: usize,
    ) -> Result<NodeKind, LoadError> {
        Ok(NodeKind::List(self.exprs(items, path, depth + 1)?))
    }

    /// An operation object, or an object literal.
    fn object(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<NodeKind, LoadError> {
        if let Some((key, arg)) = map.iter().find(|(k, _)| k.starts_with('$')) {
            if map.len() != 1 {
                return Err(self.err(
                    path,
                    format!(
                        "an operation object must have exactly one key, but `{key}` has \
                         siblings (use `$lit` for literal objects with `$` keys)"
                    ),
                ));
            }
            return Ok(NodeKind::Op(Box::new(self.op(key, arg, path, depth)?)));
        }
        let mut out = Vec::with_capacity(map.len());
        for (k, it) in map {
            out.push((
                k.as_str().into(),
                self.expr(it, &format!("{path}.{k}"), depth + 1)?,
            ));
        }
        Ok(NodeKind::Obj(out))
    }

    /// A literal value at `depth`, checked against max_depth.
    fn literal(&self, v: &Value, path: &str, depth: usize) -> Result<Val, LoadError> {
        fn fits(v: &Value, depth: usize, max: usize) -> bool {
            if depth > max {
                return false;
            }
            match v {
                Value::Array(items) => items.iter().all(|it| fits(it, depth + 1, max)),
                Value::Object(map) => map.values().all(|it| fits(it, depth + 1, max)),
                _ => true,
            }
        }
        if !fits(v, depth, self.max_depth) {
            return Err(self.too_deep(path));
        }
        Val::from_json(v).map_err(|_| self.too_deep(path))
    }

    fn list_args<'v>(
        &self,
        name: &str,
        arg: &'v Value,
        at: &str,
        min: usize,
        exact: bool,
    ) -> Result<&'v [Value], LoadError> {
        let want = if exact {
            format!("a list of exactly {min} expression{}", plural(min))
        } else {
            format!("a list of at least {min} expression{}", plural(min))
        };
        let items = arg
            .as_array()
            .ok_or_else(|| self.err(at, format!("`{name}` takes {want}")))?;
        if items.len() < min || (exact && items.len() != min) {
            return Err(self.err(at, format!("`{name}` takes {want}, got {}", items.len())));
        }
        Ok(items)
    }

    fn exprs(&mut self, items: &[Value], at: &str, depth: usize) -> Result<Vec<Node>, LoadError> {
        let mut out = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            out.push(self.expr(it, &format!("{at}.{i}"), depth)?);
        }
        Ok(out)
    }

    /// A variadic or fixed list of expressions (`[a, b, …]`).
    fn list(
        &mut self,
        name: &str,
        arg: &Value,
        at: &str,
        depth: usize,
        min: usize,
        exact: bool,
    ) -> Result<Vec<Node>, LoadError> {
        let items = self.list_args(name, arg, at, min, exact)?;
        self.exprs(items, at, depth + 2)
    }

    fn fixed<const N: usize>(
        &mut self,
        name: &str,
        arg: &Value,
        at: &str,
        depth: usize,
    ) -> Result<[Node; N], LoadError> {
        let nodes = self.list(name, arg, at, depth, N, true)?;
        nodes
            .try_into()
            .map_err(|_| self.err(at, format!("`{name}` takes exactly {N} expressions")))
    }

    /// One expression, written bare or as a 1-element list.
    fn unary(
        &mut self,
        name: &str,
        arg: &Value,
        at: &str,
        depth: usize,
    ) -> Result<Node, LoadError> {
        match arg {
            Value::Array(items) => match items.as_slice() {
                [only] => self.expr(only, &format!("{at}.0"), depth + 2),
                _ => Err(self.err(
                    at,
                    format!(
                        "`{name}` takes one expression (bare or a 1-element list), got a list of {}",
                        items.len()
                    ),
                )),
            },
            other => self.expr(other, at, depth + 1),
        }
    }

    fn obj_args<'v>(
        &self,
        name: &str,
        arg: &'v Value,
        at: &str,
        required: &[&str],
        optional: &[&str],
    ) -> Result<&'v Map<String, Value>, LoadError> {
        let all: Vec<&str> = required.iter().chain(optional).copied().collect();
        let map = arg.as_object().ok_or_else(|| {
            self.err(
                at,
                format!("`{name}` takes an object with keys {}", all.join(", ")),
            )
        })?;
        for key in map.keys() {
            if !all.contains(&key.as_str()) {
                return Err(self.err(
                    &format!("{at}.{key}"),
                    format!(
                        "unknown key `{key}` for `{name}` (expected {})",
                        all.join(", ")
                    ),
                ));
            }
        }
        for key in required {
            if !map.contains_key(*key) {
                return Err(self.err(at, format!("`{name}` requires `{key}`")));
            }
        }
        Ok(map)
    }

    fn field(
        &mut self,
        map: &Map<String, Value>,
        key: &str,
        at: &str,
        depth: usize,
    ) -> Result<Node, LoadError> {
        let v = map.get(key).unwrap_or(&Value::Null);
        self.expr(v, &format!("{at}.{key}"), depth + 2)
    }

    fn segments(&self, name: &str, text: &str, at: &str) -> Result<Vec<Seg>, LoadError> {
        if text.split('.').any(str::is_empty) {
            return Err(self.err(at, format!("`{name}` path {text:?} has an empty segment")));
        }
        Ok(text.split('.').map(seg).collect())
    }

    fn path_ref(&mut self, name: &str, arg: &Value, at: &str) -> Result<PathRef, LoadError> {
        let text = arg.as_str().ok_or_else(|| {
            self.err(
                at,
                format!("`{name}` takes a literal path string like \"event.payload.total\""),
            )
        })?;
        let mut segs = self.segments(name, text, at)?;
        if segs.is_empty() {
            return Err(self.err(at, format!("`{name}` path is empty")));
        }
        let first = segs.remove(0);
        let first = &*first.key;
        let root = if let Some(slot) = self.vars.iter().rposition(|v| v == first) {
            Ref::Var(slot)
        } else if let Some(&i) = self.lets.get(first) {
            self.deps.insert(i);
            Ref::Let(i)
        } else if let Some(i) = self.roots.iter().position(|r| r == first) {
            Ref::Root(i)
        } else {
            let mut known: Vec<&str> = self.roots.iter().map(String::as_str).collect();
            known.extend(self.lets.keys().map(String::as_str));
            known.extend(self.vars.iter().map(String::as_str));
            return Err(self.err(
                at,
                format!(
                    "unknown root `{first}` in path {text:?} (known: {})",
                    known.join(", ")
                ),
            ));
        };
        Ok(PathRef { root, segs })
    }

    fn binder(&self, name: &str, map: &Map<String, Value>, at: &str) -> Result<String, LoadError> {
        let at = format!("{at}.as");
        let var = map
            .get("as")
            .and_then(Value::as_str)
            .ok_or_else(|| self.err(&at, format!("`{name}` `as` must be a variable name")))?;
        if !is_identifier(var) {
            return Err(self.err(
                &at,
                format!("`as` name {var:?} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)"),
            ));
        }
        if self.roots.iter().any(|r| r == var)
            || self.lets.contains_key(var)
            || self.vars.iter().any(|v| v == var)
        {
            return Err(self.err(
                &at,
                format!("`as` name `{var}` clashes with a root, let name or enclosing variable"),
            ));
        }
        Ok(var.to_string())
    }

    fn looped(
        &mut self,
        name: &str,
        arg: &Value,
        at: &str,
        depth: usize,
        body_key: &str,
    ) -> Result<Loop, LoadError> {
        let map = self.obj_args(name, arg, at, &["over", "as", body_key], &[])?;
        let over = self.field(map, "over", at, depth)?;
        let var = self.binder(name, map, at)?;
        let slot = self.vars.len();
        self.vars.push(var);
        let body = self.field(map, body_key, at, depth);
        self.vars.pop();
        Ok(Loop {
            over,
            slot,
            body: body?,
        })
    }

    fn quant(
        &mut self,
        name: &str,
        arg: &Value,
        at: &str,
        depth: usize,
    ) -> Result<Quant, LoadError> {
        let loop_form = arg
            .as_object()
            .is_some_and(|m| m.contains_key("over") && !m.keys().any(|k| k.starts_with('$')));
        if loop_form {
            Ok(Quant::Loop(self.looped(name, arg, at, depth, "where")?))
        } else {
            Ok(Quant::List(self.expr(arg, at, depth + 1)?))
        }
    }
}
