//! Runner settings: defaults, then a TOML or JSON file, then `RUNNER_*` environment
//! variables, then validation that names the field and the problem.
//!
//! Environment names are `RUNNER_<SECTION>_<FIELD>` in upper case (`RUNNER_STORAGE_PATH`,
//! `RUNNER_CONSUMER_MAX_ACK_PENDING`), or `RUNNER_<FIELD>` for top-level fields
//! (`RUNNER_MODE`). Lists are comma-separated. A `RUNNER_` variable that names no
//! setting is an error, so a typo never passes silently; `RUNNER_CONFIG`, `RUNNER_LOG*`,
//! `RUNNER_NATS_SERVER_BIN`
//! and `RUNNER_TEST_*` are reserved for other uses and skipped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::TenantId;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("settings file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("settings file {path}: unsupported extension (use .toml or .json)")]
    Extension { path: PathBuf },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("setting {field}: {problem}")]
    Invalid { field: String, problem: String },
}

/// Which stages a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Consume events, run sagas, commit transitions (and, later, relay and schedule).
    Saga,
    /// Consume effect commands and run effects.
    Effect,
    /// Both.
    Combined,
}

impl Mode {
    pub fn runs_sagas(self) -> bool {
        matches!(self, Mode::Saga | Mode::Combined)
    }
    pub fn runs_effects(self) -> bool {
        matches!(self, Mode::Effect | Mode::Combined)
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "saga" => Ok(Mode::Saga),
            "effect" => Ok(Mode::Effect),
            "combined" => Ok(Mode::Combined),
            other => Err(format!(
                "unknown mode {other:?} (expected saga, effect or combined)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub mode: Mode,
    pub nats: NatsSettings,
    pub storage: StorageSettings,
    pub tenancy: TenancySettings,
    pub streams: StreamSettings,
    pub consumer: ConsumerSettings,
    pub pipeline: PipelineSettings,
    pub relay: RelaySettings,
    pub effects: EffectSettings,
    pub scheduler: SchedulerSettings,
    pub ops: OpsSettings,
    pub programs: ProgramSettings,
    pub manifests: ManifestSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// The server; the blocking client connects once at start-up (a refused connection
    /// fails start-up at once) and then reconnects forever. It has no connect or API
    /// timeout of its own to configure: JetStream API requests time out after 5 s.
    pub url: String,
    /// Create `WORKFLOW_COMMANDS` / `WORKFLOW_EVENTS` when missing.
    pub create_streams: bool,
    /// Also create `AGGREGATE_EVENTS` when missing: for development and tests only, as
    /// the Aggregate nodes own that stream in production.
    pub create_aggregate_stream: bool,
    /// A connection the client believes up that answers no PING for this long is given
    /// up: the process exits (code 3) so that its orchestrator restarts it on a new
    /// connection; unacked work is redelivered. 0 = wait for the client's own check,
    /// which takes 4–6 minutes.
    pub unresponsive_exit_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    pub path: PathBuf,
    /// LMDB map size: the most the store can ever hold. Address space only; set it large.
    pub map_size_mib: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenancySettings {
    /// When false, every message belongs to `default_tenant`; a message naming any other
    /// tenant is a tenant-access error.
    pub multi_tenant: bool,
    /// The tenant of messages that name none ("" = the single tenant).
    pub default_tenant: String,
    /// When non-empty, only these tenants are served; others are tenant-access errors.
    pub allowed_tenants: Vec<String>,
    /// This process's saga shard (with `placement_bucket`).
    pub shard: String,
    /// NATS KV bucket placing tenants on shards (`tenant → {"shard": name}`); the shard
    /// serves the tenants placed on it and hands moved ones over without a restart.
    /// "" = the static `allowed_tenants`.
    pub placement_bucket: String,
}

/// The placeholder of per-tenant subject filters.
pub const TENANT_PLACEHOLDER: &str = "{tenant}";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSettings {
    pub aggregate_events: String,
    pub workflow_commands: String,
    pub workflow_events: String,
    /// Subjects of the aggregate stream, used only when the Runner creates it
    /// (`nats.create_aggregate_stream`, for development and tests).
    pub aggregate_subjects: Vec<String>,
    /// Subject filter of the saga consumer on the aggregate stream ("" = whole stream).
    pub aggregate_filter: String,
    /// Subject filter of the saga consumer on the workflow events stream.
    pub workflow_filter: String,
    /// Subject prefixes that identify envelope kinds (CONTRACTS.md §1).
    pub command_prefix: String,
    pub result_prefix: String,
    pub timer_prefix: String,
    /// Duplicate window of the streams the Runner creates: long enough for relay retries.
    pub duplicate_window_secs: u64,
    /// Replicas of the streams (and the claims bucket) the Runner creates: 3 on a
    /// JetStream cluster, 1 on a single server.
    pub replicas: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerSettings {
    /// Durable name prefix; the saga consumers are `{durable}-aggregate` and
    /// `{durable}-workflow`.
    pub durable: String,
    /// Messages delivered but not yet acked, per consumer (JetStream `max_ack_pending`).
    pub max_ack_pending: i64,
    pub ack_wait_ms: u64,
    /// Deliveries after which a message is quarantined instead of processed again.
    pub max_deliver: i64,
    /// Messages asked for per pull request.
    pub fetch_batch: usize,
    /// How long a pull request waits for messages before it expires.
    pub fetch_wait_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// Capacity, in batches, of each channel between stages.
    pub channel_capacity: usize,
    /// Most transitions in one LMDB write transaction (group commit).
    pub commit_batch_max: usize,
    /// Largest message body accepted; larger ones are quarantined.
    pub max_message_bytes: usize,
    /// How often a stopped intake probes the store for writability again.
    pub storage_retry_ms: u64,
    /// How long the commit stage waits for more work after the first batch when the
    /// group is small (0 = commit at once). Each LMDB commit is an fsync whose CPU cost
    /// does not depend on its size, so at low load a linger trades this much latency per
    /// hop for fewer, fuller commits.
    pub commit_linger_us: u64,
}

/// The outbox relay: effect commands to `WORKFLOW_COMMANDS`, aggregate commands to the
/// Gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySettings {
    /// Base URL of the Gateway that accepts aggregate commands.
    pub gateway_url: String,
    /// Path of the command endpoint under `gateway_url`.
    pub commands_path: String,
    /// Whole-request timeout of one Gateway call (connect, send, answer).
    pub gateway_timeout_ms: u64,
    /// Threads making Gateway calls: the most Gateway calls in flight.
    pub gateway_workers: usize,
    /// Effect-command publishes awaiting their JetStream ack at once.
    pub publish_window: usize,
    /// How long one publish waits for its ack before it is re-sent (same `Nats-Msg-Id`).
    pub publish_timeout_ms: u64,
    /// Dispatches in flight for one tenant (both destinations together), so a tenant
    /// with a backlog cannot take every slot.
    pub max_in_flight_per_tenant: usize,
    /// Outbox items one tenant may have waiting in memory; more stay in the store until
    /// a scan picks them up.
    pub queue_per_tenant: usize,
    /// Tenants with items waiting in memory at once.
    pub max_tenants: usize,
    /// Attempts at one item before it is dead-lettered. Outages of NATS itself do not
    /// count: they pause the lane instead.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter, up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// How often the store is scanned for items no notice announced (a crash, a full
    /// channel); also done at start-up.
    pub scan_interval_ms: u64,
    /// Outbox items read per scan step.
    pub scan_batch: usize,
}

/// The effect worker pool (`effect` and `combined` modes). Each effect's own policy
/// (timeout, retries, breaker, concurrency) is in its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EffectSettings {
    /// Worker threads: effect calls in flight at once, over all effects.
    pub workers: usize,
    /// NATS KV bucket of execution claims, shared by every effect replica: the gate
    /// that keeps a command from running twice across hosts. "" = local records only
    /// (one effect replica).
    pub claims_bucket: String,
    /// How long an unfinished claim keeps other replicas from taking the command over
    /// (its holder may still be calling). Longer than the longest effect run.
    pub claim_lease_ms: u64,
    /// How long the claims bucket keeps a finished claim (bucket `max_age`): longer
    /// than a command can be redelivered.
    pub claims_ttl_secs: u64,
}

impl Default for EffectSettings {
    fn default() -> Self {
        EffectSettings {
            workers: 64,
            claims_bucket: "RUNNER_EFFECT_CLAIMS".into(),
            claim_lease_ms: 5 * 60 * 1000,
            claims_ttl_secs: 7 * 24 * 60 * 60,
        }
    }
}

/// The ops port (CONTRACTS.md §6) and shutdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsSettings {
    /// Address of the ops HTTP port; "" turns it off.
    pub listen: String,
    /// File holding the bearer token of `/admin/*` (a Swarm secret, say); "" leaves
    /// the admin endpoints closed (403).
    pub admin_token_file: PathBuf,
    /// After SIGTERM/SIGINT or `/admin/drain`, how long in-flight work may take to
    /// finish before the process exits without acking it (it is redelivered).
    pub drain_deadline_ms: u64,
}

impl Default for OpsSettings {
    fn default() -> Self {
        OpsSettings {
            listen: "0.0.0.0:9090".into(),
            admin_token_file: PathBuf::new(),
            drain_deadline_ms: 30_000,
        }
    }
}

/// The scheduler that fires timers (saga and combined modes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Timers fired per scan: the most reminders published at once.
    pub batch: usize,
    /// Longest sleep when nothing is due soon; also how late a timer set during that
    /// sleep can fire at worst.
    pub idle_poll_ms: u64,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            batch: 256,
            idle_poll_ms: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProgramSettings {
    /// Default gas per transition; a saga may set its own.
    pub gas: u64,
    pub max_depth: usize,
    pub max_state_bytes: usize,
    pub max_output_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManifestSettings {
    /// Saga manifest files (YAML or JSON).
    pub sagas: Vec<PathBuf>,
    /// Effect manifest files (YAML or JSON).
    pub effects: Vec<PathBuf>,
    /// Where `secret:NAME` references in effect manifests are read from (Docker and
    /// Swarm mount secrets here).
    pub secrets_dir: PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Saga,
            nats: NatsSettings::default(),
            storage: StorageSettings::default(),
            tenancy: TenancySettings::default(),
            streams: StreamSettings::default(),
            consumer: ConsumerSettings::default(),
            pipeline: PipelineSettings::default(),
            relay: RelaySettings::default(),
            effects: EffectSettings::default(),
            scheduler: SchedulerSettings::default(),
            ops: OpsSettings::default(),
            programs: ProgramSettings::default(),
            manifests: ManifestSettings::default(),
        }
    }
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            url: "nats://127.0.0.1:4222".into(),
            create_streams: true,
            create_aggregate_stream: false,
            unresponsive_exit_ms: 5_000,
        }
    }
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            path: PathBuf::from("./data/runner"),
            map_size_mib: 8 * 1024,
        }
    }
}

