//! Fault injection: the real `runner` binary, a real `nats-server`, and an abort at every
//! named crash point (`src/crash.rs`), many times, with the hit count drawn from a seeded
//! generator. Then an independent checker looks only at what an outsider sees — the
//! streams, the two HTTP sinks the Runner called (the effect's upstream and the Gateway)
//! and the saga instances through the admin API — and finds every order's work done
//! exactly once. It also reads the runners' logs: a transition refused as stale is healed
//! by running it again, so only the log shows that a process read an old snapshot.
//!
//! Each test takes one crash point through several rounds. A round starts the Runner
//! armed to abort on the point's n-th hit (n from 1 to 4, seeded) and publishes a wave of
//! orders of two tenants while it runs; when the wave completes without the point being
//! reached, the Runner is killed with SIGKILL instead, so every round ends in a kill. A
//! last, unarmed run finishes the work.
//!
//! Sizes: CI runs 3 rounds of 12 orders per test (12 tests, 36 kills, 432 orders, each
//! order an event, an effect call, a timer and a Gateway command).
//!
//! One more test takes the abort after a reminder publish through a workload that cancels
//! timers near their due time (half the orders, within ±40 ms of it) while the scheduler
//! is slowed between reading due timers and publishing them (a pause point), so that
//! reminders of cancelled timers are published: the checker then finds that no program
//! ran on a timer it had cancelled (it fails so where reminders are not checked against
//! the instance's timers). The sweep's two points
//! run with finished instances kept two seconds, so the sweep deletes while the rounds
//! go on. A soak:
//! `RUNNER_TEST_FI_ROUNDS=25 RUNNER_TEST_FI_ORDERS=60 cargo test --release --test
//! fault_injection`; `RUNNER_TEST_FI_SEED` replays one sequence of hit counts.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::ops::{admin_port, call, TOKEN};
use common::{config_file, event, wait_until, Rig, RunnerProcess};
use runner::dev::{read_stream, FakeGateway, Reply};
use runner::settings::Mode;
use runner::types::TenantId;
use serde_json::{json, Value};

const TENANTS: [&str; 2] = ["acme", "globex"];

/// Every order: `OrderPlaced` → `charge` effect and a `nudge` timer (300 ms) → the
/// charge's result → a `MarkPaid` Gateway command. Counters in the state show how often
/// each kind of event was applied; the instance completes when it saw a result and a
/// reminder. Where timers are cancelled ([`Workload::Cancels`]), `NudgeCancelled`
/// cancels the nudge and `OrderClosed` stands in for the reminder; `late` counts
/// reminders a program ran on after it had cancelled their timer (never, if cancel
/// holds).
fn workload_saga() -> Value {
    let count = |is: Value, field: &str| {
        json!({"$add": [{"$coalesce": [{"$get": format!("state.{field}")}, 0]},
                        {"$if": [is, 1, 0]}]})
    };
    let kind = |kind: &str| json!({"$eq": [{"$get": "kind"}, kind]});
    let event = |t: &str| json!({"$eq": [{"$get": "event.event_type"}, t]});
    let late = json!({"$and": [kind("reminder"),
                               {"$gte": [{"$coalesce": [{"$get": "state.cancelled"}, 0]}, 1]}]});
    json!([{
        "name": "fi",
        "triggers": [
            {"subject": "{ns}.aggregate.*.order.OrderPlaced", "start": true,
             "correlate": {"$get": "event.aggregate_id"}},
            {"subject": "{ns}.aggregate.*.order.NudgeCancelled",
             "correlate": {"$get": "event.aggregate_id"}},
            {"subject": "{ns}.aggregate.*.order.OrderClosed",
             "correlate": {"$get": "event.aggregate_id"}},
            {"subject": "{ns}.workflow.result.*.charge",
             "correlate": {"$get": "event.metadata.correlation_id"}},
            {"subject": "{ns}.workflow.timer.*.fi", "correlate": {"$get": "event.correlation_id"}}
        ],
        "on_event": {
            "let": {
                "kind": {"$get": "ctx.kind"},
                "placed": count(event("OrderPlaced"), "placed"),
                "cancelled": count(event("NudgeCancelled"), "cancelled"),
                "closed": count(event("OrderClosed"), "closed"),
                "paid": count(kind("result"), "paid"),
                "reminded": count(kind("reminder"), "reminded"),
                "late": count(late, "late")
            },
            "output": {
                "state": {"order": {"$coalesce": [{"$get": "state.order"}, {"$get": "event.aggregate_id"}]},
                          "placed": {"$get": "placed"}, "paid": {"$get": "paid"},
                          "reminded": {"$get": "reminded"}, "cancelled": {"$get": "cancelled"},
                          "closed": {"$get": "closed"}, "late": {"$get": "late"}},
                "status": {"$if": [{"$and": [{"$gte": [{"$get": "paid"}, 1]},
                                             {"$or": [{"$gte": [{"$get": "reminded"}, 1]},
                                                      {"$gte": [{"$get": "closed"}, 1]}]}]},
                                   "completed", "active"]},
                "cancel": {"$if": [event("NudgeCancelled"), ["nudge"], []]},
                "commands": [
                    {"$if": [event("OrderPlaced"),
                             {"to": "effect", "effect": "charge",
                              "payload": {"order": {"$get": "event.aggregate_id"}}}, null]},
                    {"$if": [{"$eq": [{"$get": "kind"}, "result"]},
                             {"to": "aggregate", "aggregate_type": "order",
                              "aggregate_id": {"$get": "state.order"},
                              "command_type": "MarkPaid", "payload": {}}, null]}
                ],
                "schedules": [
                    {"$if": [event("OrderPlaced"),
                             {"name": "nudge", "after_ms": NUDGE_MS, "payload": {}}, null]}
                ]
            }
        }
    }])
}

