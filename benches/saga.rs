//! Criterion benches of the saga hot path: routing a subject to its sagas, decode+route,
//! program evaluation of the example saga, and group commit at batch sizes 1, 16 and
//! 256. The relay's publishing and the effect pool need a live NATS server: `runner
//! bench` measures them next to raw JetStream rates of the same run.
//!
//! `cargo bench --bench saga`. Figures are per operation on this machine; compare runs
//! of the same machine only (see docs/performance.md).

use std::path::PathBuf;

// The same allocator as the `runner` binary, so the figures match what it does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use runner::dev::TempDir;
use runner::manifest::SagaCatalog;
use runner::program::{Limits, ProgramInput};
use runner::saga::{decode, DecodeConfig, Decoded, Executor, MessageInfo};
use runner::settings::Settings;
use runner::store::{CommitBatch, Store};
use serde_json::{json, Value};

fn catalog() -> SagaCatalog {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/example/sagas.yaml");
    SagaCatalog::load(&[path], 20_000, &Limits::default()).expect("example manifest")
}

fn placed(i: u64) -> Value {
    json!({
        "event_id": format!("e-{i}"), "tenant_id": "acme", "aggregate_type": "order",
        "aggregate_id": format!("o-{i}"), "event_type": "OrderPlaced", "version": 1,
        "occurred_at": event_time(i),
        "payload": {"total": 4200, "currency": "EUR", "customer_id": "c-7"},
        "metadata": {"correlation_id": format!("req-{i}"),
                     "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    })
}

fn info(i: u64) -> MessageInfo {
    MessageInfo {
        stream: "AGGREGATE_EVENTS".into(),
        seq: i,
        delivered: 1,
        forgiven: 0,
        subject: "aggregate.acme.order.OrderPlaced".into(),
        published_ms: 0,
    }
}

fn bench_decode(c: &mut Criterion) {
    let catalog = catalog();
    let cfg = DecodeConfig::from_settings(&Settings::default());
    let body = placed(1).to_string().into_bytes();
    let info = info(1);
    c.bench_function("decode_and_route_order_placed", |b| {
        b.iter(|| decode(&cfg, &catalog, &info, None, &body))
    });
}

fn bench_routing(c: &mut Criterion) {
    let catalog = catalog();
    let mut group = c.benchmark_group("route_subject");
    for subject in [
        "aggregate.acme.order.OrderPlaced",
        "workflow.result.acme.charge_card",
        "aggregate.acme.invoice.Issued",
    ] {
        group.bench_function(subject, |b| b.iter(|| catalog.route(subject).count()));
    }
    group.finish();
}

fn bench_program(c: &mut Criterion) {
    let catalog = catalog();
    let saga = &catalog.sagas[0];
    let event = placed(1);
    let ctx = json!({"tenant_id": "acme", "saga": "order_fulfilment", "correlation_id": "o-1",
                     "stream": "AGGREGATE_EVENTS", "subject": "aggregate.acme.order.OrderPlaced", "kind": "aggregate", "seq": 1});
    let state = Value::Null;
    c.bench_function("program_eval_order_placed", |b| {
        b.iter(|| {
            let input = ProgramInput {
                state: &state,
                event: &event,
                ctx: &ctx,
            };
            saga.on_event.eval(&input, saga.gas).expect("program runs")
        })
    });
}

/// The whole execute step of one event: dedupe check and instance read (LMDB), the
/// program, command ids, envelopes, metadata and the timer.
fn bench_execute(c: &mut Criterion) {
    let catalog = catalog();
    let cfg = DecodeConfig::from_settings(&Settings::default());
    let dir = TempDir::new("bench").expect("temp dir");
    let store = Store::open(&dir.path().join("store"), 1 << 30).expect("store");
    let events: Vec<_> = (0..1024u64)
        .map(|i| {
            let body = placed(i).to_string().into_bytes();
            match decode(&cfg, &catalog, &info(i), None, &body) {
                Decoded::Event(ev) => ev,
                Decoded::Quarantine(..) => panic!("bench event must decode"),
            }
        })
        .collect();
    let mut exec = Executor::new("workflow.cmd");
    let mut n = 0usize;
    c.bench_function("execute_order_placed", |b| {
        let reader = store.reader().expect("reader");
        b.iter(|| {
            n += 1;
            // A new epoch forgets the overlay, so each event starts its instance anew.
            exec.begin_batch(n as u64, 0);
            let i = n % events.len();
            exec.execute(&reader, &events[i], &info(i as u64), 1)
                .expect("execute")
        })
    });
}

/// The workflow's second transition: the `charge_card` result reaching an instance
/// that is `charging` (its record read from the store, its state merged with the
/// payment).
fn bench_execute_result(c: &mut Criterion) {
    let catalog = catalog();
    let cfg = DecodeConfig::from_settings(&Settings::default());
    let dir = TempDir::new("bench").expect("temp dir");
    let store = Store::open(&dir.path().join("store"), 1 << 30).expect("store");
    const ORDERS: u64 = 1024;
    let mut exec = Executor::new("workflow.cmd");
    let mut batch = CommitBatch::default();
    {
        let reader = store.reader().expect("reader");
        for i in 0..ORDERS {
            let body = placed(i).to_string().into_bytes();
            let Decoded::Event(ev) = decode(&cfg, &catalog, &info(i), None, &body) else {
                panic!("bench event must decode")
            };
            let out = exec.execute(&reader, &ev, &info(i), 1).expect("execute");
            batch.transitions.extend(out.transitions);
        }
    }
    store.commit(&batch).expect("commit");
    let result_info = |i: u64| MessageInfo {
        stream: "WORKFLOW_EVENTS".into(),
        subject: "workflow.result.acme.charge_card".into(),
        ..info(i)
    };
    let events: Vec<_> = (0..ORDERS)
        .map(|i| {
            let body = json!({
                "event_id": format!("r-{i}"), "tenant_id": "acme", "command_id": format!("c-{i}"),
                "effect_name": "charge_card", "result_type": "succeeded",
                "payload": {"payment_id": format!("p-{i}")}, "error": null, "attempts": 1,
                "timestamp": event_time(i),
                "metadata": {"saga_name": "order_fulfilment", "correlation_id": format!("o-{i}"),
                             "causation_id": format!("e-{i}"),
                             "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
            })
            .to_string()
            .into_bytes();
            match decode(&cfg, &catalog, &result_info(i), None, &body) {
                Decoded::Event(ev) => ev,
                Decoded::Quarantine(q, _) => panic!("bench result must decode: {}", q.reason),
            }
        })
        .collect();
    let mut n = 0u64;
    c.bench_function("execute_payment_result", |b| {
        let reader = store.reader().expect("reader");
        b.iter(|| {
            n += 1;
            // A new epoch forgets the overlay: each result meets its instance as stored.
            exec.begin_batch(n, 0);
            let i = n % ORDERS;
            let out = exec
                .execute(&reader, &events[i as usize], &result_info(i), 1)
                .expect("execute");
            assert_eq!(out.transitions.len(), 1, "the result reaches its instance");
            out
        })
    });
}

fn bench_group_commit(c: &mut Criterion) {
    let catalog = catalog();
    let cfg = DecodeConfig::from_settings(&Settings::default());
    let dir = TempDir::new("bench").expect("temp dir");
    let store = Store::open(&dir.path().join("store"), 4 << 30).expect("store");
    let mut group = c.benchmark_group("group_commit");
    let mut next = 0u64;
    for size in [1u64, 16, 256] {
        group.throughput(Throughput::Elements(size));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter_batched(
                || {
                    // Fresh instances each iteration, so every commit writes new records.
                    let mut exec = Executor::new("workflow.cmd");
                    let reader = store.reader().expect("reader");
                    let mut batch = CommitBatch::default();
                    for _ in 0..size {
                        next += 1;
                        let body = placed(next).to_string().into_bytes();
                        let Decoded::Event(ev) = decode(&cfg, &catalog, &info(next), None, &body)
                        else {
                            panic!("bench event must decode")
                        };
                        let out = exec.execute(&reader, &ev, &info(next), 1).expect("execute");
                        batch.transitions.extend(out.transitions);
                    }
                    batch
                },
                |batch| store.commit(&batch).expect("commit"),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// The scheduler's scan with 100,000 timers pending, 1,000 of them due: one batch of
/// 256 due timers, and the next due time (what the scheduler sleeps on).
fn bench_timers(c: &mut Criterion) {
    let dir = TempDir::new("bench").expect("temp dir");
    // Seeded on first use, so a run filtered to other benches (and a profile of
    // `Store::commit`) does not write the 100,000 timers.
    let seeded = std::cell::OnceCell::new();
    let store = || {
        seeded.get_or_init(|| {
            let store = Store::open(&dir.path().join("store"), 4 << 30).expect("store");
            // 1,000 due (from t = 0 ms), then 99,000 in the future.
            runner::dev::seed_timers(&store, "acme", 100_000, 0, 1_000_000).expect("seed");
            store
        })
    };
    let now = 999_000;
    let mut group = c.benchmark_group("timers_100k_pending");
    group.bench_function("due_batch_of_256", |b| {
        let store = store();
        b.iter(|| store.due_timers(now, 256).expect("scan"))
    });
    group.bench_function("next_due", |b| {
        let store = store();
        b.iter(|| store.next_due_ms().expect("next"))
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_routing,
    bench_decode,
    bench_program,
    bench_execute,
    bench_execute_result,
    bench_group_commit,
    bench_timers
);
criterion_main!(benches);

/// Events a millisecond apart, as a live stream would have them.
fn event_time(i: u64) -> String {
    let base = 1_795_773_600_000; // 2026-11-27T10:00:00Z
    runner::timefmt::format_rfc3339_ms(base + i as i64).unwrap_or_default()
}
