//! Read-only admin views of one saga instance (state, status, pending timers and outbox
//! items; its history), and the query-string parsing the admin API shares.

use serde_json::{json, Value};

use crate::store::{HistoryEntry, InstanceQuery, InstanceStatus, Store, MAX_PAGE};
use crate::types::{CorrelationId, SagaName, TenantId};

pub enum Refusal {
    BadRequest(String),
    /// The process is not in a state that allows it (not drained, say).
    Conflict(String),
    /// A conflict whose answer says more than a message (the whole body).
    ConflictWith(Value),
    NotFound(String),
    Store(String),
}

/// A query string's parameters, form-decoded (`%XX` escapes, `+` is a space).
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: &str) -> Params {
        Params(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn store_err(e: crate::store::StoreError) -> Refusal {
    Refusal::Store(e.to_string())
}

/// `{tenant}/{saga}/{correlation}` (percent-encoded; `_` is the single tenant): the
/// instance; with `/history` after it, its history.
pub fn instance_or_history(store: &Store, rest: &str) -> Result<Value, Refusal> {
    let parts = path_segments(rest);
    match parts.as_slice() {
        [tenant, saga, corr] => instance(store, instance_id(tenant, saga, corr)?),
        [tenant, saga, corr, last] if last == "history" => {
            history(store, instance_id(tenant, saga, corr)?)
        }
        _ => Err(Refusal::BadRequest(
            "use /admin/instances/{tenant}/{saga}/{correlation}[/history]".into(),
        )),
    }
}

/// An instance's ids from decoded path segments.
fn instance_id(
    tenant: &str,
    saga: &str,
    corr: &str,
) -> Result<(TenantId, SagaName, CorrelationId), Refusal> {
    let tenant = if tenant == TenantId::SINGLE_TOKEN {
        ""
    } else {
        tenant
    };
    let bad = |e: crate::types::IdError| Refusal::BadRequest(e.to_string());
    Ok((
        TenantId::new(tenant).map_err(bad)?,
        SagaName::new(saga).map_err(bad)?,
        CorrelationId::new(corr).map_err(bad)?,
    ))
}

fn unknown_instance(tenant: &TenantId, saga: &SagaName, corr: &CorrelationId) -> Refusal {
    Refusal::NotFound(format!(
        "no instance {saga}/{corr} for tenant {:?}",
        tenant.as_str()
    ))
}

/// The instance: status, state, pending timers and outbox items.
fn instance(
    store: &Store,
    (tenant, saga, corr): (TenantId, SagaName, CorrelationId),
) -> Result<Value, Refusal> {
    let record = store
        .saga(&tenant, &saga, &corr)
        .map_err(store_err)?
        .ok_or_else(|| unknown_instance(&tenant, &saga, &corr))?;
    let timers = store
        .instance_schedules(&tenant, &saga, &corr)
        .map_err(store_err)?;
    // The tenant's outbox, filtered: bounded by the relay's own per-tenant figures.
    let outbox: Vec<Value> = store
        .outbox(&tenant, 10_000)
        .map_err(store_err)?
        .into_iter()
        .filter(|(_, item)| item.saga == saga && item.correlation == corr)
        .map(|(key, item)| json!({"key": key, "kind": item.kind, "destination": item.destination, "envelope": item.envelope.to_value()}))
        .collect();
    Ok(json!({
        "tenant": tenant.as_str(), "saga": saga.as_str(), "correlation": corr.as_str(),
        "status": record.status, "version": record.version, "transitions": record.transitions,
        "state": record.state, "last_event_id": record.last_event_id, "updated_at": record.updated_at,
        "fault": record.fault,
        "timers": timers.iter().map(|t| json!({"name": t.name, "due_at": crate::timefmt::format_rfc3339_ms(t.due_at_ms).unwrap_or_default()})).collect::<Vec<_>>(),
        "outbox": outbox,
    }))
}

/// The instance's history (`store/history.rs`), in the shape docs/contracts.md §6 gives.
fn history(
    store: &Store,
    (tenant, saga, corr): (TenantId, SagaName, CorrelationId),
) -> Result<Value, Refusal> {
    let history = store
        .history(&tenant, &saga, &corr)
        .map_err(store_err)?
        .ok_or_else(|| unknown_instance(&tenant, &saga, &corr))?;
    let entries: Vec<Value> = history.entries.iter().map(entry_view).collect();
    Ok(json!({
        "tenant": tenant.as_str(), "saga": saga.as_str(), "correlation": corr.as_str(),
        "entries": entries, "dropped": history.dropped,
    }))
}

fn entry_view(e: &HistoryEntry) -> Value {
    json!({
        "n": e.n,
        "at": crate::timefmt::format_rfc3339_ms(e.at_ms).unwrap_or_default(),
        "event": {"id": e.event_id, "subject": e.subject, "stream": e.stream, "seq": e.seq,
                  "type": e.event_type},
        "status_before": e.status_before, "status_after": e.status_after,
        "commands": e.commands, "timers": e.timers, "cancelled": e.cancelled,
        "gas": e.gas, "fault": e.fault,
    })
}

/// `GET /admin/instances?tenant=&saga=[&status=][&version=][&timer_before=][&after=]
/// [&limit=]`: one page of a saga's instances (see `store::instances`).
pub fn list(store: &Store, params: &Params) -> Result<Value, Refusal> {
    let bad = |m: String| Refusal::BadRequest(m);
    let required = |name: &str| {
        params
            .get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(format!("{name} is required")))
    };
    let tenant = match required("tenant")? {
        t if t == TenantId::SINGLE_TOKEN => TenantId::default(),
        t => TenantId::new(t).map_err(|e| bad(e.to_string()))?,
    };
    let saga = SagaName::new(required("saga")?).map_err(|e| bad(e.to_string()))?;
    let status = match params.get("status") {
        None | Some("") => None,
        Some(s) => Some(InstanceStatus::parse(s).ok_or_else(|| {
            bad(format!(
                "status must be one of active, completed, failed, faulted (got {s:?})"
            ))
        })?),
    };
    let number = |name: &str| -> Result<Option<u64>, Refusal> {
        match params.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("{name} must be a whole number (got {v:?})"))),
        }
    };
    let version = number("version")?
        .map(|v| u32::try_from(v).map_err(|_| bad(format!("version {v} is too large"))))
        .transpose()?;
    let limit = number("limit")?.unwrap_or(100) as usize;
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(bad(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let timer_before_ms = match params.get("timer_before") {
        None | Some("") => None,
        Some(t) => Some(crate::timefmt::parse_rfc3339_ms(t).map_err(|e| {
            bad(format!(
                "timer_before must be an RFC 3339 time (got {t:?}): {e}"
            ))
        })?),
    };
    let page = store
        .query_instances(&InstanceQuery {
            tenant,
            saga,
            status,
            version,
            timer_before_ms,
            after: match params.get("after") {
                None | Some("") => None,
                Some(a) => Some(unhex(a).ok_or_else(|| {
                    bad(format!(
                        "after must be a `next` of an earlier page (got {a:?})"
                    ))
                })?),
            },
            limit,
        })
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(m) => Refusal::BadRequest(m),
            other => store_err(other),
        })?;
    let instances: Vec<Value> = page
        .instances
        .iter()
        .map(|f| {
            json!({
                "correlation": f.correlation, "status": f.record.status, "version": f.record.version,
                "transitions": f.record.transitions, "updated_at": f.record.updated_at,
                "next_timer": f.next_timer_ms.and_then(|ms| crate::timefmt::format_rfc3339_ms(ms).ok()),
            })
        })
        .collect();
    // The cursor is a store key: hex, so it travels in a query string as it is.
    let next = page
        .next
        .map(|k| k.bytes().map(|b| format!("{b:02x}")).collect::<String>());
    Ok(json!({"instances": instances, "next": next, "scan_truncated": page.scan_truncated}))
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) || s.len() > 2048 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Percent-decoded path segments. `+` is a literal plus in a path (only a form-encoded
/// query turns it into a space), so a correlation id like `a+b` can be looked up.
fn path_segments(rest: &str) -> Vec<String> {
    rest.split('/').map(percent_decode).collect()
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_lists_refuse_bad_parameters_by_name() {
        let dir = crate::dev::TempDir::new("inspect").unwrap();
        let store = Store::open(&dir.path().join("store"), 16 << 20).unwrap();
        let refusal = |query: &str| match list(&store, &Params::parse(query)) {
            Err(Refusal::BadRequest(m)) => m,
            Err(_) => "another refusal".into(),
            Ok(v) => format!("accepted: {v}"),
        };
        assert!(refusal("saga=s").contains("tenant is required"));
        assert!(refusal("tenant=acme").contains("saga is required"));
        assert!(refusal("tenant=acme&saga=s&status=done").contains("status must be one of"));
        assert!(refusal("tenant=acme&saga=s&version=x").contains("version must be"));
        assert!(refusal("tenant=acme&saga=s&limit=0").contains("limit must be"));
        assert!(refusal("tenant=acme&saga=s&timer_before=soon").contains("timer_before"));
        assert!(refusal("tenant=acme&saga=s&after=zz").contains("after must be"));
        let empty = list(&store, &Params::parse("tenant=acme&saga=s&status=active")).ok();
        assert_eq!(
            empty,
            Some(json!({"instances": [], "next": null, "scan_truncated": false}))
        );
        assert_eq!(unhex("6f3a31"), Some("o:1".to_string()));
    }

    #[test]
    fn a_path_names_an_instance_or_its_history() {
        let dir = crate::dev::TempDir::new("inspect").unwrap();
        let store = Store::open(&dir.path().join("store"), 16 << 20).unwrap();
        let answer = |rest: &str| match instance_or_history(&store, rest) {
            Ok(v) => format!("ok {v}"),
            Err(Refusal::NotFound(m)) => format!("404 {m}"),
            Err(Refusal::BadRequest(m)) => format!("400 {m}"),
            Err(_) => "another refusal".into(),
        };
        // An instance whose correlation is "history" is an instance, not a history.
        assert!(answer("acme/order/history").starts_with("404 no instance order/history"));
        assert!(answer("acme/order/o-1/history").starts_with("404 no instance order/o-1"));
        assert!(answer("_/order/o-1/history").contains("for tenant \"\""));
        assert!(answer("acme/order/o-1/other").starts_with("400 use "));
        assert!(answer("acme/order").starts_with("400 use "));
        assert!(answer("acme/order/o-1/history/x").starts_with("400 use "));
    }

    #[test]
    fn query_strings_decode() {
        let p = Params::parse("tenant=ac%3Ame&limit=5&x=a+b&flag");
        assert_eq!(p.get("tenant"), Some("ac:me"));
        assert_eq!(p.get("x"), Some("a b"));
        assert_eq!(p.get("flag"), Some(""));
        assert_eq!(p.get("limit"), Some("5"));
        assert_eq!(p.get("missing"), None);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn path_segments_keep_a_plus_and_decode_escapes() {
        assert_eq!(path_segments("acme/order/o+1"), ["acme", "order", "o+1"]);
        assert_eq!(path_segments("_/order/o%2B1%20x"), ["_", "order", "o+1 x"]);
        assert_eq!(path_segments("a%2Fb/s/c"), ["a/b", "s", "c"]);
        assert_eq!(path_segments("t/s/caf%C3%A9"), ["t", "s", "café"]);
    }
}