/// When an order's `nudge` timer is due, after its `OrderPlaced`.
const NUDGE_MS: u64 = 300;

/// What the orders do besides the common path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// Placed, charged, paid, reminded.
    Plain,
    /// As plain, but every other pair of orders cancels its nudge within ±40 ms of its
    /// due time and is closed a second after it was placed; the scheduler pauses 150 ms
    /// at every pass between reading due timers and publishing them, so many cancels
    /// commit in between (`crash::BEFORE_REMINDER`).
    Cancels,
}

/// How long the scheduler pauses before each publish under [`Workload::Cancels`].
const SCHEDULER_PAUSE_MS: u64 = 150;

/// How long finished instances are kept where the sweep's own crash points are tested:
/// short enough that instances of the first waves expire while later ones run.
const SHORT_RETENTION_SECS: u64 = 3;

/// Whether `point` is the sweep's: its runs keep finished instances only
/// [`SHORT_RETENTION_SECS`], and the checker judges each instance by what the admin API
/// showed when it completed (it may be gone by the end).
fn sweeps(point: &str) -> bool {
    point.starts_with("sweep.")
}

/// Sizes and seed of a run (environment overrides for a soak).
struct Plan {
    rounds: usize,
    orders: usize,
    seed: u64,
}

impl Plan {
    fn from_env() -> Plan {
        let num = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Plan {
            rounds: num("RUNNER_TEST_FI_ROUNDS", 3) as usize,
            orders: num("RUNNER_TEST_FI_ORDERS", 12) as usize,
            seed: num("RUNNER_TEST_FI_SEED", 0x5eed_f00d),
        }
    }
}

/// A small seeded generator (xorshift64*): the same seed, the same hit counts.
struct Seeded(u64);

