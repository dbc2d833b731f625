//! Stand-in for the kube-apiserver, serving the two calls the webhook makes:
//! `GET /apis/secrets-store.csi.x-k8s.io/v1/namespaces/NS/secretproviderclasses/NAME` and
//! `GET /api/v1/namespaces/NS/serviceaccounts/NAME` (IRSA's role annotation, image pull
//! Secrets) and `GET /api/v1/namespaces/NS/secrets/NAME` (image pull Secrets), over
//! TLS with its own certificate. Like a real apiserver with static bearer tokens and RBAC: no
//! or an unknown token is 401, a known token without a role allowing `get` is 403, a missing
//! object is 404, each as a `Status` object with the apiserver's wording. A variant
//! ([`KubeApi::start_requiring_client_certs`]) also requires a client certificate issued by
//! its client CA, as `--client-ca-file` makes an apiserver verify them: a certificate from
//! elsewhere fails the handshake, the webhook's authenticates it without a token, and another
//! user's is 403.
//!
//! It can also misbehave, for the tests that attack the webhook's client: answer with a
//! redirect to another origin, with an endless body, or with a body that trickles, or never
//! answer the GETs of some objects at all.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

use super::{k8s_status, unique};

/// How the stand-in answers an authorized GET.
#[derive(Clone, Debug, PartialEq)]
pub enum Behaviour {
    Normal,
    /// 307 to this URL (another origin).
    RedirectTo(String),
    /// 200, chunked, with no end: the client must stop reading.
    EndlessBody,
    /// 200 with a Content-Length, then one byte a second.
    Trickle,
    /// GETs of objects whose name starts with this are never answered: the request is read
    /// and the connection held, silent, until the client closes it (at most 60 s). Others
    /// are answered normally.
    Hang(String),
}

