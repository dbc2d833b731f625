//! Login and reads: from a [`VaultSpec`] to a [`Snapshot`] of Vault's answers.
//!
//! Invariants: each distinct (path, method, body) is requested once per snapshot, so two files
//! from one dynamic secret share one lease; reads run concurrently, at most [`MAX_CONCURRENT`]
//! at a time; transient failures are retried with jittered backoff until the deadline, refusals
//! fail at once; a snapshot is complete or not returned at all.
//!
//! Redirects to another node (see [`RedirectKind::AnotherNode`]) are never followed. They are
//! transient (cause `unavailable`) until they persist: until the same request (method and path,
//! or login path) has had nothing but such redirects and transient failures for
//! [`REDIRECT_PERSISTS`], across retries and across the sidecar's steps. Only then are they an
//! `invalid_answer`, with the advice about request forwarding. An election (standbys answer
//! `307` to the dead active node, then `500 local node not active`) lasts seconds; a standby
//! that can never forward redirects for ever.

// Errors carry their context by value; they are built once, on the way out.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::spec::{Auth, Read, VaultSpec};
use crate::provider::vault::auth::{self, CredentialError, LoginRequest, VaultToken};
use crate::provider::vault::client::{
    network_secs, CallError, Client, ClientPolicy, RedirectKind, Response, TlsSetupError,
};
use crate::retry::Backoff;
use crate::secret::SecretString;

/// Bound on concurrent reads: enough to hide latency, small enough not to flood Vault.
pub const MAX_CONCURRENT: usize = 16;

/// How long one request may be redirected to another node before the redirect counts as a
/// misconfiguration rather than an election. An election after the active node dies takes
/// seconds: raft's heartbeat timeout (1 s times `performance_multiplier`, 5 by default, drawn
/// between one and two of them), the vote, then the new active node's setup; about 5–15 s with
/// the defaults. Twice the long end of that is still short enough to report standbys that
/// cannot forward within a minute of the first attempt. [`REDIRECT_ADVICE`] names it.
pub const REDIRECT_PERSISTS: Duration = Duration::from_secs(30);

/// The hint of a redirect that persisted for [`REDIRECT_PERSISTS`].
const REDIRECT_ADVICE: &str = " (redirected to another node for 30 s or more, longer than an \
     election: the standbys cannot forward requests to the active node. Check that they reach \
     its cluster address (port 8201 by default), or point the address at the active node: a \
     Service selecting vault-active=true, or openbao-active=true for OpenBao)";

/// Since when each request (by its `what`: method and path, or login path) has been redirected
/// to another node, with nothing but transient failures in between. Shared by every retry of
/// the request and every step of a sidecar (one per [`Fetcher`]); an entry goes when the
/// request is answered (or refused), so the map holds at most one entry per distinct request.
#[derive(Debug, Default)]
struct RedirectStreaks {
    by_request: Mutex<HashMap<String, Streak>>,
}

#[derive(Debug, Clone, Copy)]
struct Streak {
    since: Instant,
    /// The streak reached [`REDIRECT_PERSISTS`] and was reported.
    reported: bool,
}

/// One more redirect of a request, as its streak sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Redirects {
    /// Shorter than [`REDIRECT_PERSISTS`] so far: an election, as far as anyone can tell.
    Passing,
    /// Persisted, and this is the first redirect to say so: report it.
    NowPersistent(Duration),
    /// Persisted and already reported.
    Persistent,
}

impl RedirectStreaks {
    /// Records a redirect of `what` seen at `now`.
    fn redirected(&self, what: &str, now: Instant) -> Redirects {
        let Ok(mut streaks) = self.by_request.lock() else {
            return Redirects::Passing;
        };
        let streak = streaks.entry(what.to_string()).or_insert(Streak {
            since: now,
            reported: false,
        });
        let lasted = now.saturating_duration_since(streak.since);
        match (lasted >= REDIRECT_PERSISTS, streak.reported) {
            (false, _) => Redirects::Passing,
            (true, true) => Redirects::Persistent,
            (true, false) => {
                streak.reported = true;
                Redirects::NowPersistent(lasted)
            }
        }
    }

