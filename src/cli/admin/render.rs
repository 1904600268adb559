//! Human text of the admin API's answers (the JSON shapes are the ops port's: see
//! src/ops/admin.rs, inspect.rs, records.rs and storage.rs, and the history contract
//! in README.md, "Operating the Runner"). Each function takes one port's 2xx body.

use serde_json::Value;

use super::commands::History;
use super::table::{cell, Table};

fn names(list: &Value, f: impl Fn(&Value) -> String) -> String {
    match list.as_array() {
        Some(items) if !items.is_empty() => items.iter().map(f).collect::<Vec<_>>().join(", "),
        _ => "none".into(),
    }
}

/// `POST /admin/reload`.
pub fn reloaded(body: &Value) -> String {
    let sagas = names(&body["sagas"], |s| {
        format!("{} v{}", cell(&s["name"]), cell(&s["version"]))
    });
    let effects = names(&body["effects"], cell);
    format!("reloaded: sagas {sagas}; effects {effects}")
}

/// `POST /admin/quarantine/retry`: what became of each record.
pub fn retried(body: &Value) -> String {
    let mut table = Table::new(&["KEY", "STREAM", "SEQ", "OUTCOME", "DETAIL"]);
    for r in body["results"].as_array().into_iter().flatten() {
        let detail = match (&r["transitions"], &r["reason"]) {
            (Value::Number(n), _) => format!("{n} transition(s)"),
            (_, Value::String(reason)) => reason.clone(),
            _ => "-".into(),
        };
        table.push(vec![
            cell(&r["key"]),
            cell(&r["stream"]),
            cell(&r["seq"]),
            cell(&r["outcome"]),
            detail,
        ]);
    }
    if table.is_empty() {
        return "no record selected".into();
    }
    table.render().trim_end().to_string()
}

/// `POST /admin/deadletters/retry`.
pub fn redriven(body: &Value) -> String {
    format!(
        "redriven {}: {}",
        cell(&body["redriven"]),
        names(&body["command_ids"], cell)
    )
}

/// `POST /admin/{quarantine,deadletters}/discard`.
pub fn discarded(body: &Value) -> String {
    format!(
        "discarded {}: {}",
        cell(&body["discarded"]),
        names(&body["keys"], cell)
    )
}

/// `POST /admin/replay`.
pub fn replayed(body: &Value) -> String {
    format!(
        "replay set: consumer {} of {} delivers again from seq {} (checkpoint was {}) for {}/{}\nnext: {}",
        cell(&body["consumer"]),
        cell(&body["stream"]),
        cell(&body["from_seq"]),
        cell(&body["previous_checkpoint"]),
        cell(&body["tenant"]),
        cell(&body["saga"]),
        cell(&body["next"]),
    )
}

/// `POST /admin/instances/migrate`.
pub fn migrated(body: &Value) -> String {
    let mut table = Table::new(&["CORRELATION", "MIGRATED", "FROM", "TO", "REASON"]);
    for r in body["results"].as_array().into_iter().flatten() {
        table.push(
            ["correlation", "migrated", "from", "to", "reason"]
                .iter()
                .map(|k| cell(&r[*k]))
                .collect(),
        );
    }
    table.render().trim_end().to_string()
}

/// `GET /admin/store`.
pub fn store(body: &Value) -> String {
    let space = &body["space"];
    let held = |h: &Value| format!("{} (oldest {})", cell(&h["records"]), cell(&h["oldest_at"]));
    let expired = &body["expired"];
    let mut out = format!(
        "space: {} of {} bytes in use ({}%; map {}, file {})\n\
         entries: {} ({} keys walked{})\n\
         quarantine records: {}; dead letters: {}\n\
         expired: {} instances, {} markers, {} effect records, {} timers\n",
        cell(&space["used_bytes"]),
        cell(&space["max_bytes"]),
        cell(&space["percent"]),
        cell(&space["map_bytes"]),
        cell(&space["file_bytes"]),
        cell(&body["entries"]),
        cell(&body["scanned"]),
        if body["truncated"] == true {
            ", truncated"
        } else {
            ""
        },
        held(&body["quarantine"]),
        held(&body["dead_letters"]),
        cell(&expired["instances"]),
        cell(&expired["markers"]),
        cell(&expired["effect_records"]),
        cell(&expired["timers"]),
    );
    let mut spaces = Table::new(&["KEYSPACE", "KEYS", "KEY BYTES", "VALUE BYTES"]);
    for (name, kb) in body["keyspaces"].as_object().into_iter().flatten() {
        spaces.push(vec![
            name.clone(),
            cell(&kb["keys"]),
            cell(&kb["key_bytes"]),
            cell(&kb["value_bytes"]),
        ]);
    }
    out.push_str(&spaces.render());
    let mut tenants = Table::new(&["TENANT", "KEYSPACE", "KEYS", "KEY BYTES", "VALUE BYTES"]);
    for (tenant, per) in body["tenants"].as_object().into_iter().flatten() {
        for (name, kb) in per.as_object().into_iter().flatten() {
            tenants.push(vec![
                tenant.clone(),
                name.clone(),
                cell(&kb["keys"]),
                cell(&kb["key_bytes"]),
                cell(&kb["value_bytes"]),
            ]);
        }
    }
    out.push_str(&tenants.render());
    out.trim_end().to_string()
}

