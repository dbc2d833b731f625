//! An Azure session (docs/azure.md): the Key Vault access token (refreshed ahead of expiry by
//! [`super::auth`]), the versions held, and the next poll.
//!
//! Invariants: a poll whose versions and contents equal the ones held renders nothing
//! (`secretdrop_reads_unchanged_total` counts the objects); a changed object is rendered with
//! all others as one version; a failed poll keeps what is held and is retried with capped,
//! jittered backoff, never later than the poll interval; with `--state-dir` the access token
//! is recorded (mode 0600, with its expiry and the identity that obtained it) and a later
//! process of the same identity uses it until it is due for refresh, so an init container
//! followed by the sidecar, or a restarted sidecar, makes no new token exchange.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fingerprint::{from_unix, sha256, unix};
use crate::observe::Metrics;
use crate::provider::{Freshness, Job, Render, Settings};
use crate::retry::{jitter, Step};
use crate::secret::{SecretBytes, SecretString};

use super::auth::AccessToken;
use super::fetch::{AzureError, AzureSnapshot, Fetcher};
use super::spec::AzureSpec;

/// How long one poll may retry a transient failure before it counts as failed.
const POLL_BUDGET: Duration = Duration::from_secs(10);
const FORMAT: &str = "secretdrop.dev/state/azure/v1";

/// What a poll brought back.
pub enum Outcome {
    Polled(Result<AzureSnapshot, AzureError>),
}

pub struct Session {
    spec: AzureSpec,
    settings: Settings,
    fetcher: Fetcher,
    /// Fingerprint of the token source and audience: a recorded token of another is foreign.
    identity: String,
    held: Option<AzureSnapshot>,
    /// The objects changed by a reload: render only after the next poll.
    reshaped: bool,
    poll: Step<()>,
    exchanges_recorded: u64,
    dirty: bool,
}

/// The state file of an Azure session.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    format: String,
    identity: String,
    access_token: String,
    expires_unix: u64,
}

impl Drop for State {
    fn drop(&mut self) {
        crate::secret::wipe_string(&mut self.access_token);
    }
}

// The error is built once, on the way out (see fetch.rs).
#[allow(clippy::result_large_err)]
fn fetcher(spec: &AzureSpec, settings: &Settings) -> Result<Fetcher, AzureError> {
    Fetcher::new(spec, &settings.env.azure, &settings.token_path)
}

