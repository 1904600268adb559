//! The web console (`GET /ui`, docs/console.md) in a real headless browser: Debian's
//! `chromium` driven by Playwright (`tests/console/console_test.py`), against a real
//! `runner run --mode combined` and a real nats-server. The example order workflow runs
//! three orders: o-1's customer id is markup, which must show as text; o-2's
//! `MarkPaid` waits in the outbox (the Gateway answers 503); o-3's is rejected (a dead
//! letter). o-4 arrives while a bad manifest is in force and is quarantined, then the
//! manifest is fixed. The browser lists the instances, pages through them, retries
//! o-4's record (which then applies), discards the dead letter, opens o-2 with its
//! outbox item and o-1 with its history timeline. Screenshots of each page go to
//! `target/console-screenshots/`.
//!
//! Needs `/usr/bin/chromium` and the Python package `playwright` (`.ci/ensure-browser`
//! installs both). `RUNNER_SKIP_BROWSER=1` skips the test; nothing else does.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ops::{admin_port, call, call_json, TOKEN};
use common::{config_file, wait_until, Rig, RunnerProcess, WAIT};
use runner::dev::{example_manifest, FakeGateway, Reply};
use runner::settings::Mode;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser script at most (it waits 20 s per step at most).
const BROWSER_DEADLINE: Duration = Duration::from_secs(240);
/// o-1's customer id: markup an escaping mistake would turn into an element.
const MARKUP: &str = "<img src=x onerror=\"document.title='owned'\"><b>bold</b>";

fn skipped() -> bool {
    if std::env::var("RUNNER_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("SKIPPED: the web console's browser test (RUNNER_SKIP_BROWSER=1)");
        return true;
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run .ci/ensure-browser (or set RUNNER_SKIP_BROWSER=1 to skip this test)"
    );
    let playwright = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .status();
    assert!(
        playwright.is_ok_and(|s| s.success()),
        "the Python package playwright is missing: run .ci/ensure-browser (or set RUNNER_SKIP_BROWSER=1)"
    );
    false
}

/// `manifests/example/sagas.yaml` under the rig's namespace, program paths absolute;
/// `faulty`: the `OrderPlaced` trigger's correlate adds 1 to a text (a program fault
/// that quarantines the event, as a bad deploy would).
fn example_sagas(rig: &Rig, faulty: bool) -> Value {
    let source = example_manifest();
    let base = source.parent().unwrap().to_path_buf();
    let mut doc = runner::manifest::read_document(&source).unwrap();
    for saga in doc["sagas"].as_array_mut().unwrap() {
        for trigger in saga["triggers"].as_array_mut().unwrap() {
            let subject = trigger["subject"].as_str().unwrap().to_string();
            if faulty && subject.ends_with("OrderPlaced") {
                trigger["correlate"] = json!({"$add": [{"$get": "event.aggregate_id"}, 1]});
            }
            trigger["subject"] = json!(format!("{}.{subject}", rig.ns));
        }
        for key in ["on_event", "compensation"] {
            if let Some(rel) = saga[key].as_str() {
                saga[key] = json!(base.join(rel));
            }
        }
    }
    doc
}

/// An `OrderPlaced` that happened now: the saga's payment timer (15 minutes after the
/// event) must not be due already, or it would race the charge's result.
fn order_placed(order: &str, customer: &str) -> Value {
    let now = runner::timefmt::format_rfc3339_ms(runner::timefmt::now_ms()).unwrap();
    json!({
        "event_id": format!("e-{order}"), "tenant_id": "acme", "aggregate_type": "order",
        "aggregate_id": order, "event_type": "OrderPlaced", "occurred_at": now,
        "payload": {"customer_id": customer, "total": 4200}, "metadata": {"correlation_id": order}
    })
}

fn get(base: &str, path: &str) -> (u16, Value) {
    let (status, body) = call("GET", &format!("{base}{path}"), Some(TOKEN));
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn status_of(base: &str, order: &str) -> Option<String> {
    let (status, body) = get(
        base,
        &format!("/admin/instances/acme/order_fulfilment/{order}"),
    );
    (status == 200).then(|| body["status"].as_str().unwrap_or_default().to_string())
}

fn records(base: &str, what: &str) -> usize {
    let (status, body) = get(base, &format!("/admin/{what}?tenant=acme"));
    assert_eq!(status, 200, "{body}");
    body["records"].as_array().map_or(0, Vec::len)
}

fn reload(base: &str) {
    let (status, body) = call_json(
        "POST",
        &format!("{base}/admin/reload"),
        Some(TOKEN),
        &json!({}),
    );
    assert_eq!(status, 200, "{body}");
}

/// `target/console-screenshots` (the target directory is the parent of the tests'
/// temp dir).
fn screenshot_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .to_path_buf();
    target.join("console-screenshots")
}

