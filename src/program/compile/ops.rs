//! One compile function per operation, found through a table so that the dispatching
//! frame stays small (compilation recurses once per nesting level).

use std::collections::BTreeMap;

use serde_json::Value;

use super::Compiler;
use crate::program::ast::{ArithOp, CmpOp, Op, TextOp};
use crate::program::error::LoadError;

/// Compiles the argument `arg` of op `name`, located at `at`, for an op object at
/// nesting level `depth`.
type OpCompiler<'a> = fn(&mut Compiler<'a>, &str, &Value, &str, usize) -> Result<Op, LoadError>;

fn table<'a>(name: &str) -> Option<OpCompiler<'a>> {
    Some(match name {
        "$lit" => Compiler::c_lit,
        "$get" => Compiler::c_get,
        "$exists" => Compiler::c_exists,
        "$coalesce" => Compiler::c_coalesce,
        "$if" => Compiler::c_if,
        "$switch" => Compiler::c_switch,
        "$and" => Compiler::c_and,
        "$or" => Compiler::c_or,
        "$not" => Compiler::c_not,
        "$eq" | "$ne" | "$lt" | "$lte" | "$gt" | "$gte" => Compiler::c_compare,
        "$add" | "$mul" | "$min" | "$max" => Compiler::c_variadic_math,
        "$sub" | "$div" | "$mod" => Compiler::c_binary_math,
        "$concat" => Compiler::c_concat,
        "$str" | "$lower" | "$upper" => Compiler::c_text,
        "$merge" => Compiler::c_merge,
        "$set" => Compiler::c_set,
        "$len" => Compiler::c_len,
        "$sum" => Compiler::c_sum,
        "$map" => Compiler::c_map,
        "$filter" => Compiler::c_filter,
        "$any" | "$all" => Compiler::c_quant,
        "$time_add" => Compiler::c_time_add,
        "$id" => Compiler::c_id,
        _ => return None,
    })
}

impl<'a> Compiler<'a> {
    /// Compiles the operation `{name: arg}` that sits at `path` (nesting level `depth`).
    pub(super) fn op(
        &mut self,
        name: &str,
        arg: &Value,
        path: &str,
        depth: usize,
    ) -> Result<Op, LoadError> {
        let compile: OpCompiler<'a> =
            table(name).ok_or_else(|| self.err(path, format!("unknown operation `{name}`")))?;
        compile(self, name, arg, &format!("{path}.{name}"), depth)
    }

    fn c_lit(&mut self, _: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        Ok(Op::Lit(self.literal(arg, at, d + 1)?))
    }

    fn c_get(&mut self, name: &str, arg: &Value, at: &str, _: usize) -> Result<Op, LoadError> {
        Ok(Op::Get(self.path_ref(name, arg, at)?))
    }

    fn c_exists(&mut self, name: &str, arg: &Value, at: &str, _: usize) -> Result<Op, LoadError> {
        Ok(Op::Exists(self.path_ref(name, arg, at)?))
    }

    fn c_coalesce(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        Ok(Op::Coalesce(self.list(name, arg, at, d, 1, false)?))
    }

    fn c_if(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        let [c, t, e] = self.fixed::<3>(name, arg, at, d)?;
        Ok(Op::If(c, t, e))
    }

    fn c_switch(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        let map = self.obj_args(name, arg, at, &["on", "cases"], &["default"])?;
        let on = self.field(map, "on", at, d)?;
        let cases_at = format!("{at}.cases");
        let src = map
            .get("cases")
            .and_then(Value::as_object)
            .ok_or_else(|| self.err(&cases_at, "`cases` must be an object"))?;
        if d + 2 > self.max_depth {
            return Err(self.too_deep(&cases_at));
        }
        let mut cases = BTreeMap::new();
        for (k, v) in src {
            cases.insert(k.clone(), self.expr(v, &format!("{cases_at}.{k}"), d + 3)?);
        }
        let default = match map.get("default") {
            Some(_) => Some(self.field(map, "default", at, d)?),
            None => None,
        };
        Ok(Op::Switch { on, cases, default })
    }