impl Default for TenancySettings {
    fn default() -> Self {
        TenancySettings {
            multi_tenant: true,
            default_tenant: String::new(),
            allowed_tenants: Vec::new(),
            shard: String::new(),
            placement_bucket: String::new(),
        }
    }
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            aggregate_events: "AGGREGATE_EVENTS".into(),
            workflow_commands: "WORKFLOW_COMMANDS".into(),
            workflow_events: "WORKFLOW_EVENTS".into(),
            aggregate_subjects: vec!["aggregate.>".into()],
            aggregate_filter: String::new(),
            workflow_filter: String::new(),
            command_prefix: "workflow.cmd".into(),
            result_prefix: "workflow.result".into(),
            timer_prefix: "workflow.timer".into(),
            duplicate_window_secs: 2 * 60 * 60,
            replicas: 1,
        }
    }
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            durable: "runner-saga".into(),
            max_ack_pending: 1024,
            ack_wait_ms: 30_000,
            max_deliver: 5,
            fetch_batch: 256,
            fetch_wait_ms: 1_000,
        }
    }
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            channel_capacity: 16,
            commit_batch_max: 1024,
            max_message_bytes: 1024 * 1024,
            storage_retry_ms: 1_000,
            commit_linger_us: 0,
        }
    }
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            gateway_url: "http://127.0.0.1:8080".into(),
            commands_path: "/v1/commands".into(),
            gateway_timeout_ms: 5_000,
            gateway_workers: 8,
            publish_window: 512,
            publish_timeout_ms: 5_000,
            max_in_flight_per_tenant: 256,
            queue_per_tenant: 1_024,
            max_tenants: 1_024,
            max_attempts: 12,
            backoff_initial_ms: 200,
            backoff_max_ms: 60_000,
            scan_interval_ms: 10_000,
            scan_batch: 256,
        }
    }
}

