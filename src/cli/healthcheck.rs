//! `runner healthcheck`: the container image's `HEALTHCHECK`. Asks the ops port's
//! `GET /health` of the Runner in the same container (or `--url`) and exits 0 on 200,
//! 1 otherwise, with one line saying why — so the image needs no curl. `/health` is
//! liveness (`ops::probe`): it fails only for what a restart fixes, never for NATS
//! being away, so an outage does not get every container killed at once.

use std::path::Path;
use std::time::Duration;

use crate::error::Error;
use crate::settings::Settings;

/// The whole request (connect, send, answer): a health check must never hang.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The most of a failing answer's body quoted in the message.
const BODY_QUOTE: usize = 200;

/// Checks `url`, or the `/health` of the ops port the settings name.
pub fn healthcheck(url: Option<&str>, config: Option<&Path>) -> Result<(), Error> {
    let url = match url {
        Some(url) => url.to_string(),
        None => {
            let settings = Settings::from_process(config)?;
            health_url(&settings.ops.listen).map_err(Error::Other)?
        }
    };
    let agent = ureq::AgentBuilder::new()
        .timeout(TIMEOUT)
        .redirects(0)
        .build();
    match agent.get(&url).call() {
        Ok(resp) if resp.status() == 200 => {
            println!("healthy: {url} answered 200");
            Ok(())
        }
        Ok(resp) => {
            let status = resp.status();
            Err(unhealthy(&url, status, resp))
        }
        Err(ureq::Error::Status(status, resp)) => Err(unhealthy(&url, status, resp)),
        // The transport error names the URL itself.
        Err(ureq::Error::Transport(t)) => Err(Error::Other(format!(
            "unhealthy: no answer: {}",
            one_line(&t.to_string())
        ))),
    }
}

fn unhealthy(url: &str, status: u16, resp: ureq::Response) -> Error {
    let body = resp.into_string().unwrap_or_default();
    let body: String = one_line(&body).chars().take(BODY_QUOTE).collect();
    Error::Other(format!("unhealthy: {url} answered {status}: {body}"))
}

/// `text` on one line, its runs of whitespace made one space.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `/health` URL of an ops port listening on `listen` (see [`base_url`]).
pub fn health_url(listen: &str) -> Result<String, String> {
    base_url(listen).map(|base| format!("{base}/health"))
}

/// The base URL of an ops port listening on `listen`: a wildcard address is asked on
/// the loopback of the same family.
pub fn base_url(listen: &str) -> Result<String, String> {
    if listen.is_empty() {
        return Err("the ops port is off (ops.listen is empty): nothing to check".into());
    }
    let Some((host, port)) = listen.rsplit_once(':') else {
        return Err(format!("ops.listen {listen:?} has no port"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("ops.listen {listen:?} has no valid port"));
    }
    let host = match host {
        "" | "0.0.0.0" => "127.0.0.1",
        "[::]" | "::" => "[::1]",
        h => h,
    };
    Ok(format!("http://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_follows_ops_listen() {
        assert_eq!(
            health_url("0.0.0.0:9090").unwrap(),
            "http://127.0.0.1:9090/health"
        );
        assert_eq!(health_url(":9091").unwrap(), "http://127.0.0.1:9091/health");
        assert_eq!(health_url("[::]:9090").unwrap(), "http://[::1]:9090/health");
        assert_eq!(
            health_url("10.0.0.5:80").unwrap(),
            "http://10.0.0.5:80/health"
        );
        assert!(health_url("").unwrap_err().contains("off"));
        assert!(health_url("localhost").unwrap_err().contains("no port"));
        assert!(health_url("localhost:http")
            .unwrap_err()
            .contains("no valid port"));
    }

    #[test]
    fn a_closed_port_is_unhealthy_with_one_line() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = healthcheck(Some(&format!("http://127.0.0.1:{port}/health")), None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unhealthy:"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