impl Session {
    pub fn open(spec: &AzureSpec, settings: &Settings) -> Result<Session, Error> {
        let fetcher = fetcher(spec, settings)?;
        Ok(Session {
            identity: identity(&fetcher),
            spec: spec.clone(),
            settings: settings.clone(),
            fetcher,
            held: None,
            reshaped: false,
            poll: Step::now(()),
            exchanges_recorded: 0,
            dirty: false,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "keyvault_requests={} token_exchanges={}",
            self.fetcher.requests(),
            self.fetcher.exchanges()
        )
    }

    /// Uses the recorded access token when it is of this identity and not yet due for
    /// refresh. The files are rendered again from a fresh poll either way.
    pub fn adopt(&mut self, saved: &[u8], dir: &str) -> bool {
        let state = match serde_json::from_slice::<State>(saved) {
            Ok(s) if s.format == FORMAT => s,
            Ok(_) => {
                tracing::warn!(state_dir = %dir, "ignoring the recorded state: it has another format (another provider or version)");
                return false;
            }
            Err(e) => {
                tracing::warn!(state_dir = %dir, line = e.line(), column = e.column(), "ignoring the recorded state: it is corrupt");
                return false;
            }
        };
        if state.identity != self.identity {
            tracing::warn!(state_dir = %dir, "the recorded token is for another identity, vault cloud or tenant; exchanging afresh");
            return false;
        }
        let token = AccessToken {
            token: SecretString::new(state.access_token.clone()),
            expires: from_unix(state.expires_unix),
        };
        if self.fetcher.tokens().adopt(token) {
            let left = from_unix(state.expires_unix)
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tracing::info!(state_dir = %dir, left = %crate::logging::Dur(left), "adopted the recorded Key Vault token; no new exchange");
        } else {
            tracing::info!(state_dir = %dir, "the recorded Key Vault token is due for refresh; exchanging afresh");
        }
        false
    }

    pub async fn fetch_all(&mut self, deadline: Instant) -> Result<(), Error> {
        let snapshot = self.fetcher.fetch(deadline).await;
        self.note_exchanges();
        self.held = Some(snapshot?);
        self.poll = Step::after(jitter(self.settings.poll, 0.1), ());
        Ok(())
    }

    pub fn next(&self) -> (Instant, Option<Job>) {
        let fetcher = self.fetcher.clone();
        let job = Box::pin(async move {
            let deadline = Instant::now() + POLL_BUDGET;
            crate::provider::Outcome::Azure(Outcome::Polled(fetcher.fetch(deadline).await))
        }) as Job;
        (self.poll.at, Some(job))
    }

    pub fn apply(&mut self, outcome: Outcome, metrics: &Metrics) -> bool {
        let Outcome::Polled(result) = outcome;
        self.note_exchanges();
        let snapshot = match result {
            Ok(s) => s,
            Err(e) => {
                metrics.failure(e.cause());
                let failures = self.poll.failures;
                self.poll = self.poll.retry(None);
                let latest = Instant::now() + self.settings.poll;
                self.poll.at = self.poll.at.min(latest);
                if failures == 0 {
                    tracing::error!(cause = e.cause(), error = %e, "poll failed; the files stay as they are");
                } else {
                    tracing::debug!(cause = e.cause(), failures = failures + 1, error = %e, "poll failed again");
                }
                return false;
            }
        };
        if self.poll.failures > 0 {
            tracing::info!(failures = self.poll.failures, "Key Vault answered again");
        }
        self.poll = Step::after(jitter(self.settings.poll, 0.1), ());
        let unchanged = self.held.as_ref().map_or(0, |h| {
            h.objects
                .iter()
                .zip(&snapshot.objects)
                .filter(|(a, b)| a == b)
                .count()
        });
        metrics
            .reads_unchanged
            .fetch_add(unchanged as u64, std::sync::atomic::Ordering::Relaxed);
        if !self.reshaped
            && self
                .held
                .as_ref()
                .is_some_and(|h| h.same_content(&snapshot))
        {
            tracing::debug!("every version unchanged; nothing rendered");
            return false;
        }
        if let Some(h) = self.held.as_ref().filter(|_| !self.reshaped) {
            let changed: Vec<&str> = self
                .spec
                .objects
                .iter()
                .zip(h.objects.iter().zip(&snapshot.objects))
                .filter(|(_, (a, b))| a != b)
                .map(|(o, _)| o.file.as_str())
                .collect();
            tracing::info!(changed = %changed.join(", "), "new versions fetched");
        }
        self.held = Some(snapshot);
        self.reshaped = false;
        true
    }

    pub fn render(&mut self) -> Result<Render, crate::render::RenderError> {
        match self.held.as_ref().filter(|_| !self.reshaped) {
            Some(h) => Ok(Render::Payload(super::render::render(&self.spec, h)?)),
            None => Ok(Render::NotYet),
        }
    }

    pub fn committed(&mut self) {}

    /// The recorded token, when it changed since the last call.
    pub fn take_state(&mut self) -> Option<SecretBytes> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        let t = self.fetcher.tokens().held()?;
        let state = State {
            format: FORMAT.into(),
            identity: self.identity.clone(),
            access_token: t.token.expose().to_string(),
            expires_unix: unix(t.expires),
        };
        serde_json::to_vec(&state).ok().map(SecretBytes::new)
    }

    /// A reloaded spec: the same token when the identity is the same; a poll now.
    pub fn reload(&mut self, spec: &AzureSpec, settings: &Settings) -> Result<bool, String> {
        let fetcher = fetcher(spec, settings).map_err(|e| e.to_string())?;
        let identity = identity(&fetcher);
        if identity == self.identity {
            if let Some(t) = self.fetcher.tokens().held() {
                fetcher.tokens().adopt(t);
            }
        }
        let objects_changed = spec.objects != self.spec.objects;
        self.identity = identity;
        self.fetcher = fetcher;
        self.spec = spec.clone();
        self.settings = settings.clone();
        self.reshaped |= objects_changed;
        self.poll = Step::now(());
        Ok(false)
    }

    pub fn freshness(&self) -> Freshness {
        Freshness {
            complete: self.held.is_some(),
            problem: self.held.is_none().then(|| {
                "the Key Vault objects have not been fetched yet (see the log)".to_string()
            }),
            token_expires: self.fetcher.tokens().held().map(|t| t.expires),
            expiries: Vec::new(),
        }
    }

    fn note_exchanges(&mut self) {
        let now = self.fetcher.exchanges();
        if now != self.exchanges_recorded {
            self.exchanges_recorded = now;
            self.dirty = true;
        }
    }
}

/// Fingerprint of who the token is for: the source (client, tenant, authority or IMDS) and
/// the vault's origin (the token's audience follows the cloud).
fn identity(fetcher: &Fetcher) -> String {
    sha256(&[fetcher.who().as_bytes(), fetcher.vault_url().as_bytes()])
}
