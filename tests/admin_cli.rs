//! `runner admin` against real `runner run` processes (real nats-server, real LMDB, the
//! ops port with its admin token): what it prints, its `--json`, the server's reasons
//! and the exit codes, and listings merged over two Runners.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::ops::{admin_port, TOKEN};
use common::{config_file, recorder_saga, wait_until, Rig, RunnerProcess, WAIT};
use serde_json::Value;

/// `runner admin ARGS` with the token file given, the test's RUNNER_* left out.
fn admin(token_file: &Path, args: &[&str]) -> Output {
    admin_with(args, &[("--token-file", token_file)])
}

fn admin_with(args: &[&str], leading: &[(&str, &Path)]) -> Output {
    let mut cmd = runner();
    cmd.arg("admin");
    for (flag, path) in leading {
        cmd.arg(flag).arg(path);
    }
    cmd.args(args);
    cmd.output().expect("run runner admin")
}

/// The `runner` binary with the test's RUNNER_* left out.
fn runner() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RUNNER_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn text(out: &Output) -> (String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
        "the token is never printed"
    );
    (stdout, stderr)
}

/// A `runner run` with an ops port and the admin token that has applied `orders`
/// (`o-N` gets event N).
struct Running {
    rig: Rig,
    base: String,
    token_file: PathBuf,
    config: PathBuf,
    _process: RunnerProcess,
}

fn start(orders: &[&str]) -> Running {
    let mut rig = Rig::new(recorder_saga());
    let base = admin_port(&mut rig);
    let token_file = rig.settings.ops.admin_token_file.clone();
    let config = config_file(&rig);
    let nc = rig.connect();
    for (i, order) in orders.iter().enumerate() {
        rig.send(&nc, &format!("e-{order}"), order, i as i64 + 1);
    }
    let process = RunnerProcess::start(&config, None);
    let ready = format!("{base}/ready");
    assert!(wait_until(WAIT, || ureq::get(&ready).call().is_ok()));
    assert!(wait_until(WAIT, || rig
        .consumer_info(&nc, "aggregate")
        .ack_floor
        .stream_seq
        == orders.len() as u64));
    Running {
        rig,
        base,
        token_file,
        config,
        _process: process,
    }
}

