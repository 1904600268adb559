//! `runner run` in a process of its own, so that what the bench measures of it (CPU,
//! memory) is the Runner's alone, without the bench's publisher or stand-in Gateway:
//! starting and stopping it, reading its memory from `/proc`, and reading its ops port
//! (readiness, `/metrics`).

use std::collections::HashMap;
use std::process::Child;
use std::time::Duration;

use crate::dev::{free_port, wait_until, Sandbox};
use crate::settings::Settings;

/// Starts `runner run` in a process of its own with `settings` (written to
/// `{name}.json` in the sandbox's directory) and `env` on top of this process's
/// environment; its log, at `warn`, goes to this process's stderr.
pub(super) fn spawn(
    sandbox: &Sandbox,
    settings: &Settings,
    name: &str,
    env: &[(&str, String)],
) -> Result<Child, String> {
    let config = sandbox.dir.path().join(format!("{name}.json"));
    let text = serde_json::to_vec_pretty(settings).map_err(|e| e.to_string())?;
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    std::process::Command::new(exe)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUNNER_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the runner: {e}"))
}

/// Stops a runner [`spawn`] started (SIGTERM: it drains and exits) and waits for it.
pub(super) fn stop(child: &mut Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// VmRSS, RssAnon and RssFile of a process, in MiB.
pub(super) fn memory_mib(pid: u32) -> (u64, u64, u64) {
    let status = status_of(pid);
    (
        field_mib(&status, "VmRSS:"),
        field_mib(&status, "RssAnon:"),
        field_mib(&status, "RssFile:"),
    )
}

/// VmHWM (peak resident memory since the process started) and RssAnon of a process, in
/// MiB.
pub(super) fn peak_and_anon_mib(pid: u32) -> (u64, u64) {
    let status = status_of(pid);
    (field_mib(&status, "VmHWM:"), field_mib(&status, "RssAnon:"))
}

/// Samples a process's RssAnon and RssFile every 50 ms on a thread of its own until
/// [`MemorySampler::peaks`]: VmHWM alone cannot tell the Runner's own heap from LMDB's
/// pages mapped from the page cache (file-backed, reclaimable), and the two peak at
/// different moments.
pub(super) struct MemorySampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u64)>>,
}

impl Drop for MemorySampler {
    /// An error path that never asks for the peaks still ends the thread.
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl MemorySampler {
    pub(super) fn start(pid: u32) -> Result<MemorySampler, String> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-memory".into())
            .spawn(move || {
                let (mut anon, mut file) = (0, 0);
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    let (_, a, f) = memory_mib(pid);
                    anon = anon.max(a);
                    file = file.max(f);
                    std::thread::sleep(Duration::from_millis(50));
                }
                (anon, file)
            })
            .map_err(|e| format!("cannot start the memory sampler: {e}"))?;
        Ok(MemorySampler {
            stop,
            thread: Some(thread),
        })
    }

    /// The highest RssAnon and RssFile seen, in MiB.
    pub(super) fn peaks(mut self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or((0, 0))
    }
}

fn status_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