impl Seeded {
    fn new(seed: u64, point: &str) -> Seeded {
        let mixed = point.bytes().fold(seed ^ 0x9e37_79b9_7f4a_7c15, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        Seeded(mixed.max(1))
    }

    /// A number in `1..=max`.
    fn hit(&mut self, max: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % max + 1
    }
}

/// The Runner's surroundings: its config, the sinks it calls, the orders so far.
struct World {
    rig: Rig,
    config: std::path::PathBuf,
    /// Every runner process's log (warnings and errors), appended run after run.
    log: std::path::PathBuf,
    upstream: FakeGateway,
    gateway: FakeGateway,
    ops: String,
    /// (tenant, order) of every order published.
    orders: Vec<(String, String)>,
    workload: Workload,
    /// Orders whose nudge was cancelled.
    cancelled: BTreeSet<String>,
    /// Jitter of the cancels.
    jitter: Seeded,
    /// More environment for every runner process (a pause point).
    env: Vec<(&'static str, String)>,
    /// Orders whose instance the admin API showed completed, with what it showed.
    completed: std::sync::Mutex<std::collections::BTreeMap<String, Value>>,
}

impl World {
    fn new(plan: &Plan, point: &str, workload: Workload) -> World {
        let upstream = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
        let gateway = FakeGateway::accepting().unwrap();
        let mut rig = Rig::new(workload_saga());
        let effects = rig.dir.path().join("effects.json");
        let manifest = json!({"effects": [{"name": "charge", "provider": "http", "timeout_ms": 2000,
            "http": {"url": format!("{}/v1/charges", upstream.url())}}]});
        std::fs::write(&effects, manifest.to_string()).unwrap();
        let ops = admin_port(&mut rig);
        let s = &mut rig.settings;
        s.mode = Mode::Combined;
        s.manifests.effects = vec![effects];
        s.relay.gateway_url = gateway.url().to_string();
        s.relay.gateway_timeout_ms = 1_000;
        s.relay.scan_interval_ms = 200;
        s.relay.backoff_initial_ms = 50;
        s.relay.backoff_max_ms = 500;
        // A claim left by an aborted process blocks its successor for the lease.
        s.effects.claim_lease_ms = 1_000;
        s.scheduler.idle_poll_ms = 50;
        // Every kill costs the messages in flight one delivery, and the messages at the
        // head of a stream are in flight in every round: past `max_deliver` they would
        // be quarantined as poison (which a crash loop caused by one message is). The
        // limit must exceed the kills a message can see.
        s.consumer.max_deliver = plan.rounds as i64 + 5;
        if sweeps(point) {
            // Finished instances expire within the run (their markers and effect
            // records are kept: the checker's streams must not see a re-publish after
            // the duplicate window).
            s.retention.finished_instances_secs = SHORT_RETENTION_SECS;
        }
        let config = config_file(&rig);
        let log = rig.dir.path().join("runner.log");
        let env = match workload {
            Workload::Plain => Vec::new(),
            Workload::Cancels => vec![
                (
                    "RUNNER_PAUSE_AT",
                    runner::crash::BEFORE_REMINDER.to_string(),
                ),
                ("RUNNER_PAUSE_MS", SCHEDULER_PAUSE_MS.to_string()),
            ],
        };
        World {
            rig,
            config,
            log,
            upstream,
            gateway,
            ops,
            orders: Vec::new(),
            workload,
            cancelled: BTreeSet::new(),
            jitter: Seeded::new(plan.seed, "jitter"),
            env,
            completed: Default::default(),
        }
    }

    /// Starts a runner (armed at `crash`, if given) logging to the world's log.
    fn start(&self, crash: Option<(&str, u32)>) -> RunnerProcess {
        RunnerProcess::start_with_env(&self.config, crash, &self.env, &self.log)
    }

