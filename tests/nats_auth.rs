//! NATS authentication and TLS (issue 21 §6), against a real nats-server running the
//! shipped docker/nats.conf (accounts, per-user permissions, mutual TLS) with secrets
//! that docker/nats-secrets.sh makes, as an operator would: the real `runner` binary
//! works end to end with its user, password file and client certificate, under the
//! shipped permissions; start-up fails at once, saying why, with a wrong password, an
//! untrusted CA, an untrusted client certificate or a certificate that does not name the
//! server; an nkey user connects; and no secret ever reaches the output or the log.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::shipped::{make_nats_secrets, nats_client, root};
use runner::dev::{FakeGateway, NatsServer, TempDir};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A nats-server running the shipped docker/nats.conf: the container's layout under a
/// temp dir (`etc/nats/nats.conf`, `run/secrets/…`), so its relative include works as
/// in the container, and its `/run/secrets/` paths point into the temp dir.
struct Secured {
    server: NatsServer,
    /// The deployment's secrets (docker/nats-secrets.sh, server name `localhost`).
    secrets: PathBuf,
    dir: TempDir,
}

impl Secured {
    fn start() -> Secured {
        let dir = TempDir::new("nats-auth").unwrap();
        let secrets = dir.path().join("run/secrets");
        make_nats_secrets(&secrets, &["localhost"]);
        let etc = dir.path().join("etc/nats");
        std::fs::create_dir_all(&etc).unwrap();
        let shipped = std::fs::read_to_string(root().join("docker/nats.conf")).unwrap();
        let conf = shipped.replace("\"/run/secrets/", &format!("\"{}/", secrets.display()));
        std::fs::write(etc.join("nats.conf"), conf).unwrap();
        let server = NatsServer::start_with_config(&etc.join("nats.conf")).expect("nats-server");
        Secured {
            server,
            secrets,
            dir,
        }
    }

    fn secret(&self, name: &str) -> PathBuf {
        self.secrets.join(name)
    }

    fn password(&self, user: &str) -> String {
        std::fs::read_to_string(self.secret(&format!("{user}_nats_password"))).unwrap()
    }

    /// A client of `user` (its password and client certificate), by host name so that
    /// the server's certificate (for `localhost`) matches.
    fn client(&self, user: &str) -> nats::Connection {
        nats_client(&self.secrets, user)
            .connect(format!("nats://localhost:{}", self.server.port()))
            .expect("connect as the test's client")
    }

    /// The Runner's `[nats]` as the Swarm stack passes it: `RUNNER_NATS_*` variables
    /// naming secret files. The URL names the address, which the certificate does not;
    /// `tls_server_name` says which name to check.
    fn runner_env(&self) -> Vec<(String, String)> {
        let file = |name: &str| self.secret(name).display().to_string();
        vec![
            ("RUNNER_NATS_USER".into(), "runner".into()),
            (
                "RUNNER_NATS_PASSWORD_FILE".into(),
                file("runner_nats_password"),
            ),
            ("RUNNER_NATS_TLS_CA_FILE".into(), file("nats_ca.pem")),
            (
                "RUNNER_NATS_TLS_CERT_FILE".into(),
                file("runner_nats_cert.pem"),
            ),
            (
                "RUNNER_NATS_TLS_KEY_FILE".into(),
                file("runner_nats_key.pem"),
            ),
            ("RUNNER_NATS_TLS_SERVER_NAME".into(), "localhost".into()),
        ]
    }