impl RelaySettings {
    fn validate(&self) -> Result<(), SettingsError> {
        let bad = |field: &str, problem: String| {
            Err(SettingsError::Invalid {
                field: format!("relay.{field}"),
                problem,
            })
        };
        if !(self.gateway_url.starts_with("http://") || self.gateway_url.starts_with("https://")) {
            return bad(
                "gateway_url",
                format!(
                    "must start with http:// or https:// (got {:?})",
                    self.gateway_url
                ),
            );
        }
        if !self.commands_path.starts_with('/') {
            return bad(
                "commands_path",
                format!("must start with '/' (got {:?})", self.commands_path),
            );
        }
        let ranges: [(&str, u64, u64, u64); 11] = [
            ("gateway_timeout_ms", self.gateway_timeout_ms, 10, 600_000),
            ("gateway_workers", self.gateway_workers as u64, 1, 256),
            ("publish_window", self.publish_window as u64, 1, 65_536),
            ("publish_timeout_ms", self.publish_timeout_ms, 10, 600_000),
            (
                "max_in_flight_per_tenant",
                self.max_in_flight_per_tenant as u64,
                1,
                65_536,
            ),
            (
                "queue_per_tenant",
                self.queue_per_tenant as u64,
                1,
                1_000_000,
            ),
            ("max_tenants", self.max_tenants as u64, 1, 1_000_000),
            ("max_attempts", self.max_attempts.into(), 1, 1_000),
            ("backoff_initial_ms", self.backoff_initial_ms, 1, 3_600_000),
            ("scan_interval_ms", self.scan_interval_ms, 100, 3_600_000),
            ("scan_batch", self.scan_batch as u64, 1, 100_000),
        ];
        for (field, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return bad(
                    field,
                    format!("must be between {min} and {max} (got {value})"),
                );
            }
        }
        if !(self.backoff_initial_ms..=86_400_000).contains(&self.backoff_max_ms) {
            return bad(
                "backoff_max_ms",
                format!(
                    "must be between relay.backoff_initial_ms ({}) and 86400000 (got {})",
                    self.backoff_initial_ms, self.backoff_max_ms
                ),
            );
        }
        Ok(())
    }

    /// The Gateway's command endpoint.
    pub fn commands_url(&self) -> String {
        format!(
            "{}{}",
            self.gateway_url.trim_end_matches('/'),
            self.commands_path
        )
    }
}

impl Default for ProgramSettings {
    fn default() -> Self {
        ProgramSettings {
            gas: 20_000,
            max_depth: 64,
            max_state_bytes: 256 * 1024,
            max_output_bytes: 1024 * 1024,
        }
    }
}

impl Default for ManifestSettings {
    fn default() -> Self {
        ManifestSettings {
            sagas: vec![PathBuf::from("manifests/example/sagas.yaml")],
            effects: vec![PathBuf::from("manifests/example/effects.yaml")],
            secrets_dir: PathBuf::from("/run/secrets"),
        }
    }
}

/// Environment variables under `RUNNER_` that are not settings.
const RESERVED_ENV: &[&str] = &[
    "RUNNER_CONFIG",
    "RUNNER_LOG",
    "RUNNER_LOG_FORMAT",
    // Where the dev tools and tests find nats-server.
    "RUNNER_NATS_SERVER_BIN",
];
const RESERVED_ENV_PREFIXES: &[&str] = &["RUNNER_TEST_", "RUNNER_CRASH_"];

