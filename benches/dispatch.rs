//! Criterion benches of dispatch over a live NATS server: how effect commands leave the
//! saga side and how the effect pool turns them into results.
//!
//! - `relay_publish/pipelined/256`: the relay's pipelined [`Publisher`] (window
//!   `relay.publish_window`, acks collected on one reply inbox, the same loop as
//!   `stages/relay.rs`: publish every ready item, kick the flusher, wait on the ack
//!   channel) publishing 256 effect-command envelopes to `WORKFLOW_COMMANDS` and waiting
//!   until every one is acked. The envelopes are what the example saga's executor puts in
//!   the outbox for `OrderPlaced` (~450 bytes); each publish carries the relay's context
//!   headers and `Nats-Msg-Id` = the command id (with a per-batch suffix, so every batch is
//!   stored, not deduplicated). `relay_publish/one_at_a_time/256` is the baseline: the
//!   same items through plain `js.publish`, each waiting for its ack.
//! - `effect_pool_noop/{claims,no_claims}/512`: the whole effect pool (`--mode effect`:
//!   fetch, split, 64 workers, effect-commit thread) on a `noop` effect: 512 commands are
//!   published (pipelined) and the clock stops when the pool has acked them all (claim,
//!   call, completion record, result publish and its ack, command ack). With the KV claims
//!   bucket (the default) and without it (`effects.claims_bucket = ""`).
//! - `effect_steps/*`: the steps of one command, alone and in sequence
//!   (no other worker to share a group commit or a round trip with): decoding the command
//!   plus the noop call plus building the result, the completion lookup, the claim
//!   (create, then the result written into it), the completion record (one transaction)
//!   and the result publish waiting for its ack.
//!
//! Needs `nats-server` (JetStream): a throwaway one is started (`RUNNER_NATS_SERVER_BIN`,
//! else PATH), or `RUNNER_TEST_NATS_URL` names a running one (every stream, consumer and
//! bucket gets a random name). Without either the benches are skipped with a message.
//!
//! `RUNNER_NATS_SERVER_BIN=~/.local/bin/nats-server cargo bench --bench dispatch`. The
//! server shares the machine's cores with the bench, so compare runs of one machine only
//! (see docs/performance.md).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

// The same allocator as the `runner` binary, so the figures match what it does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use crossbeam_channel::RecvTimeoutError;
use nats::header::HeaderMap;
use runner::dev::{NatsServer, TempDir};
use runner::effects::attempts;
use runner::effects::claims::{Claims, Gate};
use runner::effects::result::{outcome, result_event, result_subject};
use runner::envelope::{header, meta, EffectCommand};
use runner::keys::OutboxKind;
use runner::manifest::SagaCatalog;
use runner::nats_io::{self, Publisher};
use runner::program::Limits;
use runner::relay::backoff::Jitter;
use runner::saga::{decode, DecodeConfig, Decoded, Executor, MessageInfo};
use runner::settings::{Mode, Settings};
use runner::stages::Pipeline;
use runner::store::{EffectCompletion, OutboxItem, RawJson, Store, StoredCompletion};
use runner::timefmt::now_rfc3339;
use runner::types::{TenantId, WorkId};
use serde_json::{json, Value};

/// Commands per relay batch.
const RELAY_BATCH: usize = 256;
/// Commands per effect-pool run.
const EFFECT_BATCH: usize = 512;
const TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];

fn main() {
    runner::logging::init_with_default("warn");
    let server = match Server::start() {
        Ok(server) => server,
        Err(why) => {
            eprintln!("dispatch benches skipped: {why}");
            return;
        }
    };
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_relay_publish(&mut c, &server.url);
    bench_effect_pool(&mut c, &server.url);
    bench_effect_steps(&mut c, &server.url);
    c.final_summary();
}

