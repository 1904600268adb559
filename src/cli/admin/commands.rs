//! One function per `runner admin` command: the request each ops port gets, and what
//! is printed of the answers. Every port is asked at once (a thread each, at most
//! `targets::MAX_URLS`); a port that does not answer 2xx is reported with the server's
//! reason and makes the command exit 1, after the others' answers are printed.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::client::{query, segment, Client, Failure};
use super::render;
use super::table::{cell, Table};
use super::{
    AdminCommand, AdminError, InstancesCommand, ListArgs, MigrateArgs, RecordsCommand, ReplayArgs,
    Selection, ShowArgs,
};

/// `println!` that leaves quietly when stdout is closed (`runner admin … | head`):
/// the reader chose to stop, which is no failure to report with a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!`, likewise.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// Pages one port is asked for by `instances list --all`.
const MAX_PAGES: usize = 100;
/// How often `drain --wait` asks `/ready`.
const READY_POLL: Duration = Duration::from_millis(200);

pub struct Context<'a> {
    pub client: &'a Client,
    pub urls: &'a [String],
    pub json: bool,
}

/// What one port answered.
type Answer<T> = (String, Result<T, Failure>);

impl Context<'_> {
    /// `f(url)` for every port at once, in the order the ports were given.
    fn each<T: Send>(&self, f: impl Fn(&str) -> T + Sync) -> Vec<(String, T)> {
        std::thread::scope(|scope| {
            let f = &f;
            let handles: Vec<_> = self
                .urls
                .iter()
                .map(|url| (url, scope.spawn(move || f(url))))
                .collect();
            handles
                .into_iter()
                // A request thread only panics on a bug: carry its panic on.
                .map(|(url, h)| {
                    (
                        url.clone(),
                        h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                    )
                })
                .collect()
        })
    }

    fn ask(&self, method: &str, path: &str, body: Option<&Value>) -> Vec<Answer<Value>> {
        self.each(|url| self.client.call(url, method, path, body))
    }

    fn one_url(&self, what: &str) -> Result<(), AdminError> {
        match self.urls.len() {
            1 => Ok(()),
            n => Err(AdminError::Usage(format!(
                "{what} acts on one shard's store and consumers: give exactly one --url ({n} given)"
            ))),
        }
    }

    fn shard_column(&self) -> bool {
        self.urls.len() > 1
    }
}

/// Runs `command`; `Ok(true)` when every port answered 2xx.
pub fn execute(ctx: &Context, command: AdminCommand) -> Result<bool, AdminError> {
    match command {
        AdminCommand::Instances(InstancesCommand::List(args)) => instances_list(ctx, &args),
        AdminCommand::Instances(InstancesCommand::Show(args)) => Ok(instances_show(ctx, &args)),
        AdminCommand::Quarantine(cmd) => records(ctx, Records::Quarantine, cmd),
        AdminCommand::Deadletters(cmd) => records(ctx, Records::DeadLetters, cmd),
        AdminCommand::Drain { wait } => Ok(drain(ctx, wait.map(Duration::from_secs))),
        AdminCommand::Resume => {
            let answers = ctx.ask("POST", "/admin/resume", None);
            Ok(report(ctx, answers, |_| "resuming".into()))
        }
        AdminCommand::Reload => {
            let answers = ctx.ask("POST", "/admin/reload", None);
            Ok(report(ctx, answers, render::reloaded))
        }
        AdminCommand::Replay(args) => replay(ctx, &args),
        AdminCommand::Migrate(args) => migrate(ctx, &args),
        AdminCommand::Store { limit } => {
            let path = format!(
                "/admin/store{}",
                query(&[("limit", limit.map(|l| l.to_string()))])
            );
            let answers = ctx.ask("GET", &path, None);
            Ok(report(ctx, answers, render::store))
        }
    }
}

