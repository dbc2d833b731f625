//! The webhook's image registry client (docs/webhook.md, "Image entrypoints"): the entrypoint
//! and cmd of an image, read from its config through the distribution API v2 over HTTPS, for
//! a container the webhook wraps with `secretdrop exec` that has no `command` of its own.
//!
//! One lookup: `HEAD /v2/<repo>/manifests/<tag>` with the Accept headers of OCI indexes, Docker
//! manifest lists, Docker schema 2 and OCI manifests; its `Docker-Content-Digest` is the cache
//! key, so an unchanged tag costs that one request and a moved tag is seen. A new digest is
//! then read (`GET` by digest, checked against it), an index resolved to the platform asked
//! for (its `os` and `architecture`, then `variant` when given), and the config blob read
//! (checked against its descriptor's digest). A reference pinned by digest is served from the
//! cache without any request.
//!
//! Authentication as registries ask for it: anonymous first; on `401` with
//! `WWW-Authenticate: Basic`, the pull Secret's credential for this registry host; with
//! `Bearer realm=...,service=...,scope=...`, a token from the realm (https only), asked for
//! with that credential when the realm is on the registry's own host (or is Docker Hub's
//! `auth.docker.io` for Docker Hub), anonymously otherwise. An authorization the registry
//! accepted (Basic, or a token for its `expires_in` less 10 s, at most 5 minutes) is reused by
//! the next lookup of the same repository with the same credential (never another's), so a
//! warm lookup is one request.
//!
//! Invariants: a credential or token is only ever sent to the host it belongs to: redirects
//! are followed by hand (at most [`MAX_REDIRECTS`], https only), and a request that leaves the
//! registry's origin (a blob store) carries no `Authorization`; every request is bounded by
//! the lookup's deadline and every answer by [`MAX_MANIFEST_BYTES`] or [`MAX_CONFIG_BYTES`]
//! (counted as it arrives); messages quote the registry's text through
//! [`super::http::network_text`] and never hold a credential or token; the cache holds at most
//! [`CACHE_ENTRIES`] images.

pub mod reference;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use tokio::time::Instant;

pub use reference::{Credential, ImageRef, Platform};

use super::http::{network_text, BodyError, MAX_NETWORK_TEXT};
use crate::secret::SecretString;

/// The manifest types asked for, most specific last as registries expect none in particular.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.manifest.v1+json";
/// Docker's own limit for a manifest is 4 MiB; an index of every platform is tens of KiB.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// An image config holds the history of every layer: a few KiB to a few hundred.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// A token answer is a JWT or an opaque string in a small JSON object.
const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Redirects followed for one request (a blob store, a mirror).
pub const MAX_REDIRECTS: usize = 3;
/// Images kept (digest and platform → entrypoint and cmd), oldest forgotten first.
pub const CACHE_ENTRIES: usize = 512;
/// Tags remembered (registry, repository, tag → digest) for [`Registry::peek`].
const TAG_ENTRIES: usize = 1024;
/// Where distributions (and distroless) keep the CA bundle.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// What the runtime runs for an image when the container says nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// The digest of the manifest this came from (of the index, for an index).
    pub digest: String,
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// HTTP requests sent (every attempt, redirect and token request included).
    pub requests: u64,
    /// Lookups answered from the cache after at most a HEAD.
    pub hits: u64,
    /// Lookups that read a manifest and a config.
    pub misses: u64,
}

#[derive(Default)]
struct Cache {
    /// (digest, platform) → process, in insertion order for eviction.
    images: HashMap<(String, Platform), Process>,
    order: VecDeque<(String, Platform)>,
    /// The last digest seen for a (registry, repository, tag).
    tags: HashMap<(String, String, String), String>,
    tag_order: VecDeque<(String, String, String)>,
    /// Authorizations earned, by (registry, repository, whose credential: a fingerprint of it,
    /// or empty when anonymous), until they expire: a warm lookup skips the 401 and the token
    /// request. Keyed by credential so that a pod never uses what another pod's pull Secret
    /// earned.
    auth: HashMap<(String, String, String), (SecretString, Instant)>,
    stats: Stats,
}

