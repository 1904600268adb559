//! HTTP to the ops ports: one blocking request per call with a whole-request timeout,
//! the bearer token on `/admin/*` only, and the answer's JSON body. The token is sent
//! in a header and never appears in a URL, an error or a log line.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

use crate::cli::healthcheck::one_line;

/// The most of a non-JSON answer's body quoted in an error.
const BODY_QUOTE: usize = 300;

/// Everything but RFC 3986's unreserved characters is escaped in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why one ops port gave no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// Nothing came back: refused connection, timeout, bad address.
    #[error("no answer: {0}")]
    NoAnswer(String),
    /// A non-2xx answer with the server's reason (its `error`, and `to_go_on` if given).
    #[error("answered {status}: {reason}")]
    Refused { status: u16, reason: String },
}

impl Failure {
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::NoAnswer(_) => None,
            Failure::Refused { status, .. } => Some(*status),
        }
    }
}

pub struct Client {
    agent: ureq::Agent,
    token: String,
}

impl Client {
    pub fn new(token: String, timeout: Duration) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(timeout)
            .redirects(0)
            .build();
        Client { agent, token }
    }

    /// `method base+path` with `body` as JSON; a 2xx answer's JSON body (`null` when
    /// empty). `path` must be encoded already (see [`segment`] and [`query`]).
    pub fn call(
        &self,
        base: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let mut request = self.agent.request(method, &format!("{base}{path}"));
        if path.starts_with("/admin/") {
            request = request.set("Authorization", &format!("Bearer {}", self.token));
        }
        let answer = match body {
            Some(b) => request
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => request.call(),
        };
        match answer {
            Ok(resp) => Ok(json_body(resp)),
            Err(ureq::Error::Status(status, resp)) => Err(Failure::Refused {
                status,
                reason: reason(&json_body(resp)),
            }),
            Err(ureq::Error::Transport(t)) => Err(Failure::NoAnswer(one_line(&t.to_string()))),
        }
    }

    /// `GET base+path` whatever its status (for `/ready`, which answers 503 with a
    /// body that says why): (status, JSON body).
    pub fn probe(&self, base: &str, path: &str) -> Result<(u16, Value), Failure> {
        match self.agent.get(&format!("{base}{path}")).call() {
            Ok(resp) => Ok((resp.status(), json_body(resp))),
            Err(ureq::Error::Status(status, resp)) => Ok((status, json_body(resp))),
            Err(ureq::Error::Transport(t)) => Err(Failure::NoAnswer(one_line(&t.to_string()))),
        }
    }
}

fn json_body(resp: ureq::Response) -> Value {
    let text = resp.into_string().unwrap_or_default();
    if text.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// What the server said went wrong: its `error` (and `to_go_on` when it gave one), or
/// the start of a body that is not the ops port's JSON.
pub fn reason(body: &Value) -> String {
    match body {
        Value::Object(o) => {
            let error = match o.get("error") {
                Some(Value::String(s)) => s.clone(),
                _ => body.to_string(),
            };
            match o.get("to_go_on").and_then(Value::as_str) {
                Some(next) => format!("{error}; to go on: {next}"),
                None => error,
            }
        }
        Value::String(s) => one_line(s).chars().take(BODY_QUOTE).collect(),
        Value::Null => "(no body)".into(),
        other => other.to_string(),
    }
}

/// One path segment, percent-encoded.
pub fn segment(raw: &str) -> String {
    utf8_percent_encode(raw, SEGMENT).to_string()
}

/// `?k=v&…` of the pairs whose value is given, form-encoded; "" when none is.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs {
        if let Some(v) = v {
            ser.append_pair(k, v);
            any = true;
        }
    }
    if any {
        format!("?{}", ser.finish())
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_and_queries_are_encoded() {
        assert_eq!(segment("o+1 x/y"), "o%2B1%20x%2Fy");
        assert_eq!(segment("order_fulfilment-2.v~"), "order_fulfilment-2.v~");
        assert_eq!(
            query(&[
                ("tenant", Some("a&b".into())),
                ("saga", None),
                ("limit", Some("5".into()))
            ]),
            "?tenant=a%26b&limit=5"
        );
        assert_eq!(query(&[("saga", None)]), "");
    }

    #[test]
    fn the_reason_is_the_servers_error() {
        assert_eq!(reason(&json!({"error": "no such thing"})), "no such thing");
        assert_eq!(
            reason(&json!({"error": "too old", "to_go_on": "use past_horizon"})),
            "too old; to go on: use past_horizon"
        );
        assert_eq!(reason(&json!("<html>\n oops</html>")), "<html> oops</html>");
        assert_eq!(reason(&Value::Null), "(no body)");
    }

    #[test]
    fn a_closed_port_is_no_answer() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new("secret-token".into(), Duration::from_secs(2));
        let err = client
            .call(
                &format!("http://127.0.0.1:{port}"),
                "GET",
                "/admin/store",
                None,
            )
            .unwrap_err();
        assert!(matches!(err, Failure::NoAnswer(_)), "{err}");
        assert!(!err.to_string().contains("secret-token"), "{err}");
    }
}