    /// A settings file for `runner run`: combined mode, the example manifests, the
    /// stream names of production (this server is the test's own), `gateway` as the
    /// Gateway.
    fn config(&self, gateway: &str) -> PathBuf {
        let path = self.dir.path().join("runner.json");
        let settings = json!({
            "mode": "combined",
            "nats": {
                "url": self.server.url(),
                "create_streams": true,
                "create_aggregate_stream": false
            },
            "storage": { "path": self.dir.path().join("store"), "map_size_mib": 256 },
            "ops": { "listen": "127.0.0.1:0" },
            "relay": { "gateway_url": gateway },
            "manifests": { "secrets_dir": self.dir.path() }
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
        path
    }
}

/// The `runner` binary with `args`, the test's own `RUNNER_*` variables removed and
/// `env` set, its stderr (the log) to `log`.
fn runner(args: &[&str], env: &[(String, String)], log: Option<&Path>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.args(args).current_dir(root());
    for (k, _) in std::env::vars() {
        if k.starts_with("RUNNER_") && k != "RUNNER_NATS_SERVER_BIN" {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUNNER_LOG", "debug")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    match log {
        Some(path) => cmd.stderr(std::fs::File::create(path).unwrap()),
        None => cmd.stderr(Stdio::piped()),
    };
    cmd
}

/// Runs `runner run` that must fail at start-up, and asserts that it exits with code 1:
/// its stdout + stderr. A process still running after [`WAIT`] (retrying in a loop,
/// say) fails the test.
fn start_up_fails(config: &Path, env: &[(String, String)]) -> String {
    let mut child = runner(&["run", "--config", config.to_str().unwrap()], env, None)
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, WAIT);
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("runner run did not exit within {WAIT:?}: it must fail at start-up");
    };
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{text}");
    text
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `env` with `var` set to `value` (replaced or added).
fn with(env: &[(String, String)], var: &str, value: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env.iter().filter(|(k, _)| k != var).cloned().collect();
    env.push((var.into(), value.into()));
    env
}

#[test]
fn the_runner_works_end_to_end_with_its_password_and_client_certificate_under_the_shipped_permissions(
) {
    let nats = Secured::start();
    let gateway = FakeGateway::accepting().unwrap();
    let config = nats.config(gateway.url());
    let env = nats.runner_env();
    let password = nats.password("runner");

    // `runner check` reports how it will authenticate, never with what.
    let out = runner(&["check", "--config", config.to_str().unwrap()], &env, None)
        .output()
        .unwrap();
    let checked = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{checked}");
    assert!(
        checked.contains("user runner") && checked.contains("runner_nats_password"),
        "check names the user and the password's file: {checked}"
    );
    assert!(!checked.contains(&password), "check printed the password");

    // The Aggregate nodes own AGGREGATE_EVENTS: their user creates it.
    let aggregate = nats.client("aggregate");
    let js = nats::jetstream::new(aggregate.clone());
    js.add_stream(nats::jetstream::StreamConfig {
        name: "AGGREGATE_EVENTS".into(),
        subjects: vec!["aggregate.>".into()],
        ..Default::default()
    })
    .expect("the aggregate user creates its stream");

    let log = nats.dir.path().join("runner.log");
    let _runner = Killed(
        runner(
            &["run", "--config", config.to_str().unwrap()],
            &env,
            Some(&log),
        )
        .spawn()
        .unwrap(),
    );
    let event = json!({
        "event_id": "evt-o-1-placed", "tenant_id": "acme", "aggregate_type": "order",
        "aggregate_id": "o-1", "event_type": "OrderPlaced", "version": 1,
        "occurred_at": runner::timefmt::now_rfc3339(),
        "payload": {"total": 4200, "currency": "EUR", "customer_id": "cust-1"},
        "metadata": {"correlation_id": "req-o-1",
                     "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    });
    js.publish("aggregate.acme.order.OrderPlaced", event.to_string())
        .expect("the aggregate user publishes an event");

    // OrderPlaced → charge_card command → effect → result → the saga's aggregate command,
    // POSTed to the Gateway: every NATS path of the Runner (consumers, publishes, acks,
    // the claims bucket) went through its user's permissions and TLS.
    let done = common::wait_until(WAIT, || gateway.count() >= 1);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        done,
        "the order reached the Gateway; runner log:\n{text}\nnats-server log:\n{}",
        std::fs::read_to_string(nats.server.log_path()).unwrap_or_default()
    );
    let server_log = std::fs::read_to_string(nats.server.log_path()).unwrap();
    assert!(
        !server_log.contains("Violation"),
        "the shipped permissions cover what the Runner does:\n{server_log}"
    );
    assert!(!text.contains(&password), "the log holds the password");

    // What the shipped permissions refuse the Runner: publishing domain events.
    let as_runner = nats.client("runner");
    // Allowed, the stream would ack it; refused, nothing answers and the server logs why.
    let acked = as_runner
        .request_timeout(
            "aggregate.acme.order.OrderPlaced",
            "{}",
            Duration::from_secs(5),
        )
        .is_ok();
    let refused = !acked
        && common::wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(nats.server.log_path()).is_ok_and(|log| {
                log.lines().any(|line| {
                    // "Permissions Violation for Publish to …" (2.10) or "Publish Violation".
                    line.contains("Violation") && line.contains("aggregate.acme.order.OrderPlaced")
                })
            })
        });
    assert!(
        refused,
        "the runner user may not publish aggregate events:\n{}",
        std::fs::read_to_string(nats.server.log_path()).unwrap_or_default()
    );
}

#[test]
fn the_shipped_accounts_are_the_same_in_compose_and_swarm() {
    let block = |file: &str| {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let start = text
            .find("# BEGIN accounts")
            .unwrap_or_else(|| panic!("{file}: # BEGIN accounts"));
        let end = text
            .find("# END accounts")
            .unwrap_or_else(|| panic!("{file}: # END accounts"));
        text[start..end].to_string()
    };
    assert_eq!(
        block("docker/nats.conf"),
        block("swarm/configs/nats.conf"),
        "the accounts and permissions of docker/nats.conf and swarm/configs/nats.conf differ"
    );
    let swarm = std::fs::read_to_string(root().join("swarm/configs/nats.conf")).unwrap();
    let cluster = &swarm[swarm.find("cluster {").expect("a cluster block")..];
    assert!(
        cluster.contains("tls {") && cluster.contains("verify: true"),
        "routes use mutual TLS"
    );
}

#[test]
fn a_wrong_password_fails_start_up_naming_the_authorization_violation() {
    let nats = Secured::start();
    let config = nats.config("http://127.0.0.1:9");
    let wrong = nats.dir.path().join("wrong_password");
    let secret = "not-the-password-4711";
    std::fs::write(&wrong, secret).unwrap();
    let env = with(
        &nats.runner_env(),
        "RUNNER_NATS_PASSWORD_FILE",
        wrong.to_str().unwrap(),
    );
    let text = start_up_fails(&config, &env);
    assert!(
        text.to_lowercase().contains("authorization violation"),
        "says the server refused the credentials: {text}"
    );
    assert!(text.contains("nats.user"), "names the settings: {text}");
    assert!(!text.contains(secret), "printed the password: {text}");

    // A user the server does not know is refused the same way.
    let env = with(&nats.runner_env(), "RUNNER_NATS_USER", "intruder");
    let text = start_up_fails(&config, &env);
    assert!(
        text.to_lowercase().contains("authorization violation"),
        "{text}"
    );
}

#[test]
fn an_untrusted_or_misnamed_certificate_fails_start_up_saying_so() {
    let nats = Secured::start();
    let config = nats.config("http://127.0.0.1:9");
    // Another deployment's CA: the server's certificate does not chain to it.
    let other = nats.dir.path().join("other");
    make_nats_secrets(&other, &["localhost"]);
    let other_file = |name: &str| other.join(name).display().to_string();

    let env = with(
        &nats.runner_env(),
        "RUNNER_NATS_TLS_CA_FILE",
        &other_file("nats_ca.pem"),
    );
    let text = start_up_fails(&config, &env);
    assert!(
        text.contains("not trusted") && text.contains("nats.tls_ca_file"),
        "says the server's certificate is not trusted: {text}"
    );

    // A client certificate of another CA: the server refuses it.
    let env = with(
        &with(
            &nats.runner_env(),
            "RUNNER_NATS_TLS_CERT_FILE",
            &other_file("runner_nats_cert.pem"),
        ),
        "RUNNER_NATS_TLS_KEY_FILE",
        &other_file("runner_nats_key.pem"),
    );
    let text = start_up_fails(&config, &env);
    assert!(
        text.contains("nats.tls_cert_file"),
        "says the client certificate was refused: {text}"
    );

    // The server's certificate names `localhost`, not the URL's address.
    let env: Vec<(String, String)> = nats
        .runner_env()
        .into_iter()
        .filter(|(k, _)| k != "RUNNER_NATS_TLS_SERVER_NAME")
        .collect();
    let text = start_up_fails(&config, &env);
    assert!(
        text.contains("127.0.0.1") && text.contains("nats.tls_server_name"),
        "says the certificate does not name the server: {text}"
    );

    // Without TLS settings, the server's certificate is checked against the system's
    // roots, which do not hold the deployment's CA.
    let env: Vec<(String, String)> = nats
        .runner_env()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("RUNNER_NATS_TLS_"))
        .collect();
    let text = start_up_fails(&config, &env);
    assert!(text.contains("not trusted"), "{text}");
}

#[test]
fn an_unreachable_server_still_fails_start_up_as_unreachable() {
    let nats = Secured::start();
    let config = nats.config("http://127.0.0.1:9");
    let port = runner::dev::NatsServer::start().unwrap().port(); // stopped on drop: free
    let env = with(
        &nats.runner_env(),
        "RUNNER_NATS_URL",
        &format!("nats://127.0.0.1:{port}"),
    );
    let text = start_up_fails(&config, &env);
    assert!(text.contains("cannot connect to NATS"), "{text}");
    assert!(
        !text.contains("authorization") && !text.contains("not trusted"),
        "{text}"
    );
}

/// A server whose only user is the nkey `public`, without TLS.
fn nkey_server(dir: &Path, public: &str) -> NatsServer {
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!("authorization {{\n  users = [ {{ nkey: {public} }} ]\n}}\n"),
    )
    .unwrap();
    NatsServer::start_with_config(&conf).expect("nats-server")
}

