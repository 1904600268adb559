//! Aggregate commands to the Gateway (docs/contracts.md §2): one HTTP POST per command, and
//! what its answer means for the outbox item.

use std::time::{Duration, SystemTime};

use crate::envelope::header;
use crate::https::header_value;
use crate::store::OutboxItem;

/// What to do with an item after one Gateway call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayOutcome {
    /// 2xx, or 409 (already accepted): durable at the Gateway; delete the item.
    Accepted { status: u16 },
    /// 429, 5xx, a timeout or a connection error: try again, not before `after` when the
    /// Gateway said so (`Retry-After`).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Any other 4xx, or a 3xx (redirects are not followed: a `Location` is no proof the
    /// command was taken, and following one could send it elsewhere): the command will
    /// never be accepted as sent.
    Rejected { status: u16, body: String },
}

/// Bytes of a rejection's body kept for the dead letter and the rejected event.
const BODY_EXCERPT: usize = 1024;

/// A Gateway client: one connection pool, shared by the relay's HTTP workers.
#[derive(Clone)]
pub struct Gateway {
    agent: ureq::Agent,
    url: String,
}

impl Gateway {
    pub fn new(url: String, timeout: Duration) -> Gateway {
        // TLS: the system's roots plus `tls.ca_file` (src/https.rs).
        let agent = crate::https::agent_builder()
            .timeout(timeout)
            // A redirect is an answer, not a confirmation (see `classify`).
            .redirects(0)
            .max_idle_connections_per_host(64)
            .build();
        Gateway { agent, url }
    }

    pub fn send(&self, item: &OutboxItem, headers: &CommandHeaders) -> GatewayOutcome {
        let mut req = self
            .agent
            .post(&self.url)
            .set("content-type", "application/json")
            .set(header::TENANT, &header_value(item.tenant.as_str()))
            .set("idempotency-key", &header_value(item.work_id.as_str()));
        if let Some(c) = &headers.correlation_id {
            req = req.set(header::CORRELATION, &header_value(c));
        }
        if let Some(tp) = &headers.traceparent {
            req = req.set(header::TRACEPARENT, &header_value(tp));
        }
        match req.send_bytes(item.envelope.as_bytes()) {
            Ok(resp) => {
                let status = resp.status();
                drain(resp);
                classify(status, None, "")
            }
            Err(ureq::Error::Status(status, resp)) => {
                let retry_after = resp.header("retry-after").map(str::to_string);
                let body = read_excerpt(resp);
                classify(status, retry_after.as_deref(), &body)
            }
            Err(ureq::Error::Transport(t)) => GatewayOutcome::Retry {
                reason: format!("gateway unreachable: {t}"),
                after: None,
            },
        }
    }
}

/// The correlation and trace headers of a command, read from its envelope's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandHeaders {
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
}

impl CommandHeaders {
    /// The instance correlation (which the envelope's `metadata.correlation_id` carries)
    /// and the trace context stored with the item: no parsing of the envelope.
    pub fn of(item: &OutboxItem) -> CommandHeaders {
        CommandHeaders {
            correlation_id: Some(item.correlation.to_string()),
            traceparent: item.traceparent.clone().filter(|t| !t.is_empty()),
        }
    }
}

/// Reads an accepted answer's body to its end (up to [`DRAIN_MAX`]): ureq puts the
/// connection back into its pool only at the end of the body, so an unread chunked or
/// longer body (ureq reads short `Content-Length` bodies itself) would cost a new
/// connection per command.
fn drain(resp: ureq::Response) {
    use std::io::Read;
    let _ = std::io::copy(
        &mut resp.into_reader().take(DRAIN_MAX),
        &mut std::io::sink(),
    );
}

/// Most of an accepted answer's body read to keep its connection; a longer one closes it.
const DRAIN_MAX: u64 = 64 * 1024;

fn read_excerpt(resp: ureq::Response) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    let _ = resp
        .into_reader()
        .take(BODY_EXCERPT as u64)
        .read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The contract's reading of a Gateway answer.
