//! Talking to the ops port in tests: an in-process ops server over a pipeline, plain
//! HTTP calls, and reading one metric.

use std::time::Duration;

use runner::ops::{Control, NatsProbe, OpsServer, OpsState};
use runner::stages::Pipeline;

use super::Rig;

pub const TOKEN: &str = "t0ken-for-tests";

/// An ops server over `pipeline`, as `runner run` starts one (no main loop behind it:
/// a drain stops the pipeline but never reports it drained).
pub fn ops_for(rig: &Rig, pipeline: &Pipeline, token: Option<&str>) -> OpsServer {
    let state = OpsState {
        control: Control::new(pipeline.shared().clone(), rig.connect()),
        probe: NatsProbe::start(rig.connect(), runner::ops::consumers_of(&rig.settings)).unwrap(),
        admin_token: token.map(str::to_string),
    };
    OpsServer::start("127.0.0.1:0", state).unwrap()
}

/// (status, body) of a request; any status is an answer here.
pub fn call(method: &str, url: &str, token: Option<&str>) -> (u16, String) {
    send(method, url, token, None)
}

/// [`call`] with a JSON body.
pub fn call_json(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let (status, text) = send(method, url, token, Some(body.to_string()));
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, value)
}

fn send(method: &str, url: &str, token: Option<&str>, body: Option<String>) -> (u16, String) {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(40));
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let answer = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(&b),
        None => req.call(),
    };
    match answer {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Gives the rig's `runner run` an ops port of its own and the admin token; returns the
/// port's base URL. (Write the config file after this.)
pub fn admin_port(rig: &mut Rig) -> String {
    let port = super::free_port();
    rig.settings.ops.listen = format!("127.0.0.1:{port}");
    rig.settings.ops.admin_token_file = token_file(rig);
    format!("http://127.0.0.1:{port}")
}

/// Writes [`TOKEN`] to the rig's admin token file, readable by its owner only (the
/// Runner refuses one others may read), and returns its path.
pub fn token_file(rig: &Rig) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let file = rig.dir.path().join("admin-token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    file
}
