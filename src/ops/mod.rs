//! The ops port (docs/contracts.md §6): `/health`, `/ready`, `/metrics`, `/info`, the
//! admin API (drain, resume, reload, replay, quarantine and dead letters, the store's
//! contents) and the web console over it (`/ui`, `console/`), served by threads of
//! their own (`http`), so a slow scraper never touches the pipeline, and a slow or
//! stuck client holds only its own connection, for a bounded time. The admin token is
//! checked before a body is read.

mod admin;
mod console;
mod control;
mod http;
mod inspect;
mod labelled_metrics;
mod metrics;
mod probe;
mod process_metrics;
mod records;
mod storage;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use http::{Method, Reply, Request};

pub use control::Control;
pub use probe::{ConsumerLag, Heartbeat, NatsProbe};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("cannot listen on {listen}: {message}")]
    Listen { listen: String, message: String },
    #[error("cannot read the admin token file {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
    #[error("the admin token file {path} is readable by others (mode {mode:o}): allow its owner only (chmod 600 {path}; a Docker or Swarm secret: mode 0400)")]
    TokenExposed { path: String, mode: u32 },
}

/// What the endpoints read and steer.
pub struct OpsState {
    pub control: Arc<Control>,
    pub probe: NatsProbe,
    /// Bearer token of `/admin/*`; `None` keeps them closed (403).
    pub admin_token: Option<String>,
}

/// What the serving threads share: the state they were given and what they keep
/// between requests.
struct Served {
    state: OpsState,
    /// Quarantine and dead-letter counts, walked at most every 30 s for `/metrics`.
    held: storage::HeldCache,
    /// The store write behind `/health`, done at most once a second however many
    /// probes come.
    store_probe: probe::StoreProbe,
    /// What the server refused, for `/metrics`.
    counts: Arc<http::ServerCounts>,
}

pub struct OpsServer {
    server: http::Server,
}

impl OpsServer {
    pub fn start(listen: &str, state: OpsState) -> Result<OpsServer, OpsError> {
        let err = |message: String| OpsError::Listen {
            listen: listen.to_string(),
            message,
        };
        let counts = Arc::new(http::ServerCounts::default());
        let served = Arc::new(Served {
            state,
            held: storage::HeldCache::default(),
            store_probe: probe::StoreProbe::default(),
            counts: counts.clone(),
        });
        let server = http::Server::start(listen, counts, move |request| respond(&served, request))
            .map_err(|e| err(e.to_string()))?;
        log::info!(listen = server.addr().to_string(); "ops port listening");
        Ok(OpsServer { server })
    }

    /// Where it listens (the port, when the settings asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
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
    let display = || path.display().to_string();
    refuse_exposed(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| OpsError::Token {
        path: display(),
        source,
    })?;
    let token = text.trim().to_string();
    Ok((!token.is_empty()).then_some(token))
}

/// Refuses a token file any group or other may read or write (as ssh refuses a
/// private key): a token others can read is a token others have. A symlink (as
/// Kubernetes mounts secrets) is judged by the file it names.
#[cfg(unix)]
fn refuse_exposed(path: &Path) -> Result<(), OpsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| OpsError::Token {
        path: path.display().to_string(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(OpsError::TokenExposed {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_exposed(_path: &Path) -> Result<(), OpsError> {
    Ok(())
}

fn json_reply(status: u16, body: Value) -> Reply {
    Reply::json(status, &body)
}

fn respond(served: &Served, request: &mut Request) -> Reply {
    let state = &served.state;
    let shared = state.control.shared();
    let path = request.path.clone();
    if path.starts_with("/admin/") {
        return admin(served, request);
    }
    match (&request.method, path.as_str()) {
        (Method::Get, "/health") => {
            let (alive, body) = probe::liveness(state, &shared, &served.store_probe);
            json_reply(if alive { 200 } else { 503 }, body)
        }
        (Method::Get, "/ready") => {
            let (ready, body) = probe::readiness(state, &shared, &served.store_probe);
            json_reply(if ready { 200 } else { 503 }, body)
        }
        (Method::Get, "/metrics") => {
            let mut body = metrics::render(
                &shared,
                shared.intake.is_shutting_down(),
                &state.probe,
                &served.held,
            );
            metrics::render_server(&mut body, &served.counts);
            Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body,
                headers: &[],
            }
        }
        (Method::Get, "/info") => json_reply(
            200,
            info(
                &shared.settings,
                &shared.catalogs.sagas(),
                &shared.catalogs.effects(),
                &shared.store,
            ),
        ),
        // The web console: no token, it holds no data (docs/console.md).
        (Method::Get, p) if p == "/ui" || p.starts_with("/ui/") => {
            let settings = &shared.settings;
            console::serve(p, &settings.tenancy.shard, &settings.ops.console_shards)
                .unwrap_or_else(|| json_reply(404, json!({"error": format!("no GET {path}")})))
        }
        (method, _) => json_reply(404, json!({"error": format!("no {method} {path}")})),
    }
}

/// `/admin/*`: the token is checked on the head alone, before any body is read, so a
/// caller without it cannot hold a thread by declaring a body and not sending it.
fn admin(served: &Served, request: &mut Request) -> Reply {
    let state = &served.state;
    let Some(token) = &state.admin_token else {
        return json_reply(
            403,
            json!({"error": "admin endpoints are closed: no ops.admin_token_file configured"}),
        );
    };
    let (method, path, query) = (
        request.method.clone(),
        request.path.clone(),
        request.query.clone(),
    );
    let given = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        log::warn!(path = path.as_str(); "admin call refused: missing or wrong bearer token");
        return json_reply(401, json!({"error": "missing or wrong bearer token"}));
    }
    let body = match request.body() {
        Ok(body) => body,
        Err(refusal) => {
            log::warn!(method = method.to_string(), path = path.as_str(), status = refusal.status; "admin call refused: its body could not be read");
            return refusal;
        }
    };
    if method != Method::Get {
        // Every change an operator makes is on the record (the token never is).
        log::warn!(method = method.to_string(), path = path.as_str(), body = body.chars().take(512).collect::<String>(); "admin call");
    }
    match admin::route(&state.control, &served.held, &method, &path, &query, &body) {
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

    #[cfg(unix)]
    #[test]
    fn a_token_file_others_may_read_is_refused_at_load() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::dev::TempDir::new("token").unwrap();
        let file = dir.path().join("admin-token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let chmod = |mode| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode));
        for mode in [0o644, 0o640, 0o604, 0o660] {
            chmod(mode).unwrap();
            let err = read_admin_token(&file)
                .err()
                .unwrap_or_else(|| panic!("mode {mode:o} was accepted"))
                .to_string();
            assert!(err.contains(&file.display().to_string()), "{err}");
            assert!(err.contains("chmod 600"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
        for mode in [0o600, 0o400] {
            chmod(mode).unwrap();
            assert_eq!(read_admin_token(&file).unwrap().as_deref(), Some("s3cret"));
        }
    }
}
