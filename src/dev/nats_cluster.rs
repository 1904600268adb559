//! A throwaway JetStream cluster: `size` `nats-server` processes on loopback, each with
//! its own client, cluster (route) and monitoring port and its own store directory,
//! routed to each other under one cluster name. Nodes can be killed (SIGKILL) and
//! started again on the same ports with the same store, as a crashed broker would be.
//! Dropping the cluster stops every node.
//!
//! [`NatsCluster::start_configured`] runs each node from a configuration file the
//! caller writes for it (a deployment's own `nats.conf`: accounts, TLS on clients and
//! routes, its route list), so a test can run exactly what a stack ships.

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::TempDir;

#[derive(Debug, thiserror::Error)]
pub enum NatsClusterError {
    #[error("{}", super::nats_server::NOT_FOUND)]
    NotFound,
    #[error("cannot start nats-server: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "cluster node {node} did not accept connections on port {port} within {waited:?}: {log}"
    )]
    NotReady {
        node: usize,
        port: u16,
        waited: Duration,
        log: String,
    },
    #[error("the JetStream cluster did not become healthy within {waited:?}: {why}")]
    NotHealthy { waited: Duration, why: String },
}

/// How long a node may take to accept connections, and the cluster to elect a leader.
const NODE_WAIT: Duration = Duration::from_secs(10);
const HEALTH_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Node {
    /// The server name (`-n`): what JetStream calls the node in leader and peer fields.
    name: String,
    client_port: u16,
    cluster_port: u16,
    monitor_port: u16,
    child: Option<Child>,
}

/// What the configuration file of one node has to know (see
/// [`NatsCluster::start_configured`]).
#[derive(Debug, Clone)]
pub struct NodeSetup {
    pub index: usize,
    /// The server name (`--name`), as given to `start_configured`.
    pub name: String,
    pub client_port: u16,
    pub cluster_port: u16,
    pub monitor_port: u16,
    /// The node's JetStream store directory: the file must set it (`store_dir`), as
    /// nats-server refuses one given both in the file and on the command line.
    pub store_dir: PathBuf,
    /// Every node's server name and route (cluster) port, this one's included: the
    /// file's `routes` must point at these.
    pub routes: Vec<(String, u16)>,
    /// The cluster's temp directory, where the node's file may be written.
    pub dir: PathBuf,
}

/// Writes node `setup`'s configuration file and says where it is.
pub type NodeConfigFn = dyn Fn(&NodeSetup) -> std::io::Result<PathBuf> + Send + Sync;
/// A client's options (credentials, TLS) for a cluster that requires them.
pub type ClientOptionsFn = dyn Fn() -> nats::Options + Send + Sync;

/// How the nodes of a configured cluster are run and reached.
struct Configured {
    node_config: Box<NodeConfigFn>,
    client: Box<ClientOptionsFn>,
}

impl fmt::Debug for Configured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Configured { .. }")
    }
}

#[derive(Debug)]
pub struct NatsCluster {
    binary: PathBuf,
    cluster_name: String,
    dir: TempDir,
    nodes: Vec<Node>,
    /// `None`: every setting on the command line, no auth, no TLS.
    configured: Option<Configured>,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until JetStream has a meta leader that sees every
    /// other node current and answers API requests. Retries with other ports if one was
    /// taken in the meantime (tests start servers in parallel).
    pub fn start(size: usize) -> Result<NatsCluster, NatsClusterError> {
        let names: Vec<String> = (0..size).map(|i| format!("n{i}")).collect();
        NatsCluster::start_nodes(&names, None)
    }

