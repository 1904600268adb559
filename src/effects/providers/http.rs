//! `http`: one HTTP request per call.
//!
//! ```yaml
//! provider: http
//! http:
//!   method: POST                                    # default POST
//!   url: "http://payments:8080/v1/charges/{command.payload.order_id}"
//!   headers: { authorization: "secret:payments_token" }
//!   body: { amount: { $get: command.payload.total } }   # expression; default: the payload
//!   success: [200, 201]                             # default: any 2xx
//!   retry_statuses: [429, 503]                      # default: 408, 429 and 5xx
//! ```
//!
//! Every request carries `idempotency-key: <command_id>` (so an upstream that honours it
//! turns a repeated call into a no-op), `x-tenant-id`, and `x-correlation-id` and
//! `traceparent` when the command has them; values from the command are sent through
//! [`header_value`](crate::https::header_value) (percent-encoded outside visible ASCII). URL placeholders are
//! `{dotted.path}` into the command, allowed only after the host (a command cannot pick
//! where its request goes), percent-encoded, and a value that is empty or a dot segment
//! (`.`, `..`) fails the command. The body is a program expression over `command`.
//!
//! Redirects are not followed: a 3xx is an answer like any other non-success (permanent
//! unless listed in `retry_statuses`), so no header, secret or not, reaches another
//! host. A request the command itself makes impossible (a bad header, URL or body) fails
//! that command for good without counting against the breaker. Secret values that an
//! upstream echoes back are replaced by the secret's name in results and errors.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::effects::manifest::LoadContext;
use crate::effects::provider::{Call, Failure, Outcome, Provider};
use crate::effects::secrets::{SecretError, Text};
use crate::envelope::{header, meta};
use crate::https::header_value;
use crate::program::{Expr, LoadError};

/// Bytes of a response body kept in a result or an error.
const BODY_LIMIT: u64 = 64 * 1024;
/// Gas for evaluating the body expression.
const BODY_GAS: u64 = 100_000;

pub struct Http {
    agent: ureq::Agent,
    method: String,
    url: Vec<UrlPart>,
    headers: Vec<(String, Text)>,
    body: Option<Expr>,
    success: Vec<u16>,
    retry_statuses: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum UrlPart {
    Literal(String),
    /// A dotted path into the command, e.g. `payload.order_id` for `{command.payload.order_id}`.
    Field(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "post")]
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    success: Vec<u16>,
    #[serde(default)]
    retry_statuses: Vec<u16>,
}

fn post() -> String {
    "POST".into()
}

/// What is wrong with an effect's `http:` settings.
#[derive(Debug, thiserror::Error)]
pub enum HttpSettingsError {
    #[error("http settings: {0}")]
    Settings(#[source] serde_json::Error),
    #[error("http.method {0:?} is not one of GET, POST, PUT, PATCH, DELETE")]
    Method(String),
    #[error("http.url must start with http:// or https:// (got {0:?})")]
    Scheme(String),
    #[error("http.url: placeholders are allowed only in the path, after the host (in {0:?})")]
    PlaceholderOutsidePath(String),
    #[error("http.url: unclosed '{{' in {0:?}")]
    Unclosed(String),
    /// The placeholder's text, without its braces.
    #[error("http.url: placeholder {{{0}}} must start with command.")]
    NotCommand(String),
    #[error("http.url: placeholder {{{0}}} is not a dotted path")]
    NotDotted(String),
    #[error("http.headers.{name}: {source}")]
    Secret {
        name: String,
        #[source]
        source: SecretError,
    },
    #[error("http.headers: {0:?} is not a header name")]
    HeaderName(String),
    #[error(
        "http.headers.{0}: the value must be printable ASCII without '%' or leading/trailing spaces"
    )]
    HeaderValue(String),
    #[error(transparent)]
    Body(#[from] LoadError),
    #[error("http: {0} is not an HTTP status")]
    Status(u16),
}