    /// `what` had an answer that is neither a redirect to another node nor a transient
    /// failure: whatever answered it, its streak ends.
    fn answered(&self, what: &str) {
        if let Ok(mut streaks) = self.by_request.lock() {
            streaks.remove(what);
        }
    }
}

/// Vault's answers, one per [`VaultSpec::reads`] entry, in the same order.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub responses: Vec<Response>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Login,
    Request,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("TLS setup for Vault: {0}")]
    Setup(#[from] TlsSetupError),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    Credential(#[from] CredentialError),
    #[error("login to {address} as {who} failed: {error}{hint}")]
    Login {
        address: String,
        who: String,
        status: Option<u16>,
        error: String,
        hint: &'static str,
    },
    #[error("{method} {path} on {address} (logged in as {who}) failed: {error}{hint}")]
    Request {
        address: String,
        method: String,
        path: String,
        who: String,
        status: Option<u16>,
        error: String,
        hint: String,
    },
    #[error("{what} at {address}: gave up after {after}: {cause}", after = humantime::format_duration(*after))]
    GaveUp {
        address: String,
        what: String,
        after: Duration,
        cause: String,
        retry_after: Option<Duration>,
    },
}

impl FetchError {
    /// Errors the user fixes in the configuration (exit code 2).
    pub fn is_config(&self) -> bool {
        matches!(self, FetchError::Setup(_) | FetchError::NotAllowed(_))
    }

    /// Vault's HTTP status when it refused.
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Login { status, .. } | FetchError::Request { status, .. } => *status,
            _ => None,
        }
    }

    /// A server's `Retry-After` from the last transient failure.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::GaveUp { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short, stable label for metrics and logs.
    pub fn cause(&self) -> &'static str {
        match self {
            FetchError::Setup(_) => "tls_setup",
            FetchError::NotAllowed(_) => "address_not_allowed",
            FetchError::Credential(_) => "credential",
            FetchError::GaveUp { .. } => "unavailable",
            FetchError::Login { status: None, .. } | FetchError::Request { status: None, .. } => {
                "tls"
            }
            _ => match self.status() {
                Some(403) => "denied",
                Some(404) => "not_found",
                Some(s) if (400..500).contains(&s) => "rejected",
                _ => "invalid_answer",
            },
        }
    }
}

/// What the user can do about a refusal.
fn hint(c: &CallError, op: Op) -> &'static str {
    // A claim the role binds: Vault's answer (400 from the jwt method, 403 from kubernetes)
    // names it, and the general hints would send the user to the role or the mount instead.
    if let (CallError::Refused { message, .. }, Op::Login) = (c, op) {
        if message.contains("(sub) claim") {
            return " (the token's subject, system:serviceaccount:NAMESPACE:NAME, is not the \
                    role's bound_subject: run the pod as the service account the role is bound \
                    to, or bind the role to the pod's)";
        }
        if message.contains("(aud) claim") {
            return " (none of the token's audiences is one of the role's bound_audiences: \
                    project the token with one of them (the audience parameter, or the \
                    webhook's token-audience), or add its audience to the role)";
        }
        if message.contains("bound claim") {
            return " (a claim of the token does not match the role's bound_claims)";
        }
    }
    let status = match c {
        CallError::Refused { status, .. } => Some(*status),
        CallError::Tls { .. } => None,
        // Only a redirect that persisted gets this far; one that did not is retried as a
        // transient failure and never becomes a refusal (see `retrying`).
        CallError::Redirected {
            kind: RedirectKind::AnotherNode,
            ..
        } => return REDIRECT_ADVICE,
        _ => return "",
    };
    match (status, op) {
        (Some(400), Op::Login) => {
            " (check that the role exists at this auth mount and that the request fits the method)"
        }
        (Some(403), Op::Login) => {
            " (Vault rejected the credential: check the role's bound service account names and \
             namespaces, the token's audience and issuer, and that the auth mount is the right one)"
        }
        (Some(403), _) => " (the policies of this login do not allow this path and method)",
        (Some(404), _) => " (nothing at this path: check the mount, the KV version (data/ for KV v2) and the secret name)",
        (None, _) => " (the TLS handshake failed: check the CA certificate for Vault, the TLS server name, and the client certificate if Vault requires one)",
        _ => "",
    }
}