impl Settings {
    /// Defaults, overlaid by `file` (if any), overlaid by `env`, then validated.
    pub fn load<I>(file: Option<&Path>, env: I) -> Result<Settings, SettingsError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut tree =
            serde_json::to_value(Settings::default()).map_err(|e| SettingsError::Invalid {
                field: "(defaults)".into(),
                problem: e.to_string(),
            })?;
        if let Some(path) = file {
            merge(&mut tree, read_file(path)?);
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("RUNNER_"))
            .collect();
        env.sort();
        // Which variable set which setting, to name it when the value does not fit.
        let mut from_env: Vec<(String, String)> = Vec::new();
        for (var, raw) in env {
            if let Some(path) = apply_env(&mut tree, &var, &raw)? {
                from_env.push((path, var));
            }
        }
        let settings: Settings = serde_path_to_error::deserialize(tree).map_err(|e| {
            let field = e.path().to_string();
            let message = e.into_inner().to_string();
            match (from_env.iter().find(|(path, _)| *path == field), file) {
                (Some((_, var)), _) => SettingsError::Env {
                    var: var.clone(),
                    message: format!("setting {field}: {message}"),
                },
                (None, Some(path)) => SettingsError::Parse {
                    path: path.to_path_buf(),
                    message: format!("setting {field}: {message}"),
                },
                (None, None) => SettingsError::Invalid {
                    field,
                    problem: message,
                },
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads from the process: `--config`/`RUNNER_CONFIG` file and the real environment.
    pub fn from_process(config: Option<&Path>) -> Result<Settings, SettingsError> {
        let from_env = std::env::var_os("RUNNER_CONFIG").map(PathBuf::from);
        let file = config.map(Path::to_path_buf).or(from_env);
        Settings::load(file.as_deref(), std::env::vars())
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |field: &str, problem: String| {
            Err(SettingsError::Invalid {
                field: field.into(),
                problem,
            })
        };
        if !(self.nats.url.starts_with("nats://") || self.nats.url.starts_with("tls://")) {
            return bad(
                "nats.url",
                format!(
                    "must start with nats:// or tls:// (got {:?})",
                    self.nats.url
                ),
            );
        }
        if self.storage.path.as_os_str().is_empty() {
            return bad("storage.path", "must not be empty".into());
        }
        self.validate_placement()?;
        if !(1..=1024 * 1024).contains(&self.storage.map_size_mib) {
            return bad(
                "storage.map_size_mib",
                format!(
                    "must be between 1 and 1048576 (got {})",
                    self.storage.map_size_mib
                ),
            );
        }
        if let Err(e) = TenantId::new(&self.tenancy.default_tenant) {
            return bad("tenancy.default_tenant", e.to_string());
        }
        for t in &self.tenancy.allowed_tenants {
            if let Err(e) = TenantId::new(t) {
                return bad("tenancy.allowed_tenants", e.to_string());
            }
        }
        for (field, name) in [
            ("streams.aggregate_events", &self.streams.aggregate_events),
            ("streams.workflow_commands", &self.streams.workflow_commands),
            ("streams.workflow_events", &self.streams.workflow_events),
        ] {
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return bad(
                    field,
                    format!(
                        "must be a stream name of 1-64 letters, digits, '_' or '-' (got {name:?})"
                    ),
                );
            }
        }
        if self.nats.create_aggregate_stream && self.streams.aggregate_subjects.is_empty() {
            return bad(
                "streams.aggregate_subjects",
                "must list subjects when nats.create_aggregate_stream is on".into(),
            );
        }
        for (field, prefix) in [
            ("streams.command_prefix", &self.streams.command_prefix),
            ("streams.result_prefix", &self.streams.result_prefix),
            ("streams.timer_prefix", &self.streams.timer_prefix),
        ] {
            if prefix.is_empty() || prefix.contains(['*', '>', ' ']) || prefix.ends_with('.') {
                return bad(field, format!("must be a literal subject prefix without wildcards or a trailing '.' (got {prefix:?})"));
            }
        }
        if self.streams.duplicate_window_secs == 0 {
            return bad(
                "streams.duplicate_window_secs",
                "must be greater than 0".into(),
            );
        }
        if self.consumer.durable.is_empty()
            || !self
                .consumer
                .durable
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return bad(
                "consumer.durable",
                format!(
                    "must be letters, digits, '_' or '-' (got {:?})",
                    self.consumer.durable
                ),
            );
        }
        if self.consumer.max_ack_pending < 1 {
            return bad(
                "consumer.max_ack_pending",
                format!("must be at least 1 (got {})", self.consumer.max_ack_pending),
            );
        }
        if self.consumer.ack_wait_ms < 100 {
            return bad(
                "consumer.ack_wait_ms",
                format!("must be at least 100 (got {})", self.consumer.ack_wait_ms),
            );
        }
        if self.consumer.max_deliver < 1 {
            return bad(
                "consumer.max_deliver",
                format!("must be at least 1 (got {})", self.consumer.max_deliver),
            );
        }
        if !(1..=10_000).contains(&self.consumer.fetch_batch) {
            return bad(
                "consumer.fetch_batch",
                format!(
                    "must be between 1 and 10000 (got {})",
                    self.consumer.fetch_batch
                ),
            );
        }
        if self.consumer.fetch_batch as i64 > self.consumer.max_ack_pending {
            return bad(
                "consumer.fetch_batch",
                format!(
                    "must not exceed consumer.max_ack_pending ({})",
                    self.consumer.max_ack_pending
                ),
            );
        }
        if !(10..=60_000).contains(&self.consumer.fetch_wait_ms) {
            return bad(
                "consumer.fetch_wait_ms",
                format!(
                    "must be between 10 and 60000 (got {})",
                    self.consumer.fetch_wait_ms
                ),
            );
        }
        if self.consumer.fetch_wait_ms >= self.consumer.ack_wait_ms {
            return bad(
                "consumer.fetch_wait_ms",
                format!(
                    "must be shorter than consumer.ack_wait_ms ({})",
                    self.consumer.ack_wait_ms
                ),
            );
        }
        if !(1..=4096).contains(&self.pipeline.channel_capacity) {
            return bad(
                "pipeline.channel_capacity",
                format!(
                    "must be between 1 and 4096 (got {})",
                    self.pipeline.channel_capacity
                ),
            );
        }
        if !(1..=100_000).contains(&self.pipeline.commit_batch_max) {
            return bad(
                "pipeline.commit_batch_max",
                format!(
                    "must be between 1 and 100000 (got {})",
                    self.pipeline.commit_batch_max
                ),
            );
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.pipeline.max_message_bytes) {
            return bad(
                "pipeline.max_message_bytes",
                format!(
                    "must be between 1024 and 67108864 (got {})",
                    self.pipeline.max_message_bytes
                ),
            );
        }
        if self.pipeline.storage_retry_ms == 0 {
            return bad("pipeline.storage_retry_ms", "must be greater than 0".into());
        }
        if self.nats.unresponsive_exit_ms != 0
            && !(1_000..=600_000).contains(&self.nats.unresponsive_exit_ms)
        {
            return bad(
                "nats.unresponsive_exit_ms",
                format!(
                    "must be 0 (off) or between 1000 and 600000 (got {})",
                    self.nats.unresponsive_exit_ms
                ),
            );
        }
        if self.pipeline.commit_linger_us > 100_000 {
            return bad(
                "pipeline.commit_linger_us",
                format!(
                    "must be at most 100000 (100 ms; got {})",
                    self.pipeline.commit_linger_us
                ),
            );
        }
        if self.programs.gas == 0 {
            return bad("programs.gas", "must be greater than 0".into());
        }
        if !(4..=1024).contains(&self.programs.max_depth) {
            return bad(
                "programs.max_depth",
                format!(
                    "must be between 4 and 1024 (got {})",
                    self.programs.max_depth
                ),
            );
        }
        if self.programs.max_state_bytes < 64 {
            return bad(
                "programs.max_state_bytes",
                format!(
                    "must be at least 64 (got {})",
                    self.programs.max_state_bytes
                ),
            );
        }
        if self.programs.max_output_bytes < self.programs.max_state_bytes
            || self.programs.max_output_bytes > 16 << 20
        {
            return bad(
                "programs.max_output_bytes",
                "must be at least programs.max_state_bytes and at most 16 MiB".into(),
            );
        }
        self.relay.validate()?;
        if !self.ops.listen.is_empty() && self.ops.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad(
                "ops.listen",
                format!(
                    "must be an address like 0.0.0.0:9090, or empty (got {:?})",
                    self.ops.listen
                ),
            );
        }
        if !(100..=3_600_000).contains(&self.ops.drain_deadline_ms) {
            return bad(
                "ops.drain_deadline_ms",
                format!(
                    "must be between 100 and 3600000 (got {})",
                    self.ops.drain_deadline_ms
                ),
            );
        }
        if !(1..=10_000).contains(&self.scheduler.batch) {
            return bad(
                "scheduler.batch",
                format!("must be between 1 and 10000 (got {})", self.scheduler.batch),
            );
        }
        if !(1..=60_000).contains(&self.scheduler.idle_poll_ms) {
            return bad(
                "scheduler.idle_poll_ms",
                format!(
                    "must be between 1 and 60000 (got {})",
                    self.scheduler.idle_poll_ms
                ),
            );
        }
        if !(1..=1024).contains(&self.effects.workers) {
            return bad(
                "effects.workers",
                format!("must be between 1 and 1024 (got {})", self.effects.workers),
            );
        }
        let bucket = &self.effects.claims_bucket;
        if !bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return bad(
                "effects.claims_bucket",
                format!("a bucket name is letters, digits, '_' and '-' (got {bucket:?})"),
            );
        }
        if self.effects.claim_lease_ms < self.consumer.ack_wait_ms {
            return bad(
                "effects.claim_lease_ms",
                format!(
                    "must be at least consumer.ack_wait_ms ({}), got {}",
                    self.consumer.ack_wait_ms, self.effects.claim_lease_ms
                ),
            );
        }
        if self.effects.claims_ttl_secs < 60 {
            return bad(
                "effects.claims_ttl_secs",
                format!("must be at least 60 (got {})", self.effects.claims_ttl_secs),
            );
        }
        if !(1..=5).contains(&self.streams.replicas) {
            return bad(
                "streams.replicas",
                format!("must be between 1 and 5 (got {})", self.streams.replicas),
            );
        }
        if self.mode.runs_sagas() && self.manifests.sagas.is_empty() {
            return bad(
                "manifests.sagas",
                "must list at least one saga manifest in saga or combined mode".into(),
            );
        }
        Ok(())
    }

    /// The tenant of messages that name none.
    /// Per-tenant consumers (`{tenant}` in the saga filters) and dynamic placement.
    fn validate_placement(&self) -> Result<(), SettingsError> {
        let bad = |field: &str, problem: String| {
            Err(SettingsError::Invalid {
                field: field.into(),
                problem,
            })
        };
        let t = &self.tenancy;
        let per_tenant = [
            ("streams.aggregate_filter", &self.streams.aggregate_filter),
            ("streams.workflow_filter", &self.streams.workflow_filter),
        ];
        let templated = per_tenant
            .iter()
            .filter(|(_, f)| f.contains(TENANT_PLACEHOLDER))
            .count();
        if templated == 1 {
            return bad(
                "streams.workflow_filter",
                "per-tenant consumers need {tenant} in both streams.aggregate_filter and streams.workflow_filter".into(),
            );
        }
        if templated == 2 && !t.multi_tenant {
            return bad(
                "tenancy.multi_tenant",
                "per-tenant filters ({tenant}) need a multi-tenant runner".into(),
            );
        }
        if t.placement_bucket.is_empty() {
            if templated == 2 && t.allowed_tenants.is_empty() {
                return bad(
                    "tenancy.allowed_tenants",
                    "per-tenant filters ({tenant}) without a placement bucket need the tenants listed here".into(),
                );
            }
            return Ok(());
        }
        if !t
            .placement_bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return bad(
                "tenancy.placement_bucket",
                format!(
                    "a bucket name is letters, digits, '_' and '-' (got {:?})",
                    t.placement_bucket
                ),
            );
        }
        if t.shard.is_empty()
            || !t
                .shard
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return bad(
                "tenancy.shard",
                format!(
                    "placement needs this shard's name: letters, digits, '_' and '-' (got {:?})",
                    t.shard
                ),
            );
        }
        if templated != 2 {
            return bad(
                "streams.aggregate_filter",
                "placement moves tenants with their consumers: put {tenant} in streams.aggregate_filter and streams.workflow_filter (e.g. \"aggregate.{tenant}.>\" and \"workflow.*.{tenant}.>\")".into(),
            );
        }
        if !t.allowed_tenants.is_empty() {
            return bad(
                "tenancy.allowed_tenants",
                "must be empty with a placement bucket: the bucket says which tenants this shard serves".into(),
            );
        }
        Ok(())
    }

    pub fn default_tenant(&self) -> TenantId {
        TenantId::new(&self.tenancy.default_tenant).unwrap_or_default()
    }

    pub fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.consumer.ack_wait_ms)
    }
}

