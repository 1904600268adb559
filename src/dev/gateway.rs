//! A stand-in Gateway for the demo and the tests: a real HTTP server (tiny_http) on a
//! free local port that records every request and answers as its script says.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeGateway {
    /// Answers 202 to everything.
    pub fn accepting() -> std::io::Result<FakeGateway> {
        FakeGateway::start(|_, _| Reply::status(202))
    }

    /// `script(request, n)` decides the answer to the `n`-th request (from 0). Four
    /// threads serve requests, so a slow answer does not hold up the others.
    pub fn start(
        script: impl Fn(&ReceivedCommand, usize) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<FakeGateway> {
        let server = tiny_http::Server::http("127.0.0.1:0")
            .map(Arc::new)
            .map_err(std::io::Error::other)?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| std::io::Error::other("the fake gateway has no IP address"))?;
        let received: Arc<Mutex<Vec<ReceivedCommand>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let threads = (0..4)
            .map(|_| {
                let (server, received, script) = (server.clone(), received.clone(), script.clone());
                std::thread::spawn(move || serve(&server, &received, &*script))
            })
            .collect();
        Ok(FakeGateway {
            url: format!("http://127.0.0.1:{port}"),
            received,
            server,
            threads,
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

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.server.unblock();
        for _ in 1..self.threads.len() {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, received: &Mutex<Vec<ReceivedCommand>>, script: &Script) {
    while let Ok(mut request) = server.recv() {
        let mut body = String::new();
        let _ = request.as_reader().read_to_string(&mut body);
        let command = ReceivedCommand {
            path: request.url().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|h| {
                    (
                        h.field.as_str().as_str().to_ascii_lowercase(),
                        h.value.to_string(),
                    )
                })
                .collect(),
            body: serde_json::from_str(&body).unwrap_or(Value::Null),
            at: Instant::now(),
        };
        let n = {
            let mut all = received.lock();
            all.push(command.clone());
            all.len() - 1
        };
        let reply = script(&command, n);
        std::thread::sleep(reply.delay);
        let mut response =
            tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
        if let Some(after) = reply.retry_after {
            if let Ok(h) = tiny_http::Header::from_bytes("Retry-After", after) {
                response = response.with_header(h);
            }
        }
        let _ = request.respond(response);
    }
}
