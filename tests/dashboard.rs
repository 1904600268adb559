//! The Grafana dashboard and the alerting rules (docker/observability/) name only metrics
//! the binary exports (issue 25, item 5), and the metrics an operator reaches for first
//! are there with sane values (item 6): a real `runner run --mode combined` on the
//! example manifests takes a few orders, one of which the Gateway rejects (a dead
//! letter), and one malformed event (a quarantine), then its `/metrics` is scraped and
//! every metric named by a dashboard query, a dashboard variable or an alert rule must
//! be among its samples.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::ops::{admin_port, metric};
use common::{config_file, wait_until, Rig, RunnerProcess, WAIT};
use runner::dev::{example_manifest, FakeGateway, Reply};
use runner::settings::Mode;
use serde_json::{json, Value};

/// Metrics the scraper records itself, per target: rules may name them though the
/// binary does not export them.
const SCRAPER_METRICS: [&str; 1] = ["up"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("docker/observability/runner-dashboard.json"))
        .expect("the dashboard is JSON")
}

fn yaml(path: &str) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// Every PromQL expression of the dashboard: panel targets, and the metric of each
/// `label_values(metric, label)` variable (as a query of its own).
fn dashboard_queries(d: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        ("definition", Value::String(d)) => {
                            if let Some(inner) = d
                                .strip_prefix("label_values(")
                                .and_then(|r| r.rsplit_once(','))
                            {
                                out.push(inner.0.to_string());
                            }
                        }
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(d, &mut out);
    out
}

/// Every rule's `expr` in a Prometheus rules file.
fn rule_queries(rules: &Value) -> Vec<(String, String)> {
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
            (
                name.to_string(),
                r["expr"].as_str().expect("expr").to_string(),
            )
        })
        .collect()
}

