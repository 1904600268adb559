//! The ops port survives slow clients (issue 22.9): requests that declare a body and
//! never send it, and a client that never reads its answers, hold connections of
//! their own and nothing else. `/health` keeps answering within the stack's
//! healthcheck timeout (an orchestrator must not replace a healthy Runner), an admin
//! call without the token is refused before its body is read, and one with the token
//! whose body never comes is answered 408 — never run.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::ops::{call, ops_for, TOKEN};
use common::{recorder_saga, wait_until, Rig, WAIT};
use serde_json::Value;

/// The stack's healthcheck timeout (swarm/stacks/platform.yml): what an orchestrator
/// waits for `/health` before counting a failure.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a slow client waits for its answer: far past the ops port's deadlines.
const ANSWER_WAIT: Duration = Duration::from_secs(40);
/// Slow connections of each kind: more than the ops port had threads.
const SLOW: usize = 3;

/// Sends a request head that declares a body of `declared` bytes, and none of it.
fn declare_body_send_none(addr: SocketAddr, token: Option<&str>, declared: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /admin/drain HTTP/1.1\r\nHost: ops\r\n{auth}Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

/// Pipelines `n` scrapes on one connection and never reads an answer.
fn never_reads(addr: SocketAddr, n: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let one = "GET /metrics HTTP/1.1\r\nHost: ops\r\n\r\n".repeat(n);
    // The server may stop reading (or close) before all of it is sent.
    let _ = stream.write_all(one.as_bytes());
    stream
}

/// The status code the server answered on `stream`, or why there was none.
fn status_of(mut stream: TcpStream) -> Result<u16, String> {
    stream.set_read_timeout(Some(ANSWER_WAIT)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => return Err(format!("closed without an answer ({head:?})")),
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(format!("no answer: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head).to_string();
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(format!("not a status line: {line:?}"))
}

fn health(base: &str) -> Result<u16, String> {
    match ureq::get(&format!("{base}/health"))
        .timeout(HEALTHCHECK_TIMEOUT)
        .call()
    {
        Ok(r) => Ok(r.status()),
        Err(ureq::Error::Status(code, _)) => Ok(code),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn slow_clients_never_stall_health_nor_get_past_the_token() {
    let rig = Rig::new(recorder_saga());
    let pipeline = rig.start();
    let ops = ops_for(&rig, &pipeline, Some(TOKEN));
    let (addr, base) = (ops.addr(), format!("http://{}", ops.addr()));
    assert!(wait_until(WAIT, || health(&base) == Ok(200)));

    // Without the token: small and large declared bodies, none sent.
    let anonymous: Vec<TcpStream> = (0..SLOW)
        .flat_map(|_| [1000, 4000])
        .map(|declared| declare_body_send_none(addr, None, declared))
        .collect();
    // With the token: a drain whose body never comes.
    let authorized: Vec<TcpStream> = (0..SLOW)
        .map(|_| declare_body_send_none(addr, Some(TOKEN), 4000))
        .collect();
    let deaf: Vec<TcpStream> = (0..SLOW).map(|_| never_reads(addr, 500)).collect();

    // Every probe answers in time while those connections are held.
    for n in 0..5 {
        assert_eq!(
            health(&base),
            Ok(200),
            "/health, probe {n}, with {} slow connections held",
            anonymous.len() + authorized.len() + deaf.len()
        );
        let (status, _) = call("GET", &format!("{base}/ready"), None);
        assert_eq!(status, 200, "/ready, probe {n}");
        std::thread::sleep(Duration::from_millis(300));
    }

    for stream in anonymous {
        assert_eq!(
            status_of(stream),
            Ok(401),
            "an admin call without the token is refused before its body is read"
        );
    }
    for stream in authorized {
        assert_eq!(
            status_of(stream),
            Ok(408),
            "an admin call whose body never arrives times out"
        );
    }
    // None of them ran: the Runner is not draining.
    let (_, ready) = call("GET", &format!("{base}/ready"), None);
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["draining"], false, "{ready}");
    drop(deaf);
    assert_eq!(health(&base), Ok(200));
}
