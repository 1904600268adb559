//! The ops port's HTTP/1.1 server: one request per connection, a deadline on every
//! read and write, a cap on open connections, and a body read only when the handler
//! asks for it (after it checked the token).
//!
//! Why not tiny_http: it sets no socket timeouts and offers no way to set them (it
//! accepts the connections itself), reads an undeclared-length body lazily on the
//! thread that handles the request, reads the rest of an unread body when the request
//! is dropped (so even a refusal waits for a body that never comes), and starts a
//! thread per connection without a bound. Two requests that declared a body and never
//! sent it held both serving threads, and `/health` stopped answering.
//!
//! Here every connection has a thread of its own, at most [`MAX_CONNECTIONS`] at once
//! (plus [`LOOPBACK_RESERVE`] for loopback peers, where the container's own
//! healthcheck comes from), and none is held longer than the head, body and answer
//! deadlines together: a slow client holds its own connection and nothing else.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections served at once; past it a connection is answered 503 and closed.
const MAX_CONNECTIONS: usize = 32;
/// Extra connections only a loopback peer may take, so that a flood from outside the
/// container cannot fail the container's own healthcheck.
const LOOPBACK_RESERVE: usize = 4;
/// From accept to the end of the request head.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// From the end of the head to the end of the body.
const BODY_DEADLINE: Duration = Duration::from_secs(5);
/// For writing the answer (a client that does not read it is dropped after this).
const WRITE_DEADLINE: Duration = Duration::from_secs(5);
/// After the answer, how long unread request bytes are drained before closing, so the
/// close does not reset the connection before the client read the answer.
const LINGER: Duration = Duration::from_secs(1);
/// Largest request head.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body (admin calls carry small JSON documents).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Other(String),
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Get => f.write_str("GET"),
            Method::Post => f.write_str("POST"),
            Method::Other(m) => f.write_str(m),
        }
    }
}

/// What the handler answers.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Headers besides the content's type and length (the console's security policy).
    pub headers: &'static [(&'static str, &'static str)],
}

impl Reply {
    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.to_string(),
            headers: &[],
        }
    }
}

/// One request: its head, and its body once [`Request::body`] read it.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
    stream: TcpStream,
    /// Bytes read past the head (the body's start).
    buffered: Vec<u8>,
    /// Whether a `100 Continue` was written (or is not wanted).
    continued: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Reads the body (at most [`MAX_BODY`] bytes, within [`BODY_DEADLINE`]); the
    /// refusal to answer when it cannot.
    pub fn body(&mut self) -> Result<String, Reply> {
        let refuse = |status: u16, error: String| {
            Reply::json(status, &serde_json::json!({ "error": error }))
        };
        if self.header("transfer-encoding").is_some() {
            return Err(refuse(411, "send the body with a Content-Length".into()));
        }
        let declared = match self.header("content-length") {
            None => 0,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| refuse(400, format!("bad Content-Length {v:?}")))?,
        };
        if declared > MAX_BODY {
            return Err(refuse(
                413,
                format!("a body of at most {MAX_BODY} bytes is read"),
            ));
        }
        if !self.continued {
            self.continued = true;
            let wants = self
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
            if wants && declared > self.buffered.len() {
                write_within(
                    &mut self.stream,
                    b"HTTP/1.1 100 Continue\r\n\r\n",
                    Instant::now() + WRITE_DEADLINE,
                )
                .map_err(|e| refuse(408, format!("cannot answer 100 Continue: {e}")))?;
            }
        }
        let deadline = Instant::now() + BODY_DEADLINE;
        let mut body = std::mem::take(&mut self.buffered);
        body.truncate(declared);
        let mut chunk = [0u8; 4096];
        while body.len() < declared {
            let want = (declared - body.len()).min(chunk.len());
            match read_within(&mut self.stream, &mut chunk[..want], deadline) {
                Ok(0) => return Err(refuse(400, "the body ended early".into())),
                Ok(n) => body.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    return Err(refuse(
                        408,
                        format!(
                            "the body did not arrive within {} s",
                            BODY_DEADLINE.as_secs()
                        ),
                    ))
                }
                Err(e) => return Err(refuse(400, format!("unreadable body: {e}"))),
            }
        }
        String::from_utf8(body).map_err(|_| refuse(400, "the body is not UTF-8".into()))
    }
}

type Handler = dyn Fn(&mut Request) -> Reply + Send + Sync;

/// Counts of what the server refused, for `/metrics`.
#[derive(Debug, Default)]
pub struct ServerCounts {
    /// Connections answered 503 because [`MAX_CONNECTIONS`] were open.
    pub busy: AtomicU64,
    /// Requests whose head did not arrive in time (the connection is closed).
    pub head_timeouts: AtomicU64,
}

