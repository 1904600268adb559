//! Read-only admin views for operators: what was quarantined or dead-lettered for a
//! tenant, and what one saga instance looks like (state, status, pending timers and
//! outbox items).

use serde_json::{json, Value};

use crate::store::Store;
use crate::types::{CorrelationId, SagaName, TenantId};

/// Records per answer unless `limit` says fewer; never more than [`MAX_LIMIT`].
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

pub enum Refusal {
    BadRequest(String),
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

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn limit(&self) -> Result<usize, Refusal> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    Refusal::BadRequest(format!("limit must be 1-{MAX_LIMIT} (got {raw:?})"))
                }),
        }
    }

    /// `tenant` is required (an empty value is the single tenant).
    fn tenant(&self) -> Result<TenantId, Refusal> {
        let raw = self.get("tenant").ok_or_else(|| {
            Refusal::BadRequest(
                "the tenant parameter is required (tenant= for the single tenant)".into(),
            )
        })?;
        TenantId::new(raw).map_err(|e| Refusal::BadRequest(e.to_string()))
    }
}

fn store_err(e: crate::store::StoreError) -> Refusal {
    Refusal::Store(e.to_string())
}

/// `?tenant=T[&unattributed=true]&limit=N`: quarantine records of a tenant, or those
/// whose tenant was in doubt.
pub fn quarantine(store: &Store, params: &Params) -> Result<Value, Refusal> {
    let limit = params.limit()?;
    let records = if params.get("unattributed") == Some("true") {
        store.quarantined(None, limit)
    } else {
        store.quarantined(Some(&params.tenant()?), limit)
    }
    .map_err(store_err)?;
    Ok(json!({ "records": records }))
}

/// `?tenant=T&limit=N`: dead letters of a tenant, each with its whole outbox item.
pub fn dead_letters(store: &Store, params: &Params) -> Result<Value, Refusal> {
    let records = store
        .dead_letters(&params.tenant()?, params.limit()?)
        .map_err(store_err)?;
    let records: Vec<Value> = records
        .into_iter()
        .map(|r| {
            json!({"reason": r.reason, "status": r.status, "attempts": r.attempts, "dead_at": r.dead_at,
                   "kind": r.item.kind, "command_id": r.item.work_id.as_str(), "saga": r.item.saga.as_str(),
                   "correlation": r.item.correlation.as_str(), "destination": r.item.destination,
                   "envelope": r.item.envelope.to_value()})
        })
        .collect();
    Ok(json!({ "records": records }))
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
        assert!(matches!(p.limit(), Ok(5)));
        assert!(matches!(
            Params::parse("limit=0").limit(),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(Params::parse("").limit(), Ok(DEFAULT_LIMIT)));
        assert!(matches!(
            Params::parse("").tenant(),
            Err(Refusal::BadRequest(_))
        ));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
