//! A real image registry for the tests: Debian's `docker-registry` (distribution 2.8),
//! started on a loopback port with TLS from a test CA of its own, optionally behind htpasswd
//! Basic auth, storing into the test's directory. Images are pushed over the registry API
//! itself (blobs by monolithic upload, then the manifest), with curl.
//!
//! Also [`StandIn`]: a small HTTPS registry of the test's own for what the real one does not
//! do: Bearer tokens from a realm, and blobs redirected to another origin (a blob store),
//! recording every request's Authorization.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

use super::{free_port, spawn_tied_to_process, wait_for_server};

/// An (os, architecture) pair.
pub type Platform<'a> = (&'a str, &'a str);
/// A pushed manifest's digest and size.
pub type Pushed = (String, usize);

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub struct TestRegistry {
    pub port: u16,
    /// The CA that issued the registry's certificate (a client's extra trust anchor).
    pub ca: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    user: Option<(String, String)>,
    child: Child,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A CA and a server certificate for `localhost` issued by it, in `dir`.
pub fn tls_for_localhost(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca = super::pki::ca(dir, &format!("{name}-ca"));
    let (crt, key) = super::pki::server_cert(dir, name, &["localhost"], &ca);
    (ca.0, crt, key)
}

impl TestRegistry {
    /// Started in `dir` (its storage, config, certificates and log); with `user`, every
    /// request needs that user's Basic credentials.
    pub fn start(dir: &Path, user: Option<(&str, &str)>) -> TestRegistry {
        std::fs::create_dir_all(dir).unwrap();
        let (ca, crt, key) = tls_for_localhost(dir, "registry");
        let auth = match user {
            Some((u, p)) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", u, p])
                    .output()
                    .expect("htpasswd (Debian's apache2-utils; scripts/test.sh installs it)");
                assert!(out.status.success(), "htpasswd failed");
                std::fs::write(dir.join("htpasswd"), &out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                    dir.join("htpasswd").display()
                )
            }
            None => String::new(),
        };
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {}\n    key: {}\n{auth}",
                dir.join("data").display(),
                crt.display(),
                key.display()
            );
            let config_path = dir.join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = dir.join("registry.log");
            let mut cmd = Command::new(registry_bin());
            cmd.arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(dir.join("registry.err")).unwrap());
            let child = spawn_tied_to_process(cmd).expect("start docker-registry");
            let mut registry = TestRegistry {
                port,
                ca: ca.clone(),
                dir: dir.to_path_buf(),
                log: dir.join("registry.err"),
                user: user.map(|(u, p)| (u.to_string(), p.to_string())),
                child,
            };
            let up = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !up() && std::time::Instant::now() < deadline {
                if registry.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if up() {
                wait_for_server("answering /v2/", &registry.log, || {
                    let (code, _) =
                        registry.curl(&["-o", "/dev/null", "-w", "%{http_code}"], "/v2/");
                    code == "200" || code == "401"
                });
                return registry;
            }
            let _ = registry.child.kill();
        }
        panic!("docker-registry did not start (logs in {})", dir.display());
    }

    /// `localhost:PORT`, the registry host of image references.
    pub fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// curl against the registry with its CA and credentials: (stdout, stderr).
    fn curl(&self, args: &[&str], path: &str) -> (String, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&self.ca);
        if let Some((u, p)) = &self.user {
            cmd.args(["-u", &format!("{u}:{p}")]);
        }
        cmd.args(args).arg(format!("https://{}{path}", self.host()));
        let out = cmd.output().expect("curl");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Uploads `bytes` as a blob of `repo` (one monolithic POST); its digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let d = digest(bytes);
        let file = self.dir.join(format!("blob-{}", &d[7..19]));
        std::fs::write(&file, bytes).unwrap();
        // An upload session, then the blob in one PUT to it.
        let (headers, err) = self.curl(
            &["-o", "/dev/null", "-D", "-", "-X", "POST"],
            &format!("/v2/{repo}/blobs/uploads/"),
        );
        let location = headers
            .lines()
            .find_map(|l| {
                l.strip_prefix("Location: ")
                    .or_else(|| l.strip_prefix("location: "))
            })
            .unwrap_or_else(|| panic!("no upload Location for {repo}: {headers} {err}"))
            .trim()
            .to_string();
        let path = location
            .strip_prefix(&format!("https://{}", self.host()))
            .unwrap_or(&location);
        let sep = if path.contains('?') { '&' } else { '?' };
        let (code, err) = self.curl(
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &format!("@{}", file.display()),
            ],
            &format!("{path}{sep}digest={d}"),
        );
        assert_eq!(code, "201", "blob upload to {repo}: {err}");
        d
    }

    /// Puts `manifest` (of `media_type`) under `reference`; the manifest's digest.
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        manifest: &Value,
    ) -> String {
        let bytes = serde_json::to_vec(manifest).unwrap();
        let d = digest(&bytes);
        let file = self.dir.join(format!("manifest-{}", &d[7..19]));
        std::fs::write(&file, &bytes).unwrap();
        let (code, err) = self.curl(
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "PUT",
                "-H",
                &format!("Content-Type: {media_type}"),
                "--data-binary",
                &format!("@{}", file.display()),
            ],
            &format!("/v2/{repo}/manifests/{reference}"),
        );
        assert_eq!(code, "201", "manifest to {repo}:{reference}: {err}");
        d
    }

    /// A one-layer OCI image whose config has `entrypoint` and `cmd` (absent when `None`),
    /// tagged `tag`; the manifest's digest and size.
    pub fn push_image(
        &self,
        repo: &str,
        tag: &str,
        entrypoint: Option<&[&str]>,
        cmd: Option<&[&str]>,
        platform: (&str, &str),
    ) -> (String, usize) {
        let config = json!({
            "architecture": platform.1, "os": platform.0,
            "config": {"Entrypoint": entrypoint, "Cmd": cmd, "Env": ["PATH=/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": []}
        });
        self.push_config(repo, tag, &serde_json::to_vec(&config).unwrap())
    }

    /// An image whose config blob is exactly `config`; the manifest's digest and size.
    pub fn push_config(&self, repo: &str, tag: &str, config: &[u8]) -> (String, usize) {
        let layer = format!("layer of {repo}:{tag} {}", config.len()).into_bytes();
        let layer_digest = self.push_blob(repo, &layer);
        let config_digest = self.push_blob(repo, config);
        let manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}]
        });
        let size = serde_json::to_vec(&manifest).unwrap().len();
        (self.push_manifest(repo, tag, OCI_MANIFEST, &manifest), size)
    }

    /// An OCI index of `images` (platform → (manifest digest, size)), tagged `tag`.
    pub fn push_index(&self, repo: &str, tag: &str, images: &[(Platform, Pushed)]) -> String {
        let manifests: Vec<Value> = images
            .iter()
            .map(|((os, arch), (d, size))| {
                json!({
                    "mediaType": OCI_MANIFEST, "digest": d, "size": size,
                    "platform": {"os": os, "architecture": arch}
                })
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        self.push_manifest(repo, tag, OCI_INDEX, &index)
    }

    /// The requests secretdrop's client made for `repo`, as the registry logged them:
    /// `METHOD /v2/...` lines, in order.
    pub fn requests(&self, repo: &str) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let field = |l: &str, k: &str| -> Option<String> {
            let v = l.split(&format!(" {k}=")).nth(1)?;
            Some(match v.strip_prefix('"') {
                Some(q) => q.split('"').next()?.to_string(),
                None => v.split(' ').next()?.to_string(),
            })
        };
        text.lines()
            .filter(|l| l.contains("response completed") && l.contains("useragent=secretdrop/"))
            .filter_map(|l| {
                let uri = field(l, "http.request.uri")?;
                uri.starts_with(&format!("/v2/{repo}/"))
                    .then(|| Some(format!("{} {uri}", field(l, "http.request.method")?)))?
            })
            .collect()
    }
}