    /// Starts one node per name in `names`, each from the configuration file
    /// `node_config` writes for it (`-c FILE --name NAME`, as a deployment runs them).
    /// The command line adds only the listen addresses (`127.0.0.1`, the node's client,
    /// monitoring and route ports) and `-js`; the file supplies the rest, and must set
    /// the node's `store_dir` and name every node's route port in its `routes` (see
    /// [`NodeSetup`]). The monitoring port must stay plain HTTP. `client` gives the
    /// options (credentials, TLS) of the cluster's own probe connections, made to
    /// `nats://127.0.0.1:PORT`, and has to be allowed `$JS.API.INFO`.
    pub fn start_configured(
        names: &[&str],
        node_config: Box<NodeConfigFn>,
        client: Box<ClientOptionsFn>,
    ) -> Result<NatsCluster, NatsClusterError> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        NatsCluster::start_nodes(
            &names,
            Some(Configured {
                node_config,
                client,
            }),
        )
    }

    fn start_nodes(
        names: &[String],
        mut configured: Option<Configured>,
    ) -> Result<NatsCluster, NatsClusterError> {
        let size = names.len();
        assert!(size >= 1, "a cluster needs at least one node");
        let binary = super::nats_server::find_binary().ok_or(NatsClusterError::NotFound)?;
        let mut last_err = None;
        for _ in 0..3 {
            let dir = TempDir::new("nats-cluster")?;
            let token = uuid::Uuid::new_v4().simple().to_string();
            let ports = free_ports(size * 3)?;
            let nodes = (0..size)
                .map(|i| Node {
                    name: names[i].clone(),
                    client_port: ports[i * 3],
                    cluster_port: ports[i * 3 + 1],
                    monitor_port: ports[i * 3 + 2],
                    child: None,
                })
                .collect();
            let mut cluster = NatsCluster {
                binary: binary.clone(),
                cluster_name: format!("runner-test-{}", &token[..10]),
                dir,
                nodes,
                configured: configured.take(),
            };
            let started = (0..size).try_for_each(|i| cluster.spawn(i));
            match started.and_then(|()| cluster.wait_healthy(HEALTH_WAIT)) {
                Ok(()) => return Ok(cluster),
                Err(e) => {
                    // Stop what did start; keep the configuration for the next try.
                    for i in 0..size {
                        cluster.kill(i);
                    }
                    configured = cluster.configured.take();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or(NatsClusterError::NotFound))
    }

    /// Where the cluster found its binary: lets callers say which one ran.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Every node's client URL, comma-separated: what `nats::connect` (and so
    /// `nats.url`) takes as a server list.
    pub fn url(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.node_url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s client URL.
    pub fn node_url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Node `i`'s HTTP monitoring endpoint (`/varz`, `/jsz`, `/connz`…).
    pub fn monitor_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].monitor_port)
    }

    /// Node `i`'s log file (it names refused connections and permissions violations).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.nodes[i].name))
    }

    /// Node `i`'s server name, as JetStream reports leaders and peers.
    pub fn node_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The node whose server name is `name`.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// The node a client connection named `client_name` is connected to (read from each
    /// running node's `/connz`); `None` if no node has one.
    pub fn node_of_client(&self, client_name: &str) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .find(|&i| {
                self.monitor(i, "/connz?limit=4096")
                    .and_then(|v| v["connections"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c["name"].as_str() == Some(client_name))
            })
    }

    /// The JetStream meta leader, as the running nodes report it.
    pub fn meta_leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .find_map(|i| {
                let jsz = self.monitor(i, "/jsz")?;
                self.node_index(jsz["meta_cluster"]["leader"].as_str()?)
            })
    }

    /// Kills node `i` (SIGKILL): what a crashed broker looks like to clients and to the
    /// other nodes.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on the same ports with the same store, and waits until it
    /// has rejoined (the meta leader sees it current).
    pub fn restart(&mut self, i: usize) -> Result<(), NatsClusterError> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_healthy(HEALTH_WAIT)
    }

    /// Waits until every running node reports the same meta leader, the leader sees
    /// every other running node as a current peer, and the JetStream API answers.
    pub fn wait_healthy(&self, waited: Duration) -> Result<(), NatsClusterError> {
        let deadline = Instant::now() + waited;
        let mut why = String::from("not checked yet");
        while Instant::now() < deadline {
            match self.meta_health() {
                Ok(()) => match self.api_answers() {
                    Ok(()) => return Ok(()),
                    Err(e) => why = e,
                },
                Err(e) => why = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(NatsClusterError::NotHealthy { waited, why })
    }

    /// The meta group as the monitoring endpoints show it: `Err` says what is missing.
    fn meta_health(&self) -> Result<(), String> {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .collect();
        let mut leader = None;
        for &i in &running {
            let jsz = self
                .monitor(i, "/jsz")
                .ok_or_else(|| format!("{} does not answer /jsz", self.nodes[i].name))?;
            let said = jsz["meta_cluster"]["leader"].as_str().unwrap_or_default();
            if said.is_empty() {
                return Err(format!("{} knows no meta leader", self.nodes[i].name));
            }
            match leader {
                None => leader = Some(said.to_string()),
                Some(ref l) if l != said => {
                    return Err(format!("nodes disagree on the meta leader: {l} vs {said}"))
                }
                Some(_) => {}
            }
        }
        let leader = leader.ok_or("no node is running")?;
        let li = self
            .node_index(&leader)
            .ok_or_else(|| format!("meta leader {leader} is not one of this cluster's nodes"))?;
        if self.nodes.len() == 1 {
            return Ok(());
        }
        let jsz = self
            .monitor(li, "/jsz")
            .ok_or_else(|| format!("leader {leader} does not answer /jsz"))?;
        let peers = jsz["meta_cluster"]["replicas"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for &i in &running {
            if i == li {
                continue;
            }
            let name = &self.nodes[i].name;
            let current = peers.iter().any(|p| {
                p["name"].as_str() == Some(name)
                    && p["current"].as_bool() == Some(true)
                    && p["offline"].as_bool() != Some(true)
            });
            if !current {
                return Err(format!("leader {leader} does not see {name} current"));
            }
        }
        Ok(())
    }

    /// A JetStream API request through a client connection gets an answer.
    fn api_answers(&self) -> Result<(), String> {
        let urls: Vec<String> = (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .map(|i| self.node_url(i))
            .collect();
        let options = match &self.configured {
            Some(c) => (c.client)(),
            None => nats::Options::new(),
        };
        let nc = options
            .with_name("nats-cluster-probe")
            .connect(urls.join(","))
            .map_err(|e| format!("connect: {e}"))?;
        let answer = nats::jetstream::new(nc.clone()).account_info();
        nc.close();
        answer
            .map(|_| ())
            .map_err(|e| format!("JetStream account info: {e}"))
    }

    /// `path` of node `i`'s monitoring endpoint as JSON.
    fn monitor(&self, i: usize, path: &str) -> Option<Value> {
        let url = format!("{}{path}", self.monitor_url(i));
        let answer = ureq::get(&url)
            .timeout(Duration::from_secs(2))
            .call()
            .ok()?;
        serde_json::from_str(&answer.into_string().ok()?).ok()
    }

    /// Starts node `i` and waits until it accepts client connections.
    fn spawn(&mut self, i: usize) -> Result<(), NatsClusterError> {
        let (name, client_port) = (self.nodes[i].name.clone(), self.nodes[i].client_port);
        let (cluster_port, monitor_port) = (self.nodes[i].cluster_port, self.nodes[i].monitor_port);
        let log = self.log_path(i);
        let earlier = super::nats_server::ready_lines(&log);
        let mut cmd = Command::new(&self.binary);
        cmd.args(["-a", "127.0.0.1", "-p", &client_port.to_string()])
            .args(["-n", &name, "-js"])
            .args(["-m", &monitor_port.to_string()])
            .arg("--cluster")
            .arg(format!("nats://127.0.0.1:{cluster_port}"));
        match &self.configured {
            Some(configured) => {
                let setup = NodeSetup {
                    index: i,
                    name: name.clone(),
                    client_port,
                    cluster_port,
                    monitor_port,
                    store_dir: self.dir.path().join(&name),
                    routes: self
                        .nodes
                        .iter()
                        .map(|n| (n.name.clone(), n.cluster_port))
                        .collect(),
                    dir: self.dir.path().to_path_buf(),
                };
                cmd.arg("-c").arg((configured.node_config)(&setup)?);
            }
            None => {
                let routes: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|n| n.name != name)
                    .map(|n| format!("nats://127.0.0.1:{}", n.cluster_port))
                    .collect();
                cmd.arg("-sd")
                    .arg(self.dir.path().join(&name))
                    .args(["--cluster_name", &self.cluster_name]);
                if !routes.is_empty() {
                    cmd.arg("--routes").arg(routes.join(","));
                }
            }
        }
        let mut child = cmd
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        if super::nats_server::wait_ready(&mut child, client_port, &log, earlier, NODE_WAIT) {
            self.nodes[i].child = Some(child);
            return Ok(());
        }
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        Err(NatsClusterError::NotReady {
            node: i,
            port: client_port,
            waited: NODE_WAIT,
            log: tail.join(" | "),
        })
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// `n` distinct free ports: all bound at once, then released.
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}
