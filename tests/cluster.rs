//! The Runner on a 3-node JetStream cluster (real `nats-server` processes on loopback,
//! streams with 3 replicas) while a node is lost: the real binary in combined mode, its
//! effect calling a real HTTP server, a NATS node killed (SIGKILL) mid-run and started
//! again. Everything is checked as an outsider sees it: the admin API, the streams and
//! their consumers, and the requests the HTTP server received.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::ops::{call, metric, TOKEN};
use common::{config_file, event, recorder_saga, wait_until, Rig, RunnerProcess};
use runner::dev::{read_stream, FakeGateway, NatsCluster, Reply};
use runner::settings::Mode;
use serde_json::{json, Value};

const EVENTS: usize = 300;
const INSTANCES: usize = 100;
/// Between two publishes: the kill comes a third of the way in, and events still flow
/// while the node is down.
const PACE: Duration = Duration::from_millis(15);

/// A rig like [`Rig::new`] with the recorder saga, on the cluster: streams with 3
/// replicas, combined mode, the recorder's `note` effect POSTing to `sink`, the ops port
/// on a free port with an admin token.
fn cluster_rig(cluster: &NatsCluster, sink: &FakeGateway) -> (Rig, u16) {
    let mut rig = Rig::on(&cluster.url(), recorder_saga(), 3);
    let effects = rig.dir.path().join("effects.json");
    let manifest = json!({"effects": [{"name": "note", "provider": "http", "timeout_ms": 2000,
        "http": {"url": format!("{}/v1/notes", sink.url())}}]});
    std::fs::write(&effects, manifest.to_string()).unwrap();
    let token_file = common::ops::token_file(&rig);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = &mut rig.settings;
    s.mode = Mode::Combined;
    s.manifests.effects = vec![effects];
    // The claims bucket (R3 like the streams) is the gate across effect replicas.
    s.effects.workers = 8;
    s.ops.listen = format!("127.0.0.1:{port}");
    s.ops.admin_token_file = token_file;
    s.validate().unwrap();
    (rig, port)
}

