//! From a [`GcpSpec`] to a [`GcpSnapshot`]: every distinct secret version read once with its
//! own `AccessSecretVersion`, concurrently, then each entry's extract key applied.
//!
//! All or nothing (docs/gcp.md): a snapshot is complete or not returned at all, and the error
//! names each resource that failed (`RESOURCE (file F): STATUS (HTTP N): message`), with the
//! identity that asked. Retried until the deadline: 429, 5xx, the network, and a 401 once with
//! a new token; anything else is final at once, so `init` exits promptly whatever `--timeout`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::cloud::Http;
use crate::retry::Backoff;
use crate::secret::SecretBytes;

use super::api::{self, AccessError, Accessed};
use super::credentials::{self, CredentialError, Credentials, GcpEnv};
use super::spec::{GcpSpec, Resource, Store};

/// Concurrent requests at most.
const MAX_CONCURRENT: usize = 16;
/// Once one read failed for good, how long the others may still take to report theirs.
const GRACE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// One entry's bytes (its extract key applied) and the version that gave them.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub value: SecretBytes,
    /// The resolved version's name (`projects/NUMBER/secrets/S/versions/3`).
    pub version: String,
}

/// Values in the order of [`GcpSpec::secrets`].
#[derive(Debug, Clone, PartialEq)]
pub struct GcpSnapshot {
    pub values: Vec<Fetched>,
}

impl GcpSnapshot {
    /// Same versions and bytes: nothing to render.
    pub fn same_content(&self, other: &GcpSnapshot) -> bool {
        self.values == other.values
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GcpError {
    /// Something the user fixes in the class or the pod's environment (exit 2).
    #[error("{0}")]
    Config(String),
    /// A fault of secretdrop itself (a read task that did not finish): exit 1.
    #[error("{0}")]
    Internal(String),
    /// No token could be had.
    #[error("no Google access token: {0}")]
    Credentials(String),
    /// Reads that failed, one line each; nothing was written.
    #[error("{} of {total} secret versions could not be read (nothing written): {}", failures.len(), failures.join("; "))]
    Reads {
        failures: Vec<String>,
        total: usize,
        cause: &'static str,
    },
}

impl GcpError {
    pub fn is_config(&self) -> bool {
        matches!(self, GcpError::Config(_))
    }

    /// A short label for metrics and logs.
    pub fn cause(&self) -> &'static str {
        match self {
            GcpError::Config(_) => "config",
            GcpError::Internal(_) => "internal",
            GcpError::Credentials(_) => "credential",
            GcpError::Reads { cause, .. } => cause,
        }
    }
}

impl From<GcpError> for crate::error::Error {
    fn from(e: GcpError) -> Self {
        crate::error::Error::failed(e.is_config(), e)
    }
}

fn cause_of(e: &AccessError) -> &'static str {
    match e.status.as_str() {
        "PERMISSION_DENIED" | "UNAUTHENTICATED" => "denied",
        "NOT_FOUND" => "not_found",
        "DATA_CORRUPTED" | "INVALID_ANSWER" | "ANSWER_TOO_LARGE" => "invalid_answer",
        _ if e.transient => "unavailable",
        _ => "rejected",
    }
}

fn hint(e: &AccessError, store: Store) -> &'static str {
    match e.status.as_str() {
        "PERMISSION_DENIED" if store == Store::ParameterManager => {
            " (grant roles/parametermanager.parameterAccessor on the parameter or its project; \
             secrets it references need roles/secretmanager.secretAccessor for the parameter's \
             own identity)"
        }
        "PERMISSION_DENIED" => {
            " (grant roles/secretmanager.secretAccessor on the secret or its project; a secret \
             that does not exist answers the same)"
        }
        "NOT_FOUND" => {
            " (check the project, secret and version; a regional secret is named with its \
             location)"
        }
        "FAILED_PRECONDITION" => " (the version is disabled or destroyed: name another one)",
        "UNAUTHENTICATED" => " (the access token was not accepted, even a fresh one)",
        _ => "",
    }
}

struct Inner {
    http: Http,
    creds: Credentials,
    spec: GcpSpec,
    requests: AtomicU64,
    quiet: AtomicBool,
}

/// Performs the reads of one spec; cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

/// Why one read failed for good.
enum Failure {
    Credentials(CredentialError),
    Access(AccessError),
}

impl Fetcher {
    pub fn new(spec: &GcpSpec, env: &GcpEnv) -> Result<Fetcher, GcpError> {
        let http = Http::new(None)
            .map_err(|e| GcpError::Config(format!("Google HTTP client (SSL_CERT_FILE): {e}")))?;
        let source = credentials::source(env).map_err(|e| GcpError::Config(e.message))?;
        Ok(Fetcher {
            inner: Arc::new(Inner {
                creds: Credentials::new(source, http.clone()),
                http,
                spec: spec.clone(),
                requests: AtomicU64::new(0),
                quiet: Default::default(),
            }),
        })
    }

    /// Retries are logged at debug level only (the sidecar reports state changes itself).
    pub fn quiet(self) -> Fetcher {
        self.inner.quiet.store(true, Ordering::Relaxed);
        self
    }

    /// Secret Manager requests sent so far (each attempt counts).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Tokens obtained so far.
    pub fn credential_exchanges(&self) -> u64 {
        self.inner.creds.exchanges.load(Ordering::Relaxed)
    }

    pub fn credentials(&self) -> &Credentials {
        &self.inner.creds
    }

    pub fn who(&self) -> String {
        self.inner.creds.source().describe()
    }