    /// Publishes `n` more orders, spread over the tenants and over a quarter second
    /// (their timers then come due in several scheduler batches); under
    /// [`Workload::Cancels`] 200 ms apart, and every other pair of orders also cancels
    /// its nudge near its due time (±40 ms) and is closed a second after it was placed.
    fn publish_wave(&mut self, n: usize) {
        let nc = self.rig.connect();
        let start = std::time::Instant::now();
        // (when, tenant, order, event type, event id), published in time order.
        let mut plan: Vec<(Duration, &str, String, &str, String)> = Vec::new();
        for k in 0..n {
            let i = self.orders.len();
            let tenant = TENANTS[i % TENANTS.len()];
            let order = format!("o-{i}");
            let at = match self.workload {
                Workload::Plain => Duration::from_millis(250 * (k as u64 + 1) / n.max(1) as u64),
                // Apart by more than the scheduler's pause: each timer has a scheduler
                // pass of its own, which reads it right when it is due.
                Workload::Cancels => Duration::from_millis(200 * (k as u64 + 1)),
            };
            plan.push((at, tenant, order.clone(), "OrderPlaced", format!("e-{i}")));
            if self.workload == Workload::Cancels && (i / 2) % 2 == 1 {
                let jitter = self.jitter.hit(81) as i64 - 41;
                let due = (at.as_millis() as i64 + NUDGE_MS as i64 + jitter) as u64;
                let cancel = Duration::from_millis(due);
                plan.push((
                    cancel,
                    tenant,
                    order.clone(),
                    "NudgeCancelled",
                    format!("c-{i}"),
                ));
                let close = at + Duration::from_secs(1);
                plan.push((
                    close,
                    tenant,
                    order.clone(),
                    "OrderClosed",
                    format!("d-{i}"),
                ));
                self.cancelled.insert(order.clone());
            }
            self.orders.push((tenant.to_string(), order));
        }
        plan.sort_by_key(|(at, ..)| *at);
        for (at, tenant, order, event_type, id) in plan {
            std::thread::sleep(at.saturating_sub(start.elapsed()));
            let mut body = event(&id, tenant, &order, event_type, json!({}));
            body["occurred_at"] = json!(runner::timefmt::now_rfc3339());
            self.rig
                .publish(&nc, &self.rig.aggregate_subject(tenant, event_type), &body);
        }
    }

    /// True when every order published so far reached the Gateway (its last hop).
    fn all_paid(&self) -> bool {
        distinct_keys(&self.gateway) >= self.orders.len()
    }

    /// How many orders' instances the admin API showed completed (an instance never
    /// leaves that status, so each is asked about until it is; the asking stops at the
    /// first one that is not, to keep polling cheap, except where instances expire:
    /// there each is caught as soon as it completes). What it showed is kept.
    fn completed(&self, point: &str) -> usize {
        let mut done = self.completed.lock().unwrap();
        for (tenant, order) in &self.orders {
            if done.contains_key(order) {
                continue;
            }
            let url = format!("{}/admin/instances/{tenant}/fi/{order}", self.ops);
            let view = ureq::get(&url)
                .set("Authorization", &format!("Bearer {TOKEN}"))
                .timeout(Duration::from_secs(5))
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .filter(|v| v["status"] == "completed");
            match view {
                Some(view) => {
                    done.insert(order.clone(), view);
                }
                None if sweeps(point) => {}
                None => break,
            }
        }
        done.len()
    }

