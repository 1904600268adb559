//! A TCP proxy that can go silent: `freeze` stops forwarding on every connection open at
//! that moment, in both directions, while keeping the sockets open — what a hung broker,
//! a half-dead NAT entry or a black-holing firewall looks like to a client. Connections
//! opened afterwards are forwarded normally.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct SilentProxy {
    port: u16,
    /// Connections accepted so far (each is numbered in order).
    accepted: Arc<AtomicU64>,
    /// Connections with a number below this are frozen.
    frozen_below: Arc<AtomicU64>,
}

impl SilentProxy {
    /// Forwards `127.0.0.1:<port>` to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> SilentProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen_below = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let (upstream, frozen, count) =
            (upstream.to_string(), frozen_below.clone(), accepted.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let n = count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(&upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let frozen = frozen.clone();
                    std::thread::spawn(move || pump(n, from, to, &frozen));
                }
            }
        });
        SilentProxy {
            port,
            accepted,
            frozen_below,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Every connection open now stops forwarding, for good.
    pub fn freeze(&self) {
        let open = self.accepted.load(Ordering::SeqCst);
        self.frozen_below.store(open, Ordering::SeqCst);
    }
}

fn pump(n: u64, mut from: TcpStream, mut to: TcpStream, frozen_below: &AtomicU64) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        if n < frozen_below.load(Ordering::SeqCst) {
            // Frozen: hold the socket open, forward nothing.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                if to.write_all(&buf[..k]).is_err() {
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}
