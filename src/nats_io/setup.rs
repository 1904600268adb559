//! Stream and durable consumer set-up.

use std::time::Duration;

use nats::jetstream::{
    AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy, JetStream, ReplayPolicy, StorageType,
    StreamConfig,
};

use super::StreamError;
use crate::settings::{Settings, TENANT_PLACEHOLDER};

/// How often set-up is tried when a JetStream request times out, and the pause between.
const SET_UP_ATTEMPTS: u32 = 5;
const SET_UP_PAUSE: Duration = Duration::from_secs(1);

/// Runs an idempotent set-up step (streams, a consumer) again when a JetStream request
/// in it timed out, at most [`SET_UP_ATTEMPTS`] times: a cluster electing a leader, or
/// busy as several replicas start, answers late for a moment, and every step first
/// looks at what exists, so an earlier attempt that did land is found, not made twice.
/// Any other error (a missing stream, a refusal) is returned at once.
fn retry_timeouts<T>(
    what: &str,
    pause: Duration,
    mut step: impl FnMut() -> Result<T, StreamError>,
) -> Result<T, StreamError> {
    let mut attempt = 1;
    loop {
        match step() {
            Err(StreamError::JetStream {
                what: request,
                source,
            }) if source.kind() == std::io::ErrorKind::TimedOut && attempt < SET_UP_ATTEMPTS => {
                log::warn!(step = what, request = request.as_str(), attempt = attempt; "a JetStream request timed out during set-up; trying again");
                attempt += 1;
                std::thread::sleep(pause);
            }
            outcome => return outcome,
        }
    }
}

/// [`retry_timeouts`] with the set-up's pause.
pub fn set_up<T>(
    what: &str,
    step: impl FnMut() -> Result<T, StreamError>,
) -> Result<T, StreamError> {
    retry_timeouts(what, SET_UP_PAUSE, step)
}

fn js_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StreamError {
    let what = what.into();
    move |source| StreamError::JetStream { what, source }
}

/// Looked up by listing names: asking for the info of a missing stream makes the client
/// log an error even though "missing" is an expected answer here.
fn stream_exists(js: &JetStream, name: &str) -> Result<bool, StreamError> {
    for listed in js.stream_names() {
        if listed.map_err(js_err("list streams"))? == name {
            return Ok(true);
        }
    }
    Ok(false)
}

fn consumer_exists(js: &JetStream, stream: &str, durable: &str) -> Result<bool, StreamError> {
    Ok(listed_consumer(js, stream, durable)?.is_some())
}

/// The consumer's info as the listing gives it, `None` when it does not exist (listed
/// for the reason [`stream_exists`] is).
fn listed_consumer(
    js: &JetStream,
    stream: &str,
    durable: &str,
) -> Result<Option<ConsumerInfo>, StreamError> {
    let consumers = js
        .list_consumers(stream)
        .map_err(js_err(format!("list consumers of {stream}")))?;
    for info in consumers {
        let info = info.map_err(js_err(format!("list consumers of {stream}")))?;
        if info.name == durable {
            return Ok(Some(info));
        }
    }
    Ok(None)
}

/// What the Runner sets on a stream it creates.
struct Limits {
    duplicate_window: Duration,
    /// `Duration::ZERO`: no limit (and none expected of an existing stream).
    max_age: Duration,
    replicas: usize,
}

