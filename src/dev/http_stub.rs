//! A minimal HTTP/1.1 server for the stand-ins of the demo, tests and benches: one thread
//! per connection, keep-alive, `Content-Length` and chunked request bodies.
//!
//! Why not tiny_http (which the ops port uses): under a steady keep-alive load it now
//! and then never hands a request to its handler, and the client waits out its timeout
//! (measured: 5 of ~150,000 POSTs from the relay's ureq agent at 1,000–3,000/s, against 0
//! of 240,000 for this server, same client, same machine). For a stand-in whose
//! latency the workflow bench reports, one lost request is a 5 s outlier and a wrong
//! completion rate.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

/// Most connections open at once; more are closed at once.
const MAX_CONNECTIONS: usize = 256;
/// Largest request head and body accepted.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 << 20;
/// An idle keep-alive connection is closed after this.
const IDLE: Duration = Duration::from_secs(60);

/// One parsed request.
#[derive(Debug)]
pub struct StubRequest {
    pub method: String,
    pub path: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What to answer.
#[derive(Debug)]
pub struct StubResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

type Handler = dyn Fn(StubRequest) -> StubResponse + Send + Sync;
/// The open connections (a clone of each socket), by number, to close them on drop.
type Open = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// Serves until dropped; dropping it closes every open connection too, so a client sees
/// the server gone rather than an old connection still answering.
pub struct HttpStub {
    port: u16,
    stopped: Arc<AtomicBool>,
    open: Open,
    acceptor: Option<JoinHandle<()>>,
}

impl HttpStub {
    pub fn start(
        handler: impl Fn(StubRequest) -> StubResponse + Send + Sync + 'static,
    ) -> std::io::Result<HttpStub> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stopped = Arc::new(AtomicBool::new(false));
        let open: Open = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let acceptor = {
            let (stopped, open) = (stopped.clone(), open.clone());
            std::thread::Builder::new()
                .name("http-stub".into())
                .spawn(move || accept(&listener, &stopped, &open, &handler))?
        };
        Ok(HttpStub {
            port,
            stopped,
            open,
            acceptor: Some(acceptor),
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for (_, stream) in self.open.lock().drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn accept(listener: &TcpListener, stopped: &Arc<AtomicBool>, open: &Open, handler: &Arc<Handler>) {
    for (id, stream) in (0u64..).zip(listener.incoming()) {
        if stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of file descriptors, say: do not spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        {
            let mut open = open.lock();
            let Ok(clone) = stream.try_clone() else {
                continue;
            };
            if open.len() >= MAX_CONNECTIONS {
                continue;
            }
            open.insert(id, clone);
        }
        let (stop, registry, handler) = (stopped.clone(), open.clone(), handler.clone());
        let spawned = std::thread::Builder::new()
            .name("http-stub-conn".into())
            .spawn(move || {
                // Deregisters (and closes) the connection however `serve` ends, a
                // panicking handler included, so a client never waits on a dead one.
                let _gone = Deregister(registry, id);
                let _ = serve(stream, &stop, &*handler);
            });
        if spawned.is_err() {
            open.lock().remove(&id);
        }
    }
}

struct Deregister(Open, u64);

impl Drop for Deregister {
    fn drop(&mut self) {
        if let Some(stream) = self.0.lock().remove(&self.1) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Answers the connection's requests in order until it closes, idles out or asks to close.
fn serve(stream: TcpStream, stopped: &AtomicBool, handler: &Handler) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader)? {
        if stopped.load(Ordering::SeqCst) {
            break;
        }
        let close = request
            .headers
            .iter()
            .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"));
        let response = handler(request);
        write_response(&mut writer, &response)?;
        if close {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
    Ok(())
}

/// One line, of at most `limit` bytes (a longer one is an error, not an allocation).
fn read_line_within(reader: &mut impl BufRead, limit: usize) -> std::io::Result<String> {
    let mut line = String::new();
    let n = reader
        .by_ref()
        .take(limit as u64 + 1)
        .read_line(&mut line)?;
    if n > limit {
        return Err(bad("request head too large"));
    }
    Ok(line)
}

/// The next request, or `None` once the client closed the connection between requests.
fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<StubRequest>> {
    let line = read_line_within(reader, MAX_HEAD)?;
    if line.is_empty() {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (method, path) = match (parts.next(), parts.next()) {
        (Some(m), Some(p)) => (m.to_string(), p.to_string()),
        _ => return Err(bad("malformed request line")),
    };
    let mut headers = Vec::new();
    let mut head = line.len();
    loop {
        let h = read_line_within(reader, MAX_HEAD - head)?;
        if h.is_empty() {
            return Err(bad("connection closed inside a request head"));
        }
        head += h.len();
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(reader, MAX_HEAD - head)?
    } else {
        let len: usize = header("content-length")
            .map(|v| v.parse().map_err(|_| bad("bad content-length")))
            .transpose()?
            .unwrap_or(0);
        if len > MAX_BODY {
            return Err(bad("request body too large"));
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        body
    };
    Ok(Some(StubRequest {
        method,
        path,
        headers,
        body,
    }))
}

/// A chunked body; `head_left`: what the request head may still take (chunk size
/// lines and trailers count against it).
fn read_chunked(reader: &mut impl BufRead, mut head_left: usize) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size = read_line_within(reader, head_left)?;
        head_left -= size.len();
        let size = size.trim().split(';').next().unwrap_or_default();
        let n = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
        if n > MAX_BODY - body.len() {
            return Err(bad("request body too large"));
        }
        if n == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                let t = read_line_within(reader, head_left)?;
                head_left -= t.len();
                if t.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + n, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
    }
}

fn write_response(writer: &mut impl Write, response: &StubResponse) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-length: {}\r\n",
        response.status,
        reason(response.status),
        response.body.len()
    )
    .into_bytes();
    for (name, value) in &response.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&response.body);
    writer.write_all(&out)?;
    writer.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_bodies_and_keeps_the_connection() {
        let raw = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nX-Tenant: acme\r\n\r\nhello\
POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let mut reader = BufReader::new(&raw[..]);
        let first = read_request(&mut reader).unwrap().unwrap();
        assert_eq!((first.method.as_str(), first.path.as_str()), ("POST", "/a"));
        assert_eq!(first.body, b"hello");
        assert!(first
            .headers
            .contains(&("x-tenant".to_string(), "acme".to_string())));
        let second = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(second.body, b"abcde");
        assert!(read_request(&mut reader).unwrap().is_none(), "closed");
    }

    #[test]
    fn oversized_heads_lines_and_chunks_are_errors_not_allocations() {
        let huge_chunk =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n";
        assert!(read_request(&mut BufReader::new(&huge_chunk[..])).is_err());
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD + 1));
        assert!(read_request(&mut BufReader::new(long_line.as_bytes())).is_err());
        let many_headers = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "x: y\r\n".repeat(MAX_HEAD / 6 + 1)
        );
        assert!(read_request(&mut BufReader::new(many_headers.as_bytes())).is_err());
        let big_length = b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n";
        assert!(read_request(&mut BufReader::new(&big_length[..])).is_err());
    }

    #[test]
    fn answers_over_keep_alive_and_goes_away_when_dropped() {
        let stub = HttpStub::start(|req| StubResponse {
            status: 429,
            headers: vec![("retry-after".into(), "1".into())],
            body: req.body,
        })
        .unwrap();
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        for i in 0..3 {
            match agent.post(&stub.url()).send_string(&format!("n{i}")) {
                Err(ureq::Error::Status(429, resp)) => {
                    assert_eq!(resp.header("retry-after"), Some("1"));
                    assert_eq!(resp.into_string().unwrap(), format!("n{i}"));
                }
                other => panic!("{other:?}"),
            }
        }
        let url = stub.url();
        drop(stub);
        assert!(matches!(
            agent.post(&url).send_string("late"),
            Err(ureq::Error::Transport(_))
        ));
    }
}
