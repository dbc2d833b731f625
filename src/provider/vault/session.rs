//! A Vault session (docs/pod.md, "The sidecar"): the token, every read's latest answer and
//! lease, and when each must be renewed, re-fetched or polled. The engine drives it: it asks
//! [`Session::next`] for the earliest step, runs it while it watches signals, and hands the
//! result to [`Session::apply`]; the session never touches the volume.
//!
//! Invariants:
//! - one login per token lifetime; the token is renewed at about two thirds of its TTL and
//!   replaced (re-login, reading the token file afresh) when Vault stops extending it, when it
//!   is not renewable, or when Vault says 403;
//! - leases created under a token die with it, so after a re-login every leased secret is
//!   re-fetched under the new token while the old one is still valid;
//! - a renewable lease is renewed, never re-minted, until Vault stops extending it;
//! - a failure never blanks an answer held: the step is retried with capped, jittered backoff
//!   (honouring `Retry-After`);
//! - with `--state-dir`, the token and leases a previous process recorded are adopted when
//!   Vault still accepts the token and the files on disk are the recorded render (see
//!   [`super::records`]); an adopted read holds no values in memory, so a change that needs a
//!   new render fetches it again first;
//! - a replaced lease is revoked only after the version holding its successor is committed and
//!   `--revoke-replaced-after` has passed.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::render;
use super::spec::{Output, Read, VaultSpec};
use crate::error::Error;
use crate::fingerprint::{self, Rendered};
use crate::observe::Metrics;
use crate::provider::{Freshness, Job, Render, Settings};
use crate::retry::random_unit;
use crate::secret::SecretBytes;

use super::auth::VaultToken;
use super::client::Response;
use super::fetch::{FetchError, Fetcher, Renewal};
use super::records::{self, ReadRecord, Replaced, TokenRecord};
use super::schedule::{self, Lifetime, Next};
use super::slots::{adopted_slot, due_in, fresh_slots, Fetched, Slot, Step, StepKind, Token};
pub use super::steps::Outcome;
use super::steps::{login, perform, Work, STEP_BUDGET};

/// Steps due this close together run as one batch (one render, one commit).
const BATCH_WINDOW: Duration = Duration::from_secs(1);
/// Time allowed for `--revoke-on-exit` so that shutdown stays under a second.
const REVOKE_BUDGET: Duration = Duration::from_millis(700);
/// A replaced lease whose revocation failed for a transient reason is tried again this much
/// later.
const REVOKE_RETRY: Duration = Duration::from_secs(60);
/// Rounds of Go templates naming secrets from other secrets' answers (a chain this long is a
/// loop in all but name).
const MAX_DISCOVERY_ROUNDS: usize = 8;
/// Most reads one session holds, templates' discoveries included.
const MAX_READS: usize = 1024;

/// Every read's answer, and its bytes where they were kept, in the order of the reads.
type Held<'a> = (Vec<&'a serde_json::Value>, Vec<Option<&'a [u8]>>);

pub struct Session {
    spec: VaultSpec,
    settings: Settings,
    fetcher: Arc<Fetcher>,
    token: Option<Token>,
    token_step: Step,
    slots: Vec<Slot>,
    generation: u64,
    /// The files on disk are the render of the answers held (or adopted): nothing to commit.
    files_current: bool,
    /// The version on disk and its fingerprint, for the state file.
    rendered: Option<Rendered>,
    /// Leases replaced by newer ones, waiting for their revocation.
    replaced: Vec<Replaced>,
    /// Something the state file records changed since it was last taken.
    dirty: bool,
}

impl Session {
    pub fn open(spec: &VaultSpec, settings: &Settings) -> Result<Session, Error> {
        let fetcher = Fetcher::new(spec, &settings.token_path, &settings.vault_policy)?;
        let fetcher = if settings.quiet {
            fetcher.quiet()
        } else {
            fetcher
        };
        Ok(Session {
            slots: fresh_slots(spec),
            spec: spec.clone(),
            settings: settings.clone(),
            fetcher: Arc::new(fetcher),
            token: None,
            token_step: Step::now(StepKind::Login),
            generation: 0,
            files_current: false,
            rendered: None,
            replaced: Vec::new(),
            dirty: false,
        })
    }