/// Publishes event `i` (instance `o-{i % INSTANCES}`, payload `n = i`) until JetStream
/// acks it, with `Nats-Msg-Id` = its event id so a retry of a publish that did land is
/// dropped as a duplicate.
fn publish_until_acked(js: &nats::jetstream::JetStream, rig: &Rig, i: usize) {
    let id = format!("e-{i}");
    let order = format!("o-{}", i % INSTANCES);
    let body = event(&id, "acme", &order, "OrderPlaced", json!({ "n": i })).to_string();
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    let first = Instant::now();
    let mut tries = 0;
    loop {
        let options = nats::jetstream::PublishOptions {
            id: Some(id.clone()),
            timeout: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        tries += 1;
        match js.publish_with_options(&subject, body.as_bytes(), &options) {
            Ok(_) if tries > 1 => {
                eprintln!("{id} acked after {tries} tries over {:?}", first.elapsed());
                return;
            }
            Ok(_) => return,
            Err(e) if first.elapsed() < Duration::from_secs(30) => {
                if tries == 1 {
                    eprintln!("{id} not acked ({e}); publishing it again until it is");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("publish of {id} never acked: {e}"),
        }
    }
}

/// Where a stream's (or, with `consumer`, a consumer's) leader is.
fn leader_of(
    cluster: &NatsCluster,
    js: &nats::jetstream::JetStream,
    stream: &str,
    consumer: Option<&str>,
) -> Option<usize> {
    let leader = match consumer {
        None => js.stream_info(stream).ok()?.cluster.leader?,
        Some(c) => js.consumer_info(stream, c).ok()?.cluster.leader?,
    };
    cluster.node_index(&leader)
}

/// Asks the leader of a stream (or consumer) to step down until a node for which
/// `wanted` holds leads it.
fn move_leader(
    cluster: &NatsCluster,
    nc: &nats::Connection,
    stream: &str,
    consumer: Option<&str>,
    wanted: impl Fn(usize) -> bool,
) {
    let js = nats::jetstream::new(nc.clone());
    let api = match consumer {
        None => format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
        Some(c) => format!("$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{c}"),
    };
    for _ in 0..20 {
        let Some(now) = leader_of(cluster, &js, stream, consumer) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        if wanted(now) {
            return;
        }
        let _ = nc.request_timeout(&api, "", Duration::from_secs(2));
        wait_until(Duration::from_secs(10), || {
            std::thread::sleep(Duration::from_millis(100));
            leader_of(cluster, &js, stream, consumer).is_some_and(|l| l != now)
        });
    }
    panic!("could not move the leader of {stream} {consumer:?}");
}

/// Leaders placed so that losing `node` (not the runner's) takes the leaders of the
/// saga intake and of the effect commands with it: the aggregate and commands streams
/// and their consumers led by `node`. The workflow events stream (effect results) is
/// led by another node: losing its leader is the other test's scenario.
fn place_leaders_for_intake_outage(
    cluster: &NatsCluster,
    rig: &Rig,
    nc: &nats::Connection,
    node: usize,
) {
    let s = &rig.settings.streams;
    let durable = &rig.settings.consumer.durable;
    for (stream, consumer) in [
        (&s.aggregate_events, format!("{durable}-aggregate")),
        (&s.workflow_commands, format!("{durable}-effects-note")),
    ] {
        move_leader(cluster, nc, stream, None, |l| l == node);
        move_leader(cluster, nc, stream, Some(&consumer), |l| l == node);
    }
    move_leader(cluster, nc, &s.workflow_events, None, |l| l != node);
}

/// Leaders placed so that losing `node` stops result publishes while events and effect
/// commands keep flowing: the workflow events stream led by `node`; the aggregate and
/// commands streams and their consumers by others.
fn place_leaders_for_result_outage(
    cluster: &NatsCluster,
    rig: &Rig,
    nc: &nats::Connection,
    node: usize,
) {
    let s = &rig.settings.streams;
    let durable = &rig.settings.consumer.durable;
    for (stream, consumer) in [
        (&s.aggregate_events, format!("{durable}-aggregate")),
        (&s.workflow_commands, format!("{durable}-effects-note")),
    ] {
        move_leader(cluster, nc, stream, None, |l| l != node);
        move_leader(cluster, nc, stream, Some(&consumer), |l| l != node);
    }
    move_leader(cluster, nc, &s.workflow_events, None, |l| l == node);
}

fn consumer_done(js: &nats::jetstream::JetStream, stream: &str, durable: &str) -> bool {
    let (Ok(info), Ok(stream_info)) = (js.consumer_info(stream, durable), js.stream_info(stream))
    else {
        return false;
    };
    info.num_pending == 0
        && info.num_ack_pending == 0
        && info.ack_floor.stream_seq == stream_info.state.last_seq
        && stream_info.state.messages as usize == EVENTS
}

/// The node that leads the saga intake (aggregate stream and consumer) and the effect
/// commands (stream and consumer) dies; the runner's own connection stays up. The
/// publisher and the runner wait out the leader elections.
#[test]
fn losing_a_nats_node_mid_run_loses_and_duplicates_nothing() {
    node_loss(Victim::NotTheRunners);
}

/// The runner's own node dies, and with it the leader of the workflow events stream, so
/// effect results cannot be published for the election (4–9 s on nats-server 2.9)
/// while commands keep coming and JetStream redelivers them (ack wait 1 s). A command
/// whose call is recorded is published and acked however often it was delivered (this
/// once quarantined such copies as `MaxDeliver`).
#[test]
fn losing_the_node_the_runner_is_connected_to_loses_and_duplicates_nothing() {
    node_loss(Victim::TheRunners);
}

/// Which node to kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    /// One the runner is not connected to: the cluster, not the client, has to cope.
    NotTheRunners,
    /// The runner's own: its connection drops and it has to reconnect to another node.
    TheRunners,
}

/// 300 events over 100 instances are published while node `victim` is killed and,
/// four seconds later, started again; then every outcome is checked.
fn node_loss(victim: Victim) {
    let started = Instant::now();
    let mut cluster = NatsCluster::start(3).expect("start a 3-node nats cluster");
    let sink = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let (rig, port) = cluster_rig(&cluster, &sink);
    let nc = rig.connect();
    let js = nats::jetstream::new(nc.clone());
    let info = js
        .stream_info(&rig.settings.streams.aggregate_events)
        .unwrap();
    assert_eq!(info.config.num_replicas, 3, "streams are created with R3");
    assert_eq!(info.cluster.replicas.len(), 2, "{:?}", info.cluster);

    let config = config_file(&rig);
    let _runner = RunnerProcess::start(&config, None);
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        wait_until(Duration::from_secs(20), || ureq::get(&format!(
            "{base}/ready"
        ))
        .call()
        .is_ok()),
        "the runner gets ready"
    );
    let (victim, why): (usize, String) = match victim {
        Victim::NotTheRunners => {
            let runner_node = cluster.node_of_client("runner");
            let node = (0..cluster.size())
                .find(|&i| Some(i) != runner_node)
                .unwrap();
            place_leaders_for_intake_outage(&cluster, &rig, &nc, node);
            (
                node,
                "not the runner's node; leading the aggregate and commands streams and their consumers".into(),
            )
        }
        Victim::TheRunners => {
            let node = cluster
                .node_of_client("runner")
                .expect("the runner is connected to a node");
            place_leaders_for_result_outage(&cluster, &rig, &nc, node);
            (
                node,
                "the runner's node, leading the workflow events stream".into(),
            )
        }
    };
    eprintln!(
        "cluster up and runner ready after {:?}; killing {} ({why})",
        started.elapsed(),
        cluster.node_name(victim)
    );

    let published = AtomicUsize::new(0);
    let mut killed_at = Instant::now();
    let metrics = || call("GET", &format!("{base}/metrics"), None).1;
    let acked = || metric(&metrics(), "runner_acked_total").unwrap_or(0.0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let nc = runner::nats_io::connect(&rig.url, "runner-test-publisher").unwrap();
            let js = nats::jetstream::new(nc);
            for i in 0..EVENTS {
                publish_until_acked(&js, &rig, i);
                published.store(i + 1, Ordering::SeqCst);
                std::thread::sleep(PACE);
            }
        });
        assert!(wait_until(Duration::from_secs(20), || published
            .load(Ordering::SeqCst)
            >= EVENTS / 3));
        cluster.kill(victim);
        killed_at = Instant::now();
        // The longest pause in the runner's acks while the node is gone.
        let mut longest_stall = Duration::ZERO;
        let (mut last, mut since) = (acked(), Instant::now());
        while killed_at.elapsed() < Duration::from_secs(4) {
            std::thread::sleep(Duration::from_millis(100));
            let now = acked();
            if now != last {
                (last, since) = (now, Instant::now());
            }
            longest_stall = longest_stall.max(since.elapsed());
        }
        eprintln!(
            "node down 4 s: {} events published, {last} messages acked, longest pause in acks {longest_stall:?}",
            published.load(Ordering::SeqCst)
        );
        let restarting = Instant::now();
        cluster.restart(victim).expect("the node rejoins");
        eprintln!("node restarted and rejoined in {:?}", restarting.elapsed());
    });
    eprintln!(
        "all {EVENTS} events published after {:?}",
        started.elapsed()
    );

    // Every consumer gets to the end of its stream, with nothing pending.
    let s = &rig.settings;
    let durable = &s.consumer.durable;
    let consumers = [
        (&s.streams.aggregate_events, format!("{durable}-aggregate")),
        (
            &s.streams.workflow_commands,
            format!("{durable}-effects-note"),
        ),
        (&s.streams.workflow_events, format!("{durable}-workflow")),
    ];
    let all_done = || {
        consumers
            .iter()
            .all(|(stream, consumer)| consumer_done(&js, stream, consumer))
    };
    let finished = wait_until(Duration::from_secs(20), || {
        std::thread::sleep(Duration::from_millis(200));
        all_done()
    });
    if finished {
        eprintln!(
            "every consumer at the end of its stream {:?} after the kill",
            killed_at.elapsed()
        );
    }
    let m = metrics();
    let counters: BTreeMap<&str, f64> = [
        "runner_acked_total",
        "runner_transitions_total",
        "runner_duplicates_total",
        "runner_relayed_total",
        "runner_relay_retries_total",
        "runner_effects_called_total",
        "runner_effect_results_replayed_total",
        "runner_effect_commands_acked_total",
        "runner_quarantined_total",
        "runner_dead_letters_total",
    ]
    .into_iter()
    .map(|name| (name, metric(&m, name).unwrap_or(-1.0)))
    .collect();
    eprintln!("counters: {counters:?}");
    assert!(
        finished,
        "every consumer reaches the end of its stream: {:?}",
        consumers
            .iter()
            .map(|(stream, consumer)| (
                js.stream_info(stream).map(|i| i.state),
                js.consumer_info(stream, consumer).map(|i| (
                    i.ack_floor,
                    i.num_pending,
                    i.num_ack_pending
                ))
            ))
            .collect::<Vec<_>>()
    );

    // Each instance applied each of its events once, in stream (= publish) order, and
    // has nothing left in the outbox.
    for k in 0..INSTANCES {
        let url = format!("{base}/admin/instances/acme/recorder/o-{k}");
        let (status, body) = call("GET", &url, Some(TOKEN));
        assert_eq!(status, 200, "o-{k}: {body}");
        let instance: Value = serde_json::from_str(&body).unwrap();
        let expected: String = (k..EVENTS)
            .step_by(INSTANCES)
            .map(|n| format!("{n},"))
            .collect();
        assert_eq!(instance["state"]["log"], expected.as_str(), "o-{k}: {body}");
        assert_eq!(instance["transitions"], EVENTS / INSTANCES, "o-{k}: {body}");
        assert_eq!(instance["outbox"], json!([]), "o-{k}: {body}");
    }

    // One command per event on the commands stream, and each reached the HTTP sink
    // exactly once.
    let (commands, command_ids) = command_ids_in(
        &nc,
        &s.streams.workflow_commands,
        &format!("{}.>", s.streams.command_prefix),
    );
    assert_eq!(commands, EVENTS, "one command per event");
    assert_eq!(command_ids.len(), EVENTS, "distinct command ids");
    let mut calls: BTreeMap<String, usize> = BTreeMap::new();
    for received in sink.received() {
        let key = received.header("idempotency-key").unwrap_or_default();
        *calls.entry(key.to_string()).or_default() += 1;
    }
    let twice: Vec<_> = calls.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "commands called more than once: {twice:?}"
    );
    assert_eq!(
        calls.keys().cloned().collect::<BTreeSet<_>>(),
        command_ids,
        "every command reached the sink, under its command id"
    );

    // One result event per command on the workflow events stream.
    let (results, result_ids) = command_ids_in(
        &nc,
        &s.streams.workflow_events,
        &format!("{}.>", s.streams.result_prefix),
    );
    assert_eq!(results, EVENTS, "one result per command");
    assert_eq!(result_ids, command_ids, "every command has its result");

    // Nothing was given up on: no quarantine record, no dead letter.
    let (_, quarantine) = call(
        "GET",
        &format!("{base}/admin/quarantine?tenant=acme"),
        Some(TOKEN),
    );
    assert_eq!(
        counters["runner_quarantined_total"], 0.0,
        "quarantined although every command was executed once and has its result: {quarantine}"
    );
    assert_eq!(counters["runner_dead_letters_total"], 0.0);
    eprintln!("node-loss test took {:?}", started.elapsed());
}