/// Pipelined publishing as the relay does it, against one publish at a time.
fn bench_relay_publish(c: &mut Criterion, url: &str) {
    let space = Space::new(url, Mode::Saga);
    let nc = space.connect();
    let js = nats::jetstream::new(nc.clone());
    let stream = space.settings.streams.workflow_commands.clone();
    let items = Commands::new(&space.settings).make(RELAY_BATCH);
    let envelope = items[0].envelope.as_bytes().len();
    let relay = &space.settings.relay;
    eprintln!(
        "relay_publish: {RELAY_BATCH} effect commands per batch, envelope {envelope} bytes, window {}",
        relay.publish_window
    );
    let mut publisher = Publisher::new(
        &nc,
        relay.publish_window,
        Duration::from_millis(relay.publish_timeout_ms),
        3,
    )
    .expect("publisher");
    let mut batch_no = 0u64;
    let fresh_ids = |batch_no: &mut u64| {
        *batch_no += 1;
        let n = *batch_no;
        items
            .iter()
            .map(|item| format!("{}.{n}", item.work_id.as_str()))
            .collect::<Vec<_>>()
    };

    let mut group = c.benchmark_group("relay_publish");
    group.throughput(Throughput::Elements(RELAY_BATCH as u64));
    group.bench_function(BenchmarkId::new("pipelined", RELAY_BATCH), |b| {
        b.iter_custom(|iters| {
            // Keeps the stream small; outside the clock.
            js.purge_stream(&stream).expect("purge");
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let ids = fresh_ids(&mut batch_no);
                let started = Instant::now();
                relay_batch(&mut publisher, &items, &ids);
                total += started.elapsed();
            }
            total
        })
    });

    // ~5 ms per publish (the client flushes a request after at most 5 ms): over a second
    // per batch, so one batch per sample.
    let baseline_nc = space.connect();
    let baseline_js = nats::jetstream::new(baseline_nc);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(12));
    group.bench_function(BenchmarkId::new("one_at_a_time", RELAY_BATCH), |b| {
        b.iter_custom(|iters| {
            js.purge_stream(&stream).expect("purge");
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let ids = fresh_ids(&mut batch_no);
                let started = Instant::now();
                for (item, id) in items.iter().zip(&ids) {
                    let mut headers = relay_headers(item);
                    headers.insert(header::MSG_ID, id.as_str());
                    let msg = nats::Message::new(
                        &item.destination,
                        None,
                        item.envelope.as_bytes(),
                        Some(headers),
                    );
                    let ack = baseline_js.publish_message(&msg).expect("publish");
                    assert!(!ack.duplicate, "a bench publish was deduplicated");
                }
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
    let _ = js.purge_stream(&stream);
}

/// One batch as the relay sends it: publish every item (the window never fills at this
/// size), kick the flusher, then take acks off the shared inbox until all are in.
fn relay_batch(publisher: &mut Publisher, items: &[OutboxItem], ids: &[String]) {
    for (tag, (item, id)) in items.iter().zip(ids).enumerate() {
        publisher.publish(
            tag as u64,
            &item.destination,
            id,
            relay_headers(item),
            item.envelope.as_bytes().to_vec(),
        );
    }
    publisher.tick();
    let mut acked = 0;
    while acked < items.len() {
        let wait = publisher
            .next_deadline()
            .map_or(Duration::from_millis(100), |d| {
                d.saturating_duration_since(Instant::now())
            });
        match publisher.acks().recv_timeout(wait) {
            Ok(msg) => publisher.on_message(msg),
            Err(RecvTimeoutError::Timeout) => publisher.tick(),
            Err(RecvTimeoutError::Disconnected) => panic!("ack inbox closed"),
        }
        while let Ok(msg) = publisher.acks().try_recv() {
            publisher.on_message(msg);
        }
        for c in publisher.take_completions() {
            let ack = c.result.expect("relay publish acked");
            assert!(!ack.duplicate, "a bench publish was deduplicated");
            acked += 1;
        }
    }
}

/// The headers the relay sets on an effect command (it adds `Nats-Msg-Id` itself).
fn relay_headers(item: &OutboxItem) -> HeaderMap {
    nats_io::context_headers(
        item.tenant.as_str(),
        Some(item.correlation.as_str()),
        item.traceparent.as_deref(),
    )
}

/// The effect pool end to end, with and without the claims bucket.
fn bench_effect_pool(c: &mut Criterion, url: &str) {
    let mut group = c.benchmark_group("effect_pool_noop");
    group.throughput(Throughput::Elements(EFFECT_BATCH as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(4));
    for (name, claims) in [("claims", true), ("no_claims", false)] {
        // Started on first use, so a filtered-out bench starts nothing.
        let mut pool: Option<EffectPool> = None;
        group.bench_function(BenchmarkId::new(name, EFFECT_BATCH), |b| {
            let pool = pool.get_or_insert_with(|| EffectPool::start(url, claims));
            b.iter_custom(|iters| (0..iters).map(|_| pool.run(EFFECT_BATCH)).sum())
        });
        if let Some(pool) = pool {
            pool.stop();
        }
    }
    group.finish();
}

struct EffectPool {
    // Field order is drop order: the pipeline stops before its space goes.
    pipeline: Pipeline,
    publisher: Publisher,
    commands: Commands,
    space: Space,
}

impl EffectPool {
    fn start(url: &str, claims: bool) -> EffectPool {
        let mut space = Space::new(url, Mode::Effect);
        if !claims {
            space.settings.effects.claims_bucket.clear();
        }
        let settings = space.settings.clone();
        settings.validate().expect("settings");
        let (sagas, effects) = runner::cli::catalogs_for_mode(&settings).expect("catalogs");
        let pipeline = Pipeline::start(
            settings,
            space.store.clone(),
            sagas,
            effects,
            space.connect(),
        )
        .expect("effect pipeline");
        let publisher =
            Publisher::new(&space.connect(), 512, Duration::from_secs(5), 3).expect("publisher");
        let commands = Commands::new(&space.settings);
        eprintln!(
            "effect_pool_noop: {} workers, claims bucket {:?}",
            space.settings.effects.workers, space.settings.effects.claims_bucket
        );
        EffectPool {
            pipeline,
            publisher,
            commands,
            space,
        }
    }

    /// Publishes `n` fresh commands and returns the time from the first publish until
    /// the pool acked them all (building the commands is not timed).
    fn run(&mut self, n: usize) -> Duration {
        let items = self.commands.make(n);
        let target = self.pipeline.stats().effect_commands_acked + n as u64;
        let started = Instant::now();
        for (tag, item) in items.iter().enumerate() {
            self.publisher.publish(
                tag as u64,
                &item.destination,
                item.work_id.as_str(),
                relay_headers(item),
                item.envelope.as_bytes().to_vec(),
            );
            if tag % 32 == 31 {
                check_published(self.publisher.poll(Duration::ZERO));
            }
        }
        check_published(self.publisher.finish());
        let deadline = started + Duration::from_secs(60);
        while self.pipeline.stats().effect_commands_acked < target {
            if Instant::now() > deadline {
                panic!(
                    "the effect pool did not ack {n} commands in 60 s: {:?}",
                    self.pipeline.stats()
                );
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        started.elapsed()
    }

    fn stop(self) {
        let EffectPool {
            pipeline, space, ..
        } = self;
        let stats = pipeline.stats();
        pipeline.shutdown();
        drop(space);
        assert_eq!(stats.quarantined, 0, "commands were quarantined: {stats:?}");
    }
}

fn check_published(completions: Vec<nats_io::Completion>) {
    for c in completions {
        let ack = c.result.expect("command published");
        assert!(!ack.duplicate, "a bench command was deduplicated");
    }
}

/// One command's steps in one worker, each alone.
fn bench_effect_steps(c: &mut Criterion, url: &str) {
    let space = Space::new(url, Mode::Effect);
    let settings = &space.settings;
    let nc = space.connect();
    let (_, catalog) = runner::cli::catalogs_for_mode(settings).expect("catalogs");
    let item = Commands::new(settings).make(1).remove(0);
    let body = item.envelope.as_bytes().to_vec();
    let tenant = item.tenant.clone();
    let command: EffectCommand =
        serde_json::from_slice(&body).expect("the executor's envelope is a command");
    let completion = {
        let def = catalog.get(&command.effect_name).expect("effect defined");
        let end = attempts::run(def, &command, &body, &mut Jitter::seeded(), &mut |_| {});
        let event = result_event(&command, &end, &now_rfc3339());
        EffectCompletion {
            event_id: event.event_id.clone(),
            result: RawJson::of(&event).expect("result"),
            recorded_at: now_rfc3339(),
        }
    };
    // As the workers keep it: the outcome only.
    let stored = {
        let end = attempts::run(
            catalog.get(&command.effect_name).expect("effect defined"),
            &command,
            &body,
            &mut Jitter::seeded(),
            &mut |_| {},
        );
        StoredCompletion::Outcome(outcome(&end, &now_rfc3339()))
    };
    eprintln!(
        "effect_steps: command {} bytes, result {} bytes",
        body.len(),
        completion.result.as_bytes().len()
    );
    let mut n = 0u64;
    let mut fresh = move |what: &str| {
        n += 1;
        WorkId::new(&format!("bench-{what}-{n}")).expect("work id")
    };

    let mut group = c.benchmark_group("effect_steps");
    group.measurement_time(Duration::from_secs(2));

    let mut jitter = Jitter::seeded();
    group.bench_function("decode_noop_call_result", |b| {
        b.iter(|| {
            let cmd: EffectCommand = serde_json::from_slice(&body).expect("command");
            let tenant = TenantId::new(&cmd.tenant_id).expect("tenant");
            let work = WorkId::new(&cmd.command_id).expect("command id");
            let def = catalog.get(&cmd.effect_name).expect("effect defined");
            let _slot = def.limit.acquire();
            let end = attempts::run(def, &cmd, &body, &mut jitter, &mut |_| {});
            let event = result_event(&cmd, &end, &now_rfc3339());
            let record = EffectCompletion {
                event_id: event.event_id.clone(),
                result: RawJson::of(&event).expect("result"),
                recorded_at: now_rfc3339(),
            };
            (tenant, work, record)
        })
    });

    let unknown = fresh("lookup");
    group.bench_function("completion_lookup", |b| {
        b.iter(|| {
            let found = space
                .store
                .effect_completion(&tenant, &unknown)
                .expect("lookup");
            assert!(found.is_none());
        })
    });

    let claims = Claims::open(
        &nc,
        &settings.effects.claims_bucket,
        Duration::from_millis(settings.effects.claim_lease_ms),
        Duration::from_secs(settings.effects.claims_ttl_secs),
        settings.streams.replicas,
    )
    .expect("claims bucket");
    group.bench_function("claim_create_and_complete", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let work = fresh("claim");
                let started = Instant::now();
                let Gate::Mine { revision, held, .. } =
                    claims.acquire(&tenant, &work).expect("claim")
                else {
                    panic!("a fresh command's claim is ours")
                };
                claims
                    .complete(&tenant, &work, revision, &completion)
                    .expect("complete");
                drop(held);
                total += started.elapsed();
            }
            total
        })
    });

    // One record alone in its transaction, as the effect-commit thread writes it when
    // nothing else waits.
    group.bench_function("record_completion", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let work = fresh("record");
                let started = Instant::now();
                space
                    .store
                    .record_effect_completion(&tenant, &work, &stored)
                    .expect("record");
                total += started.elapsed();
            }
            total
        })
    });

    // One result publish waiting for its ack, as when nothing else is outstanding.
    let mut publisher = Publisher::new(
        &nc,
        1,
        Duration::from_millis(settings.relay.publish_timeout_ms),
        3,
    )
    .expect("publisher");
    let subject = result_subject(&settings.streams.result_prefix, &command);
    group.bench_function("result_publish_and_ack", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let event_id = fresh("result").as_str().to_string();
                let started = Instant::now();
                let headers = nats_io::context_headers(
                    &command.tenant_id,
                    command.meta(meta::CORRELATION_ID),
                    command.meta(meta::TRACEPARENT),
                );
                publisher.publish(
                    0,
                    &subject,
                    &event_id,
                    headers,
                    completion.result.as_bytes().to_vec(),
                );
                check_published(publisher.finish());
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

/// The NATS server the benches run against.
struct Server {
    _server: Option<NatsServer>,
    url: String,
}

impl Server {
    fn start() -> Result<Server, String> {
        if let Some(url) = std::env::var("RUNNER_TEST_NATS_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            return Ok(Server { _server: None, url });
        }
        let server = NatsServer::start().map_err(|e| e.to_string())?;
        eprintln!("nats-server: {}", server.binary().display());
        Ok(Server {
            url: server.url(),
            _server: Some(server),
        })
    }
}

/// Streams, consumer, claims bucket and store of one bench, under random names (as the
/// integration tests' rig does), so benches never see each other's messages.
struct Space {
    url: String,
    settings: Settings,
    store: Arc<Store>,
    _dir: TempDir,
}

impl Space {
    fn new(url: &str, mode: Mode) -> Space {
        let dir = TempDir::new("bench-dispatch").expect("temp dir");
        let token = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
        let ns = format!("b{token}");
        let manifest = dir.path().join("effects.json");
        // The example's charge_card, on the noop provider, with a slot for every worker.
        let doc = json!({"effects": [{
            "name": "charge_card", "provider": "noop", "timeout_ms": 5000, "concurrency": 64,
            "retry": {"max_attempts": 4, "backoff_initial_ms": 200, "backoff_max_ms": 5000},
            "noop": {"result": {"status": "charged"}}
        }]});
        std::fs::write(&manifest, doc.to_string()).expect("effects manifest");
        let mut s = Settings {
            mode,
            ..Default::default()
        };
        s.nats.url = url.to_string();
        s.nats.create_streams = true;
        s.nats.create_aggregate_stream = true;
        s.storage.path = dir.path().join("store");
        s.storage.map_size_mib = 4096;
        runner::dev::namespace(&mut s, &ns, &token);
        s.consumer.durable = format!("bench-{token}");
        s.consumer.fetch_wait_ms = 200;
        s.manifests.sagas = vec![example_manifest()];
        s.manifests.effects = vec![manifest];
        let store = Store::open(&s.storage.path, (s.storage.map_size_mib as usize) << 20)
            .map(Arc::new)
            .expect("store");
        let space = Space {
            url: url.to_string(),
            settings: s,
            store,
            _dir: dir,
        };
        let js = nats::jetstream::new(space.connect());
        nats_io::ensure_streams(&js, &space.settings).expect("streams");
        space
    }

    fn connect(&self) -> nats::Connection {
        nats_io::connect(&self.url, "runner-bench-dispatch").expect("connect")
    }
}

impl Drop for Space {
    /// Leaves nothing behind on a server that outlives the bench.
    fn drop(&mut self) {
        let Ok(nc) = nats_io::connect(&self.url, "runner-bench-dispatch") else {
            return;
        };
        let js = nats::jetstream::new(nc);
        let s = &self.settings.streams;
        let kv = format!("KV_{}", self.settings.effects.claims_bucket);
        for stream in [
            &s.aggregate_events,
            &s.workflow_commands,
            &s.workflow_events,
            &kv,
        ] {
            let _ = js.delete_stream(stream);
        }
    }
}

fn example_manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/example/sagas.yaml")
}

