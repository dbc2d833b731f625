//! The webhook's Kubernetes API client, for its two calls: GET of a SecretProviderClass
//! (docs/webhook.md, "Converting CSI volumes") and of an IRSA pod's ServiceAccount. No
//! Kubernetes client library: reqwest over rustls, as for Vault.
//!
//! Configuration: in-cluster (the service-account token and CA under
//! `/var/run/secrets/kubernetes.io/serviceaccount/`, `KUBERNETES_SERVICE_HOST` and `_PORT`) or
//! a kubeconfig file (`--kubeconfig`): the current context's cluster `server`,
//! `certificate-authority` or `-data`, and its user's `token` or `tokenFile`, with an optional
//! client certificate. The kubeconfig is parsed like every YAML from outside, by
//! [`crate::config::yaml::from_str`] (bounded size, nesting and values).
//!
//! Invariants: the bearer token goes only to the configured server (https only, redirects are
//! never followed: a 3xx is an error); every request is bounded in time ([`TIMEOUT`], headers
//! and body together) and bytes ([`MAX_BODY`], counted as it arrives, and reserved in the
//! caller's budget before it is read); answers are returned unparsed, and of an error's Status
//! only the message is kept; namespace and name are checked to be DNS names before they go
//! into a path; the token file is read at each request (projected tokens rotate), and the
//! token never appears in errors or `Debug`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::net::http::BodyError;
use crate::secret::SecretString;

/// One GET, headers and body, must end within this: the API server waits for the webhook for
/// its timeoutSeconds (5 in manifests/), and a slow answer must not use all of it.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// The largest answer read. A SecretProviderClass is a few KiB; etcd stores objects of up to
/// 1.5 MiB.
pub const MAX_BODY: usize = 1024 * 1024;
pub const IN_CLUSTER_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Where the bearer token comes from.
#[derive(Clone)]
enum Token {
    None,
    Inline(SecretString),
    File(PathBuf),
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `https://host:port`, without a trailing slash.
    server: String,
    token: Token,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("kube::Client")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Why a GET did not return the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeError {
    #[error("not found")]
    NotFound,
    /// 401 or 403: the API server's own message.
    #[error("the Kubernetes API refused the webhook (HTTP {status}): {message}")]
    Denied { status: u16, message: String },
    #[error("{0}")]
    Failed(String),
    /// Not read yet: the webhook's server reads the objects a review asks for outside its
    /// review slots, then decides the review again ([`crate::webhook::lookups`]). A decision
    /// that met this is never sent.
    #[error("not read yet")]
    Deferred,
}

/// A configuration problem (exit code 2 at start-up).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn bad(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

impl Client {
    /// The in-cluster configuration, as client-go's `rest.InClusterConfig` reads it.
    pub fn in_cluster() -> Result<Client, ConfigError> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_default();
        if host.is_empty() || port.is_empty() {
            return Err(bad(
                "not running in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT \
                 are not set) and no --kubeconfig given",
            ));
        }
        let host = match host.contains(':') {
            true => format!("[{host}]"),
            false => host,
        };
        let dir = Path::new(IN_CLUSTER_DIR);
        let ca = read_file(&dir.join("ca.crt"), "in-cluster CA")?;
        Client::new(
            &format!("https://{host}:{port}"),
            Some(&ca),
            None,
            Token::File(dir.join("token")),
        )
    }