    /// Every entry, or every failure.
    pub async fn fetch(&self, deadline: Instant) -> Result<GcpSnapshot, GcpError> {
        let spec = &self.inner.spec;
        let mut distinct: Vec<&Resource> = Vec::new();
        for s in &spec.secrets {
            if !distinct.contains(&&s.resource) {
                distinct.push(&s.resource);
            }
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, r) in distinct.iter().enumerate() {
            let (me, limit, r) = (self.clone(), limit.clone(), (*r).clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (i, me.read(&r, deadline).await)
            });
        }
        let mut read: Vec<Option<Accessed>> = distinct.iter().map(|_| None).collect();
        let mut failures: Vec<(usize, Failure)> = Vec::new();
        let mut grace: Option<Instant> = None;
        loop {
            let next = match grace {
                None => tasks.join_next().await,
                Some(until) => match tokio::time::timeout_at(until.into(), tasks.join_next()).await
                {
                    Ok(n) => n,
                    // The rest are still retrying; the failures so far decide.
                    Err(_) => break,
                },
            };
            match next {
                None => break,
                Some(Ok((i, Ok(a)))) => read[i] = Some(a),
                Some(Ok((i, Err(f)))) => {
                    if let Failure::Credentials(e) = &f {
                        if e.config {
                            return Err(GcpError::Config(e.message.clone()));
                        }
                    }
                    failures.push((i, f));
                    grace.get_or_insert_with(|| Instant::now() + GRACE_AFTER_FAILURE);
                }
                Some(Err(e)) => return Err(GcpError::Internal(format!("a read task failed: {e}"))),
            }
        }
        tasks.abort_all();
        if !failures.is_empty() {
            return Err(self.failed(&distinct, failures));
        }
        let mut values = Vec::with_capacity(spec.secrets.len());
        let mut problems = Vec::new();
        for s in &spec.secrets {
            let at = distinct.iter().position(|r| **r == s.resource).unwrap_or(0);
            let Some(a) = read[at].as_ref() else {
                return Err(GcpError::Internal(format!(
                    "{}: the read did not finish",
                    s.resource.name
                )));
            };
            match super::extract::apply(&s.extract, a.data.expose()) {
                Ok(value) => values.push(Fetched {
                    value,
                    version: a.name.clone(),
                }),
                Err(m) => problems.push(format!("{} (file {:?}): {m}", s.resource.name, s.file)),
            }
        }
        if !problems.is_empty() {
            return Err(GcpError::Reads {
                failures: problems,
                total: spec.secrets.len(),
                cause: "render",
            });
        }
        Ok(GcpSnapshot { values })
    }

    fn failed(&self, distinct: &[&Resource], mut failures: Vec<(usize, Failure)>) -> GcpError {
        failures.sort_by_key(|(i, _)| *i);
        // A token that could not be had fails every read alike: said once.
        if let Some((_, Failure::Credentials(e))) = failures
            .iter()
            .find(|(_, f)| matches!(f, Failure::Credentials(_)))
        {
            return GcpError::Credentials(format!("{} (as {})", e.message, self.who()));
        }
        let files = |r: &Resource| {
            self.inner
                .spec
                .secrets
                .iter()
                .filter(|s| s.resource == *r)
                .map(|s| format!("{:?}", s.file))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut cause = "unavailable";
        let lines = failures
            .iter()
            .enumerate()
            .filter_map(|(n, (i, f))| match f {
                Failure::Access(e) => {
                    if n == 0 {
                        cause = cause_of(e);
                    }
                    let r = distinct[*i];
                    Some(format!(
                        "{} (file {}): {e}; asked as {}{}",
                        r.name,
                        files(r),
                        self.who(),
                        hint(e, r.store)
                    ))
                }
                Failure::Credentials(_) => None,
            })
            .collect();
        GcpError::Reads {
            failures: lines,
            total: self.inner.spec.secrets.len(),
            cause,
        }
    }

    /// One version, retrying what is worth it until `deadline`.
    async fn read(&self, r: &Resource, deadline: Instant) -> Result<Accessed, Failure> {
        let mut backoff = Backoff::default();
        let mut renewed = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let failure = match self.inner.creds.get(left).await {
                Err(e) => Failure::Credentials(e),
                Ok(token) => {
                    self.inner.requests.fetch_add(1, Ordering::Relaxed);
                    let quota = self.inner.creds.source().quota_project();
                    match api::access(&self.inner.http, r, token.access.expose(), quota, left).await
                    {
                        Ok(a) => return Ok(a),
                        // google-auth refreshes and retries once on a 401.
                        Err(e) if e.http == Some(401) && !renewed => {
                            renewed = true;
                            self.inner.creds.forget(&token).await;
                            continue;
                        }
                        Err(e) => Failure::Access(e),
                    }
                }
            };
            let (transient, text) = match &failure {
                Failure::Access(e) => (e.transient, e.to_string()),
                Failure::Credentials(e) => (e.transient, e.message.clone()),
            };
            if !transient {
                return Err(failure);
            }
            match backoff.delay_before(deadline, None) {
                Some(d) => {
                    if self.inner.quiet.load(Ordering::Relaxed) {
                        tracing::debug!(resource = %r.name, error = %text, "Google unavailable, retrying");
                    } else {
                        tracing::warn!(resource = %r.name, error = %text, "Google unavailable, retrying");
                    }
                    tokio::time::sleep(d).await;
                }
                None => return Err(failure),
            }
        }
    }
}
