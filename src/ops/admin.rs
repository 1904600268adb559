//! The admin API's routes. Reads: quarantine, dead letters, instance lists, one saga
//! instance, its history and the store's contents. Changes: drain and resume, manifest
//! reload, replay, instance migration, and retry/discard of quarantine and dead-letter
//! records.
//! Authentication happens before any of this (see `super::admin`).

use super::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::control::Control;
use super::inspect::{self, Params, Refusal};
use super::records::{self, Selection};
use super::storage::{self, HeldCache};
use crate::types::{CorrelationId, SagaName, TenantId};

/// An answer: status and body.
type Answer = Result<(u16, Value), Refusal>;

/// `None`: no such route.
pub fn route(
    control: &Control,
    held: &HeldCache,
    method: &Method,
    path: &str,
    query: &str,
    body: &str,
) -> Option<Answer> {
    let shared = control.shared();
    let ok = |v: Result<Value, Refusal>| v.map(|body| (200, body));
    let answer = match (method, path) {
        (Method::Post, "/admin/drain") => {
            shared.intake.request_shutdown();
            Ok((202, json!({"draining": true})))
        }
        (Method::Post, "/admin/resume") => resume(control),
        (Method::Post, "/admin/reload") => reload(control),
        (Method::Post, "/admin/replay") => replay(control, body),
        (Method::Get, "/admin/quarantine") => Selection::from_query(&Params::parse(query))
            .and_then(|sel| ok(records::list_quarantined(&shared, &sel))),
        (Method::Post, "/admin/quarantine/retry") => Selection::from_body(body).and_then(|sel| {
            let js = nats::jetstream::new(control.nats().clone());
            ok(records::retry_quarantined(&shared, &js, &sel))
        }),
        (Method::Post, "/admin/quarantine/discard") => Selection::from_body(body)
            .and_then(|sel| ok(records::discard_quarantined(&shared, &sel))),
        (Method::Get, "/admin/deadletters") => Selection::from_query(&Params::parse(query))
            .and_then(|sel| ok(records::list_dead_letters(&shared, &sel))),
        (Method::Post, "/admin/deadletters/retry") => Selection::from_body(body)
            .and_then(|sel| ok(records::redrive_dead_letters(&shared, &sel))),
        (Method::Post, "/admin/deadletters/discard") => Selection::from_body(body)
            .and_then(|sel| ok(records::discard_dead_letters(&shared, &sel))),
        (Method::Post, "/admin/instances/migrate") => migrate(control, body),
        (Method::Get, "/admin/store") => ok(storage::view(&shared, held, query)),
        (Method::Get, "/admin/effects/unclaimed") => unclaimed(&shared),
        (Method::Get, "/admin/instances") => {
            ok(inspect::list(&shared.store, &Params::parse(query)))
        }
        (Method::Get, _) => {
            let rest = path.strip_prefix("/admin/instances/")?;
            ok(inspect::instance_or_history(&shared.store, rest))
        }
        _ => return None,
    };
    Some(answer)
}

/// `POST /admin/instances/migrate {"tenant", "saga", "correlations": [...]}`: moves the
/// chosen instances to the saga's newest version (drained only: no transition of theirs
/// may be in flight).
fn migrate(control: &Control, body: &str) -> Answer {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        tenant: String,
        saga: String,
        correlations: Vec<String>,
    }
    let req: Request =
        serde_json::from_str(body).map_err(|e| Refusal::BadRequest(format!("body: {e}")))?;
    let bad = |e: crate::types::IdError| Refusal::BadRequest(e.to_string());
    let tenant = if req.tenant == TenantId::SINGLE_TOKEN {
        TenantId::default()
    } else {
        TenantId::new(&req.tenant).map_err(bad)?
    };
    let saga = SagaName::new(&req.saga).map_err(bad)?;
    let correlations = req
        .correlations
        .iter()
        .map(|c| CorrelationId::new(c).map_err(bad))
        .collect::<Result<Vec<_>, _>>()?;
    // Held until the migration is written: a resume waits for it, so no transition of
    // these instances can start from what they were before.
    let _drained = control.hold_drained().ok_or_else(not_drained)?;
    let shared = control.shared();
    let catalog = shared.catalogs.sagas();
    use crate::saga::versions::MigrateError;
    let results =
        crate::saga::versions::migrate(&shared.store, &catalog, &tenant, &saga, &correlations)
            .map_err(|e| match e {
                MigrateError::Request(m) => Refusal::BadRequest(m),
                MigrateError::Conflict(m) => Refusal::Conflict(m),
                MigrateError::Store(m) => Refusal::Store(m),
            })?;
    let body: Vec<Value> = results
        .iter()
        .map(|(corr, m)| match m {
            crate::saga::versions::Migration::Migrated { from, to } => {
                json!({"correlation": corr.as_str(), "migrated": true, "from": from, "to": to})
            }
            crate::saga::versions::Migration::Skipped(why) => {
                json!({"correlation": corr.as_str(), "migrated": false, "reason": why})
            }
        })
        .collect();
    log::warn!(tenant_id = tenant.as_str(), saga = saga.as_str(),
        migrated = results.iter().filter(|(_, m)| matches!(m, crate::saga::versions::Migration::Migrated { .. })).count() as u64;
        "instances migrated by an operator");
    Ok((200, json!({ "results": body })))
}

