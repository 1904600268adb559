//! A writer killed in the middle of an LMDB commit, while another process keeps the
//! store open (an operator's tool, or the test harness), must not make its successor
//! read an older snapshot.
//!
//! LMDB publishes a commit in two steps: the meta page is written (synchronously), then
//! the transaction id in the shared lock file is updated. A process killed between the
//! two leaves the lock file one transaction behind the data file. The first process to
//! open the store rebuilds the lock file from the data file, but while another process
//! keeps it open nobody does, and readers take the stale id until the next writer,
//! finding the write lock's owner dead, repairs it. A successor that executes events on
//! that stale snapshot loses the last commit's updates (the fault-injection suite once
//! saw exactly that). `Store::open` therefore takes the write lock once before it
//! returns; this test kills writers at random points of their commits and checks that
//! a store opened afterwards reads the newest commit at once.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runner::store::{CommitBatch, Seen, Store, StreamPosition};
use runner::types::{SagaName, TenantId};

const CHILD: &str = "RUNNER_TEST_STORE_CHILD";
const DIR: &str = "RUNNER_TEST_STORE_DIR";
const MAP: usize = 64 << 20;

fn tenant() -> TenantId {
    "acme".parse().unwrap()
}

fn saga() -> SagaName {
    "counter".parse().unwrap()
}

/// The counter: the newest sequence the checkpoint has seen.
fn counter(store: &Store) -> u64 {
    let cp = store.checkpoint(&tenant(), &saga()).unwrap();
    cp.streams.get("S").copied().unwrap_or(0)
}

/// Runs this test binary's `child` test in a new process, in role `role`.
fn spawn_child(role: &str, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, role)
    .env(DIR, dir)
    .stdin(Stdio::null());
    cmd
}

/// Not a test of its own: the writer and reader processes of the test below.
#[test]
#[ignore = "run by store_restart's own test as a child process"]
fn child() {
    let Ok(role) = std::env::var(CHILD) else {
        return;
    };
    let dir = std::path::PathBuf::from(std::env::var(DIR).unwrap());
    let store = Store::open(&dir, MAP).unwrap();
    match role.as_str() {
        // Commits forever, one checkpoint step each, until killed.
        "writer" => {
            let mut next = counter(&store) + 1;
            loop {
                let batch = CommitBatch {
                    seen: vec![Seen {
                        tenant: tenant(),
                        saga: saga(),
                        position: StreamPosition {
                            stream: "S".into(),
                            seq: next,
                        },
                    }],
                    ..CommitBatch::default()
                };
                store.commit(&batch).unwrap();
                next += 1;
            }
        }
        // What a reader sees first, then after a write of its own.
        "reader" => {
            let first = counter(&store);
            store.probe_write().unwrap();
            let after = counter(&store);
            println!("READ {first} {after}");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_store_opened_after_a_writer_died_mid_commit_reads_its_last_commit() {
    let dir = runner::dev::TempDir::new("store-restart").unwrap();
    let path = dir.path().join("store");
    // Held open throughout, so no process ever rebuilds the lock file.
    let holder = Store::open(&path, MAP).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut stale = Vec::new();
    let rounds = 40;
    for round in 0..rounds {
        let mut writer = spawn_child("writer", &path)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Let it commit a while, then kill it at a random point of some commit.
        let before = counter(&holder);
        let started = Instant::now();
        while counter(&holder) < before + 3 && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(2));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % 20_000));
        writer.kill().unwrap();
        writer.wait().unwrap();
        let out = spawn_child("reader", &path).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.split_once("READ ").map(|(_, rest)| rest))
            .unwrap_or_else(|| {
                panic!(
                    "reader said: {text} {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let mut numbers = line.split_whitespace();
        let (first, after) = (numbers.next().unwrap(), numbers.next().unwrap());
        let (first, after): (u64, u64) = (first.parse().unwrap(), after.parse().unwrap());
        assert!(
            after >= before + 3,
            "round {round}: the writer's commits are there"
        );
        if first != after {
            stale.push((round, first, after));
        }
    }
    assert!(
        stale.is_empty(),
        "a freshly opened store read an older snapshot than its own next read in {} of {rounds} rounds (round, first, after): {stale:?}",
        stale.len()
    );
}
