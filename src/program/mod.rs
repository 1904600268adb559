//! Saga programs: a deterministic DAG language written as data. The language, and
//! every rule the loader and evaluator keep (truthiness, number rules, gas costs, fault
//! texts), is written for saga authors in `docs/program-language.md` ("Authoring
//! reference"); that page is the reference this module implements.

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
