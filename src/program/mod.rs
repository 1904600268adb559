//! Saga programs: a deterministic DAG language written as data (see
//! `docs/program-language.md`). This comment is the authoring reference: it records
//! every decision that page leaves open.
//!
//! # Program shape
//!
//! A program is an object with an optional `let` (object of name → expression) and a
//! required `output` (expression). No other top-level keys are allowed (typos must not
//! pass silently). The `output` must evaluate to an object (see *Output*).
//!
//! # Expressions
//!
//! - An object whose single key starts with `$` is an **operation**. An object with a
//!   `$` key *and* other keys is a load error (use `$lit` for literal objects with `$`
//!   keys). Unknown operations are load errors.
//! - Any other object is an object literal whose values are expressions; an array is a
//!   list of expressions; strings, numbers, booleans and null are themselves (a string
//!   starting with `$` is just a string).
//! - `{ $lit: X }` returns `X` unevaluated.
//! - Arity and argument shape are checked at load: list arguments (`$if [c, t, e]`)
//!   must have the right length, object arguments (`$map {over, as, do}`) must have
//!   their required keys and no unknown keys, paths must be literal strings.
//! - A standalone [`Expr`] (e.g. a trigger's `correlate`) has no `let`, sees only the
//!   roots it was compiled with, and its node paths start at `expr`.
//!
//! # Roots, `let` and variables
//!
//! - `$get` / `$exists` take a **literal** dotted path string (`"event.payload.total"`).
//!   Its first segment is a root: `state` (null for a new instance), `event`, `ctx`
//!   (`tenant_id`, `saga`, `correlation_id`, `stream`, `subject`), a `let` name, or a
//!   loop variable bound by an enclosing `$map` / `$filter` / `$any` / `$all` `as`.
//!   Unknown roots and empty segments are load errors. Keys containing `.` cannot be
//!   addressed.
//! - Let names and loop variables are identifiers `[A-Za-z_][A-Za-z0-9_]*`. A let name
//!   may not be `state`, `event` or `ctx`. A loop variable may not clash with a root, a
//!   let name or an enclosing loop variable (no shadowing). A loop variable is visible
//!   only in that loop's `do` / `where`; let expressions never see loop variables.
//! - `let` nodes are lazy: evaluated on first reference, at most once per evaluation
//!   (memoised). A let that is never referenced is never evaluated, so it cannot fault.
//!   Cycles (including self-reference) are load errors naming the cycle
//!   (`let cycle: a -> b -> a`).
//!
//! # `$get` and `$exists`
//!
//! - `$get`: object segments look up keys; a segment of only ASCII digits indexes a list.
//!   A missing key, an out-of-range index, or stepping through `null` gives `null`.
//!   Stepping into a string, number or boolean, or into a list with a non-numeric
//!   segment, is a **Path fault** (it is a bug, not absence).
//! - `$exists`: `true` when every segment is present, even if the final value is `null`;
//!   `false` otherwise (never faults on the path). A bare root (`$exists: state`) is
//!   always `true`; test a new instance with `{ $eq: [ { $get: state }, null ] }`.
//!
//! # Logic
//!
//! - Truthiness (`$if`, `$and`, `$or`, `$not`, `$filter` `where`, `$any`, `$all`) is
//!   strict: `true` / `false`, and `null` counts as false; any other type is a Type fault.
//! - `$if [c, then, else]` evaluates only the chosen branch. `$and` / `$or` take a list
//!   of ≥ 1 expressions, short-circuit, and return a boolean. `$not` takes one
//!   expression (bare or a 1-element list).
//! - `$switch {on, cases: {k: expr}, default}`: `on` must be a string, number or boolean
//!   (null is a Type fault) and is compared with the case keys by its string form — a
//!   string as-is, a number as JSON text (`1` matches `"1"`, `1.0` matches `"1.0"` only),
//!   a boolean as `true` / `false`. Only the chosen branch is evaluated; no match and no
//!   `default` → `null`.
//! - `$coalesce [a, b, …]` (≥ 1) evaluates in order and returns the first non-null value
//!   (null when all are).
//!
//! # Comparison
//!
//! - `$eq` / `$ne`: deep JSON equality; numbers compare by value, exactly (`1 == 1.0`).
//! - `$lt`, `$lte`, `$gt`, `$gte`: two numbers (by value), or two strings (by bytes,
//!   i.e. Unicode code point order); anything else (null included) is a Type fault.
//!
//! # Math
//!
//! - `$add`, `$mul`, `$min`, `$max` take a list of ≥ 1 numbers; `$sub`, `$div`, `$mod`
//!   exactly 2. Non-numbers are Type faults.
//! - All-integer operands give an integer (i64, checked: overflow is an Arithmetic fault;
//!   an integer literal above `i64::MAX` is an Arithmetic fault too). If any operand is
//!   a float the result is a float (serialised with a fraction, e.g. `3.0`), and a
//!   non-finite result is an Arithmetic fault. This holds for `$min` / `$max` as well.
//! - `$div` of two integers: an integer when exact (`6 / 3 = 2`), else a float
//!   (`7 / 2 = 3.5`). `$mod` truncates (the result has the sign of the dividend).
//!   Division or modulo by zero (integer or float) is an Arithmetic fault.
//! - `$sum` takes one expression evaluating to a list of numbers (null → `0`; an empty
//!   list → `0`), with the same integer/float rules as `$add`.
//!
//! # Text
//!
//! - `$concat [..]` (≥ 1): strings, numbers (JSON text) and booleans (`true`/`false`);
//!   null, lists and objects are Type faults.
//! - `$str x` (bare or 1-element list): strings as-is; numbers, booleans and null as JSON
//!   text; lists and objects as canonical compact JSON (keys sorted).
//! - `$lower` / `$upper` (bare or 1-element list): strings only; full Unicode case
//!   mapping of the Rust standard library.
//! - Any string an op produces longer than `max_string_bytes` is a Limit fault (input
//!   strings passed through unchanged are not limited by it).
//!
//! # Objects and lists
//!
//! - `$merge [o1, o2, …]` (≥ 1): shallow, right wins; null operands are skipped; other
//!   non-objects are Type faults. All operands null → `{}`.
//! - `$set {in, path, value}`: `path` is a literal dotted path relative to `in` (at most
//!   `max_depth` segments). Returns a copy of `in` with `value` placed at `path`; `in`
//!   may be an object, a list or null (null → `{}`). Missing or null intermediates become
//!   objects; a digit segment on a list replaces an existing element (out of range is a
//!   Path fault); stepping into a string/number/boolean is a Path fault.
//! - `$len x`: characters (Unicode scalar values) of a string, elements of a list,
//!   entries of an object; null → `0`; numbers/booleans are Type faults. Its argument is
//!   one expression taken as-is, so `$len: [a, b]` is the length of that list (2).
//! - `$map {over, as, do}`, `$filter {over, as, where}`: `over` must be a list (null →
//!   the empty list). `$filter` keeps elements whose `where` is true.
//! - `$any` / `$all` take either `{over, as, where}` (an object with an `over` key), or
//!   one expression evaluating to a list of booleans (null entries count as false; null
//!   list → empty). They short-circuit; over an empty list `$any` is false, `$all` true.
//! - `$sum`, `$len`, `$any`/`$all` (list form) take their argument as-is: `$sum: [1, 2]`
//!   is 3.
//!
//! # Time and ids
//!
//! - `$time_add {at, ms}`: `at` is an RFC 3339 string (a parse failure is a Type fault),
//!   `ms` an integer (may be negative). Returns RFC 3339 UTC: `YYYY-MM-DDTHH:MM:SSZ`, or
//!   with `.mmm` when not a whole second. Results outside years 0000–9999 are Arithmetic
//!   faults. See [`crate::timefmt`].
//! - `$id [parts…]` (≥ 1): UUIDv5 in the namespace `b8f40854-844f-5d08-830b-105d13bedda9`
//!   (= UUIDv5(NAMESPACE_URL, `urn:runner:program:id`)) over the canonical compact JSON
//!   of the evaluated parts list (e.g. `["order","o-1"]`, byte-identical to
//!   `serde_json::to_vec`), as a lowercase hyphenated string. The serialised parts may
//!   not exceed `max_output_bytes` (Limit fault).
//!
//! # Output
//!
//! The output value must be an object with only the keys `state`, `status`, `commands`,
//! `schedules`, `cancel` (anything else is an Output fault). Everywhere in the output,
//! **null means absent**:
//!
//! - `state`: absent or null → unchanged (`None`); otherwise the new state. Its compact
//!   serialisation may not exceed `max_state_bytes`.
//! - `status`: absent or null → `active`; else one of `"active"`, `"completed"`,
//!   `"failed"`.
//! - `commands`, `schedules`, `cancel`: absent or null → empty; otherwise lists whose
//!   null entries are dropped. Node paths in faults use the index in the list as written
//!   (before dropping nulls), e.g. `output.commands.1.aggregate_id`.
//! - A command is `{to: aggregate, aggregate_type, aggregate_id, command_type, payload?,
//!   command_id?}` or `{to: effect, effect, payload?, command_id?}`. Required fields and
//!   `command_id` are non-empty strings; `payload` (any JSON) defaults to `{}`. Unknown
//!   keys are Output faults.
//! - A schedule is `{name, after_ms | at, payload?}`: `name` a non-empty string; exactly
//!   one of `after_ms` (a non-negative integer) and `at` (RFC 3339, parsed to ms);
//!   `payload` defaults to `{}`. Unknown keys are Output faults. Schedules are returned
//!   in order (a repeated name: the later one replaces the earlier when applied).
//! - `cancel`: non-empty timer-name strings.
//! - The whole output's compact serialisation may not exceed `max_output_bytes`.
//!
//! # Limits and gas
//!
//! - Nesting of one expression's source (objects and arrays, `$lit` contents included)
//!   deeper than `max_depth` is a load error. Counting a `$get` of a let as nesting that
//!   let's expression in place, the total must stay within 4 × `max_depth` (this bounds
//!   the evaluator's recursion).
//! - Run-time values (inputs, values walked by `$eq`/`$str`/`$id`, the output) may be
//!   nested at most 128 levels (`serde_json`'s own parser limit): deeper inputs are a
//!   Limit fault, deeper output an Output fault.
//! - Gas: every operation evaluated costs 1, and so does every list or object literal
//!   (scalars are free). List operations cost 1 more per element visited (`$map`,
//!   `$filter`, `$any`, `$all`, `$sum`); `$eq`/`$ne`, `$str` and `$id` cost 1 per JSON
//!   node visited; `$merge` and `$set` cost 1 per entry copied; text work costs 1 per
//!   full 64 bytes read or written (`$concat`, `$str`, `$lower`, `$upper`, `$len` of a
//!   string, string comparison, `$id`). `$len` is otherwise 1. A `$get` of a let costs 1,
//!   plus the let's own cost the first time. Running out is a Gas fault naming the node
//!   being charged.
//! - Values share structure (cheap clones), so a program that doubles a value through a
//!   chain of lets stays linear in memory; walking or outputting such a value is bounded
//!   by gas and byte budgets, and fails with a fault rather than exhausting memory.
//!
//! # Faults and load errors
//!
//! - [`LoadError`] names the origin file, the node path (`let.placed`,
//!   `output.commands.0.$if.1`, …) and the problem.
//! - [`Fault`] names the node, the op (`$add`; `list`/`object` for literals; `output` for
//!   output-shape faults) and its [`FaultKind`], with a ≤ 120-character rendering of the
//!   offending value.
//!
//! # Determinism
//!
//! Objects are ordered maps (keys sorted), there is no clock, randomness or I/O, and
//! gas accounting depends only on the program and its inputs: the same inputs give
//! byte-identical outputs and the same faults.