    /// The current context of a kubeconfig file.
    pub fn from_kubeconfig(path: &Path) -> Result<Client, ConfigError> {
        let text = read_file(path, "kubeconfig")?;
        let at = |m: &str| bad(format!("{}: {m}", path.display()));
        // Through the bounded parser, like every YAML from outside: a kubeconfig is the
        // operator's, but it may be generated, and its aliases expand like any other's.
        let text = std::str::from_utf8(&text).map_err(|e| at(&format!("not UTF-8: {e}")))?;
        let doc: serde_yaml::Value =
            crate::config::yaml::from_str(text).map_err(|e| at(&format!("not YAML: {e}")))?;
        let current = doc["current-context"]
            .as_str()
            .ok_or_else(|| at("current-context: missing"))?;
        let named = |list: &str, name: &str| -> Result<serde_yaml::Value, ConfigError> {
            doc[list]
                .as_sequence()
                .and_then(|s| s.iter().find(|e| e["name"].as_str() == Some(name)))
                .map(|e| e[list.trim_end_matches('s')].clone())
                .ok_or_else(|| at(&format!("{list}: no entry named {name:?}")))
        };
        let context = named("contexts", current)?;
        let cluster_name = context["cluster"]
            .as_str()
            .ok_or_else(|| at(&format!("context {current:?}: cluster missing")))?;
        let user_name = context["user"].as_str().unwrap_or("");
        let cluster = named("clusters", cluster_name)?;
        let user = if user_name.is_empty() {
            serde_yaml::Value::Null
        } else {
            named("users", user_name)?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let relative = |p: &str| {
            let p = Path::new(p);
            match p.is_absolute() {
                true => p.to_path_buf(),
                false => base.join(p),
            }
        };
        let pem = |data_key: &str, file_key: &str, v: &serde_yaml::Value, what: &str| match (
            v[data_key].as_str(),
            v[file_key].as_str(),
        ) {
            (Some(d), _) => base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .map(Some)
                .map_err(|_| at(&format!("{what}: {data_key} is not base64"))),
            (None, Some(f)) => read_file(&relative(f), what).map(Some),
            (None, None) => Ok(None),
        };
        let server = cluster["server"]
            .as_str()
            .ok_or_else(|| at(&format!("cluster {cluster_name:?}: server missing")))?;
        if cluster["insecure-skip-tls-verify"].as_bool() == Some(true) {
            return Err(at(&format!(
                "cluster {cluster_name:?}: insecure-skip-tls-verify is not supported: the \
                 webhook sends a bearer token and must verify the server"
            )));
        }
        let ca = pem(
            "certificate-authority-data",
            "certificate-authority",
            &cluster,
            "cluster CA",
        )?;
        let cert = pem(
            "client-certificate-data",
            "client-certificate",
            &user,
            "client certificate",
        )?;
        let key = pem("client-key-data", "client-key", &user, "client key")?;
        let token = match (user["token"].as_str(), user["tokenFile"].as_str()) {
            (Some(t), _) => Token::Inline(SecretString::new(t.trim().to_string())),
            (None, Some(f)) => Token::File(relative(f)),
            (None, None) => Token::None,
        };
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(at(&format!(
                    "user {user_name:?}: a client certificate needs its key and vice versa"
                )))
            }
        };
        if matches!(token, Token::None) && identity.is_none() {
            return Err(at(&format!(
                "user {user_name:?}: no token, tokenFile or client certificate (exec and \
                 auth-provider plugins are not supported)"
            )));
        }
        Client::new(server, ca.as_deref(), identity, token).map_err(|e| at(&e.0))
    }

    fn new(
        server: &str,
        ca: Option<&[u8]>,
        identity: Option<(Vec<u8>, Vec<u8>)>,
        token: Token,
    ) -> Result<Client, ConfigError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = reqwest::Url::parse(server)
            .map_err(|_| bad(format!("server {server:?} is not a URL")))?;
        if url.scheme() != "https" || url.host_str().is_none() {
            return Err(bad(format!(
                "server {server:?}: only https:// API servers are supported (the token must \
                 not travel in clear)"
            )));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| bad(format!("CA: not PEM: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| bad(format!("CA: unusable certificate: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(bad("CA: no certificate in it"));
                }
            }
            None => return Err(bad("no certificate authority for the API server")),
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots);
        let tls = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(format!("client certificate: not PEM: {e}")))?;
                let key = PrivateKeyDer::from_pem_slice(&key)
                    .map_err(|e| bad(format!("client key: not a PEM private key: {e}")))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| bad(format!("client certificate: {e}")))?
            }
        };
        let http = crate::net::http::builder(TIMEOUT, reqwest::redirect::Policy::none())
            .use_preconfigured_tls(tls)
            .build()
            .map_err(|e| bad(format!("HTTP client: {e}")))?;
        Ok(Client {
            http,
            server: url.as_str().trim_end_matches('/').to_string(),
            token,
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// A client of `server` that trusts no certificate and sends no token.
    #[cfg(test)]
    pub(crate) fn for_tests(server: &str) -> Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let http = crate::net::http::builder(TIMEOUT, reqwest::redirect::Policy::none())
            .use_preconfigured_tls(tls)
            .build()
            .expect("an HTTP client");
        Client {
            http,
            server: server.to_string(),
            token: Token::None,
        }
    }

    /// `GET` of `object` NAME in namespace NS: its answer's body as sent, JSON not yet parsed
    /// (the caller parses it where its memory is accounted for). Bounded by `within`, at most
    /// [`TIMEOUT`], headers and body together. The body is read into `bytes`: once the headers
    /// arrived, its `Content-Length` (or [`MAX_BODY`] without one) is reserved there, waiting
    /// if need be, and after reading the reservation shrinks to what was read and stays with
    /// the answer. A server that sends no headers holds nothing of the budget.
    pub async fn get(
        &self,
        object: Object,
        namespace: &str,
        name: &str,
        within: Duration,
        bytes: &Arc<Semaphore>,
    ) -> Result<Fetched, KubeError> {
        for (what, v) in [("namespace", namespace), ("name", name)] {
            if !is_dns_subdomain(v) {
                return Err(KubeError::Failed(format!(
                    "{what} {:?} is not a Kubernetes object name",
                    v.chars().take(64).collect::<String>()
                )));
            }
        }
        let (group, resource) = object.api();
        let path = format!("{group}/namespaces/{namespace}/{resource}/{name}");
        let within = within.min(TIMEOUT);
        match tokio::time::timeout(within, self.get_path(&path, bytes)).await {
            Ok(r) => r,
            Err(_) => Err(KubeError::Failed(format!(
                "the Kubernetes API at {} did not answer within {:.1}s",
                self.server,
                within.as_secs_f64()
            ))),
        }
    }

    async fn get_path(&self, path: &str, bytes: &Arc<Semaphore>) -> Result<Fetched, KubeError> {
        let failed = |m: String| KubeError::Failed(m);
        let mut req = self
            .http
            .get(format!("{}{path}", self.server))
            .header("Accept", "application/json");
        let token = match &self.token {
            Token::None => None,
            Token::Inline(t) => Some(t.clone()),
            Token::File(f) => Some(SecretString::new(
                std::fs::read_to_string(f)
                    .map_err(|e| failed(format!("cannot read the token {}: {e}", f.display())))?
                    .trim()
                    .to_string(),
            )),
        };
        if let Some(t) = token {
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(
                    |_| failed("the token holds characters not allowed in a header".into()),
                )?;
            value.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, value);
        }
        let mut resp = req.send().await.map_err(|e| {
            failed(format!(
                "cannot reach the Kubernetes API at {}: {}",
                self.server,
                chain(&e)
            ))
        })?;
        let status = resp.status().as_u16();
        if resp.status().is_redirection() {
            return Err(failed(format!(
                "the Kubernetes API at {} answered HTTP {status} (a redirect); not followed",
                self.server
            )));
        }
        let want = match resp.content_length() {
            Some(n) if n > MAX_BODY as u64 => return Err(too_big()),
            Some(n) => n as usize,
            None => MAX_BODY,
        };
        // `want` is at most MAX_BODY, which fits a u32.
        let mut held = bytes
            .clone()
            .acquire_many_owned(want.max(1) as u32)
            .await
            .map_err(|_| failed("the webhook is shutting down".into()))?;
        let mut body = crate::net::http::read_bounded(&mut resp, want)
            .await
            .map_err(|e| match e {
                BodyError::TooBig => too_big(),
                BodyError::Transport(e) => failed(format!("reading the answer: {}", chain(&e))),
            })?;
        if status == 200 {
            // Returned to the budget at once: what a Content-Length promised and was not sent.
            drop(held.split(held.num_permits() - body.len().clamp(1, held.num_permits())));
            return Ok(Fetched {
                // Not a secret (a class or a ServiceAccount): kept as it is, not copied.
                body: std::mem::take(&mut *body),
                _held: held,
            });
        }
        Err(match status {
            404 => KubeError::NotFound,
            401 | 403 => KubeError::Denied {
                status,
                message: status_message(&body),
            },
            _ => failed(format!(
                "the Kubernetes API answered HTTP {status}: {}",
                status_message(&body)
            )),
        })
    }
}

