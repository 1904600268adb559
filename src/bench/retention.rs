//! Retention over time (`--sections retention`): the whole order workflow
//! (`manifests/example`, `combined` mode) in a `runner run` of its own, so its memory
//! and its store are its alone, at `rate` orders per second for `secs` seconds, with
//! finished instances, dedupe markers and effect completion records all kept
//! `retention` seconds. A line every minute (every quarter of the run when that is
//! shorter): orders completed and their latency (OrderPlaced publish → MarkPaid at the
//! Gateway, as the workflow phase measures it), the store's pages in use and its file,
//! the process's memory, and what the sweep deleted by kind.
//!
//! Then a summary: the store and the memory at the end of the first retention period
//! (the first moment anything expires) against the end; throughput and p99 of the first
//! and the last intervals after that period; the p99 with nothing to sweep (the first
//! period) against the sweeper busy (the rest); and the checks, PASS or FAIL: every
//! order completed, and what the sweep deleted equals what was written before the
//! horizon (end − retention), the sweep's lag allowed for ([`SLACK`]).
//!
//! The phase's streams, subjects, consumer and claims bucket are its own (a namespace,
//! as the integration tests use), created with a duplicate window of the retention, as
//! validation wants; the example saga's manifest is copied with its trigger subjects in
//! that namespace. The stand-in Gateway is the dev HTTP server keeping one arrival time
//! per order: `FakeGateway` keeps every request, 1.2 million of them in 20 minutes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::child::{memory_mib, Runner};
use super::order_placed;
use super::workflow::{noop_effects, publish_paced, FIRST_ORDER};
use crate::dev::{example_manifest, namespace, wait_until, HttpStub, Sandbox, StubResponse};
use crate::nats_io::Publisher;
use crate::settings::Settings;

/// The phase's length when `--soak-secs` is not given.
pub const SOAK_SECS: u64 = 1200;
/// What the sweep may lag behind the horizon, either way: a record expires at the
/// second after its retention ends, a sweep that found nothing looks again within a
/// second, and a finished order's records were written a few milliseconds before its
/// MarkPaid reached the Gateway.
const SLACK: Duration = Duration::from_secs(5);
/// Within this share of each other, two figures are "flat".
const FLAT: f64 = 0.10;
/// Most orders one run keeps times for (two `u64` each).
const MOST_ORDERS: u64 = 20_000_000;

pub fn run(sandbox: &Sandbox, rate: u64, secs: u64, retention: u64) -> Result<(), String> {
    let total = rate.saturating_mul(secs);
    if total > MOST_ORDERS {
        return Err(format!(
            "--rate × --soak-secs is {total} orders; the retention phase takes at most {MOST_ORDERS}"
        ));
    }
    let timeline: Arc<OnceLock<Timeline>> = Arc::default();
    let gateway = {
        let timeline = timeline.clone();
        HttpStub::start(move |request| {
            if let (Some(t), Some(order)) = (timeline.get(), order_of(&request.body)) {
                t.arrived(order);
            }
            StubResponse {
                status: 202,
                headers: Vec::new(),
                body: Vec::new(),
            }
        })
        .map_err(|e| format!("stand-in gateway: {e}"))?
    };
    let Child {
        settings,
        env,
        prefix,
    } = child_settings(sandbox, retention, &gateway.url())?;
    let markers = markers_per_order(&settings, &prefix)?;
    let js = nats::jetstream::new(sandbox.connect()?);
    crate::nats_io::ensure_streams(&js, &settings).map_err(|e| e.to_string())?;
    let mut runner = Runner::start(sandbox, settings.clone(), "retention-runner", &env)?;
    let plan = Plan {
        rate,
        secs,
        retention: Duration::from_secs(retention),
        interval: Duration::from_secs((secs / 4).clamp(1, 60)),
        total,
        markers,
        prefix,
    };
    // The clock starts as publishing does, once the runner is ready. The runner is
    // stopped on every way out, and before the summary (its last log lines come first).
    let measured = runner.ready(Duration::from_secs(60)).and_then(|()| {
        let t = timeline.get_or_init(|| Timeline::new(total as usize));
        measure(sandbox, &runner, t, &plan).map(|m| (t, m))
    });
    runner.stop();
    let (t, (rows, last, end)) = measured?;
    summarize(&rows, &last, end, t, &plan)
}

