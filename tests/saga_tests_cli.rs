//! `runner test` as saga authors and CI call it: the shipped example tests pass, a
//! wrong expectation fails with a diff naming path, expected and actual, and a broken
//! test file is reported as such (exit 2), never as a passing or plainly failing suite.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use runner::dev::TempDir;

fn runner(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    // Settings from the test's environment must not reach the child.
    for (k, _) in std::env::vars() {
        if k.starts_with("RUNNER_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("run the runner binary")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests/example")
        .join(rel)
}

/// The example test file in `dir/tests/NAME`, using the example manifest by absolute
/// path, with `from` replaced by `to` (exactly once, or the test itself is wrong).
fn copy_with(dir: &TempDir, name: &str, from: &str, to: &str) -> PathBuf {
    let original = std::fs::read_to_string(example("tests/order_fulfilment.yaml")).unwrap();
    assert_eq!(
        original.matches(from).count(),
        1,
        "{from:?} must occur once"
    );
    let body = format!(
        "manifest: {}\n{}",
        example("sagas.yaml").display(),
        original.replace(from, to)
    );
    let tests = dir.path().join("tests");
    std::fs::create_dir_all(&tests).unwrap();
    let path = tests.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn the_example_tests_pass() {
    let out = runner(&["test", "manifests/example"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("manifests/example/tests/order_fulfilment.yaml"),
        "{stdout}"
    );
    for case in [
        "ok    order placed, card charged, order paid (4 steps)",
        "ok    card declined, order cancelled by compensation (3 steps)",
        "ok    payment times out, order cancelled (3 steps)",
    ] {
        assert!(stdout.contains(case), "{case:?} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.contains("saga tests ok: 6 passed, 0 failed"),
        "{stdout}"
    );

    // Without a path: the tests found under manifests/.
    let out = runner(&["test"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("6 passed, 0 failed"));
}

#[test]
fn a_wrong_expectation_fails_with_a_diff() {
    let dir = TempDir::new("saga-tests-cli").unwrap();
    copy_with(
        &dir,
        "wrong.yaml",
        "amount: 4200, currency: EUR }",
        "amount: 4300, currency: EUR }",
    );
    // The directory holding `tests/` is searched like manifests/example.
    let out = runner(&["test", dir.path().to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let diff = "  FAIL  order placed, card charged, order paid\n        \
                step 1 (aggregate OrderPlaced o-1001):\n          \
                commands[0].payload.amount:\n            \
                expected: 4300\n            \
                actual:   4200\n";
    assert!(stdout.contains(diff), "no diff like\n{diff}in:\n{stdout}");
    // The case stops at its failing step; the other cases still run and pass.
    assert!(
        stdout.contains("ok    card declined, order cancelled by compensation"),
        "{stdout}"
    );
    assert!(
        stdout.contains("saga tests FAILED: 5 passed, 1 failed"),
        "{stdout}"
    );
}

#[test]
fn a_wrong_status_names_expected_and_actual() {
    let dir = TempDir::new("saga-tests-cli-status").unwrap();
    let file = copy_with(
        &dir,
        "status.yaml",
        "status: failed\n          # No error object",
        "status: completed\n          # No error object",
    );
    let out = runner(&["test", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "          status:\n            expected: \"completed\"\n            actual:   \"failed\"\n"
        ),
        "{stdout}"
    );
}

#[test]
fn an_invalid_test_file_is_named_with_its_problem() {
    let dir = TempDir::new("saga-tests-cli-invalid").unwrap();
    let bad = copy_with(&dir, "bad.yaml", "outcome: duplicate", "outcom: duplicate");
    let out = runner(&["test", dir.path().to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("cases[0]") && stderr.contains("expect.outcom: unknown key"),
        "{stderr}"
    );

    let out = runner(&["test", dir.path().join("nothing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("cannot read"), "{:?}", text(&out));
}