/// A `kB` line of `/proc/{pid}/status` in MiB; 0 when missing (the process is gone).
fn field_mib(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// A `runner run` with its ops port on a free loopback port, stopped when dropped so
/// that no way out of a phase leaves it running.
pub(super) struct Runner {
    /// Behind a lock so a phase's reporting thread can watch it while another publishes.
    child: parking_lot::Mutex<Child>,
    /// `http://` and its ops port.
    ops: String,
    agent: ureq::Agent,
    stopped: bool,
}

impl Runner {
    /// Starts `runner run` with `settings`, its ops port set to a free one (see
    /// [`spawn`] for `name` and `env`).
    pub(super) fn start(
        sandbox: &Sandbox,
        mut settings: Settings,
        name: &str,
        env: &[(&str, String)],
    ) -> Result<Runner, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        settings.ops.listen = format!("127.0.0.1:{port}");
        let child = spawn(sandbox, &settings, name, env)?;
        Ok(Runner {
            child: parking_lot::Mutex::new(child),
            ops: format!("http://{}", settings.ops.listen),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(5))
                .build(),
            stopped: false,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.lock().id()
    }

    /// Waits up to `timeout` until its `/ready` answers 200 (its stages run, NATS
    /// answers); fails at once if it exits.
    pub(super) fn ready(&self, timeout: Duration) -> Result<(), String> {
        let url = format!("{}/ready", self.ops);
        let mut exited = None;
        let ready = wait_until(timeout, || {
            exited = self.exited();
            exited.is_some() || matches!(self.agent.get(&url).call(), Ok(r) if r.status() == 200)
        });
        match exited {
            Some(why) => Err(why),
            None if ready => Ok(()),
            None => Err(format!("{url} did not answer 200 within {timeout:?}")),
        }
    }

    /// Why it is no longer running, if it is not.
    pub(super) fn exited(&self) -> Option<String> {
        match self.child.lock().try_wait() {
            Ok(Some(status)) => Some(format!("the runner exited: {status}")),
            Ok(None) => None,
            Err(e) => Some(format!("cannot watch the runner: {e}")),
        }
    }

    /// Its `/metrics` now.
    pub(super) fn metrics(&self) -> Result<Metrics, String> {
        let url = format!("{}/metrics", self.ops);
        let text = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| format!("{url}: {e}"))?
            .into_string()
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(Metrics::parse(&text))
    }

    /// SIGTERM (it drains and exits), then waits for it.
    pub(super) fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            stop(&mut self.child.lock());
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One scrape of `/metrics`: each sample line's name (labels included) and value.
pub(super) struct Metrics(HashMap<String, f64>);

impl Metrics {
    fn parse(text: &str) -> Metrics {
        Metrics(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (name, value) = l.rsplit_once(' ')?;
                    Some((name.to_string(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// The value of sample `name` (labels included).
    pub(super) fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied()
    }

    /// How much `name` grew since `earlier` (a counter, or a histogram's `_sum`).
    pub(super) fn grew(&self, earlier: &Metrics, name: &str) -> Option<f64> {
        Some(self.0.get(name)? - earlier.0.get(name).copied().unwrap_or(0.0))
    }

    /// The `q`-quantile of histogram `name` over what it recorded since `earlier`,
    /// interpolated linearly within its bucket (as Prometheus' `histogram_quantile`):
    /// the page has a dozen buckets, so this is an estimate within a bucket's width.
    /// `None` when nothing was recorded.
    pub(super) fn quantile(&self, earlier: &Metrics, name: &str, q: f64) -> Option<Duration> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(key, after)| {
                let le = key.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                let before = earlier.0.get(key).copied().unwrap_or(0.0);
                Some((bound, after - before))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for (bound, count) in &buckets {
            if *count >= rank {
                // Past the last finite bound: that bound is all that is known.
                if bound.is_infinite() {
                    return Some(Duration::from_secs_f64(lower));
                }
                let share = if *count > below {
                    (rank - below) / (count - below)
                } else {
                    1.0
                };
                return Some(Duration::from_secs_f64(lower + (bound - lower) * share));
            }
            (lower, below) = (*bound, *count);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(buckets: &[(&str, u64)], sum: f64) -> Metrics {
        let mut text = String::from("# HELP h x\n# TYPE h histogram\n");
        for (le, n) in buckets {
            text.push_str(&format!("h_bucket{{le=\"{le}\"}} {n}\n"));
        }
        text.push_str(&format!(
            "h_sum {sum}\nh_count {}\n",
            buckets[buckets.len() - 1].1
        ));
        Metrics::parse(&text)
    }

    #[test]
    fn quantiles_interpolate_within_the_window_s_buckets() {
        let before = page(&[("0.001", 10), ("0.002", 10), ("+Inf", 10)], 0.005);
        // Since `before`: 10 at or below 1 ms, 30 more in (1 ms, 2 ms], none above.
        let after = page(&[("0.001", 20), ("0.002", 50), ("+Inf", 50)], 0.075);
        let us = |q| {
            after
                .quantile(&before, "h", q)
                .map(|d| (d.as_secs_f64() * 1e6).round() as u64)
        };
        // Rank 20 of 40: the 10th of 30 in (1, 2] ms, a third of the way.
        assert_eq!(us(0.5), Some(1_333));
        // Rank 4: within (0, 1] ms, 4 of its 10.
        assert_eq!(us(0.1), Some(400));
        let grew_ms = after.grew(&before, "h_sum").map(|s| (s * 1e3).round());
        assert_eq!(grew_ms, Some(70.0));
        assert_eq!(before.quantile(&before, "h", 0.5), None);
    }

    #[test]
    fn a_quantile_above_every_bound_is_the_last_bound() {
        let before = page(&[("0.001", 0), ("+Inf", 0)], 0.0);
        let after = page(&[("0.001", 1), ("+Inf", 4)], 9.0);
        assert_eq!(
            after.quantile(&before, "h", 0.99),
            Some(Duration::from_millis(1))
        );
    }
}