/// What one run does.
struct Plan {
    rate: u64,
    secs: u64,
    retention: Duration,
    interval: Duration,
    total: u64,
    /// Dedupe markers each order leaves (one per saga each of its events reaches).
    markers: u64,
    /// Before every subject of the phase.
    prefix: String,
}

/// How the runner under measurement is set up.
struct Child {
    settings: Settings,
    /// The retention settings again, as environment variables.
    env: Vec<(&'static str, String)>,
    /// Before every subject of the phase (its namespace).
    prefix: String,
}

/// The child's settings: the example workflow in `combined` mode on streams of its own,
/// everything kept `retention` seconds; and the same as environment variables (they
/// come after the file, so none this process inherited can change them).
fn child_settings(sandbox: &Sandbox, retention: u64, gateway_url: &str) -> Result<Child, String> {
    let token = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let ns = format!("ret{token}");
    let mut s = sandbox.settings.clone();
    s.mode = crate::settings::Mode::Combined;
    namespace(&mut s, &ns, &token);
    s.manifests.sagas = vec![namespaced_manifest(sandbox, &ns)?];
    s.manifests.effects = vec![noop_effects(sandbox, "bench-retention-effects.json")?];
    s.relay.gateway_url = gateway_url.to_string();
    s.storage.path = sandbox.dir.path().join("retention-store");
    s.retention.finished_instances_secs = retention;
    s.retention.dedupe_secs = retention;
    s.retention.effect_records_secs = retention;
    // What validation holds records to: the streams' duplicate window and every
    // redelivery of a lost ack (ack wait × deliveries).
    s.streams.duplicate_window_secs = retention;
    let deliveries = s.consumer.max_deliver.max(1) as u64;
    s.consumer.ack_wait_ms = s.consumer.ack_wait_ms.min(retention * 1000 / deliveries);
    // A pull request must expire well within the ack wait.
    s.consumer.fetch_wait_ms = s.consumer.fetch_wait_ms.min(s.consumer.ack_wait_ms / 5);
    s.validate()
        .map_err(|e| format!("the retention phase's settings: {e}"))?;
    let env = vec![
        (
            "RUNNER_RETENTION_FINISHED_INSTANCES_SECS",
            retention.to_string(),
        ),
        ("RUNNER_RETENTION_DEDUPE_SECS", retention.to_string()),
        (
            "RUNNER_RETENTION_EFFECT_RECORDS_SECS",
            retention.to_string(),
        ),
        (
            "RUNNER_STREAMS_DUPLICATE_WINDOW_SECS",
            retention.to_string(),
        ),
        (
            "RUNNER_CONSUMER_ACK_WAIT_MS",
            s.consumer.ack_wait_ms.to_string(),
        ),
        (
            "RUNNER_CONSUMER_FETCH_WAIT_MS",
            s.consumer.fetch_wait_ms.to_string(),
        ),
    ];
    Ok(Child {
        settings: s,
        env,
        prefix: format!("{ns}."),
    })
}

/// `manifests/example/sagas.yaml` with its trigger subjects under `ns` and its program
/// paths made absolute, written to the sandbox's directory.
fn namespaced_manifest(sandbox: &Sandbox, ns: &str) -> Result<PathBuf, String> {
    let source = example_manifest();
    let base = source.parent().unwrap_or(Path::new("."));
    let mut doc = crate::manifest::read_document(&source)
        .map_err(|e| format!("{}: {e}", source.display()))?;
    let absolute = |v: &mut Value, key: &str| {
        if let Some(rel) = v.get(key).and_then(Value::as_str) {
            v[key] = json!(base.join(rel));
        }
    };
    for saga in items(&mut doc, "sagas") {
        for trigger in items(saga, "triggers") {
            if let Some(subject) = trigger["subject"].as_str() {
                trigger["subject"] = json!(format!("{ns}.{subject}"));
            }
        }
        absolute(saga, "on_event");
        absolute(saga, "compensation");
        for older in items(saga, "previous") {
            absolute(older, "on_event");
            absolute(older, "compensation");
        }
        for migration in items(saga, "migrate") {
            absolute(migration, "program");
        }
    }
    let path = sandbox.dir.path().join("bench-retention-sagas.json");
    std::fs::write(&path, doc.to_string()).map_err(|e| e.to_string())?;
    Ok(path)
}

/// The elements of the array at `v[k]`; none when there is no array there.
fn items<'a>(v: &'a mut Value, k: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(k)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// Dedupe markers an order leaves, read from the manifest: one per saga its
/// `OrderPlaced` reaches and one per saga its `charge_card` result reaches.
fn markers_per_order(settings: &Settings, prefix: &str) -> Result<u64, String> {
    let catalog = crate::cli::load_catalog(settings).map_err(|e| e.to_string())?;
    let (placed, event) = order_placed(FIRST_ORDER);
    let tenant = event["tenant_id"].as_str().unwrap_or_default();
    let result = format!("{}.{tenant}.charge_card", settings.streams.result_prefix);
    Ok([format!("{prefix}{placed}"), result]
        .iter()
        .map(|subject| catalog.route(subject).count() as u64)
        .sum())
}

/// Which order a MarkPaid is for (`aggregate_id` is `o-{FIRST_ORDER + i}`).
fn order_of(body: &[u8]) -> Option<u64> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let n: u64 = body["aggregate_id"]
        .as_str()?
        .strip_prefix("o-")?
        .parse()
        .ok()?;
    n.checked_sub(FIRST_ORDER)
}