#[test]
fn the_console_lists_opens_and_retries_in_a_real_browser() {
    if skipped() {
        return;
    }
    let gateway = FakeGateway::start(|req, _| match req.body["aggregate_id"].as_str() {
        Some("o-3") => Reply {
            body: r#"{"error": "order is closed"}"#.into(),
            ..Reply::status(400)
        },
        // o-2's MarkPaid stays in the outbox, retried.
        Some("o-2") => Reply::status(503),
        _ => Reply::status(202),
    })
    .unwrap();
    let mut rig = Rig::new(json!([]));
    let base = admin_port(&mut rig);
    let sagas = rig.dir.path().join("example-sagas.json");
    std::fs::write(&sagas, example_sagas(&rig, false).to_string()).unwrap();
    rig.settings.mode = Mode::Combined;
    rig.settings.manifests.sagas = vec![sagas.clone()];
    rig.settings.manifests.effects = vec![example_manifest().with_file_name("effects.yaml")];
    rig.settings.ops.console_shards = vec!["http://runner-b.invalid:9090".into()];
    rig.settings.relay.gateway_url = gateway.url().to_string();
    let config = config_file(&rig);
    let log = rig.dir.path().join("runner.log");
    let _runner = RunnerProcess::start_logged(&config, None, &log);
    assert!(
        wait_until(WAIT, || ureq::get(&format!("{base}/ready")).call().is_ok()),
        "runner ready; its log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let nc = rig.connect();
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    for (order, customer) in [("o-1", MARKUP), ("o-2", "c-2"), ("o-3", "c-3")] {
        rig.publish(&nc, &subject, &order_placed(order, customer));
    }
    let orders = ["o-1", "o-2", "o-3"];
    let settled = || {
        orders
            .iter()
            .all(|o| status_of(&base, o).as_deref() == Some("completed"))
            && records(&base, "deadletters") == 1
    };
    assert!(
        wait_until(WAIT, settled),
        "three orders completed ({:?}), o-3's MarkPaid dead-lettered ({}); the runner's log:\n{}",
        orders.map(|o| status_of(&base, o)),
        records(&base, "deadletters"),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        wait_until(WAIT, || gateway
            .received()
            .iter()
            .any(|c| c.body["aggregate_id"] == "o-2")),
        "o-2's MarkPaid tried"
    );
    // A bad deploy: o-4 faults in its correlate and is quarantined; then the fix.
    std::fs::write(&sagas, example_sagas(&rig, true).to_string()).unwrap();
    reload(&base);
    rig.publish(&nc, &subject, &order_placed("o-4", "c-4"));
    assert!(
        wait_until(WAIT, || records(&base, "quarantine") == 1),
        "o-4 quarantined"
    );
    std::fs::write(&sagas, example_sagas(&rig, false).to_string()).unwrap();
    reload(&base);
    assert_eq!(status_of(&base, "o-4"), None, "not applied yet");

    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/console_test.py");
    let mut browser = Command::new("python3")
        .arg(&script)
        .env("CONSOLE_BASE", &base)
        // The token travels in the environment, not on a command line others can read.
        .env("CONSOLE_TOKEN", TOKEN)
        .env("CONSOLE_SCREENSHOTS", &shots)
        .env("CONSOLE_CHROMIUM", CHROMIUM)
        .env("CONSOLE_MARKUP", MARKUP)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run python3");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = browser.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BROWSER_DEADLINE {
            let _ = browser.kill();
            let _ = browser.wait();
            panic!("the browser script took over {BROWSER_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the browser script failed: {status}");

    // What the browser did, seen from the API.
    assert_eq!(records(&base, "quarantine"), 0, "the retried record went");
    assert!(status_of(&base, "o-4").is_some(), "o-4 was applied");
    assert_eq!(
        records(&base, "deadletters"),
        0,
        "the dead letter was discarded"
    );
    for page in [
        "overview",
        "instances",
        "quarantine",
        "deadletters",
        "instance",
    ] {
        let shot = shots.join(format!("{page}.png"));
        let size = std::fs::metadata(&shot).map_or(0, |m| m.len());
        assert!(size > 1000, "screenshot {} ({size} bytes)", shot.display());
    }
}
