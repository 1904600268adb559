//! Test rig for integration tests against a real `nats-server`.
//!
//! Each rig starts its own server on a free port with a temp store (stopped on drop),
//! unless `RUNNER_TEST_NATS_URL` names an external one. Either way every rig uses its
//! own namespace — stream names, subjects and durable names carry a random token — so
//! tests run in parallel, also on one shared server.

#![allow(dead_code)]

pub mod ops;
pub mod proxy;
pub mod shipped;

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runner::dev::{NatsServer, TempDir};
use runner::settings::Settings;
use runner::stages::Pipeline;
use runner::store::Store;
use serde_json::{json, Value};

pub use runner::dev::wait_until;
use runner::pipeline::StatsSnapshot;

pub struct Rig {
    pub server: Option<NatsServer>,
    pub url: String,
    pub dir: TempDir,
    /// Prefix of every subject of this rig.
    pub ns: String,
    pub settings: Settings,
    pub store: Arc<Store>,
}

impl Rig {
    /// A rig whose saga manifest is `sagas` (a JSON value of the manifest's `sagas` list;
    /// subjects in it may use `{ns}`, replaced by the rig's namespace).
    pub fn new(sagas: Value) -> Rig {
        let (server, url) = match std::env::var("RUNNER_TEST_NATS_URL") {
            Ok(url) if !url.is_empty() => (None, url),
            _ => {
                let server = NatsServer::start().expect("start nats-server");
                let url = server.url();
                (Some(server), url)
            }
        };
        Rig::build(server, url, sagas, 1)
    }

    /// A rig on a server (or cluster) someone else runs, with streams of `replicas`.
    pub fn on(url: &str, sagas: Value, replicas: usize) -> Rig {
        Rig::build(None, url.to_string(), sagas, replicas)
    }

    fn build(server: Option<NatsServer>, url: String, sagas: Value, replicas: usize) -> Rig {
        runner::logging::init_with_default("error");
        let dir = TempDir::new("it").unwrap();
        let token = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
        let ns = format!("t{token}");
        let manifest = dir.path().join("sagas.json");
        let text = json!({ "sagas": sagas }).to_string().replace("{ns}", &ns);
        std::fs::write(&manifest, text).unwrap();

        let mut s = Settings::default();
        s.nats.url = url.clone();
        s.nats.create_streams = true;
        s.nats.create_aggregate_stream = true;
        s.storage.path = dir.path().join("store");
        s.storage.map_size_mib = 256;
        runner::dev::namespace(&mut s, &ns, &token);
        s.streams.replicas = replicas;
        s.consumer.ack_wait_ms = 1_000;
        s.consumer.fetch_wait_ms = 200;
        s.pipeline.storage_retry_ms = 50;
        s.manifests.sagas = vec![manifest];
        // Many tests run at once: never the fixed default port.
        s.ops.listen = "127.0.0.1:0".into();
        // A drain sends what the outbox holds until this deadline: tests that end with
        // items no destination takes (a Gateway that never answers, NATS gone) would
        // wait the default 30 s when they drop their pipeline.
        s.ops.drain_deadline_ms = 10_000;
        let store = Arc::new(Store::open(&s.storage.path, 256 << 20).unwrap());
        // Streams exist before anything is published, as they do in production.
        let nc = runner::nats_io::connect(&url, "runner-test-setup").unwrap();
        runner::nats_io::ensure_streams(&nats::jetstream::new(nc), &s).unwrap();
        Rig {
            server,
            url,
            dir,
            ns,
            settings: s,
            store,
        }
    }

    pub fn connect(&self) -> nats::Connection {
        runner::nats_io::connect(&self.url, "runner-test").unwrap()
    }

    pub fn start(&self) -> Pipeline {
        self.start_with(self.settings.clone())
    }

    pub fn start_with(&self, settings: Settings) -> Pipeline {
        settings.validate().unwrap();
        let (sagas, effects) = runner::cli::catalogs_for_mode(&settings).unwrap();
        Pipeline::start(settings, self.store.clone(), sagas, effects, self.connect()).unwrap()
    }

    pub fn aggregate_subject(&self, tenant: &str, event_type: &str) -> String {
        format!("{}.aggregate.{tenant}.order.{event_type}", self.ns)
    }

