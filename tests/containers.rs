//! Container artefacts (issue 7): the Swarm stack and the compose files pass the real
//! `docker stack config` (the docker CLI alone, no engine) and say what the scaling
//! model needs; every Runner service's settings, manifests and secrets load with
//! `runner check` as the container would see them; the Dockerfile has what the image
//! promises; and `runner healthcheck` answers for a live ops port and fails for others.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::shipped::{make_nats_secrets, root, str_list};
use common::*;
use runner::dev::TempDir;
use runner::settings::Settings;
use serde_json::Value;

const STACK: &str = "swarm/stacks/platform.yml";
const COMPOSE: &str = "docker/docker-compose.yml";
const OBSERVABILITY: &str = "docker/docker-compose.observability.yml";
const DOCKERFILE: &str = "docker/Dockerfile.rust";
const HEALTHCHECK: [&str; 3] = ["CMD", "/usr/local/bin/runner", "healthcheck"];

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// The output of `docker stack config -c FILE…` (merges and interpolation done), parsed.
/// Interpolation sees only `vars`: variables of the test's own environment that the
/// files use are removed so that their defaults are what is checked.
fn stack_config(files: &[&str], vars: &[(&str, &str)]) -> Value {
    let docker = std::env::var("DOCKER").unwrap_or_else(|_| "docker".into());
    let mut cmd = Command::new(&docker);
    cmd.args(["stack", "config"]);
    for file in files {
        cmd.arg("-c").arg(root().join(file));
    }
    for var in [
        "RUNNER_IMAGE",
        "RUNNER_MODE",
        "RUNNER_LOG",
        "CONFIG_VERSION",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(vars.iter().copied());
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{docker} stack config` ({e}): these tests need the docker CLI \
             (no engine; CI has it at /usr/local/bin/docker). Install it or set DOCKER=/path/to/docker."
        )
    });
    assert!(
        out.status.success(),
        "docker stack config -c {files:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("unparsable output ({e}):\n{text}"))
}

fn services(config: &Value) -> &serde_json::Map<String, Value> {
    config["services"].as_object().expect("services")
}

/// A service's environment (`docker stack config` prints it as a map).
fn env_of(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A Go duration as Compose prints it: `45s`, `1m0s`, `1m30s`, `500ms`, `1h`.
fn go_duration(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("bad duration {text:?}"));
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += match &rest[..unit] {
            "h" => Duration::from_secs(n * 3600),
            "m" => Duration::from_secs(n * 60),
            "s" | "" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            other => panic!("unknown unit {other:?} in {text:?}"),
        };
        rest = &rest[unit..];
    }
    total
}

/// Where the file a container sees at `target` comes from on this machine: a Swarm
/// config or a bind mount of the service, else the image's default (what
/// docker/Dockerfile.rust copies there).
fn host_file(config: &Value, service: &Value, target: &str) -> PathBuf {
    for mount in service["configs"].as_array().into_iter().flatten() {
        if mount["target"] == target {
            let source = mount["source"].as_str().unwrap();
            let file = config["configs"][source]["file"]
                .as_str()
                .unwrap_or_else(|| panic!("config {source} has no file"));
            return PathBuf::from(file);
        }
    }
    for mount in service["volumes"].as_array().into_iter().flatten() {
        if mount["type"] == "bind" && mount["target"] == target {
            return PathBuf::from(mount["source"].as_str().unwrap());
        }
    }
    if target == "/etc/runner/runner.toml" {
        return root().join("docker/runner.toml");
    }
    if let Some(rest) = target.strip_prefix("/etc/runner/manifests/") {
        return root().join("manifests/example").join(rest);
    }
    panic!("nothing provides {target} in the container")
}

/// The file names under /run/secrets that the service mounts.
fn secret_files(service: &Value) -> BTreeSet<String> {
    service["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let target = s["target"].as_str().or(s["source"].as_str()).unwrap();
            target
                .strip_prefix("/run/secrets/")
                .unwrap_or(target)
                .to_string()
        })
        .collect()
}

/// The settings a Runner service runs with: its runner.toml, then its environment.
fn service_settings(config: &Value, service: &Value) -> Settings {
    let file = host_file(config, service, "/etc/runner/runner.toml");
    Settings::load(Some(&file), env_of(service)).unwrap_or_else(|e| {
        panic!(
            "settings of {} with {:?}: {e}",
            file.display(),
            env_of(service)
        )
    })
}

/// Runs `runner check` the way the service's container would: its settings file and
/// environment, its manifests (mounted or the image's), and a secrets dir holding a
/// stand-in for every secret the service mounts (and nothing else).
fn check_like_the_container(name: &str, config: &Value, service: &Value) {
    let settings = service_settings(config, service);
    let secrets = TempDir::new("secrets").unwrap();
    // The NATS certificates, keys and passwords as docker/nats-secrets.sh makes them:
    // `runner check` reads and parses them. Stand-ins for the other secrets.
    make_nats_secrets(secrets.path(), &[]);
    for file in secret_files(service) {
        let path = secrets.path().join(&file);
        if !path.exists() {
            std::fs::write(path, "stand-in").unwrap();
        }
    }
    // Settings naming a secret file (RUNNER_NATS_*_FILE) read it from the stand-in dir.
    let env: BTreeMap<String, String> = env_of(service)
        .into_iter()
        .map(|(var, value)| match value.strip_prefix("/run/secrets/") {
            Some(file) => (var, secrets.path().join(file).display().to_string()),
            None => (var, value),
        })
        .collect();
    let local = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| {
                host_file(config, service, p.to_str().unwrap())
                    .display()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("check")
        .arg("--config")
        .arg(host_file(config, service, "/etc/runner/runner.toml"))
        .env_clear()
        .envs(env)
        .env("RUNNER_MANIFESTS_SAGAS", local(&settings.manifests.sagas))
        .env(
            "RUNNER_MANIFESTS_EFFECTS",
            local(&settings.manifests.effects),
        )
        .env("RUNNER_MANIFESTS_SECRETS_DIR", secrets.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: `runner check` fails as the container would: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What every Runner service needs, in the stack and the compose file alike.
fn assert_runner_service(name: &str, config: &Value, service: &Value) {
    assert_eq!(
        str_list(&service["healthcheck"]["test"]),
        HEALTHCHECK,
        "{name}: health is `runner healthcheck` (no curl in the image)"
    );
    assert_eq!(service["stop_signal"], "SIGTERM", "{name}: SIGTERM drains");
    let settings = service_settings(config, service);
    let grace = go_duration(
        service["stop_grace_period"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no stop_grace_period")),
    );
    let drain = Duration::from_millis(settings.ops.drain_deadline_ms);
    assert!(
        grace > drain,
        "{name}: stop_grace_period {grace:?} must exceed ops.drain_deadline_ms ({drain:?}) or SIGKILL cuts the drain short"
    );
    assert!(
        !settings.ops.listen.is_empty(),
        "{name}: the ops port is on (the healthcheck asks it)"
    );
    let store = &settings.storage.path;
    let data = service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["type"] == "volume" && store.starts_with(v["target"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("{name}: storage.path {store:?} is not on a named volume"));
    assert!(data["source"].as_str().is_some_and(|s| !s.is_empty()));
    let limits = &service["deploy"]["resources"]["limits"];
    assert!(
        limits["cpus"].is_string() && !limits["memory"].is_null(),
        "{name}: cpu and memory limits"
    );
    for (var, value) in env_of(service) {
        let upper = var.to_ascii_uppercase();
        if ["SECRET", "TOKEN", "PASSWORD", "KEY", "CREDENTIAL"]
            .iter()
            .any(|w| upper.contains(w))
        {
            assert!(
                value.starts_with("/run/secrets/"),
                "{name}: {var} looks like a credential passed as an environment variable; use a secret file"
            );
        }
    }
    if !settings.ops.admin_token_file.as_os_str().is_empty() {
        let token = &settings.ops.admin_token_file;
        assert!(
            token.starts_with("/run/secrets")
                && secret_files(service).contains(token.file_name().unwrap().to_str().unwrap()),
            "{name}: ops.admin_token_file {token:?} is a mounted secret"
        );
    }
    // NATS: a user, TLS against the deployment's CA, every file a mounted secret.
    let nats = &settings.nats;
    assert_ne!(nats.auth_summary(), "none", "{name}: NATS credentials");
    for file in [
        &nats.password_file,
        &nats.nkey_file,
        &nats.creds_file,
        &nats.tls_ca_file,
        &nats.tls_cert_file,
        &nats.tls_key_file,
    ] {
        if file.as_os_str().is_empty() {
            continue;
        }
        assert!(
            file.starts_with("/run/secrets")
                && secret_files(service).contains(file.file_name().unwrap().to_str().unwrap()),
            "{name}: {file:?} is a mounted secret"
        );
    }
    assert!(
        !nats.tls_ca_file.as_os_str().is_empty(),
        "{name}: NATS over TLS with the deployment's CA"
    );
    check_like_the_container(name, config, service);
}

fn update_order(service: &Value, which: &str) -> String {
    service["deploy"][which]["order"]
        .as_str()
        .unwrap_or("stop-first") // Swarm's default
        .to_string()
}

fn volume_source<'a>(service: &'a Value, target: &str) -> &'a str {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["target"] == target)
        .and_then(|v| v["source"].as_str())
        .unwrap_or_else(|| panic!("no volume at {target}"))
}

#[test]
fn the_swarm_stack_validates_and_encodes_the_scaling_model() {
    let config = stack_config(&[STACK], &[]);
    let all = services(&config);
    for (name, service) in all {
        assert!(
            service["healthcheck"]["test"].is_array(),
            "{name}: every service has a healthcheck"
        );
        assert!(
            service["deploy"]["resources"]["limits"]["memory"].is_string(),
            "{name}: a memory limit"
        );
    }
    let runners: Vec<(&String, &Value)> = all
        .iter()
        .filter(|(_, s)| str_list(&s["healthcheck"]["test"]) == HEALTHCHECK)
        .collect();
    for want in [
        "runner-saga-shard-a",
        "runner-saga-shard-b",
        "runner-effect",
        "runner-combined",
    ] {
        assert!(
            runners.iter().any(|(n, _)| *n == want),
            "{want} is a Runner service"
        );
    }
    for (name, service) in &runners {
        assert_runner_service(name, &config, service);
    }

    // Saga shards: one replica each, never two at once, pinned to their volume's node,
    // their own store, durable consumers and tenants.
    let shards: Vec<(&String, &Value)> = runners
        .iter()
        .copied()
        .filter(|(n, _)| n.contains("saga-shard"))
        .collect();
    assert!(shards.len() >= 2, "at least two saga shards");
    let (mut stores, mut durables, mut tenants) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (name, service) in &shards {
        let settings = service_settings(&config, service);
        assert_eq!(settings.mode, runner::settings::Mode::Saga, "{name}");
        assert_eq!(service["deploy"]["replicas"], 1, "{name}: one replica");
        assert_eq!(
            update_order(service, "update_config"),
            "stop-first",
            "{name}"
        );
        assert_eq!(
            update_order(service, "rollback_config"),
            "stop-first",
            "{name}"
        );
        let constraints = str_list(&service["deploy"]["placement"]["constraints"]);
        assert!(
            constraints.iter().any(|c| c.starts_with("node.labels.")),
            "{name}: pinned to a labelled node (its volume is local), got {constraints:?}"
        );
        assert!(
            stores.insert(volume_source(service, "/data").to_string()),
            "{name}: a store of its own"
        );
        assert!(
            durables.insert(settings.consumer.durable.clone()),
            "{name}: durable consumers of its own"
        );
        assert!(
            !settings.tenancy.allowed_tenants.is_empty(),
            "{name}: serves named tenants only"
        );
        for tenant in &settings.tenancy.allowed_tenants {
            assert!(
                tenants.insert(tenant.clone()),
                "{name}: tenant {tenant} is served by two shards"
            );
            for filter in [
                &settings.streams.aggregate_filter,
                &settings.streams.workflow_filter,
            ] {
                assert!(
                    filter.split('.').any(|token| token == tenant),
                    "{name}: filter {filter:?} selects tenant {tenant}"
                );
            }
        }
    }

    // Effect workers: several replicas on one shared consumer, updated start-first,
    // each task with a store of its own, the provider credentials as secret files.
    let effect = &all["runner-effect"];
    let effect_settings = service_settings(&config, effect);
    assert_eq!(effect_settings.mode, runner::settings::Mode::Effect);
    assert!(
        effect["deploy"]["replicas"].as_u64().unwrap() >= 2,
        "effect workers scale out"
    );
    assert_eq!(update_order(effect, "update_config"), "start-first");
    assert!(
        !durables.contains(&effect_settings.consumer.durable),
        "the effect pool's consumer is not a shard's"
    );
    let volume = volume_source(effect, "/data");
    assert!(
        config["volumes"][volume]["name"]
            .as_str()
            .is_some_and(|n| n.contains("{{.Task.Slot}}")),
        "each effect task has its own store volume"
    );
    let manifest = host_file(&config, effect, "/etc/runner/manifests/effects.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let referenced: BTreeSet<String> = text
        .split("secret:")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                .collect()
        })
        .collect();
    assert!(
        !referenced.is_empty(),
        "the stack's effect manifest uses a provider credential"
    );
    for name in ["runner-effect", "runner-combined"] {
        let mounted = secret_files(&all[name]);
        for secret in &referenced {
            assert!(
                mounted.contains(secret),
                "{name}: secret:{secret} is mounted"
            );
        }
    }

    // The small install: never scaled beyond one, never two at once.
    let combined = &all["runner-combined"];
    assert!(combined["deploy"]["replicas"].as_u64().unwrap() <= 1);
    assert_eq!(update_order(combined, "update_config"), "stop-first");

    // Secrets only ever come from outside the file.
    let secrets = config["secrets"].as_object().expect("secrets");
    assert!(!secrets.is_empty());
    for (name, secret) in secrets {
        assert_eq!(secret["external"], true, "secret {name} is external");
    }

    // A 3-node JetStream cluster: one service per node, own name, own volume.
    let nats_conf = read("swarm/configs/nats.conf");
    let mut names = BTreeSet::new();
    for node in ["nats-1", "nats-2", "nats-3"] {
        let service = &all[node];
        let command = str_list(&service["command"]);
        let name = command
            .windows(2)
            .find(|w| w[0] == "--name")
            .map(|w| w[1].clone())
            .unwrap_or_else(|| panic!("{node}: a server name"));
        assert!(names.insert(name), "{node}: a server name of its own");
        assert!(
            nats_conf.contains(&format!("nats://{node}:6222")),
            "{node} is a cluster route"
        );
        assert!(stores.insert(volume_source(service, "/data").to_string()));
    }
}

#[test]
fn the_compose_files_validate_and_drain_before_stop() {
    let config = stack_config(&[COMPOSE], &[]);
    let all = services(&config);
    let runner = &all["runner"];
    assert_runner_service("runner", &config, runner);
    assert_eq!(
        service_settings(&config, runner).mode,
        runner::settings::Mode::Combined
    );
    let nats = &all["nats"];
    let command = str_list(&nats["command"]).join(" ");
    assert!(command.contains("-js"), "JetStream on: {command}");
    assert!(command.contains("-sd /data"), "store dir: {command}");
    let volume = volume_source(nats, "/data");
    assert!(
        config["volumes"].get(volume).is_some(),
        "the JetStream store is a named volume"
    );
    assert!(nats["healthcheck"]["test"].is_array());
    assert!(read("docker/nats.conf").contains("sync_interval: always"));

    // The mode comes from RUNNER_MODE.
    let config = stack_config(&[COMPOSE], &[("RUNNER_MODE", "effect")]);
    let runner = &services(&config)["runner"];
    assert_eq!(
        service_settings(&config, runner).mode,
        runner::settings::Mode::Effect
    );
    check_like_the_container("runner (effect)", &config, runner);

    // The observability overlay merges onto it and scrapes the ops port.
    let config = stack_config(&[COMPOSE, OBSERVABILITY], &[]);
    let all = services(&config);
    for name in ["runner", "nats", "victoriametrics", "grafana", "loki"] {
        assert!(all.contains_key(name), "{name} in the merged compose file");
    }
    let port = Settings::load(Some(&root().join("docker/runner.toml")), Vec::new())
        .unwrap()
        .ops
        .listen
        .rsplit_once(':')
        .unwrap()
        .1
        .to_string();
    assert!(read("docker/observability/scrape.yml").contains(&format!("runner:{port}")));
}

/// Dockerfile instructions: continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, rest) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((keyword.to_ascii_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    out
}

fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not exec form {text:?}: {e}"))
}

#[test]
fn the_dockerfile_builds_one_binary_into_a_small_non_root_image() {
    let all = instructions(&read(DOCKERFILE));
    let get = |kw: &str| -> Vec<&str> {
        all.iter()
            .filter(|(k, _)| k == kw)
            .map(|(_, r)| r.as_str())
            .collect()
    };
    let froms = get("FROM");
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let last_from = all.iter().rposition(|(k, _)| k == "FROM").unwrap();
    let runtime = &all[last_from..];
    let args = get("ARG");
    for want in ["PACKAGE=runner", "BIN=runner"] {
        assert!(args.contains(&want), "ARG {want}: {args:?}");
    }
    let build = get("RUN")
        .into_iter()
        .find(|r| r.contains("cargo build"))
        .expect("a cargo build");
    for want in [
        "--release",
        "--locked",
        "-p \"${PACKAGE}\"",
        "--bin \"${BIN}\"",
    ] {
        assert!(build.contains(want), "cargo build {want}: {build}");
    }
    let user = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, r)| r.as_str())
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid != "root" && uid != "0",
        "runs as a non-root user: {user}"
    );
    let health = get("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    let cmd = health[0].split_once("CMD ").expect("HEALTHCHECK … CMD").1;
    assert_eq!(exec_form(cmd), ["/usr/local/bin/runner", "healthcheck"]);
    for (k, r) in runtime {
        assert!(
            !(k == "RUN" && (r.contains("curl") || r.contains("wget"))),
            "no curl or wget in the runtime image: {r}"
        );
    }
    assert_eq!(exec_form(get("ENTRYPOINT")[0]), ["/usr/local/bin/runner"]);
    assert_eq!(exec_form(get("CMD")[0]), ["run"]);
    assert_eq!(get("STOPSIGNAL"), ["SIGTERM"]);
    assert!(get("EXPOSE").contains(&"9090"));
    assert!(get("VOLUME").iter().any(|v| v.contains("/data")));
    assert!(get("ENV")
        .iter()
        .any(|e| e.contains("RUNNER_CONFIG=/etc/runner/runner.toml")));
    let copies = get("COPY");
    for want in [
        "manifests/example /etc/runner/manifests",
        "docker/runner.toml /etc/runner/runner.toml",
    ] {
        assert!(copies.iter().any(|c| c.ends_with(want)), "COPY {want}");
    }
    let ignore = read("docker/Dockerfile.rust.dockerignore");
    for want in ["target", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim() == want),
            "{want} stays out of the build context"
        );
    }

    // The baked settings load as they are, with the store on the volume and the ops
    // port on the exposed port.
    let settings = Settings::load(Some(&root().join("docker/runner.toml")), Vec::new()).unwrap();
    assert!(settings.storage.path.starts_with("/data"));
    assert!(settings.ops.listen.ends_with(":9090"));
    for manifest in settings
        .manifests
        .sagas
        .iter()
        .chain(&settings.manifests.effects)
    {
        assert!(
            manifest.starts_with("/etc/runner/manifests"),
            "{manifest:?}"
        );
    }

    // The release profile the image is built with.
    let cargo: toml::Table = read("Cargo.toml").parse().unwrap();
    let release = &cargo["profile"]["release"];
    assert!(
        matches!(release.get("lto"), Some(toml::Value::String(s)) if s == "fat")
            || release.get("lto") == Some(&toml::Value::Boolean(true)),
        "LTO: {release:?}"
    );
    assert_eq!(release["codegen-units"].as_integer(), Some(1));
    assert!(
        release.get("strip") == Some(&toml::Value::Boolean(true))
            || release.get("strip").and_then(|s| s.as_str()) == Some("symbols"),
        "stripped: {release:?}"
    );
}

fn healthcheck(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("healthcheck")
        .args(args)
        .env_remove("RUNNER_CONFIG")
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn healthcheck_passes_against_a_running_runner() {
    let mut rig = Rig::new(recorder_saga());
    let port = free_port();
    // A wildcard address, as in the image: the healthcheck asks the loopback.
    rig.settings.ops.listen = format!("0.0.0.0:{port}");
    let config = config_file(&rig);
    let _runner = RunnerProcess::start(&config, None);
    let url = format!("http://127.0.0.1:{port}/health");
    assert!(
        wait_until(WAIT, || healthcheck(&["--url", &url], &[]).status.success()),
        "the runner became healthy: {}",
        text(&healthcheck(&["--url", &url], &[]).stderr)
    );
    let out = healthcheck(&["--url", &url], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("healthy"),
        "{}",
        text(&out.stdout)
    );
    // The URL from the settings' ops.listen: --config, or RUNNER_CONFIG as in the image.
    let by_flag = healthcheck(&["--config", config.to_str().unwrap()], &[]);
    assert_eq!(by_flag.status.code(), Some(0), "{}", text(&by_flag.stderr));
    assert!(text(&by_flag.stdout).contains(&format!("127.0.0.1:{port}/health")));
    let by_env = healthcheck(&[], &[("RUNNER_CONFIG", &config)]);
    assert_eq!(by_env.status.code(), Some(0), "{}", text(&by_env.stderr));
}

#[test]
fn healthcheck_fails_with_one_line_saying_why() {
    // Nothing listens.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/health");
    let out = healthcheck(&["--url", &url], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("unhealthy") && err.contains(&port.to_string()),
        "{err}"
    );

    // An unhealthy Runner: 503 and its checks.
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    let answer = std::thread::spawn(move || {
        let request = server
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap();
        let body = "{\"healthy\": false,\n \"storage\": \"ok\", \"nats\": \"unreachable\"}";
        request
            .respond(tiny_http::Response::from_string(body).with_status_code(503))
            .unwrap();
    });
    let out = healthcheck(&["--url", &format!("http://{addr}/health")], &[]);
    answer.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("503") && err.contains("unreachable"), "{err}");

    // A port that accepts but never answers: the 2 s timeout, not a hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", silent.local_addr().unwrap());
    let started = Instant::now();
    let out = healthcheck(&["--url", &url], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "timed out in {:?}",
        started.elapsed()
    );
    assert!(text(&out.stderr).contains("unhealthy"));

    // The settings turn the ops port off: nothing to ask.
    let dir = TempDir::new("hc").unwrap();
    let config = dir.path().join("off.toml");
    std::fs::write(&config, "[ops]\nlisten = \"\"\n").unwrap();
    let out = healthcheck(&["--config", config.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("ops.listen"));
}
