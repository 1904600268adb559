//! The shipped Swarm stack as Swarm runs it (issue 21): `swarm/stacks/platform.yml` is
//! read the way `docker stack deploy` reads it (YAML merge keys, `${VAR:-default}`
//! interpolation, configs mapped to their files, secrets under `/run/secrets`, the
//! image's own files and `ENV` from docker/Dockerfile.rust), and every Runner service's
//! settings are loaded from exactly what its container sees: its runner.toml plus its
//! environment. The first test asserts what a production deployment needs; the second
//! runs those settings — hosts mapped to loopback, secret and volume paths to temp
//! dirs, nothing else changed — against a 3-node JetStream cluster that runs the
//! stack's own `swarm/configs/nats.conf` (accounts and permissions, TLS on clients and
//! routes) with secrets docker/nats-secrets.sh makes, and a stand-in Gateway: the
//! example order completes end to end, and no node logs a permissions violation.
//!
//! No docker CLI or engine is needed (tests/containers.rs checks the stack with the
//! real `docker stack config`).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::ops::call;
use common::shipped::{make_nats_secrets, nats_client, root, str_list};
use common::{free_port, wait_until, RunnerProcess};
use runner::dev::{FakeGateway, NatsCluster, NodeSetup, Reply, TempDir};
use runner::settings::Settings;
use serde_json::{json, Map, Value};

const STACK: &str = "swarm/stacks/platform.yml";
const DOCKERFILE: &str = "docker/Dockerfile.rust";
/// The image's HEALTHCHECK command: how a Runner service is recognised in the stack.
const RUNNER_HEALTHCHECK: [&str; 3] = ["CMD", "/usr/local/bin/runner", "healthcheck"];
/// Where Swarm mounts secrets.
const SECRETS: &str = "/run/secrets";
/// The admin token the test gives the stack's `runner_admin_token` secret.
const ADMIN_TOKEN: &str = "stack-test-admin-token";
/// Generous: six processes share two cores with other builds.
const WAIT: Duration = Duration::from_secs(90);

// ------------------------------------------------------------- the stack as Swarm reads it

/// The stack file parsed, merge keys applied, every string interpolated from `vars`
/// (the deploying shell's variables; none here, so the defaults are what is checked).
struct Stack {
    doc: Value,
    /// The stack file's directory: `configs.*.file` is relative to it.
    dir: PathBuf,
    image: Image,
}

/// What the image itself puts into every container (docker/Dockerfile.rust): its
/// `ENV` variables and the files its `COPY` lines place.
struct Image {
    env: BTreeMap<String, String>,
    /// Container path → repository path (a file or a directory).
    files: Vec<(String, PathBuf)>,
}

impl Stack {
    fn load() -> Stack {
        let path = root().join(STACK);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut doc: Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{STACK} does not parse: {e}"));
        apply_merge_keys(&mut doc);
        interpolate_tree(&mut doc, &BTreeMap::new());
        Stack {
            doc,
            dir: path.parent().unwrap().to_path_buf(),
            image: Image::load(),
        }
    }

    fn services(&self) -> &Map<String, Value> {
        self.doc["services"].as_object().expect("services")
    }

    /// The Runner services (their healthcheck is the image's), with their definition.
    fn runners(&self) -> Vec<(String, Service<'_>)> {
        self.services()
            .iter()
            .filter(|(_, s)| str_list(&s["healthcheck"]["test"]) == RUNNER_HEALTHCHECK)
            .map(|(name, def)| (name.clone(), Service { stack: self, def }))
            .collect()
    }

    /// The NATS services (image `nats:*`), by name: node i of a test cluster stands in
    /// for the i-th.
    fn nats_nodes(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .services()
            .iter()
            .filter(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with("nats:")))
            .map(|(n, s)| {
                assert_eq!(
                    replicas(s),
                    1,
                    "{n}: one task per NATS node (each has its own volume and name)"
                );
                n.clone()
            })
            .collect();
        names.sort();
        names
    }
}

impl Image {
    fn load() -> Image {
        let text = std::fs::read_to_string(root().join(DOCKERFILE)).unwrap();
        // Continuation lines joined: one instruction per line.
        let joined = text.replace("\\\n", " ");
        let mut env = BTreeMap::new();
        let mut files = Vec::new();
        for line in joined.lines().map(str::trim) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first().copied() {
                // What the container gets is the last stage's.
                Some("FROM") => {
                    env.clear();
                    files.clear();
                }
                Some("ENV") => {
                    for pair in &words[1..] {
                        let (k, v) = pair.split_once('=').expect("ENV KEY=VALUE");
                        env.insert(k.to_string(), v.to_string());
                    }
                }
                // COPY from the build context (not from the builder stage).
                Some("COPY") if !words.iter().any(|w| w.starts_with("--")) => {
                    let [_, src, dst] = words.as_slice() else {
                        panic!("{DOCKERFILE}: unexpected {line:?}");
                    };
                    files.push((dst.to_string(), root().join(src)));
                }
                _ => {}
            }
        }
        assert!(
            env.contains_key("RUNNER_CONFIG"),
            "{DOCKERFILE} sets RUNNER_CONFIG"
        );
        Image { env, files }
    }
}

