//! Tenant placement (issue 7): two saga shards (real `runner run --mode saga`
//! processes, one nats-server) read a placement bucket; moving a tenant between them
//! while its events flow hands its state over, and every event is applied once, in
//! order per instance. Needs nats-server >= 2.10 (per-tenant workflow filters).

mod common;

use std::time::Duration;

use common::ops::{call, TOKEN};
use common::{event, free_port, recorder_saga, wait_until, Rig, RunnerProcess};
use runner::settings::{Mode, Settings};
use serde_json::{json, Value};

const INSTANCES: usize = 6;
const EVENTS: usize = 240;

struct Shard {
    base: String,
    config: std::path::PathBuf,
    process: RunnerProcess,
}

fn shard_settings(rig: &Rig, name: &str, bucket: &str) -> Settings {
    let mut s = rig.settings.clone();
    s.mode = Mode::Saga;
    s.tenancy.shard = name.into();
    s.tenancy.placement_bucket = bucket.into();
    s.streams.aggregate_filter = format!("{}.aggregate.{{tenant}}.>", rig.ns);
    s.streams.workflow_filter = format!("{}.workflow.*.{{tenant}}.>", rig.ns);
    s.storage.path = rig.dir.path().join(format!("store-{name}"));
    s.ops.listen = format!("127.0.0.1:{}", free_port());
    let token_file = common::ops::token_file(rig);
    s.ops.admin_token_file = token_file;
    s
}

