//! A stand-in Gateway for the demo, the tests and the benches: a real HTTP server
//! ([`HttpStub`]) on a free local port that records every request and answers as its
//! script says.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http_stub::{HttpStub, StubRequest, StubResponse};

use parking_lot::Mutex;
use serde_json::Value;

/// One request as the Gateway saw it.
#[derive(Debug, Clone)]
pub struct ReceivedCommand {
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
}

impl ReceivedCommand {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn command_id(&self) -> &str {
        self.body["command_id"].as_str().unwrap_or_default()
    }
}

/// How to answer one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    /// Wait this long before answering (longer than the client's timeout: "never answers").
    pub delay: Duration,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
            delay: Duration::ZERO,
            body: String::new(),
        }
    }
}

type Script = dyn Fn(&ReceivedCommand, usize) -> Reply + Send + Sync;

pub struct FakeGateway {
    url: String,
    received: Arc<Mutex<Vec<ReceivedCommand>>>,
    _server: HttpStub,
}

impl FakeGateway {
    /// Answers 202 to everything.
    pub fn accepting() -> std::io::Result<FakeGateway> {
        FakeGateway::start(|_, _| Reply::status(202))
    }

    /// `script(request, n)` decides the answer to the `n`-th request (from 0). Each
    /// connection is served by a thread of its own, so a slow answer does not hold up
    /// the others.
    pub fn start(
        script: impl Fn(&ReceivedCommand, usize) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<FakeGateway> {
        let received: Arc<Mutex<Vec<ReceivedCommand>>> = Arc::default();
        let log = received.clone();
        let server = HttpStub::start(move |request| answer(request, &log, &script))?;
        Ok(FakeGateway {
            url: server.url(),
            received,
            _server: server,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many requests arrived so far (without copying them).
    pub fn count(&self) -> usize {
        self.received.lock().len()
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<ReceivedCommand> {
        self.received.lock().clone()
    }
}

/// Records the request, then answers as the script says.
fn answer(
    request: StubRequest,
    received: &Mutex<Vec<ReceivedCommand>>,
    script: &Script,
) -> StubResponse {
    let command = ReceivedCommand {
        path: request.path,
        headers: request.headers,
        body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
        at: Instant::now(),
    };
    let n = {
        let mut all = received.lock();
        all.push(command.clone());
        all.len() - 1
    };
    let reply = script(&command, n);
    std::thread::sleep(reply.delay);
    StubResponse {
        status: reply.status,
        headers: reply
            .retry_after
            .map(|after| vec![("retry-after".to_string(), after)])
            .unwrap_or_default(),
        body: reply.body.into_bytes(),
    }
}
