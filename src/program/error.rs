//! Load-time errors and run-time faults.

/// A program (or expression) that cannot be loaded: bad shape, unknown op, wrong arity,
/// unknown root, let cycle, nesting too deep, …
///
/// Display: `invalid program <origin> at <node>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid program {origin} at {node}: {message}")]
pub struct LoadError {
    /// The file (or other source) the program came from.
    pub origin: String,
    /// The node path, e.g. `let.placed`, `output.commands.0.$if.1`.
    pub node: String,
    /// What is wrong.
    pub message: String,
}

/// The class of a run-time program fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// An operand has the wrong type (e.g. `$add` on a string, a non-boolean condition).
    Type,
    /// The gas budget ran out.
    Gas,
    /// A size or depth limit was exceeded (string length, value nesting, `$id` input size).
    Limit,
    /// Integer overflow, division by zero, non-finite float, time out of range.
    Arithmetic,
    /// A path could not be followed (`$get` through a scalar, `$set` into a scalar, …).
    Path,
    /// The program's output has the wrong shape or is too large.
    Output,
}

impl FaultKind {
    /// A stable lowercase name (for metrics labels and quarantine records).
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Type => "type",
            FaultKind::Gas => "gas",
            FaultKind::Limit => "limit",
            FaultKind::Arithmetic => "arithmetic",
            FaultKind::Path => "path",
            FaultKind::Output => "output",
        }
    }
}

/// A deterministic run-time failure of a program: re-running cannot help.
///
/// Display: `program fault at <node> (<op>): <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("program fault at {node} ({op}): {message}")]
pub struct Fault {
    /// The node path where the fault happened (`output.status.$if.0`,
    /// `output.commands.1.aggregate_id`, …).
    pub node: String,
    /// The operation (`$add`, `$get`, …; `list`/`object` for literals, `output` for
    /// output-shape faults, `input` for unusable inputs).
    pub op: String,
    /// The class of fault.
    pub kind: FaultKind,
    /// What went wrong, including a short (≤ 120 characters) rendering of the offending
    /// value where there is one.
    pub message: String,
}

impl Fault {
    pub(crate) fn new(
        node: impl Into<String>,
        op: impl Into<String>,
        kind: FaultKind,
        message: impl Into<String>,
    ) -> Fault {
        Fault {
            node: node.into(),
            op: op.into(),
            kind,
            message: message.into(),
        }
    }
}
