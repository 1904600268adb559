//! The ops port (CONTRACTS.md §6): `/health`, `/ready`, `/metrics`, `/info` and the
//! admin API (drain, resume, reload, replay, quarantine and dead letters, the store's
//! contents), served by a couple of threads of their own (tiny_http), so a slow scraper
//! never touches the pipeline.

mod admin;
mod control;
mod inspect;
mod metrics;
mod probe;
mod records;
mod storage;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::{json, Value};

pub use control::Control;
pub use probe::{ConsumerLag, Heartbeat, NatsProbe};

/// Threads answering requests: bounded, and enough that a slow `/health` (it writes
/// to the store) does not queue up `/metrics`.
const WORKERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("cannot listen on {listen}: {message}")]
    Listen { listen: String, message: String },
    #[error("cannot read the admin token file {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
}

/// What the endpoints read and steer.
pub struct OpsState {
    pub control: Arc<Control>,
    pub probe: NatsProbe,
    /// Bearer token of `/admin/*`; `None` keeps them closed (403).
    pub admin_token: Option<String>,
}

/// Bytes of a request body read at most (admin calls carry small JSON documents).
const MAX_BODY: u64 = 64 * 1024;

/// What the serving threads share: the state they were given and what they keep
/// between requests.
struct Served {
    state: OpsState,
    /// Quarantine and dead-letter counts, walked at most every 30 s for `/metrics`.
    held: storage::HeldCache,
}

pub struct OpsServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
}

impl OpsServer {
    pub fn start(listen: &str, state: OpsState) -> Result<OpsServer, OpsError> {
        let err = |message: String| OpsError::Listen {
            listen: listen.to_string(),
            message,
        };
        let server = tiny_http::Server::http(listen)
            .map(Arc::new)
            .map_err(|e| err(e.to_string()))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| err("not an IP address".into()))?;
        let state = Arc::new(Served {
            state,
            held: storage::HeldCache::default(),
        });
        let threads = (0..WORKERS)
            .map(|n| {
                let (server, state) = (server.clone(), state.clone());
                std::thread::Builder::new()
                    .name(format!("ops-{n}"))
                    .spawn(move || {
                        while let Ok(request) = server.recv() {
                            respond(&state, request);
                        }
                    })
                    .map_err(|e| err(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        log::info!(listen = addr.to_string(); "ops port listening");
        Ok(OpsServer {
            addr,
            server,
            threads,
        })
    }

    /// Where it listens (the port, when the settings asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for OpsServer {
    fn drop(&mut self) {
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The body of `/info`: what this process is and runs. Secrets never appear: effects
/// are listed by name and provider only.
pub fn info(
    settings: &crate::settings::Settings,
    sagas: &crate::manifest::SagaCatalog,
    effects: &crate::effects::EffectCatalog,
    store: &crate::store::Store,
) -> Value {
    let instances = instance_counts(store);
    let consumers: Vec<String> = consumers_for(settings, effects)
        .into_iter()
        .map(|c| c.durable)
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "git_sha": option_env!("RUNNER_GIT_SHA").unwrap_or("unknown"),
        "mode": settings.mode,
        "streams": {
            "aggregate_events": settings.streams.aggregate_events,
            "workflow_commands": settings.streams.workflow_commands,
            "workflow_events": settings.streams.workflow_events,
        },
        "consumers": consumers,
        "sagas": sagas.sagas.iter().map(|s| json!({"name": s.name.as_str(), "version": s.version, "versions": s.versions()})).collect::<Vec<_>>(),
        "instances": instances,
        "effects": effects.effects.values().map(|e| json!({"name": e.name.as_str(), "provider": e.provider_name})).collect::<Vec<_>>(),
    })
}

/// Instances per saga version and status, over at most 100,000 index entries. `/info`
/// needs no token, so the count is kept for a few seconds: polling it cannot keep an
/// ops thread scanning the store.
fn instance_counts(store: &crate::store::Store) -> Value {
    type Cached = Option<(std::path::PathBuf, std::time::Instant, Value)>;
    static CACHE: parking_lot::Mutex<Cached> = parking_lot::Mutex::new(None);
    const FRESH: std::time::Duration = std::time::Duration::from_secs(5);
    let mut cache = CACHE.lock();
    if let Some((path, at, value)) = cache.as_ref() {
        if path == store.path() && at.elapsed() < FRESH {
            return value.clone();
        }
    }
    let value = match store.version_counts(100_000) {
        Ok(c) => json!({
            "counts": c.counts.iter().map(|((saga, version, status), n)| json!({
                "saga": saga, "version": version, "status": status, "instances": n})).collect::<Vec<_>>(),
            "truncated": c.truncated,
        }),
        Err(e) => json!({"error": e.to_string()}),
    };
    *cache = Some((
        store.path().to_path_buf(),
        std::time::Instant::now(),
        value.clone(),
    ));
    value
}

/// The saga consumers the mode reads from (effect consumers depend on the effects
/// loaded: [`consumers_for`]).
pub fn consumers_of(settings: &crate::settings::Settings) -> Vec<crate::nats_io::ConsumerSpec> {
    consumers_for(settings, &crate::effects::EffectCatalog::default())
}

/// The consumers the mode reads from with `effects` loaded: one per effect.
pub fn consumers_for(
    settings: &crate::settings::Settings,
    effects: &crate::effects::EffectCatalog,
) -> Vec<crate::nats_io::ConsumerSpec> {
    let mut consumers = Vec::new();
    if settings.mode.runs_sagas() {
        consumers.extend(crate::nats_io::saga_consumers(settings));
    }
    if settings.mode.runs_effects() {
        consumers.extend(crate::nats_io::effect_consumers(settings, effects));
    }
    consumers
}

/// Reads the admin token: `None` when no file is configured.
pub fn read_admin_token(path: &Path) -> Result<Option<String>, OpsError> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| OpsError::Token {
        path: path.display().to_string(),
        source,
    })?;
    let token = text.trim().to_string();
    Ok((!token.is_empty()).then_some(token))
}

struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

fn json_reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        body: body.to_string(),
    }
}