/// `ensure_streams` creates missing streams with `streams.replicas` copies and the
/// message age limit `streams.max_age_secs`, and leaves an existing stream as it is, even
/// with fewer replicas or no age limit (it only warns).
#[test]
fn streams_are_created_with_the_configured_replicas_and_age_and_existing_ones_are_kept() {
    let cluster = NatsCluster::start(3).expect("start a 3-node nats cluster");
    let sink = FakeGateway::accepting().unwrap();
    let (rig, _) = cluster_rig(&cluster, &sink);
    let nc = rig.connect();
    let js = nats::jetstream::new(nc);
    let mut settings = rig.settings.clone();
    let token = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    settings.streams.aggregate_events = format!("AGG1_{token}");
    settings.streams.workflow_commands = format!("CMD1_{token}");
    settings.streams.workflow_events = format!("WFE1_{token}");
    settings.streams.aggregate_subjects = vec![format!("{token}.aggregate.>")];
    settings.streams.aggregate_prefix = format!("{token}.aggregate");
    settings.streams.command_prefix = format!("{token}.cmd");
    settings.streams.result_prefix = format!("{token}.result");
    settings.streams.timer_prefix = format!("{token}.timer");
    js.add_stream(nats::jetstream::StreamConfig {
        name: settings.streams.aggregate_events.clone(),
        subjects: settings.streams.aggregate_subjects.clone(),
        num_replicas: 1,
        ..Default::default()
    })
    .unwrap();

    runner::nats_io::ensure_streams(&js, &settings).unwrap();
    let replicas = |name: &str| js.stream_info(name).unwrap().config.num_replicas;
    let s = &settings.streams;
    assert_eq!(
        replicas(&s.aggregate_events),
        1,
        "an existing stream is kept"
    );
    assert_eq!(replicas(&s.workflow_commands), 3);
    assert_eq!(replicas(&s.workflow_events), 3);
    let max_age = |name: &str| js.stream_info(name).unwrap().config.max_age;
    assert_eq!(
        max_age(&s.aggregate_events),
        Duration::ZERO,
        "the aggregate stream is its owner's: kept as it is, never given an age"
    );
    let configured = Duration::from_secs(settings.streams.max_age_secs);
    assert_eq!(
        configured,
        Duration::from_secs(7 * 24 * 60 * 60),
        "the default"
    );
    assert_eq!(max_age(&s.workflow_commands), configured);
    assert_eq!(max_age(&s.workflow_events), configured);
}

/// How many messages `stream` holds under `filter`, and the distinct `command_id`s of
/// their bodies.
fn command_ids_in(nc: &nats::Connection, stream: &str, filter: &str) -> (usize, BTreeSet<String>) {
    let messages = read_stream(nc, stream, filter, EVENTS * 2, Duration::from_secs(1)).unwrap();
    let ids = messages
        .iter()
        .filter_map(|m| {
            let body = serde_json::from_slice::<Value>(&m.data).ok()?;
            Some(body["command_id"].as_str()?.to_string())
        })
        .collect();
    (messages.len(), ids)
}