/// [`hint`] for a read, and on a 403 for a path without `data/` after its first segment, the
/// KV v2 spelling: `secret/app` on a KV v2 mount is refused by a policy written for
/// `secret/data/app` (Vault's own CLI adds the `data/`; the API and the CSI provider do not).
fn request_hint(c: &CallError, path: &str) -> String {
    let general = hint(c, Op::Request);
    let refused_403 = matches!(c, CallError::Refused { status: 403, .. });
    let trimmed = path.trim_start_matches('/');
    let trimmed = trimmed.strip_prefix("v1/").unwrap_or(trimmed);
    let trimmed = trimmed.split('?').next().unwrap_or(trimmed);
    match trimmed.split_once('/') {
        Some((mount, rest))
            if refused_403
                && !rest.is_empty()
                && !rest.starts_with("data/")
                && !rest.starts_with("metadata/")
                && !["creds/", "static-creds/", "issue/", "sign/"]
                    .iter()
                    .any(|engine| rest.starts_with(engine)) =>
        {
            format!(
                "{general}; if {mount}/ is a KV version 2 mount, the API path is \
                 {mount}/data/{rest} (secretPath: {mount}/data/{rest})"
            )
        }
        _ => general.to_string(),
    }
}

fn status_of(c: &CallError) -> Option<u16> {
    match c {
        CallError::Refused { status, .. } => Some(*status),
        CallError::Tls { .. } => None,
        _ => Some(200),
    }
}

/// What Vault said when a lease or token was renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    pub duration: Duration,
    pub renewable: bool,
}

impl From<FetchError> for crate::error::Error {
    fn from(e: FetchError) -> Self {
        crate::error::Error::failed(e.is_config(), e)
    }
}

/// What `lookup-self` says of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Time left; zero for a token that never expires.
    pub ttl: Duration,
    pub renewable: bool,
    pub accessor: String,
}

/// Logs in and performs every read of `spec`, retrying transient failures until `deadline`.
pub struct Fetcher {
    client: Client,
    auth: Auth,
    token_path: PathBuf,
    /// Log each retry at debug instead of warn (the sidecar logs state changes itself).
    quiet: bool,
    /// Redirects to another node, per request, across retries and steps.
    streaks: Arc<RedirectStreaks>,
    /// API paths of templates' `secret "P"` calls, resolved once per process (see
    /// [`super::template`]).
    kv_paths: Arc<Mutex<HashMap<String, String>>>,
}

impl Fetcher {
    /// A client for `spec`'s Vault, refused when `policy` does not allow its address.
    pub fn new(
        spec: &VaultSpec,
        token_path: &Path,
        policy: &ClientPolicy,
    ) -> Result<Fetcher, FetchError> {
        policy
            .check_address(&spec.vault.address)
            .map_err(FetchError::NotAllowed)?;
        Ok(Fetcher {
            client: Client::new(&spec.vault, policy)?,
            auth: spec.auth.clone(),
            token_path: token_path.to_path_buf(),
            quiet: false,
            streaks: Arc::default(),
            kv_paths: Arc::default(),
        })
    }

    /// Retries inside a step are logged at debug level only.
    pub fn quiet(mut self) -> Fetcher {
        self.quiet = true;
        self
    }

    fn who(&self) -> String {
        auth::describe(&self.auth, &self.token_path)
    }

    /// Obtains a token, reading credential files afresh.
    pub async fn login(&self, deadline: Instant) -> Result<VaultToken, FetchError> {
        let (path, body) = match auth::prepare(&self.auth, &self.token_path)? {
            LoginRequest::Token(token) => {
                return Ok(VaultToken {
                    token,
                    ttl: Duration::ZERO,
                    renewable: false,
                    accessor: String::new(),
                });
            }
            LoginRequest::Post { path, body } => (path, body),
        };
        let what = format!("login at {path}");
        let resp = retrying(
            &self.client,
            &self.streaks,
            &what,
            deadline,
            self.quiet,
            |timeout| {
                self.client
                    .call("POST", &path, None, Some(body.expose()), timeout)
            },
        )
        .await
        .map_err(|e| self.login_error(e))?;
        auth::token_from_login(&resp).ok_or_else(|| FetchError::Login {
            address: self.client.place(),
            who: self.who(),
            status: Some(200),
            error: "the answer holds no auth.client_token".into(),
            hint: "",
        })
    }

