//! OpenBao in high availability, and the Kubernetes Services in front of it: a real three-node
//! raft cluster ([`RaftCluster`]), a Service modelled as a TCP proxy the test re-points
//! ([`Service`]), and a listener that records anything sent to an address nobody should
//! contact ([`Recorder`]).
//!
//! Why a real cluster: what a standby answers while the active node is gone (a `307` to the
//! dead node's `api_addr`, then `500 local node not active but active cluster node not found`,
//! then forwarding to the new active node) comes from OpenBao's own HA code, which a dev server
//! or a fake would only imitate.
//!
//! The cluster ([`RaftCluster::start`], about 3 s; another ~4 s until every node votes, see
//! [`RaftCluster::wait_voters`]):
//! * three `bao server -config` processes with integrated storage, each on its own loopback API
//!   and cluster ports ([`free_port`]) and in its own directory under [`harness_dir`]; node 0
//!   is initialized (one Shamir key share) and unsealed, the others `operator raft join` it and
//!   are unsealed; KV v2 at `secret/`, like the dev server;
//! * `performance_multiplier = 1`: raft's heartbeat timeout is 1 s, so the first node elects
//!   itself and a dead leader is replaced within about 2 s (the default, 5, takes 5–10 s);
//! * autopilot promotes a joined node to voter once it has been healthy for
//!   `server_stabilization_time`, 10 s by default: set to 1 s here, and reconciled every 500 ms;
//! * with `standby_reads: false`, `disable_standby_reads = true`: standbys forward every request
//!   to the active node, as Vault's (non-enterprise) standbys do. OpenBao 2.x standbys answer
//!   reads themselves by default and forward only writes (renewals, logins, dynamic secrets).
//!
//! [`Server`] is implemented for the cluster (its CLI goes to the node last known active) and
//! for [`NodeRef`] (one node), so the harness's helpers (kubernetes auth, pods, the database
//! engine) set it up as they would a dev server.
//!
//! Lifetime: like [`super::server::PersistentBao`], every node is spawned through
//! [`spawn_tied_to_process`] and killed when the [`RaftCluster`] is dropped (paused nodes
//! included: SIGKILL ends a stopped process); the raft data is deleted then, the logs are kept
//! for inspection until the next run. [`Service`] and [`Recorder`] stop listening when
//! dropped, and the Service shuts the connections it still relays.

use super::{
    bao_bin, free_port, harness_dir, http, scrub_bao_env, spawn_tied_to_process, unique, Server,
};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One `bao server` of the cluster.
struct Node {
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    /// None once killed.
    child: Option<Child>,
}