    /// Every tenant's checkpoint, read from the store (the saga's per-stream positions).
    fn checkpoints(&self) -> Vec<u64> {
        TENANTS
            .iter()
            .flat_map(|t| {
                let tenant: TenantId = t.parse().unwrap();
                let cp = self.rig.store.checkpoint(&tenant, &"fi".parse().unwrap());
                cp.unwrap().streams.into_values().collect::<Vec<_>>()
            })
            .collect()
    }
}

fn distinct_keys(sink: &FakeGateway) -> usize {
    sink.received()
        .iter()
        .map(|c| c.header("idempotency-key").unwrap_or_default().to_string())
        .collect::<BTreeSet<_>>()
        .len()
}

/// One round: the Runner armed at `point` for its `hit`-th pass; the round ends with the
/// abort, or with SIGKILL once the wave is done. True if the point was reached.
fn round(world: &mut World, point: &str, hit: u64, orders: usize) -> bool {
    let mut runner = world.start(Some((point, hit as u32)));
    let started = std::time::Instant::now();
    // Published while it runs (and perhaps after it died: the next run takes them).
    world.publish_wave(orders);
    let deadline = started + Duration::from_secs(30);
    // The sweep's points are reached only once something expired and the sweep began
    // (two ack waits after start): those rounds last that long at least.
    let least = if sweeps(point) {
        Duration::from_secs(SHORT_RETENTION_SECS + 4)
    } else {
        Duration::ZERO
    };
    loop {
        if let Some(status) = runner.wait_exit(Duration::from_millis(50)) {
            // SIGABRT: `crash::point` aborted; anything else is a failure of its own.
            assert_eq!(
                status.signal(),
                Some(6),
                "{point}: the runner ended: {status:?}; the runners' last log lines:\n{}",
                log_tail(&world.log, 40)
            );
            return true;
        }
        let completed = world.completed(point);
        let done =
            || started.elapsed() >= least && world.all_paid() && completed == world.orders.len();
        if std::time::Instant::now() > deadline || done() {
            // Dropping the process SIGKILLs it.
            return false;
        }
    }
}

fn run_point(point: &str) {
    run_point_with(point, Workload::Plain);
}

fn run_point_with(point: &str, workload: Workload) {
    let plan = Plan::from_env();
    let mut seeded = Seeded::new(plan.seed, point);
    let mut world = World::new(&plan, point, workload);
    let mut checkpoints: Vec<Vec<u64>> = Vec::new();
    let mut reached = 0;
    // Where timers are cancelled, the abort comes later in the wave (the 3rd to 12th
    // pass), so that most of it meets a live scheduler.
    let scale = if workload == Workload::Cancels { 3 } else { 1 };
    for _ in 0..plan.rounds {
        let hit = seeded.hit(4) * scale;
        if round(&mut world, point, hit, plan.orders) {
            reached += 1;
        }
        checkpoints.push(world.checkpoints());
    }
    let _finisher = world.start(None);
    let total = world.orders.len();
    let finished = wait_until(Duration::from_secs(60 + total as u64 / 10), || {
        world.all_paid() && world.completed(point) == total
    });
    if !finished {
        let done = world.completed.lock().unwrap().clone();
        let stuck = world.orders.iter().find(|(_, o)| !done.contains_key(o));
        let view = stuck.map(|(tenant, order)| {
            let url = format!("{}/admin/instances/{tenant}/fi/{order}", world.ops);
            call("GET", &url, Some(TOKEN)).1
        });
        let listed = |what: &str| {
            TENANTS
                .iter()
                .map(|t| {
                    call(
                        "GET",
                        &format!("{}/admin/{what}?tenant={t}", world.ops),
                        Some(TOKEN),
                    )
                    .1
                })
                .collect::<Vec<_>>()
        };
        // Which orders the Gateway saw how often (distinct MarkPaid ids per order).
        let mut per_order: std::collections::BTreeMap<String, BTreeSet<String>> =
            Default::default();
        for c in world.gateway.received() {
            let order = c.body["aggregate_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            per_order
                .entry(order)
                .or_default()
                .insert(c.command_id().to_string());
        }
        let odd: Vec<_> = per_order.iter().filter(|(_, ids)| ids.len() != 1).collect();
        let stuck_paid = stuck.map(|(_, o)| per_order.get(o).map_or(0, |ids| ids.len()));
        panic!(
            "{point}: after the last restart, {} of {total} orders reached the Gateway, {} completed; first not completed: {view:?} (its MarkPaid ids: {stuck_paid:?}); orders with other than one MarkPaid id: {odd:?}; quarantine: {:?}; dead letters: {:?}; the runners' last log lines:\n{}",
            distinct_keys(&world.gateway),
            done.len(),
            listed("quarantine"),
            listed("deadletters"),
            log_tail(&world.log, 40),
        );
    }
    checkpoints.push(world.checkpoints());
    if sweeps(point) {
        // The finisher sweeps too: give it the time to (it may still be starting).
        let gone = || {
            world.orders.iter().any(|(tenant, order)| {
                let url = format!("{}/admin/instances/{tenant}/fi/{order}", world.ops);
                let answer = ureq::get(&url)
                    .set("Authorization", &format!("Bearer {TOKEN}"))
                    .timeout(Duration::from_secs(5))
                    .call();
                matches!(answer, Err(ureq::Error::Status(404, _)))
            })
        };
        wait_until(Duration::from_secs(15), gone);
    }
    // Any failure of the checker also shows what the runners logged last.
    if let Err(failure) =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&world, point)))
    {
        eprintln!(
            "{point}: the runners' last log lines:\n{}",
            log_tail(&world.log, 40)
        );
        std::panic::resume_unwind(failure);
    }
    // Checkpoints only move forward, across every kill.
    for pair in checkpoints.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        if before.len() == after.len() {
            assert!(
                before.iter().zip(after).all(|(b, a)| a >= b),
                "{point}: a checkpoint moved back: {before:?} then {after:?}"
            );
        }
    }
    eprintln!(
        "{point}: {} rounds, {reached} aborts at the point, {} SIGKILLs; {total} orders; effect calls {} for {total} keys; {} runner log lines",
        plan.rounds,
        plan.rounds - reached,
        world.upstream.received().len(),
        std::fs::read_to_string(&world.log).map_or(0, |t| t.lines().count())
    );
}