struct Shared {
    /// (resource, namespace, name) → object.
    objects: Mutex<HashMap<(&'static str, String, String), Value>>,
    behaviour: Mutex<Behaviour>,
    /// Requests received, whatever their outcome.
    requests: AtomicUsize,
    /// Requests held unanswered right now ([`Behaviour::Hang`]).
    hanging: AtomicUsize,
    /// Every Authorization header seen, for tests that check where a token went.
    authorizations: Mutex<Vec<String>>,
    /// `METHOD path` of every request, for tests that check nothing was written.
    seen: Mutex<Vec<String>>,
    /// DER of the client certificates of the webhook's user and of one without a role.
    client_certs: Option<(Vec<u8>, Vec<u8>)>,
}

/// The client certificates (PEM files) of [`KubeApi::start_requiring_client_certs`].
pub struct ClientCerts {
    /// The webhook's user, allowed to `get`: (certificate, key).
    pub webhook: (PathBuf, PathBuf),
    /// A user without a role: 403.
    pub unprivileged: (PathBuf, PathBuf),
}

pub struct KubeApi {
    pub port: u16,
    /// The serving certificate, which is also the CA to trust.
    pub ca: PathBuf,
    /// The token of the webhook's ServiceAccount, bound to a role allowing `get`.
    pub token: String,
    /// A token that authenticates but has no role: 403.
    pub unprivileged_token: String,
    /// Set when the server requires client certificates.
    pub client_certs: Option<ClientCerts>,
    shared: Arc<Shared>,
}

fn certs_of(pem: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(pem)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

impl KubeApi {
    /// Serves on a free port with a certificate written into `dir`.
    pub fn start(dir: &Path) -> KubeApi {
        KubeApi::start_with(dir, false)
    }

    /// [`KubeApi::start`], requiring every client to present a certificate issued by a client
    /// CA of its own; [`KubeApi::client_certs`] are issued by it.
    pub fn start_requiring_client_certs(dir: &Path) -> KubeApi {
        KubeApi::start_with(dir, true)
    }

    fn start_with(dir: &Path, client_auth: bool) -> KubeApi {
        let (crt, key) = super::pki::self_signed(dir, "kube-apiserver");
        let certs = certs_of(&crt);
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let (builder, client_certs) = if client_auth {
            let ca = super::pki::ca(dir, "kube-client-ca");
            let mut roots = rustls::RootCertStore::empty();
            roots.add(certs_of(&ca.0).remove(0)).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            let issue = |name: &str, user: &str| super::pki::client_cert(dir, name, user, &ca);
            let certs = ClientCerts {
                webhook: issue("webhook-client", "system:serviceaccount:secretdrop:webhook"),
                unprivileged: issue("nobody-client", "nobody"),
            };
            (builder.with_client_cert_verifier(verifier), Some(certs))
        } else {
            (builder.with_no_client_auth(), None)
        };
        let config = builder.with_single_cert(certs, key).unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let api = KubeApi {
            port,
            ca: crt,
            token: unique("webhook-sa-token"),
            unprivileged_token: unique("nobody-token"),
            shared: Arc::new(Shared {
                objects: Mutex::new(HashMap::new()),
                behaviour: Mutex::new(Behaviour::Normal),
                requests: AtomicUsize::new(0),
                hanging: AtomicUsize::new(0),
                authorizations: Mutex::new(Vec::new()),
                seen: Mutex::new(Vec::new()),
                client_certs: client_certs.as_ref().map(|c| {
                    let der = |p: &Path| certs_of(p).remove(0).to_vec();
                    (der(&c.webhook.0), der(&c.unprivileged.0))
                }),
            }),
            client_certs,
        };
        let (shared, tokens) = (
            api.shared.clone(),
            (api.token.clone(), api.unprivileged_token.clone()),
        );
        let accept = move || {
            for conn in listener.incoming().flatten() {
                let (shared, tokens, config) = (shared.clone(), tokens.clone(), config.clone());
                let _ = std::thread::Builder::new()
                    .spawn(move || serve(conn, config, &shared, &tokens.0, &tokens.1));
            }
        };
        std::thread::Builder::new()
            .name("kube-api".into())
            .spawn(accept)
            .unwrap();
        api
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Stores `object` (a SecretProviderClass) under its namespace and name.
    pub fn put(&self, namespace: &str, object: Value) {
        self.store(SPC, namespace, object);
    }

    /// Stores a ServiceAccount `name` with these annotations.
    pub fn put_service_account(&self, namespace: &str, name: &str, annotations: Value) {
        self.store(
            SA,
            namespace,
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": name, "annotations": annotations}}),
        );
    }

    /// Stores a ServiceAccount as given (e.g. with imagePullSecrets).
    pub fn put_service_account_object(&self, namespace: &str, object: Value) {
        self.store(SA, namespace, object);
    }

    /// Stores a Secret (an image pull Secret).
    pub fn put_secret(&self, namespace: &str, object: Value) {
        self.store(SECRET, namespace, object);
    }

    /// `METHOD path` of every request received, in order.
    pub fn seen(&self) -> Vec<String> {
        self.shared.seen.lock().unwrap().clone()
    }

    fn store(&self, resource: &'static str, namespace: &str, object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let mut object = object;
        object["metadata"]["namespace"] = json!(namespace);
        object["metadata"]["resourceVersion"] = json!("4711");
        object["metadata"]["uid"] = json!(unique("uid"));
        self.shared
            .objects
            .lock()
            .unwrap()
            .insert((resource, namespace.to_string(), name), object);
    }

    pub fn behave(&self, b: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = b;
    }

    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// GETs being held unanswered right now ([`Behaviour::Hang`]).
    pub fn hanging(&self) -> usize {
        self.shared.hanging.load(Ordering::SeqCst)
    }

    pub fn authorizations(&self) -> Vec<String> {
        self.shared.authorizations.lock().unwrap().clone()
    }

    /// A kubeconfig in `dir` for this server with `token` (inline, or as a tokenFile).
    pub fn kubeconfig(&self, dir: &Path, token: &str, as_file: bool) -> PathBuf {
        let user = if as_file {
            let f = super::cli::write(dir, &unique("token"), &format!("{token}\n"));
            format!("tokenFile: {}", f.display())
        } else {
            format!("token: {token}")
        };
        self.kubeconfig_for(dir, &user)
    }

    /// A kubeconfig in `dir` for this server with a client certificate and key and no token:
    /// as `client-certificate`/`client-key` files, or inline as `-data` (base64).
    pub fn kubeconfig_with_cert(
        &self,
        dir: &Path,
        cert: &(PathBuf, PathBuf),
        inline: bool,
    ) -> PathBuf {
        let user = if inline {
            let b64 = |p: &Path| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap())
            };
            format!(
                "client-certificate-data: {}\n    client-key-data: {}",
                b64(&cert.0),
                b64(&cert.1)
            )
        } else {
            format!(
                "client-certificate: {}\n    client-key: {}",
                cert.0.display(),
                cert.1.display()
            )
        };
        self.kubeconfig_for(dir, &user)
    }

    /// A kubeconfig in `dir` for this server; `user` is the body of the user entry (indented
    /// by four spaces after its first line).
    fn kubeconfig_for(&self, dir: &Path, user: &str) -> PathBuf {
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\ncontexts:\n- name: test\n  context:\n    cluster: kind\n    user: webhook\nclusters:\n- name: kind\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: webhook\n  user:\n    {user}\n",
            self.url(),
            self.ca.display()
        );
        super::cli::write(dir, &unique("kubeconfig"), &text)
    }
}

const SPC: &str = "secretproviderclasses";
const SA: &str = "serviceaccounts";
const SECRET: &str = "secrets";

/// (API prefix up to the namespace, resource, what a 403 and 404 call it).
const RESOURCES: &[(&str, &str, &str, &str)] = &[
    (
        "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/",
        SPC,
        "secretproviderclasses.secrets-store.csi.x-k8s.io",
        "secrets-store.csi.x-k8s.io",
    ),
    ("/api/v1/namespaces/", SA, "serviceaccounts", ""),
    ("/api/v1/namespaces/", SECRET, "secrets", ""),
];

