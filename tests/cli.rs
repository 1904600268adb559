//! The `runner` binary as users call it.

use std::path::Path;
use std::process::{Command, Output};

use runner::dev::TempDir;

fn runner(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    // The test's own environment must not leak settings into the child.
    for (k, _) in std::env::vars() {
        if k.starts_with("RUNNER_") && k != "RUNNER_NATS_SERVER_BIN" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run the runner binary")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `runner check` with `env`, which must pass: its stdout.
fn check_passes(env: &[(&str, &str)]) -> String {
    let out = runner(&["check"], env);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{env:?}: {stdout}{stderr}");
    stdout
}

/// The line of `check`'s output warning about `setting`.
fn warning_about<'a>(stdout: &'a str, setting: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with("warning:") && l.contains(setting))
        .unwrap_or_else(|| panic!("no {setting} warning in:\n{stdout}"))
}

#[test]
fn help_lists_the_subcommands() {
    for args in [&["--help"][..], &["-h"], &["help"], &[]] {
        let out = runner(args, &[]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        for sub in [
            "run",
            "check",
            "eval",
            "test",
            "shadow",
            "healthcheck",
            "demo",
            "bench",
            "admin",
            "version",
            "completions",
        ] {
            assert!(
                stdout.contains(&format!("\n  {sub} ")),
                "{args:?}: {sub} missing from:\n{stdout}"
            );
        }
    }
    let out = runner(&["launch"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("unrecognized subcommand 'launch'"),
        "{}",
        text(&out).1
    );
}

/// Every subcommand, at every level, answers `--help` and `-h` on stdout with exit 0,
/// naming each of its options.
#[test]
fn every_subcommand_answers_help_with_its_options() {
    let admin_globals = [
        "--url",
        "--urls-file",
        "--token-file",
        "--json",
        "--timeout",
    ];
    let selection = [
        "--tenant",
        "--unattributed",
        "--saga",
        "--kind",
        "--reason",
        "--key",
        "--limit",
    ];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("run", vec!["--config", "--mode", "saga", "RUNNER_CONFIG"]),
        ("check", vec!["--config"]),
        (
            "eval",
            vec!["--program", "--event", "--state", "--ctx", "--gas"],
        ),
        ("test", vec!["[PATH]"]),
        (
            "shadow",
            vec![
                "--saga",
                "--version",
                "--candidate",
                "--from",
                "--to",
                "--stream",
                "--limit",
                "--config",
            ],
        ),
        ("healthcheck", vec!["--url", "--config"]),
        ("demo", vec!["--nats-url"]),
        (
            "bench",
            vec![
                "--events",
                "--workflows",
                "--rate",
                "--backlog",
                "--soak-secs",
                "--retention-secs",
                "--sections",
                "--nats-url",
            ],
        ),
        ("version", vec![]),
        ("completions", vec!["bash", "zsh", "fish"]),
        (
            "admin",
            [
                &admin_globals[..],
                &[
                    "instances",
                    "quarantine",
                    "deadletters",
                    "drain",
                    "resume",
                    "reload",
                    "replay",
                    "migrate",
                    "store",
                ],
            ]
            .concat(),
        ),
        ("admin instances", vec!["list", "show"]),
        (
            "admin instances list",
            [
                &admin_globals[..],
                &[
                    "--tenant",
                    "--saga",
                    "--status",
                    "--version",
                    "--timer-before",
                    "--after",
                    "--limit",
                    "--all",
                ],
            ]
            .concat(),
        ),
        (
            "admin instances show",
            vec!["--tenant", "--saga", "<CORRELATION>"],
        ),
        ("admin quarantine", vec!["list", "retry", "discard"]),
        ("admin quarantine list", selection.to_vec()),
        ("admin quarantine retry", selection.to_vec()),
        (
            "admin quarantine discard",
            [&selection[..], &["--all"]].concat(),
        ),
        ("admin deadletters", vec!["list", "retry", "discard"]),
        ("admin deadletters list", selection.to_vec()),
        ("admin deadletters retry", selection.to_vec()),
        (
            "admin deadletters discard",
            [&selection[..], &["--all"]].concat(),
        ),
        ("admin drain", vec!["--wait"]),
        ("admin resume", admin_globals.to_vec()),
        ("admin reload", admin_globals.to_vec()),
        (
            "admin replay",
            vec![
                "--tenant",
                "--saga",
                "--from-seq",
                "--stream",
                "--confirm",
                "--past-horizon",
            ],
        ),
        (
            "admin migrate",
            vec!["--tenant", "--saga", "<CORRELATIONS>..."],
        ),
        ("admin store", vec!["--limit"]),
    ];
    for (command, options) in cases {
        for flag in ["--help", "-h"] {
            let mut args: Vec<&str> = command.split(' ').collect();
            args.push(flag);
            let out = runner(&args, &[]);
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}{stderr}");
            assert!(
                stdout.contains(&format!("Usage: runner {command}")),
                "{args:?}:\n{stdout}"
            );
            for option in &options {
                assert!(
                    stdout.contains(option),
                    "{args:?}: {option} missing from:\n{stdout}"
                );
            }
        }
    }
}