impl Node {
    fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Writes the config for fresh ports and starts the server; waits until it answers
    /// `/v1/sys/health` with any status (501: not initialized).
    fn launch(dir: &Path, id: usize, standby_reads: bool) -> Result<Node, String> {
        let port = free_port();
        let cluster_port = std::iter::repeat_with(free_port).find(|p| *p != port);
        let cluster_port = cluster_port.expect("a second free port");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let config = format!(
            r#"storage "raft" {{
  path    = "{data}"
  node_id = "node{id}"
  # A dead leader is noticed after one heartbeat timeout: 1 s here, 5 s by default.
  performance_multiplier = 1
  autopilot_reconcile_interval = "500ms"
  autopilot_update_interval    = "250ms"
}}
listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable     = true
}}
api_addr     = "http://127.0.0.1:{port}"
cluster_addr = "https://127.0.0.1:{cluster_port}"
disable_standby_reads = {disable}
"#,
            data = data.display(),
            disable = !standby_reads,
        );
        std::fs::write(dir.join("config.hcl"), config).map_err(|e| e.to_string())?;
        let log = dir.join("server.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("open {}: {e}", log.display()))?;
        let mut cmd = Command::new(bao_bin());
        scrub_bao_env(&mut cmd);
        cmd.arg("server")
            .arg(format!("-config={}", dir.join("config.hcl").display()))
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file);
        let mut child = spawn_tied_to_process(cmd)
            .map_err(|e| format!("cannot start `{} server`: {e}", bao_bin().display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "exited early with {status} (log: {})",
                    log.display()
                ));
            }
            if health(port).is_some() {
                return Ok(Node {
                    port,
                    dir: dir.to_path_buf(),
                    log,
                    child: Some(child),
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer after 30s (log: {})", log.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The status of `GET /v1/sys/health` on `port`: 200 active, 429 standby, 501 not initialized,
/// 503 sealed; None if nothing answers. Never ask a paused node: its kernel still accepts the
/// connection, and the answer only comes after the 10 s read timeout.
fn health(port: u16) -> Option<u16> {
    http("GET", port, "/v1/sys/health", &[], "")
        .ok()
        .map(|(status, _)| status)
}

/// A three-node OpenBao raft cluster on loopback; every node killed on drop.
pub struct RaftCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
    unseal_key: String,
    root_token: String,
    /// The node the cluster's CLI talks to: the one last seen active.
    active: AtomicUsize,
}

/// One node of a [`RaftCluster`], as a [`Server`] of its own (its CLI goes to that node).
pub struct NodeRef<'a> {
    cluster: &'a RaftCluster,
    index: usize,
}

impl RaftCluster {
    /// Starts three nodes, initializes and unseals node 0 (active), joins and unseals the two
    /// others (standbys), and enables KV v2 at `secret/`. The joined nodes vote only once
    /// autopilot promotes them: [`RaftCluster::wait_voters`] before killing the leader.
    pub fn start(standby_reads: bool) -> RaftCluster {
        let dir = harness_dir().join(unique("raft"));
        let mut nodes = Vec::new();
        for id in 0..3 {
            let node_dir = dir.join(format!("node{id}"));
            let mut failures = Vec::new();
            // A free port may be taken before the server binds it: then it exits at once, and
            // fresh ports are tried.
            let node = (0..3).find_map(|_| {
                Node::launch(&node_dir, id, standby_reads)
                    .map_err(|e| failures.push(e))
                    .ok()
            });
            let node =
                node.unwrap_or_else(|| panic!("node{id} never answered:\n{}", failures.join("\n")));
            nodes.push(node);
        }
        let mut cluster = RaftCluster {
            nodes,
            dir,
            unseal_key: String::new(),
            root_token: String::new(),
            active: AtomicUsize::new(0),
        };
        cluster.initialize();
        cluster
    }

    fn initialize(&mut self) {
        let init = [
            "operator",
            "init",
            "-key-shares=1",
            "-key-threshold=1",
            "-format=json",
        ];
        let out = self.node(0).cli_as("", &init);
        let v: Value = serde_json::from_str(&out).expect("operator init JSON");
        self.unseal_key = v["unseal_keys_b64"][0].as_str().expect("unseal key").into();
        self.root_token = v["root_token"].as_str().expect("root token").into();
        self.unseal(0);
        self.wait_for("node0 active (200)", |c| health(c.port(0)) == Some(200));
        // Promote joined nodes after 1 s of health instead of 10 s.
        self.cli(&[
            "operator",
            "raft",
            "autopilot",
            "set-config",
            "-server-stabilization-time=1s",
        ]);
        let leader = self.addr_of(0);
        for i in 1..self.nodes.len() {
            self.node(i)
                .cli_as("", &["operator", "raft", "join", &leader]);
            // Joining completes with the unseal: the node needs the key to read the leader's
            // answer to its challenge.
            self.unseal(i);
        }
        for i in 1..self.nodes.len() {
            let what = format!("node{i} standby (429)");
            self.wait_for(&what, |c| health(c.port(i)) == Some(429));
        }
        self.cli(&["secrets", "enable", "-path=secret", "-version=2", "kv"]);
    }

    /// `PUT /v1/sys/unseal` on node `i` with the one key share.
    fn unseal(&self, i: usize) {
        let body = json!({ "key": self.unseal_key }).to_string();
        match http("PUT", self.port(i), "/v1/sys/unseal", &[], &body) {
            Ok((200, _)) => {}
            other => panic!(
                "unseal of node{i} failed: {other:?} (logs: {})",
                self.dir.display()
            ),
        }
    }

    /// Node `i` as a [`Server`] of its own.
    pub fn node(&self, i: usize) -> NodeRef<'_> {
        NodeRef {
            cluster: self,
            index: i,
        }
    }

    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// `http://127.0.0.1:PORT` of node `i`: its `api_addr`, where its standby redirects point.
    pub fn addr_of(&self, i: usize) -> String {
        self.nodes[i].addr()
    }

    /// The node last seen active ([`RaftCluster::wait_active`]).
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Health status of node `i` (see [`health`]); never call it on a paused node.
    pub fn health(&self, i: usize) -> Option<u16> {
        health(self.port(i))
    }

    /// How many servers of the raft configuration vote.
    pub fn voters(&self) -> usize {
        let out = self.cli(&["operator", "raft", "list-peers", "-format=json"]);
        let v: Value = serde_json::from_str(&out).expect("list-peers JSON");
        let servers = v["data"]["config"]["servers"].as_array().cloned();
        let servers = servers.unwrap_or_default();
        servers.iter().filter(|s| s["voter"] == true).count()
    }

    /// Waits until all three nodes vote (autopilot promotes a joined node after 1 s of health,
    /// about 4 s after the join): only then does the loss of the leader leave a quorum.
    pub fn wait_voters(&self) {
        let n = self.nodes.len();
        self.wait_for(&format!("{n} voters"), |c| c.voters() == n);
    }

    /// SIGKILL: node `i` dies as a node whose pod is deleted or whose machine fails would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: node `i` stops answering anyone, raft included, until [`RaftCluster::resume`].
    /// With the leader dead, pausing a second node leaves no quorum, so no election can finish:
    /// the test decides how long the cluster has no active node.
    pub fn pause(&self, i: usize) {
        self.signal(i, libc::SIGSTOP);
    }

    /// SIGCONT after [`RaftCluster::pause`].
    pub fn resume(&self, i: usize) {
        self.signal(i, libc::SIGCONT);
    }

    fn signal(&self, i: usize, sig: libc::c_int) {
        let child = self.nodes[i].child.as_ref().expect("node was killed");
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    }

    /// Waits until one of `among` (nodes neither killed nor paused) is active with `secret/`
    /// readable, makes it the node the CLI talks to, and returns it.
    pub fn wait_active(&self, among: &[usize], timeout: Duration) -> usize {
        let auth = [("X-Vault-Token", self.root_token.as_str())];
        let deadline = Instant::now() + timeout;
        loop {
            for &i in among {
                let mounted = || {
                    let r = http("GET", self.port(i), "/v1/sys/mounts/secret", &auth, "");
                    matches!(r, Ok((200, _)))
                };
                if health(self.port(i)) == Some(200) && mounted() {
                    self.active.store(i, Ordering::SeqCst);
                    return i;
                }
            }
            assert!(
                Instant::now() < deadline,
                "none of nodes {among:?} active after {timeout:?} (logs: {})",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for(&self, what: &str, done: impl Fn(&RaftCluster) -> bool) {
        super::wait_for_server(what, &self.dir, || done(self));
    }
}

impl Server for RaftCluster {
    fn addr(&self) -> String {
        self.addr_of(self.active())
    }
    fn root_token(&self) -> &str {
        &self.root_token
    }
    /// The directory holding every node's `server.log`.
    fn log_path(&self) -> &Path {
        &self.dir
    }
}

impl Server for NodeRef<'_> {
    fn addr(&self) -> String {
        self.cluster.addr_of(self.index)
    }
    fn root_token(&self) -> &str {
        &self.cluster.root_token
    }
    fn log_path(&self) -> &Path {
        &self.cluster.nodes[self.index].log
    }
}

impl Drop for RaftCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = std::fs::remove_dir_all(node.dir.join("data"));
        }
    }
}

