//! Disk faults against the real binary: a store that fills up (LMDB `MAP_FULL`) at its
//! most and one whose map grows instead, and a store directory that cannot be created at
//! start-up.

mod common;

use std::time::Duration;

use common::{config_file, free_port, wait_until, Rig, RunnerProcess};
use runner::settings::Mode;
use runner::store::Store;
use runner::types::TenantId;
use serde_json::{json, Value};

const EVENTS: usize = 400;
const BLOB: usize = 4_000;

/// Keeps each event's 4 KB payload in its instance's state: a small map fills fast.
fn hoarding_saga() -> Value {
    json!([{
        "name": "hoard",
        "triggers": [{"subject": "{ns}.aggregate.*.order.*", "start": true,
                      "correlate": {"$get": "event.aggregate_id"}}],
        "on_event": {"output": {"state": {"blob": {"$get": "event.payload.blob"}}}}
    }])
}

/// `/ready`'s status and body; `None` while the port does not answer.
fn ready(base: &str) -> Option<(u16, Value)> {
    let answer = match ureq::get(&format!("{base}/ready"))
        .timeout(Duration::from_secs(5))
        .call()
    {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(_) => return None,
    };
    let status = answer.status();
    let body = serde_json::from_str(&answer.into_string().ok()?).ok()?;
    Some((status, body))
}

/// (instances, instances applied whole: the blob in the state and the event's dedupe
/// marker, both written by the one transaction).
fn applied(path: &std::path::Path) -> (usize, usize) {
    let store = Store::open(path, 256 << 20).unwrap();
    let acme: TenantId = "acme".parse().unwrap();
    let saga = "hoard".parse().unwrap();
    let instances = store.instances(&acme, &saga, 100_000).unwrap();
    let whole = instances
        .iter()
        .filter(|(_, r)| {
            let blob_ok = r.state["blob"].as_str().is_some_and(|b| b.len() == BLOB);
            let event = r.last_event_id.parse().unwrap();
            blob_ok && r.transitions == 1 && store.is_duplicate(&acme, &saga, &event).unwrap()
        })
        .count();
    (instances.len(), whole)
}

#[test]
fn a_full_store_stops_intake_commits_nothing_partial_and_recovers_when_enlarged() {
    let mut rig = Rig::new(hoarding_saga());
    let port = free_port();
    let small = rig.dir.path().join("small-store");
    rig.settings.mode = Mode::Saga;
    rig.settings.storage.path = small.clone();
    // A map that may not grow: full is full.
    rig.settings.storage.map_size_mib = 1;
    rig.settings.storage.max_size_mib = 1;
    rig.settings.ops.listen = format!("127.0.0.1:{port}");
    let config = config_file(&rig);
    let nc = rig.connect();
    let blob = "x".repeat(BLOB);
    for i in 0..EVENTS {
        let body = common::event(
            &format!("e-{i}"),
            "acme",
            &format!("o-{i}"),
            "OrderPlaced",
            json!({ "blob": blob }),
        );
        rig.publish(&nc, &rig.aggregate_subject("acme", "OrderPlaced"), &body);
    }

    let base = format!("http://127.0.0.1:{port}");
    let runner = RunnerProcess::start(&config, None);
    let full = |r: &Option<(u16, Value)>| {
        r.as_ref().is_some_and(|(status, body)| {
            *status == 503
                && body["intake_stopped"]
                    .as_str()
                    .unwrap_or("")
                    .contains("full")
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), || full(&ready(&base))),
        "/ready reports the full store: {:?}",
        ready(&base)
    );
    // It stays stopped (no resume while less than a sixteenth of the map is free), and
    // the consumer still holds what did not fit.
    std::thread::sleep(Duration::from_secs(2));
    assert!(full(&ready(&base)), "{:?}", ready(&base));
    drop(runner);
    let (instances, whole) = applied(&small);
    assert!(instances < EVENTS, "the store filled up before the end");
    assert_eq!(whole, instances, "every stored transition is whole");

    // Space is made (the map may grow now; it opens smaller than its file): the rest is
    // applied, nothing twice, and the map grew as it filled.
    rig.settings.storage.max_size_mib = 64;
    let config = config_file(&rig);
    let log = rig.dir.path().join("runner.log");
    let runner = RunnerProcess::start_logged(&config, None, &log);
    assert!(wait_until(Duration::from_secs(30), || ready(&base)
        .is_some_and(|(s, _)| s == 200)));
    let consumer_done = || {
        let info = rig.consumer_info(&nc, "aggregate");
        info.num_pending == 0 && info.num_ack_pending == 0
    };
    assert!(wait_until(Duration::from_secs(60), consumer_done));
    assert!(
        ready(&base).is_some_and(|(s, _)| s == 200),
        "intake never stopped while the map grew: {:?}",
        ready(&base)
    );
    drop(runner);
    assert_eq!(applied(&small), (EVENTS, EVENTS));
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("map was full and grew"),
        "the growth is logged: {logged}"
    );
}

#[test]
fn a_store_directory_that_cannot_be_created_is_a_clear_error_at_start_up() {
    let mut rig = Rig::new(hoarding_saga());
    let file = rig.dir.path().join("not-a-directory");
    std::fs::write(&file, "a file where the store's parent should be").unwrap();
    rig.settings.storage.path = file.join("store");
    let config = config_file(&rig);
    let (code, stderr) = RunnerProcess::run_to_exit(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&file.join("store").display().to_string()),
        "the error names the path: {stderr}"
    );
}

/// Two saga runners on one store would overwrite each other's transitions: the second
/// refuses to start, naming the first; once the first is gone (killed, so the kernel
/// dropped its lock), a successor starts.
#[test]
fn a_second_saga_runner_on_one_store_refuses_to_start() {
    let rig = Rig::new(hoarding_saga());
    let config = config_file(&rig);
    let lock = rig.settings.storage.path.join("runner.lock");
    // Whether the lock file names `runner` as its holder, soon enough.
    let holds = |runner: &RunnerProcess| {
        // The pid, then the host: "pid 12" must not pass for "pid 123".
        let holder = format!("pid {} on ", runner.pid());
        wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&lock).is_ok_and(|t| t.contains(&holder))
        })
    };
    let first = RunnerProcess::start(&config, None);
    assert!(holds(&first), "the first runner takes the lock");
    let (code, stderr) = RunnerProcess::run_to_exit(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("in use by another runner")
            && stderr.contains(&format!("pid {} on ", first.pid())),
        "the error names the holder: {stderr}"
    );
    drop(first);
    let second = RunnerProcess::start(&config, None);
    assert!(
        holds(&second),
        "a successor takes the lock once the first is gone"
    );
}