    fn login_error(&self, e: Failure) -> FetchError {
        match e {
            Failure::GaveUp(g) => g,
            Failure::Call(c) => FetchError::Login {
                address: self.client.place(),
                who: self.who(),
                status: status_of(&c),
                hint: hint(&c, Op::Login),
                error: c.to_string(),
            },
        }
    }

    /// Logs in, then performs all reads concurrently.
    pub async fn fetch(&self, reads: &[Read], deadline: Instant) -> Result<Snapshot, FetchError> {
        let token = self.login(deadline).await?;
        self.read_all(reads, &token.token, deadline).await
    }

    pub async fn read_all(
        &self,
        reads: &[Read],
        token: &SecretString,
        deadline: Instant,
    ) -> Result<Snapshot, FetchError> {
        let responses = self
            .read_each(reads, token, deadline)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Snapshot { responses })
    }

    /// Every read concurrently (at most [`MAX_CONCURRENT`] at a time), each result on its own,
    /// in the order of `reads`.
    pub async fn read_each(
        &self,
        reads: &[Read],
        token: &SecretString,
        deadline: Instant,
    ) -> Vec<Result<Response, FetchError>> {
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, read) in reads.iter().enumerate() {
            let (api, token, read, limit) =
                (self.api(), token.clone(), read.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (i, api.read(&read, &token, deadline).await)
            });
        }
        let mut results: Vec<Option<Result<Response, FetchError>>> =
            (0..reads.len()).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((i, r)) => results[i] = Some(r),
                Err(e) => tracing::error!(error = %e, "a read task failed"),
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(FetchError::GaveUp {
                        address: self.client.place(),
                        what: "a read task".into(),
                        after: Duration::ZERO,
                        cause: "the task did not finish".into(),
                        retry_after: None,
                    })
                })
            })
            .collect()
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// One read, retried until `deadline`.
    pub async fn read(
        &self,
        read: &Read,
        token: &SecretString,
        deadline: Instant,
    ) -> Result<Response, FetchError> {
        self.api().read(read, token, deadline).await
    }

    /// `auth/token/lookup-self`: what Vault knows of a token it did not hand us at login (a
    /// ready token, or one a previous process recorded in `--state-dir`).
    pub async fn lookup_token(
        &self,
        token: &SecretString,
        deadline: Instant,
    ) -> Result<TokenInfo, FetchError> {
        let r = self
            .api()
            .request("GET", "auth/token/lookup-self", token, None, deadline)
            .await?;
        let data = r.0.get("data");
        Ok(TokenInfo {
            ttl: network_secs(data.and_then(|d| d.get("ttl"))),
            renewable: data
                .and_then(|d| d.get("renewable"))
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            accessor: data
                .and_then(|d| d.get("accessor"))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// `auth/token/renew-self` asking for `increment` more.
    pub async fn renew_token(
        &self,
        token: &SecretString,
        increment: Duration,
        deadline: Instant,
    ) -> Result<Renewal, FetchError> {
        let body = format!("{{\"increment\":\"{}s\"}}", increment.as_secs());
        let r = self
            .api()
            .request(
                "POST",
                "auth/token/renew-self",
                token,
                Some(&body),
                deadline,
            )
            .await?;
        let auth = r.0.get("auth");
        Ok(Renewal {
            duration: network_secs(auth.and_then(|a| a.get("lease_duration"))),
            renewable: auth
                .and_then(|a| a.get("renewable"))
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        })
    }

    /// `sys/leases/renew` asking for `increment` more.
    pub async fn renew_lease(
        &self,
        token: &SecretString,
        lease_id: &str,
        increment: Duration,
        deadline: Instant,
    ) -> Result<Renewal, FetchError> {
        let body =
            serde_json::json!({"lease_id": lease_id, "increment": increment.as_secs()}).to_string();
        let r = self
            .api()
            .request("PUT", "sys/leases/renew", token, Some(&body), deadline)
            .await?;
        Ok(Renewal {
            duration: network_secs(r.0.get("lease_duration")),
            renewable: r
                .0
                .get("renewable")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        })
    }

    /// `sys/leases/revoke`.
    pub async fn revoke_lease(
        &self,
        token: &SecretString,
        lease_id: &str,
        deadline: Instant,
    ) -> Result<(), FetchError> {
        let body = serde_json::json!({ "lease_id": lease_id }).to_string();
        self.api()
            .request("PUT", "sys/leases/revoke", token, Some(&body), deadline)
            .await
            .map(drop)
    }

    /// `auth/token/revoke-self`: also revokes every lease the token created.
    pub async fn revoke_token(
        &self,
        token: &SecretString,
        deadline: Instant,
    ) -> Result<(), FetchError> {
        self.api()
            .request("POST", "auth/token/revoke-self", token, None, deadline)
            .await
            .map(drop)
    }

    fn api(&self) -> Api {
        Api {
            client: self.client.clone(),
            who: Arc::from(self.who()),
            quiet: self.quiet,
            streaks: self.streaks.clone(),
            kv_paths: self.kv_paths.clone(),
        }
    }
}

/// The client plus who we are logged in as, cheap to clone into concurrent tasks.
#[derive(Clone)]
struct Api {
    client: Client,
    who: Arc<str>,
    quiet: bool,
    streaks: Arc<RedirectStreaks>,
    kv_paths: Arc<Mutex<HashMap<String, String>>>,
}

impl Api {
    async fn read(
        &self,
        read: &Read,
        token: &SecretString,
        deadline: Instant,
    ) -> Result<Response, FetchError> {
        let body = read.body.as_deref();
        let path = match read.template && read.method == "GET" {
            true => self.kv_path(&read.path, token, deadline).await,
            false => read.path.clone(),
        };
        self.request_keeping(&read.method, &path, token, body, deadline, read.template)
            .await
    }

    /// The API path of a template's `secret "P"`: Vault says which mount holds P. As in Vault
    /// Agent, a refusal or an answer without a KV version 2 mount means P as written; only a
    /// definite answer is kept, so an outage does not fix the path for the process's life.
    async fn kv_path(&self, raw: &str, token: &SecretString, deadline: Instant) -> String {
        if let Some(p) = self.kv_paths.lock().ok().and_then(|m| m.get(raw).cloned()) {
            return p;
        }
        let question = format!(
            "sys/internal/ui/mounts/{}",
            raw.split('?').next().unwrap_or(raw)
        );
        let (path, keep) = match self.request("GET", &question, token, None, deadline).await {
            Ok(answer) => (super::kv_shim::api_path(raw, &answer.0), true),
            Err(e) => {
                tracing::debug!(path = raw, error = %e, "cannot tell which mount holds the path; reading it as written");
                (raw.to_string(), e.status().is_some())
            }
        };
        if keep {
            if let Ok(mut m) = self.kv_paths.lock() {
                // Bounded by the distinct paths of the config's templates.
                m.insert(raw.to_string(), path.clone());
            }
        }
        path
    }

    /// One authenticated request, retried until `deadline`, errors named by method and path.
    async fn request(
        &self,
        method: &str,
        path: &str,
        token: &SecretString,
        body: Option<&str>,
        deadline: Instant,
    ) -> Result<Response, FetchError> {
        self.request_keeping(method, path, token, body, deadline, false)
            .await
    }

    /// [`Api::request`], the answer's bytes kept when `keep` (a Go template's read).
    async fn request_keeping(
        &self,
        method: &str,
        path: &str,
        token: &SecretString,
        body: Option<&str>,
        deadline: Instant,
        keep: bool,
    ) -> Result<Response, FetchError> {
        let what = format!("{method} {path}");
        retrying(
            &self.client,
            &self.streaks,
            &what,
            deadline,
            self.quiet,
            |timeout| {
                self.client
                    .call_keeping(method, path, Some(token), body, timeout, keep)
            },
        )
        .await
        .map_err(|e| match e {
            Failure::GaveUp(g) => g,
            Failure::Call(c) => FetchError::Request {
                address: self.client.place(),
                method: method.to_string(),
                path: path.to_string(),
                who: self.who.to_string(),
                status: status_of(&c),
                hint: request_hint(&c, path),
                error: c.to_string(),
            },
        })
    }
}

/// Why a retried call stopped: a non-retryable answer, or the deadline.
enum Failure {
    Call(CallError),
    GaveUp(FetchError),
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Call(c) => write!(f, "Call({c:?})"),
            Failure::GaveUp(g) => write!(f, "GaveUp({g:?})"),
        }
    }
}