mod ast;
mod compile;
mod error;
mod eval;
mod gas;
mod lets;
mod ops;
mod output;
mod value;
mod walk;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use ast::Node;
use compile::{is_identifier, Compiler};
use eval::Eval;
use lets::{effective_depth, topo_order, EVAL_DEPTH_FACTOR};

pub use error::{Fault, FaultKind, LoadError};

/// Static bounds applied to every program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum nesting of one expression's source (default 64).
    pub max_depth: usize,
    /// Maximum compact-JSON size of a program's output or an expression's result
    /// (default 1 MiB).
    pub max_output_bytes: usize,
    /// Maximum compact-JSON size of the new state (default 256 KiB).
    pub max_state_bytes: usize,
    /// Maximum size of a string produced by an operation (default 64 KiB).
    pub max_string_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_output_bytes: 1024 * 1024,
            max_state_bytes: 256 * 1024,
            max_string_bytes: 64 * 1024,
        }
    }
}

/// The roots a saga program sees, in order.
const PROGRAM_ROOTS: [&str; 3] = ["state", "event", "ctx"];

/// The inputs of one program evaluation.
#[derive(Debug, Clone, Copy)]
pub struct ProgramInput<'a> {
    /// The instance's state; `Null` for a new instance.
    pub state: &'a Value,
    /// The decoded event envelope.
    pub event: &'a Value,
    /// `tenant_id`, `saga`, `correlation_id`, `stream`, `subject`.
    pub ctx: &'a Value,
}