/// Authorizations kept at most (the map is emptied past it).
const AUTH_ENTRIES: usize = 256;
/// How long a Basic authorization, or a token without `expires_in`, is reused; tokens for at
/// most [`MAX_TOKEN_REUSE`] and 10 s less than they say.
const AUTH_REUSE: Duration = Duration::from_secs(60);
const MAX_TOKEN_REUSE: Duration = Duration::from_secs(300);

/// The client, its cache and its counters; clones share them.
#[derive(Clone)]
pub struct Registry {
    http: reqwest::Client,
    cache: Arc<Mutex<Cache>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

/// What one lookup carries from request to request: the credential for the registry's host
/// and the Authorization it earned, if any.
struct Session<'a> {
    image: &'a ImageRef,
    origin: String,
    credential: Option<&'a Credential>,
    authorization: Option<SecretString>,
    /// An authorization earned in this lookup and how long it may be reused.
    earned: Option<(SecretString, Duration)>,
    until: Instant,
}

impl Registry {
    /// A client trusting the system's CA bundle plus the certificates of `extra` (the
    /// webhook passes `SSL_CERT_FILE`).
    pub fn new(extra: Option<&Path>) -> Result<Registry, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        if let Some(bundle) = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
            add_pem(&mut roots, bundle)?;
        }
        if let Some(extra) = extra {
            add_pem(&mut roots, extra)?;
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("registry CA certificates: {e}"))?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_webpki_verifier(verifier)
            .with_no_client_auth();
        let http = super::http::builder(Duration::from_secs(2), reqwest::redirect::Policy::none())
            .use_preconfigured_tls(config)
            .https_only(true)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Registry {
            http,
            cache: Arc::new(Mutex::new(Cache::default())),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> Stats {
        self.cache().stats
    }

    /// The process of `image` for `platform`, read by `until`; `credentials` are the pod's
    /// pull Secrets' (only the one for this image's registry host is used). `Err` is a
    /// sentence naming the registry and what failed.
    pub async fn process(
        &self,
        image: &str,
        platform: &Platform,
        credentials: &[Credential],
        until: Instant,
    ) -> Result<Process, String> {
        let image = ImageRef::parse(image).map_err(|m| format!("image {m}"))?;
        if let Some(digest) = &image.digest {
            if let Some(p) = self.cached(digest, platform) {
                return Ok(p);
            }
        }
        let credential = credentials.iter().find(|c| c.registry == image.registry);
        let auth_key = (
            image.registry.clone(),
            image.repository.clone(),
            credential.map_or(String::new(), |c| {
                sha256_digest(c.basic().expose().as_bytes())
            }),
        );
        let reused = self
            .cache()
            .auth
            .get(&auth_key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(a, _)| a.clone());
        let mut session = Session {
            origin: format!("https://{}", image.api_host()),
            credential,
            authorization: reused,
            earned: None,
            image: &image,
            until,
        };
        let manifests = format!("{}/v2/{}/manifests/", session.origin, image.repository);
        // The digest the reference points at now.
        let digest = match &image.digest {
            Some(d) => d.clone(),
            None => {
                let url = self.url(&format!("{manifests}{}", image.reference()))?;
                let head = self
                    .send(&mut session, Method::HEAD, url, MANIFEST_TYPES)
                    .await?;
                let header = head
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .filter(|d| is_digest(d))
                    .map(str::to_string);
                check_status(&head, &session, "manifest")?;
                // Empty when the answer has no digest: the manifest's bytes give it.
                header.unwrap_or_default()
            }
        };
        if !digest.is_empty() {
            if let Some(p) = self.cached(&digest, platform) {
                self.remember_tag(&image, &digest);
                self.keep_auth(&mut session, auth_key);
                self.cache().stats.hits += 1;
                return Ok(p);
            }
        }
        self.cache().stats.misses += 1;
        let by = if digest.is_empty() {
            image.reference().to_string()
        } else {
            digest.clone()
        };
        let (manifest, digest) = self
            .manifest(&mut session, &manifests, &by, &digest)
            .await?;
        let manifest = match is_index(&manifest) {
            true => {
                let child = pick(&manifest, platform).map_err(|m| at(&session, &m))?;
                self.manifest(&mut session, &manifests, &child, &child)
                    .await?
                    .0
            }
            false => manifest,
        };
        let config = manifest
            .pointer("/config/digest")
            .and_then(Value::as_str)
            .filter(|d| is_digest(d))
            .ok_or_else(|| at(&session, "the image manifest has no config digest"))?
            .to_string();
        let url = self.url(&format!(
            "{}/v2/{}/blobs/{config}",
            session.origin, image.repository
        ))?;
        let mut resp = self
            .send(&mut session, Method::GET, url, "application/json")
            .await?;
        check_status(&resp, &session, "config blob")?;
        let body = read(&mut resp, MAX_CONFIG_BYTES, &session, "config blob").await?;
        verify(&body, &config).map_err(|m| at(&session, &format!("config blob: {m}")))?;
        let config: Value = serde_json::from_slice(&body)
            .map_err(|_| at(&session, "the image config is not JSON"))?;
        let strings = |p: &str| -> Result<Vec<String>, String> {
            match config.pointer(p) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|s| s.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        at(
                            &session,
                            &format!("the image config's {p} is not a list of strings"),
                        )
                    }),
                Some(_) => Err(at(
                    &session,
                    &format!("the image config's {p} is not a list of strings"),
                )),
            }
        };
        let process = Process {
            entrypoint: strings("/config/Entrypoint")?,
            cmd: strings("/config/Cmd")?,
            digest: digest.clone(),
        };
        self.remember(&digest, platform, &process);
        self.remember_tag(&image, &digest);
        self.keep_auth(&mut session, auth_key);
        Ok(process)
    }

    /// What the cache knows of `image` without asking the registry: its process for the
    /// digest this tag had last time (or its pinned digest). For measurements and tests.
    pub fn peek(&self, image: &str, platform: &Platform) -> Option<Process> {
        let image = ImageRef::parse(image).ok()?;
        let digest = match &image.digest {
            Some(d) => d.clone(),
            None => {
                let key = (
                    image.registry.clone(),
                    image.repository.clone(),
                    image.reference().to_string(),
                );
                self.cache().tags.get(&key)?.clone()
            }
        };
        self.cached(&digest, platform)
    }

    /// Keeps what this lookup's authorization earned, for the next lookup with the same
    /// credential (only after the registry accepted it).
    fn keep_auth(&self, session: &mut Session<'_>, key: (String, String, String)) {
        if let Some((auth, reuse)) = session.earned.take() {
            let mut cache = self.cache();
            if cache.auth.len() >= AUTH_ENTRIES {
                cache.auth.clear();
            }
            cache.auth.insert(key, (auth, Instant::now() + reuse));
        }
    }

    fn cached(&self, digest: &str, platform: &Platform) -> Option<Process> {
        self.cache()
            .images
            .get(&(digest.to_string(), platform.clone()))
            .cloned()
    }

    fn remember(&self, digest: &str, platform: &Platform, process: &Process) {
        let mut cache = self.cache();
        let key = (digest.to_string(), platform.clone());
        if cache.images.insert(key.clone(), process.clone()).is_none() {
            cache.order.push_back(key);
        }
        while cache.order.len() > CACHE_ENTRIES {
            if let Some(old) = cache.order.pop_front() {
                cache.images.remove(&old);
            }
        }
    }

    fn remember_tag(&self, image: &ImageRef, digest: &str) {
        let Some(tag) = &image.tag else { return };
        let mut cache = self.cache();
        let key = (
            image.registry.clone(),
            image.repository.clone(),
            tag.clone(),
        );
        if cache.tags.insert(key.clone(), digest.to_string()).is_none() {
            cache.tag_order.push_back(key);
        }
        while cache.tag_order.len() > TAG_ENTRIES {
            if let Some(old) = cache.tag_order.pop_front() {
                cache.tags.remove(&old);
            }
        }
    }

    /// GET of a manifest by `by` (a tag or digest), checked against `digest` when known; the
    /// manifest and its digest.
    async fn manifest(
        &self,
        session: &mut Session<'_>,
        manifests: &str,
        by: &str,
        digest: &str,
    ) -> Result<(Value, String), String> {
        let url = self.url(&format!("{manifests}{by}"))?;
        let mut resp = self.send(session, Method::GET, url, MANIFEST_TYPES).await?;
        check_status(&resp, session, "manifest")?;
        let body = read(&mut resp, MAX_MANIFEST_BYTES, session, "manifest").await?;
        let digest = match digest.is_empty() {
            true => sha256_digest(&body),
            false => {
                verify(&body, digest).map_err(|m| at(session, &format!("manifest: {m}")))?;
                digest.to_string()
            }
        };
        let manifest: Value =
            serde_json::from_slice(&body).map_err(|_| at(session, "the manifest is not JSON"))?;
        if manifest.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
            return Err(at(
                session,
                "the manifest is not schema version 2 (Docker schema 1 images are not supported: \
                 push the image again with a current client, or set command)",
            ));
        }
        Ok((manifest, digest))
    }

    fn url(&self, text: &str) -> Result<Url, String> {
        Url::parse(text).map_err(|e| format!("cannot build the URL {text:?}: {e}"))
    }

    /// One request, authenticated as the registry asks and with redirects followed by hand.
    async fn send(
        &self,
        session: &mut Session<'_>,
        method: Method,
        url: Url,
        accept: &str,
    ) -> Result<reqwest::Response, String> {
        let mut url = url;
        let mut redirects = 0;
        let mut authenticated = false;
        loop {
            let resp = self.once(session, method.clone(), &url, accept).await?;
            let status = resp.status();
            if status.is_redirection() {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(at(session, &format!("more than {MAX_REDIRECTS} redirects")));
                }
                let location = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| at(session, "a redirect without a Location"))?;
                url = url
                    .join(location)
                    .map_err(|_| at(session, "a redirect to an address that is not a URL"))?;
                if url.scheme() != "https" {
                    return Err(at(session, "a redirect to an address that is not https"));
                }
                continue;
            }
            if status == StatusCode::UNAUTHORIZED
                && !authenticated
                && same_origin(&url, &session.origin)
            {
                authenticated = true;
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let (auth, reuse) = self.authorize(session, &challenge).await?;
                session.authorization = Some(auth.clone());
                session.earned = Some((auth, reuse));
                continue;
            }
            return Ok(resp);
        }
    }

    /// One attempt: the session's Authorization only to the registry's own origin.
    async fn once(
        &self,
        session: &mut Session<'_>,
        method: Method,
        url: &Url,
        accept: &str,
    ) -> Result<reqwest::Response, String> {
        let left = session.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(at(
                session,
                "no answer within the time the webhook allows for a registry",
            ));
        }
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(accept) {
            headers.insert(ACCEPT, v);
        }
        if let (Some(auth), true) = (&session.authorization, same_origin(url, &session.origin)) {
            let mut v = HeaderValue::from_str(auth.expose())
                .map_err(|_| at(session, "the registry's token is not a header value"))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        self.cache().stats.requests += 1;
        let sent = self
            .http
            .request(method, url.clone())
            .headers(headers)
            .timeout(left)
            .send()
            .await;
        sent.map_err(|e| {
            let why = match e.is_timeout() {
                true => format!(
                    "no answer within the time the webhook allows for a registry ({})",
                    crate::logging::Dur(left)
                ),
                false => super::http::failure(&e, true).cause,
            };
            at(session, &network_text(&why, MAX_NETWORK_TEXT))
        })
    }

    /// The Authorization a 401's challenge asks for.
    async fn authorize(
        &self,
        session: &mut Session<'_>,
        challenge: &str,
    ) -> Result<(SecretString, Duration), String> {
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => match session.credential {
                Some(c) => Ok((c.basic(), AUTH_REUSE)),
                None => Err(at(session, &no_credential(session))),
            },
            "bearer" => {
                let realm = params.get("realm").cloned().unwrap_or_default();
                let mut realm = Url::parse(&realm)
                    .map_err(|_| at(session, "the Bearer challenge's realm is not a URL"))?;
                if realm.scheme() != "https" {
                    return Err(at(session, "the Bearer challenge's realm is not https"));
                }
                let scope = params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", session.image.repository));
                {
                    let mut q = realm.query_pairs_mut();
                    if let Some(service) = params.get("service") {
                        q.append_pair("service", service);
                    }
                    q.append_pair("scope", &scope);
                }
                let realm_host = realm.host_str().unwrap_or("").to_ascii_lowercase();
                let registry_host = session.image.api_host().split(':').next().unwrap_or("");
                // The credential goes to the realm only when the realm is the registry's own.
                let trusted = same_origin(&realm, &session.origin)
                    || realm_host == registry_host
                    || (session.image.registry == reference::DOCKER_HUB
                        && realm_host == "auth.docker.io");
                let mut headers = HeaderMap::new();
                headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
                if let (Some(c), true) = (session.credential, trusted) {
                    if let Ok(mut v) = HeaderValue::from_str(c.basic().expose()) {
                        v.set_sensitive(true);
                        headers.insert(AUTHORIZATION, v);
                    }
                }
                let left = session.until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(at(
                        session,
                        "no answer within the time the webhook allows for a registry",
                    ));
                }
                self.cache().stats.requests += 1;
                let mut resp = self
                    .http
                    .get(realm)
                    .headers(headers)
                    .timeout(left)
                    .send()
                    .await
                    .map_err(|e| {
                        at(
                            session,
                            &format!(
                                "token: {}",
                                network_text(
                                    &super::http::failure(&e, true).cause,
                                    MAX_NETWORK_TEXT
                                )
                            ),
                        )
                    })?;
                if !resp.status().is_success() {
                    return Err(at(session, &format!(
                        "the token service answered HTTP {} ({})",
                        resp.status().as_u16(),
                        match session.credential { Some(_) => "check the pull Secret's credential", None => "the pod has no pull Secret for this registry: add one to imagePullSecrets" }
                    )));
                }
                let body = read(&mut resp, MAX_TOKEN_BYTES, session, "token").await?;
                let doc: Value = serde_json::from_slice(&body)
                    .map_err(|_| at(session, "the token service's answer is not JSON"))?;
                let token = doc
                    .get("token")
                    .or_else(|| doc.get("access_token"))
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
                    .ok_or_else(|| at(session, "the token service's answer has no token"))?;
                let reuse = doc
                    .get("expires_in")
                    .and_then(Value::as_u64)
                    .map_or(AUTH_REUSE, |s| Duration::from_secs(s.saturating_sub(10)))
                    .min(MAX_TOKEN_REUSE);
                Ok((SecretString::new(format!("Bearer {token}")), reuse))
            }
            _ => Err(at(
                session,
                &format!(
                    "HTTP 401 with a challenge secretdrop does not know ({:?})",
                    network_text(&scheme, 40)
                ),
            )),
        }
    }
}