/// The objects the webhook reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// `GET /apis/secrets-store.csi.x-k8s.io/v1/namespaces/NS/secretproviderclasses/NAME`.
    SecretProviderClass,
    /// `GET /api/v1/namespaces/NS/serviceaccounts/NAME`: an IRSA pod's ServiceAccount, for the
    /// role its `eks.amazonaws.com/role-arn` annotation names.
    ServiceAccount,
    /// `GET /api/v1/namespaces/NS/secrets/NAME`: an image pull Secret of a pod whose image's
    /// entrypoint the webhook reads (docs/webhook.md, "Image entrypoints"); only its
    /// `.dockerconfigjson` is used.
    Secret,
}

impl Object {
    /// The API group's path and the resource.
    fn api(self) -> (&'static str, &'static str) {
        match self {
            Object::SecretProviderClass => (
                "/apis/secrets-store.csi.x-k8s.io/v1",
                "secretproviderclasses",
            ),
            Object::ServiceAccount => ("/api/v1", "serviceaccounts"),
            Object::Secret => ("/api/v1", "secrets"),
        }
    }
}

/// An object's JSON as the API sent it, holding its bytes of the budget it was read into.
#[derive(Debug)]
pub struct Fetched {
    pub body: Vec<u8>,
    _held: OwnedSemaphorePermit,
}