/// One Runner service of the stack.
struct Service<'a> {
    stack: &'a Stack,
    def: &'a Value,
}

impl Service<'_> {
    /// The environment its container gets: the image's `ENV`, then the service's own.
    fn env(&self) -> BTreeMap<String, String> {
        let mut env = self.stack.image.env.clone();
        match &self.def["environment"] {
            Value::Object(m) => {
                for (k, v) in m {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    env.insert(k.clone(), v);
                }
            }
            Value::Array(list) => {
                for item in list {
                    let (k, v) = item.as_str().unwrap().split_once('=').unwrap();
                    env.insert(k.to_string(), v.to_string());
                }
            }
            Value::Null => {}
            other => panic!("environment {other}"),
        }
        env
    }

    /// The file the container sees at `path`, on this machine: a Swarm config mounted
    /// there, else what the image copied there. `None`: nothing provides it.
    fn host_file(&self, path: &str) -> Option<PathBuf> {
        for mount in self.def["configs"].as_array().into_iter().flatten() {
            let (source, target) = match mount {
                Value::String(s) => (s.as_str(), format!("/{s}")),
                m => (
                    m["source"].as_str().unwrap(),
                    m["target"].as_str().unwrap().to_string(),
                ),
            };
            if target == path {
                let file = self.stack.doc["configs"][source]["file"]
                    .as_str()
                    .unwrap_or_else(|| panic!("config {source} has no file"));
                return Some(self.stack.dir.join(file));
            }
        }
        self.stack.image.files.iter().find_map(|(dst, src)| {
            let rest = path.strip_prefix(dst.as_str())?;
            match rest {
                "" => Some(src.clone()),
                r if r.starts_with('/') => Some(src.join(&r[1..])),
                _ => None,
            }
        })
    }

    /// The names of the secrets mounted under /run/secrets.
    fn secrets(&self) -> Vec<String> {
        self.def["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let target = match s {
                    Value::String(name) => name.as_str(),
                    m => m["target"].as_str().or(m["source"].as_str()).unwrap(),
                };
                target
                    .strip_prefix(&format!("{SECRETS}/"))
                    .unwrap_or(target)
                    .to_string()
            })
            .collect()
    }

    /// The file mode the stack gives the secret mounted as `name`: Docker's 0444 unless
    /// the long syntax says `mode` (octal, as Docker reads `0400`).
    fn secret_mode(&self, name: &str) -> u32 {
        let entry = self.def["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| {
                let target = match s {
                    Value::String(n) => n.as_str(),
                    m => m["target"].as_str().or(m["source"].as_str()).unwrap(),
                };
                target
                    .strip_prefix(&format!("{SECRETS}/"))
                    .unwrap_or(target)
                    == name
            });
        match entry.map(|e| &e["mode"]) {
            Some(Value::String(octal)) => {
                let digits = octal.strip_prefix("0o").unwrap_or(octal);
                u32::from_str_radix(digits, 8)
                    .unwrap_or_else(|_| panic!("secret {name}: mode {octal:?} is not octal"))
            }
            // YAML 1.2 reads `0400` as the number 400; Docker (YAML 1.1) as octal.
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.fract() == 0.0)
                .and_then(|f| u32::from_str_radix(&(f as u64).to_string(), 8).ok())
                .unwrap_or_else(|| panic!("secret {name}: mode {n} is not octal")),
            _ => 0o444,
        }
    }

    /// Mount points of named volumes (`name:/path[:mode]` or the long syntax).
    fn volume_targets(&self) -> Vec<String> {
        self.def["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| match v {
                Value::String(s) => {
                    let mut parts = s.split(':');
                    let source = parts.next()?;
                    let target = parts.next()?;
                    let named = !source.starts_with('/') && !source.starts_with('.');
                    named.then(|| target.to_string())
                }
                m => (m["type"] == "volume").then(|| m["target"].as_str().unwrap().to_string()),
            })
            .collect()
    }

    /// Its settings, loaded from what its container sees: `RUNNER_CONFIG`'s file and
    /// the environment.
    fn settings(&self) -> Settings {
        let env = self.env();
        let config = &env["RUNNER_CONFIG"];
        let file = self
            .host_file(config)
            .unwrap_or_else(|| panic!("nothing provides RUNNER_CONFIG {config}"));
        Settings::load(Some(&file), env.clone())
            .unwrap_or_else(|e| panic!("settings of {} with {env:?}: {e}", file.display()))
    }
}