/// Serves until dropped.
pub struct Server {
    addr: SocketAddr,
    stopped: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(
        listen: &str,
        counts: Arc<ServerCounts>,
        handler: impl Fn(&mut Request) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let stopped = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let acceptor = {
            let stopped = stopped.clone();
            std::thread::Builder::new()
                .name("ops-accept".into())
                .spawn(move || accept(&listener, &stopped, &counts, &handler))?
        };
        Ok(Server {
            addr,
            stopped,
            acceptor: Some(acceptor),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees the flag (a wildcard address is reached
        // on the loopback of its family).
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Gives a connection back when its thread ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept(
    listener: &TcpListener,
    stopped: &AtomicBool,
    counts: &Arc<ServerCounts>,
    handler: &Arc<Handler>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of file descriptors, say: do not spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let loopback = stream.peer_addr().is_ok_and(|a| a.ip().is_loopback());
        let cap = MAX_CONNECTIONS + if loopback { LOOPBACK_RESERVE } else { 0 };
        if open.fetch_add(1, Ordering::SeqCst) >= cap {
            open.fetch_sub(1, Ordering::SeqCst);
            counts.busy.fetch_add(1, Ordering::Relaxed);
            busy(stream);
            continue;
        }
        let slot = Slot(open.clone());
        let (counts, handler) = (counts.clone(), handler.clone());
        let _ = std::thread::Builder::new()
            .name("ops-conn".into())
            .spawn(move || {
                let _slot = slot;
                serve(stream, &counts, &*handler);
            });
    }
}

/// Answers 503 on a connection past the cap, without reading it.
fn busy(mut stream: TcpStream) {
    let deadline = Instant::now() + Duration::from_millis(200);
    let reply = Reply::json(
        503,
        &serde_json::json!({"error": "too many open connections to the ops port"}),
    );
    let _ = write_within(&mut stream, &encode(&reply), deadline);
    let _ = stream.shutdown(Shutdown::Both);
}

fn serve(mut stream: TcpStream, counts: &ServerCounts, handler: &Handler) {
    let _ = stream.set_nodelay(true);
    let head_deadline = Instant::now() + HEAD_DEADLINE;
    let mut request = match read_head(&mut stream, head_deadline) {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(HeadError::TimedOut) => {
            // Nothing was asked yet; a 408 is a courtesy the client may not read.
            counts.head_timeouts.fetch_add(1, Ordering::Relaxed);
            let reply = Reply::json(
                408,
                &serde_json::json!({"error": "the request head did not arrive in time"}),
            );
            let _ = write_within(&mut stream, &encode(&reply), Instant::now() + LINGER);
            return;
        }
        Err(HeadError::Bad(why)) => {
            let reply = Reply::json(400, &serde_json::json!({ "error": why }));
            let _ = write_within(&mut stream, &encode(&reply), Instant::now() + LINGER);
            return;
        }
    };
    let reply = handler(&mut request);
    let mut stream = request.stream;
    if write_within(
        &mut stream,
        &encode(&reply),
        Instant::now() + WRITE_DEADLINE,
    )
    .is_err()
    {
        return;
    }
    // A lingering close: drain what the client still sends (a body that was never
    // read, say), so closing with unread bytes does not reset the connection before
    // the client read the answer.
    let _ = stream.shutdown(Shutdown::Write);
    let linger = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < MAX_BODY {
        match read_within(&mut stream, &mut sink, linger) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

#[derive(Debug)]
enum HeadError {
    TimedOut,
    Bad(String),
}

/// Reads the request head; `None` when the client closed before sending anything.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<Option<Request>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let ((method, target, headers), end) = loop {
        if let Some(parsed) = parse_head(&buf).map_err(|e| HeadError::Bad(e.to_string()))? {
            break parsed;
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::Bad(format!(
                "request head over {MAX_HEAD} bytes"
            )));
        }
        match read_within(stream, &mut chunk, deadline) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(HeadError::Bad("connection closed inside the head".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::TimedOut => return Err(HeadError::TimedOut),
            Err(e) => return Err(HeadError::Bad(e.to_string())),
        }
    };
    if end > MAX_HEAD {
        return Err(HeadError::Bad(format!(
            "request head over {MAX_HEAD} bytes"
        )));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let stream = stream
        .try_clone()
        .map_err(|e| HeadError::Bad(e.to_string()))?;
    Ok(Some(Request {
        method,
        path,
        query,
        headers,
        stream,
        buffered: buf[end..].to_vec(),
        continued: false,
    }))
}

type Head = (Method, String, Vec<(String, String)>);

/// Headers a request may have; more is a bad request.
const MAX_HEADERS: usize = 64;

/// Why a request head does not parse; answered as a 400 with this text.
#[derive(Debug, thiserror::Error)]
enum BadHead {
    #[error("malformed request head: {0}")]
    Malformed(#[from] httparse::Error),
    #[error("malformed request line")]
    RequestLine,
    #[error("header {0} is not UTF-8")]
    NotUtf8(String),
}

/// Parses the request head at the start of `buf` (httparse: the request line and
/// header syntax of RFC 9112, as hyper parses them). `None` while the head is not
/// complete; else the head and the length it took, body bytes follow.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, BadHead> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(BadHead::Malformed(e)),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(BadHead::RequestLine);
    };
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        m => Method::Other(m.chars().take(16).collect()),
    };
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value =
            std::str::from_utf8(h.value).map_err(|_| BadHead::NotUtf8(h.name.to_string()))?;
        headers.push((h.name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Some(((method, target.to_string(), headers), len)))
}

fn encode(reply: &Reply) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    );
    for (name, value) in reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(reply.body.as_bytes());
    out
}

/// One read that gives up at `deadline` (as [`ErrorKind::TimedOut`]).
fn read_within(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> std::io::Result<usize> {
    let left = remaining(deadline)?;
    stream.set_read_timeout(Some(left))?;
    stream.read(buf).map_err(timed_out)
}

/// Writes all of `bytes` by `deadline`.
fn write_within(
    stream: &mut TcpStream,
    mut bytes: &[u8],
    deadline: Instant,
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.set_write_timeout(Some(remaining(deadline)?))?;
        match stream.write(bytes).map_err(timed_out)? {
            0 => return Err(ErrorKind::WriteZero.into()),
            n => bytes = &bytes[n..],
        }
    }
    Ok(())
}

fn remaining(deadline: Instant) -> std::io::Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(ErrorKind::TimedOut.into()),
    }
}