#[cfg(test)]
impl Fetched {
    /// An answer held in a budget of its own.
    pub(crate) fn for_tests(body: Vec<u8>) -> Fetched {
        let budget = Arc::new(Semaphore::new(1));
        Fetched {
            body,
            _held: budget.try_acquire_owned().expect("a fresh budget"),
        }
    }
}

/// A Status object's `message`, escaped and shortened ([`super::http::network_text`]). Only that member
/// is kept: the rest of the body is skipped unparsed, so an error body costs no more memory
/// than its bytes.
fn status_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Status {
        message: Option<String>,
    }
    let message = serde_json::from_slice::<Status>(body)
        .ok()
        .and_then(|s| s.message);
    super::http::network_text(
        message.as_deref().unwrap_or("no Status message"),
        super::http::MAX_NETWORK_TEXT,
    )
}

/// An error and its sources, for messages. None of them holds the token: it travels in a
/// header reqwest never prints.
fn chain(e: &reqwest::Error) -> String {
    crate::net::http::failure(e, false).cause
}

fn too_big() -> KubeError {
    KubeError::Failed(format!(
        "the Kubernetes API's answer is larger than {MAX_BODY} bytes; nothing was kept"
    ))
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| bad(format!("cannot read the {what} {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_BODY as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot read the {what} {}: {e}", path.display())))?;
    if bytes.len() > MAX_BODY {
        return Err(bad(format!(
            "the {what} {} is larger than {MAX_BODY} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// A DNS-1123 subdomain (what namespaces and SecretProviderClass names are).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_path_are_refused() {
        for bad in ["", "..", "a/b", "A", "a%2f", "a?x", "-a", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
        for good in ["default", "mycsispc", "a.b-c", "x1"] {
            assert!(is_dns_subdomain(good), "{good}");
        }
    }

    #[test]
    fn kubeconfigs_without_a_verifiable_https_server_are_refused() {
        let dir = std::env::temp_dir().join(format!("sd-kubeconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config");
        let write = |server: &str, extra: &str| {
            std::fs::write(
                &file,
                format!(
                    "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nclusters:\n- name: k\n  cluster:\n    server: {server}\n{extra}users:\n- name: u\n  user: {{token: t0ps3cret}}\n"
                ),
            )
            .unwrap();
        };
        write("http://127.0.0.1:1", "");
        let e = Client::from_kubeconfig(&file).unwrap_err().to_string();
        assert!(e.contains("only https://"), "{e}");
        write(
            "https://127.0.0.1:1",
            "    insecure-skip-tls-verify: true\n",
        );
        let e = Client::from_kubeconfig(&file).unwrap_err().to_string();
        assert!(
            e.contains("insecure-skip-tls-verify is not supported"),
            "{e}"
        );
        write("https://127.0.0.1:1", "");
        let e = Client::from_kubeconfig(&file).unwrap_err().to_string();
        assert!(e.contains("no certificate authority"), "{e}");
        assert!(!e.contains("t0ps3cret"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_kubeconfig_goes_through_the_bounded_yaml_parser() {
        let dir = crate::test_dir::fresh(&std::env::temp_dir(), "kube", "bounded");
        std::fs::create_dir_all(&dir.0).unwrap();
        let file = dir.0.join("config");
        // Valid, but with an alias bomb beside the settings: 40 million values from 64 KB.
        let bomb = format!(
            "x-anchor: &a [{}]\nx-refs: [{}]\n",
            vec!["x"; 2_000].join(","),
            vec!["*a"; 20_000].join(",")
        );
        std::fs::write(
            &file,
            format!("apiVersion: v1\nkind: Config\ncurrent-context: c\n{bomb}"),
        )
        .unwrap();
        let e = Client::from_kubeconfig(&file).unwrap_err().to_string();
        assert!(
            e.contains("config: not YAML") && e.contains("at most 100000"),
            "{e}"
        );
    }
}
