//! Login and reads: from a [`Spec`] to a [`Snapshot`] of Vault's answers.
//!
//! Invariants: each distinct (path, method, body) is requested once per snapshot, so two files
//! from one dynamic secret share one lease; reads run concurrently, at most [`MAX_CONCURRENT`]
//! at a time; transient failures are retried with jittered backoff until the deadline, refusals
//! fail at once; a snapshot is complete or not returned at all.

// Errors carry their context by value; they are built once, on the way out.
#![allow(clippy::result_large_err)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Auth, Read, Spec};
use crate::retry::Backoff;
use crate::secret::SecretString;
use crate::vault::auth::{self, CredentialError, LoginRequest, VaultToken};
use crate::vault::{CallError, Client, Response, TlsSetupError};

/// Bound on concurrent reads: enough to hide latency, small enough not to flood Vault.
pub const MAX_CONCURRENT: usize = 16;

/// Vault's answers, one per [`Spec::reads`] entry, in the same order.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub responses: Vec<Response>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Login,
    Read,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("TLS setup for Vault: {0}")]
    Setup(#[from] TlsSetupError),
    #[error("{0}")]
    Credential(#[from] CredentialError),
    #[error("login to {address} as {who} failed: {error}{hint}")]
    Login {
        address: String,
        who: String,
        error: String,
        hint: &'static str,
    },
    #[error("reading {method} {path} from {address} (logged in as {who}) failed: {error}{hint}")]
    Read {
        address: String,
        method: String,
        path: String,
        who: String,
        error: String,
        hint: &'static str,
    },
    #[error("{what} at {address}: gave up after {after}: {cause}", after = humantime::format_duration(*after))]
    GaveUp {
        address: String,
        what: String,
        after: Duration,
        cause: String,
    },
}

impl FetchError {
    /// Errors the user fixes in the configuration (exit code 2).
    pub fn is_config(&self) -> bool {
        matches!(self, FetchError::Setup(_))
    }
}

/// What the user can do about a refusal.
fn hint(c: &CallError, op: Op) -> &'static str {
    let status = match c {
        CallError::Refused { status, .. } => Some(*status),
        CallError::Tls { .. } => None,
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

/// Logs in and performs every read of `spec`, retrying transient failures until `deadline`.
pub struct Fetcher {
    client: Client,
    auth: Auth,
    token_path: PathBuf,
}

impl Fetcher {
    pub fn new(spec: &Spec, token_path: &Path) -> Result<Fetcher, FetchError> {
        Ok(Fetcher {
            client: Client::new(&spec.vault)?,
            auth: spec.auth.clone(),
            token_path: token_path.to_path_buf(),
        })
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
                });
            }
            LoginRequest::Post { path, body } => (path, body),
        };
        let what = format!("login at {path}");
        let resp = retrying(&self.client, &what, deadline, |timeout| {
            self.client
                .call("POST", &path, None, Some(body.expose()), timeout)
        })
        .await
        .map_err(|e| self.login_error(e))?;
        auth::token_from_login(&resp).ok_or_else(|| FetchError::Login {
            address: self.client.address().to_string(),
            who: self.who(),
            error: "the answer holds no auth.client_token".into(),
            hint: "",
        })
    }

    fn login_error(&self, e: Failure) -> FetchError {
        match e {
            Failure::GaveUp(g) => g,
            Failure::Call(c) => FetchError::Login {
                address: self.client.address().to_string(),
                who: self.who(),
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
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, read) in reads.iter().enumerate() {
            let (client, token, read, limit) = (
                self.client.clone(),
                token.clone(),
                read.clone(),
                limit.clone(),
            );
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let what = format!("reading {} {}", read.method, read.path);
                let result = retrying(&client, &what, deadline, |timeout| {
                    client.call(
                        &read.method,
                        &read.path,
                        Some(&token),
                        read.body.as_deref(),
                        timeout,
                    )
                })
                .await;
                (i, read, result)
            });
        }
        let mut responses: Vec<Option<Response>> = vec![None; reads.len()];
        while let Some(joined) = tasks.join_next().await {
            let (i, read, result) = joined.map_err(|e| FetchError::GaveUp {
                address: self.client.address().to_string(),
                what: "a read task".into(),
                after: Duration::ZERO,
                cause: e.to_string(),
            })?;
            match result {
                Ok(r) => responses[i] = Some(r),
                Err(Failure::GaveUp(g)) => return Err(g),
                Err(Failure::Call(c)) => {
                    return Err(FetchError::Read {
                        address: self.client.address().to_string(),
                        method: read.method,
                        path: read.path,
                        who: self.who(),
                        hint: hint(&c, Op::Read),
                        error: c.to_string(),
                    })
                }
            }
        }
        Ok(Snapshot {
            responses: responses
                .into_iter()
                .map(|r| r.unwrap_or(Response(serde_json::Value::Null)))
                .collect(),
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

/// Runs `attempt` until it succeeds, fails for good, or the deadline leaves no room to retry.
async fn retrying<F, Fut>(
    client: &Client,
    what: &str,
    deadline: Instant,
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
        let cause = match attempt(remaining).await {
            Ok(r) => {
                if failures > 0 {
                    tracing::info!(what, failures, "Vault answered again");
                }
                return Ok(r);
            }
            Err(CallError::Transient { cause, retry_after }) => (cause, retry_after),
            Err(other) => return Err(Failure::Call(other)),
        };
        failures += 1;
        match backoff.delay_before(deadline, cause.1) {
            Some(delay) => {
                tracing::warn!(what, address = client.address(), cause = %cause.0, retry_in = %humantime::format_duration(round_ms(delay)), "Vault unavailable, retrying");
                tokio::time::sleep(delay).await;
            }
            None => {
                return Err(Failure::GaveUp(FetchError::GaveUp {
                    address: client.address().to_string(),
                    what: what.to_string(),
                    after: round_ms(started.elapsed()),
                    cause: cause.0,
                }))
            }
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