/// Prints each port's answer (`human` of its body, or the JSON document) and each
/// failure; `true` when there was none.
fn report(ctx: &Context, answers: Vec<Answer<Value>>, human: fn(&Value) -> String) -> bool {
    let ok = answers.iter().all(|(_, a)| a.is_ok());
    if ctx.json {
        let shards: Vec<Value> = answers
            .iter()
            .map(|(url, a)| match a {
                Ok(body) => json!({"url": url, "body": body}),
                Err(f) => failure_json(url, f),
            })
            .collect();
        print_json(&json!({ "shards": shards }));
        return ok;
    }
    for (url, answer) in &answers {
        match answer {
            Ok(body) => {
                let text = human(body);
                if text.contains('\n') {
                    say!("{url}:\n{text}");
                } else {
                    say!("{url}: {text}");
                }
            }
            Err(f) => print_failure(url, f),
        }
    }
    ok
}

fn failure_json(url: &str, f: &Failure) -> Value {
    json!({"url": url, "status": f.status(), "error": f.to_string()})
}

fn print_failure(url: &str, f: &Failure) {
    eprintln!("error: {url} {f}");
}

fn print_json(value: &Value) {
    say!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A row of a merged listing: the port it came from first.
fn with_url(url: &str, row: &Value) -> Value {
    let mut out = Map::new();
    out.insert("url".into(), json!(url));
    if let Value::Object(o) = row {
        out.extend(o.clone());
    }
    Value::Object(out)
}

struct Page {
    rows: Vec<Value>,
    next: Option<String>,
    scan_truncated: bool,
}

fn instances_list(ctx: &Context, args: &ListArgs) -> Result<bool, AdminError> {
    if args.after.is_some() && ctx.urls.len() > 1 {
        return Err(AdminError::Usage(
            "--after is one port's cursor: give one --url with it".into(),
        ));
    }
    let path_after = |after: Option<String>| {
        let q = query(&[
            ("tenant", Some(args.tenant.clone())),
            ("saga", Some(args.saga.clone())),
            ("status", args.status.clone()),
            ("version", args.version.map(|v| v.to_string())),
            ("timer_before", args.timer_before.clone()),
            ("after", after),
            ("limit", args.limit.map(|l| l.to_string())),
        ]);
        format!("/admin/instances{q}")
    };
    let pages = ctx.each(|url| -> Result<Page, Failure> {
        let mut page = Page {
            rows: Vec::new(),
            next: args.after.clone(),
            scan_truncated: false,
        };
        for _ in 0..MAX_PAGES {
            let body = ctx
                .client
                .call(url, "GET", &path_after(page.next.take()), None)?;
            if let Some(rows) = body["instances"].as_array() {
                page.rows.extend(rows.iter().cloned());
            }
            page.next = body["next"].as_str().map(str::to_string);
            page.scan_truncated |= body["scan_truncated"] == true;
            if !args.all || page.next.is_none() {
                break;
            }
        }
        Ok(page)
    });
    let ok = pages.iter().all(|(_, p)| p.is_ok());
    if ctx.json {
        let mut rows = Vec::new();
        let mut shards = Vec::new();
        for (url, page) in &pages {
            match page {
                Ok(p) => {
                    rows.extend(p.rows.iter().map(|r| {
                        let mut row = with_url(url, r);
                        row["tenant"] = json!(args.tenant);
                        row["saga"] = json!(args.saga);
                        row
                    }));
                    shards.push(
                        json!({"url": url, "next": p.next, "scan_truncated": p.scan_truncated}),
                    );
                }
                Err(f) => shards.push(failure_json(url, f)),
            }
        }
        print_json(&json!({"instances": rows, "shards": shards}));
        return Ok(ok);
    }
    let rows = pages
        .iter()
        .filter_map(|(url, page)| Some((url, page.as_ref().ok()?)))
        .flat_map(|(url, p)| {
            p.rows.iter().map(move |r| {
                let row = [
                    "correlation",
                    "status",
                    "version",
                    "transitions",
                    "updated_at",
                    "next_timer",
                ]
                .iter()
                .map(|k| cell(&r[*k]))
                .collect();
                (url, row)
            })
        });
    let count = print_merged(
        ctx,
        &[
            "CORRELATION",
            "STATUS",
            "VERSION",
            "TRANSITIONS",
            "UPDATED",
            "NEXT TIMER",
        ],
        rows,
    );
    say!(
        "{count} instance{} of {} for tenant {}",
        plural(count),
        args.saga,
        args.tenant
    );
    for (url, page) in &pages {
        match page {
            Ok(p) => {
                if let Some(next) = &p.next {
                    say!("more on {url}: --url {url} --after {next}");
                }
                if p.scan_truncated {
                    say!("note: {url} stopped its scan at its bound; narrow the filters or page on with --after");
                }
            }
            Err(f) => print_failure(url, f),
        }
    }
    Ok(ok)
}

/// Prints every port's rows as one table, led by a SHARD column when several ports
/// were asked; returns how many rows it has.
fn print_merged<'a>(
    ctx: &Context,
    headers: &[&str],
    rows: impl Iterator<Item = (&'a String, Vec<String>)>,
) -> usize {
    let shard = ctx.shard_column();
    let mut table = if shard {
        Table::new(&[&["SHARD"], headers].concat())
    } else {
        Table::new(headers)
    };
    let mut count = 0;
    for (url, mut row) in rows {
        if shard {
            row.insert(0, url.clone());
        }
        table.push(row);
        count += 1;
    }
    say_raw!("{}", table.render());
    count
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// What one port knows of an instance.
enum Shown {
    Found {
        instance: Value,
        history: History,
    },
    /// 404: not on this port (another shard may have it).
    Absent(Failure),
    Failed(Failure),
}

pub enum History {
    Served(Value),
    /// The port predates the history endpoint.
    NotServed(String),
    Failed(Failure),
}

fn instances_show(ctx: &Context, args: &ShowArgs) -> bool {
    let path = format!(
        "/admin/instances/{}/{}/{}",
        segment(&args.tenant),
        segment(&args.saga),
        segment(&args.correlation)
    );
    let shown = ctx.each(|url| match ctx.client.call(url, "GET", &path, None) {
        Ok(instance) => {
            let history = match ctx
                .client
                .call(url, "GET", &format!("{path}/history"), None)
            {
                Ok(h) => History::Served(h),
                // A Runner without the route: 404, or 400 from one that reads the path
                // as a malformed instance path.
                Err(Failure::Refused {
                    status: 404 | 400,
                    reason,
                }) => History::NotServed(reason),
                Err(f) => History::Failed(f),
            };
            Shown::Found { instance, history }
        }
        Err(f) if f.status() == Some(404) => Shown::Absent(f),
        Err(f) => Shown::Failed(f),
    });
    let found = shown.iter().any(|(_, s)| matches!(s, Shown::Found { .. }));
    let mut ok = found;
    let mut shards = Vec::new();
    for (url, s) in &shown {
        match s {
            Shown::Found { instance, history } => {
                if let History::Failed(f) = history {
                    ok = false;
                    if !ctx.json {
                        eprintln!("error: {url} history {f}");
                    }
                }
                if ctx.json {
                    let (history, note) = match history {
                        History::Served(h) => (h.clone(), Value::Null),
                        History::NotServed(r) => (
                            Value::Null,
                            json!(format!("not served by this Runner ({r})")),
                        ),
                        History::Failed(f) => (Value::Null, json!(f.to_string())),
                    };
                    shards.push(json!({"url": url, "found": true, "instance": instance,
                                       "history": history, "history_note": note}));
                } else {
                    say_raw!("{}", render::instance(url, instance, history));
                }
            }
            Shown::Absent(f) => {
                if ctx.json {
                    shards.push(
                        json!({"url": url, "found": false, "status": 404, "error": f.to_string()}),
                    );
                } else if !found {
                    print_failure(url, f);
                }
            }
            Shown::Failed(f) => {
                ok = false;
                if ctx.json {
                    shards.push(failure_json(url, f));
                } else {
                    print_failure(url, f);
                }
            }
        }
    }
    if ctx.json {
        print_json(&json!({ "shards": shards }));
    }
    ok
}

#[derive(Clone, Copy)]
enum Records {
    Quarantine,
    DeadLetters,
}

impl Records {
    fn path(self) -> &'static str {
        match self {
            Records::Quarantine => "/admin/quarantine",
            Records::DeadLetters => "/admin/deadletters",
        }
    }
}

/// The server's tenant for a selection: `_` (as the instance paths spell the single
/// tenant) is `""` in selections.
fn selection_tenant(t: &str) -> String {
    if t == "_" {
        String::new()
    } else {
        t.to_string()
    }
}

fn selection_body(sel: &Selection) -> Value {
    let mut body = Map::new();
    if let Some(t) = &sel.tenant {
        body.insert("tenant".into(), json!(selection_tenant(t)));
    }
    if sel.unattributed {
        body.insert("unattributed".into(), json!(true));
    }
    for (k, v) in [
        ("saga", &sel.saga),
        ("kind", &sel.kind),
        ("reason", &sel.reason),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), json!(v));
        }
    }
    if !sel.keys.is_empty() {
        body.insert("keys".into(), json!(sel.keys));
    }
    if let Some(l) = sel.limit {
        body.insert("limit".into(), json!(l));
    }
    Value::Object(body)
}