/// Effect commands as the saga side makes them: `OrderPlaced` events of four tenants,
/// decoded and run through the example saga; each yields one `charge_card` outbox item.
struct Commands {
    catalog: SagaCatalog,
    decode: DecodeConfig,
    prefix: String,
    stream: String,
    store: Store,
    next: u64,
    _dir: TempDir,
}

impl Commands {
    fn new(settings: &Settings) -> Commands {
        let dir = TempDir::new("bench-commands").expect("temp dir");
        let store = Store::open(&dir.path().join("store"), 1 << 30).expect("store");
        Commands {
            catalog: SagaCatalog::load(&[example_manifest()], 20_000, &Limits::default())
                .expect("example manifest"),
            // The example manifest's triggers name plain `aggregate.…` subjects, not the
            // bench space's namespaced ones: decode those (the subject names the tenant).
            decode: DecodeConfig {
                aggregate_prefix: "aggregate".into(),
                ..DecodeConfig::from_settings(settings)
            },
            prefix: settings.streams.command_prefix.clone(),
            stream: settings.streams.aggregate_events.clone(),
            store,
            next: 0,
            _dir: dir,
        }
    }

    /// `n` commands never made before (new orders, so new command ids).
    fn make(&mut self, n: usize) -> Vec<OutboxItem> {
        let mut exec = Executor::new(&self.prefix);
        let reader = self.store.reader().expect("reader");
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            self.next += 1;
            let i = self.next;
            let tenant = TENANTS[i as usize % TENANTS.len()];
            let info = MessageInfo {
                stream: self.stream.clone(),
                seq: i,
                delivered: 1,
                forgiven: 0,
                subject: format!("aggregate.{tenant}.order.OrderPlaced"),
                published_ms: 0,
            };
            let body = placed(i, tenant).to_string().into_bytes();
            let event = match decode(&self.decode, &self.catalog, &info, None, &body) {
                Decoded::Event(event) => event,
                Decoded::Quarantine(q, ..) => panic!("bench event must decode: {q:?}"),
            };
            let outcome = exec.execute(&reader, &event, &info, 1).expect("execute");
            assert!(
                !outcome.transitions.is_empty(),
                "the example saga must take {}",
                info.subject
            );
            out.extend(
                outcome
                    .transitions
                    .into_iter()
                    .flat_map(|t| t.outbox)
                    .filter(|item| item.kind == OutboxKind::Effect),
            );
        }
        out.truncate(n);
        out
    }
}

fn placed(i: u64, tenant: &str) -> Value {
    json!({
        "event_id": format!("e-{i}"), "tenant_id": tenant, "aggregate_type": "order",
        "aggregate_id": format!("o-{i}"), "event_type": "OrderPlaced", "version": 1,
        "occurred_at": event_time(i),
        "payload": {"total": 4200, "currency": "EUR", "customer_id": "c-7"},
        "metadata": {"correlation_id": format!("req-{i}"),
                     "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    })
}

/// Events a millisecond apart, as a live stream would have them.
fn event_time(i: u64) -> String {
    let base = 1_795_773_600_000; // 2026-11-27T10:00:00Z
    runner::timefmt::format_rfc3339_ms(base + i as i64).unwrap_or_default()
}