fn no_credential(session: &Session<'_>) -> String {
    format!(
        "the registry asks for credentials and the pod has no pull Secret for {}: add one \
         to the pod's or its ServiceAccount's imagePullSecrets",
        session.image.registry
    )
}

/// The message prefix naming the registry and image.
fn at(session: &Session<'_>, message: &str) -> String {
    format!(
        "registry {} (image {}/{}:{}): {message}",
        session.image.registry,
        session.image.registry,
        session.image.repository,
        session.image.reference()
    )
}

fn check_status(resp: &reqwest::Response, session: &Session<'_>, what: &str) -> Result<(), String> {
    let status = resp.status();
    match status.as_u16() {
        200..=299 => Ok(()),
        401 | 403 => Err(at(
            session,
            &match session.credential {
                Some(_) => format!(
                    "HTTP {} for the {what}: the pull Secret's credential was refused",
                    status.as_u16()
                ),
                None => format!(
                    "HTTP {} for the {what}: {}",
                    status.as_u16(),
                    no_credential(session)
                ),
            },
        )),
        404 => Err(at(
            session,
            &format!("HTTP 404: no such {what} (is the image name and tag right?)"),
        )),
        code => Err(at(session, &format!("HTTP {code} for the {what}"))),
    }
}

async fn read(
    resp: &mut reqwest::Response,
    limit: usize,
    session: &Session<'_>,
    what: &str,
) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    let left = session.until.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, super::http::read_bounded(resp, limit)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(BodyError::TooBig)) => Err(at(
            session,
            &format!("the {what} is larger than {limit} bytes; nothing was kept"),
        )),
        Ok(Err(BodyError::Transport(e))) => Err(at(
            session,
            &format!(
                "the {what} could not be read: {}",
                network_text(&super::http::failure(&e, true).cause, MAX_NETWORK_TEXT)
            ),
        )),
        Err(_) => Err(at(
            session,
            &format!("the {what} did not arrive within the time the webhook allows for a registry"),
        )),
    }
}