    pub fn describe(&self) -> String {
        format!("reads={}", self.spec.reads.len())
    }

    /// Takes over the token and leases recorded in `--state-dir`, if they still hold.
    pub async fn adopt(
        &mut self,
        saved: &[u8],
        dir: &str,
        on_disk: Option<Rendered>,
        deadline: Instant,
    ) -> bool {
        let deadline = deadline.min(Instant::now() + STEP_BUDGET);
        let Some(a) =
            records::adopt(saved, dir, &self.spec, &self.fetcher, on_disk, deadline).await
        else {
            return false;
        };
        let (now, wall) = (Instant::now(), SystemTime::now());
        self.generation = 1;
        let increment = if a.increment.is_zero() {
            a.ttl
        } else {
            a.increment
        };
        self.token_step = if a.ttl.is_zero() {
            Step::never(StepKind::Idle)
        } else {
            let kind = if a.renewable {
                StepKind::RenewToken
            } else {
                StepKind::Login
            };
            Step::after(
                due_in(
                    a.ttl,
                    increment,
                    schedule::renew_after(increment, random_unit()),
                ),
                kind,
            )
        };
        self.token = Some(Token {
            secret: a.token,
            increment,
            expires: (!a.ttl.is_zero()).then(|| (now + a.ttl, wall + a.ttl)),
            obtained: now,
            accessor: a.accessor,
            renewable: a.renewable,
        });
        let poll = self.settings.poll;
        for (slot, record) in self.slots.iter_mut().zip(a.reads) {
            if let Some(r) = record {
                let (step, fetched) = adopted_slot(&r, poll, now, wall);
                slot.step = step;
                slot.fetched = Some(fetched);
            }
        }
        self.files_current = a.files_current;
        self.rendered = a.rendered;
        if self.settings.revoke_replaced_after.is_some() {
            self.replaced = a.replaced;
        }
        self.dirty = true;
        self.files_current
    }

    /// The state file's content now; None before the first login.
    fn state(&self) -> Option<records::State> {
        let token = self.token.as_ref()?;
        let mut st = records::State::new(
            &self.spec,
            TokenRecord {
                token: token.secret.clone(),
                accessor: token.accessor.clone(),
                increment_secs: token.increment.as_secs(),
                renewable: token.renewable,
                expires_unix: token.expires.map(|(_, wall)| fingerprint::unix(wall)),
            },
        );
        st.reads = self
            .slots
            .iter()
            .filter_map(|s| {
                let f = s.fetched.as_ref()?;
                Some(ReadRecord {
                    read: records::read_key(&s.read),
                    lease_id: f.lifetime.lease_id().map(str::to_string),
                    renewable: matches!(f.lifetime, schedule::Lifetime::Renewable { .. }),
                    increment_secs: f.increment.as_secs(),
                    expires_unix: f.expires.map(|(_, wall)| fingerprint::unix(wall)),
                    fetched_unix: fingerprint::unix(f.fetched_at),
                    values: f.values.clone(),
                })
            })
            .collect();
        // Only when the files are the render of these reads: a process killed between a fetch
        // and its commit must not make the next one adopt leases the files do not hold.
        st.rendered = self.rendered.clone().filter(|_| self.files_current);
        st.replaced = self.replaced.clone();
        Some(st)
    }