/// `GET /admin/instances/{t}/{s}/{c}` and its history, as one block.
pub fn instance(url: &str, i: &Value, history: &History) -> String {
    let mut out = format!(
        "instance {}/{}/{} on {url}\nstatus: {}  version: {}  transitions: {}  updated: {}\nlast event: {}  fault: {}\nstate:\n",
        cell(&i["tenant"]),
        cell(&i["saga"]),
        cell(&i["correlation"]),
        cell(&i["status"]),
        cell(&i["version"]),
        cell(&i["transitions"]),
        cell(&i["updated_at"]),
        cell(&i["last_event_id"]),
        cell(&i["fault"]),
    );
    let state = serde_json::to_string_pretty(&i["state"]).unwrap_or_default();
    for line in state.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    let timers = i["timers"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if timers.is_empty() {
        out.push_str("timers: none\n");
    } else {
        out.push_str("timers:\n");
        let mut t = Table::new(&["NAME", "DUE AT"]);
        for timer in timers {
            t.push(vec![cell(&timer["name"]), cell(&timer["due_at"])]);
        }
        out.push_str(&indent(&t.render()));
    }
    let outbox = i["outbox"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if outbox.is_empty() {
        out.push_str("outbox: empty\n");
    } else {
        out.push_str("outbox:\n");
        let mut t = Table::new(&["KEY", "KIND", "DESTINATION"]);
        for item in outbox {
            t.push(vec![
                cell(&item["key"]),
                cell(&item["kind"]),
                cell(&item["destination"]),
            ]);
        }
        out.push_str(&indent(&t.render()));
    }
    match history {
        History::Served(h) => out.push_str(&history_block(h)),
        History::NotServed(_) => out.push_str("history: not served by this Runner\n"),
        History::Failed(f) => out.push_str(&format!("history: {f}\n")),
    }
    out
}

fn history_block(h: &Value) -> String {
    let entries = h["entries"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let dropped = h["dropped"].as_u64().unwrap_or(0);
    let mut out = format!(
        "history: {} transition{}{}\n",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" },
        if dropped > 0 {
            format!(" shown, {dropped} dropped from the middle")
        } else {
            String::new()
        }
    );
    if entries.is_empty() {
        return out;
    }
    let mut t = Table::new(&[
        "N",
        "AT",
        "EVENT",
        "SEQ",
        "STATUS",
        "COMMANDS",
        "TIMERS",
        "CANCELLED",
        "GAS",
        "FAULT",
    ]);
    let mut last_n = 0;
    for e in entries {
        let n = e["n"].as_u64().unwrap_or(0);
        if dropped > 0 && last_n > 0 && n > last_n + 1 {
            t.push(vec![format!("… {} dropped", n - last_n - 1)]);
        }
        last_n = n;
        t.push(vec![
            cell(&e["n"]),
            cell(&e["at"]),
            cell(&e["event"]["type"]),
            cell(&e["event"]["seq"]),
            format!(
                "{} → {}",
                cell(&e["status_before"]),
                cell(&e["status_after"])
            ),
            cell(&e["commands"]),
            cell(&e["timers"]),
            cell(&e["cancelled"]),
            cell(&e["gas"]),
            cell(&e["fault"]),
        ]);
    }
    out.push_str(&indent(&t.render()));
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn history_marks_what_was_dropped_from_the_middle() {
        let entry = |n: u64, before: Value, after: &str| {
            json!({"n": n, "at": "2026-12-06T04:00:00.123Z",
                   "event": {"id": format!("e-{n}"), "subject": "s", "stream": "S", "seq": n + 10, "type": "OrderPlaced"},
                   "status_before": before, "status_after": after,
                   "commands": ["c-1"], "timers": [], "cancelled": [], "gas": 12, "fault": null})
        };
        let h = json!({"entries": [entry(1, Value::Null, "active"), entry(2, json!("active"), "active"),
                                    entry(9, json!("active"), "completed")], "dropped": 6});
        let text = history_block(&h);
        assert!(
            text.starts_with("history: 3 transitions shown, 6 dropped from the middle"),
            "{text}"
        );
        assert!(text.contains("- → active"), "{text}");
        assert!(text.contains("active → completed"), "{text}");
        assert!(text.contains("… 6 dropped"), "{text}");
        assert!(text.contains("OrderPlaced  19"), "{text}");
    }

    #[test]
    fn an_instance_without_history_says_so() {
        let i = json!({"tenant": "acme", "saga": "order", "correlation": "o-1", "status": "active",
                       "version": 1, "transitions": 2, "state": {"step": "charging"},
                       "timers": [{"name": "payment_timeout", "due_at": "2026-12-06T05:00:00Z"}],
                       "outbox": []});
        let text = instance(
            "http://a:9090",
            &i,
            &History::NotServed("no such route".into()),
        );
        assert!(
            text.starts_with("instance acme/order/o-1 on http://a:9090"),
            "{text}"
        );
        assert!(text.contains("\"step\": \"charging\""), "{text}");
        assert!(text.contains("payment_timeout"), "{text}");
        assert!(text.contains("outbox: empty"), "{text}");
        assert!(
            text.contains("history: not served by this Runner"),
            "{text}"
        );
    }

    #[test]
    fn one_line_answers() {
        assert_eq!(
            reloaded(&json!({"sagas": [{"name": "order", "version": 2}], "effects": []})),
            "reloaded: sagas order v2; effects none"
        );
        assert_eq!(
            redriven(&json!({"redriven": 1, "command_ids": ["c-1"]})),
            "redriven 1: c-1"
        );
        assert_eq!(
            discarded(&json!({"discarded": 0, "keys": []})),
            "discarded 0: none"
        );
    }
}
