use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::dev::{FakeGateway, Reply, TempDir};
use crate::envelope::EffectCommand;
use crate::program::Limits;

fn provider(
    settings: Value,
    secrets: &TempDir,
    timeout_ms: u64,
) -> Result<Http, HttpSettingsError> {
    let limits = Limits::default();
    Http::from_settings(
        &settings,
        &LoadContext {
            origin: "effects.yaml: effect charge",
            secrets_dir: secrets.path(),
            timeout: Duration::from_millis(timeout_ms),
            limits: &limits,
        },
    )
}

fn command() -> (EffectCommand, Vec<u8>) {
    let json = json!({"tenant_id": "acme", "command_id": "cmd-1", "effect_name": "charge",
        "payload": {"order_id": "o 1/x", "total": 4200},
        "metadata": {"correlation_id": "o-1", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        "issued_at": "2026-11-27T10:00:00Z"});
    (
        serde_json::from_value(json.clone()).unwrap(),
        json.to_string().into_bytes(),
    )
}

fn call(p: &Http) -> Outcome {
    let (cmd, raw) = command();
    p.call(&Call::new(&cmd, &raw))
}

#[test]
fn a_call_carries_the_mapped_body_the_idempotency_key_and_resolved_secrets() {
    let upstream = FakeGateway::start(|_, _| Reply {
        body: r#"{"charge_id": "ch-9"}"#.into(),
        ..Reply::status(201)
    })
    .unwrap();
    let secrets = TempDir::new("secrets").unwrap();
    std::fs::write(secrets.path().join("token"), "Bearer t0ken\n").unwrap();
    let p = provider(
        json!({"url": format!("{}/v1/orders/{{command.payload.order_id}}/charge", upstream.url()),
               "headers": {"Authorization": "secret:token"},
               "body": {"amount": {"$get": "command.payload.total"}, "ref": {"$get": "command.command_id"}}}),
        &secrets,
        2_000,
    )
    .unwrap();
    let outcome = call(&p);
    assert_eq!(
        outcome,
        Outcome::Succeeded(json!({"status": 201, "body": {"charge_id": "ch-9"}}))
    );
    let got = upstream.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path, "/v1/orders/o%201%2Fx/charge");
    assert_eq!(r.body, json!({"amount": 4200, "ref": "cmd-1"}));
    assert_eq!(r.header("idempotency-key"), Some("cmd-1"));
    assert_eq!(r.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(r.header("x-tenant-id"), Some("acme"));
    assert_eq!(r.header("x-correlation-id"), Some("o-1"));
    assert!(r
        .header("traceparent")
        .is_some_and(|t| t.contains("0af7651916cd43dd8448eb211c80319c")));
}

#[test]
fn statuses_and_timeouts_become_typed_failures() {
    let upstream = FakeGateway::start(|_, n| match n {
        0 => Reply::status(503),
        1 => Reply::status(422),
        2 => Reply::status(429),
        _ => Reply {
            delay: Duration::from_millis(800),
            ..Reply::status(200)
        },
    })
    .unwrap();
    let secrets = TempDir::new("secrets").unwrap();
    let p = provider(
        json!({"url": format!("{}/charge", upstream.url())}),
        &secrets,
        300,
    )
    .unwrap();
    let expect = [
        ("http_503", true),
        ("http_422", false),
        ("http_429", true),
        ("timeout", true),
    ];
    for (kind, retryable) in expect {
        match call(&p) {
            Outcome::Failed(f) => {
                assert_eq!((f.kind.as_str(), f.retryable), (kind, retryable), "{f:?}")
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
    // The default body is the payload.
    assert_eq!(upstream.received()[0].body["order_id"], "o 1/x");
}

#[test]
fn bad_settings_and_missing_secrets_are_refused_at_load() {
    let secrets = TempDir::new("secrets").unwrap();
    for (settings, needle) in [
        (json!({"url": "ftp://x"}), "http.url"),
        (
            json!({"url": "http://x/{payload.id}"}),
            "must start with command.",
        ),
        (json!({"url": "http://x/{command.id"}), "unclosed"),
        (json!({"url": "http://x", "method": "BREW"}), "http.method"),
        (
            json!({"url": "http://x", "headers": {"authorization": "secret:absent"}}),
            "secret absent",
        ),
        (
            json!({"url": "http://x", "body": {"$nope": 1}}),
            "http.body",
        ),
        (
            json!({"url": "http://x", "success": [42]}),
            "not an HTTP status",
        ),
        (json!({"url": "http://x", "extra": 1}), "unknown field"),
    ] {
        let err = provider(settings.clone(), &secrets, 100)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(needle), "{settings}: {err}");
    }
}

#[test]
fn a_missing_url_field_fails_the_call_permanently() {
    let secrets = TempDir::new("secrets").unwrap();
    let p = provider(
        json!({"url": "http://127.0.0.1:9/{command.payload.nope}"}),
        &secrets,
        100,
    )
    .unwrap();
    match call(&p) {
        Outcome::Failed(f) => assert!(
            !f.retryable && f.message.contains("command.payload.nope"),
            "{f:?}"
        ),
        other => panic!("{other:?}"),
    }
}

fn call_with(p: &Http, metadata: Value, payload: Value) -> Outcome {
    let json = json!({"tenant_id": "acme", "command_id": "cmd-1", "effect_name": "charge",
        "payload": payload, "metadata": metadata, "issued_at": "2026-11-27T10:00:00Z"});
    let cmd: EffectCommand = serde_json::from_value(json.clone()).unwrap();
    let raw = json.to_string().into_bytes();
    p.call(&Call::new(&cmd, &raw))
}

#[test]
fn a_non_ascii_correlation_id_goes_out_percent_encoded() {
    let upstream = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let secrets = TempDir::new("secrets").unwrap();
    let p = provider(
        json!({"url": format!("{}/charge", upstream.url())}),
        &secrets,
        2_000,
    )
    .unwrap();
    let outcome = call_with(&p, json!({"correlation_id": "Zürich 1"}), json!({}));
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    assert_eq!(
        upstream.received()[0].header("x-correlation-id"),
        Some("Z%C3%BCrich%201")
    );
}

#[test]
fn a_redirect_is_not_followed_so_no_secret_header_leaves_the_host() {
    use crate::dev::{HttpStub, StubResponse};
    let keys = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = keys.clone();
    let upstream = HttpStub::start(move |req| {
        let key = req
            .headers
            .iter()
            .find(|(n, _)| n == "x-api-key")
            .map(|(_, v)| v.clone());
        seen.lock().push((req.path.clone(), key));
        StubResponse {
            status: if req.path == "/charge" { 302 } else { 200 },
            headers: vec![("location".into(), "/elsewhere".into())],
            body: Vec::new(),
        }
    })
    .unwrap();
    let secrets = TempDir::new("secrets").unwrap();
    std::fs::write(secrets.path().join("api_key"), "k3y").unwrap();
    let p = provider(
        json!({"url": format!("{}/charge", upstream.url()), "headers": {"x-api-key": "secret:api_key"}}),
        &secrets,
        2_000,
    )
    .unwrap();
    match call_with(&p, json!({}), json!({})) {
        Outcome::Failed(f) => assert_eq!((f.kind.as_str(), f.retryable), ("http_302", false)),
        other => panic!("{other:?}"),
    }
    let keys = keys.lock();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].0, "/charge");
}

#[test]
fn dot_segments_in_a_placeholder_fail_the_command_without_a_request() {
    let upstream = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let secrets = TempDir::new("secrets").unwrap();
    let p = provider(
        json!({"url": format!("{}/v1/orders/{{command.payload.id}}/charge", upstream.url())}),
        &secrets,
        2_000,
    )
    .unwrap();
    for id in ["..", ".", "%2e%2e"] {
        match call_with(&p, json!({}), json!({"id": id})) {
            Outcome::Failed(f) => assert!(!f.retryable && f.kind == "bad_request", "{id}: {f:?}"),
            other => panic!("{id}: {other:?}"),
        }
    }
    assert_eq!(upstream.count(), 0);
    assert!(matches!(
        call_with(&p, json!({}), json!({"id": "a..b"})),
        Outcome::Succeeded(_)
    ));
}

#[test]
fn placeholders_before_the_path_are_refused_at_load() {
    let secrets = TempDir::new("secrets").unwrap();
    for url in [
        "http://{command.payload.host}/x",
        "http://api.{command.payload.host}/x",
        "http://api:{command.payload.port}/x",
        "https://api{command.payload.path}",
    ] {
        let err = provider(json!({"url": url}), &secrets, 100)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("only in the path"), "{url}: {err:?}");
    }
    for url in [
        "http://api/{command.payload.id}",
        "http://api:8080/v1?id={command.payload.id}",
    ] {
        assert!(
            provider(json!({"url": url}), &secrets, 100).is_ok(),
            "{url}"
        );
    }
}

