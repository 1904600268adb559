//! Smaller hardening of issue 22 point 10: no `unsafe` anywhere in the crate, LMDB reader
//! slots sized for the effect pool, TLS with the system's roots plus a custom CA.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use runner::dev::TempDir;
use runner::relay::gateway::{CommandHeaders, Gateway, GatewayOutcome};
use runner::settings::Settings;
use runner::store::{OutboxItem, RawJson, Store};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// `#![forbid(unsafe_code)]` on the library and the binary: nothing in the crate can
/// opt out of it with an `allow`.
#[test]
fn the_library_and_the_binary_forbid_unsafe_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["src/lib.rs", "src/main.rs"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(
            text.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]"),
            "{file} lacks #![forbid(unsafe_code)]"
        );
    }
}

/// A store opened for a large effect pool holds a read transaction per worker and the
/// other stages' at once (LMDB's default table has 126 slots; each open read
/// transaction takes one).
#[test]
fn a_store_opened_for_300_effect_workers_has_a_reader_slot_for_each() {
    let dir = TempDir::new("readers").unwrap();
    let mut settings = Settings::default();
    settings.effects.workers = 300;
    settings.storage.path = dir.path().join("store");
    settings.storage.map_size_mib = 16;
    settings.storage.max_size_mib = 16;
    let store = Store::open_with(
        &settings.storage.path,
        &runner::cli::store_options(&settings),
    )
    .unwrap();
    let mut readers = Vec::new();
    for n in 0..320 {
        match store.reader() {
            Ok(r) => readers.push(r),
            Err(e) => panic!("read transaction {} of 320 refused: {e}", n + 1),
        }
    }
    assert_eq!(readers.len(), 320);
}

/// An HTTPS server on loopback with the certificate `cert` (key `key`) that answers
/// every request 200; its port.
fn https_server(cert: &Path, key: &Path) -> u16 {
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = BufReader::new(rustls::StreamOwned::new(conn, tcp));
                // A client that refuses the certificate ends the handshake here.
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if tls.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                let _ = tls.read_exact(&mut body);
                let tls = tls.get_mut();
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

fn command() -> OutboxItem {
    OutboxItem {
        kind: runner::keys::OutboxKind::Aggregate,
        tenant: "acme".parse().unwrap(),
        work_id: "cmd-1".parse().unwrap(),
        saga: "order".parse().unwrap(),
        correlation: "o-1".parse().unwrap(),
        destination: "order".into(),
        envelope: RawJson::of(&serde_json::json!({"command_id": "cmd-1"})).unwrap(),
        traceparent: None,
    }
}

/// A Gateway whose certificate a private CA signed: refused with the system's roots
/// alone, accepted once `tls.ca_file` names that CA. (The `http` effect provider builds
/// its agent the same way, `runner::https::agent_builder`.)
#[test]
fn the_http_clients_trust_the_custom_ca_besides_the_systems_roots() {
    let dir = TempDir::new("tls").unwrap();
    let secrets = dir.path().join("secrets");
    common::shipped::make_nats_secrets(&secrets, &["localhost"]);
    let port = https_server(
        &secrets.join("nats_server_cert.pem"),
        &secrets.join("nats_server_key.pem"),
    );
    let url = format!("https://localhost:{port}/v1/commands");
    let before = Gateway::new(url.clone(), Duration::from_secs(5))
        .send(&command(), &CommandHeaders::default());
    match &before {
        GatewayOutcome::Retry { reason, .. } => assert!(
            reason.to_lowercase().contains("certificate") || reason.contains("UnknownIssuer"),
            "{reason}"
        ),
        other => panic!("a certificate of an unknown CA must be refused: {other:?}"),
    }

    // As `runner run` does with the setting, after the settings accepted the file.
    let ca = secrets.join("nats_ca.pem");
    let settings = Settings::load(
        None,
        [("RUNNER_TLS_CA_FILE".to_string(), ca.display().to_string())],
    )
    .unwrap();
    runner::https::install(&settings.tls.ca_file).unwrap();
    let after =
        Gateway::new(url, Duration::from_secs(5)).send(&command(), &CommandHeaders::default());
    assert_eq!(after, GatewayOutcome::Accepted { status: 200 });
}

#[test]
fn a_ca_file_that_does_not_load_is_refused_at_load_naming_it() {
    let dir = TempDir::new("tls").unwrap();
    let load = |path: &Path| {
        Settings::load(
            None,
            [("RUNNER_TLS_CA_FILE".to_string(), path.display().to_string())],
        )
        .unwrap_err()
        .to_string()
    };
    let missing = dir.path().join("no-such-ca.pem");
    let e = load(&missing);
    assert!(
        e.contains("tls.ca_file")
            && e.contains("cannot read CA file")
            && e.contains("no-such-ca.pem"),
        "{e}"
    );
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let e = load(&not_pem);
    assert!(
        e.contains("tls.ca_file") && e.contains("holds no PEM certificate"),
        "{e}"
    );
}