fn registry_bin() -> PathBuf {
    let p = PathBuf::from("/usr/bin/docker-registry");
    assert!(
        p.exists(),
        "docker-registry is not installed (Debian's docker-registry; scripts/test.sh installs it)"
    );
    p
}

/// One request the [`StandIn`] saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub port: u16,
    pub path: String,
    pub authorization: Option<String>,
}

/// A registry of the test's own at `localhost:PORT` that asks for a Bearer token from a realm
/// on its own host (`/token`, which wants Basic `user:pass`) and redirects blob GETs to a
/// second listener (`localhost:OTHER`, another origin) that serves them.
pub struct StandIn {
    pub port: u16,
    pub other: u16,
    pub ca: PathBuf,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl StandIn {
    /// Serves image `app:v1` whose config is `config`.
    pub fn start(dir: &Path, config: &[u8], user: (&str, &str)) -> StandIn {
        std::fs::create_dir_all(dir).unwrap();
        let (ca, crt, key) = tls_for_localhost(dir, "standin");
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&crt)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let tls = Arc::new(tls);
        let (main, blobs) = (
            TcpListener::bind("127.0.0.1:0").unwrap(),
            TcpListener::bind("127.0.0.1:0").unwrap(),
        );
        let (port, other) = (
            main.local_addr().unwrap().port(),
            blobs.local_addr().unwrap().port(),
        );
        let config_digest = digest(config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": []
        }))
        .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let basic = format!("Basic {}", base64_std(&format!("{}:{}", user.0, user.1)));
        let token = super::unique("bearer-token");
        let config = config.to_vec();
        for (listener, port_of) in [(main, port), (blobs, other)] {
            let (tls, seen, manifest, config, basic, token, config_digest) = (
                tls.clone(),
                seen.clone(),
                manifest.clone(),
                config.clone(),
                basic.clone(),
                token.clone(),
                config_digest.clone(),
            );
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    let (tls, seen, manifest, config, basic, token, config_digest) = (
                        tls.clone(),
                        seen.clone(),
                        manifest.clone(),
                        config.clone(),
                        basic.clone(),
                        token.clone(),
                        config_digest.clone(),
                    );
                    std::thread::spawn(move || {
                        let Ok(server) = rustls::ServerConnection::new(tls) else {
                            return;
                        };
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut stream = rustls::StreamOwned::new(server, conn);
                        let (path, auth) = {
                            let mut reader = BufReader::new(&mut stream);
                            let mut line = String::new();
                            if reader.read_line(&mut line).is_err() {
                                return;
                            }
                            let path = line.split(' ').nth(1).unwrap_or("").to_string();
                            let mut auth = None;
                            loop {
                                let mut h = String::new();
                                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                                    break;
                                }
                                if let Some((k, v)) = h.split_once(':') {
                                    if k.eq_ignore_ascii_case("authorization") {
                                        auth = Some(v.trim().to_string());
                                    }
                                }
                            }
                            (path, auth)
                        };
                        seen.lock().unwrap().push(Seen {
                            port: port_of,
                            path: path.clone(),
                            authorization: auth.clone(),
                        });
                        let bearer = format!("Bearer {token}");
                        let reply = |code: &str, headers: &str, body: &[u8]| {
                            let mut out = format!(
                                "HTTP/1.1 {code}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            out.extend_from_slice(body);
                            out
                        };
                        let out = if port_of == other {
                            // The blob store: serves the config to anyone (a signed URL would).
                            reply(
                                "200 OK",
                                "Content-Type: application/octet-stream\r\n",
                                &config,
                            )
                        } else if path.starts_with("/token") {
                            match auth.as_deref() == Some(basic.as_str()) {
                                true => reply(
                                    "200 OK",
                                    "Content-Type: application/json\r\n",
                                    json!({"token": token}).to_string().as_bytes(),
                                ),
                                false => reply("401 Unauthorized", "", b"{}"),
                            }
                        } else if auth.as_deref() != Some(bearer.as_str()) {
                            let challenge = format!(
                                "WWW-Authenticate: Bearer realm=\"https://localhost:{port_of}/token\",service=\"standin\",scope=\"repository:app:pull\"\r\n"
                            );
                            reply("401 Unauthorized", &challenge, b"{}")
                        } else if path.starts_with("/v2/app/manifests/") {
                            let d = digest(&manifest);
                            reply("200 OK", &format!("Content-Type: {OCI_MANIFEST}\r\nDocker-Content-Digest: {d}\r\n"), &manifest)
                        } else if path == format!("/v2/app/blobs/{config_digest}") {
                            reply("307 Temporary Redirect", &format!("Location: https://localhost:{other}/store/{config_digest}?signed=1\r\n"), b"")
                        } else {
                            reply("404 Not Found", "", b"{}")
                        };
                        let _ = stream.write_all(&out);
                        let _ = stream.flush();
                        stream.conn.send_close_notify();
                        let _ = stream.flush();
                        let mut rest = [0u8; 64];
                        let _ = stream.read(&mut rest);
                    });
                }
            });
        }
        StandIn {
            port,
            other,
            ca,
            seen,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn base64_std(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