    /// Publishes raw bytes to a subject without a `Nats-Msg-Id` (so JetStream keeps
    /// every copy) and waits for the stream's ack.
    pub fn publish_raw(&self, nc: &nats::Connection, subject: &str, body: &[u8]) {
        let js = nats::jetstream::new(nc.clone());
        js.publish(subject, body).unwrap();
    }

    pub fn publish(&self, nc: &nats::Connection, subject: &str, event: &Value) {
        self.publish_raw(nc, subject, event.to_string().as_bytes());
    }

    /// Publishes an `OrderPlaced` of tenant acme carrying `{"n": n}` (what
    /// [`recorder_saga`] appends to its log).
    pub fn send(&self, nc: &nats::Connection, event_id: &str, order: &str, n: i64) {
        let subject = self.aggregate_subject("acme", "OrderPlaced");
        let body = event(event_id, "acme", order, "OrderPlaced", json!({ "n": n }));
        self.publish(nc, &subject, &body);
    }

    pub fn consumer_info(
        &self,
        nc: &nats::Connection,
        which: &str,
    ) -> nats::jetstream::ConsumerInfo {
        let js = nats::jetstream::new(nc.clone());
        let stream = if which == "aggregate" {
            &self.settings.streams.aggregate_events
        } else {
            &self.settings.streams.workflow_events
        };
        js.consumer_info(
            stream,
            format!("{}-{which}", self.settings.consumer.durable),
        )
        .unwrap()
    }

    /// Messages of `stream` under `prefix.>` (at most `max`; waits up to a second).
    pub fn stream_messages(
        &self,
        nc: &nats::Connection,
        stream: &str,
        prefix: &str,
        max: usize,
    ) -> Vec<nats::Message> {
        runner::dev::read_stream(
            nc,
            stream,
            &format!("{prefix}.>"),
            max,
            Duration::from_secs(1),
        )
        .unwrap()
    }

    /// The effect commands on this rig's command stream.
    pub fn published_commands(&self, nc: &nats::Connection, max: usize) -> Vec<nats::Message> {
        let s = &self.settings.streams;
        self.stream_messages(nc, &s.workflow_commands, &s.command_prefix, max)
    }

    /// The result events on this rig's workflow events stream.
    pub fn result_messages(&self, nc: &nats::Connection, max: usize) -> Vec<nats::Message> {
        let s = &self.settings.streams;
        self.stream_messages(nc, &s.workflow_events, &s.result_prefix, max)
    }

    /// The reminder events on this rig's workflow events stream.
    pub fn reminder_messages(&self, nc: &nats::Connection, max: usize) -> Vec<nats::Message> {
        let s = &self.settings.streams;
        self.stream_messages(nc, &s.workflow_events, &s.timer_prefix, max)
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.settings.manifests.sagas[0].clone()
    }
}