/// The instance status a program asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Keep going (the default).
    #[default]
    Active,
    /// Done; later events are ignored.
    Completed,
    /// Failed; compensation runs, then the instance is done.
    Failed,
}

/// A work item produced by a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandSpec {
    /// A command for an aggregate, sent through the Gateway.
    Aggregate {
        aggregate_type: String,
        aggregate_id: String,
        command_type: String,
        payload: Value,
        command_id: Option<String>,
    },
    /// An effect command, published to `WORKFLOW_COMMANDS`.
    Effect {
        effect: String,
        payload: Value,
        command_id: Option<String>,
    },
}

/// When a timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleWhen {
    /// Milliseconds after the causing event's `occurred_at`/`timestamp`.
    AfterMs(i64),
    /// An absolute instant, ms since the Unix epoch (from an RFC 3339 `at`).
    AtMs(i64),
}

/// A timer to (re)schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    pub name: String,
    pub when: ScheduleWhen,
    pub payload: Value,
}

/// The decoded, checked result of a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramOutput {
    /// The new state; `None` when omitted (or null) = unchanged.
    pub state: Option<Value>,
    /// `Active` when omitted.
    pub status: Status,
    /// Null entries dropped.
    pub commands: Vec<CommandSpec>,
    /// Null entries dropped.
    pub schedules: Vec<ScheduleSpec>,
    /// Timer names to drop.
    pub cancel: Vec<String>,
    /// Gas spent by the evaluation.
    pub gas_used: u64,
}