fn add_pem(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("CA bundle {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("CA bundle {}: not valid PEM: {e}", path.display()))?;
    for c in certs {
        // A bundle may hold certificates webpki cannot use; they are skipped.
        let _ = roots.add(c);
    }
    Ok(())
}

fn same_origin(url: &Url, origin: &str) -> bool {
    url.origin().ascii_serialization() == origin
        || Url::parse(origin).is_ok_and(|o| o.origin() == url.origin())
}

pub fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn sha256_digest(body: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, body);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn verify(body: &[u8], digest: &str) -> Result<(), String> {
    match sha256_digest(body) == digest {
        true => Ok(()),
        false => Err(format!("its bytes do not match the digest {digest}")),
    }
}

fn is_index(manifest: &Value) -> bool {
    let media = manifest
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or("");
    media == "application/vnd.oci.image.index.v1+json"
        || media == "application/vnd.docker.distribution.manifest.list.v2+json"
        || (media.is_empty() && manifest.get("manifests").is_some_and(Value::is_array))
}

/// The digest of the index entry for `platform`: `os` and `architecture` equal, and `variant`
/// when the platform names one (else the first entry of that os and architecture).
fn pick(index: &Value, platform: &Platform) -> Result<String, String> {
    let entries = index
        .get("manifests")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let text = |e: &Value, k: &str| {
        e.pointer(&format!("/platform/{k}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut offered: Vec<String> = Vec::new();
    for e in entries {
        let (os, arch) = (text(e, "os"), text(e, "architecture"));
        if let (Some(os), Some(arch)) = (&os, &arch) {
            if offered.len() < 10 {
                offered.push(format!("{os}/{arch}"));
            }
        }
        let matches = os.as_deref() == Some(platform.os.as_str())
            && arch.as_deref() == Some(platform.architecture.as_str())
            && platform
                .variant
                .as_ref()
                .is_none_or(|v| text(e, "variant").as_deref() == Some(v));
        if matches {
            return e
                .get("digest")
                .and_then(Value::as_str)
                .filter(|d| is_digest(d))
                .map(str::to_string)
                .ok_or_else(|| "the index entry for the platform has no digest".to_string());
        }
    }
    Err(format!(
        "the image index has no manifest for {} (it has {})",
        platform.name(),
        match offered.is_empty() {
            true => "none".to_string(),
            false => offered.join(", "),
        }
    ))
}

/// `Bearer realm="...",service="...",scope="..."` → ("Bearer", {realm, service, scope}).
pub fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() && params.len() < 16 {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            },
        };
        params.insert(key, value.to_string());
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests;