/// A Kubernetes Service in front of OpenBao, as kube-proxy makes one: each TCP connection goes
/// to one ready endpoint, round-robin, and stays with it for its life (a re-pointed Service
/// leaves established connections alone); with no endpoint, a connection is closed at once.
/// The test plays the endpoints controller with [`Service::set_endpoints`].
pub struct Service {
    port: u16,
    state: Arc<ServiceState>,
}

struct ServiceState {
    endpoints: Mutex<Vec<u16>>,
    next: AtomicUsize,
    /// The upstream port of every connection accepted, 0 for one closed for want of endpoints.
    routed: Mutex<Vec<u16>>,
    /// Client sides of the connections relayed, shut when the Service is dropped.
    open: Mutex<Vec<TcpStream>>,
    closed: AtomicBool,
}

impl Service {
    /// Listens on 127.0.0.1 (a free port) and forwards to the nodes on `endpoints`.
    pub fn start(endpoints: &[u16]) -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Service");
        let port = listener.local_addr().expect("Service address").port();
        let state = Arc::new(ServiceState {
            endpoints: Mutex::new(endpoints.to_vec()),
            next: AtomicUsize::new(0),
            routed: Mutex::new(Vec::new()),
            open: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if st.closed.load(Ordering::SeqCst) {
                    return;
                }
                relay(client, &st);
            }
        });
        Service { port, state }
    }

    /// `http://127.0.0.1:PORT`: the address secretdrop is given.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The ready endpoints from now on; connections already relayed keep their node.
    pub fn set_endpoints(&self, endpoints: &[u16]) {
        if let Ok(mut e) = self.state.endpoints.lock() {
            *e = endpoints.to_vec();
        }
    }

    /// The upstream port of every connection accepted so far (0: closed, no endpoint).
    pub fn routed(&self) -> Vec<u16> {
        self.state
            .routed
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

/// Picks an endpoint for `client` and copies bytes both ways on two threads until either side
/// closes; with no endpoint, or one that refuses, the client is closed at once.
fn relay(client: TcpStream, st: &Arc<ServiceState>) {
    let upstream = st.endpoints.lock().ok().and_then(|e| match e.len() {
        0 => None,
        n => Some(e[st.next.fetch_add(1, Ordering::SeqCst) % n]),
    });
    if let Ok(mut r) = st.routed.lock() {
        r.push(upstream.unwrap_or(0));
    }
    let Some(port) = upstream else {
        return; // dropping `client` closes it
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(server) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return;
    };
    if let (Ok(mut open), Ok(c)) = (st.open.lock(), client.try_clone()) {
        open.push(c);
    }
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        move || {
            let _ = std::io::copy(&mut from, &mut to);
            // Pass the end of the stream on; the other direction ends on its own.
            let _ = to.shutdown(Shutdown::Write);
        }
    };
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(pipe(client, server));
    std::thread::spawn(pipe(s2, c2));
}

impl Drop for Service {
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `closed`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Ok(open) = self.state.open.lock() {
            for c in open.iter() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Listens on a given port (a dead node's API port, once the node is gone) and records the
/// request line of every connection, answering 503: a client that followed a redirect to that
/// address shows up here.
pub struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    closed: Arc<AtomicBool>,
}

impl Recorder {
    /// Binds 127.0.0.1:`port`, retrying for up to a second while the dead owner's socket goes.
    pub fn bind(port: u16) -> Recorder {
        let deadline = Instant::now() + Duration::from_secs(1);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() > deadline => panic!("bind 127.0.0.1:{port}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let (log, stop) = (seen.clone(), closed.clone());
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                let _ = BufReader::new(&conn).read_line(&mut line);
                if let Ok(mut l) = log.lock() {
                    l.push(line.trim_end().to_string());
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Recorder { port, seen, closed }
    }

    /// The request line of every connection received (an empty line: it sent nothing).
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