/// A compiled saga program: immutable, `Send + Sync`, share it through an `Arc`.
pub struct Program {
    origin: String,
    limits: Limits,
    let_names: Vec<String>,
    lets: Vec<Node>,
    output: Node,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("origin", &self.origin)
            .field("lets", &self.let_names)
            .finish_non_exhaustive()
    }
}

fn load_error(origin: &str, node: &str, message: impl Into<String>) -> LoadError {
    LoadError {
        origin: origin.to_string(),
        node: node.to_string(),
        message: message.into(),
    }
}

fn check_eval_depth(
    node: &Node,
    let_depth: &[usize],
    limits: &Limits,
    origin: &str,
) -> Result<usize, LoadError> {
    let depth = effective_depth(node, let_depth);
    let max = limits.max_depth.saturating_mul(EVAL_DEPTH_FACTOR);
    if depth > max {
        return Err(load_error(
            origin,
            &node.path,
            format!(
                "nesting through let references is {depth} levels, more than {max} \
                 ({EVAL_DEPTH_FACTOR} × max_depth)"
            ),
        ));
    }
    Ok(depth)
}

impl Program {
    /// Compiles a parsed program document: an object with optional `let` (object of
    /// name → expression) and required `output` (expression). `origin` names the file in
    /// error messages.
    pub fn compile(source: &Value, origin: &str, limits: &Limits) -> Result<Program, LoadError> {
        let doc = source.as_object().ok_or_else(|| {
            load_error(
                origin,
                "(program)",
                "a program must be an object with `output` and optional `let`",
            )
        })?;
        if let Some(k) = doc
            .keys()
            .find(|k| k.as_str() != "let" && k.as_str() != "output")
        {
            return Err(load_error(
                origin,
                k,
                format!("unknown top-level key `{k}` (expected `let` and `output`)"),
            ));
        }
        let empty = serde_json::Map::new();
        let let_src = match doc.get("let") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(load_error(
                    origin,
                    "let",
                    "`let` must be an object of name → expression",
                ))
            }
        };
        let output_src = doc
            .get("output")
            .ok_or_else(|| load_error(origin, "output", "missing required `output`"))?;

        let roots: Vec<String> = PROGRAM_ROOTS.iter().map(|r| r.to_string()).collect();
        let mut index = BTreeMap::new();
        let mut let_names = Vec::with_capacity(let_src.len());
        for name in let_src.keys() {
            let at = format!("let.{name}");
            if !is_identifier(name) {
                return Err(load_error(
                    origin,
                    &at,
                    format!("let name {name:?} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)"),
                ));
            }
            if PROGRAM_ROOTS.contains(&name.as_str()) {
                return Err(load_error(
                    origin,
                    &at,
                    format!("let name `{name}` shadows a root"),
                ));
            }
            index.insert(name.clone(), let_names.len());
            let_names.push(name.clone());
        }

        let mut lets = Vec::with_capacity(let_names.len());
        let mut deps: Vec<BTreeSet<usize>> = Vec::with_capacity(let_names.len());
        for (name, src) in let_src {
            let mut c = Compiler::new(origin, limits.max_depth, &roots, &index);
            lets.push(c.expr(src, &format!("let.{name}"), 1)?);
            deps.push(c.deps);
        }
        let mut c = Compiler::new(origin, limits.max_depth, &roots, &index);
        let output = c.expr(output_src, "output", 1)?;

        let order = topo_order(&let_names, &deps, origin)?;
        let mut let_depth = vec![0usize; lets.len()];
        for i in order {
            let Some(node) = lets.get(i) else { continue };
            let depth = check_eval_depth(node, &let_depth, limits, origin)?;
            if let Some(slot) = let_depth.get_mut(i) {
                *slot = depth;
            }
        }
        check_eval_depth(&output, &let_depth, limits, origin)?;

        Ok(Program {
            origin: origin.to_string(),
            limits: *limits,
            let_names,
            lets,
            output,
        })
    }

    /// Evaluates the program with a gas budget.
    pub fn eval(&self, input: &ProgramInput<'_>, gas: u64) -> Result<ProgramOutput, Fault> {
        let roots = [input.state, input.event, input.ctx];
        let mut ev = Eval::new(&self.limits, gas, &roots, &self.lets);
        let out = ev.eval(&self.output).map_err(|f| *f)?;
        let gas_used = ev.gas.used();
        let mut decoded = output::decode(&out, &self.limits)?;
        decoded.gas_used = gas_used;
        Ok(decoded)
    }
}