fn replicas(service: &Value) -> u64 {
    service["deploy"]["replicas"].as_u64().unwrap_or(1)
}

/// YAML merge keys (`<<: *anchor`, or a list of them): the mapping's own keys win.
fn apply_merge_keys(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(merged) = map.remove("<<") {
                let sources = match merged {
                    Value::Array(list) => list,
                    one => vec![one],
                };
                for source in sources {
                    let Value::Object(source) = source else {
                        panic!("<< merges a mapping");
                    };
                    for (k, val) in source {
                        map.entry(k).or_insert(val);
                    }
                }
            }
            map.values_mut().for_each(apply_merge_keys);
        }
        Value::Array(list) => list.iter_mut().for_each(apply_merge_keys),
        _ => {}
    }
}

fn interpolate_tree(v: &mut Value, vars: &BTreeMap<String, String>) {
    match v {
        Value::String(s) => *s = interpolate(s, vars),
        Value::Object(map) => map.values_mut().for_each(|v| interpolate_tree(v, vars)),
        Value::Array(list) => list.iter_mut().for_each(|v| interpolate_tree(v, vars)),
        _ => {}
    }
}

/// Compose-file interpolation as `docker stack deploy` does it: `$$` is a `$`; `$VAR`
/// and `${VAR}`; `${VAR:-default}` (unset or empty), `${VAR-default}` (unset);
/// `${VAR:?message}` / `${VAR?message}` refuse to deploy.
fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            let end = braced
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {text:?}"));
            let expr = &braced[..end];
            rest = &braced[end + 1..];
            let name_len = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_len);
            let value = vars.get(name);
            let set = value.is_some();
            let non_empty = value.is_some_and(|v| !v.is_empty());
            let value = value.cloned().unwrap_or_default();
            let resolved = if op.is_empty() {
                value
            } else if let Some(default) = op.strip_prefix(":-") {
                if non_empty {
                    value
                } else {
                    interpolate(default, vars)
                }
            } else if let Some(default) = op.strip_prefix('-') {
                if set {
                    value
                } else {
                    interpolate(default, vars)
                }
            } else if let Some(message) = op.strip_prefix(":?") {
                assert!(non_empty, "${{{name}}} is required: {message}");
                value
            } else if let Some(message) = op.strip_prefix('?') {
                assert!(set, "${{{name}}} is required: {message}");
                value
            } else {
                panic!("unsupported interpolation ${{{expr}}} in {text:?}");
            };
            out.push_str(&resolved);
        } else {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(vars.get(&rest[..len]).map(String::as_str).unwrap_or(""));
            }
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn interpolation_follows_docker_stack_deploy() {
    let vars: BTreeMap<String, String> = [
        ("SET".to_string(), "v".to_string()),
        ("EMPTY".to_string(), String::new()),
    ]
    .into();
    for (text, want) in [
        ("${SET:-d}", "v"),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("a-${SET}-$SET-$$SET", "a-v-v-$SET"),
        ("runner-toml-${CONFIG_VERSION:-1}", "runner-toml-1"),
        ("{{.Task.Slot}}", "{{.Task.Slot}}"),
    ] {
        assert_eq!(interpolate(text, &vars), want, "{text}");
    }
}