/// When each order was published and when its MarkPaid first reached the Gateway, in
/// µs from the first publish (0: not yet).
struct Timeline {
    start: Instant,
    sent: Vec<AtomicU64>,
    done: Vec<AtomicU64>,
    completed: AtomicU64,
}

impl Timeline {
    fn new(orders: usize) -> Timeline {
        let zeros = || (0..orders).map(|_| AtomicU64::new(0)).collect();
        Timeline {
            start: Instant::now(),
            sent: zeros(),
            done: zeros(),
            completed: AtomicU64::new(0),
        }
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn now_us(&self) -> u64 {
        (self.elapsed().as_micros() as u64).max(1)
    }

    fn sent(&self, order: u64) {
        if let Some(at) = self.sent.get(order as usize) {
            at.store(self.now_us(), Ordering::Relaxed);
        }
    }

    /// A retried dispatch may deliver a MarkPaid again: the first arrival counts.
    fn arrived(&self, order: u64) {
        let Some(at) = self.done.get(order as usize) else {
            return;
        };
        let now = self.now_us();
        if at
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Orders whose MarkPaid arrived in `[from, to)`, with their latencies.
    fn window(&self, from: Duration, to: Duration) -> Window {
        let (from_us, to_us) = (from.as_micros() as u64, to.as_micros() as u64);
        let mut latencies: Vec<u64> = self
            .done
            .iter()
            .zip(&self.sent)
            .filter_map(|(done, sent)| {
                let (done, sent) = (done.load(Ordering::Relaxed), sent.load(Ordering::Relaxed));
                (done != 0 && sent != 0 && (from_us..to_us).contains(&done))
                    .then(|| done.saturating_sub(sent))
            })
            .collect();
        latencies.sort_unstable();
        let at = |q: f64| {
            let i = ((latencies.len() as f64 * q) as usize).min(latencies.len().max(1) - 1);
            latencies.get(i).map(|us| Duration::from_micros(*us))
        };
        Window {
            from,
            to,
            completed: latencies.len() as u64,
            p50: at(0.5),
            p99: at(0.99),
        }
    }

    /// Orders published before `at`.
    fn placed_before(&self, at: Duration) -> u64 {
        before(&self.sent, at)
    }

    /// Orders whose MarkPaid arrived before `at`.
    fn finished_before(&self, at: Duration) -> u64 {
        before(&self.done, at)
    }
}

fn before(times: &[AtomicU64], at: Duration) -> u64 {
    let at = at.as_micros() as u64;
    times
        .iter()
        .map(|t| t.load(Ordering::Relaxed))
        .filter(|t| *t != 0 && *t < at)
        .count() as u64
}

/// The orders completed in a stretch of the run.
struct Window {
    from: Duration,
    to: Duration,
    completed: u64,
    p50: Option<Duration>,
    p99: Option<Duration>,
}

impl Window {
    fn per_sec(&self) -> f64 {
        self.completed as f64 / self.to.saturating_sub(self.from).as_secs_f64().max(1e-9)
    }

    fn span(&self) -> String {
        format!("{}–{} s", secs(self.from), secs(self.to))
    }
}

/// The child's figures at one moment.
struct Sample {
    /// `runner_store_used_bytes` and `runner_store_file_bytes`: the child is this
    /// binary, which always exports both; None when the scrape failed.
    used: Option<u64>,
    file: Option<u64>,
    /// `runner_retention_expired_total` of instances, markers and effect records.
    expired: Option<[u64; 3]>,
    rss_mib: u64,
    anon_mib: u64,
}

/// The runner's store, expiries and memory now (from its `/metrics` and `/proc`).
fn sample(runner: &Runner) -> Sample {
    let metrics = runner.metrics().ok();
    let get = |name: &str| metrics.as_ref()?.get(name).map(|v| v as u64);
    let kind = |k: &str| get(&format!("runner_retention_expired_total{{kind=\"{k}\"}}"));
    let expired = match (kind("instance"), kind("marker"), kind("effect_record")) {
        (Some(i), Some(m), Some(e)) => Some([i, m, e]),
        _ => None,
    };
    let (rss_mib, anon_mib, _) = memory_mib(runner.pid());
    Sample {
        used: get("runner_store_used_bytes"),
        file: get("runner_store_file_bytes"),
        expired,
        rss_mib,
        anon_mib,
    }
}

/// Publishes the orders and prints a line every interval; returns the lines, and the
/// runner's figures when every order completed (or a minute after the last publish)
/// with when that was.
fn measure(
    sandbox: &Sandbox,
    runner: &Runner,
    t: &Timeline,
    plan: &Plan,
) -> Result<(Vec<Row>, Sample, Duration), String> {
    println!();
    println!(
        "retention: the order workflow (manifests/example, combined) in `runner run` of its own at {}/s for {} s, finished instances, dedupe markers and effect records kept {} s ({} markers per order); a line every {} s",
        plan.rate,
        plan.secs,
        plan.retention.as_secs(),
        plan.markers,
        plan.interval.as_secs()
    );
    println!(
        "  {:>6} {:>8} {:>7} {:>7} {:>8} {:>9} {:>9} {:>8} {:>8}   expired: instances / markers / effect records",
        "s", "orders", "per s", "p50 ms", "p99 ms", "used MiB", "file MiB", "RSS MiB", "anon MiB"
    );
    let nc = sandbox.connect()?;
    let stopping = AtomicBool::new(false);
    let rows = std::thread::scope(|scope| {
        let reporter = scope.spawn(|| report(runner, t, plan, &stopping));
        let published = Publisher::new(&nc, 256, Duration::from_secs(5), 3)
            .map_err(|e| e.to_string())
            .and_then(|mut publisher| {
                let sent = publish_paced(
                    &mut publisher,
                    0..plan.total,
                    plan.rate,
                    "ret",
                    &plan.prefix,
                    |i, _| {
                        t.sent(i);
                        !stopping.load(Ordering::Relaxed)
                    },
                );
                publisher.finish();
                sent
            });
        if published.is_err() {
            stopping.store(true, Ordering::Relaxed);
        }
        let rows = reporter
            .join()
            .unwrap_or_else(|_| Err("the reporting thread panicked".into()));
        published.and(rows)
    })?;
    // The last orders, then the figures the checks compare.
    wait_until(Duration::from_secs(60), || t.completed() >= plan.total);
    let end = t.elapsed();
    Ok((rows, sample(runner), end))
}

/// Samples the runner at the end of every interval and prints its line, until the run's
/// end; an error when the runner exits (and then publishing stops too).
fn report(
    runner: &Runner,
    t: &Timeline,
    plan: &Plan,
    stopping: &AtomicBool,
) -> Result<Vec<Row>, String> {
    let end = Duration::from_secs(plan.secs);
    let mut rows = Vec::new();
    let mut from = Duration::ZERO;
    while from < end {
        let to = (from + plan.interval).min(end);
        while t.elapsed() < to {
            if stopping.load(Ordering::Relaxed) {
                return Err("publishing failed".into());
            }
            if let Some(why) = runner.exited() {
                stopping.store(true, Ordering::Relaxed);
                return Err(why);
            }
            std::thread::sleep(
                to.saturating_sub(t.elapsed())
                    .min(Duration::from_millis(200)),
            );
        }
        let row = Row {
            window: t.window(from, to),
            sample: sample(runner),
        };
        print_row(&row);
        rows.push(row);
        from = to;
    }
    Ok(rows)
}

struct Row {
    window: Window,
    sample: Sample,
}

fn print_row(row: &Row) {
    let (w, s) = (&row.window, &row.sample);
    let expired = s.expired.map_or(
        "? (no runner_retention_expired_total)".into(),
        |[i, m, e]| format!("{i} / {m} / {e}"),
    );
    println!(
        "  {:>6} {:>8} {:>7.0} {:>7} {:>8} {:>9} {:>9} {:>8} {:>8}   {expired}",
        secs(w.to),
        w.completed,
        w.per_sec(),
        ms(w.p50),
        ms(w.p99),
        mib(s.used),
        mib(s.file),
        s.rss_mib,
        s.anon_mib
    );
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("?".into(), |b| {
        format!("{:.1}", b as f64 / (1 << 20) as f64)
    })
}

/// `b` against `a`: "×1.03, flat (within 10%)", "×0.85, lower" or "×1.25, GREW".
fn versus(a: f64, b: f64) -> String {
    if a <= 0.0 {
        return "–".into();
    }
    let ratio = b / a;
    let verdict = if (ratio - 1.0).abs() <= FLAT {
        format!("flat (within {:.0}%)", FLAT * 100.0)
    } else if ratio < 1.0 {
        "lower".into()
    } else {
        "GREW".into()
    };
    format!("×{ratio:.2}, {verdict}")
}

/// Prints the summary and the checks; an error when a check failed.
fn summarize(
    rows: &[Row],
    last: &Sample,
    end: Duration,
    t: &Timeline,
    plan: &Plan,
) -> Result<(), String> {
    let r = plan.retention;
    println!();
    println!(
        "retention summary: nothing expires before {} s; the sweep deletes from then on",
        r.as_secs()
    );
    // Each check: passed, and what it says.
    let mut checks: Vec<(bool, String)> = Vec::new();
    // The first line at or after the first retention period's end, against the last.
    let first = rows.iter().find(|row| row.window.to >= r);
    match (first, rows.last()) {
        (Some(a), Some(b)) if a.window.to < b.window.to => {
            let (at, to) = (secs(a.window.to), secs(b.window.to));
            let (sa, sb) = (&a.sample, &b.sample);
            let later: Vec<Option<u64>> = rows
                .iter()
                .filter(|row| row.window.to > a.window.to)
                .map(|row| row.sample.used)
                .collect();
            match (sa.used, sb.used) {
                (Some(x), Some(y)) => {
                    let each: Vec<String> = later.iter().map(|u| mib(*u)).collect();
                    println!(
                        "  store pages in use: {} MiB at {at} s (the first retention period's end), {} MiB at {to} s: {}; each line after {at} s: {} MiB",
                        mib(Some(x)),
                        mib(Some(y)),
                        versus(x as f64, y as f64),
                        each.join(" / ")
                    );
                    // Growth is what retention rules out; a tiny store moves by
                    // whole pages, hence the MiB.
                    let most = later.iter().flatten().copied().max().unwrap_or(y);
                    let allowed = ((x as f64 * (1.0 + FLAT)) as u64).max(x + (1 << 20));
                    checks.push((
                        most <= allowed,
                        format!(
                            "store pages in use stayed within {:.0}% (or 1 MiB) of the first retention period's end after it: at most {} MiB, against {} MiB at {at} s",
                            FLAT * 100.0,
                            mib(Some(most)),
                            mib(Some(x))
                        ),
                    ));
                }
                _ => println!("  store pages in use: not measured (scrape failed: no runner_store_used_bytes in the runner's /metrics)"),
            }
            if let (Some(x), Some(y)) = (sa.file, sb.file) {
                println!(
                    "  store file: {} MiB at {at} s, {} MiB at {to} s: {}",
                    mib(Some(x)),
                    mib(Some(y)),
                    versus(x as f64, y as f64)
                );
            }
            println!(
                "  RSS: {} MiB at {at} s, {} MiB at {to} s: {}; anonymous {} → {} MiB: {}",
                sa.rss_mib,
                sb.rss_mib,
                versus(sa.rss_mib as f64, sb.rss_mib as f64),
                sa.anon_mib,
                sb.anon_mib,
                versus(sa.anon_mib as f64, sb.anon_mib as f64)
            );
        }
        _ => println!(
            "  the run ends before a line after the first retention period: no store or memory over time to compare"
        ),
    }
    let after: Vec<&Window> = rows
        .iter()
        .map(|row| &row.window)
        .filter(|w| w.from >= r)
        .collect();
    // Each side pools two lines when there are four or more, else one.
    let k = if after.len() >= 4 { 2 } else { 1 };
    if after.len() >= 2 {
        let early = t.window(after[0].from, after[k - 1].to);
        let late = t.window(after[after.len() - k].from, after[after.len() - 1].to);
        let p99 = |w: &Window| w.p99.map_or(0.0, |d| d.as_secs_f64());
        println!(
            "  after the first period, first vs last: {} {:.0}/s, p99 {} ms; {} {:.0}/s, p99 {} ms: throughput ×{:.2}, p99 ×{:.2}",
            early.span(),
            early.per_sec(),
            ms(early.p99),
            late.span(),
            late.per_sec(),
            ms(late.p99),
            late.per_sec() / early.per_sec().max(1e-9),
            p99(&late) / p99(&early).max(1e-9)
        );
    }
    // Nothing to sweep: the lines of the first period, the first one (start-up) left
    // out when there are more. The sweeper busy: every line after the first period.
    let quiet: Vec<&Window> = rows
        .iter()
        .map(|row| &row.window)
        .filter(|w| w.to <= r)
        .collect();
    let startup = if quiet.len() == 1 {
        ", start-up included"
    } else {
        ""
    };
    let quiet = &quiet[usize::from(quiet.len() >= 2)..];
    match (quiet.first(), quiet.last(), after.first(), after.last()) {
        (Some(q0), Some(q1), Some(b0), Some(b1)) => {
            let nothing = t.window(q0.from, q1.to);
            let busy = t.window(b0.from, b1.to);
            let each: Vec<String> = after.iter().map(|w| ms(w.p99)).collect();
            let swept = match (first.and_then(|f| f.sample.expired), last.expired) {
                (Some(a), Some(b)) => {
                    let from = first.map_or(Duration::ZERO, |f| f.window.to);
                    let n: u64 = b.iter().sum::<u64>() - a.iter().sum::<u64>();
                    format!(
                        "; the sweep deleted {:.0} records/s meanwhile",
                        n as f64 / end.saturating_sub(from).as_secs_f64().max(1e-9)
                    )
                }
                _ => String::new(),
            };
            println!(
                "  p99 with nothing to sweep ({}{startup}) {} ms; with the sweeper busy ({}) {} ms, each line: {} ms{swept}",
                nothing.span(),
                ms(nothing.p99),
                busy.span(),
                ms(busy.p99),
                each.join(" / ")
            );
        }
        _ => println!(
            "  p99 with nothing to sweep against the sweeper busy: needs a whole line before {} s and one after",
            r.as_secs()
        ),
    }

    // What the sweep deleted by the end against what was written before the horizon.
    let horizon = end.saturating_sub(r);
    let lower = t.finished_before(horizon.saturating_sub(SLACK));
    let upper = t.placed_before(horizon + SLACK);
    println!(
        "  at the end ({} s) the horizon is {} s: {} orders had finished before it; the sweep's lag allowed, at least those finished before {} s ({lower}) and at most those placed before {} s ({upper})",
        secs(end),
        secs(horizon),
        t.finished_before(horizon),
        secs(horizon.saturating_sub(SLACK)),
        secs(horizon + SLACK)
    );
    checks.insert(
        0,
        (
            t.completed() == plan.total,
            format!("every order completed: {} of {}", t.completed(), plan.total),
        ),
    );
    match last.expired {
        Some([instances, markers, records]) => {
            for (what, got, per) in [
                ("instances", instances, 1),
                ("dedupe markers", markers, plan.markers),
                ("effect records", records, 1),
            ] {
                let (lo, hi) = (lower * per, upper * per);
                checks.push((
                    (lo..=hi).contains(&got),
                    format!("{what} expired: {got}, expected {lo}..={hi} ({per} per order)"),
                ));
            }
        }
        None => checks.push((
            false,
            "records expired: not measured (no runner_retention_expired_total in the runner's /metrics)".into(),
        )),
    }
    for (pass, what) in &checks {
        println!("  {} {what}", if *pass { "PASS" } else { "FAIL" });
    }
    let failed = checks.iter().filter(|(pass, _)| !pass).count();
    if failed > 0 {
        return Err(format!(
            "{failed} of {} retention checks failed",
            checks.len()
        ));
    }
    Ok(())
}
