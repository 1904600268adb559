//! A self-contained place to run the pipeline: a NATS server (throwaway unless a URL is
//! given), a temporary store directory, and settings that point at both. Used by the
//! demo, the bench command and the integration tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{NatsServer, TempDir};
use crate::envelope::header;
use crate::manifest::SagaCatalog;
use crate::nats_io::{self, Publisher};
use crate::settings::Settings;
use crate::stages::Pipeline;
use crate::store::Store;

pub struct Sandbox {
    /// The throwaway server, when one was started.
    pub server: Option<NatsServer>,
    pub url: String,
    pub dir: TempDir,
    pub settings: Settings,
}

impl Sandbox {
    /// Uses `nats_url` when given, else starts a throwaway `nats-server`. The settings
    /// create every stream (the aggregate one too) and store under a temp dir.
    pub fn new(nats_url: Option<&str>) -> Result<Sandbox, String> {
        let (server, url) = match nats_url {
            Some(url) => (None, url.to_string()),
            None => {
                let server = NatsServer::start().map_err(|e| e.to_string())?;
                let url = server.url();
                (Some(server), url)
            }
        };
        let dir = TempDir::new("sandbox").map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let mut settings = Settings::default();
        settings.nats.url = url.clone();
        settings.nats.create_streams = true;
        settings.nats.create_aggregate_stream = true;
        settings.storage.path = dir.path().join("store");
        settings.storage.map_size_mib = 1024;
        settings.manifests.sagas = vec![example_manifest()];
        let sandbox = Sandbox {
            server,
            url,
            dir,
            settings,
        };
        // Streams exist before anything is published, as they do in production.
        let js = nats::jetstream::new(sandbox.connect()?);
        nats_io::ensure_streams(&js, &sandbox.settings).map_err(|e| e.to_string())?;
        Ok(sandbox)
    }

    pub fn connect(&self) -> Result<nats::Connection, String> {
        nats_io::connect(&self.url, "runner-sandbox").map_err(|e| e.to_string())
    }

    pub fn open_store(&self) -> Result<Arc<Store>, String> {
        let size = (self.settings.storage.map_size_mib as usize) << 20;
        Store::open(&self.settings.storage.path, size)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }

    pub fn load_catalog(&self) -> Result<Arc<SagaCatalog>, String> {
        crate::cli::load_catalog(&self.settings)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }

    /// Starts the pipeline of this sandbox's settings (stages of their mode) on `store`.
    pub fn start_pipeline(&self, store: Arc<Store>) -> Result<Pipeline, String> {
        self.start_pipeline_with(self.settings.clone(), store)
    }

    /// Starts a pipeline with other settings (another mode, say) on this sandbox's server.
    pub fn start_pipeline_with(
        &self,
        settings: Settings,
        store: Arc<Store>,
    ) -> Result<Pipeline, String> {
        settings.validate().map_err(|e| e.to_string())?;
        let nc = self.connect()?;
        let (sagas, effects) =
            crate::cli::catalogs_for_mode(&settings).map_err(|e| e.to_string())?;
        Pipeline::start(settings, store, sagas, effects, nc).map_err(|e| e.to_string())
    }
}

/// Puts every stream, subject, consumer and claims bucket of `settings` under names of
/// their own (`token` in names, `ns` before subjects), so that tests and benches sharing
/// one server never see each other's messages.
pub fn namespace(settings: &mut Settings, ns: &str, token: &str) {
    let s = settings;
    s.streams.aggregate_events = format!("AGG_{token}");
    s.streams.workflow_commands = format!("CMD_{token}");
    s.streams.workflow_events = format!("WFE_{token}");
    s.streams.aggregate_subjects = vec![format!("{ns}.aggregate.>")];
    s.streams.aggregate_prefix = format!("{ns}.aggregate");
    s.streams.command_prefix = format!("{ns}.workflow.cmd");
    s.streams.result_prefix = format!("{ns}.workflow.result");
    s.streams.timer_prefix = format!("{ns}.workflow.timer");
    s.consumer.durable = format!("runner-{token}");
    s.effects.claims_bucket = format!("CLAIMS_{token}");
}

/// `manifests/example/sagas.yaml` of this source tree.
pub fn example_manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/example/sagas.yaml")
}

/// Publishes JSON envelopes with pipelined acks; each `Nats-Msg-Id` is the envelope's
/// `event_id`. Fails if any publish is not acknowledged.
pub fn publish_all(nc: &nats::Connection, events: &[(String, Value)]) -> Result<(), String> {
    let mut publisher =
        Publisher::new(nc, 512, Duration::from_secs(5), 3).map_err(|e| e.to_string())?;
    let mut failures = Vec::new();
    for (i, (subject, event)) in events.iter().enumerate() {
        let msg_id = event
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut headers = nats::header::HeaderMap::new();
        if let Some(t) = event
            .get("tenant_id")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            headers.insert(header::TENANT, t);
        }
        let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        publisher.publish(i as u64, subject, &msg_id, headers, body);
        failures.extend(
            publisher
                .poll(Duration::ZERO)
                .into_iter()
                .filter(|c| c.result.is_err()),
        );
    }
    failures.extend(publisher.finish().into_iter().filter(|c| c.result.is_err()));
    match failures.first() {
        None => Ok(()),
        Some(c) => Err(format!(
            "{} publishes failed; first (#{}): {:?}",
            failures.len(),
            c.tag,
            c.result
        )),
    }
}

/// Polls `done` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}