/// The hosts a URL list names (`nats://a:4222,nats://b:4222`, `http://gateway:8080`).
fn url_hosts(urls: &str) -> Vec<String> {
    urls.split(',')
        .filter_map(|u| {
            let rest = u.trim().split_once("://")?.1;
            let authority = rest.split('/').next()?;
            let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
            let host = match authority.rsplit_once(':') {
                Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
                _ => authority,
            };
            Some(host.trim_matches(['[', ']']).to_string())
        })
        .collect()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

// ------------------------------------------------------------------ what production needs

#[test]
fn every_runner_service_of_the_stack_is_production_ready() {
    let stack = Stack::load();
    let nats_nodes = stack.nats_nodes();
    assert!(
        nats_nodes.len() >= 3,
        "the stack ships a JetStream cluster: {nats_nodes:?}"
    );
    let runners = stack.runners();
    assert!(runners.len() >= 3, "Runner services: {}", runners.len());
    for (name, service) in &runners {
        let settings = service.settings();
        // The Gateway: in a container, loopback is the container itself.
        let gateway = url_hosts(&settings.relay.gateway_url);
        assert!(
            gateway.len() == 1 && !is_loopback(&gateway[0]),
            "{name}: relay.gateway_url {:?} must name the Gateway's service, not the container's own loopback",
            settings.relay.gateway_url
        );
        // Every NATS node of the stack, and nothing else.
        let mut hosts = url_hosts(&settings.nats.url);
        hosts.sort();
        assert_eq!(
            hosts, nats_nodes,
            "{name}: nats.url lists the stack's NATS nodes"
        );
        // Streams and buckets the Runner creates survive a node's loss.
        assert_eq!(
            settings.streams.replicas,
            nats_nodes.len(),
            "{name}: streams.replicas (streams and KV buckets the Runner creates) must match the {} NATS nodes",
            nats_nodes.len()
        );
        // The admin endpoints are open only with a token, read from a mounted secret.
        let token = &settings.ops.admin_token_file;
        assert!(
            token.starts_with(SECRETS),
            "{name}: ops.admin_token_file {token:?} is a Swarm secret under {SECRETS}"
        );
        let token_name = token.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            service.secrets().contains(&token_name),
            "{name}: mounts the secret {token_name} that ops.admin_token_file names"
        );
        // The Runner refuses a token file others may read (Docker mounts 0444 unless
        // told otherwise).
        let mode = service.secret_mode(&token_name);
        assert_eq!(
            mode & 0o077,
            0,
            "{name}: the secret {token_name} is mounted with mode {mode:o}; the Runner refuses it: give it mode 0400"
        );
        // NATS credentials and the CA, each a mounted secret, are checked on `docker
        // stack config`'s output by tests/containers.rs (assert_runner_service); the
        // e2e test below runs them against the stack's own nats.conf.
        // The store on the service's volume, not in the container's writable layer.
        let store = &settings.storage.path;
        assert!(
            service
                .volume_targets()
                .iter()
                .any(|t| store.starts_with(t)),
            "{name}: storage.path {store:?} is on a named volume ({:?})",
            service.volume_targets()
        );
        // The manifests the settings name exist in the container.
        for file in settings
            .manifests
            .sagas
            .iter()
            .chain(&settings.manifests.effects)
        {
            let path = file.to_str().unwrap();
            let host = service
                .host_file(path)
                .unwrap_or_else(|| panic!("{name}: nothing provides {path}"));
            assert!(host.is_file(), "{name}: {path} ({}) exists", host.display());
        }
    }
}

// ------------------------------------------------------------- the stack's settings, run

/// Where a container's world lives on this machine: its secrets, volumes, files, and
/// the hosts of the overlay network as loopback addresses.
struct Mapping {
    dir: TempDir,
    /// `host:port` as the stack names it → `127.0.0.1:port` of its stand-in.
    hosts: BTreeMap<String, String>,
    /// What each secret file holds. Secrets that must hold something real go here or
    /// in `secret_files`; others get a stand-in value.
    secret_values: BTreeMap<String, String>,
    /// A directory of secret files named like their secrets (docker/nats-secrets.sh
    /// output): a secret of that name is this file.
    secret_files: PathBuf,
}

impl Mapping {
    fn host_port(url: &str) -> String {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        rest.split('/').next().unwrap().to_string()
    }

    /// Replaces every mapped `host:port`; loopback (the container itself, which has
    /// nothing but the ops port) becomes a closed port here.
    fn rewrite_hosts(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (from, to) in &self.hosts {
            text = text.replace(&format!("://{from}"), &format!("://{to}"));
        }
        let stand_ins: Vec<&String> = self.hosts.values().collect();
        let mut from = 0;
        while let Some(at) = text[from..].find("://").map(|i| from + i + 3) {
            let end = text[at..]
                .find(|c: char| c == '/' || c == '"' || c == '\'' || c.is_whitespace() || c == ',')
                .map_or(text.len(), |e| at + e);
            let authority = text[at..end].to_string();
            let host = authority
                .rsplit_once(':')
                .map_or(authority.as_str(), |(h, _)| h);
            if is_loopback(host) && !stand_ins.contains(&&authority) {
                let closed = format!("127.0.0.1:{}", closed_port());
                text.replace_range(at..end, &closed);
                from = at + closed.len();
            } else {
                from = end;
            }
        }
        text
    }

