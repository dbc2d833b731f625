//! A real (non-dev) OpenBao server that keeps its data across restarts, and rate-limit quotas.
//!
//! Why: the dev server ([`super::Bao`]) lives in memory and can be neither restarted nor
//! re-unsealed, so it cannot show what the sidecar does when OpenBao restarts or is sealed
//! under it: its token and leases must survive, and it must wait for the unseal instead of
//! giving up. [`PersistentBao`] is the smallest production-like setup that can: integrated
//! (raft) storage on disk as a single node (OpenBao 2.x has no "file" storage any more, and
//! ignores `disable_mlock`), a plain-HTTP listener on a fixed port, one Shamir key share.
//! After [`PersistentBao::start`] it looks like a dev server to callers (unsealed, KV v2 at
//! `secret/`, a root token), and it implements [`Server`], so helpers such as
//! [`super::scenario::Pod::with_policy`] and [`super::postgres::enable_database_engine`]
//! accept it.
//!
//! Lifetime: the `bao server` child is spawned through [`spawn_tied_to_process`], i.e. from the
//! harness-spawner thread, which never exits, so it dies with the test *process* whichever
//! thread called [`PersistentBao::start`] or [`PersistentBao::restart`]. Within the process it
//! lives as long as the [`PersistentBao`] value: own it in the test's own thread (a local), and
//! it is killed when the test ends, panicking or not. Do not put one in a static (it would
//! never be dropped) or share one between tests: restarts and seals would hit the others.
//!
//! Rate limiting ([`add_rate_limit_quota`]): OpenBao 2.x answers 429 past a quota's rate, but
//! sends `Retry-After` (and `X-Ratelimit-Limit`/`-Remaining`/`-Reset`) only once
//! `sys/quotas/config` has `enable_rate_limit_response_headers=true`, which the helper sets.
//! Even then `Retry-After` is `0` (and `X-Ratelimit-Reset` always `0`) unless the quota has a
//! `block_interval`, when it counts down the block in whole seconds and the `X-Ratelimit-*`
//! headers disappear after the first refusal.

use super::{
    bao_bin, free_port, harness_dir, http, scrub_bao_env, spawn_tied_to_process, unique, Server,
};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An initialized, raft-backed OpenBao server on `127.0.0.1:PORT`; killed on drop.
pub struct PersistentBao {
    port: u16,
    /// Holds `config.hcl`, `data/` (the raft storage) and `server.log`.
    dir: PathBuf,
    log: PathBuf,
    /// None while stopped.
    child: Option<Child>,
    unseal_key: String,
    root_token: String,
}