fn read_file(path: &Path) -> Result<Value, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_err = |message: String| SettingsError::Parse {
        path: path.to_path_buf(),
        message,
    };
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => toml::from_str::<Value>(&text).map_err(|e| parse_err(e.to_string())),
        Some("json") => serde_json::from_str::<Value>(&text).map_err(|e| parse_err(e.to_string())),
        _ => Err(SettingsError::Extension {
            path: path.to_path_buf(),
        }),
    }
}

/// Overlays `overlay` onto `base`, object by object; other values replace.
fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    // Unknown keys are kept so that deserialisation rejects them by name.
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// Sets the setting named by `var` from its raw text, typed by the default's JSON type.
/// Returns the dotted path of the setting it set (`None` for reserved variables).
fn apply_env(tree: &mut Value, var: &str, raw: &str) -> Result<Option<String>, SettingsError> {
    if RESERVED_ENV.contains(&var) || RESERVED_ENV_PREFIXES.iter().any(|p| var.starts_with(p)) {
        return Ok(None);
    }
    let env_err = |message: String| SettingsError::Env {
        var: var.to_string(),
        message,
    };
    let name = var["RUNNER_".len()..].to_ascii_lowercase();
    let Value::Object(root) = tree else {
        return Err(env_err("settings tree is not an object".into()));
    };
    // Top-level field, or `<section>_<field>` where the section is an object.
    let (path, slot) = if root.get(&name).is_some_and(|v| !v.is_object()) {
        (name.clone(), root.get_mut(&name))
    } else {
        let section = root
            .iter()
            .filter(|(k, v)| v.is_object() && name.starts_with(&format!("{k}_")))
            .map(|(k, _)| k.clone())
            .next();
        match section {
            Some(section) => {
                let field = name[section.len() + 1..].to_string();
                let slot = root.get_mut(&section).and_then(|s| s.get_mut(&field));
                (format!("{section}.{field}"), slot)
            }
            None => (name.clone(), None),
        }
    };
    let Some(slot) = slot else {
        return Err(env_err("names no setting".into()));
    };
    *slot = typed_like(slot, raw).map_err(env_err)?;
    Ok(Some(path))
}

