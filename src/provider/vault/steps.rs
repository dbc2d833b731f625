//! The network steps of a Vault session, with owned inputs so that the engine can run one
//! while it watches signals and the config (dropping it cancels it): log in, renew the token,
//! read and renew leases, revoke replaced leases. Each retries transient failures within
//! [`STEP_BUDGET`]; the session's own backoff takes over after that.

use std::time::{Duration, Instant};

use crate::secret::SecretString;

use super::auth::VaultToken;
use super::client::Response;
use super::fetch::{FetchError, Fetcher, Renewal};
use super::spec::{Auth, Read};

/// How long one network step may retry transient failures (a blip) before it counts as failed
/// and the step's own backoff takes over.
pub(super) const STEP_BUDGET: Duration = Duration::from_secs(3);
/// One network step, with owned inputs so it can run while signals are watched.
pub(super) enum Work {
    Login,
    RenewToken(SecretString, Duration),
    Reads {
        token: SecretString,
        refetch: Vec<(usize, Read)>,
        renew: Vec<(usize, String, Duration)>,
    },
    Revoke(SecretString, Vec<String>),
}

pub enum Outcome {
    Login(Result<VaultToken, FetchError>),
    RenewToken(Result<Renewal, FetchError>),
    Reads {
        fetched: Vec<(usize, Result<Response, FetchError>)>,
        renewed: Vec<(usize, Result<Renewal, FetchError>)>,
    },
    /// Replaced leases that were due: each gone (or going) or not.
    Revoked(Vec<(String, bool)>),
}

/// Ends a replaced lease: `sys/leases/revoke`, or, when the token's policy does not allow that
/// (Vault's default policy allows renewing leases but not revoking them), a renewal to one
/// second, after which Vault revokes it itself. True when the lease is gone or going.
async fn revoke_lease(fetcher: &Fetcher, token: &SecretString, lease: &str) -> bool {
    let deadline = Instant::now() + STEP_BUDGET;
    let refused = |e: &FetchError| {
        e.status()
            .is_some_and(|s| (400..500).contains(&s) && s != 429)
    };
    match fetcher.revoke_lease(token, lease, deadline).await {
        Ok(()) => {
            tracing::info!(lease_id = %lease, "revoked a replaced lease");
            return true;
        }
        Err(e) if e.status() == Some(403) => {}
        // Unknown to Vault: it ended on its own already.
        Err(e) if refused(&e) => return true,
        Err(e) => {
            tracing::warn!(lease_id = %lease, error = %e, "cannot revoke a replaced lease; trying again later");
            return false;
        }
    }
    match fetcher
        .renew_lease(token, lease, Duration::from_secs(1), deadline)
        .await
    {
        Ok(_) => {
            tracing::info!(lease_id = %lease, "ended a replaced lease (renewed to 1s: this token may not revoke leases)");
            true
        }
        Err(e) if refused(&e) => {
            tracing::debug!(lease_id = %lease, error = %e, "a replaced lease is already gone");
            true
        }
        Err(e) => {
            tracing::warn!(lease_id = %lease, error = %e, "cannot end a replaced lease; trying again later");
            false
        }
    }
}

/// Runs one network step.
pub(super) async fn perform(fetcher: &Fetcher, job: Work) -> Outcome {
    let deadline = Instant::now() + STEP_BUDGET;
    match job {
        Work::Login => Outcome::Login(login(fetcher, deadline).await),
        Work::RenewToken(token, increment) => {
            Outcome::RenewToken(fetcher.renew_token(&token, increment, deadline).await)
        }
        Work::Reads {
            token,
            refetch,
            renew,
        } => {
            let reads: Vec<Read> = refetch.iter().map(|(_, r)| r.clone()).collect();
            let fetched = if reads.is_empty() {
                vec![]
            } else {
                // One request per read, concurrently; each result kept on its own.
                let results = fetcher.read_each(&reads, &token, deadline).await;
                refetch.iter().map(|(i, _)| *i).zip(results).collect()
            };
            let mut renewed = Vec::new();
            for (i, lease, increment) in renew {
                renewed.push((
                    i,
                    fetcher
                        .renew_lease(&token, &lease, increment, deadline)
                        .await,
                ));
            }
            Outcome::Reads { fetched, renewed }
        }
        Work::Revoke(token, leases) => {
            let mut done = Vec::new();
            for lease in leases {
                let gone = revoke_lease(fetcher, &token, &lease).await;
                done.push((lease, gone));
            }
            Outcome::Revoked(done)
        }
    }
}

/// Logs in; a ready token (method token) is looked up for what it is worth.
pub(super) async fn login(fetcher: &Fetcher, deadline: Instant) -> Result<VaultToken, FetchError> {
    match fetcher.login(deadline).await {
        Ok(t) if t.ttl.is_zero() && matches!(fetcher.auth(), Auth::Token { .. }) => {
            let info = fetcher.lookup_token(&t.token, deadline).await?;
            Ok(VaultToken {
                ttl: info.ttl,
                renewable: info.renewable,
                accessor: info.accessor,
                ..t
            })
        }
        other => other,
    }
}
