//! What `runner check` says about the deployment the settings describe, beyond whether
//! they are valid: a Gateway on the process's own loopback while NATS runs elsewhere
//! (a container's default, which dead-letters every aggregate command), and
//! single-replica streams on a server that is part of a JetStream cluster (one node's
//! loss would stop the workflow side). Warnings, never failures: the settings are
//! valid, and a laptop or a single server is a legitimate deployment.

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::Deserialize;

use crate::settings::Settings;

/// Connecting to one server, and reading its INFO line.
const PER_SERVER: Duration = Duration::from_secs(2);
/// All of it, name resolution included (a resolver may hang where a connect would not).
const OVERALL: Duration = Duration::from_secs(5);
/// The longest INFO line read (a server's is well under 2 KiB).
const MAX_INFO: u64 = 64 * 1024;

/// Warnings that need no connection.
pub fn offline_warnings(settings: &Settings) -> Vec<String> {
    let mut warnings = Vec::new();
    let gateway = &settings.relay.gateway_url;
    if settings.mode.runs_sagas() && host_of(gateway).is_some_and(|h| is_loopback(&h)) {
        let remote: Vec<String> = nats_servers(&settings.nats.url)
            .into_iter()
            .filter(|(host, _)| !is_loopback(host))
            .map(|(host, port)| format!("{host}:{port}"))
            .collect();
        if !remote.is_empty() {
            warnings.push(format!(
                "relay.gateway_url {gateway} is this process's own loopback while nats.url names other hosts ({}): \
                 in a container that is the container itself, so every aggregate command would be retried and then \
                 dead-lettered; name the Gateway's host (e.g. http://gateway:8080)",
                remote.join(", ")
            ));
        }
    }
    warnings
}

/// What a NATS server says about itself before any authentication (its INFO line).
#[derive(Debug, Clone, Deserialize)]
pub struct ServerInfo {
    #[serde(default)]
    pub server_name: String,
    #[serde(default)]
    pub version: String,
    /// The cluster's name when the server is part of one.
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub jetstream: bool,
}

/// The first of nats.url's servers that answers, as `host:port`, with its INFO; or why
/// none did.
pub fn probe_nats(url: &str) -> Result<(String, ServerInfo), String> {
    let servers = nats_servers(url);
    let (tx, rx) = std::sync::mpsc::channel();
    // A thread of its own, so that a hanging resolver costs OVERALL at most (the
    // process exits after the check; the thread goes with it).
    std::thread::spawn(move || {
        let mut errors = Vec::new();
        for (host, port) in servers {
            let at = format!("{host}:{port}");
            match read_info(&host, port) {
                Ok(info) => {
                    let _ = tx.send(Ok((at, info)));
                    return;
                }
                Err(e) => errors.push(format!("{at}: {e}")),
            }
        }
        let _ = tx.send(Err(if errors.is_empty() {
            "nats.url names no server".to_string()
        } else {
            errors.join("; ")
        }));
    });
    rx.recv_timeout(OVERALL)
        .unwrap_or_else(|_| Err(format!("no answer within {} s", OVERALL.as_secs())))
}

/// Warnings about `info`, the server nats.url names.
pub fn server_warnings(settings: &Settings, at: &str, info: &ServerInfo) -> Vec<String> {
    let mut warnings = Vec::new();
    if !info.jetstream {
        warnings.push(format!(
            "{at} does not offer JetStream: the Runner's streams, consumers and buckets need it"
        ));
    }
    if let Some(cluster) = &info.cluster {
        if settings.streams.replicas == 1 {
            warnings.push(format!(
                "streams.replicas is 1 but {at} is part of the JetStream cluster {cluster:?}: the streams and KV \
                 buckets the Runner creates ({}, {}, {}) would each live on one node, and that node's loss stops \
                 the workflow side; set streams.replicas to the cluster's size (3 for a 3-node cluster)",
                settings.streams.workflow_commands,
                settings.streams.workflow_events,
                settings.effects.claims_bucket,
            ));
        }
    }
    warnings
}

fn read_info(host: &str, port: u16) -> Result<ServerInfo, String> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .collect();
    let mut last = "no address".to_string();
    for addr in addrs {
        let stream = match TcpStream::connect_timeout(&addr, PER_SERVER) {
            Ok(s) => s,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        stream
            .set_read_timeout(Some(PER_SERVER))
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(stream.take(MAX_INFO))
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let json = line
            .strip_prefix("INFO ")
            .ok_or_else(|| "not a NATS server (no INFO line)".to_string())?;
        return serde_json::from_str(json.trim()).map_err(|e| format!("unreadable INFO: {e}"));
    }
    Err(last)
}

/// The servers of a NATS URL list (`nats://a:4222,tls://b`), as host and port
/// (4222 when none is given). Credentials in a URL are dropped, never shown.
pub fn nats_servers(urls: &str) -> Vec<(String, u16)> {
    urls.split(',')
        .filter_map(|u| {
            let authority = authority_of(u.trim())?;
            let (host, port) = split_port(&authority);
            Some((host, port.unwrap_or(4222)))
        })
        .collect()
}

/// The host of a URL, without port, brackets or credentials.
fn host_of(url: &str) -> Option<String> {
    authority_of(url).map(|a| split_port(&a).0)
}

fn authority_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    (!authority.is_empty()).then(|| authority.to_string())
}

fn split_port(authority: &str) -> (String, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (host.to_string(), port);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_string(), port.parse().ok()),
        _ => (authority.to_string(), None),
    }
}

/// Loopback (or the unspecified address, which a client reaches on loopback).
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_of_a_url_list() {
        assert_eq!(
            nats_servers("nats://nats-1:4222, nats://u:p@nats-2,tls://[::1]:4333"),
            vec![
                ("nats-1".to_string(), 4222),
                ("nats-2".to_string(), 4222),
                ("::1".to_string(), 4333)
            ]
        );
        assert_eq!(
            nats_servers("127.0.0.1:4300"),
            vec![("127.0.0.1".into(), 4300)]
        );
        assert_eq!(host_of("http://gateway:8080/x").as_deref(), Some("gateway"));
        assert!(is_loopback("localhost") && is_loopback("127.0.0.2") && is_loopback("::1"));
        assert!(!is_loopback("gateway") && !is_loopback("10.0.0.1"));
    }

    #[test]
    fn a_closed_port_is_not_reached() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = probe_nats(&format!("nats://127.0.0.1:{port}")).unwrap_err();
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    }
}