impl Http {
    pub fn from_settings(
        settings: &Value,
        ctx: &LoadContext<'_>,
    ) -> Result<Http, HttpSettingsError> {
        let s: Settings =
            serde_json::from_value(settings.clone()).map_err(HttpSettingsError::Settings)?;
        let method = s.method.to_ascii_uppercase();
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            return Err(HttpSettingsError::Method(s.method));
        }
        if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
            return Err(HttpSettingsError::Scheme(s.url));
        }
        let url = parse_url_template(&s.url)?;
        let headers = s
            .headers
            .iter()
            .map(|(name, value)| {
                let text = Text::resolve(value, ctx.secrets_dir).map_err(|source| {
                    HttpSettingsError::Secret {
                        name: name.clone(),
                        source,
                    }
                })?;
                let name_ok = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !name_ok {
                    return Err(HttpSettingsError::HeaderName(name.clone()));
                }
                // (A secret's value was checked when it was read, without quoting it.)
                if let Text::Plain(v) = &text {
                    if header_value(v) != v.as_str() || v.starts_with(' ') || v.ends_with(' ') {
                        return Err(HttpSettingsError::HeaderValue(name.clone()));
                    }
                }
                Ok((name.to_ascii_lowercase(), text))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let body = s
            .body
            .as_ref()
            .map(|b| {
                Expr::compile(
                    b,
                    &format!("{} http.body", ctx.origin),
                    &["command"],
                    ctx.limits,
                )
            })
            .transpose()?;
        for status in s.success.iter().chain(&s.retry_statuses) {
            if !(100..=599).contains(status) {
                return Err(HttpSettingsError::Status(*status));
            }
        }
        Ok(Http {
            // TLS: the system's roots plus `tls.ca_file` (src/https.rs); no redirects.
            agent: crate::https::agent_builder()
                .timeout(ctx.timeout)
                .redirects(0)
                .build(),
            method,
            url,
            headers,
            body,
            success: s.success,
            retry_statuses: s.retry_statuses,
        })
    }

    fn url_for(&self, command: &Value) -> Result<String, Failure> {
        let mut url = String::new();
        for part in &self.url {
            match part {
                UrlPart::Literal(text) => url.push_str(text),
                UrlPart::Field(path) => {
                    let value = path.iter().try_fold(command, |v, key| v.get(key));
                    let text = match value {
                        Some(Value::String(s)) => s.clone(),
                        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                        _ => {
                            return Err(Failure::invalid(
                                "bad_request",
                                format!(
                                    "url placeholder {{command.{}}} has no string or number value",
                                    path.join(".")
                                ),
                            ))
                        }
                    };
                    if is_dot_segment(&text) {
                        return Err(Failure::invalid(
                            "bad_request",
                            format!(
                                "url placeholder {{command.{}}} is empty or a dot segment",
                                path.join(".")
                            ),
                        ));
                    }
                    url.push_str(&percent_encode(&text));
                }
            }
        }
        Ok(url)
    }

    fn classify(&self, status: u16) -> Option<bool> {
        let success = if self.success.is_empty() {
            (200..300).contains(&status)
        } else {
            self.success.contains(&status)
        };
        if success {
            return None;
        }
        Some(if self.retry_statuses.is_empty() {
            status == 408 || status == 429 || status >= 500
        } else {
            self.retry_statuses.contains(&status)
        })
    }
}