/// The metric names a PromQL expression selects: identifiers outside strings, label
/// matchers, ranges and grouping clauses that are not functions, keywords or numbers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Aggregations too: `sum by (x) (…)` puts the clause between the name and its
    // parenthesis.
    // The grouping clauses are in `CLAUSES`, which is checked first.
    const KEYWORDS: [&str; 21] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
    ];
    const CLAUSES: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // After a grouping keyword, its parenthesised label list is skipped.
    let mut skip_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += if chars[i] == '\\' { 2 } else { 1 };
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_list => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                skip_list = false;
            }
            c if c.is_ascii_digit() || c == '.' || c == '$' => {
                // A number, a duration or a Grafana variable.
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                let lower = word.to_ascii_lowercase();
                if CLAUSES.contains(&lower.as_str()) {
                    skip_list = next == Some(&'(');
                } else if KEYWORDS.contains(&lower.as_str()) || next == Some(&'(') {
                    // A keyword, or a function or aggregation called here.
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The sample names of a text-format page (`name` or `name{labels}` at a line's start).
fn sample_names(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// `manifests/example/sagas.yaml` with its trigger subjects under the rig's namespace
/// and its program paths made absolute.
fn namespaced_example(rig: &Rig) -> PathBuf {
    let source = example_manifest();
    let base = source.parent().unwrap().to_path_buf();
    let mut doc = runner::manifest::read_document(&source).unwrap();
    for saga in doc["sagas"].as_array_mut().unwrap() {
        for trigger in saga["triggers"].as_array_mut().unwrap() {
            let subject = trigger["subject"].as_str().unwrap();
            trigger["subject"] = json!(format!("{}.{subject}", rig.ns));
        }
        for key in ["on_event", "compensation"] {
            if let Some(rel) = saga[key].as_str() {
                saga[key] = json!(base.join(rel));
            }
        }
    }
    let path = rig.dir.path().join("example-sagas.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

fn order_placed(order: &str) -> Value {
    json!({
        "event_id": format!("e-{order}"), "tenant_id": "acme", "aggregate_type": "order",
        "aggregate_id": order, "event_type": "OrderPlaced", "occurred_at": "2026-11-27T10:00:00Z",
        "payload": {"customer_id": "c-7", "total": 4200}, "metadata": {"correlation_id": order}
    })
}

fn scrape(base: &str) -> String {
    let (status, body) = common::ops::call("GET", &format!("{base}/metrics"), None);
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn the_dashboard_and_the_alerts_name_only_metrics_the_binary_exports() {
    let gateway = FakeGateway::start(|req, _| match req.body["aggregate_id"].as_str() {
        Some("o-3") => Reply {
            body: r#"{"error": "order is closed"}"#.into(),
            ..Reply::status(400)
        },
        _ => Reply::status(202),
    })
    .unwrap();
    let mut rig = Rig::new(json!([]));
    rig.settings.mode = Mode::Combined;
    rig.settings.manifests.sagas = vec![namespaced_example(&rig)];
    rig.settings.manifests.effects = vec![example_manifest().with_file_name("effects.yaml")];
    rig.settings.relay.gateway_url = gateway.url().to_string();
    let base = admin_port(&mut rig);
    let config = config_file(&rig);
    let nc = rig.connect();
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    for order in ["o-1", "o-2", "o-3"] {
        rig.publish(&nc, &subject, &order_placed(order));
    }
    let mut bad = order_placed("bad-1");
    bad.as_object_mut().unwrap().remove("event_type");
    rig.publish(&nc, &subject, &bad);

    let log = rig.dir.path().join("runner.log");
    let _runner = RunnerProcess::start_logged(&config, None, &log);
    let saga = "order_fulfilment";
    let want = [
        // OrderPlaced and the charge's result, for each order.
        (
            format!("runner_saga_transitions_total{{saga=\"{saga}\"}}"),
            6.0,
        ),
        (
            format!("runner_saga_dead_letters_total{{saga=\"{saga}\"}}"),
            1.0,
        ),
        (
            "runner_saga_quarantined_total{saga=\"(none)\"}".to_string(),
            1.0,
        ),
        (
            "runner_effect_outcomes_total{effect=\"charge_card\",outcome=\"succeeded\"}"
                .to_string(),
            3.0,
        ),
        (
            "runner_effect_duration_seconds_count{effect=\"charge_card\"}".to_string(),
            3.0,
        ),
    ];
    let mut page = String::new();
    let reached = wait_until(WAIT * 2, || {
        page = match ureq::get(&format!("{base}/metrics")).call() {
            Ok(r) => r.into_string().unwrap_or_default(),
            Err(_) => return false,
        };
        // The consumers' lag too: the probe reads it on its own clock (every second
        // until it has, then every five).
        want.iter().all(|(name, n)| metric(&page, name) == Some(*n))
            && page.contains("runner_consumer_pending{")
    });
    assert!(
        reached,
        "labelled counts {:?} not reached; page:\n{page}\nlog:\n{}",
        want,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let page = scrape(&base);
    // What the labelled families add up to agrees with the plain counters.
    assert_eq!(
        metric(
            &page,
            &format!("runner_saga_faults_total{{saga=\"{saga}\"}}")
        ),
        Some(0.0),
        "a loaded saga has its series from the start"
    );
    assert_eq!(
        metric(&page, "runner_quarantined_total"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "runner_effect_breaker_state{effect=\"charge_card\"}"),
        Some(0.0)
    );
    assert_eq!(metric(&page, "runner_nats_connected"), Some(1.0));
    for reason in ["store_full", "stale_commit", "storage_error"] {
        assert_eq!(
            metric(
                &page,
                &format!("runner_intake_stopped{{reason=\"{reason}\"}}")
            ),
            Some(0.0),
            "{reason}"
        );
    }
    let sha = option_env!("RUNNER_GIT_SHA").unwrap_or("unknown");
    let build = format!(
        "runner_build_info{{version=\"{}\",git_sha=\"{sha}\",mode=\"combined\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric(&page, &build), Some(1.0), "{build} in:\n{page}");

    // The process, from /proc/self.
    let value = |name: &str| metric(&page, name).unwrap_or_else(|| panic!("{name} in:\n{page}"));
    let rss = value("process_resident_memory_bytes");
    assert!((1e6..8e9).contains(&rss), "resident {rss} bytes");
    let (fds, max_fds) = (value("process_open_fds"), value("process_max_fds"));
    assert!(fds >= 3.0 && fds <= max_fds, "{fds} open of {max_fds}");
    let now = runner::timefmt::now_ms() as f64 / 1000.0;
    let start = value("process_start_time_seconds");
    assert!(
        start <= now + 1.0 && start >= now - 600.0,
        "started at {start}, now {now}"
    );
    assert!(value("process_cpu_seconds_total") > 0.0);
    assert!(
        value("process_threads") >= 10.0,
        "one thread per stage at least"
    );

    // Every metric the dashboard and the rules name is a sample of the page.
    let exported = sample_names(&page);
    let mut missing = Vec::new();
    for query in dashboard_queries(&dashboard()) {
        for name in metric_names(&query) {
            if !exported.contains(&name) {
                missing.push(format!("dashboard: {name} (in {query})"));
            }
        }
    }
    for (alert, query) in rule_queries(&yaml("docker/observability/alerts.yml")) {
        for name in metric_names(&query) {
            if !exported.contains(&name) && !SCRAPER_METRICS.contains(&name.as_str()) {
                missing.push(format!("alerts.yml {alert}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named but not exported by the binary:\n{}",
        missing.join("\n")
    );
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, effect) (rate(runner_effect_duration_seconds_bucket{instance=~"$instance", effect=~"a|b"}[$__rate_interval])))"#
        ),
        ["runner_effect_duration_seconds_bucket"]
    );
    assert_eq!(
        names("runner_store_used_bytes / runner_store_max_bytes > 0.85"),
        ["runner_store_max_bytes", "runner_store_used_bytes"]
    );
    assert_eq!(
        names("sum by (instance) (rate(runner_fetched_total[5m])) == 0\nand on (instance) max without (reason) (runner_draining) == 0 offset 5m"),
        ["runner_draining", "runner_fetched_total"]
    );
    assert_eq!(
        names(r#"count(runner_effect_breaker_state{effect="x{y}"} == 2) or vector(0)"#),
        ["runner_effect_breaker_state"]
    );
    assert_eq!(names(r#"up{job="runner"} == 0"#), ["up"]);
    assert_eq!(
        names("time() - process_start_time_seconds"),
        ["process_start_time_seconds"]
    );
}

#[test]
fn every_dashboard_query_and_rule_selects_some_metric() {
    // A query the extraction reads nothing from would pass the check above unchecked.
    for query in dashboard_queries(&dashboard()) {
        assert!(!metric_names(&query).is_empty(), "{query}");
    }
    for (alert, query) in rule_queries(&yaml("docker/observability/alerts.yml")) {
        assert!(!metric_names(&query).is_empty(), "{alert}: {query}");
    }
}

/// The dashboard works on its own (imported) and provisioned: its queries name the
/// data source through a template variable, and the compose overlay mounts it where
/// the provisioning provider looks.
#[test]
fn the_dashboard_is_provisioned_and_stands_alone() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().expect("variables");
    let source = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(source["query"], "prometheus");
    let uid = format!("${{{}}}", source["name"].as_str().unwrap());
    let mut panels = 0;
    for panel in d["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        panels += 1;
        assert_eq!(
            panel["datasource"]["uid"],
            uid.as_str(),
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(
                target["datasource"]["uid"],
                uid.as_str(),
                "{}",
                panel["title"]
            );
        }
    }
    assert!(panels >= 20, "{panels} panels");

    let provider = yaml("docker/observability/grafana-dashboards.yml");
    let dir = provider["providers"][0]["options"]["path"]
        .as_str()
        .expect("the provider's path");
    let compose = yaml("docker/docker-compose.observability.yml");
    let mounts: Vec<&str> = compose["services"]["grafana"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mounted = |source: &str, target: &dyn Fn(&str) -> bool| {
        mounts.iter().any(|m| {
            let mut parts = m.split(':');
            let (s, t) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            s == source && target(t)
        })
    };
    assert!(
        mounted("./observability/runner-dashboard.json", &|t| Path::new(t)
            .parent()
            == Some(Path::new(dir))),
        "the dashboard mounted under {dir}: {mounts:?}"
    );
    assert!(
        mounted("./observability/grafana-dashboards.yml", &|t| t
            .starts_with("/etc/grafana/provisioning/dashboards/")),
        "the provider mounted: {mounts:?}"
    );
    let vmalert = &compose["services"]["vmalert"];
    let rules = vmalert["volumes"][0].as_str().unwrap_or("");
    assert!(
        rules.starts_with("./observability/alerts.yml:"),
        "vmalert loads the rules: {rules}"
    );
}

/// `ops.metrics_tenant_label`: series carry the tenant, for the first
/// `ops.metrics_max_tenants` tenants; later ones count under `(other)`.
#[test]
fn the_tenant_label_is_opt_in_and_capped() {
    let rig = Rig::new(common::recorder_saga());
    let mut settings = rig.settings.clone();
    settings.ops.metrics_tenant_label = true;
    settings.ops.metrics_max_tenants = 1;
    let nc = rig.connect();
    let pipeline = rig.start_with(settings);
    let ops = common::ops::ops_for(&rig, &pipeline, None);
    let base = format!("http://{}", ops.addr());
    // acme first (its series of its own), then two more tenants over the cap.
    rig.send(&nc, "e-1", "o-1", 1);
    common::await_stats(&pipeline, |s| s.transitions == 1);
    for (i, tenant) in ["globex", "initech"].iter().enumerate() {
        let subject = rig.aggregate_subject(tenant, "OrderPlaced");
        let id = format!("e-{tenant}");
        let body = common::event(
            &id,
            tenant,
            &format!("o-{i}"),
            "OrderPlaced",
            json!({"n": i}),
        );
        rig.publish(&nc, &subject, &body);
    }
    common::await_stats(&pipeline, |s| s.transitions == 3);
    let page = scrape(&base);
    let count = |tenant: &str| {
        metric(
            &page,
            &format!("runner_saga_transitions_total{{saga=\"recorder\",tenant=\"{tenant}\"}}"),
        )
    };
    assert_eq!(count("acme"), Some(1.0), "{page}");
    assert_eq!(count("(other)"), Some(2.0), "{page}");
    assert_eq!(count("globex"), None, "past the cap: {page}");
    assert!(
        !page.contains("runner_saga_transitions_total{saga=\"recorder\"} "),
        "no series without the tenant: {page}"
    );
}