fn serve(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    shared: &Shared,
    token: &str,
    unprivileged: &str,
) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // The request head only: GETs have no body.
    let mut head = Vec::new();
    {
        let mut r = BufReader::new((&mut tls).take(64 * 1024));
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" || line == "\n" => break,
                Ok(_) => head.push(line.trim_end().to_string()),
            }
        }
    }
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let mut parts = head
        .first()
        .map(|l| l.split_whitespace())
        .into_iter()
        .flatten();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    shared.seen.lock().unwrap().push(format!("{method} {path}"));
    let auth = head.iter().skip(1).find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.eq_ignore_ascii_case("authorization")
            .then(|| v.trim().to_string())
    });
    if let Some(a) = &auth {
        shared.authorizations.lock().unwrap().push(a.clone());
    }
    let mut bearer = auth.as_deref().and_then(|a| a.strip_prefix("Bearer "));
    // Without a token, a verified client certificate names the user (x509 authentication):
    // the webhook's stands for its token, another user's for a token without a role.
    let peer = tls.conn.peer_certificates().and_then(|c| c.first());
    if let (None, Some(cert), Some((webhook, nobody))) = (bearer, peer, &shared.client_certs) {
        bearer = if cert.as_ref() == webhook.as_slice() {
            Some(token)
        } else if cert.as_ref() == nobody.as_slice() {
            Some(unprivileged)
        } else {
            None
        };
    }
    let target = RESOURCES
        .iter()
        .find_map(|(prefix, resource, kind, group)| {
            path.strip_prefix(prefix)
                .and_then(|rest| rest.split_once(&format!("/{resource}/")))
                .filter(|(ns, name)| !ns.contains('/') && !name.contains('/') && !name.is_empty())
                .map(|(ns, name)| (ns, name, *resource, *kind, *group))
        });
    let (code, body) = match (bearer, target) {
        (None, _) => k8s_status(401, "Unauthorized", "Unauthorized"),
        (Some(t), _) if t != token && t != unprivileged => {
            k8s_status(401, "Unauthorized", "Unauthorized")
        }
        (Some(_), None) => k8s_status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
        (Some(_), Some(_)) if method != "GET" => k8s_status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
        (Some(t), Some((ns, name, resource, kind, group))) if t == unprivileged => k8s_status(
            403,
            "Forbidden",
            &format!(
                "{kind} \"{name}\" is forbidden: User \
                 \"system:serviceaccount:{ns}:nobody\" cannot get resource \
                 \"{resource}\" in API group \"{group}\" in the namespace \"{ns}\""
            ),
        ),
        (Some(_), Some((ns, name, resource, kind, _))) => {
            let behaviour = shared.behaviour.lock().unwrap().clone();
            match behaviour {
                Behaviour::Normal => {}
                Behaviour::Hang(prefix) if name.starts_with(&prefix) => {
                    shared.hanging.fetch_add(1, Ordering::SeqCst);
                    // Read until the client gives up: EOF, an error or the timeout.
                    let _ = tls.sock.set_read_timeout(Some(Duration::from_secs(60)));
                    let mut sink = [0u8; 1024];
                    while matches!(tls.read(&mut sink), Ok(n) if n > 0) {}
                    shared.hanging.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
                Behaviour::Hang(_) => {}
                Behaviour::RedirectTo(url) => {
                    let resp = format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {url}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = tls.write_all(resp.as_bytes());
                    let _ = tls.flush();
                    return;
                }
                Behaviour::EndlessBody => {
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
                    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
                    // Up to 256 MiB: the client stops reading long before.
                    for _ in 0..4096 {
                        if tls.write_all(chunk.as_bytes()).is_err() {
                            return;
                        }
                    }
                    return;
                }
                Behaviour::Trickle => {
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n");
                    let _ = tls.flush();
                    for _ in 0..1000 {
                        std::thread::sleep(Duration::from_secs(1));
                        if tls.write_all(b" ").and_then(|_| tls.flush()).is_err() {
                            return;
                        }
                    }
                    return;
                }
            }
            let found = shared
                .objects
                .lock()
                .unwrap()
                .get(&(resource, ns.to_string(), name.to_string()))
                .cloned();
            match found {
                Some(o) => (200, o.to_string()),
                None => k8s_status(404, "NotFound", &format!("{kind} \"{name}\" not found")),
            }
        }
    };
    let reason = match code {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        _ => "Not Found",
    };
    let resp = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tls.write_all(resp.as_bytes());
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// A plain TCP listener on another origin that counts connections and keeps what arrives:
/// where a redirect would send the token.
pub struct Elsewhere {
    pub port: u16,
    received: Arc<Mutex<Vec<u8>>>,
    connections: Arc<AtomicUsize>,
}

impl Elsewhere {
    pub fn start() -> Elsewhere {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (r, c) = (received.clone(), connections.clone());
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                c.fetch_add(1, Ordering::SeqCst);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = vec![0; 64 * 1024];
                if let Ok(n) = conn.read(&mut buf) {
                    r.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }
        });
        Elsewhere {
            port,
            received,
            connections,
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}