/// An aggregate event envelope.
pub fn event(event_id: &str, tenant: &str, order: &str, event_type: &str, payload: Value) -> Value {
    json!({
        "event_id": event_id, "tenant_id": tenant, "aggregate_type": "order", "aggregate_id": order,
        "event_type": event_type, "occurred_at": "2026-11-27T10:00:00Z", "payload": payload,
        "metadata": {"correlation_id": format!("req-{event_id}"),
                     "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    })
}

/// A saga that appends `event.payload.n` to a comma-separated log in its state:
/// the state shows exactly which events were applied, in which order.
pub fn recorder_saga() -> Value {
    json!([{
        "name": "recorder",
        "triggers": [{"subject": "{ns}.aggregate.*.order.*", "start": true,
                      "correlate": {"$get": "event.aggregate_id"}}],
        "on_event": {"output": {
            "state": {"log": {"$concat": [
                {"$coalesce": [{"$get": "state.log"}, ""]},
                {"$str": {"$get": "event.payload.n"}}, ","]}},
            "commands": [{"to": "effect", "effect": "note", "payload": {"n": {"$get": "event.payload.n"}}}]
        }}
    }])
}

/// A saga whose every order event asks for one effect (`charge`) and sends one
/// aggregate command (`Ship`): both kinds of outbox item.
pub fn both_saga() -> Value {
    json!([{
        "name": "both",
        "triggers": [{"subject": "{ns}.aggregate.*.order.*", "start": true,
                      "correlate": {"$get": "event.aggregate_id"}}],
        "on_event": {"output": {
            "state": {"seen": true},
            "commands": [
                {"to": "effect", "effect": "charge", "payload": {"order": {"$get": "event.aggregate_id"}}},
                {"to": "aggregate", "aggregate_type": "order", "aggregate_id": {"$get": "event.aggregate_id"},
                 "command_type": "Ship", "payload": {}}
            ]
        }}
    }])
}

/// A TCP port free on loopback right now (for an ops port, say).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub const WAIT: Duration = Duration::from_secs(20);

/// Asserts that `done` comes to hold for the pipeline's counters within [`WAIT`],
/// showing the counters when it does not.
pub fn await_stats(pipeline: &Pipeline, done: impl Fn(&StatsSnapshot) -> bool) {
    let ok = wait_until(WAIT, || done(&pipeline.stats()));
    assert!(ok, "condition not reached: {:?}", pipeline.stats());
}

/// A running `runner run`, killed (SIGKILL) on drop.
pub struct RunnerProcess(Child);

/// No environment beyond the default.
const NO_ENV: &[(&str, &str)] = &[];

impl RunnerProcess {
    pub fn start(config: &std::path::Path, crash: Option<(&str, u32)>) -> RunnerProcess {
        RunnerProcess::spawn(config, crash, NO_ENV, Stdio::inherit())
    }

    /// [`RunnerProcess::start`] with its log (stderr) appended to the file `log`.
    pub fn start_logged(
        config: &std::path::Path,
        crash: Option<(&str, u32)>,
        log: &std::path::Path,
    ) -> RunnerProcess {
        RunnerProcess::start_with_env(config, crash, NO_ENV, log)
    }

    /// [`RunnerProcess::start_logged`] with more environment (`RUNNER_LOG`,
    /// `RUNNER_LOG_FORMAT`…; these replace the default `RUNNER_LOG=warn`).
    pub fn start_logged_with(
        config: &std::path::Path,
        log: &std::path::Path,
        env: &[(&str, &str)],
    ) -> RunnerProcess {
        RunnerProcess::start_with_env(config, None, env, log)
    }

    /// Runs `runner run` to its end (for one that must fail at start-up): its exit code
    /// and what it wrote to stderr.
    pub fn run_to_exit(config: &std::path::Path) -> (Option<i32>, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUNNER_LOG", "warn")
            .output()
            .expect("run the runner");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// [`RunnerProcess::start_logged`] with more environment (a pause point, say:
    /// `RUNNER_PAUSE_AT`, see `runner::crash`).
    pub fn start_with_env<V: AsRef<std::ffi::OsStr>>(
        config: &std::path::Path,
        crash: Option<(&str, u32)>,
        env: &[(&str, V)],
        log: &std::path::Path,
    ) -> RunnerProcess {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the runner's log file");
        RunnerProcess::spawn(config, crash, env, Stdio::from(file))
    }

    fn spawn<V: AsRef<std::ffi::OsStr>>(
        config: &std::path::Path,
        crash: Option<(&str, u32)>,
        env: &[(&str, V)],
        log: Stdio,
    ) -> RunnerProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
        cmd.args(["run", "--config"])
            .arg(config)
            .env("RUNNER_LOG", "warn")
            .env_remove("RUNNER_CRASH_AT")
            .env_remove("RUNNER_CRASH_AFTER")
            .env_remove("RUNNER_PAUSE_AT")
            .env_remove("RUNNER_PAUSE_UNTIL")
            .env_remove("RUNNER_PAUSE_MS")
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .stdout(Stdio::null())
            .stderr(log);
        if let Some((point, after)) = crash {
            cmd.env("RUNNER_CRASH_AT", point)
                .env("RUNNER_CRASH_AFTER", after.to_string());
        }
        RunnerProcess(cmd.spawn().expect("start runner"))
    }

    /// Runs `runner run` until it aborts at crash point `point` (its `after`-th hit),
    /// then starts it again without one and returns the new process.
    pub fn crash_then_restart(config: &std::path::Path, point: &str, after: u32) -> RunnerProcess {
        let mut crashing = RunnerProcess::start(config, Some((point, after)));
        let status = crashing
            .wait_exit(Duration::from_secs(30))
            .expect("the runner reaches the crash point");
        assert!(!status.success(), "it crashed: {status:?}");
        drop(crashing);
        RunnerProcess::start(config, None)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends SIGTERM (a drain, then the exit).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.0.id());
    }

    /// Waits for the process to end by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for RunnerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn config_file(rig: &Rig) -> std::path::PathBuf {
    let path = rig.dir.path().join("runner.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&rig.settings).unwrap()).unwrap();
    path
}