#[test]
fn lists_shows_and_steers_one_runner() {
    let r = start(&["o-1", "o-2"]);
    let url = r.base.as_str();
    let run = |args: &[&str]| {
        let mut all = vec!["--url", url];
        all.extend_from_slice(args);
        admin(&r.token_file, &all)
    };

    // The list: one row per instance, no shard column for one port.
    let out = run(&[
        "instances",
        "list",
        "--tenant",
        "acme",
        "--saga",
        "recorder",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let header = stdout.lines().next().unwrap();
    assert!(
        header.starts_with("CORRELATION  STATUS  VERSION"),
        "{stdout}"
    );
    for order in ["o-1", "o-2"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(order))
            .unwrap_or_else(|| panic!("{order} missing:\n{stdout}"));
        assert!(row.contains("active"), "{row}");
    }
    assert!(
        stdout.contains("2 instances of recorder for tenant acme"),
        "{stdout}"
    );
    // A page of one says where the next starts; following it finds the other.
    let out = run(&[
        "instances",
        "list",
        "--tenant",
        "acme",
        "--saga",
        "recorder",
        "--limit",
        "1",
    ]);
    let (stdout, _) = text(&out);
    let cursor = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("more on {url}: --url {url} --after ")))
        .unwrap_or_else(|| panic!("no next page in:\n{stdout}"))
        .to_string();
    let out = run(&[
        "instances",
        "list",
        "--tenant",
        "acme",
        "--saga",
        "recorder",
        "--limit",
        "1",
        "--after",
        &cursor,
    ]);
    let (next_page, _) = text(&out);
    assert!(
        next_page.contains("o-2") && !next_page.contains("o-1"),
        "{next_page}"
    );
    let out = run(&[
        "instances",
        "list",
        "--tenant",
        "acme",
        "--saga",
        "recorder",
        "--limit",
        "1",
        "--all",
        "--json",
    ]);
    let (stdout, _) = text(&out);
    let listed: Value = serde_json::from_str(&stdout).expect("--json is JSON");
    assert_eq!(
        listed["instances"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    assert_eq!(listed["instances"][0]["url"], url);
    assert_eq!(listed["instances"][0]["tenant"], "acme");
    assert_eq!(listed["shards"][0]["next"], Value::Null);

    // One instance: its state, and its history or why there is none.
    let out = run(&[
        "instances",
        "show",
        "--tenant",
        "acme",
        "--saga",
        "recorder",
        "o-2",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("instance acme/recorder/o-2 on {url}")),
        "{stdout}"
    );
    assert!(stdout.contains("\"log\": \"2,\""), "{stdout}");
    assert!(stdout.contains("timers: none"), "{stdout}");
    assert!(
        stdout.contains("history: not served by this Runner")
            || stdout.contains("history: 1 transition\n"),
        "{stdout}"
    );
    let out = run(&[
        "--json",
        "instances",
        "show",
        "--tenant",
        "acme",
        "--saga",
        "recorder",
        "o-2",
    ]);
    let shown: Value = serde_json::from_str(&text(&out).0).expect("--json is JSON");
    assert_eq!(
        shown["shards"][0]["instance"]["state"]["log"], "2,",
        "{shown}"
    );
    // Unknown: the server's 404 and its reason, exit 1.
    let out = run(&[
        "instances",
        "show",
        "--tenant",
        "acme",
        "--saga",
        "recorder",
        "o-9",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: {url} answered 404: no instance recorder/o-9"
        )),
        "{stderr}"
    );

    // Non-2xx answers exit 1 with the server's reason.
    let out = run(&[
        "replay",
        "--tenant",
        "acme",
        "--saga",
        "recorder",
        "--from-seq",
        "1",
        "--confirm",
        "recorder",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("answered 409: not drained"), "{stderr}");
    let out = run(&[
        "instances",
        "list",
        "--tenant",
        "acme",
        "--saga",
        "recorder",
        "--limit",
        "0",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("answered 400: limit must be between 1 and"),
        "{stderr}"
    );
    let wrong = r.rig.dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let out = admin(&wrong, &["--url", url, "store"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("answered 401: missing or wrong bearer token"),
        "{stderr}"
    );
    // A token file that cannot be read: a usage error naming it, nothing sent.
    let missing = r.rig.dir.path().join("no-such-token");
    let out = admin(&missing, &["--url", url, "store"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains(&format!(
            "cannot read the admin token file {}",
            missing.display()
        )),
        "{stderr}"
    );

    // Quarantine: an undecodable message on the single tenant's subject.
    let nc = r.rig.connect();
    r.rig.publish_raw(
        &nc,
        &r.rig.aggregate_subject("_", "OrderPlaced"),
        b"{ not json",
    );
    let listed = || {
        let out = run(&["--json", "quarantine", "list", "--tenant", "_"]);
        let v: Value = serde_json::from_str(&text(&out).0).expect("--json is JSON");
        v["records"].as_array().cloned().unwrap_or_default()
    };
    assert!(wait_until(WAIT, || listed().len() == 1));
    let out = run(&["quarantine", "list", "--tenant", "_"]);
    let (stdout, _) = text(&out);
    assert!(stdout.starts_with("KEY "), "{stdout}");
    assert!(stdout.contains("decode"), "{stdout}");
    assert!(stdout.contains("1 record\n"), "{stdout}");
    let out = run(&["quarantine", "discard", "--tenant", "_"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unnarrowed discard needs --all"
    );
    assert!(text(&out).1.contains("--all"));
    let out = run(&["quarantine", "discard", "--tenant", "_", "--kind", "decode"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with(&format!("{url}: discarded 1: ")),
        "{stdout}"
    );
    assert!(listed().is_empty());
    let out = run(&["deadletters", "list", "--tenant", "acme"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("0 records"), "{stdout}");

    // Without --url and --token-file: the ops port and token file of RUNNER_CONFIG.
    let out = admin_with(&["reload"], &[]);
    assert_eq!(out.status.code(), Some(2), "no settings, no port");
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["admin", "reload"])
        .env("RUNNER_CONFIG", &r.config)
        .env_remove("RUNNER_ADMIN_TOKEN_FILE")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with(&format!("{url}: reloaded")), "{stdout}");

    // The store view, a reload, a drain and a resume.
    let out = run(&["store"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.contains("KEYSPACE") && stdout.contains("TENANT"),
        "{stdout}"
    );
    let out = run(&["reload"]);
    let (stdout, _) = text(&out);
    assert_eq!(
        stdout.trim(),
        format!("{url}: reloaded: sagas recorder v1; effects none")
    );
    let out = run(&["drain", "--wait", "20"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.trim(), format!("{url}: drained"));
    let out = run(&["resume"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout.trim(), format!("{url}: resuming"));
    assert!(wait_until(WAIT, || ureq::get(&format!("{url}/ready"))
        .call()
        .is_ok()));
}

/// Two Runners (two shards): one listing with a SHARD column naming where each row
/// came from, `--json` rows carrying their url; a port that does not answer is
/// reported after the others' rows, with exit 1. The token may come from the
/// environment.
#[test]
fn listings_merge_over_several_runners() {
    let a = start(&["o-1", "o-2"]);
    let b = start(&["o-3"]);
    // Both rigs' files hold the same token.
    let token = a.token_file.as_path();
    let urls_file = a.rig.dir.path().join("shards");
    std::fs::write(&urls_file, format!("# the shards\n{}\n", b.base)).unwrap();
    let list = [
        "instances",
        "list",
        "--tenant",
        "acme",
        "--saga",
        "recorder",
    ];
    let mut args = vec![
        "--url",
        a.base.as_str(),
        "--urls-file",
        urls_file.to_str().unwrap(),
    ];
    args.extend_from_slice(&list);
    let out = admin(token, &args);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("SHARD "), "{stdout}");
    for (base, order) in [(&a.base, "o-1"), (&a.base, "o-2"), (&b.base, "o-3")] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(base.as_str()) && l.contains(order)),
            "{order} from {base} missing:\n{stdout}"
        );
    }
    assert!(stdout.contains("3 instances of recorder"), "{stdout}");

    let mut json_args = args.clone();
    json_args.push("--json");
    let out = admin(token, &json_args);
    let merged: Value = serde_json::from_str(&text(&out).0).expect("--json is JSON");
    let rows = merged["instances"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{merged}");
    let from_b: Vec<&Value> = rows
        .iter()
        .filter(|r| r["url"] == b.base.as_str())
        .collect();
    assert_eq!(from_b.len(), 1, "{merged}");
    assert_eq!(from_b[0]["correlation"], "o-3");

    // The token from RUNNER_ADMIN_TOKEN_FILE; a third port that is not there.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let out = runner()
        .args([
            "admin", "--url", &a.base, "--url", &b.base, "--url", &closed,
        ])
        .args(list)
        .env("RUNNER_ADMIN_TOKEN_FILE", token)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("3 instances of recorder"), "{stdout}");
    assert!(
        stderr.contains(&format!("error: {closed} no answer")),
        "{stderr}"
    );

    // show finds the instance on the shard that has it; the other's 404 is no error.
    let mut show = vec!["--url", a.base.as_str(), "--url", b.base.as_str()];
    show.extend_from_slice(&[
        "instances",
        "show",
        "--tenant",
        "acme",
        "--saga",
        "recorder",
        "o-3",
    ]);
    let out = admin(token, &show);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("instance acme/recorder/o-3 on {}", b.base)),
        "{stdout}"
    );
    assert!(stderr.is_empty(), "{stderr}");
    // Replay acts on one shard: refused before anything is sent.
    let mut replay = vec!["--url", a.base.as_str(), "--url", b.base.as_str()];
    replay.extend_from_slice(&[
        "replay",
        "--tenant",
        "acme",
        "--saga",
        "recorder",
        "--from-seq",
        "1",
        "--confirm",
        "recorder",
    ]);
    let out = admin(token, &replay);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("exactly one --url"));
}