/// `GET /admin/effects/unclaimed`: effect commands no process has taken for longer
/// than `effects.unclaimed_alert_secs`, as this process's latest scan found them.
fn unclaimed(shared: &crate::pipeline::Shared) -> Answer {
    if !shared.settings.mode.runs_effects() {
        return Err(Refusal::Conflict(
            "this process runs no effects; ask an effect (or combined) process".into(),
        ));
    }
    let report = shared.unclaimed.lock().clone();
    Ok((200, crate::effects::unclaimed::listing(&report)))
}

fn not_drained() -> Refusal {
    Refusal::Conflict(
        "not drained: POST /admin/drain first and wait until /ready reports drained".into(),
    )
}

fn resume(control: &Control) -> Answer {
    if control.request_resume() {
        Ok((202, json!({"resuming": true})))
    } else {
        Err(Refusal::Conflict(
            "not drained: resume restarts a pipeline stopped by POST /admin/drain once /ready reports drained".into(),
        ))
    }
}

/// Loads the manifests again; puts them in force only if every one is valid. Work
/// already under way finishes on the programs it started with.
fn reload(control: &Control) -> Answer {
    let shared = control.shared();
    let (sagas, effects) = crate::pipeline::catalogs_for_mode(&shared.settings)
        .map_err(|e| Refusal::BadRequest(format!("manifests not reloaded: {e}")))?;
    if shared.settings.mode.runs_sagas() {
        crate::saga::versions::check_in_use(&shared.store, &sagas)
            .map_err(|e| Refusal::BadRequest(format!("manifests not reloaded: {e}")))?;
    }
    let body = json!({
        "reloaded": true,
        "sagas": sagas.sagas.iter().map(|s| json!({"name": s.name.as_str(), "version": s.version})).collect::<Vec<_>>(),
        "effects": effects.effects.keys().map(|e| e.as_str()).collect::<Vec<_>>(),
        // Pulled from the next reconcile of the effect fetch on (within a moment).
        "effect_consumers": crate::nats_io::effect_consumers(&shared.settings, &effects)
            .into_iter().map(|c| c.durable).collect::<Vec<_>>(),
    });
    shared.catalogs.replace(sagas, effects);
    log::warn!(body = body.to_string(); "manifests reloaded");
    Ok((200, body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    tenant: String,
    saga: String,
    /// The first stream sequence to deliver again.
    from_seq: u64,
    /// The stream (default: the aggregate events stream).
    stream: Option<String>,
    /// Must name the saga: a replay is never started by a stray request.
    confirm: Option<String>,
    /// Replay even from a message older than the dedupe horizon (whose markers may be
    /// swept: such events are applied again).
    #[serde(default)]
    past_horizon: bool,
}

/// Moves `checkpoint:{tenant}:{saga}` back to `from_seq - 1` and the saga consumer of
/// that stream to `from_seq`. Only while drained; the events are processed again on
/// `POST /admin/resume`, where dedupe markers skip what was applied already. A replay
/// that would start before the dedupe horizon (where markers may be swept) is refused
/// unless the request says `past_horizon`.
fn replay(control: &Control, body: &str) -> Answer {
    let shared = control.shared();
    let req: ReplayRequest = serde_json::from_str(body).map_err(|e| {
        Refusal::BadRequest(format!(
            "bad body ({e}); expected {{\"tenant\", \"saga\", \"from_seq\", \"confirm\": <saga name>, \"stream\"?, \"past_horizon\"?}}"
        ))
    })?;
    if req.confirm.as_deref() != Some(req.saga.as_str()) {
        return Err(Refusal::BadRequest(format!(
            "a replay must be confirmed: set \"confirm\" to the saga's name ({:?})",
            req.saga
        )));
    }
    let bad = |e: crate::types::IdError| Refusal::BadRequest(e.to_string());
    let tenant = TenantId::new(&req.tenant).map_err(bad)?;
    let saga = SagaName::new(&req.saga).map_err(bad)?;
    if req.from_seq == 0 {
        return Err(Refusal::BadRequest(
            "from_seq counts from 1 (the stream's first message)".into(),
        ));
    }
    if !shared.catalogs.sagas().sagas.iter().any(|s| s.name == saga) {
        return Err(Refusal::BadRequest(format!(
            "no saga {saga} is loaded here"
        )));
    }
    let _drained = control.hold_drained().ok_or_else(not_drained)?;
    let stream = req
        .stream
        .unwrap_or_else(|| shared.settings.streams.aggregate_events.clone());
    let spec = crate::nats_io::saga_consumers(&shared.settings)
        .into_iter()
        .find(|c| c.stream == stream)
        .ok_or_else(|| Refusal::BadRequest(format!("no saga consumer reads stream {stream:?}")))?;
    let js = nats::jetstream::new(control.nats().clone());
    let horizon = Horizon::of(&shared);
    let first = records::published_at_or_after(control.nats(), &stream, req.from_seq)
        .map_err(|e| Refusal::Store(e.to_string()))?;
    let past = first.filter(|m| m.at_ms < horizon.at_ms);
    if let (Some(m), false) = (past, req.past_horizon) {
        return Err(Refusal::ConflictWith(horizon.refusal(
            &stream,
            req.from_seq,
            m,
        )));
    }
    if let Some(m) = past {
        log::warn!(tenant_id = tenant.as_str(), saga = saga.as_str(), stream = stream.as_str(),
            from_seq = req.from_seq, published_at = rfc3339(m.at_ms), horizon = rfc3339(horizon.at_ms);
            "replay past the dedupe horizon confirmed: events whose markers were swept will be applied again");
    }
    crate::nats_io::reposition_consumer(&js, &spec, &shared.settings, req.from_seq)
        .map_err(|e| Refusal::Store(e.to_string()))?;
    let previous = shared
        .store
        .reset_checkpoint(&tenant, &saga, &stream, req.from_seq - 1)
        .map_err(|e| Refusal::Store(e.to_string()))?;
    Ok((
        200,
        json!({
            "tenant": tenant.as_str(), "saga": saga.as_str(), "stream": stream,
            "consumer": spec.durable, "from_seq": req.from_seq, "previous_checkpoint": previous,
            "horizon": horizon.json(), "past_horizon": past.is_some(),
            "next": if past.is_some() {
                "POST /admin/resume: every saga on this consumer sees the events from from_seq again; those whose dedupe markers are still kept are skipped, those older than the horizon whose markers were swept are applied again"
            } else {
                "POST /admin/resume: every saga on this consumer sees the events from from_seq again; those already applied are skipped by their dedupe markers"
            },
        }),
    ))
}

/// How far back dedupe markers are surely kept: now minus the shortest dedupe
/// retention of the sagas loaded (a replayed consumer feeds every saga of the
/// process). A message published after the horizon was applied after it too, so its
/// marker, written when it was applied, is still kept.
struct Horizon {
    at_ms: i64,
    dedupe_secs: u64,
}

impl Horizon {
    fn of(shared: &crate::pipeline::Shared) -> Horizon {
        // Markers of sagas without a retention of their own keep the store's.
        let default = shared.store.retention().dedupe;
        let dedupe = shared
            .catalogs
            .sagas()
            .sagas
            .iter()
            .map(|s| s.retention.dedupe.unwrap_or(default))
            .min()
            .unwrap_or(default);
        let millis = i64::try_from(dedupe.as_millis()).unwrap_or(i64::MAX);
        Horizon {
            at_ms: crate::timefmt::now_ms().saturating_sub(millis),
            dedupe_secs: dedupe.as_secs(),
        }
    }

    fn json(&self) -> Value {
        json!({"at": rfc3339(self.at_ms), "dedupe_secs": self.dedupe_secs})
    }

    /// The 409's body: the horizon, the message before it, and the ways on.
    fn refusal(&self, stream: &str, from_seq: u64, first: records::Published) -> Value {
        json!({
            "error": format!(
                "message {} of {stream} was published at {}, before the dedupe horizon {} (now minus {} s, the shortest dedupe retention of the sagas loaded): the dedupe markers of events that old may be swept, and those events would be applied again",
                first.seq, rfc3339(first.at_ms), rfc3339(self.at_ms), self.dedupe_secs),
            "horizon": self.json(),
            "message": {"stream": stream, "seq": first.seq, "published_at": rfc3339(first.at_ms)},
            "from_seq": from_seq,
            "to_go_on": "replay from a later sequence (one published after the horizon), or repeat the request with \"past_horizon\": true to apply again the events whose markers were swept",
        })
    }
}

fn rfc3339(ms: i64) -> String {
    crate::timefmt::format_rfc3339_ms(ms).unwrap_or_else(|_| ms.to_string())
}