#[test]
fn an_nkey_user_connects_with_its_seed_file_and_a_wrong_seed_is_refused() {
    let dir = TempDir::new("nkey").unwrap();
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let server = nkey_server(dir.path(), &user.public_key());
    let seed_file = dir.path().join("runner.nk");
    std::fs::write(&seed_file, format!("{seed}\n")).unwrap();
    let settings = json!({
        "mode": "saga",
        "nats": { "url": server.url(), "create_aggregate_stream": true },
        "storage": { "path": dir.path().join("store"), "map_size_mib": 64 },
        "ops": { "listen": "127.0.0.1:0" }
    });
    let config = dir.path().join("runner.json");
    std::fs::write(&config, settings.to_string()).unwrap();
    let env = vec![(
        "RUNNER_NATS_NKEY_FILE".to_string(),
        seed_file.display().to_string(),
    )];

    let log = dir.path().join("runner.log");
    let running = Killed(
        runner(
            &["run", "--config", config.to_str().unwrap()],
            &env,
            Some(&log),
        )
        .spawn()
        .unwrap(),
    );
    // The test's own client signs with the same key.
    let signer = nkeys::KeyPair::from_seed(&seed).unwrap();
    let nc = nats::Options::with_nkey(&user.public_key(), move |nonce| signer.sign(nonce).unwrap())
        .connect(server.url())
        .unwrap();
    let js = nats::jetstream::new(nc);
    let started = common::wait_until(WAIT, || {
        js.consumer_info("AGGREGATE_EVENTS", "runner-saga-aggregate")
            .is_ok()
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        started,
        "the runner connected and made its consumer:\n{text}"
    );
    assert!(!text.contains(&seed), "the log holds the seed");
    drop(running);

    // Another key, unknown to the server.
    let stranger = dir.path().join("stranger.nk");
    let stranger_seed = nkeys::KeyPair::new_user().seed().unwrap();
    std::fs::write(&stranger, &stranger_seed).unwrap();
    let env = vec![(
        "RUNNER_NATS_NKEY_FILE".to_string(),
        stranger.display().to_string(),
    )];
    let text = start_up_fails(&config, &env);
    assert!(
        text.to_lowercase().contains("authorization violation") && text.contains("nats.nkey_file"),
        "{text}"
    );
    assert!(!text.contains(&stranger_seed), "printed the seed: {text}");
}