impl PersistentBao {
    /// Starts a fresh server, initializes it with one key share, unseals it, waits until it is
    /// active and enables KV v2 at `secret/`. About 2 s, 1–2 s of it the raft heartbeat
    /// timeout after which its single node elects itself leader.
    pub fn start() -> PersistentBao {
        let mut failures = Vec::new();
        // Like Bao::start_new: a free port may be taken before the server binds it; then the
        // server exits at once and a new directory and port are tried.
        for _ in 0..3 {
            let port = free_port();
            let cluster_port = std::iter::repeat_with(free_port).find(|p| *p != port);
            let cluster_port = cluster_port.expect("a second free port");
            let dir = harness_dir().join(unique("persistent-bao"));
            let data = dir.join("data");
            std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let config = format!(
                r#"# Integrated storage (raft): OpenBao 2.x has dropped the "file" backend.
storage "raft" {{
  path    = "{data}"
  node_id = "node1"
  # A lone voter still waits out one heartbeat timeout before electing itself: keep it short.
  performance_multiplier = 1
}}
listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable     = true
}}
api_addr     = "http://127.0.0.1:{port}"
cluster_addr = "https://127.0.0.1:{cluster_port}"
"#,
                data = data.display()
            );
            std::fs::write(dir.join("config.hcl"), config).expect("write config.hcl");
            let mut bao = PersistentBao {
                port,
                log: dir.join("server.log"),
                dir,
                child: None,
                unseal_key: String::new(),
                root_token: String::new(),
            };
            match bao.launch() {
                Ok(()) => {
                    bao.initialize();
                    return bao;
                }
                Err(e) => failures.push(format!("port {port}: {e} (log: {})", bao.log.display())),
            }
        }
        panic!("OpenBao server never answered:\n{}", failures.join("\n"));
    }

    /// `http://127.0.0.1:PORT`: the same across restarts.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The root token from `bao operator init`; valid across restarts.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }
    /// The only unseal key share (threshold 1).
    pub fn unseal_key(&self) -> &str {
        &self.unseal_key
    }
    /// The server's pid, or None while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    /// stdout+stderr of every run of this server, appended across restarts.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
    /// The directory holding `config.hcl` and the raft storage `data/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The status of `GET /v1/sys/health`: 200 active, 429 standby, 501 not initialized,
    /// 503 sealed; None if nothing answers (stopped, or still starting).
    pub fn health(&self) -> Option<u16> {
        http("GET", self.port, "/v1/sys/health", &[], "")
            .ok()
            .map(|(status, _)| status)
    }

    /// SIGTERM, then waits for the exit (about 1 s: OpenBao seals, then shuts raft down);
    /// SIGKILL after 5 s. A no-op when already stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// [`PersistentBao::stop`], then the same config (same port, same storage) again; unseals
    /// with the stored key and waits until active (about 1–1.5 s in all, most of it the stop).
    /// Tokens, leases, mounts and secrets survive; leases that expired meanwhile are revoked
    /// right after the unseal.
    /// Panics if another process took one of its two ports (API, raft cluster) meanwhile:
    /// possible, as with any [`free_port`], but unlikely within a second.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.launch() {
            panic!("restart failed: {e} (log: {})", self.log.display());
        }
        self.unseal();
    }

    /// `bao operator seal`; returns once health says sealed (503).
    pub fn seal(&self) {
        self.cli(&["operator", "seal"]);
        self.wait_for("sealed (503)", |b| b.health() == Some(503));
    }

    /// Unseals with the stored key and waits until active with `secret/` mounted.
    pub fn unseal(&self) {
        self.send_unseal_key();
        self.wait_active();
    }

    /// `PUT /v1/sys/unseal` with the one key share (over HTTP: saves a CLI run).
    fn send_unseal_key(&self) {
        let body = json!({ "key": self.unseal_key }).to_string();
        match http("PUT", self.port, "/v1/sys/unseal", &[], &body) {
            Ok((200, _)) => {}
            other => panic!("unseal failed: {other:?} (log: {})", self.log.display()),
        }
    }

    /// Spawns `bao server` and waits until it answers health with any status (a fresh server
    /// answers 501, a restarted one 503).
    fn launch(&mut self) -> Result<(), String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("open {}: {e}", self.log.display()))?;
        let mut cmd = Command::new(bao_bin());
        scrub_bao_env(&mut cmd);
        cmd.arg("server")
            .arg(format!("-config={}", self.dir.join("config.hcl").display()))
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file);
        let mut child = spawn_tied_to_process(cmd)
            .map_err(|e| format!("cannot start `{} server`: {e}", bao_bin().display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited early with {status}"));
            }
            if self.health().is_some() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("no answer from /v1/sys/health after 30s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// First start only: init (one share), unseal, and the dev server's KV v2 at `secret/`.
    fn initialize(&mut self) {
        assert_eq!(
            self.health(),
            Some(501),
            "a fresh server should be uninitialized"
        );
        let init = [
            "operator",
            "init",
            "-key-shares=1",
            "-key-threshold=1",
            "-format=json",
        ];
        let out = self.cli_as("", &init);
        let v: Value = serde_json::from_str(&out).expect("operator init JSON");
        self.unseal_key = v["unseal_keys_b64"][0].as_str().expect("unseal key").into();
        self.root_token = v["root_token"].as_str().expect("root token").into();
        self.send_unseal_key();
        // Before the mount exists, "active" means health 200 alone.
        self.wait_for("active (200)", |b| b.health() == Some(200));
        self.cli(&["secrets", "enable", "-path=secret", "-version=2", "kv"]);
        self.wait_active();
    }

    /// Active = health 200 and `secret/` readable: after an unseal the mounts are set up
    /// again, and a test's first `kv get` must not race that.
    fn wait_active(&self) {
        let auth = [("X-Vault-Token", self.root_token.as_str())];
        let mounted = |b: &PersistentBao| {
            let r = http("GET", b.port, "/v1/sys/mounts/secret", &auth, "");
            matches!(r, Ok((200, _)))
        };
        self.wait_for("active with secret/ mounted", |b| {
            b.health() == Some(200) && mounted(b)
        });
    }

    fn wait_for(&self, what: &str, done: impl Fn(&PersistentBao) -> bool) {
        super::wait_for_server(what, &self.log, || done(self));
    }
}

impl Server for PersistentBao {
    fn addr(&self) -> String {
        PersistentBao::addr(self)
    }
    fn root_token(&self) -> &str {
        &self.root_token
    }
    fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for PersistentBao {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Creates or replaces rate-limit quota `name`: `rate` requests per second (a token bucket
/// per client IP, and every client here is 127.0.0.1) on `path`, which must lie in an existing
/// mount. A mount path (`secret/`) covers the whole mount; any other path matches exactly
/// (`secret/data/app` does not cover `secret/data/app/x`) unless it ends in `*`
/// (`secret/data/app/*`). The most specific quota wins. On a shared server give each test its
/// own path, or its burst throttles its neighbours. Also turns on the 429's `Retry-After`
/// header ([`enable_rate_limit_headers`]).
pub fn add_rate_limit_quota(bao: &impl Server, name: &str, rate: f64, path: &str) {
    add_rate_limit_quota_with(bao, name, rate, path, &[]);
}

/// [`add_rate_limit_quota`] with more `key=value` parameters, which override the defaults:
/// `interval=10s` (the refill period, default 1s), `block_interval=5s` (once exceeded, refuse
/// everything for that long: `Retry-After` then counts it down), `role=R` (login quotas).
pub fn add_rate_limit_quota_with(
    bao: &impl Server,
    name: &str,
    rate: f64,
    path: &str,
    extra: &[&str],
) {
    enable_rate_limit_headers(bao);
    let mut body = Map::new();
    body.insert("rate".into(), json!(rate));
    body.insert("interval".into(), json!("1s"));
    body.insert("path".into(), json!(path));
    for kv in extra {
        let (k, v) = kv
            .split_once('=')
            .unwrap_or_else(|| panic!("quota parameter {kv:?} is not key=value"));
        body.insert(k.into(), json!(v));
    }
    let quota = format!("sys/quotas/rate-limit/{name}");
    bao.cli_stdin(&["write", &quota, "-"], &Value::Object(body).to_string());
}

/// Deletes rate-limit quota `name` (succeeds if there is none).
pub fn remove_rate_limit_quota(bao: &impl Server, name: &str) {
    bao.cli(&["delete", &format!("sys/quotas/rate-limit/{name}")]);
}

/// Sets `enable_rate_limit_response_headers=true` in `sys/quotas/config`. Without it a 429
/// carries no `Retry-After`. A write of that endpoint resets the fields it omits, and
/// `rate_limit_exempt_paths` defaults to sys/health, sys/seal-status, sys/unseal, …: so this
/// reads the config and writes it back whole, exemptions included.
pub fn enable_rate_limit_headers(bao: &impl Server) {
    let out = bao.cli(&["read", "-format=json", "sys/quotas/config"]);
    let v: Value = serde_json::from_str(&out).expect("quota config JSON");
    let mut config = v["data"].as_object().cloned().unwrap_or_default();
    if config.get("enable_rate_limit_response_headers") == Some(&json!(true)) {
        return;
    }
    config.insert("enable_rate_limit_response_headers".into(), json!(true));
    let body = Value::Object(config).to_string();
    bao.cli_stdin(&["write", "sys/quotas/config", "-"], &body);
}