/// What to do with one failed attempt.
enum Verdict {
    /// Retry (if the deadline allows) for this cause, after at least `Retry-After`.
    Again(String, Option<Duration>),
    /// Stop: retrying will not help.
    Stop,
}

/// Whether a failed attempt of `what` at `now` is worth retrying. A redirect to another node
/// is, until its streak lasts [`REDIRECT_PERSISTS`]; other redirects and refusals are not;
/// transient failures are. Anything but a redirect or a transient failure ends the streak of
/// `what`.
fn judge(streaks: &RedirectStreaks, what: &str, error: &CallError, now: Instant) -> Verdict {
    match error {
        CallError::Transient { cause, retry_after } => Verdict::Again(cause.clone(), *retry_after),
        CallError::Redirected {
            kind: RedirectKind::AnotherNode,
            from,
            to,
        } => match streaks.redirected(what, now) {
            Redirects::Passing => Verdict::Again(error.to_string(), None),
            Redirects::Persistent => Verdict::Stop,
            Redirects::NowPersistent(lasted) => {
                // Once per streak, and at warn whatever `quiet` says: the sidecar logs a
                // step's failures at warn only when they start, and these started out as
                // an outage.
                let lasted = crate::logging::Dur(round_ms(lasted));
                tracing::warn!(what, %from, %to, %lasted, "Vault keeps redirecting{REDIRECT_ADVICE}");
                Verdict::Stop
            }
        },
        _ => {
            streaks.answered(what);
            Verdict::Stop
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the deadline leaves no room to retry.
/// `streaks` are the redirect streaks of the [`Fetcher`] that `client` belongs to.
async fn retrying<F, Fut>(
    client: &Client,
    streaks: &RedirectStreaks,
    what: &str,
    deadline: Instant,
    quiet: bool,
    mut attempt: F,
) -> Result<Response, Failure>
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Result<Response, CallError>>,
{
    let started = Instant::now();
    let mut backoff = Backoff::default();
    let mut failures = 0u32;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let error = match attempt(remaining).await {
            Ok(r) => {
                streaks.answered(what);
                if failures > 0 && !quiet {
                    tracing::info!(what, failures, "Vault answered again");
                }
                return Ok(r);
            }
            Err(e) => e,
        };
        let cause = match judge(streaks, what, &error, Instant::now()) {
            Verdict::Again(cause, retry_after) => (cause, retry_after),
            Verdict::Stop => return Err(Failure::Call(error)),
        };
        failures += 1;
        match backoff.delay_before(deadline, cause.1) {
            Some(delay) => {
                let retry_in = crate::logging::Dur(round_ms(delay));
                if quiet {
                    tracing::debug!(what, address = client.address(), cause = %cause.0, %retry_in, "Vault unavailable, retrying");
                } else {
                    tracing::warn!(what, address = client.address(), cause = %cause.0, %retry_in, "Vault unavailable, retrying");
                }
                tokio::time::sleep(delay).await;
            }
            None => {
                return Err(Failure::GaveUp(FetchError::GaveUp {
                    address: client.address().to_string(),
                    what: what.to_string(),
                    after: round_ms(started.elapsed()),
                    cause: cause.0,
                    retry_after: cause.1,
                }))
            }
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
