//! The ops port (CONTRACTS.md §6): `/health`, `/ready`, `/metrics`, `/info` and
//! `POST /admin/drain`, served by a couple of threads of their own (tiny_http), so a
//! slow scraper never touches the pipeline.

mod inspect;
mod metrics;
mod probe;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

pub use probe::{ConsumerLag, NatsProbe};

use crate::pipeline::Shared;

/// Threads answering requests: bounded, and enough that a slow `/health` (it writes
/// to the store) does not queue up `/metrics`.
const WORKERS: usize = 2;
/// NATS counts as connected if a flush came back this recently.
const NATS_FRESH: Duration = Duration::from_secs(3);

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

/// What the endpoints read.
pub struct OpsState {
    pub shared: Arc<Shared>,
    pub probe: NatsProbe,
    /// The body of `/info`, built at start-up.
    pub info: Value,
    /// Bearer token of `/admin/*`; `None` keeps them closed (403).
    pub admin_token: Option<String>,
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
        let state = Arc::new(state);
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
) -> Value {
    let consumers: Vec<String> = consumers_of(settings)
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
        "sagas": sagas.sagas.iter().map(|s| json!({"name": s.name.as_str(), "version": s.version})).collect::<Vec<_>>(),
        "effects": effects.effects.values().map(|e| json!({"name": e.name.as_str(), "provider": e.provider_name})).collect::<Vec<_>>(),
    })
}

/// The consumers the mode reads from.
pub fn consumers_of(settings: &crate::settings::Settings) -> Vec<crate::nats_io::ConsumerSpec> {
    let mut consumers = Vec::new();
    if settings.mode.runs_sagas() {
        consumers.extend(crate::nats_io::saga_consumers(settings));
    }
    if settings.mode.runs_effects() {
        consumers.push(crate::nats_io::effect_consumer(settings));
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

fn respond(state: &OpsState, request: tiny_http::Request) {
    let (path, query) = match request.url().split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (request.url().to_string(), String::new()),
    };
    let method = request.method().clone();
    let reply = if path.starts_with("/admin/") {
        admin(state, &request, &method, &path, &query)
    } else {
        match (&method, path.as_str()) {
            (tiny_http::Method::Get, "/health") => {
                let (ok, checks) = health(state);
                json_reply(if ok { 200 } else { 503 }, checks)
            }
            (tiny_http::Method::Get, "/ready") => {
                let (healthy, checks) = health(state);
                let draining = state.shared.intake.is_shutting_down();
                let ready = healthy && !draining;
                json_reply(
                    if ready { 200 } else { 503 },
                    json!({"ready": ready, "draining": draining, "health": checks}),
                )
            }
            (tiny_http::Method::Get, "/metrics") => Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: metrics::render(
                    &state.shared,
                    state.shared.intake.is_shutting_down(),
                    &state.probe.consumers(),
                ),
            },
            (tiny_http::Method::Get, "/info") => json_reply(200, state.info.clone()),
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

/// Storage writable (a real write) and NATS reachable.
fn health(state: &OpsState) -> (bool, Value) {
    let storage = state.shared.store.probe_write().map_err(|e| e.to_string());
    let nats = state.probe.is_connected(NATS_FRESH);
    let ok = storage.is_ok() && nats;
    (
        ok,
        json!({
            "healthy": ok,
            "storage": storage.err().unwrap_or_else(|| "ok".into()),
            "nats": if nats { "ok" } else { "unreachable" },
        }),
    )
}

fn admin(
    state: &OpsState,
    request: &tiny_http::Request,
    method: &tiny_http::Method,
    path: &str,
    query: &str,
) -> Reply {
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
    match (method, path) {
        (tiny_http::Method::Post, "/admin/drain") => {
            log::warn!(path = path; "admin: drain requested; intake stops, in-flight work finishes");
            state.shared.intake.request_shutdown();
            json_reply(202, json!({"draining": true}))
        }
        (tiny_http::Method::Get, _) => admin_read(state, path, query)
            .unwrap_or_else(|| json_reply(404, json!({"error": format!("no {method} {path}")}))),
        _ => json_reply(404, json!({"error": format!("no {method} {path}")})),
    }
}

/// The read-only admin views: quarantine and dead-letter records of a tenant, and one
/// saga instance with its pending timers and outbox items. `None`: no such view.
fn admin_read(state: &OpsState, path: &str, query: &str) -> Option<Reply> {
    let params = inspect::Params::parse(query);
    let store = &state.shared.store;
    let result = match path {
        "/admin/quarantine" => inspect::quarantine(store, &params),
        "/admin/deadletters" => inspect::dead_letters(store, &params),
        _ => match path.strip_prefix("/admin/instances/") {
            Some(rest) => inspect::instance(store, rest),
            None => return None,
        },
    };
    Some(match result {
        Ok(body) => json_reply(200, body),
        Err(inspect::Refusal::BadRequest(m)) => json_reply(400, json!({"error": m})),
        Err(inspect::Refusal::NotFound(m)) => json_reply(404, json!({"error": m})),
        Err(inspect::Refusal::Store(m)) => json_reply(503, json!({"error": m})),
    })
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