fn ensure_stream(
    js: &JetStream,
    name: &str,
    subjects: Vec<String>,
    limits: &Limits,
    create: bool,
) -> Result<(), StreamError> {
    let replicas = limits.replicas;
    // An existing stream is left as it is, but one with fewer replicas than the settings
    // ask for is named in a warning: it does not survive the loss of a node as configured;
    // so is one whose age limit differs from the settings': without one it grows with
    // its uptime, with a shorter one it deletes unconsumed work sooner than configured.
    let check_existing = || match js.stream_info(name) {
        Ok(info) => {
            // A stream created without a replica count reports 0: one copy.
            if info.config.num_replicas.max(1) < replicas {
                log::warn!(
                    stream = name, replicas = info.config.num_replicas.max(1), configured = replicas;
                    "stream has fewer replicas than streams.replicas; left unchanged (change it with the nats CLI)"
                );
            }
            let age = info.config.max_age;
            if !limits.max_age.is_zero() && age.is_zero() {
                log::warn!(
                    stream = name, configured_max_age_secs = limits.max_age.as_secs();
                    "stream keeps every message for ever (no max age) although streams.max_age_secs sets one; left unchanged (set it with the nats CLI)"
                );
            } else if !age.is_zero() && age < limits.max_age {
                log::warn!(
                    stream = name, max_age_secs = age.as_secs(), configured_max_age_secs = limits.max_age.as_secs();
                    "stream keeps messages for less than streams.max_age_secs: work left unconsumed that long is deleted; left unchanged (change it with the nats CLI)"
                );
            }
        }
        Err(e) => {
            log::warn!(stream = name, error = e.to_string(); "cannot read the stream's settings")
        }
    };
    if stream_exists(js, name)? {
        check_existing();
        return Ok(());
    }
    if !create {
        return Err(StreamError::MissingStream(name.to_string()));
    }
    let config = StreamConfig {
        name: name.to_string(),
        subjects,
        storage: StorageType::File,
        num_replicas: replicas,
        // JetStream takes the duplicate window in nanoseconds.
        duplicate_window: limits.duplicate_window.as_nanos().min(i64::MAX as u128) as i64,
        max_age: limits.max_age,
        ..Default::default()
    };
    match js.add_stream(config) {
        Ok(_) => {
            log::info!(stream = name, replicas = replicas; "created stream");
            Ok(())
        }
        // Another replica created it in the meantime.
        Err(_) if stream_exists(js, name)? => {
            check_existing();
            Ok(())
        }
        Err(e) => Err(js_err(format!("create stream {name}"))(e)),
    }
}

/// Makes sure the streams the saga pipeline reads and writes exist, created with
/// `streams.replicas` replicas, the duplicate window and, for the Runner's own two,
/// `streams.max_age_secs` (an existing one is kept as it is, with a warning where it has
/// fewer replicas or another age limit).
pub fn ensure_streams(js: &JetStream, settings: &Settings) -> Result<(), StreamError> {
    let s = &settings.streams;
    let limits = Limits {
        duplicate_window: Duration::from_secs(s.duplicate_window_secs),
        max_age: Duration::from_secs(s.max_age_secs),
        replicas: s.replicas,
    };
    // The aggregate stream is its owner's: the Runner creates it only for development
    // and tests, and neither sets nor expects an age limit on it.
    let aggregate = Limits {
        max_age: Duration::ZERO,
        ..limits
    };
    ensure_stream(
        js,
        &s.aggregate_events,
        s.aggregate_subjects.clone(),
        &aggregate,
        settings.nats.create_aggregate_stream,
    )?;
    ensure_stream(
        js,
        &s.workflow_commands,
        vec![format!("{}.>", s.command_prefix)],
        &limits,
        settings.nats.create_streams,
    )?;
    ensure_stream(
        js,
        &s.workflow_events,
        vec![
            format!("{}.>", s.result_prefix),
            format!("{}.>", s.timer_prefix),
        ],
        &limits,
        settings.nats.create_streams,
    )?;
    Ok(())
}

/// A durable pull consumer the pipeline reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub stream: String,
    pub durable: String,
    /// "" = the whole stream.
    pub filter: String,
}

/// The saga pipeline's consumers: one on the aggregate stream, one on workflow events —
/// or, when the filters name `{tenant}`, such a pair for each served tenant
/// (`{durable}-{tenant}-aggregate`, …), which moves with the tenant from shard to shard.
pub fn saga_consumers(settings: &Settings) -> Vec<ConsumerSpec> {
    let s = &settings.streams;
    let durable = &settings.consumer.durable;
    if s.aggregate_filter.contains(TENANT_PLACEHOLDER) {
        return settings
            .tenancy
            .allowed_tenants
            .iter()
            .flat_map(|tenant| {
                let per = |stream: &str, filter: &str, what: &str| ConsumerSpec {
                    stream: stream.to_string(),
                    durable: format!("{durable}-{tenant}-{what}"),
                    filter: filter.replace(TENANT_PLACEHOLDER, tenant),
                };
                [
                    per(&s.aggregate_events, &s.aggregate_filter, "aggregate"),
                    per(&s.workflow_events, &s.workflow_filter, "workflow"),
                ]
            })
            .collect();
    }
    vec![
        ConsumerSpec {
            stream: s.aggregate_events.clone(),
            durable: format!("{durable}-aggregate"),
            filter: s.aggregate_filter.clone(),
        },
        ConsumerSpec {
            stream: s.workflow_events.clone(),
            durable: format!("{durable}-workflow"),
            filter: s.workflow_filter.clone(),
        },
    ]
}