pub fn classify(status: u16, retry_after: Option<&str>, body: &str) -> GatewayOutcome {
    match status {
        200..=299 | 409 => GatewayOutcome::Accepted { status },
        408 | 429 | 500..=599 => GatewayOutcome::Retry {
            reason: format!("gateway answered {status}"),
            after: retry_after.and_then(|v| parse_retry_after(v, SystemTime::now())),
        },
        _ => GatewayOutcome::Rejected {
            status,
            body: body.chars().take(BODY_EXCERPT).collect(),
        },
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3); `None` when it is
/// neither. A date in the past means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT` (the form HTTP requires senders
/// to use).
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let rest = value.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? + 1;
    let text = format!("{year}-{month:02}-{day:0>2}T{time}Z");
    let ms = crate::timefmt::parse_rfc3339_ms(&text).ok()?;
    let ms = u64::try_from(ms).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Gateway that answers every request 200 with a chunked body, keeping the
    /// connection open; returns its URL and the count of connections it accepted.
    fn chunked_gateway() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/commands", listener.local_addr().unwrap());
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut writer = conn.try_clone().unwrap();
                    let mut reader = BufReader::new(conn);
                    loop {
                        let mut length = 0;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let lower = line.to_ascii_lowercase();
                            if let Some(v) = lower.strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap();
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let answer = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                                      7\r\n{\"a\":1}\r\n0\r\n\r\n";
                        writer.write_all(answer.as_bytes()).unwrap();
                    }
                });
            }
        });
        (url, accepted)
    }

    #[test]
    fn an_accepted_answer_with_a_chunked_body_keeps_its_connection() {
        let (url, accepted) = chunked_gateway();
        let gateway = Gateway::new(url, Duration::from_secs(5));
        let item = OutboxItem {
            kind: crate::keys::OutboxKind::Aggregate,
            tenant: "acme".parse().unwrap(),
            work_id: "cmd-1".parse().unwrap(),
            saga: "order".parse().unwrap(),
            correlation: "o-1".parse().unwrap(),
            destination: "order".into(),
            envelope: crate::store::RawJson::of(&serde_json::json!({"command_id": "cmd-1"}))
                .unwrap(),
            traceparent: None,
        };
        for _ in 0..3 {
            assert_eq!(
                gateway.send(&item, &CommandHeaders::default()),
                GatewayOutcome::Accepted { status: 200 }
            );
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn a_redirect_is_not_followed_and_is_not_an_acceptance() {
        use crate::dev::{HttpStub, StubResponse};
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = seen.clone();
        let stub = HttpStub::start(move |req| {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match req.path.as_str() {
                "/v1/commands" => StubResponse {
                    status: 303,
                    headers: vec![("location".into(), "/elsewhere".into())],
                    body: Vec::new(),
                },
                _ => StubResponse {
                    status: 200,
                    headers: Vec::new(),
                    body: Vec::new(),
                },
            }
        })
        .unwrap();
        let gateway = Gateway::new(
            format!("{}/v1/commands", stub.url()),
            Duration::from_secs(5),
        );
        let outcome = gateway.send(&item("o-1"), &CommandHeaders::default());
        assert!(
            matches!(outcome, GatewayOutcome::Rejected { status: 303, .. }),
            "{outcome:?}"
        );
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "not followed"
        );
    }

    #[test]
    fn a_non_ascii_correlation_id_goes_out_percent_encoded() {
        let upstream = crate::dev::FakeGateway::accepting().unwrap();
        let gateway = Gateway::new(upstream.url().to_string(), Duration::from_secs(5));
        let item = item("Zürich 1");
        assert_eq!(
            gateway.send(&item, &CommandHeaders::of(&item)),
            GatewayOutcome::Accepted { status: 202 }
        );
        let got = upstream.received();
        assert_eq!(got[0].header("x-correlation-id"), Some("Z%C3%BCrich%201"));
    }

    fn item(correlation: &str) -> OutboxItem {
        OutboxItem {
            kind: crate::keys::OutboxKind::Aggregate,
            tenant: "acme".parse().unwrap(),
            work_id: "cmd-1".parse().unwrap(),
            saga: "order".parse().unwrap(),
            correlation: correlation.parse().unwrap(),
            destination: "order".into(),
            envelope: crate::store::RawJson::of(&serde_json::json!({"command_id": "cmd-1"}))
                .unwrap(),
            traceparent: None,
        }
    }

    #[test]
    fn statuses_map_to_the_contract() {
        for status in [200, 201, 202, 204, 409] {
            assert_eq!(
                classify(status, None, ""),
                GatewayOutcome::Accepted { status }
            );
        }
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(status, None, ""), GatewayOutcome::Retry { .. }),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 422] {
            assert_eq!(
                classify(status, None, "bad"),
                GatewayOutcome::Rejected {
                    status,
                    body: "bad".into()
                }
            );
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        match classify(429, Some("7"), "") {
            GatewayOutcome::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(7))),
            other => panic!("{other:?}"),
        }
    }
}