fn start_shard(rig: &Rig, name: &str, bucket: &str) -> Shard {
    let settings = shard_settings(rig, name, bucket);
    settings.validate().unwrap();
    let path = rig.dir.path().join(format!("shard-{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
    let base = format!("http://{}", settings.ops.listen);
    let process = RunnerProcess::start(&path, None);
    assert!(
        wait_until(Duration::from_secs(20), || ureq::get(&format!(
            "{base}/ready"
        ))
        .call()
        .is_ok()),
        "shard {name} ready"
    );
    Shard {
        base,
        config: path,
        process,
    }
}

/// Publishes `EVENTS` events for each tenant, round robin over `INSTANCES` instances,
/// 10 ms apart, from a thread of its own.
fn publish_in_background(
    rig: &Rig,
    tenants: &'static [&'static str],
) -> std::thread::JoinHandle<()> {
    let (url, ns) = (rig.url.clone(), rig.ns.clone());
    std::thread::spawn(move || {
        let nc = runner::nats_io::connect(&url, "placement-test").unwrap();
        let js = nats::jetstream::new(nc);
        for n in 0..EVENTS {
            for tenant in tenants {
                let order = format!("o-{}", n % INSTANCES);
                let body = event(
                    &format!("{tenant}-e-{n}"),
                    tenant,
                    &order,
                    "OrderPlaced",
                    json!({"n": n}),
                );
                let subject = format!("{ns}.aggregate.{tenant}.order.OrderPlaced");
                js.publish(&subject, body.to_string()).unwrap();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

fn placement_bucket(rig: &Rig) -> (String, nats::kv::Store) {
    let bucket = format!("PLACE_{}", &rig.ns[1..]);
    let js = nats::jetstream::new(rig.connect());
    let kv = js
        .create_key_value(&nats::kv::Config {
            bucket: bucket.clone(),
            history: 5,
            ..Default::default()
        })
        .unwrap();
    (bucket, kv)
}

fn log_of(shard: &Shard, tenant: &str, order: &str) -> Option<String> {
    let url = format!("{}/admin/instances/{tenant}/recorder/{order}", shard.base);
    let (status, body) = call("GET", &url, Some(TOKEN));
    (status == 200).then(|| {
        serde_json::from_str::<Value>(&body).unwrap()["state"]["log"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    })
}

/// What the recorder's log of instance `i` reads once every event was applied once.
fn expected_log(i: usize) -> String {
    (0..EVENTS)
        .filter(|n| n % INSTANCES == i)
        .map(|n| format!("{n},"))
        .collect()
}

fn place(kv: &nats::kv::Store, tenant: &str, shard: &str) {
    kv.put(tenant, json!({ "shard": shard }).to_string())
        .unwrap();
}

#[test]
fn a_tenant_moves_between_shards_while_its_events_flow() {
    let rig = Rig::new(recorder_saga());
    let (bucket, kv) = placement_bucket(&rig);
    place(&kv, "acme", "a");
    place(&kv, "globex", "b");
    let a = start_shard(&rig, "a", &bucket);
    let b = start_shard(&rig, "b", &bucket);

    // Both tenants' events flow; acme moves from a to b a third of the way through.
    let publisher = publish_in_background(&rig, &["acme", "globex"]);
    assert!(
        wait_until(Duration::from_secs(20), || log_of(&a, "acme", "o-0")
            .is_some_and(|l| l.len() > 20)),
        "shard a serves acme at first"
    );
    place(&kv, "acme", "b");
    publisher.join().unwrap();

    for i in 0..INSTANCES {
        let order = format!("o-{i}");
        let want = expected_log(i);
        assert!(
            wait_until(Duration::from_secs(30), || log_of(&b, "acme", &order)
                .as_deref()
                == Some(want.as_str())),
            "acme {order} on shard b: every event once, in order; got {:?}",
            log_of(&b, "acme", &order)
        );
        assert_eq!(
            log_of(&b, "globex", &order).as_deref(),
            Some(expected_log(i).as_str()),
            "globex stays on b, complete"
        );
        assert_eq!(
            log_of(&a, "acme", &order),
            None,
            "nothing of acme is left on a"
        );
    }
    let owner = kv.get("owner.acme").unwrap().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&owner).unwrap()["shard"],
        "b"
    );
}

/// A rolling restart of a shard: SIGTERM (drain) while its events flow, then start it
/// again. Every event is applied once, in order, and every command leaves the outbox.
#[test]
fn a_shard_restarted_with_a_drain_mid_flow_loses_and_repeats_nothing() {
    let rig = Rig::new(recorder_saga());
    let (bucket, kv) = placement_bucket(&rig);
    place(&kv, "acme", "a");
    let mut a = start_shard(&rig, "a", &bucket);
    let publisher = publish_in_background(&rig, &["acme"]);
    assert!(wait_until(Duration::from_secs(20), || log_of(
        &a, "acme", "o-0"
    )
    .is_some_and(|l| l.len() > 20)));
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &a.process.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = a
        .process
        .wait_exit(Duration::from_secs(30))
        .expect("drains and exits");
    assert_eq!(status.code(), Some(0));
    a.process = RunnerProcess::start(&a.config, None);
    publisher.join().unwrap();
    for i in 0..INSTANCES {
        let order = format!("o-{i}");
        let want = expected_log(i);
        assert!(
            wait_until(Duration::from_secs(30), || log_of(&a, "acme", &order)
                .as_deref()
                == Some(want.as_str())),
            "acme {order}: every event once, in order; got {:?}",
            log_of(&a, "acme", &order)
        );
    }
    let commands = rig.published_commands(&rig.connect(), EVENTS * 2);
    assert_eq!(
        commands.len(),
        EVENTS,
        "one command per event left the outbox"
    );
}

/// A tenant moved to a shard that is not running yet: the old owner hands it over once
/// and keeps its hands off while the bucket keeps changing (other tenants placed); the
/// new shard imports the tenant when it starts, with every event applied once.
#[test]
fn a_handover_waits_for_a_new_shard_that_starts_later() {
    let rig = Rig::new(recorder_saga());
    let (bucket, kv) = placement_bucket(&rig);
    place(&kv, "acme", "a");
    let a = start_shard(&rig, "a", &bucket);
    publish_in_background(&rig, &["acme"]).join().unwrap();
    let done = |shard: &Shard| {
        (0..INSTANCES).all(|i| {
            log_of(shard, "acme", &format!("o-{i}")).as_deref() == Some(expected_log(i).as_str())
        })
    };
    assert!(wait_until(Duration::from_secs(30), || done(&a)));
    place(&kv, "acme", "b");
    assert!(
        wait_until(Duration::from_secs(10), || log_of(&a, "acme", "o-0")
            .is_none()),
        "shard a handed acme over"
    );
    // The bucket changes again and again; shard a must not hand acme over a second time
    // (an empty export would overwrite the real one).
    for n in 0..5 {
        place(&kv, &format!("other{n}"), "c");
        std::thread::sleep(Duration::from_millis(400));
    }
    let b = start_shard(&rig, "b", &bucket);
    assert!(
        wait_until(Duration::from_secs(30), || done(&b)),
        "shard b imported acme whole; got {:?}",
        log_of(&b, "acme", "o-0")
    );
    assert_eq!(log_of(&a, "acme", "o-0"), None);
}