/// The consumer of one effect's commands: `{durable}-effects-{effect}`, filtered on
/// `{command_prefix}.*.{effect}` (the effect's commands of every tenant). Every process
/// whose manifest defines the effect pulls it, so replicas split its commands; a
/// process never receives a command of an effect it does not define, and a command
/// whose effect no running process defines waits here. One consumer per effect, not per
/// manifest: two manifests that share an effect share its consumer (no command is
/// delivered to both), and an effect's position in the stream survives any manifest
/// change (a new consumer for a changed set would have to guess where to start).
pub fn effect_consumer(settings: &Settings, effect: &str) -> ConsumerSpec {
    ConsumerSpec {
        stream: settings.streams.workflow_commands.clone(),
        durable: format!("{}-effects-{effect}", settings.consumer.durable),
        filter: format!("{}.*.{effect}", settings.streams.command_prefix),
    }
}

/// The consumers of the effects `catalog` defines, in name order.
pub fn effect_consumers(
    settings: &Settings,
    catalog: &crate::effects::EffectCatalog,
) -> Vec<ConsumerSpec> {
    catalog
        .effects
        .keys()
        .map(|effect| effect_consumer(settings, effect))
        .collect()
}

/// The effect name of an effect consumer's durable name, if it is one.
pub fn effect_of_consumer<'a>(settings: &Settings, durable: &'a str) -> Option<&'a str> {
    durable
        .strip_prefix(settings.consumer.durable.as_str())?
        .strip_prefix("-effects-")
        .filter(|effect| !effect.is_empty())
}

/// The one unfiltered effect consumer of Runner versions before per-effect consumers
/// (`{durable}-effects`). Never pulled or deleted by this version (an older replica may
/// still use it during an upgrade); its ack floor is where a new effect consumer starts.
pub fn legacy_effect_consumer(settings: &Settings) -> String {
    format!("{}-effects", settings.consumer.durable)
}

/// Where a new effect consumer starts: after the legacy consumer's ack floor when that
/// consumer exists (what it acked was executed), else at the stream's start (no consumer
/// ever took a command of this effect).
fn effect_start(js: &JetStream, settings: &Settings) -> Result<Option<u64>, StreamError> {
    let legacy = legacy_effect_consumer(settings);
    let info = listed_consumer(js, &settings.streams.workflow_commands, &legacy)?;
    Ok(info.map(|info| info.ack_floor.stream_seq + 1))
}