/// A standalone expression (e.g. a trigger's `correlate`) over named roots. No `let`.
pub struct Expr {
    origin: String,
    limits: Limits,
    roots: Vec<String>,
    node: Node,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expr")
            .field("origin", &self.origin)
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl Expr {
    /// Compiles an expression whose `$get` roots are `roots` (e.g. `["event", "ctx"]`).
    /// Node paths in errors start at `expr`.
    pub fn compile(
        source: &Value,
        origin: &str,
        roots: &[&str],
        limits: &Limits,
    ) -> Result<Expr, LoadError> {
        let mut names: Vec<String> = Vec::with_capacity(roots.len());
        for r in roots {
            if !is_identifier(r) || names.iter().any(|n| n == r) {
                return Err(load_error(
                    origin,
                    "expr",
                    format!("invalid or duplicate root name {r:?}"),
                ));
            }
            names.push(r.to_string());
        }
        let no_lets = BTreeMap::new();
        let mut c = Compiler::new(origin, limits.max_depth, &names, &no_lets);
        let node = c.expr(source, "expr", 1)?;
        Ok(Expr {
            origin: origin.to_string(),
            limits: *limits,
            roots: names,
            node,
        })
    }

    /// Evaluates with one value per root (same order as `compile`'s `roots`) and a gas
    /// budget. The result's compact serialisation may not exceed `max_output_bytes`.
    pub fn eval(&self, roots: &[&Value], gas: u64) -> Result<Value, Fault> {
        if roots.len() != self.roots.len() {
            return Err(Fault::new(
                "expr",
                "input",
                FaultKind::Type,
                format!(
                    "expected {} root values ({}), got {}",
                    self.roots.len(),
                    self.roots.join(", "),
                    roots.len()
                ),
            ));
        }
        let mut ev = Eval::new(&self.limits, gas, roots, &[]);
        let v = ev.eval(&self.node).map_err(|f| *f)?;
        let mut budget = self.limits.max_output_bytes;
        v.to_json(&mut budget).map_err(|e| {
            let what = match e {
                value::WalkError::TooDeep => "is nested deeper than 128 levels".to_string(),
                _ => format!(
                    "exceeds max_output_bytes ({})",
                    self.limits.max_output_bytes
                ),
            };
            Fault::new(
                "expr",
                self.node.op_name(),
                FaultKind::Output,
                format!("the result {what}"),
            )
        })
    }
}