fn records(ctx: &Context, which: Records, cmd: RecordsCommand) -> Result<bool, AdminError> {
    match cmd {
        RecordsCommand::List(sel) => records_list(ctx, which, &sel),
        RecordsCommand::Retry(sel) => {
            let path = format!("{}/retry", which.path());
            let answers = ctx.ask("POST", &path, Some(&selection_body(&sel)));
            Ok(match which {
                Records::Quarantine => report(ctx, answers, render::retried),
                Records::DeadLetters => report(ctx, answers, render::redriven),
            })
        }
        RecordsCommand::Discard { selection, all } => {
            let narrowed = selection.saga.is_some()
                || selection.kind.is_some()
                || selection.reason.is_some()
                || !selection.keys.is_empty();
            if !narrowed && !all {
                return Err(AdminError::Usage(
                    "discard deletes records for good: narrow it (--key, --saga, --kind, --reason) or say --all".into(),
                ));
            }
            let path = format!("{}/discard", which.path());
            let answers = ctx.ask("POST", &path, Some(&selection_body(&selection)));
            Ok(report(ctx, answers, render::discarded))
        }
    }
}

fn records_list(ctx: &Context, which: Records, sel: &Selection) -> Result<bool, AdminError> {
    if sel.keys.len() > 1 {
        return Err(AdminError::Usage(
            "list takes at most one --key (retry and discard take several)".into(),
        ));
    }
    let q = query(&[
        ("tenant", sel.tenant.as_deref().map(selection_tenant)),
        ("unattributed", sel.unattributed.then(|| "true".to_string())),
        ("saga", sel.saga.clone()),
        ("kind", sel.kind.clone()),
        ("reason", sel.reason.clone()),
        ("key", sel.keys.first().cloned()),
        ("limit", sel.limit.map(|l| l.to_string())),
    ]);
    let answers = ctx.ask("GET", &format!("{}{q}", which.path()), None);
    let ok = answers.iter().all(|(_, a)| a.is_ok());
    if ctx.json {
        let mut rows = Vec::new();
        let mut shards = Vec::new();
        for (url, a) in &answers {
            match a {
                Ok(body) => {
                    if let Some(records) = body["records"].as_array() {
                        rows.extend(records.iter().map(|r| with_url(url, r)));
                    }
                    shards.push(
                        json!({"url": url, "scan_truncated": body["scan_truncated"] == true}),
                    );
                }
                Err(f) => shards.push(failure_json(url, f)),
            }
        }
        print_json(&json!({"records": rows, "shards": shards}));
        return Ok(ok);
    }
    let (headers, fields): (Vec<&str>, Vec<&str>) = match which {
        Records::Quarantine => (
            vec![
                "KEY",
                "KIND",
                "SAGA",
                "STREAM",
                "SEQ",
                "QUARANTINED",
                "REASON",
            ],
            vec![
                "/key",
                "/record/kind",
                "/record/saga",
                "/record/stream",
                "/record/seq",
                "/record/quarantined_at",
                "/record/reason",
            ],
        ),
        Records::DeadLetters => (
            vec![
                "KEY",
                "KIND",
                "SAGA",
                "CORRELATION",
                "COMMAND",
                "ATTEMPTS",
                "DEAD AT",
                "REASON",
            ],
            vec![
                "/key",
                "/kind",
                "/saga",
                "/correlation",
                "/command_id",
                "/attempts",
                "/dead_at",
                "/reason",
            ],
        ),
    };
    let rows = answers
        .iter()
        .filter_map(|(url, a)| Some((url, a.as_ref().ok()?)))
        .flat_map(|(url, body)| {
            let fields = &fields;
            body["records"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |r| {
                    let row = fields
                        .iter()
                        .map(|f| cell(r.pointer(f).unwrap_or(&Value::Null)))
                        .collect();
                    (url, row)
                })
        });
    let count = print_merged(ctx, &headers, rows);
    say!("{count} record{}", plural(count));
    for (url, a) in &answers {
        match a {
            Ok(body) if body["scan_truncated"] == true => {
                say!("note: {url} stopped its scan at its bound; narrow the filters");
            }
            Ok(_) => {}
            Err(f) => print_failure(url, f),
        }
    }
    Ok(ok)
}