    /// The state file's new content, when it changed since the last call.
    pub fn take_state(&mut self) -> Option<SecretBytes> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        let st = self.state()?;
        serde_json::to_vec(&st).ok().map(SecretBytes::new)
    }

    /// When the earliest replaced lease is due for revocation.
    fn next_revocation(&self, now: (Instant, SystemTime)) -> Option<Instant> {
        self.token.as_ref()?;
        self.replaced
            .iter()
            .filter_map(|r| r.revoke_at_unix)
            .min()
            .map(|at| {
                now.0
                    + fingerprint::from_unix(at)
                        .duration_since(now.1)
                        .unwrap_or_default()
            })
    }

    /// The replaced leases due for revocation at `now`.
    fn due_revocations(&self, now: SystemTime) -> Vec<String> {
        self.replaced
            .iter()
            .filter(|r| {
                r.revoke_at_unix
                    .is_some_and(|t| fingerprint::from_unix(t) <= now)
            })
            .map(|r| r.lease_id.clone())
            .collect()
    }

    fn apply_revocations(&mut self, done: Vec<(String, bool)>, metrics: &Metrics) {
        for (lease, gone) in done {
            if gone {
                Metrics::inc(&metrics.revocations);
                self.replaced.retain(|r| r.lease_id != lease);
            } else if let Some(r) = self.replaced.iter_mut().find(|r| r.lease_id == lease) {
                r.revoke_at_unix = Some(fingerprint::unix(SystemTime::now() + REVOKE_RETRY));
            }
        }
        self.dirty = true;
    }

    /// The earliest deadline and the step due then, ready to run.
    pub fn next(&self) -> (Instant, Option<Job>) {
        let (at, work) = self.next_work();
        let job = work.map(|w| {
            let fetcher = self.fetcher.clone();
            Box::pin(async move { crate::provider::Outcome::Vault(perform(&fetcher, w).await) })
                as Job
        });
        (at, job)
    }

    /// The earliest deadline and the job due then; `None` job means only a commit is due.
    fn next_work(&self) -> (Instant, Option<Work>) {
        // One reading of both clocks: a revocation due now must compare as due.
        let (now, wall) = (Instant::now(), SystemTime::now());
        let token_due = self.token.is_none() || self.token_step.at <= now;
        if token_due && self.token_step.kind != StepKind::Idle {
            let at = self.token_step.at;
            return match (&self.token, self.token_step.kind) {
                (Some(t), StepKind::RenewToken) => {
                    (at, Some(Work::RenewToken(t.secret.clone(), t.increment)))
                }
                _ => (at, Some(Work::Login)),
            };
        }
        let earliest_read = self.slots.iter().map(|s| s.step.at).min();
        let mut at = self.token_step.at;
        if let Some(r) = earliest_read {
            at = at.min(r);
        }
        if let Some(h) = self.next_revocation((now, wall)) {
            if h <= at {
                if h <= now {
                    let due = self.due_revocations(wall);
                    if let Some(t) = &self.token {
                        return (h, Some(Work::Revoke(t.secret.clone(), due)));
                    }
                }
                return (h, None);
            }
        }
        if at == self.token_step.at && earliest_read.is_none_or(|r| r > at) {
            return (at, None);
        }
        let Some(token) = &self.token else {
            return (at, None);
        };
        let horizon = at.max(now) + BATCH_WINDOW;
        // Polls of static secrets are jittered by ±10% of the interval; taking one up to a
        // tenth of the interval early keeps to that and lets polls due close together share
        // one wake-up instead of spreading into many small batches.
        let poll_horizon = at.max(now) + BATCH_WINDOW.max(self.settings.poll / 10);
        let mut refetch = Vec::new();
        let mut renew = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let static_poll = slot.step.kind == StepKind::Refetch
                && slot
                    .fetched
                    .as_ref()
                    .is_some_and(|f| matches!(f.lifetime, Lifetime::Static));
            if slot.step.at > if static_poll { poll_horizon } else { horizon } {
                continue;
            }
            match (
                slot.step.kind,
                slot.fetched
                    .as_ref()
                    .and_then(|f| f.lifetime.lease_id().map(|l| (l, f.increment))),
            ) {
                (StepKind::RenewLease, Some((lease, inc))) => {
                    renew.push((i, lease.to_string(), inc))
                }
                _ => refetch.push((i, slot.read.clone())),
            }
        }
        (
            at,
            Some(Work::Reads {
                token: token.secret.clone(),
                refetch,
                renew,
            }),
        )
    }

    /// Applies what a step brought back; true when the files must be rendered again.
    pub fn apply(&mut self, outcome: Outcome, metrics: &Metrics) -> bool {
        match outcome {
            Outcome::Login(r) => {
                let ok = r.is_ok();
                self.apply_login(r, metrics);
                // A converted agent pod's token file holds the new token (docs/migrate-from-vault-agent.md).
                if ok
                    && self
                        .spec
                        .objects
                        .iter()
                        .any(|o| o.output == Output::VaultToken)
                {
                    self.files_current = false;
                    return self.slots.iter().all(|s| s.fetched.is_some());
                }
            }
            Outcome::RenewToken(r) => self.apply_token_renewal(r, metrics),
            Outcome::Revoked(done) => self.apply_revocations(done, metrics),
            Outcome::Reads { fetched, renewed } => {
                let mut changed = false;
                for (i, r) in fetched {
                    changed |= self.apply_fetch(i, r, metrics);
                }
                for (i, r) in renewed {
                    self.apply_lease_renewal(i, r, metrics);
                }
                return changed && self.slots.iter().all(|s| s.fetched.is_some());
            }
        }
        false
    }

    fn apply_login(&mut self, result: Result<VaultToken, FetchError>, metrics: &Metrics) {
        match result {
            Ok(t) => {
                Metrics::inc(&metrics.logins);
                self.generation += 1;
                let now = Instant::now();
                let expires = (!t.ttl.is_zero()).then(|| (now + t.ttl, SystemTime::now() + t.ttl));
                self.token_step = if t.ttl.is_zero() {
                    Step::never(StepKind::Idle)
                } else if t.renewable {
                    Step::after(
                        schedule::renew_after(t.ttl, random_unit()),
                        StepKind::RenewToken,
                    )
                } else {
                    Step::after(schedule::renew_after(t.ttl, random_unit()), StepKind::Login)
                };
                let relogin = self.token.is_some();
                tracing::info!(
                    generation = self.generation,
                    ttl = %crate::logging::Dur(t.ttl),
                    renewable = t.renewable,
                    "logged in to Vault"
                );
                self.token = Some(Token {
                    secret: t.token,
                    increment: t.ttl,
                    expires,
                    obtained: now,
                    accessor: t.accessor,
                    renewable: t.renewable,
                });
                self.dirty = true;
                if relogin {
                    // Leases created under the old token die with it: replace them now.
                    for slot in &mut self.slots {
                        if slot.fetched.as_ref().is_some_and(|f| {
                            f.lifetime.lease_id().is_some() && f.generation < self.generation
                        }) {
                            slot.step = Step::now(StepKind::Refetch);
                        }
                    }
                }
            }
            Err(e) => {
                failed(metrics, "login", &e, self.token_step.failures);
                self.token_step = Step {
                    kind: StepKind::Login,
                    ..self.token_step
                }
                .retry(e.retry_after());
            }
        }
    }

    fn apply_token_renewal(&mut self, result: Result<Renewal, FetchError>, metrics: &Metrics) {
        let Some(token) = self.token.as_mut() else {
            return;
        };
        match result {
            Ok(r) => {
                Metrics::inc(&metrics.token_renewals);
                token.expires = Some((Instant::now() + r.duration, SystemTime::now() + r.duration));
                self.dirty = true;
                self.token_step = match schedule::after_renewal(
                    token.increment,
                    r.duration,
                    r.renewable,
                    random_unit(),
                ) {
                    Next::Renew(d) | Next::Refetch(d) => Step::after(d, StepKind::RenewToken),
                    Next::Rotate => {
                        tracing::info!(left = %crate::logging::Dur(r.duration), "the token reached its max TTL; logging in again");
                        Step::now(StepKind::Login)
                    }
                };
                tracing::debug!(ttl = %crate::logging::Dur(r.duration), "renewed the token");
            }
            Err(e) => {
                let expired = token.expires.is_some_and(|(at, _)| at <= Instant::now());
                failed(metrics, "token renewal", &e, self.token_step.failures);
                self.token_step = if e.status() == Some(403) || expired {
                    Step::now(StepKind::Login)
                } else {
                    self.token_step.retry(e.retry_after())
                };
            }
        }
    }

    /// Applies a fetched answer; true when the content may have changed.
    fn apply_fetch(
        &mut self,
        i: usize,
        result: Result<Response, FetchError>,
        metrics: &Metrics,
    ) -> bool {
        let generation = self.generation;
        let poll = self.settings.poll;
        let token_age = self.token.as_ref().map(|t| t.obtained.elapsed());
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        match result {
            Ok(response) => {
                let now_unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let lifetime = schedule::lifetime_of(&response.0, now_unix);
                let values = records::values(&response);
                let replaced = slot
                    .fetched
                    .as_ref()
                    .and_then(|old| old.lifetime.lease_id())
                    .filter(|old| lifetime.lease_id() != Some(*old))
                    .map(str::to_string);
                let rotated = replaced.is_some() && lifetime.lease_id().is_some();
                // An answer equal to the one held (an unchanged poll) changes nothing: no
                // render, no disk check. An adopted read (no answer held) compares the
                // recorded fingerprint of its values.
                let changed = match slot.fetched.as_ref() {
                    None => true,
                    Some(old) => match &old.response {
                        Some(held) => !held.same_content(&response),
                        None => old.values != values,
                    },
                };
                if let Some(lease_id) =
                    replaced.filter(|_| self.settings.revoke_replaced_after.is_some())
                {
                    // Revoked once its successor is on disk and the grace has passed.
                    self.replaced.push(Replaced {
                        lease_id,
                        revoke_at_unix: None,
                    });
                }
                if rotated {
                    Metrics::inc(&metrics.rotations);
                    tracing::info!(path = %slot.read.path, "new credentials fetched");
                }
                if slot.step.failures > 0 {
                    tracing::info!(path = %slot.read.path, "reading works again");
                }
                let valid = lifetime.valid_for();
                slot.step = match schedule::after_fetch(&lifetime, poll, random_unit()) {
                    Next::Renew(d) => Step::after(d, StepKind::RenewLease),
                    Next::Refetch(d) => Step::after(d, StepKind::Refetch),
                    Next::Rotate => Step::now(StepKind::Refetch),
                };
                slot.fetched = Some(Fetched {
                    response: Some(response),
                    values,
                    fetched_at: SystemTime::now(),
                    increment: valid.unwrap_or_default(),
                    expires: valid.map(|d| (Instant::now() + d, SystemTime::now() + d)),
                    lifetime,
                    generation,
                });
                self.dirty = true;
                if changed {
                    self.files_current = false;
                } else {
                    Metrics::inc(&metrics.reads_unchanged);
                }
                changed
            }
            Err(e) => {
                let failures = slot.step.failures;
                let path = slot.read.path.clone();
                slot.step = slot.step.retry(e.retry_after());
                // A 403 for a read that worked before usually means the token is gone.
                let suspect_token = e.status() == Some(403)
                    && token_age.is_some_and(|a| a > Duration::from_secs(5));
                failed(metrics, &format!("read {path}"), &e, failures);
                if suspect_token {
                    self.token_step = Step::now(StepKind::Login);
                }
                false
            }
        }
    }

    fn apply_lease_renewal(
        &mut self,
        i: usize,
        result: Result<Renewal, FetchError>,
        metrics: &Metrics,
    ) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let Some(fetched) = slot.fetched.as_mut() else {
            return;
        };
        match result {
            Ok(r) => {
                Metrics::inc(&metrics.lease_renewals);
                fetched.expires =
                    Some((Instant::now() + r.duration, SystemTime::now() + r.duration));
                self.dirty = true;
                slot.step = match schedule::after_renewal(
                    fetched.increment,
                    r.duration,
                    r.renewable,
                    random_unit(),
                ) {
                    Next::Renew(d) | Next::Refetch(d) => Step::after(d, StepKind::RenewLease),
                    Next::Rotate => {
                        tracing::info!(path = %slot.read.path, left = %crate::logging::Dur(r.duration), "lease reached its max TTL; fetching new credentials");
                        Step::now(StepKind::Refetch)
                    }
                };
                tracing::debug!(path = %slot.read.path, ttl = %crate::logging::Dur(r.duration), "renewed lease");
            }
            Err(e) => {
                let failures = slot.step.failures;
                let path = slot.read.path.clone();
                // Vault refusing a renewal (lease gone or revoked) means new credentials, now.
                slot.step = if e
                    .status()
                    .is_some_and(|s| (400..500).contains(&s) && s != 429)
                {
                    Step::now(StepKind::Refetch)
                } else {
                    slot.step.retry(e.retry_after())
                };
                failed(metrics, &format!("lease renewal for {path}"), &e, failures);
            }
        }
    }

    /// `init`: every read once, retrying transient failures until `deadline`. With an adopted
    /// token and files that are still the recorded render, only static secrets are read again
    /// (reading them mints nothing, and the app starts with fresh ones); when one of them
    /// changed, every read is fetched again and the recorded leases are replaced.
    pub async fn fetch_all(&mut self, deadline: Instant) -> Result<(), Error> {
        if self.token.is_none() {
            let t = login(&self.fetcher, deadline).await?;
            self.apply_login(Ok(t), &Metrics::default());
        }
        let token = match &self.token {
            Some(t) => t.secret.clone(),
            None => return Err(Error::Runtime("no Vault token after logging in".into())),
        };
        if self.files_current {
            let statics: Vec<(usize, Read)> = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.fetched
                        .as_ref()
                        .is_some_and(|f| matches!(f.lifetime, Lifetime::Static))
                })
                .map(|(i, s)| (i, s.read.clone()))
                .collect();
            let reads: Vec<Read> = statics.iter().map(|(_, r)| r.clone()).collect();
            let answers = self.fetcher.read_each(&reads, &token, deadline).await;
            let mut same = true;
            let mut fresh = Vec::new();
            for ((i, _), answer) in statics.iter().zip(answers) {
                let response = answer?;
                let values = records::values(&response);
                same &= self.slots[*i]
                    .fetched
                    .as_ref()
                    .is_some_and(|f| f.values == values);
                fresh.push((*i, response));
            }
            if same {
                for (i, response) in fresh {
                    self.apply_fetch(i, Ok(response), &Metrics::default());
                }
                // Nothing changed: the files on disk stay the render.
                self.files_current = true;
                return Ok(());
            }
            // A static secret changed: the files must be rendered again, which takes every
            // answer, and the leased ones were not kept. New credentials replace the recorded
            // ones.
            tracing::info!("a secret changed since the recorded render; fetching every read again");
            for slot in &mut self.slots {
                if let Some(lease_id) = slot
                    .fetched
                    .as_ref()
                    .and_then(|f| f.lifetime.lease_id())
                    .map(str::to_string)
                {
                    self.replaced.push(Replaced {
                        lease_id,
                        revoke_at_unix: None,
                    });
                }
                slot.fetched = None;
            }
            self.files_current = false;
        }
        let reads: Vec<Read> = self.slots.iter().map(|s| s.read.clone()).collect();
        let snapshot = self.fetcher.read_all(&reads, &token, deadline).await?;
        for (i, response) in snapshot.responses.into_iter().enumerate() {
            self.apply_fetch(i, Ok(response), &Metrics::default());
        }
        // Go templates whose secret paths come from another secret's answer: fetch what they
        // name, round by round, as Vault Agent does.
        for _ in 0..MAX_DISCOVERY_ROUNDS {
            let first_new = self.slots.len();
            if !self.discover().map_err(Error::from)? {
                return Ok(());
            }
            let reads: Vec<Read> = self.slots[first_new..]
                .iter()
                .map(|s| s.read.clone())
                .collect();
            let snapshot = self.fetcher.read_all(&reads, &token, deadline).await?;
            for (i, response) in snapshot.responses.into_iter().enumerate() {
                self.apply_fetch(first_new + i, Ok(response), &Metrics::default());
            }
        }
        Err(Error::Runtime(format!(
            "the templates still name new secrets after {MAX_DISCOVERY_ROUNDS} rounds of \
             secrets read from other secrets' answers"
        )))
    }

    /// Adds the reads that Go templates name and the session does not hold yet (each due
    /// now); true when there were some.
    fn discover(&mut self) -> Result<bool, crate::render::RenderError> {
        let Some((responses, raw)) = self.held() else {
            return Ok(false);
        };
        let needs = match render::render_or_needs(&self.spec, &responses, &raw, self.token_bytes())?
        {
            Ok(_) => return Ok(false),
            Err(needs) => needs,
        };
        self.add_reads(needs);
        Ok(true)
    }

    fn add_reads(&mut self, needs: Vec<Read>) {
        for read in needs {
            if self.spec.reads.contains(&read) || self.spec.reads.len() >= MAX_READS {
                continue;
            }
            tracing::debug!(path = %read.path, "a template names another secret");
            self.spec.reads.push(read.clone());
            self.slots.push(Slot {
                read,
                fetched: None,
                step: Step::now(StepKind::Refetch),
            });
        }
    }

    /// The token, for a converted agent pod's token file.
    fn token_bytes(&self) -> Option<&[u8]> {
        self.token.as_ref().map(|t| t.secret.expose().as_bytes())
    }

    /// Every read's answer (and its bytes where kept), when the session holds them all.
    fn held(&self) -> Option<Held<'_>> {
        self.slots
            .iter()
            .map(|s| {
                s.fetched.as_ref().and_then(|f| {
                    f.response
                        .as_ref()
                        .map(|r| (&r.0, r.1.as_deref().map(|b| b.expose())))
                })
            })
            .collect::<Option<Vec<_>>>()
            .map(|pairs| pairs.into_iter().unzip())
    }

    /// Every file from the latest answers; see [`Render`].
    pub fn render(&mut self) -> Result<Render, crate::render::RenderError> {
        let adopted_without_values = self
            .slots
            .iter()
            .any(|s| s.fetched.as_ref().is_some_and(|f| f.response.is_none()));
        if adopted_without_values && self.files_current {
            // Adopted from --state-dir and nothing changed since: the files are the render.
            return Ok(Render::Current);
        }
        if adopted_without_values {
            // A new render takes every read's values, and the state keeps none: fetch the
            // adopted reads again (new credentials for leased ones; the old lease is revoked
            // after the grace).
            for slot in &mut self.slots {
                if slot.fetched.as_ref().is_some_and(|f| f.response.is_none()) {
                    tracing::info!(path = %slot.read.path, "fetching an adopted secret again: the files must be rendered anew and the state holds no values");
                    slot.step = Step::now(StepKind::Refetch);
                }
            }
            return Ok(Render::NotYet);
        }
        let Some((responses, raw)) = self.held() else {
            return Ok(Render::NotYet);
        };
        match render::render_or_needs(&self.spec, &responses, &raw, self.token_bytes())? {
            Ok(payload) => Ok(Render::Payload(payload)),
            Err(needs) => {
                // A template now names a secret it did not before (another secret's answer
                // changed): fetch it, then render.
                self.add_reads(needs);
                Ok(Render::NotYet)
            }
        }
    }

    /// The files on disk are the render of the answers held; the grace of the leases they
    /// replaced starts now.
    pub fn committed(&mut self, rendered: Option<Rendered>) {
        self.files_current = true;
        if let Some(r) = rendered {
            self.rendered = Some(r);
        }
        records::start_grace(
            &mut self.replaced,
            self.settings.revoke_replaced_after,
            SystemTime::now(),
        );
        if self.settings.revoke_replaced_after.is_none() {
            // `never`: nothing will revoke them, so nothing is recorded.
            self.replaced.clear();
        }
        self.dirty = true;
    }

    /// A reloaded spec for the same volumes: a new login when Vault or the login changed,
    /// reads kept when they did not. Ok(true) when every read is held and a render is due.
    pub fn reload(&mut self, spec: &VaultSpec, settings: &Settings) -> Result<bool, String> {
        let spec = spec.clone();
        self.settings = settings.clone();
        if spec.vault != self.spec.vault || spec.auth != self.spec.auth {
            let f = Fetcher::new(&spec, &settings.token_path, &settings.vault_policy)
                .map_err(|e| e.to_string())?;
            self.fetcher = Arc::new(f.quiet());
            self.token = None;
            self.token_step = Step::now(StepKind::Login);
        }
        let mut old: Vec<Option<Slot>> = std::mem::take(&mut self.slots)
            .into_iter()
            .map(Some)
            .collect();
        let relogin = self.token.is_none();
        self.slots = spec
            .reads
            .iter()
            .map(|read| {
                let kept = old
                    .iter_mut()
                    .find(|o| o.as_ref().is_some_and(|s| s.read == *read))
                    .and_then(Option::take);
                match kept {
                    Some(slot) if !relogin => slot,
                    _ => Slot {
                        read: read.clone(),
                        fetched: None,
                        step: Step::now(StepKind::Refetch),
                    },
                }
            })
            .collect();
        let dropped = old.iter().flatten().count();
        if records::objects(&spec) != records::objects(&self.spec) || dropped > 0 {
            self.files_current = false;
        }
        let dropped_reads = dropped;
        self.spec = spec;
        tracing::debug!(
            reads = self.slots.len(),
            dropped_reads,
            "Vault reads after the reload"
        );
        self.dirty = true;
        Ok(self.slots.iter().all(|s| s.fetched.is_some()))
    }

    /// On exit: with `revoke`, revoke the token, and with it every lease it created. True
    /// when it was revoked (the recorded state is dead).
    pub async fn shutdown(&mut self, revoke: bool) -> bool {
        let Some(token) = self.token.as_ref().filter(|_| revoke) else {
            return false;
        };
        let deadline = Instant::now() + REVOKE_BUDGET;
        match tokio::time::timeout(
            REVOKE_BUDGET,
            self.fetcher.revoke_token(&token.secret, deadline),
        )
        .await
        {
            Ok(Ok(())) => {
                tracing::info!("revoked the token and its leases");
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not revoke the token");
                false
            }
            Err(_) => {
                tracing::warn!("revoking the token took too long; exiting anyway");
                false
            }
        }
    }

    /// Freshness for `/readyz`: the first read not fetched yet, an expired token or lease.
    pub fn freshness(&self, now: Instant) -> Freshness {
        let expiries = self
            .slots
            .iter()
            .filter_map(|s| {
                s.fetched
                    .as_ref()
                    .and_then(|f| f.expires)
                    .map(|(_, wall)| (s.read.path.clone(), wall))
            })
            .collect();
        let token_expires = self.token.as_ref().and_then(|t| t.expires);
        let problem = if let Some(s) = self.slots.iter().find(|s| s.fetched.is_none()) {
            Some(format!(
                "{} has not been read from Vault yet (see the log)",
                s.read.path
            ))
        } else if token_expires.is_some_and(|(at, _)| at <= now) {
            Some("the Vault token expired and logging in again has not succeeded yet".into())
        } else {
            self.slots
                .iter()
                .find(|s| {
                    s.fetched
                        .as_ref()
                        .and_then(|f| f.expires)
                        .is_some_and(|(at, _)| at <= now)
                })
                .map(|s| {
                    format!(
                        "the lease or certificate of {} expired and has not been replaced yet",
                        s.read.path
                    )
                })
        };
        Freshness {
            complete: self.slots.iter().all(|s| s.fetched.is_some()),
            problem,
            token_expires: token_expires.map(|(_, wall)| wall),
            expiries,
        }
    }
}

fn failed(metrics: &Metrics, what: &str, e: &FetchError, previous_failures: u32) {
    metrics.failure(e.cause());
    if previous_failures == 0 {
        tracing::warn!(step = what, cause = e.cause(), error = %e, "step failed; keeping the current files and retrying with backoff");
    } else {
        tracing::debug!(step = what, cause = e.cause(), failures = previous_failures + 1, error = %e, "step failed again");
    }
}