    /// The settings of `service` as its container would run them here.
    fn settings_for(&self, name: &str, service: &Service) -> Settings {
        let own = self.dir.path().join(name);
        let secrets = own.join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        for secret in service.secrets() {
            let file = self.secret_files.join(&secret);
            let value = match self.secret_values.get(&secret) {
                Some(value) => value.clone().into_bytes(),
                None if file.is_file() => std::fs::read(&file).unwrap(),
                None => format!("stand-in-{secret}").into_bytes(),
            };
            // Mounted as the stack says (the Runner refuses an admin token file
            // others may read).
            let path = secrets.join(&secret);
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, value).unwrap();
            let mode = service.secret_mode(&secret);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let volumes = service.volume_targets();
        let original = service.settings();
        let mut tree = serde_json::to_value(&original).unwrap();
        self.rewrite_tree(&mut tree, &own, &secrets, &volumes, service);
        // The URLs now name loopback addresses; over TLS the Runner still checks the
        // server's certificate for the host it names in the stack (as if an /etc/hosts
        // mapped that name), unless the stack names one itself.
        let nats = &original.nats;
        if !nats.tls_ca_file.as_os_str().is_empty() && nats.tls_server_name.is_empty() {
            let host = url_hosts(&nats.url).into_iter().next().unwrap();
            tree["nats"]["tls_server_name"] = Value::String(host);
        }
        let settings: Settings = serde_json::from_value(tree.clone()).unwrap();
        settings.validate().unwrap();
        // Nothing may still name a host of the overlay network.
        for url in urls_in(&tree) {
            for host in url_hosts(&url) {
                assert!(
                    host == "127.0.0.1",
                    "{name}: {url} is not mapped to a stand-in"
                );
            }
        }
        settings
    }

    fn rewrite_tree(
        &self,
        v: &mut Value,
        own: &Path,
        secrets: &Path,
        volumes: &[String],
        service: &Service,
    ) {
        match v {
            Value::String(s) => *s = self.rewrite_string(s, own, secrets, volumes, service),
            Value::Object(map) => map
                .values_mut()
                .for_each(|v| self.rewrite_tree(v, own, secrets, volumes, service)),
            Value::Array(list) => list
                .iter_mut()
                .for_each(|v| self.rewrite_tree(v, own, secrets, volumes, service)),
            _ => {}
        }
    }

    fn rewrite_string(
        &self,
        s: &str,
        own: &Path,
        secrets: &Path,
        volumes: &[String],
        service: &Service,
    ) -> String {
        if let Some(rest) = s.strip_prefix(SECRETS) {
            return format!("{}{rest}", secrets.display());
        }
        for target in volumes {
            if let Some(rest) = s.strip_prefix(target.as_str()) {
                if rest.is_empty() || rest.starts_with('/') {
                    let volume = own.join("volumes").join(target.trim_start_matches('/'));
                    std::fs::create_dir_all(&volume).unwrap();
                    return format!("{}{rest}", volume.display());
                }
            }
        }
        if s.starts_with('/') {
            if let Some(file) = service.host_file(s) {
                // A file naming hosts (an effect manifest's provider URL) is copied with
                // them mapped; others are used where they are (relative paths inside
                // them keep working).
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                let mapped = self.rewrite_hosts(&text);
                if mapped == text {
                    return file.display().to_string();
                }
                for host in urls_in_text(&mapped).iter().flat_map(|u| url_hosts(u)) {
                    assert!(
                        host == "127.0.0.1",
                        "{s} names {host}: map it to a stand-in"
                    );
                }
                let copy = own.join("files").join(s.trim_start_matches('/'));
                std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
                std::fs::write(&copy, mapped).unwrap();
                return copy.display().to_string();
            }
        }
        // A wildcard listen address: each container has its own network namespace,
        // here they share one, so each gets a free loopback port.
        if let Some(port) = s.strip_prefix("0.0.0.0:") {
            if port.parse::<u16>().is_ok() {
                return format!("127.0.0.1:{}", free_port());
            }
        }
        self.rewrite_hosts(s)
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    free_port()
}

fn urls_in(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) if s.contains("://") => vec![s.clone()],
        Value::Object(m) => m.values().flat_map(urls_in).collect(),
        Value::Array(l) => l.iter().flat_map(urls_in).collect(),
        _ => vec![],
    }
}

fn urls_in_text(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .filter(|w| w.contains("://"))
        .map(str::to_string)
        .collect()
}

// ------------------------------------------------------------- the stack's NATS, run

/// A NATS node service of the stack as its container runs it.
struct NatsNode {
    /// The service name: the host the Runners and the routes name.
    host: String,
    /// `--name` of its command.
    server_name: String,
    /// `-c` of its command (a container path) and the file a config mounts there.
    config_path: String,
    config_file: PathBuf,
    volumes: Vec<String>,
    secrets: Vec<String>,
}