impl Provider for Http {
    fn call(&self, call: &Call<'_>) -> Outcome {
        let json = match call.json() {
            Ok(json) => json,
            Err(f) => return Outcome::Failed(f),
        };
        let url = match self.url_for(json) {
            Ok(url) => url,
            Err(f) => return Outcome::Failed(f),
        };
        let body = match &self.body {
            Some(expr) => match expr.eval(&[json], BODY_GAS) {
                Ok(v) => v,
                Err(fault) => {
                    return Outcome::Failed(Failure::invalid(
                        "bad_request",
                        format!("http.body: {fault}"),
                    ))
                }
            },
            None => call.command.payload.clone(),
        };
        let c = call.command;
        let mut req = self
            .agent
            .request(&self.method, &url)
            .set("content-type", "application/json")
            .set("idempotency-key", &header_value(&c.command_id))
            .set(header::TENANT, &header_value(&c.tenant_id));
        for (key, name) in [
            (meta::CORRELATION_ID, header::CORRELATION),
            (meta::TRACEPARENT, header::TRACEPARENT),
        ] {
            if let Some(v) = c.meta(key) {
                req = req.set(name, &header_value(v));
            }
        }
        for (name, value) in &self.headers {
            req = req.set(name, value.expose());
        }
        let sent = if self.method == "GET" || self.method == "DELETE" {
            req.call()
        } else {
            req.send_bytes(body.to_string().as_bytes())
        };
        let (status, resp) = match sent {
            Ok(resp) => (resp.status(), resp),
            Err(ureq::Error::Status(status, resp)) => (status, resp),
            Err(ureq::Error::Transport(t)) => {
                let mut failure = transport_failure(&t);
                failure.message = self.redact(&failure.message);
                return Outcome::Failed(failure);
            }
        };
        let text = self.redact(&read_limited(resp));
        match self.classify(status) {
            None => {
                let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
                Outcome::Succeeded(serde_json::json!({ "status": status, "body": body }))
            }
            Some(retryable) => Outcome::Failed(Failure {
                retryable,
                kind: format!("http_{status}"),
                message: format!("{} answered {status}: {}", self.method, excerpt(&text)),
                command_fault: false,
            }),
        }
    }
}

impl Http {
    /// `text` from outside with every secret value of this effect replaced by its name.
    fn redact(&self, text: &str) -> String {
        self.headers
            .iter()
            .fold(text.to_string(), |text, (_, value)| value.redact(&text))
    }
}

/// Whether a URL placeholder's value would change the path's structure: empty (`//`)
/// or a dot segment, also when percent-decoded once by a lenient server.
fn is_dot_segment(value: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
    [value, decoded.as_ref()]
        .iter()
        .any(|v| matches!(*v, "" | "." | ".."))
}

fn transport_failure(t: &ureq::Transport) -> Failure {
    use std::error::Error as _;
    use ureq::ErrorKind;
    if matches!(
        t.kind(),
        ErrorKind::BadHeader | ErrorKind::InvalidUrl | ErrorKind::UnknownScheme
    ) {
        // Nothing was sent: the request the command asked for cannot be made.
        return Failure::invalid("bad_request", t.to_string());
    }
    let timed_out = t
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            )
        })
        || t.to_string().contains("timed out");
    if timed_out {
        Failure::retryable("timeout", format!("no answer in time: {t}"))
    } else {
        Failure::retryable("connection", t.to_string())
    }
}

fn read_limited(resp: ureq::Response) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    let _ = resp.into_reader().take(BODY_LIMIT).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn excerpt(text: &str) -> String {
    text.chars().take(256).collect()
}

/// Splits `http://x/{command.payload.id}/y` into literals and command fields.
fn parse_url_template(raw: &str) -> Result<Vec<UrlPart>, HttpSettingsError> {
    // Scheme, host and port are fixed: the first placeholder comes after the '/' that
    // ends the authority.
    let authority = raw.find("://").map_or(0, |i| i + 3);
    let path_start = raw[authority..].find('/').map(|i| authority + i);
    if let Some(open) = raw.find('{') {
        if path_start.is_none_or(|p| open < p) {
            return Err(HttpSettingsError::PlaceholderOutsidePath(raw.to_string()));
        }
    }
    let mut parts = Vec::new();
    let mut rest = raw;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(UrlPart::Literal(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| HttpSettingsError::Unclosed(raw.to_string()))?;
        let field = &rest[open + 1..open + close];
        let path = field
            .strip_prefix("command.")
            .ok_or_else(|| HttpSettingsError::NotCommand(field.to_string()))?;
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(HttpSettingsError::NotDotted(field.to_string()));
        }
        parts.push(UrlPart::Field(
            path.split('.').map(str::to_string).collect(),
        ));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(UrlPart::Literal(rest.to_string()));
    }
    Ok(parts)
}

/// Everything but RFC 3986's unreserved characters is escaped in a URL placeholder.
const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, RESERVED).to_string()
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