fn respond(served: &Served, mut request: tiny_http::Request) {
    let state = &served.state;
    let (path, query) = match request.url().split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (request.url().to_string(), String::new()),
    };
    let method = request.method().clone();
    let shared = state.control.shared();
    let reply = if path.starts_with("/admin/") {
        let mut body = String::new();
        let read = std::io::Read::read_to_string(
            &mut std::io::Read::take(request.as_reader(), MAX_BODY),
            &mut body,
        );
        match read {
            Ok(_) => admin(served, &request, &method, &path, &query, &body),
            Err(e) => json_reply(400, json!({"error": format!("unreadable body: {e}")})),
        }
    } else {
        match (&method, path.as_str()) {
            (tiny_http::Method::Get, "/health") => {
                let (alive, body) = probe::liveness(state, &shared);
                json_reply(if alive { 200 } else { 503 }, body)
            }
            (tiny_http::Method::Get, "/ready") => {
                let (ready, body) = probe::readiness(state, &shared);
                json_reply(if ready { 200 } else { 503 }, body)
            }
            (tiny_http::Method::Get, "/metrics") => Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: metrics::render(
                    &shared,
                    shared.intake.is_shutting_down(),
                    &state.probe.consumers(),
                    &served.held,
                ),
            },
            (tiny_http::Method::Get, "/info") => json_reply(
                200,
                info(
                    &shared.settings,
                    &shared.catalogs.sagas(),
                    &shared.catalogs.effects(),
                    &shared.store,
                ),
            ),
            _ => json_reply(404, json!({"error": format!("no {method} {path}")})),
        }
    };
    let header =
        tiny_http::Header::from_bytes("Content-Type", reply.content_type).unwrap_or_else(|_| {
            tiny_http::Header::from_bytes("Content-Type", "text/plain").expect("static header")
        });
    let response = tiny_http::Response::from_string(reply.body)
        .with_status_code(reply.status)
        .with_header(header);
    let _ = request.respond(response);
}

fn admin(
    served: &Served,
    request: &tiny_http::Request,
    method: &tiny_http::Method,
    path: &str,
    query: &str,
    body: &str,
) -> Reply {
    let state = &served.state;
    let Some(token) = &state.admin_token else {
        return json_reply(
            403,
            json!({"error": "admin endpoints are closed: no ops.admin_token_file configured"}),
        );
    };
    let given = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .and_then(|h| h.value.as_str().strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        log::warn!(path = path; "admin call refused: missing or wrong bearer token");
        return json_reply(401, json!({"error": "missing or wrong bearer token"}));
    }
    if *method != tiny_http::Method::Get {
        // Every change an operator makes is on the record (the token never is).
        log::warn!(method = method.to_string(), path = path, body = body.chars().take(512).collect::<String>(); "admin call");
    }
    match admin::route(&state.control, &served.held, method, path, query, body) {
        Some(Ok((status, body))) => json_reply(status, body),
        Some(Err(refusal)) => refused(refusal),
        None => json_reply(404, json!({"error": format!("no {method} {path}")})),
    }
}

fn refused(refusal: inspect::Refusal) -> Reply {
    use inspect::Refusal;
    match refusal {
        Refusal::BadRequest(m) => json_reply(400, json!({"error": m})),
        Refusal::Conflict(m) => json_reply(409, json!({"error": m})),
        Refusal::ConflictWith(body) => json_reply(409, body),
        Refusal::NotFound(m) => json_reply(404, json!({"error": m})),
        Refusal::Store(m) => json_reply(503, json!({"error": m})),
    }
}

/// Compares without stopping at the first difference, so timing does not reveal how
/// much of a guessed token was right (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
