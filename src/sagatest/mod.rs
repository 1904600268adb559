//! `runner test`: declarative saga test files (docs/saga-tests.md).
//!
//! A test file names a saga manifest and lists cases; each case feeds events, one step at
//! a time, through the same code production runs — [`crate::saga::decode`], the
//! [`crate::saga::Executor`] and [`crate::store::Store::commit`] on a throwaway store —
//! and compares what the step did (state, status, commands, timers…) with the step's
//! partial expectation.
//!
//! - `discover`: which files under a directory are test files.
//! - `format`: reading and validating a test file.
//! - `events`: building a step's envelope and subject, filling in what was left out.
//! - `observe`: what a step did, in the shape a saga author sees.
//! - `matcher`: partial matching and the differences it finds.
//! - `run`: executing the cases; `report`: printing the results.

mod discover;
mod events;
mod format;
mod matcher;
mod observe;
mod report;
mod run;

use std::path::{Path, PathBuf};

pub use discover::{test_files, DiscoverProblem};
pub use format::{load_file, Case, CaseError, FormatProblem, Given, Step, StepError, TestFile};
pub use matcher::{check_expected, compare, ExpectError, Mismatch};
pub use run::{run_case, run_file, CaseReport, CaseVerdict};

use crate::store::StoreError;

/// Where `runner test` looks when no path is given: the manifests of the repository
/// layout, relative to the working directory.
pub const DEFAULT_ROOT: &str = "manifests";

/// Exit code when every case passed.
pub const EXIT_PASSED: i32 = 0;
/// Exit code when a case failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code when a test file could not be read or is invalid (or none was found): the
/// suite did not run as written, which must not look like a plain test failure.
pub const EXIT_INVALID: i32 = 2;

/// Why test files could not be found, read or run.
#[derive(Debug, thiserror::Error)]
pub enum SagaTestError {
    /// A test file that cannot be read or does not follow the format.
    #[error("{file}: {problem}")]
    Invalid {
        file: PathBuf,
        // Boxed: a manifest's error inside is large.
        #[source]
        problem: Box<format::FormatProblem>,
    },
    /// The path to search is missing or unreadable, or holds no test file.
    #[error("{path}: {problem}")]
    Discover {
        path: PathBuf,
        #[source]
        problem: discover::DiscoverProblem,
    },
    /// The throwaway store of a case failed: the machine, not the saga.
    #[error("{file}: case {case:?}: throwaway store: {source}")]
    Store {
        file: PathBuf,
        case: String,
        source: StoreError,
    },
    #[error("{file}: case {case:?}: cannot make a temporary directory: {source}")]
    TempDir {
        file: PathBuf,
        case: String,
        source: std::io::Error,
    },
}

/// `runner test [PATH]`: runs every test file found under `path` (default
/// [`DEFAULT_ROOT`]), prints a line per case and a summary; returns the exit code.
pub fn main(path: Option<&Path>) -> i32 {
    let root = path.unwrap_or(Path::new(DEFAULT_ROOT));
    let files = match test_files(root) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let mut totals = report::Totals::default();
    for file in &files {
        let loaded = load_file(file);
        let result = loaded.and_then(|test| {
            say(&format!("{}\n", report::file_header(&test)));
            run_file(&test, |case| {
                totals.count(case);
                say(&report::case_text(case));
            })
        });
        if let Err(e) = result {
            totals.invalid += 1;
            eprintln!("error: {e}");
        }
    }
    say(&format!("\n{}\n", totals.summary(files.len())));
    totals.exit_code()
}

/// Prints to stdout, ignoring a closed pipe (`runner test | head`): the exit code still
/// tells the truth, where `print!` would panic.
fn say(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