/// The consumer the settings ask for. JetStream's own `max_deliver` is unlimited: the
/// Runner counts deliveries itself so that a message past the limit becomes a
/// quarantine record instead of being silently dropped by the server.
fn desired_config(spec: &ConsumerSpec, settings: &Settings) -> ConsumerConfig {
    ConsumerConfig {
        durable_name: Some(spec.durable.clone()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: settings.ack_wait(),
        max_deliver: -1,
        filter_subject: spec.filter.clone(),
        replay_policy: ReplayPolicy::Instant,
        max_ack_pending: settings.consumer.max_ack_pending,
        max_waiting: 512,
        ..Default::default()
    }
}

/// Fields of an existing consumer that differ from what the Runner needs.
fn differences(have: &ConsumerConfig, want: &ConsumerConfig) -> Vec<String> {
    let mut out = Vec::new();
    if have.ack_policy != want.ack_policy {
        out.push(format!("ack_policy is {:?}, not Explicit", have.ack_policy));
    }
    if have.ack_wait != want.ack_wait {
        out.push(format!(
            "ack_wait is {:?}, settings say {:?}",
            have.ack_wait, want.ack_wait
        ));
    }
    // 0 and -1 both mean unlimited to the server.
    if have.max_deliver > 0 {
        out.push(format!(
            "max_deliver is {} (the server would drop messages silently); it must be unlimited",
            have.max_deliver
        ));
    }
    if have.filter_subject != want.filter_subject {
        out.push(format!(
            "filter_subject is {:?}, settings say {:?}",
            have.filter_subject, want.filter_subject
        ));
    }
    if have.max_ack_pending != want.max_ack_pending {
        out.push(format!(
            "max_ack_pending is {}, settings say {}",
            have.max_ack_pending, want.max_ack_pending
        ));
    }
    out
}

/// Creates the durable consumer, or checks an existing one against the settings and
/// updates it when it differs. Fails naming the fields the server would not change (the
/// ack policy, for one). Returns the consumer as it now is.
///
/// A consumer of the commands stream is an effect consumer: created where the legacy
/// unfiltered consumer's ack floor is, when that one exists ([`legacy_effect_consumer`]).
pub fn ensure_consumer(
    js: &JetStream,
    spec: &ConsumerSpec,
    settings: &Settings,
) -> Result<ConsumerInfo, StreamError> {
    let mut want = desired_config(spec, settings);
    let what = format!("consumer {} on {}", spec.durable, spec.stream);
    if let Some(have) = listed_consumer(js, &spec.stream, &spec.durable)? {
        if differences(&have.config, &want).is_empty() {
            return Ok(have);
        }
        // Creating with the same durable name updates the fields the server can change.
        let _ = js.add_consumer(&spec.stream, want.clone());
        let now = js
            .consumer_info(&spec.stream, &spec.durable)
            .map_err(js_err(format!("info of {what}")))?;
        let left = differences(&now.config, &want);
        if left.is_empty() {
            log::info!(stream = spec.stream.as_str(), consumer = spec.durable.as_str(); "updated durable consumer to match the settings");
            return Ok(now);
        }
        return Err(StreamError::ConsumerMismatch {
            consumer: what,
            differences: left.join("; "),
        });
    }
    if spec.stream == settings.streams.workflow_commands {
        if let Some(seq) = effect_start(js, settings)? {
            want.deliver_policy = DeliverPolicy::ByStartSeq;
            want.opt_start_seq = Some(seq);
        }
    }
    let from = want.opt_start_seq.unwrap_or(1);
    match js.add_consumer(&spec.stream, want) {
        Ok(info) => {
            log::info!(stream = spec.stream.as_str(), consumer = spec.durable.as_str(), filter = spec.filter.as_str(),
                from_seq = from; "created durable consumer");
            Ok(info)
        }
        Err(e) => match listed_consumer(js, &spec.stream, &spec.durable)? {
            // Another replica created it in the meantime.
            Some(info) => Ok(info),
            None => Err(js_err(format!("create {what}"))(e)),
        },
    }
}

/// Moves a durable consumer back (or forward) so that its next delivery is stream
/// sequence `from_seq`: JetStream cannot move an existing consumer, so it is deleted and
/// created again with the same name and settings. Only while nothing fetches from it
/// (the admin API checks that the pipeline is drained).
pub fn reposition_consumer(
    js: &JetStream,
    spec: &ConsumerSpec,
    settings: &Settings,
    from_seq: u64,
) -> Result<ConsumerInfo, StreamError> {
    let what = format!("consumer {} on {}", spec.durable, spec.stream);
    if consumer_exists(js, &spec.stream, &spec.durable)? {
        js.delete_consumer(&spec.stream, &spec.durable)
            .map_err(js_err(format!("delete {what}")))?;
    }
    let config = ConsumerConfig {
        deliver_policy: DeliverPolicy::ByStartSeq,
        opt_start_seq: Some(from_seq.max(1)),
        ..desired_config(spec, settings)
    };
    let info = js
        .add_consumer(&spec.stream, config)
        .map_err(js_err(format!("create {what} from sequence {from_seq}")))?;
    log::warn!(stream = spec.stream.as_str(), consumer = spec.durable.as_str(), from_seq = from_seq; "durable consumer repositioned for a replay");
    Ok(info)
}

/// Opens a KV bucket, creating it with `config` when it does not exist yet (another
/// replica may create it at the same moment: then it is opened). Like a stream, an
/// existing bucket with fewer replicas than `config` asks for is kept, with a warning.
pub fn key_value(js: &JetStream, config: &nats::kv::Config) -> std::io::Result<nats::kv::Store> {
    let existing = js.key_value(&config.bucket);
    if existing.is_ok() {
        let stream = format!("KV_{}", config.bucket);
        if let Ok(info) = js.stream_info(&stream) {
            if info.config.num_replicas.max(1) < config.num_replicas {
                log::warn!(bucket = config.bucket.as_str(), replicas = info.config.num_replicas.max(1),
                    configured = config.num_replicas;
                    "KV bucket has fewer replicas than streams.replicas; left unchanged (raise it with `nats stream edit KV_<bucket> --replicas N`)");
            }
        }
    }
    existing.or_else(|_| {
        js.create_key_value(config)
            .or_else(|_| js.key_value(&config.bucket))
    })
}

/// The header that makes a KV write a compare-and-set on the key's last `revision`
/// (0: the key must not exist).
pub fn cas_headers(revision: u64) -> nats::header::HeaderMap {
    let mut headers = nats::header::HeaderMap::new();
    headers.insert(
        nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        revision.to_string(),
    );
    headers
}

/// [`kv_write`] over a shared [`Requester`](super::Requester): no subscription per write.
pub fn kv_write_via(
    requester: &super::Requester,
    bucket: &str,
    key: &str,
    value: &[u8],
    revision: u64,
    timeout: Duration,
) -> std::io::Result<u64> {
    let reply = requester.request(
        &format!("$KV.{bucket}.{key}"),
        Some(&cas_headers(revision)),
        value,
        timeout,
    )?;
    super::publisher::read_ack(&reply.data)
        .map(|ack| ack.seq)
        .map_err(|(e, _)| std::io::Error::other(e))
}

/// Writes `value` under `key` of KV bucket `bucket` only if the key's last revision is
/// `revision` (0: the key does not exist), waiting at most `timeout` for JetStream's
/// answer. The client's own `create`/`update` wait for it without limit, which hangs
/// the caller forever when the answer is lost (a node dying, say). A timed-out write is
/// of unknown outcome: read the key to learn it.
pub fn kv_write(
    js: &JetStream,
    bucket: &str,
    key: &str,
    value: &[u8],
    revision: u64,
    timeout: Duration,
) -> std::io::Result<u64> {
    let options = nats::jetstream::PublishOptions {
        timeout: Some(timeout),
        expected_last_subject_sequence: Some(revision),
        ..Default::default()
    };
    js.publish_with_options(&format!("$KV.{bucket}.{key}"), value, &options)
        .map(|ack| ack.sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed_out() -> StreamError {
        js_err("list streams")(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "next_timeout: timed out",
        ))
    }

    #[test]
    fn set_up_tries_again_after_timeouts_only_and_a_bounded_number_of_times() {
        let mut calls = 0;
        let ok = retry_timeouts("streams", Duration::ZERO, || {
            calls += 1;
            if calls < 3 {
                Err(timed_out())
            } else {
                Ok(calls)
            }
        });
        assert_eq!(ok.unwrap(), 3, "two timeouts, then the step landed");

        let mut calls = 0;
        let missing = retry_timeouts("streams", Duration::ZERO, || -> Result<(), _> {
            calls += 1;
            Err(StreamError::MissingStream("AGGREGATE_EVENTS".into()))
        });
        assert!(matches!(missing, Err(StreamError::MissingStream(_))));
        assert_eq!(calls, 1, "any other error is returned at once");

        let mut calls = 0;
        let gave_up = retry_timeouts("streams", Duration::ZERO, || -> Result<(), _> {
            calls += 1;
            Err(timed_out())
        });
        assert!(matches!(gave_up, Err(StreamError::JetStream { .. })));
        assert_eq!(calls, SET_UP_ATTEMPTS, "bounded");
    }

    #[test]
    fn an_effect_consumer_selects_its_effect_for_every_tenant_and_its_name_says_which() {
        let settings = Settings::default();
        let spec = effect_consumer(&settings, "charge_card");
        assert_eq!(spec.durable, "runner-saga-effects-charge_card");
        assert_eq!(spec.filter, "workflow.cmd.*.charge_card");
        assert_eq!(spec.stream, "WORKFLOW_COMMANDS");
        assert_eq!(
            effect_of_consumer(&settings, &spec.durable),
            Some("charge_card")
        );
        // The legacy unfiltered consumer and saga consumers name no effect.
        assert_eq!(
            effect_of_consumer(&settings, &legacy_effect_consumer(&settings)),
            None
        );
        assert_eq!(effect_of_consumer(&settings, "runner-saga-aggregate"), None);
        assert_eq!(effect_of_consumer(&settings, "other-effects-charge"), None);
    }
}