impl Stack {
    fn nats_node(&self, host: &str) -> NatsNode {
        let service = Service {
            stack: self,
            def: &self.services()[host],
        };
        let command = str_list(&service.def["command"]);
        let arg = |flags: &[&str]| {
            command
                .windows(2)
                .find(|w| flags.contains(&w[0].as_str()))
                .map(|w| w[1].clone())
                .unwrap_or_else(|| panic!("{host}: {flags:?} in its command {command:?}"))
        };
        let config_path = arg(&["-c", "--config"]);
        let config_file = service
            .host_file(&config_path)
            .unwrap_or_else(|| panic!("{host}: nothing provides {config_path}"));
        NatsNode {
            host: host.to_string(),
            server_name: arg(&["-n", "--name", "--server_name"]),
            config_path,
            config_file,
            volumes: service.volume_targets(),
            secrets: service.secrets(),
        }
    }
}

/// `text` with every `://HOST:PORT` of `host` replaced by `://TO`.
fn replace_host_port(text: &str, host: &str, to: &str) -> String {
    let needle = format!("://{host}:");
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        out.push_str(&rest[..at]);
        out.push_str("://");
        out.push_str(to);
        rest = &rest[at + needle.len()..];
        rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// The `store_dir` of `text`, on one of `volumes`, moved to `store`.
fn map_store_dir(text: &str, volumes: &[String], store: &Path) -> String {
    let mut found = false;
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        match trimmed.strip_prefix("store_dir:") {
            Some(value) => {
                let value = value.split('#').next().unwrap().trim().trim_matches('"');
                let volume = volumes
                    .iter()
                    .find(|v| value == v.as_str() || value.starts_with(&format!("{v}/")))
                    .unwrap_or_else(|| {
                        panic!("store_dir {value} is on the node's volume ({volumes:?})")
                    });
                let indent = &line[..line.len() - trimmed.len()];
                let rest = &value[volume.len()..];
                out.push_str(&format!(
                    "{indent}store_dir: \"{}{rest}\"\n",
                    store.display()
                ));
                found = true;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert!(found, "the NATS config sets jetstream.store_dir");
    out
}

/// A 3-node cluster running the stack's own NATS config: each node gets the file its
/// service mounts, with `/run/secrets` mapped to `root/run/secrets` (the generated
/// secrets; the relative `include` reaches them from `root/etc/nats/` as it does from
/// `/etc/nats/`), the store on the node's volume mapped to its temp dir, and the
/// routes' hosts mapped to the nodes' loopback route ports. The cluster's own probe
/// connects as `probe_user`.
fn start_stack_nats(nodes: &[NatsNode], root: &Path, probe_user: &str) -> NatsCluster {
    let secrets = root.join("run/secrets");
    let hosts: Vec<String> = nodes.iter().map(|n| n.host.clone()).collect();
    let volumes: Vec<Vec<String>> = nodes.iter().map(|n| n.volumes.clone()).collect();
    let configs: Vec<(PathBuf, String)> = nodes
        .iter()
        .map(|n| {
            let container = Path::new(&n.config_path);
            let dir = root.join(container.parent().unwrap().strip_prefix("/").unwrap());
            std::fs::create_dir_all(&dir).unwrap();
            let text = std::fs::read_to_string(&n.config_file).unwrap();
            (dir.join(format!("{}.conf", n.host)), text)
        })
        .collect();
    let node_secrets = secrets.clone();
    let node_config = move |node: &NodeSetup| -> std::io::Result<PathBuf> {
        let (path, shipped) = &configs[node.index];
        let mapped = format!("\"{}/", node_secrets.display());
        let mut text = shipped.replace(&format!("\"{SECRETS}/"), &mapped);
        let rest = text
            .replace(&mapped, "")
            .replace(&format!("\"../..{SECRETS}/"), "");
        let unmapped = rest
            .lines()
            .map(|l| l.split('#').next().unwrap())
            .find(|l| l.contains(SECRETS));
        assert!(
            unmapped.is_none(),
            "every {SECRETS} path of the NATS config is mapped: {unmapped:?}"
        );
        text = map_store_dir(&text, &volumes[node.index], &node.store_dir);
        for (host, (_, port)) in hosts.iter().zip(&node.routes) {
            text = replace_host_port(&text, host, &format!("127.0.0.1:{port}"));
        }
        for host in &hosts {
            assert!(
                !text.contains(&format!("://{host}")),
                "{host} is mapped everywhere in the NATS config"
            );
        }
        std::fs::write(path, text)?;
        Ok(path.clone())
    };
    let user = probe_user.to_string();
    let names: Vec<&str> = nodes.iter().map(|n| n.server_name.as_str()).collect();
    NatsCluster::start_configured(
        &names,
        Box::new(node_config),
        Box::new(move || nats_client(&secrets, &user)),
    )
    .expect("start the stack's NATS cluster")
}

fn order_placed(tenant: &str, order: &str) -> Value {
    json!({
        "event_id": format!("evt-{order}-placed"), "tenant_id": tenant,
        "aggregate_type": "order", "aggregate_id": order, "event_type": "OrderPlaced",
        "version": 1, "occurred_at": runner::timefmt::now_rfc3339(),
        "payload": {"total": 4200, "currency": "EUR", "customer_id": format!("cust-{order}")},
        "metadata": {"correlation_id": format!("req-{order}"),
                     "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    })
}

#[test]
fn the_stacks_own_settings_complete_an_order_on_a_three_node_cluster() {
    let stack = Stack::load();
    let nats_nodes = stack.nats_nodes();
    let nodes: Vec<NatsNode> = nats_nodes.iter().map(|n| stack.nats_node(n)).collect();
    // The deployment's secrets as swarm/README.md makes them (the server certificate
    // names nats-1..3), plus 127.0.0.1: the nodes' routes dial their mapped addresses
    // and check the certificate against them.
    let world = TempDir::new("swarm-stack-nats").unwrap();
    let secrets = world.path().join("run/secrets");
    let mut names: Vec<&str> = nats_nodes.iter().map(String::as_str).collect();
    names.push("127.0.0.1");
    make_nats_secrets(&secrets, &names);
    for node in &nodes {
        for secret in &node.secrets {
            assert!(
                secrets.join(secret).is_file(),
                "{}: docker/nats-secrets.sh makes the secret {secret}",
                node.host
            );
        }
    }
    let cluster = start_stack_nats(&nodes, world.path(), "aggregate");
    // The stand-ins: the platform's Gateway (accepts every command) and the payment
    // provider of swarm/configs/effects.yaml.
    let gateway = FakeGateway::accepting().unwrap();
    let payments = FakeGateway::start(|req, _| Reply {
        body: format!(
            r#"{{"payment_id": "pay-{}"}}"#,
            req.body["order_id"].as_str().unwrap_or("?")
        ),
        ..Reply::status(201)
    })
    .unwrap();
    let mut hosts: BTreeMap<String, String> = nats_nodes
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (
                format!("{name}:4222"),
                Mapping::host_port(&cluster.node_url(i)),
            )
        })
        .collect();
    hosts.insert("gateway:8080".into(), Mapping::host_port(gateway.url()));
    hosts.insert("payments:8080".into(), Mapping::host_port(payments.url()));
    let mapping = Mapping {
        dir: TempDir::new("swarm-stack").unwrap(),
        hosts,
        secret_values: [
            ("runner_admin_token".to_string(), format!("{ADMIN_TOKEN}\n")),
            (
                "payments_token".to_string(),
                "Bearer pay-secret".to_string(),
            ),
        ]
        .into(),
        secret_files: secrets.clone(),
    };

    // AGGREGATE_EVENTS belongs to the Aggregate side (the stack sets
    // create_aggregate_stream = false): its user creates it as it would, on every node,
    // and publishes the events.
    let runners = stack.runners();
    let any = runners[0].1.settings();
    let aggregate = nats_client(&secrets, "aggregate")
        .connect(cluster.url())
        .expect("connect as the aggregate user");
    let js = nats::jetstream::new(aggregate.clone());
    js.add_stream(nats::jetstream::StreamConfig {
        name: any.streams.aggregate_events.clone(),
        subjects: vec!["aggregate.>".into()],
        num_replicas: nats_nodes.len(),
        ..Default::default()
    })
    .unwrap();

    // One task of every service the stack deploys (runner-combined ships at 0).
    let mut processes = Vec::new();
    let mut ops = BTreeMap::new();
    for (name, service) in &runners {
        if replicas(service.def) == 0 {
            continue;
        }
        let settings = mapping.settings_for(name, service);
        for file in [
            &settings.nats.password_file,
            &settings.nats.tls_ca_file,
            &settings.nats.tls_cert_file,
            &settings.nats.tls_key_file,
        ] {
            let secret = file.file_name().unwrap();
            assert!(
                secrets.join(secret).is_file(),
                "{name}: {file:?} is a secret docker/nats-secrets.sh makes"
            );
        }
        let config = mapping.dir.path().join(name).join("runner.json");
        std::fs::write(&config, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
        let log = mapping.dir.path().join(format!("{name}.log"));
        eprintln!("{name}: {} (log {})", config.display(), log.display());
        processes.push((
            name.clone(),
            log.clone(),
            RunnerProcess::start_logged(&config, None, &log),
        ));
        ops.insert(
            name.clone(),
            (format!("http://{}", settings.ops.listen), settings),
        );
    }
    let logs = || {
        processes
            .iter()
            .map(|(n, log, _)| {
                format!(
                    "--- {n}\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (name, (base, _)) in &ops {
        let ready = wait_until(WAIT, || {
            std::thread::sleep(Duration::from_millis(200));
            ureq::get(&format!("{base}/ready")).call().is_ok()
        });
        let hint = if logs().contains("10093") {
            "\n(the saga shards' per-tenant filters need nats-server >= 2.10, as the stack runs: \
             set RUNNER_NATS_SERVER_BIN, e.g. to the output of .ci/ensure-nats-server)"
        } else {
            ""
        };
        assert!(ready, "{name} never became ready:\n{}{hint}", logs());
    }

    // An order for each shard's tenant.
    let tenants: Vec<(String, String)> = ops
        .iter()
        .filter(|(_, (_, s))| s.mode.runs_sagas())
        .flat_map(|(name, (_, s))| {
            s.tenancy
                .allowed_tenants
                .iter()
                .map(move |t| (name.clone(), t.clone()))
        })
        .collect();
    assert!(
        !tenants.is_empty(),
        "the stack's saga shards name their tenants"
    );
    for (_, tenant) in &tenants {
        let order = format!("o-{tenant}");
        let body = order_placed(tenant, &order).to_string();
        js.publish(
            &format!("aggregate.{tenant}.order.OrderPlaced"),
            body.as_bytes(),
        )
        .unwrap();
    }

    // Each completes: charged once by the effect worker (with the secret's
    // credential), MarkPaid POSTed to the Gateway, the instance completed.
    for (shard, tenant) in &tenants {
        let order = format!("o-{tenant}");
        let (base, _) = &ops[shard];
        let url = format!("{base}/admin/instances/{tenant}/order_fulfilment/{order}");
        let mut last = String::new();
        let completed = wait_until(WAIT, || {
            std::thread::sleep(Duration::from_millis(200));
            let (status, body) = call("GET", &url, Some(ADMIN_TOKEN));
            last = format!("{status} {body}");
            status == 200
                && serde_json::from_str::<Value>(&body).is_ok_and(|v| v["status"] == "completed")
        });
        assert!(
            completed,
            "{order} did not complete on {shard}: {last}\n{}",
            logs()
        );
        let paid = wait_until(WAIT, || {
            std::thread::sleep(Duration::from_millis(100));
            gateway.received().into_iter().any(|c| {
                c.path == "/v1/commands"
                    && c.body["command_type"] == "MarkPaid"
                    && c.body["aggregate_id"] == order.as_str()
            })
        });
        assert!(
            paid,
            "the Gateway received MarkPaid for {order}: {:?}",
            gateway.received()
        );
        let charges: Vec<_> = payments
            .received()
            .into_iter()
            .filter(|c| c.body["order_id"] == order.as_str())
            .collect();
        assert_eq!(charges.len(), 1, "{order} charged once");
        assert_eq!(
            charges[0].header("authorization"),
            Some("Bearer pay-secret")
        );
    }

    // What the Runner created is replicated on every node. Looked at as the runner
    // user: the shipped permissions let it read its own streams' info.
    let runner_user = nats_client(&secrets, &any.nats.user)
        .connect(cluster.url())
        .expect("connect as the runner user");
    let runner_js = nats::jetstream::new(runner_user);
    let s = &any.streams;
    let claims = format!("KV_{}", any.effects.claims_bucket);
    for stream in [&s.workflow_commands, &s.workflow_events, &claims] {
        let info = runner_js.stream_info(stream).unwrap();
        assert_eq!(
            info.config.num_replicas,
            nats_nodes.len(),
            "{stream} has a replica on every NATS node"
        );
    }

    // Everything the Runners did on the cluster (streams and the claims bucket created
    // with replicas, consumers, fetches, acks, claims, publishes) was within the
    // shipped permissions: no node refused anything.
    for i in 0..cluster.size() {
        let log = std::fs::read_to_string(cluster.log_path(i)).unwrap();
        let refused: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("Violation") || l.contains("Authorization Error"))
            .collect();
        assert!(
            refused.is_empty(),
            "{} refused what a client did:\n{}\n{}",
            cluster.node_name(i),
            refused.join("\n"),
            logs()
        );
    }
}