/// The last `n` lines of a log file.
fn log_tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The independent checker: streams, sinks, admin API and the runners' own logs.
fn check(world: &World, point: &str) {
    // A transition computed from a stale snapshot is refused and run again, so the
    // outcome below would still look right: the logs are where it shows.
    let log = std::fs::read_to_string(&world.log).unwrap_or_default();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("commit refused"))
        .collect();
    assert!(
        refused.is_empty(),
        "{point}: a runner refused a stale transition (a read older than the store): {refused:?}"
    );
    let rig = &world.rig;
    let total = world.orders.len();
    let nc = rig.connect();
    let streams = &rig.settings.streams;
    let read = |stream: &str, prefix: &str| {
        read_stream(
            &nc,
            stream,
            &format!("{prefix}.>"),
            total * 3,
            Duration::from_secs(1),
        )
        .unwrap()
    };
    let ids = |msgs: &[nats::Message]| -> BTreeSet<String> {
        msgs.iter()
            .filter_map(|m| runner::nats_io::header(m, "Nats-Msg-Id").map(str::to_string))
            .collect()
    };
    // Streams: one command, one result and one reminder per order (where nudges were
    // cancelled, none for those the cancel beat to the scheduler); a re-publish after a
    // crash was dropped by JetStream's duplicate window (same Nats-Msg-Id).
    let mut command_ids = BTreeSet::new();
    let cancelled = world.cancelled.len();
    // Reminders published for nudges that were cancelled (the race was run).
    let mut reminded_cancelled = 0;
    for (what, stream, prefix) in [
        (
            "effect commands",
            &streams.workflow_commands,
            &streams.command_prefix,
        ),
        ("results", &streams.workflow_events, &streams.result_prefix),
        ("reminders", &streams.workflow_events, &streams.timer_prefix),
    ] {
        let msgs = read(stream, prefix);
        let counted = (msgs.len(), ids(&msgs).len());
        if what == "reminders" && cancelled > 0 {
            assert!(
                counted.0 == counted.1 && (total - cancelled..=total).contains(&counted.0),
                "{point}: {what} in the stream (messages, distinct ids): {counted:?}, \
                 {total} orders of which {cancelled} cancelled their nudge"
            );
        } else {
            assert_eq!(
                counted,
                (total, total),
                "{point}: {what} in the stream (messages, distinct ids)"
            );
        }
        if command_ids.is_empty() {
            // The envelopes' ids (the message ids are scoped by tenant and saga).
            command_ids = msgs
                .iter()
                .filter_map(|m| serde_json::from_slice::<Value>(&m.data).ok())
                .filter_map(|c| c["command_id"].as_str().map(str::to_string))
                .collect();
        }
        if what == "reminders" {
            reminded_cancelled = msgs
                .iter()
                .filter_map(|m| serde_json::from_slice::<Value>(&m.data).ok())
                .filter(|r| {
                    let order = r["correlation_id"].as_str().unwrap_or_default();
                    world.cancelled.contains(order)
                })
                .count();
        }
    }
    // Sinks: every command took effect under one idempotency key, its own id. A second
    // call with the same key is the documented window of an abort mid-call.
    let keys = |sink: &FakeGateway| -> BTreeSet<String> {
        sink.received()
            .iter()
            .filter_map(|c| c.header("idempotency-key").map(str::to_string))
            .collect()
    };
    assert_eq!(
        keys(&world.upstream),
        command_ids,
        "{point}: effect upstream keys"
    );
    assert_eq!(
        distinct_keys(&world.gateway),
        total,
        "{point}: Gateway keys"
    );
    for c in world.gateway.received() {
        assert_eq!(
            c.header("idempotency-key"),
            Some(c.command_id()),
            "{point}: Gateway"
        );
    }
    // Instances, through the admin API: every event applied exactly once. Where the
    // sweep runs, an instance may have expired: then what the API showed when it
    // completed counts (a finished instance changes no more; one started again by a
    // re-applied event would show below as active).
    let seen = world.completed.lock().unwrap().clone();
    let mut expired = 0;
    // Cancelled orders whose cancel was applied before any reminder.
    let mut beaten = 0;
    for (tenant, order) in &world.orders {
        let url = format!("{}/admin/instances/{tenant}/fi/{order}", world.ops);
        let (status, body) = call("GET", &url, Some(TOKEN));
        let view: Value = if status == 404 && sweeps(point) {
            expired += 1;
            seen.get(order)
                .cloned()
                .unwrap_or_else(|| panic!("{point}: {order} expired before it was seen"))
        } else {
            assert_eq!(status, 200, "{point}: {url}: {body}");
            serde_json::from_str(&body).unwrap()
        };
        if world.cancelled.contains(order) {
            check_cancelled(point, tenant, order, &view, &mut beaten);
            continue;
        }
        assert_eq!(
            (
                &view["status"],
                &view["state"]["placed"],
                &view["state"]["paid"],
                &view["state"]["reminded"],
                &view["transitions"]
            ),
            (
                &json!("completed"),
                &json!(1),
                &json!(1),
                &json!(1),
                &json!(3)
            ),
            "{point}: {tenant}/{order}: {view}"
        );
    }
    if !world.cancelled.is_empty() {
        eprintln!(
            "{point}: of {} nudges cancelled near their due time, {beaten} cancels came before the reminder; {reminded_cancelled} reminders of cancelled nudges were published anyway",
            world.cancelled.len()
        );
    }
    if sweeps(point) {
        assert!(
            expired > 0,
            "{point}: no instance expired: the sweep never ran"
        );
    }
    // The instance list (status index, written with each transition) agrees: every
    // order of the tenant completed (that has not expired), none active; read in pages
    // of 5.
    for tenant in TENANTS {
        let kept = |order: &String| {
            let url = format!("{}/admin/instances/{tenant}/fi/{order}", world.ops);
            !sweeps(point) || call("GET", &url, Some(TOKEN)).0 == 200
        };
        let expected: BTreeSet<String> = world
            .orders
            .iter()
            .filter(|(t, o)| t == tenant && kept(o))
            .map(|(_, o)| o.clone())
            .collect();
        for (status, want) in [("completed", expected), ("active", BTreeSet::new())] {
            let (mut listed, mut after) = (BTreeSet::new(), String::new());
            loop {
                let url = format!(
                    "{}/admin/instances?tenant={tenant}&saga=fi&status={status}&limit=5&after={after}",
                    world.ops
                );
                let (code, body) = call("GET", &url, Some(TOKEN));
                assert_eq!(code, 200, "{point}: {url}: {body}");
                let page: Value = serde_json::from_str(&body).unwrap();
                for i in page["instances"].as_array().unwrap() {
                    listed.insert(i["correlation"].as_str().unwrap().to_string());
                }
                match page["next"].as_str() {
                    Some(next) => after = next.to_string(),
                    None => break,
                }
            }
            assert_eq!(listed, want, "{point}: {tenant}'s {status} instances");
        }
    }
    // Nothing quarantined: no message of this workload is poison.
    let filters = TENANTS.iter().map(|t| format!("tenant={t}"));
    for filter in filters.chain(["unattributed=true".to_string()]) {
        let url = format!("{}/admin/quarantine?{filter}", world.ops);
        let (status, body) = call("GET", &url, Some(TOKEN));
        assert_eq!(status, 200, "{point}: {url}: {body}");
        let listed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(listed["records"], json!([]), "{point}: {url}");
    }
}