#[test]
fn secret_values_with_stray_bytes_are_refused_at_load_without_showing_them() {
    let secrets = TempDir::new("secrets").unwrap();
    for (i, value) in [
        " Bearer tok-1",
        "Bearer tok-1 ",
        "\u{feff}Bearer tok-1",
        "Bearer\ttok-1",
        "Bearer tok-1\n\n",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("token{i}");
        std::fs::write(secrets.path().join(&name), value).unwrap();
        let err = provider(
            json!({"url": "http://x/", "headers": {"authorization": format!("secret:{name}")}}),
            &secrets,
            100,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains(&name), "{value:?}: {err:?}");
        assert!(!err.contains("tok-1"), "the value is not shown: {err}");
    }
}

#[test]
fn a_secret_echoed_by_the_upstream_never_reaches_the_result() {
    // An upstream that echoes the request's credentials in its error body.
    let upstream = FakeGateway::start(|c, _| Reply {
        body: format!(
            "bad credentials: {}",
            c.header("x-api-key").unwrap_or_default()
        ),
        ..Reply::status(401)
    })
    .unwrap();
    let secrets = TempDir::new("secrets").unwrap();
    std::fs::write(secrets.path().join("api_key"), "k3y-s3cr3t").unwrap();
    let p = provider(
        json!({"url": format!("{}/charge", upstream.url()), "headers": {"x-api-key": "secret:api_key"}}),
        &secrets,
        2_000,
    )
    .unwrap();
    let outcome = call_with(&p, json!({}), json!({}));
    let shown = format!("{outcome:?}");
    assert!(!shown.contains("k3y-s3cr3t"), "{shown}");
    assert!(shown.contains("secret:api_key"), "{shown}");
}
