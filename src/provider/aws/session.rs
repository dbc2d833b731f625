//! An AWS session (docs/aws.md): session credentials (IRSA or Pod Identity, refreshed ahead of
//! expiry by [`super::credentials`]), the values and versions held, and the next poll.
//!
//! Invariants: a poll whose values and versions equal the ones held renders nothing
//! (`secretdrop_reads_unchanged_total` counts the objects); a changed object is rendered with
//! all others as one version; a failed poll keeps what is held and is retried with capped,
//! jittered backoff, never later than the poll interval; with `--state-dir` the credentials
//! are recorded (mode 0600, with their expiry and the identity that obtained them) and a later
//! process of the same identity signs with them until they are due for refresh, so an init
//! container followed by the sidecar, or a restarted sidecar, makes no new STS exchange.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fingerprint::{from_unix, sha256, unix};
use crate::observe::Metrics;
use crate::provider::{Freshness, Job, Render, Settings};
use crate::retry::{jitter, Step};
use crate::secret::{SecretBytes, SecretString};

use super::credentials::Keys;
use super::fetch::{AwsError, AwsSnapshot, Fetcher};
use super::params::AwsSpec;

/// How long one poll may retry a transient failure before it counts as failed.
const POLL_BUDGET: Duration = Duration::from_secs(10);
const FORMAT: &str = "secretdrop.dev/state/aws/v1";

/// What a poll brought back.
pub enum Outcome {
    Polled(Result<AwsSnapshot, AwsError>),
}

pub struct Session {
    spec: AwsSpec,
    settings: Settings,
    fetcher: Fetcher,
    /// Fingerprint of the credential source and region: recorded credentials of another one
    /// are foreign.
    identity: String,
    held: Option<AwsSnapshot>,
    /// The objects changed by a reload: what is held is for the old ones, so the next poll
    /// renders whatever it brings.
    reshaped: bool,
    poll: Step<()>,
    /// Credential exchanges made as of the last recorded state.
    exchanges_recorded: u64,
    dirty: bool,
}

/// The state file of an AWS session.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    format: String,
    identity: String,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    expires_unix: u64,
}

impl Drop for State {
    fn drop(&mut self) {
        crate::secret::wipe_string(&mut self.secret_access_key);
        if let Some(t) = &mut self.session_token {
            crate::secret::wipe_string(t);
        }
    }
}

impl Session {
    pub fn open(spec: &AwsSpec, settings: &Settings) -> Result<Session, Error> {
        let fetcher = Fetcher::new(spec, &settings.env.aws)?;
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
            "aws_requests={} credential_exchanges={}",
            self.fetcher.requests(),
            self.fetcher.credential_exchanges()
        )
    }

    /// Signs with the recorded credentials when they are of this identity and not yet due for
    /// refresh. The files are rendered again from a fresh poll either way (an AWS read mints
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
            tracing::warn!(state_dir = %dir, "the recorded credentials are for another role or region; exchanging afresh");
            return false;
        }
        let keys = Keys {
            access_key_id: state.access_key_id.clone(),
            secret_access_key: SecretString::new(state.secret_access_key.clone()),
            session_token: state.session_token.clone().map(SecretString::new),
            expires: Some(from_unix(state.expires_unix)),
        };
        if self.fetcher.credentials().adopt(keys) {
            let left = from_unix(state.expires_unix)
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tracing::info!(state_dir = %dir, left = %crate::logging::Dur(left), "adopted the recorded AWS credentials; no new exchange");
        } else {
            tracing::info!(state_dir = %dir, "the recorded AWS credentials are due for refresh; exchanging afresh");
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
            crate::provider::Outcome::Aws(Outcome::Polled(fetcher.fetch(deadline).await))
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
            tracing::info!(failures = self.poll.failures, "AWS answered again");
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
                .objects
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

    /// The recorded credentials, when they changed since the last call.
    pub fn take_state(&mut self) -> Option<SecretBytes> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        let keys = self.fetcher.credentials().held()?;
        let state = State {
            format: FORMAT.into(),
            identity: self.identity.clone(),
            access_key_id: keys.access_key_id.clone(),
            secret_access_key: keys.secret_access_key.expose().to_string(),
            session_token: keys.session_token.as_ref().map(|t| t.expose().to_string()),
            expires_unix: unix(keys.expires?),
        };
        serde_json::to_vec(&state).ok().map(SecretBytes::new)
    }

    /// A reloaded spec: the same credentials when the identity is the same; a poll now.
    pub fn reload(&mut self, spec: &AwsSpec, settings: &Settings) -> Result<bool, String> {
        let fetcher = Fetcher::new(spec, &settings.env.aws).map_err(|e| e.to_string())?;
        let fetcher = fetcher.quiet();
        let identity = identity(spec, &fetcher);
        if identity == self.identity {
            if let Some(keys) = self.fetcher.credentials().held() {
                fetcher.credentials().adopt(keys);
            }
        }
        let objects_changed = spec.objects != self.spec.objects;
        self.identity = identity;
        self.fetcher = fetcher;
        self.spec = spec.clone();
        self.settings = settings.clone();
        // The values held are for the old objects: render only after the next poll.
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
                .then(|| "the AWS objects have not been fetched yet (see the log)".to_string()),
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

/// Fingerprint of who the credentials are for: the source (role and token file, or agent) and
/// the regions.
fn identity(spec: &AwsSpec, fetcher: &Fetcher) -> String {
    sha256(&[
        fetcher.who().as_bytes(),
        spec.region.as_bytes(),
        spec.failover_region.as_deref().unwrap_or("").as_bytes(),
    ])
}