fn typed_like(current: &Value, raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    Ok(match current {
        Value::Bool(_) => match raw {
            "true" | "1" | "yes" => Value::Bool(true),
            "false" | "0" | "no" => Value::Bool(false),
            _ => return Err(format!("expected true or false, got {raw:?}")),
        },
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            let parsed: i64 = raw
                .parse()
                .map_err(|_| format!("expected an integer, got {raw:?}"))?;
            Value::from(parsed)
        }
        Value::Number(_) => {
            let parsed: f64 = raw
                .parse()
                .map_err(|_| format!("expected a number, got {raw:?}"))?;
            Value::from(parsed)
        }
        Value::Array(_) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        _ => Value::String(raw.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::TempDir;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn invalid_field(err: SettingsError) -> String {
        match err {
            SettingsError::Invalid { field, .. } => field,
            other => panic!("expected a validation error, got {other}"),
        }
    }

    /// The README lists every setting with its default; this keeps it true.
    #[test]
    fn the_readme_lists_every_setting_with_its_default() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("```toml\nmode =")
            .expect("settings block in README")
            + 8;
        let len = readme[start..].find("```").unwrap();
        let listed: Value = toml::from_str(&readme[start..start + len]).unwrap();
        let defaults = serde_json::to_value(Settings::default()).unwrap();
        assert_eq!(listed, defaults);
    }

    #[test]
    fn placement_needs_a_shard_per_tenant_filters_and_no_static_tenants() {
        let placed = env(&[
            ("RUNNER_TENANCY_PLACEMENT_BUCKET", "TENANT_PLACEMENT"),
            ("RUNNER_TENANCY_SHARD", "a"),
            ("RUNNER_STREAMS_AGGREGATE_FILTER", "aggregate.{tenant}.>"),
            ("RUNNER_STREAMS_WORKFLOW_FILTER", "workflow.*.{tenant}.>"),
        ]);
        let s = Settings::load(None, placed.clone()).unwrap();
        assert_eq!(s.tenancy.shard, "a");
        let with = |extra: (&str, &str)| {
            let mut e: Vec<_> = placed
                .iter()
                .filter(|(k, _)| k != extra.0)
                .cloned()
                .collect();
            e.push((extra.0.to_string(), extra.1.to_string()));
            invalid_field(Settings::load(None, e).unwrap_err())
        };
        assert_eq!(
            with(("RUNNER_TENANCY_ALLOWED_TENANTS", "acme")),
            "tenancy.allowed_tenants"
        );
        assert_eq!(with(("RUNNER_TENANCY_SHARD", "")), "tenancy.shard");
        assert_eq!(
            with(("RUNNER_STREAMS_WORKFLOW_FILTER", "workflow.>")),
            "streams.workflow_filter"
        );
        // Static per-tenant consumers list their tenants.
        let static_filters = env(&[
            ("RUNNER_STREAMS_AGGREGATE_FILTER", "aggregate.{tenant}.>"),
            ("RUNNER_STREAMS_WORKFLOW_FILTER", "workflow.*.{tenant}.>"),
        ]);
        assert_eq!(
            invalid_field(Settings::load(None, static_filters.clone()).unwrap_err()),
            "tenancy.allowed_tenants"
        );
        let mut listed = static_filters;
        listed.push((
            "RUNNER_TENANCY_ALLOWED_TENANTS".into(),
            "acme,globex".into(),
        ));
        let s = Settings::load(None, listed).unwrap();
        let consumers = crate::nats_io::saga_consumers(&s);
        assert_eq!(consumers.len(), 4);
        assert_eq!(consumers[0].durable, "runner-saga-acme-aggregate");
        assert_eq!(consumers[3].filter, "workflow.*.globex.>");
    }

    #[test]
    fn defaults_are_valid() {
        let s = Settings::load(None, Vec::new()).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn env_sets_sections_top_level_and_lists() {
        let s = Settings::load(
            None,
            env(&[
                ("RUNNER_MODE", "combined"),
                ("RUNNER_NATS_URL", "nats://10.0.0.1:4222"),
                ("RUNNER_STORAGE_MAP_SIZE_MIB", "64"),
                ("RUNNER_CONSUMER_MAX_ACK_PENDING", "300"),
                ("RUNNER_TENANCY_MULTI_TENANT", "false"),
                ("RUNNER_TENANCY_ALLOWED_TENANTS", "acme, globex"),
                ("RUNNER_TEST_NATS_URL", "ignored"),
                ("RUNNER_NATS_SERVER_BIN", "/usr/sbin/nats-server"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(s.mode, Mode::Combined);
        assert_eq!(s.nats.url, "nats://10.0.0.1:4222");
        assert_eq!(s.storage.map_size_mib, 64);
        assert_eq!(s.consumer.max_ack_pending, 300);
        assert!(!s.tenancy.multi_tenant);
        assert_eq!(s.tenancy.allowed_tenants, vec!["acme", "globex"]);
    }

    #[test]
    fn file_toml_and_json_load_and_env_overrides_file() {
        let dir = TempDir::new("settings").unwrap();
        let toml_path = dir.path().join("runner.toml");
        std::fs::write(
            &toml_path,
            "mode = \"combined\"\n[storage]\npath = \"/var/lib/runner\"\nmap_size_mib = 128\n",
        )
        .unwrap();
        let s = Settings::load(Some(&toml_path), Vec::new()).unwrap();
        assert_eq!(s.storage.path, PathBuf::from("/var/lib/runner"));
        assert_eq!(s.storage.map_size_mib, 128);
        assert_eq!(s.mode, Mode::Combined);
        // Untouched sections keep their defaults.
        assert_eq!(s.consumer, ConsumerSettings::default());

        let s = Settings::load(
            Some(&toml_path),
            env(&[("RUNNER_STORAGE_MAP_SIZE_MIB", "256")]),
        )
        .unwrap();
        assert_eq!(s.storage.map_size_mib, 256);
        assert_eq!(s.storage.path, PathBuf::from("/var/lib/runner"));

        let json_path = dir.path().join("runner.json");
        std::fs::write(&json_path, r#"{"consumer": {"max_deliver": 9}}"#).unwrap();
        let s = Settings::load(Some(&json_path), Vec::new()).unwrap();
        assert_eq!(s.consumer.max_deliver, 9);
    }

    #[test]
    fn unknown_keys_and_bad_types_are_named() {
        let dir = TempDir::new("settings").unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[storage]\nmapsize = 5\n").unwrap();
        let err = Settings::load(Some(&path), Vec::new()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("setting storage") && text.contains("mapsize"),
            "{text}"
        );

        let err = Settings::load(None, env(&[("RUNNER_STORAGE_MAPSIZE", "5")])).unwrap_err();
        assert!(
            matches!(&err, SettingsError::Env { var, .. } if var == "RUNNER_STORAGE_MAPSIZE"),
            "{err}"
        );
        let err =
            Settings::load(None, env(&[("RUNNER_CONSUMER_MAX_DELIVER", "many")])).unwrap_err();
        assert!(err.to_string().contains("expected an integer"), "{err}");
        let err = Settings::load(None, env(&[("RUNNER_MODE", "turbo")])).unwrap_err();
        assert!(
            matches!(&err, SettingsError::Env { var, message } if var == "RUNNER_MODE" && message.contains("setting mode") && message.contains("turbo")),
            "{err}"
        );
        let err = Settings::load(None, env(&[("RUNNER_STORAGE_MAP_SIZE_MIB", "-5")])).unwrap_err();
        assert!(
            matches!(&err, SettingsError::Env { var, message } if var == "RUNNER_STORAGE_MAP_SIZE_MIB" && message.contains("storage.map_size_mib")),
            "{err}"
        );
        let typed = dir.path().join("typed.toml");
        std::fs::write(&typed, "[consumer]\nmax_deliver = \"x\"\n").unwrap();
        let err = Settings::load(Some(&typed), Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("setting consumer.max_deliver"),
            "{err}"
        );

        let path = dir.path().join("runner.yaml");
        std::fs::write(&path, "mode: saga\n").unwrap();
        assert!(matches!(
            Settings::load(Some(&path), Vec::new()).unwrap_err(),
            SettingsError::Extension { .. }
        ));
    }

    #[test]
    fn validation_rejects_each_bad_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("RUNNER_NATS_URL", "http://x", "nats.url"),
            ("RUNNER_STORAGE_PATH", "", "storage.path"),
            ("RUNNER_STORAGE_MAP_SIZE_MIB", "0", "storage.map_size_mib"),
            (
                "RUNNER_TENANCY_DEFAULT_TENANT",
                "a.b",
                "tenancy.default_tenant",
            ),
            (
                "RUNNER_TENANCY_ALLOWED_TENANTS",
                "ok,b*d",
                "tenancy.allowed_tenants",
            ),
            (
                "RUNNER_STREAMS_AGGREGATE_EVENTS",
                "a.b",
                "streams.aggregate_events",
            ),
            (
                "RUNNER_STREAMS_RESULT_PREFIX",
                "workflow.*",
                "streams.result_prefix",
            ),
            (
                "RUNNER_STREAMS_TIMER_PREFIX",
                "workflow.timer.",
                "streams.timer_prefix",
            ),
            (
                "RUNNER_STREAMS_DUPLICATE_WINDOW_SECS",
                "0",
                "streams.duplicate_window_secs",
            ),
            ("RUNNER_CONSUMER_DURABLE", "a.b", "consumer.durable"),
            (
                "RUNNER_CONSUMER_MAX_ACK_PENDING",
                "0",
                "consumer.max_ack_pending",
            ),
            ("RUNNER_CONSUMER_ACK_WAIT_MS", "5", "consumer.ack_wait_ms"),
            ("RUNNER_CONSUMER_MAX_DELIVER", "0", "consumer.max_deliver"),
            ("RUNNER_CONSUMER_FETCH_BATCH", "0", "consumer.fetch_batch"),
            (
                "RUNNER_CONSUMER_FETCH_WAIT_MS",
                "1",
                "consumer.fetch_wait_ms",
            ),
            (
                "RUNNER_PIPELINE_CHANNEL_CAPACITY",
                "0",
                "pipeline.channel_capacity",
            ),
            (
                "RUNNER_PIPELINE_COMMIT_BATCH_MAX",
                "0",
                "pipeline.commit_batch_max",
            ),
            (
                "RUNNER_PIPELINE_MAX_MESSAGE_BYTES",
                "10",
                "pipeline.max_message_bytes",
            ),
            (
                "RUNNER_PIPELINE_STORAGE_RETRY_MS",
                "0",
                "pipeline.storage_retry_ms",
            ),
            (
                "RUNNER_NATS_UNRESPONSIVE_EXIT_MS",
                "999",
                "nats.unresponsive_exit_ms",
            ),
            (
                "RUNNER_PIPELINE_COMMIT_LINGER_US",
                "100001",
                "pipeline.commit_linger_us",
            ),
            ("RUNNER_PROGRAMS_GAS", "0", "programs.gas"),
            ("RUNNER_PROGRAMS_MAX_DEPTH", "1", "programs.max_depth"),
            (
                "RUNNER_PROGRAMS_MAX_STATE_BYTES",
                "1",
                "programs.max_state_bytes",
            ),
            (
                "RUNNER_PROGRAMS_MAX_OUTPUT_BYTES",
                "100",
                "programs.max_output_bytes",
            ),
            (
                "RUNNER_STREAMS_WORKFLOW_COMMANDS",
                "a b",
                "streams.workflow_commands",
            ),
            (
                "RUNNER_STREAMS_WORKFLOW_EVENTS",
                &"W".repeat(65),
                "streams.workflow_events",
            ),
            (
                "RUNNER_STREAMS_COMMAND_PREFIX",
                "workflow.>",
                "streams.command_prefix",
            ),
            (
                "RUNNER_CONSUMER_FETCH_WAIT_MS",
                "40000",
                "consumer.fetch_wait_ms",
            ),
            ("RUNNER_MANIFESTS_SAGAS", "", "manifests.sagas"),
            (
                "RUNNER_EFFECTS_CLAIMS_BUCKET",
                "a.b",
                "effects.claims_bucket",
            ),
            (
                "RUNNER_EFFECTS_CLAIM_LEASE_MS",
                "10",
                "effects.claim_lease_ms",
            ),
            (
                "RUNNER_EFFECTS_CLAIMS_TTL_SECS",
                "1",
                "effects.claims_ttl_secs",
            ),
            ("RUNNER_STREAMS_REPLICAS", "7", "streams.replicas"),
            (
                "RUNNER_STREAMS_AGGREGATE_FILTER",
                "aggregate.{tenant}.>",
                "streams.workflow_filter",
            ),
            ("RUNNER_TENANCY_PLACEMENT_BUCKET", "PLACE", "tenancy.shard"),
            (
                "RUNNER_RELAY_GATEWAY_URL",
                "gateway:8080",
                "relay.gateway_url",
            ),
            ("RUNNER_RELAY_COMMANDS_PATH", "v1", "relay.commands_path"),
            ("RUNNER_RELAY_GATEWAY_WORKERS", "0", "relay.gateway_workers"),
            ("RUNNER_RELAY_PUBLISH_WINDOW", "0", "relay.publish_window"),
            ("RUNNER_RELAY_MAX_ATTEMPTS", "0", "relay.max_attempts"),
            ("RUNNER_RELAY_BACKOFF_MAX_MS", "1", "relay.backoff_max_ms"),
            (
                "RUNNER_RELAY_SCAN_INTERVAL_MS",
                "5",
                "relay.scan_interval_ms",
            ),
            ("RUNNER_EFFECTS_WORKERS", "0", "effects.workers"),
            ("RUNNER_SCHEDULER_BATCH", "0", "scheduler.batch"),
            ("RUNNER_OPS_LISTEN", "localhost", "ops.listen"),
        ];
        for (var, value, field) in cases {
            let err = Settings::load(None, env(&[(var, value)])).unwrap_err();
            assert_eq!(&invalid_field(err), field, "{var}={value}");
        }
        let err = Settings::load(
            None,
            env(&[
                ("RUNNER_NATS_CREATE_AGGREGATE_STREAM", "true"),
                ("RUNNER_STREAMS_AGGREGATE_SUBJECTS", ""),
            ]),
        )
        .unwrap_err();
        assert_eq!(invalid_field(err), "streams.aggregate_subjects");
        let err = Settings::load(
            None,
            env(&[
                ("RUNNER_CONSUMER_FETCH_BATCH", "500"),
                ("RUNNER_CONSUMER_MAX_ACK_PENDING", "100"),
            ]),
        )
        .unwrap_err();
        assert_eq!(invalid_field(err), "consumer.fetch_batch");
    }
}
