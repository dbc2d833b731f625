//! A GCP session (docs/gcp.md): one access token (federated or from the metadata server,
//! refreshed ahead of expiry by [`super::credentials`]), the values and versions held, and the
//! next poll.
//!
//! Invariants: a poll whose versions and bytes equal the ones held renders nothing
//! (`secretdrop_reads_unchanged_total` counts the entries); a changed version is rendered with
//! all others as one version; a failed poll keeps what is held and is retried with capped,
//! jittered backoff, never later than the poll interval; with `--state-dir` the token is
//! recorded (mode 0600, with its expiry and the identity that obtained it) and a later process
//! of the same identity uses it until it is due for refresh, so an init container followed by
//! the sidecar, or a restarted sidecar, makes no new exchange.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fingerprint::{from_unix, sha256, unix};
use crate::observe::Metrics;
use crate::provider::{Freshness, Job, Render, Settings};
use crate::retry::{jitter, Step};
use crate::secret::{SecretBytes, SecretString};

use super::credentials::Token;
use super::fetch::{Fetcher, GcpError, GcpSnapshot};
use super::params::GcpSpec;

/// How long one poll may retry a transient failure before it counts as failed.
const POLL_BUDGET: Duration = Duration::from_secs(10);
const FORMAT: &str = "secretdrop.dev/state/gcp/v1";

/// What a poll brought back.
pub enum Outcome {
    Polled(Result<GcpSnapshot, GcpError>),
}

pub struct Session {
    spec: GcpSpec,
    settings: Settings,
    fetcher: Fetcher,
    /// Fingerprint of the credential source: a recorded token of another one is foreign.
    identity: String,
    held: Option<GcpSnapshot>,
    /// The secrets changed by a reload: what is held is for the old ones, so the next poll
    /// renders whatever it brings.
    reshaped: bool,
    poll: Step<()>,
    /// Credential exchanges made as of the last recorded state.
    exchanges_recorded: u64,
    dirty: bool,
}

/// The state file of a GCP session.
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

impl Session {
    pub fn open(spec: &GcpSpec, settings: &Settings) -> Result<Session, Error> {
        let fetcher = Fetcher::new(spec, &settings.env.gcp)?;
        let fetcher = if settings.quiet {
            fetcher.quiet()
        } else {
            fetcher
        };
        Ok(Session {
            identity: identity(spec, &fetcher),
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
            "gcp_requests={} token_exchanges={}",
            self.fetcher.requests(),
            self.fetcher.credential_exchanges()
        )
    }

    /// Uses the recorded token when it is of this identity and not yet due for refresh. The
    /// files are rendered again from a fresh poll either way (a Secret Manager read mints
    /// nothing), so nothing on disk is adopted.
    pub fn adopt(&mut self, saved: &[u8], dir: &str) -> bool {
        let state = match serde_json::from_slice::<State>(saved) {
            Ok(s) if s.format == FORMAT => s,
            // serde's message could quote the file, keys included: only where it stops.
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
            tracing::warn!(state_dir = %dir, "the recorded token is of another identity; exchanging afresh");
            return false;
        }
        let token = Token {
            access: SecretString::new(state.access_token.clone()),
            expires: from_unix(state.expires_unix),
        };
        if self.fetcher.credentials().adopt(token) {
            let left = from_unix(state.expires_unix)
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tracing::info!(state_dir = %dir, left = %crate::logging::Dur(left), "adopted the recorded Google access token; no new exchange");
        } else {
            tracing::info!(state_dir = %dir, "the recorded Google access token is due for refresh; exchanging afresh");
        }
        false
    }

    pub async fn fetch_all(&mut self, deadline: Instant) -> Result<(), Error> {
        let snapshot = self.fetcher.fetch(deadline).await?;
        self.held = Some(snapshot);
        self.poll = Step::after(jitter(self.settings.poll, 0.1), ());
        self.note_exchanges();
        Ok(())
    }

    pub fn next(&self) -> (Instant, Option<Job>) {
        let fetcher = self.fetcher.clone();
        let job = Box::pin(async move {
            let deadline = Instant::now() + POLL_BUDGET;
            crate::provider::Outcome::Gcp(Outcome::Polled(fetcher.fetch(deadline).await))
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
                // Never later than a regular poll would have been.
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
            tracing::info!(failures = self.poll.failures, "Google answered again");
        }
        self.poll = Step::after(jitter(self.settings.poll, 0.1), ());
        let unchanged = self.held.as_ref().map_or(0, |h| {
            h.values
                .iter()
                .zip(&snapshot.values)
                .filter(|(a, b)| a.version == b.version && a.value == b.value)
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
                .secrets
                .iter()
                .zip(h.values.iter().zip(&snapshot.values))
                .filter(|(_, (a, b))| a.version != b.version || a.value != b.value)
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
        let token = self.fetcher.credentials().held()?;
        let state = State {
            format: FORMAT.into(),
            identity: self.identity.clone(),
            access_token: token.access.expose().to_string(),
            expires_unix: unix(token.expires),
        };
        serde_json::to_vec(&state).ok().map(SecretBytes::new)
    }

    /// A reloaded spec: the same credentials when the identity is the same; a poll now.
    pub fn reload(&mut self, spec: &GcpSpec, settings: &Settings) -> Result<bool, String> {
        let fetcher = Fetcher::new(spec, &settings.env.gcp).map_err(|e| e.to_string())?;
        let fetcher = fetcher.quiet();
        let identity = identity(spec, &fetcher);
        if identity == self.identity {
            if let Some(token) = self.fetcher.credentials().held() {
                fetcher.credentials().adopt(token);
            }
        }
        let objects_changed = spec.secrets != self.spec.secrets;
        self.identity = identity;
        self.fetcher = fetcher;
        self.spec = spec.clone();
        self.settings = settings.clone();
        // The values held are for the old secrets: render only after the next poll.
        self.reshaped |= objects_changed;
        self.poll = Step::now(());
        Ok(false)
    }

    pub fn freshness(&self) -> Freshness {
        Freshness {
            complete: self.held.is_some(),
            problem: self
                .held
                .is_none()
                .then(|| "the Google secrets have not been fetched yet (see the log)".to_string()),
            token_expires: None,
            expiries: Vec::new(),
        }
    }

    fn note_exchanges(&mut self) {
        let now = self.fetcher.credential_exchanges();
        if now != self.exchanges_recorded {
            self.exchanges_recorded = now;
            self.dirty = true;
        }
    }
}

/// Fingerprint of who the token is for: the credential source (file, audience, impersonated
/// account, or metadata server).
fn identity(_spec: &GcpSpec, fetcher: &Fetcher) -> String {
    sha256(&[fetcher.credentials().source().identity().as_bytes()])
}