/// An order whose nudge was cancelled near its due time: each of its events applied at
/// most once (placed and paid exactly once), and no program ran on the nudge after the
/// cancel (`late`): either the reminder came first, or it was ignored as stale. Counts
/// in `beaten` the orders whose cancel came first.
fn check_cancelled(point: &str, tenant: &str, order: &str, view: &Value, beaten: &mut usize) {
    let n = |field: &str| view["state"][field].as_u64().unwrap_or(u64::MAX);
    let what = format!("{point}: {tenant}/{order}: {view}");
    assert_eq!(view["status"], "completed", "{what}");
    assert_eq!((n("placed"), n("paid")), (1, 1), "{what}");
    assert_eq!(n("late"), 0, "{what}: a program ran on a cancelled timer");
    assert!(
        n("reminded") <= 1 && n("cancelled") <= 1 && n("closed") <= 1,
        "{what}"
    );
    // A cancel or close that came after the instance completed was ignored.
    let applied = ["placed", "paid", "reminded", "cancelled", "closed"]
        .iter()
        .map(|f| n(f))
        .sum::<u64>();
    assert_eq!(view["transitions"].as_u64(), Some(applied), "{what}");
    if n("cancelled") == 1 && n("reminded") == 0 {
        *beaten += 1;
    }
}