fn drain(ctx: &Context, wait: Option<Duration>) -> bool {
    let answers = ctx.each(|url| {
        ctx.client.call(url, "POST", "/admin/drain", None)?;
        let Some(wait) = wait else {
            return Ok(json!({"draining": true}));
        };
        let deadline = Instant::now() + wait;
        loop {
            let (_, ready) = ctx.client.probe(url, "/ready")?;
            if ready["drained"] == true {
                return Ok(json!({"draining": true, "drained": true}));
            }
            if Instant::now() >= deadline {
                return Err(Failure::Refused {
                    status: 503,
                    reason: format!(
                        "not drained within {} s: /ready says {ready}",
                        wait.as_secs()
                    ),
                });
            }
            std::thread::sleep(READY_POLL);
        }
    });
    report(ctx, answers, |body| {
        if body["drained"] == true {
            "drained".into()
        } else {
            "draining (see /ready for when it is drained)".into()
        }
    })
}

fn replay(ctx: &Context, args: &ReplayArgs) -> Result<bool, AdminError> {
    ctx.one_url("replay")?;
    let mut body = json!({
        "tenant": selection_tenant(&args.tenant), "saga": args.saga, "from_seq": args.from_seq,
        "confirm": args.confirm, "past_horizon": args.past_horizon,
    });
    if let Some(stream) = &args.stream {
        body["stream"] = json!(stream);
    }
    let answers = ctx.ask("POST", "/admin/replay", Some(&body));
    Ok(report(ctx, answers, render::replayed))
}