/// A socket timeout shows as `WouldBlock` on Unix and `TimedOut` on Windows.
fn timed_out(e: std::io::Error) -> std::io::Error {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => ErrorKind::TimedOut.into(),
        _ => e,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head() {
        let sent = b"POST /admin/replay?x=1 HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 2\r\n\r\n{}";
        let ((method, target, headers), len) = parse_head(sent).unwrap().unwrap();
        assert_eq!(method, Method::Post);
        assert_eq!(target, "/admin/replay?x=1");
        assert_eq!(
            headers,
            vec![
                ("authorization".to_string(), "Bearer t".to_string()),
                ("content-length".to_string(), "2".to_string())
            ]
        );
        assert_eq!(&sent[len..], b"{}", "the body follows the head");
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: x").unwrap().is_none());
        assert!(parse_head(b"GET / HTTP/1.1 extra\r\n\r\n").is_err());
        assert!(parse_head(b"GET / SPDY/3\r\n\r\n").is_err());
        assert!(parse_head(b"GET / HTTP/1.1\r\nno colon\r\n\r\n").is_err());
    }

    /// The server end of a connection whose client end sends `sent` and then nothing.
    fn accepted(sent: &[u8]) -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(sent).unwrap();
        (listener.accept().unwrap().0, client)
    }

    #[test]
    fn a_head_or_body_that_never_comes_ends_at_its_deadline() {
        let (mut server, _client) = accepted(b"GET /health HTTP/1.1\r\n");
        let soon = Instant::now() + Duration::from_millis(100);
        assert!(matches!(
            read_head(&mut server, soon),
            Err(HeadError::TimedOut)
        ));

        let (mut server, _client) =
            accepted(b"POST /admin/drain HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
        let mut request = read_head(&mut server, Instant::now() + HEAD_DEADLINE)
            .unwrap()
            .unwrap();
        let refused = request.body().expect_err("no body came");
        assert_eq!(refused.status, 408, "{}", refused.body);
    }

    #[test]
    fn a_body_is_read_across_the_head_and_capped() {
        let (mut server, _client) = accepted(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        let mut request = read_head(&mut server, Instant::now() + HEAD_DEADLINE)
            .unwrap()
            .unwrap();
        assert_eq!(request.body().ok().as_deref(), Some("hello"));

        let big = format!(
            "POST /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        let (mut server, _client) = accepted(big.as_bytes());
        let mut request = read_head(&mut server, Instant::now() + HEAD_DEADLINE)
            .unwrap()
            .unwrap();
        assert_eq!(request.body().err().map(|r| r.status), Some(413));
    }
}