#[test]
fn abort_after_fetch() {
    run_point(runner::crash::AFTER_FETCH);
}

#[test]
fn abort_mid_transaction() {
    run_point(runner::crash::MID_TRANSACTION);
}

#[test]
fn abort_after_commit_before_ack() {
    run_point(runner::crash::AFTER_COMMIT);
}

#[test]
fn abort_before_relay_send() {
    run_point(runner::crash::BEFORE_SEND);
}

#[test]
fn abort_after_relay_publish_before_delete() {
    run_point(runner::crash::AFTER_CONFIRM);
}

#[test]
fn abort_mid_effect() {
    run_point(runner::crash::AFTER_CALL);
}

#[test]
fn abort_after_result_record() {
    run_point(runner::crash::AFTER_RECORD);
}

#[test]
fn abort_after_result_publish() {
    run_point(runner::crash::AFTER_RESULT);
}

#[test]
fn abort_after_reminder_publish() {
    run_point(runner::crash::AFTER_REMINDER);
}

/// Timers cancelled near their due time while the scheduler is slowed between reading
/// and publishing them (so reminders of cancelled timers are published), through the
/// abort after a reminder publish: no program runs on a cancelled timer.
#[test]
fn abort_after_reminder_publish_while_timers_are_cancelled() {
    run_point_with(runner::crash::AFTER_REMINDER, Workload::Cancels);
}

#[test]
fn abort_mid_sweep() {
    run_point(runner::crash::SWEEP_MID_TRANSACTION);
}

#[test]
fn abort_after_sweep() {
    run_point(runner::crash::SWEEP_AFTER_COMMIT);
}

#[test]
fn every_crash_point_has_a_test() {
    let source = include_str!("fault_injection.rs");
    for point in runner::crash::POINTS {
        let constant = runner_constant(point);
        assert!(
            source.contains(&format!("runner::crash::{constant})")),
            "crash point {point} ({constant}) has no fault-injection test"
        );
    }
}

/// The constant's name in `runner::crash` for a point's string.
fn runner_constant(point: &str) -> &'static str {
    const NAMES: &[(&str, &str)] = &[
        (runner::crash::AFTER_FETCH, "AFTER_FETCH"),
        (runner::crash::MID_TRANSACTION, "MID_TRANSACTION"),
        (runner::crash::AFTER_COMMIT, "AFTER_COMMIT"),
        (runner::crash::BEFORE_SEND, "BEFORE_SEND"),
        (runner::crash::AFTER_CONFIRM, "AFTER_CONFIRM"),
        (runner::crash::AFTER_CALL, "AFTER_CALL"),
        (runner::crash::AFTER_RECORD, "AFTER_RECORD"),
        (runner::crash::AFTER_RESULT, "AFTER_RESULT"),
        (runner::crash::AFTER_REMINDER, "AFTER_REMINDER"),
        (
            runner::crash::SWEEP_MID_TRANSACTION,
            "SWEEP_MID_TRANSACTION",
        ),
        (runner::crash::SWEEP_AFTER_COMMIT, "SWEEP_AFTER_COMMIT"),
    ];
    NAMES
        .iter()
        .find(|(p, _)| p == &point)
        .map(|(_, n)| *n)
        .unwrap_or("(no constant: add it to runner_constant)")
}