fn migrate(ctx: &Context, args: &MigrateArgs) -> Result<bool, AdminError> {
    ctx.one_url("migrate")?;
    let body = json!({"tenant": args.tenant, "saga": args.saga, "correlations": args.correlations});
    let answers = ctx.ask("POST", "/admin/instances/migrate", Some(&body));
    Ok(report(ctx, answers, render::migrated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_name_the_single_tenant_as_the_server_does() {
        let sel = Selection {
            tenant: Some("_".into()),
            unattributed: false,
            saga: Some("order".into()),
            kind: None,
            reason: None,
            keys: vec!["k1".into(), "k2".into()],
            limit: Some(5),
        };
        assert_eq!(
            selection_body(&sel),
            json!({"tenant": "", "saga": "order", "keys": ["k1", "k2"], "limit": 5})
        );
        let unattributed = Selection {
            tenant: None,
            unattributed: true,
            keys: vec![],
            limit: None,
            ..sel
        };
        assert_eq!(
            selection_body(&unattributed),
            json!({"unattributed": true, "saga": "order"})
        );
    }

    #[test]
    fn merged_rows_name_their_port() {
        let row = with_url("http://a:9090", &json!({"correlation": "o-1"}));
        assert_eq!(row, json!({"url": "http://a:9090", "correlation": "o-1"}));
    }
}