    fn c_and(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        Ok(Op::And(self.list(name, arg, at, d, 1, false)?))
    }

    fn c_or(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        Ok(Op::Or(self.list(name, arg, at, d, 1, false)?))
    }

    fn c_not(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        Ok(Op::Not(self.unary(name, arg, at, d)?))
    }

    fn c_compare(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        let c = match name {
            "$eq" => CmpOp::Eq,
            "$ne" => CmpOp::Ne,
            "$lt" => CmpOp::Lt,
            "$lte" => CmpOp::Lte,
            "$gt" => CmpOp::Gt,
            _ => CmpOp::Gte,
        };
        let [a, b] = self.fixed::<2>(name, arg, at, d)?;
        Ok(Op::Compare(c, a, b))
    }

    fn c_variadic_math(
        &mut self,
        name: &str,
        arg: &Value,
        at: &str,
        d: usize,
    ) -> Result<Op, LoadError> {
        let a = match name {
            "$add" => ArithOp::Add,
            "$mul" => ArithOp::Mul,
            "$min" => ArithOp::Min,
            _ => ArithOp::Max,
        };
        Ok(Op::Arith(a, self.list(name, arg, at, d, 1, false)?))
    }

    fn c_binary_math(
        &mut self,
        name: &str,
        arg: &Value,
        at: &str,
        d: usize,
    ) -> Result<Op, LoadError> {
        let a = match name {
            "$sub" => ArithOp::Sub,
            "$div" => ArithOp::Div,
            _ => ArithOp::Mod,
        };
        Ok(Op::Arith(a, self.list(name, arg, at, d, 2, true)?))
    }

    fn c_concat(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        Ok(Op::Concat(self.list(name, arg, at, d, 1, false)?))
    }

    fn c_text(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        let t = match name {
            "$str" => TextOp::Str,
            "$lower" => TextOp::Lower,
            _ => TextOp::Upper,
        };
        Ok(Op::Text(t, self.unary(name, arg, at, d)?))
    }

    fn c_merge(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        Ok(Op::Merge(self.list(name, arg, at, d, 1, false)?))
    }

    fn c_set(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        let map = self.obj_args(name, arg, at, &["in", "path", "value"], &[])?;
        let path_at = format!("{at}.path");
        let text = map
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| self.err(&path_at, "`$set` path must be a literal string"))?;
        let path = self.segments(name, text, &path_at)?;
        if path.len() > self.max_depth {
            return Err(self.err(
                &path_at,
                format!(
                    "`$set` path has more than max_depth ({}) segments",
                    self.max_depth
                ),
            ));
        }
        let target = self.field(map, "in", at, d)?;
        let value = self.field(map, "value", at, d)?;
        Ok(Op::Set {
            target,
            path,
            value,
        })
    }

    fn c_len(&mut self, _: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        Ok(Op::Len(self.expr(arg, at, d + 1)?))
    }

    fn c_sum(&mut self, _: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        Ok(Op::Sum(self.expr(arg, at, d + 1)?))
    }

    fn c_map(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        Ok(Op::Map(self.looped(name, arg, at, d, "do")?))
    }

    fn c_filter(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        Ok(Op::Filter(self.looped(name, arg, at, d, "where")?))
    }

    fn c_quant(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        let q = self.quant(name, arg, at, d)?;
        Ok(if name == "$any" {
            Op::Any(q)
        } else {
            Op::All(q)
        })
    }

    fn c_time_add(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        let map = self.obj_args(name, arg, at, &["at", "ms"], &[])?;
        let at_node = self.field(map, "at", at, d)?;
        let ms = self.field(map, "ms", at, d)?;
        Ok(Op::TimeAdd { at: at_node, ms })
    }

    fn c_id(&mut self, name: &str, arg: &Value, at: &str, d: usize) -> Result<Op, LoadError> {
        Ok(Op::Id(self.list(name, arg, at, d, 1, false)?))
    }
}
