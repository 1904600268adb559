//! What `runner test` prints: a header per file, a line per case, the differences of a
//! failed case, and a summary. Plain text, one fact per line, so CI logs read well.

use std::fmt::Write as _;

use super::format::TestFile;
use super::run::{CaseReport, CaseVerdict, Failure};
use super::{EXIT_FAILED, EXIT_INVALID, EXIT_PASSED};

pub fn file_header(test: &TestFile) -> String {
    format!(
        "{} (manifest {})",
        test.path.display(),
        test.manifest.display()
    )
}

/// The case's line, and for a failure the step it stopped at with every difference.
pub fn case_text(case: &CaseReport) -> String {
    let mut out = String::new();
    match &case.verdict {
        CaseVerdict::Passed => {
            let plural = if case.steps == 1 { "" } else { "s" };
            let _ = writeln!(out, "  ok    {} ({} step{plural})", case.name, case.steps);
        }
        CaseVerdict::Failed {
            step,
            label,
            failure,
        } => {
            let _ = writeln!(out, "  FAIL  {}", case.name);
            let _ = writeln!(out, "        step {step} ({label}):");
            match failure {
                Failure::Problem(problem) => {
                    let _ = writeln!(out, "          {problem}");
                }
                Failure::Mismatches(mismatches) => {
                    for m in mismatches {
                        let _ = writeln!(out, "          {}:", m.path);
                        let _ = writeln!(out, "            expected: {}", m.expected);
                        let _ = writeln!(out, "            actual:   {}", m.actual);
                    }
                }
            }
        }
    }
    out
}

/// Counts over the whole run.
#[derive(Debug, Default)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
    /// Files that could not be read, were invalid, or could not run.
    pub invalid: usize,
}

impl Totals {
    pub fn count(&mut self, case: &CaseReport) {
        if case.passed() {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }

    pub fn summary(&self, files: usize) -> String {
        let verdict = if self.failed == 0 && self.invalid == 0 {
            "ok"
        } else {
            "FAILED"
        };
        let mut line = format!(
            "saga tests {verdict}: {} passed, {} failed in {files} file(s)",
            self.passed, self.failed
        );
        if self.invalid > 0 {
            let _ = write!(line, "; {} file(s) invalid or not run", self.invalid);
        }
        line
    }

    /// Invalid files win over failures: the suite did not run as written.
    pub fn exit_code(&self) -> i32 {
        if self.invalid > 0 {
            EXIT_INVALID
        } else if self.failed > 0 {
            EXIT_FAILED
        } else {
            EXIT_PASSED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sagatest::Mismatch;

    #[test]
    fn a_failure_names_the_step_path_expected_and_actual() {
        let case = CaseReport {
            name: "declined".into(),
            steps: 2,
            verdict: CaseVerdict::Failed {
                step: 2,
                label: "result charge_card failed".into(),
                failure: Failure::Mismatches(vec![Mismatch {
                    path: "state.reason".into(),
                    expected: "\"card_declined\"".into(),
                    actual: "\"timeout\"".into(),
                }]),
            },
        };
        let text = case_text(&case);
        assert_eq!(
            text,
            "  FAIL  declined\n        step 2 (result charge_card failed):\n          state.reason:\n            expected: \"card_declined\"\n            actual:   \"timeout\"\n"
        );
        let ok = CaseReport {
            name: "happy".into(),
            steps: 3,
            verdict: CaseVerdict::Passed,
        };
        assert_eq!(case_text(&ok), "  ok    happy (3 steps)\n");
    }

    #[test]
    fn exit_codes_rank_invalid_over_failed_over_passed() {
        let mut t = Totals::default();
        assert_eq!(t.exit_code(), EXIT_PASSED);
        t.passed = 2;
        assert!(t
            .summary(1)
            .starts_with("saga tests ok: 2 passed, 0 failed"));
        t.failed = 1;
        assert_eq!(t.exit_code(), EXIT_FAILED);
        assert!(t.summary(1).starts_with("saga tests FAILED"));
        t.invalid = 1;
        assert_eq!(t.exit_code(), EXIT_INVALID);
        assert!(t.summary(2).ends_with("1 file(s) invalid or not run"));
    }
}