/// `runner --version` and `runner version`: the package version and the commit.
#[test]
fn version_names_the_package_version_and_the_commit() {
    let flag = runner(&["--version"], &[]);
    let word = runner(&["version"], &[]);
    assert_eq!(flag.status.code(), Some(0));
    assert_eq!(word.status.code(), Some(0));
    let (stdout, _) = text(&flag);
    assert_eq!(stdout, text(&word).0, "both spell it the same");
    let prefix = format!("runner {} (git ", env!("CARGO_PKG_VERSION"));
    assert!(stdout.starts_with(&prefix), "{stdout}");
    let sha = stdout[prefix.len()..].trim_end().trim_end_matches(')');
    assert!(!sha.is_empty(), "{stdout}");
    // build.rs sets it for every target of the package, this test's too.
    assert_eq!(sha, env!("RUNNER_GIT_SHA"));
    // From this checkout's HEAD, unless the build was told a sha.
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Ok(head) = head {
        if head.status.success() && std::env::var_os("RUNNER_GIT_SHA").is_none() {
            assert_eq!(
                sha,
                String::from_utf8_lossy(&head.stdout).trim(),
                "{stdout}"
            );
        }
    }
}

/// A mistyped flag is a usage error (exit 2) that names the closest valid one.
#[test]
fn an_unknown_flag_names_the_closest_valid_one() {
    for (args, closest) in [
        (&["run", "--confg", "a.toml"][..], "--config"),
        (&["eval", "--progam", "p.yaml"], "--program"),
        (
            &["admin", "instances", "list", "--tenat", "acme"],
            "--tenant",
        ),
        (&["shadow", "--sga", "s"], "--saga"),
    ] {
        let out = runner(args, &[]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("a similar argument exists: '{closest}'")),
            "{args:?}: {stderr}"
        );
    }
    // Today's invocations keep working, and a value-taking flag still needs its value.
    let out = runner(&["run", "--config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out)
        .1
        .contains("a value is required for '--config <FILE>'"));
}

