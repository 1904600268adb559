//! Layering: `stages/` is the runtime's top floor and `src/cli/` the program's, so the
//! library below never names them. An upward import would let the library start
//! threads or reach the command line on its own, and would bring back import cycles
//! (the pipeline types and the effect recorder used to import each other through the
//! wiring). This test reads the sources and names every such import by file and line.
//!
//! Who may name what:
//! - `stages` (`crate::stages`, `super::stages`, `runner::stages`): `src/cli/`,
//!   `src/main.rs`, `src/lib.rs`, and the drivers that run a whole pipeline like `runner
//!   run` does — `src/bench/`, `src/demo.rs` and the test rig `src/dev/` — besides
//!   `stages/` itself.
//! - `cli` (`crate::cli`, `super::cli`, `runner::cli`): `src/cli/`, `src/main.rs`,
//!   `src/lib.rs` and the same drivers; never `stages/`.
//!
//! Comments are skipped: a sentence naming a module is no dependency.

use std::path::{Path, PathBuf};

/// Files (relative to the crate root, `/`-separated) allowed to name the command line;
/// these and `stages/` itself may name the stages.
const MAY_NAME_CLI: &[&str] = &[
    "src/cli/",
    "src/main.rs",
    "src/lib.rs",
    "src/bench/",
    "src/demo.rs",
    "src/dev/",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `line` (code, comments stripped) names module `module` of this crate as a
/// path: `crate::m`, `super::m`, `runner::m`, or `m` inside a `use crate::{…}` group.
fn names(line: &str, module: &str) -> bool {
    let path = ["crate::", "super::", "runner::"].iter().any(|root| {
        let needle = format!("{root}{module}");
        // Whole names only: `crate::cli` but not `crate::client`.
        line.match_indices(&needle).any(|(at, _)| {
            let after = line[at + needle.len()..].chars().next();
            !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    });
    let grouped = (line.contains("crate::{") || line.contains("runner::{"))
        && line
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|word| word == module);
    path || grouped
}

/// The code of a line, without a `//` comment (string literals naming a module are
/// rare enough here to be read as code).
fn code_of(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// `file:line: text` for every line of a file outside `allowed` that names `module`.
fn upward_imports(module: &str, allowed: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("stages"), &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(root)
            .expect("under the crate root")
            .to_string_lossy()
            .replace('\\', "/");
        if allowed.iter().any(|a| relative.starts_with(a)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{relative}: {e}"));
        for (n, line) in text.lines().enumerate() {
            if names(code_of(line), module) {
                found.push(format!("{relative}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_library_never_imports_the_stages() {
    let found = upward_imports("stages", &[MAY_NAME_CLI, &["stages/"]].concat());
    assert!(
        found.is_empty(),
        "the library names stages/ (the wiring is stages/' own; pass what a library \
         function needs in as a value instead):\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_command_line_names_the_command_line() {
    let found = upward_imports("cli", MAY_NAME_CLI);
    assert!(
        found.is_empty(),
        "these name src/cli/ (move what they use into the library):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_every_form_of_an_upward_import() {
    assert!(names("use crate::stages::Pipeline;", "stages"));
    assert!(names("    super::stages::fetch::run(x)", "stages"));
    assert!(names("use runner::stages;", "stages"));
    assert!(names("use crate::{pipeline, stages};", "stages"));
    assert!(names("let x = crate::cli::limits(&s);", "cli"));
    assert!(!names(
        code_of("// the stages in `stages/` only move values"),
        "stages"
    ));
    assert!(!names("let stages = Stages::default();", "stages"));
    assert!(!names("use crate::client::Thing;", "cli"));
}
