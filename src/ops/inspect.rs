//! Read-only admin view of one saga instance (state, status, pending timers and outbox
//! items), and the query-string parsing the admin API shares.

use serde_json::{json, Value};

use crate::store::Store;
use crate::types::{CorrelationId, SagaName, TenantId};

pub enum Refusal {
    BadRequest(String),
    /// The process is not in a state that allows it (not drained, say).
    Conflict(String),
    NotFound(String),
    Store(String),
}

/// A query string's parameters, percent-decoded.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: &str) -> Params {
        Params(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
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

/// `{tenant}/{saga}/{correlation}` (percent-encoded; `_` is the single tenant).
pub fn instance(store: &Store, rest: &str) -> Result<Value, Refusal> {
    let parts: Vec<String> = rest.split('/').map(percent_decode).collect();
    let [tenant, saga, corr] = parts.as_slice() else {
        return Err(Refusal::BadRequest(
            "use /admin/instances/{tenant}/{saga}/{correlation}".into(),
        ));
    };
    let tenant = if tenant == TenantId::SINGLE_TOKEN {
        ""
    } else {
        tenant.as_str()
    };
    let bad = |e: crate::types::IdError| Refusal::BadRequest(e.to_string());
    let tenant = TenantId::new(tenant).map_err(bad)?;
    let saga = SagaName::new(saga).map_err(bad)?;
    let corr = CorrelationId::new(corr).map_err(bad)?;
    let record = store
        .saga(&tenant, &saga, &corr)
        .map_err(store_err)?
        .ok_or_else(|| {
            Refusal::NotFound(format!(
                "no instance {saga}/{corr} for tenant {:?}",
                tenant.as_str()
            ))
        })?;
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

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