/// `runner completions SHELL` prints a script that shell loads.
#[test]
fn completions_are_generated_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F _runner"),
        ("zsh", "#compdef runner"),
        ("fish", "complete -c runner"),
    ] {
        let out = runner(&["completions", shell], &[]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{shell}: {stderr}");
        assert!(stdout.contains(marker), "{shell}: {marker} missing");
        for word in ["healthcheck", "instances", "deadletters", "token-file"] {
            assert!(stdout.contains(word), "{shell}: {word} missing");
        }
    }
    let bash = Command::new("bash")
        .arg("-n")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    if let Ok(mut bash) = bash {
        use std::io::Write;
        let script = runner(&["completions", "bash"], &[]).stdout;
        bash.stdin.take().unwrap().write_all(&script).unwrap();
        let checked = bash.wait_with_output().unwrap();
        assert!(
            checked.status.success(),
            "bash -n: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    let out = runner(&["completions", "tcsh"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_passes_on_the_example_and_names_bad_settings() {
    let out = runner(&["check"], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("saga order_fulfilment v1: ok"), "{stdout}");
    assert!(stdout.contains("check passed"));
    // Variables of the build and of `runner admin` are no settings, and no typos either.
    check_passes(&[
        ("RUNNER_ADMIN_TOKEN_FILE", "/run/secrets/runner_admin_token"),
        ("RUNNER_GIT_SHA", "abc1234"),
    ]);

    let out = runner(&["check"], &[("RUNNER_CONSUMER_MAX_DELIVER", "0")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("consumer.max_deliver"),
        "{}",
        text(&out).1
    );
}

#[test]
fn check_reports_a_broken_program_by_file_and_node() {
    let dir = TempDir::new("cli").unwrap();
    let program = dir.path().join("p.yaml");
    std::fs::write(
        &program,
        "let:\n  a: { $get: b }\n  b: { $get: a }\noutput: { state: { $get: a } }\n",
    )
    .unwrap();
    let manifest = dir.path().join("sagas.yaml");
    std::fs::write(
        &manifest,
        "sagas:\n  - name: s\n    triggers:\n      - { subject: a.b, start: true, correlate: { $get: event.x } }\n    on_event: p.yaml\n",
    )
    .unwrap();
    let config = dir.path().join("runner.toml");
    std::fs::write(
        &config,
        format!(
            "[manifests]\nsagas = [{:?}]\n",
            manifest.display().to_string()
        ),
    )
    .unwrap();
    let out = runner(&["check", "--config", config.to_str().unwrap()], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("p.yaml") && stderr.contains("cycle"),
        "{stderr}"
    );
}

/// A saga's own dedupe retention is held to the same floor as the settings': an event
/// re-published inside the duplicate window must still find its marker.
#[test]
fn check_refuses_a_saga_retention_shorter_than_the_duplicate_window() {
    let dir = TempDir::new("cli").unwrap();
    let manifest = dir.path().join("sagas.yaml");
    let config = dir.path().join("runner.toml");
    std::fs::write(
        &config,
        format!(
            "[manifests]\nsagas = [{:?}]\n",
            manifest.display().to_string()
        ),
    )
    .unwrap();
    let saga = |dedupe: u64| {
        format!("sagas:\n  - name: s\n    retention: {{ dedupe_secs: {dedupe}, finished_instances_secs: 60 }}\n    triggers:\n      - {{ subject: a.b, start: true, correlate: {{ $get: event.x }} }}\n    on_event: {{ output: {{ status: completed }} }}\n")
    };
    std::fs::write(&manifest, saga(3600)).unwrap();
    let out = runner(&["check", "--config", config.to_str().unwrap()], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stderr.contains("saga s: retention.dedupe_secs is 3600 but must be at least 7200"),
        "{stderr}"
    );
    std::fs::write(&manifest, saga(7200)).unwrap();
    let out = runner(&["check", "--config", config.to_str().unwrap()], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("saga s retention: finished instances 60 s, dedupe markers 7200 s"),
        "{stdout}"
    );
}

#[test]
fn eval_prints_the_transition_of_the_example_program() {
    let dir = TempDir::new("cli").unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"event_id": "e-1", "tenant_id": "acme", "aggregate_type": "order", "aggregate_id": "o-1",
            "event_type": "OrderPlaced", "occurred_at": "2026-11-27T10:00:00Z",
            "payload": {"total": 4200, "customer_id": "c-1"}, "metadata": {}}"#,
    )
    .unwrap();
    let program = Path::new("manifests/example/programs/order_fulfilment.yaml");
    let out = runner(
        &[
            "eval",
            "--program",
            program.to_str().unwrap(),
            "--event",
            event.to_str().unwrap(),
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let output: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(output["status"], "active");
    assert_eq!(output["state"]["step"], "charging");
    assert_eq!(output["commands"][0]["effect"], "charge_card");
    assert_eq!(output["commands"][0]["payload"]["amount"], 4200);
    assert_eq!(output["schedules"][0]["after_ms"], 900000);

    let state = dir.path().join("state.json");
    std::fs::write(
        &state,
        r#"{"step": "charging", "order_id": "o-1", "total": 4200}"#,
    )
    .unwrap();
    let result = dir.path().join("result.json");
    std::fs::write(
        &result,
        r#"{"event_id": "r-1", "command_id": "c", "effect_name": "charge_card", "result_type": "succeeded",
            "payload": {"payment_id": "p-1"}, "timestamp": "2026-11-27T10:00:05Z", "metadata": {}}"#,
    )
    .unwrap();
    let out = runner(
        &[
            "eval",
            "--program",
            program.to_str().unwrap(),
            "--event",
            result.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ],
        &[],
    );
    let output: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output["status"], "completed");
    assert_eq!(output["commands"][0]["command_type"], "MarkPaid");
    assert_eq!(output["cancel"], serde_json::json!(["payment_timeout"]));

    let out = runner(
        &[
            "eval",
            "--program",
            "nope.yaml",
            "--event",
            event.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("nope.yaml"));
}

/// The README's main job, exactly as users run it (with the debug binary).
#[test]
fn demo_runs_the_example_saga_end_to_end() {
    let out = runner(&["demo"], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for expected in [
        "acme     o-1001   completed  paid",
        "acme     o-1002   failed     payment_failed",
        "globex   o-2001   completed  paid",
        "order o-1002  amount 990  idempotency-key",
        "workflow.result.acme.charge_card   failed http_402",
        "duplicates so far: 1",
        "Decode: body is not valid JSON",
        "workflow.cmd.globex.charge_card",
        "CancelOrder o-1002  idempotency-key",
        "MarkPaid o-1001  idempotency-key",
        "MarkPaid o-2001  idempotency-key",
        "Effects: 3 called, 3 results published, 1 failed",
        "Outbox: empty",
        "0 dead letters",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
}

/// The load command, small: its tables are printed and its counts add up (every event
/// published was committed and acked once; every workflow completed). Figures are not
/// asserted — speed is measured, never tested.
#[test]
fn bench_smoke_run_prints_its_tables_and_its_counts_add_up() {
    let out = runner(
        &[
            "bench",
            "--events",
            "300",
            "--workflows",
            "60",
            "--rate",
            "200",
            "--backlog",
            "300",
            "--sections",
            "saga,workflow,backlog",
        ],
        &[("RUNNER_LOG", "warn")],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for expected in [
        "raw JetStream pull+ack (same server, same run)",
        "saga pipeline: fetch→commit→ack",
        "for reference, raw pull+ack publishing one message per event",
        "counts add up: 300 events published, 300 transitions committed, 300 acked",
        "workflow: 60 orders at 200/s",
        "completed 60 at",
        "latency p50",
        // Every order was found in both streams (else the line is left out).
        "per hop, p50 / p99 ms: OrderPlaced → command stored",
        "saga side, p50 / p99 ms: group commit",
        // The Runner's threads were sampled: the store writer waited for its syncs.
        "Runner context switches per workflow: ",
        " preempted); by thread: ",
        "store-writer ",
        "the store's disk, idle before the run: one 4 KiB write + fdatasync",
        "peak RSS",
        "backlog: 300 OrderPlaced drained by `runner run --mode saga` in its own process",
        "anonymous memory at 1/4, 1/2, 3/4 and the end of the backlog",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    let bad = runner(&["bench", "--sections", "saga,warp"], &[]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad).1.contains("unknown bench section \"warp\""),
        "{:?}",
        text(&bad)
    );
}

/// The latency floor alone, small: the three raw hops carry every order to the
/// Gateway and the section prints its figures. Figures are not asserted.
#[test]
fn bench_floor_smoke_run_completes_every_order() {
    let out = runner(
        &[
            "bench",
            "--sections",
            "floor",
            "--workflows",
            "200",
            "--rate",
            "200",
        ],
        &[("RUNNER_LOG", "warn")],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for expected in [
        "floor: 200 orders at 200/s through the workflow's three hops by raw primitives",
        "completed 200; latency p50 ",
        "CPU per workflow: this process ",
        " µs, nats-server ",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
}

/// The retention phase, small: the example workflow in a `runner run` of its own with
/// everything kept 5 s prints a line per interval and its summary, and its checks pass
/// (what the sweep deleted equals what was written before the horizon). Figures are
/// not asserted.
#[test]
fn bench_retention_smoke_run_expires_what_finished_before_the_horizon() {
    let out = runner(
        &[
            "bench",
            "--sections",
            "retention",
            "--soak-secs",
            "20",
            "--retention-secs",
            "5",
            "--rate",
            "50",
        ],
        &[("RUNNER_LOG", "warn")],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for expected in [
        "retention: the order workflow (manifests/example, combined) in `runner run` of its own at 50/s for 20 s",
        "kept 5 s (2 markers per order); a line every 5 s",
        "retention summary: nothing expires before 5 s",
        "store pages in use: ",
        "RSS: ",
        "after the first period, first vs last: 5–10 s ",
        "p99 with nothing to sweep (0–5 s, start-up included)",
        "PASS every order completed: 1000 of 1000",
        "PASS store pages in use stayed within 10%",
        "PASS instances expired: ",
        "PASS dedupe markers expired: ",
        "PASS effect records expired: ",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    // A line every 5 s, each with every column: nothing expired by the first, all
    // three kinds by the last.
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            ["5 ", "10 ", "15 ", "20 "].iter().any(|s| l.starts_with(s)) && l.contains(" / ")
        })
        .collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    let expired = |line: &str| -> Vec<u64> {
        let words: Vec<&str> = line.split_whitespace().collect();
        words[words.len() - 5..]
            .iter()
            .filter(|w| **w != "/")
            .map(|w| w.parse().unwrap_or_else(|_| panic!("{line}")))
            .collect()
    };
    assert_eq!(expired(lines[0]), [0, 0, 0], "{stdout}");
    assert!(expired(lines[3]).iter().all(|n| *n > 0), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

/// Effect manifests: `check` loads them with their secrets, names a broken one, and never
/// prints a secret's value.
#[test]
fn check_loads_effects_and_their_secrets_without_showing_them() {
    let dir = TempDir::new("cli-effects").unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("pay_token"), "Bearer very-secret-value\n").unwrap();
    let manifest = dir.path().join("effects.yaml");
    std::fs::write(
        &manifest,
        "effects:\n  - name: charge_card\n    provider: http\n    http:\n      url: \"http://payments:8080/v1/charges\"\n      headers: { authorization: \"secret:pay_token\" }\n",
    )
    .unwrap();
    let effects = manifest.to_str().unwrap();
    let secrets_dir = secrets.to_str().unwrap();
    let env = [
        ("RUNNER_MANIFESTS_EFFECTS", effects),
        ("RUNNER_MANIFESTS_SECRETS_DIR", secrets_dir),
        ("RUNNER_LOG", "debug"),
    ];
    let out = runner(&["check"], &env);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("effect charge_card: ok (provider http"),
        "{stdout}"
    );
    assert!(!stdout.contains("very-secret") && !stderr.contains("very-secret"));

    std::fs::remove_file(secrets.join("pay_token")).unwrap();
    let out = runner(&["check"], &env);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("effects.yaml: effect charge_card: http.headers.authorization: secret pay_token: cannot read"),
        "{stderr}"
    );
}

/// `runner run` in effect mode refuses to start when a secret is missing, naming it.
#[test]
fn run_refuses_to_start_without_a_secret() {
    let dir = TempDir::new("cli-run-secret").unwrap();
    let manifest = dir.path().join("effects.yaml");
    std::fs::write(
        &manifest,
        "effects:\n  - name: charge_card\n    provider: http\n    http:\n      url: \"http://payments:8080/v1/charges\"\n      headers: { authorization: \"secret:pay_token\" }\n",
    )
    .unwrap();
    let out = runner(
        &["run", "--mode", "effect"],
        &[
            ("RUNNER_MANIFESTS_EFFECTS", manifest.to_str().unwrap()),
            ("RUNNER_MANIFESTS_SECRETS_DIR", dir.path().to_str().unwrap()),
            (
                "RUNNER_STORAGE_PATH",
                dir.path().join("store").to_str().unwrap(),
            ),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("secret pay_token: cannot read"), "{stderr}");
}

/// `check` on settings that would post aggregate commands to the process's own
/// loopback while NATS is elsewhere (a container's default): a warning naming
/// relay.gateway_url, not a failure. Loopback with a loopback NATS (a laptop) and a
/// Gateway named by its host are fine.
#[test]
fn check_warns_of_a_loopback_gateway_when_nats_is_remote() {
    let remote_nats = ("RUNNER_NATS_URL", "nats://nats-1.invalid:4222");
    let stdout = check_passes(&[remote_nats]);
    let warning = warning_about(&stdout, "relay.gateway_url");
    assert!(warning.contains("http://127.0.0.1:8080"), "{warning}");
    assert!(stdout.contains("check passed"), "{stdout}");

    for env in [
        vec![
            remote_nats,
            ("RUNNER_RELAY_GATEWAY_URL", "http://gateway:8080"),
        ],
        vec![("RUNNER_NATS_URL", "nats://127.0.0.1:1")],
        // Effect processes have no relay.
        vec![remote_nats, ("RUNNER_MODE", "effect")],
    ] {
        let stdout = check_passes(&env);
        assert!(
            !stdout.contains("relay.gateway_url"),
            "{env:?}: no gateway warning expected:\n{stdout}"
        );
    }
}

/// The subject names the tenant after `streams.aggregate_prefix`: a prefix the shipped
/// sagas' triggers do not use would quarantine every event they take, so `check` warns.
#[test]
fn check_warns_of_triggers_under_no_tenant_prefix() {
    let stdout = check_passes(&[("RUNNER_STREAMS_AGGREGATE_PREFIX", "events")]);
    let warning = warning_about(&stdout, "streams.aggregate_prefix");
    assert!(warning.contains("\"aggregate.*.order"), "{warning}");
    let stdout = check_passes(&[]);
    assert!(
        !stdout.contains("streams.aggregate_prefix"),
        "no prefix warning with the defaults:\n{stdout}"
    );
}

/// `check` asks the server named by nats.url whether it is part of a cluster: with
/// streams.replicas 1 there, the streams and buckets the Runner creates would live on
/// one node, so it warns. Replicas matching the cluster, or a single server, do not.
#[test]
fn check_warns_of_single_replica_streams_on_a_cluster() {
    let cluster = runner::dev::NatsCluster::start(3).expect("start a NATS cluster");
    let url = cluster.url();
    let stdout = check_passes(&[("RUNNER_NATS_URL", &url)]);
    let warning = warning_about(&stdout, "streams.replicas");
    assert!(warning.contains("cluster"), "{warning}");

    let stdout = check_passes(&[("RUNNER_NATS_URL", &url), ("RUNNER_STREAMS_REPLICAS", "3")]);
    assert!(!stdout.contains("warning:"), "{stdout}");
    assert!(
        stdout.contains("cluster"),
        "the cluster is reported: {stdout}"
    );
    drop(cluster);

    let single = runner::dev::NatsServer::start().expect("start nats-server");
    let stdout = check_passes(&[("RUNNER_NATS_URL", &single.url())]);
    assert!(!stdout.contains("warning:"), "{stdout}");
}
