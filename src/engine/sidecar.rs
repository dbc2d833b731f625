//! `secretdrop sidecar`: one resident process that keeps the pod's files valid and fresh.
//!
//! One event loop owns all state. Each turn it sleeps until the earliest deadline (token
//! renewal, a lease renewal, a re-fetch, a poll), runs the due network step, applies the result,
//! and re-renders and commits when a secret changed. Signals and config changes interrupt the
//! sleep or the network step, never a commit: commits happen while applying, outside `select!`.
//!
//! Invariants:
//! - one login per token lifetime; the token is renewed at about two thirds of its TTL and
//!   replaced (re-login, reading the token file afresh) when Vault stops extending it, when it
//!   is not renewable, or when Vault says 403;
//! - leases created under a token die with it, so after a re-login every leased secret is
//!   re-fetched under the new token while the old one is still valid;
//! - a renewable lease is renewed, never re-minted, until Vault stops extending it;
//! - a failure never removes or blanks a file: the last good version stays while the step is
//!   retried with capped, jittered backoff (honouring `Retry-After`);
//! - nothing wakes up between deadlines;
//! - with `--state-dir`, the token and leases a previous process recorded are adopted when
//!   Vault still accepts the token and the files on disk are the recorded render (see
//!   [`crate::engine::state`]); an adopted read holds no values in memory, so a change that needs a
//!   new render fetches it again first;
//! - a replaced lease is revoked only after the version holding its successor is committed and
//!   `--revoke-replaced-after` has passed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{self, Auth, NotifySettings, Read, Spec, VaultEnv};
use crate::engine::notify::Notifier;
use crate::engine::observe::{Metrics, Status};
use crate::engine::state::{self, ReadRecord, Rendered, Replaced, StateDir, TokenRecord};
use crate::error::Error;
use crate::provider::vault::auth::VaultToken;
use crate::provider::vault::client::Response;
use crate::provider::vault::fetch::{FetchError, Fetcher, Renewal, Snapshot};
use crate::render;
use crate::retry::random_unit;
use crate::schedule::{self, Lifetime, Next};
use crate::secret::SecretString;
use crate::volume::{Commit, Volume, VolumeSet};

pub const DEFAULT_POLL: Duration = Duration::from_secs(300);
/// How long one network step may retry transient failures (a blip) before it counts as failed
/// and the step's own backoff takes over.
const STEP_BUDGET: Duration = Duration::from_secs(3);
/// Steps due this close together run as one batch (one render, one commit).
const BATCH_WINDOW: Duration = Duration::from_secs(1);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// How long a replaced version stays readable for readers that resolved `..data` before a swap.
const RETIRE_AFTER: Duration = Duration::from_secs(2);
/// Time allowed for `--revoke-on-exit` so that shutdown stays under a second.
const REVOKE_BUDGET: Duration = Duration::from_millis(700);
/// A replaced lease whose revocation failed for a transient reason is tried again this much
/// later.
const REVOKE_RETRY: Duration = Duration::from_secs(60);

/// Command-line settings; notification flags override the config file's.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub dir: PathBuf,
    pub allow_disk: bool,
    pub token_path: PathBuf,
    pub poll_interval: Option<Duration>,
    pub notify: NotifySettings,
    pub listen: Option<std::net::SocketAddr>,
    pub revoke_on_exit: bool,
    /// Where the token and leases are kept for the next process (`--state-dir`).
    pub state_dir: Option<StateDir>,
    /// Grace before a replaced lease is revoked (`--revoke-replaced-after`); None: never.
    pub revoke_replaced_after: Option<Duration>,
    /// What the operator allows the Vault client (pinned addresses, answer size), applied to
    /// every config, including one reloaded later.
    pub policy: crate::provider::vault::client::ClientPolicy,
    /// `--volume NAME=DIR`: where each volume the config names is written.
    pub volumes: Vec<(String, PathBuf)>,
    /// Which unit of the config this loop serves, and its volumes (set by [`run`]).
    pub unit: usize,
    pub members: Vec<Option<String>>,
}

impl Options {
    fn layout(&self) -> config::volumes::Layout {
        config::volumes::Layout {
            dir: self.dir.clone(),
            volumes: self.volumes.clone(),
            token_path: self.token_path.clone(),
        }
    }
}

/// Starts the sidecar and runs until SIGTERM or SIGINT: one event loop per unit of volumes
/// that log in the same way (see [`config::volumes`]), all in this one process.
pub fn run(opts: Options) -> Result<(), Error> {
    let text = config::read_bounded(&opts.config)?;
    let units = config::volumes::load_units(
        &opts.config,
        &text,
        &VaultEnv::from_process(),
        &opts.layout(),
    )?;
    if let Some((spec, dir)) = config::volumes::aws_unit(&opts.config, &units)? {
        // provider: aws (docs/aws.md) polls versions; no token or lease lifecycle.
        return crate::provider::aws::run::sidecar(Options { dir, ..opts }, spec);
    }
    let several = units.len() > 1;
    let mut sidecars = Vec::new();
    for (i, unit) in units.into_iter().enumerate() {
        let volumes = unit
            .dirs
            .iter()
            .map(|d| Volume::new(d, opts.allow_disk))
            .collect();
        let volume = VolumeSet::new(volumes).keeping_previous();
        volume.check_filesystem()?;
        crate::volume::check_ownership(&unit.spec.objects).map_err(Error::Unfit)?;
        let fetcher = Fetcher::new(&unit.spec, &opts.token_path, &opts.policy)?.quiet();
        let mut unit_opts = opts.clone();
        unit_opts.unit = i;
        unit_opts.members = unit.volumes.clone();
        if several {
            // Each login keeps its own token and leases for the next process.
            unit_opts.state_dir = match &opts.state_dir {
                Some(sd) => Some(StateDir::prepare(
                    &sd.path().join(format!("unit-{i}")),
                    volume.dir(),
                    opts.allow_disk,
                )?),
                None => None,
            };
        }
        sidecars.push(Sidecar::new(
            unit_opts,
            unit.spec,
            text.clone(),
            fetcher,
            volume,
        ));
    }
    // One set of counters for the process; `/readyz` is ready only when every loop is.
    let metrics = Arc::new(Metrics::for_loops(sidecars.len()));
    for s in &mut sidecars {
        s.metrics = metrics.clone();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = match opts.listen {
            Some(addr) => Some(
                crate::net::serve::bind(addr)
                    .map_err(|e| crate::net::serve::bind_error(addr, e))?,
            ),
            None => None,
        };
        for sidecar in &mut sidecars {
            sidecar.adopt().await;
        }
        if let Some(l) = listener {
            tracing::info!(listen = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /healthz, /readyz, /metrics");
            tokio::spawn(crate::engine::observe::serve(l, metrics));
        }
        // Every loop on this one thread; the first error ends the process, as with one loop.
        let mut runs: Vec<Loop<'_>> =
            sidecars.iter_mut().map(|s| Box::pin(s.run()) as _).collect();
        std::future::poll_fn(|cx| {
            let mut i = 0;
            while i < runs.len() {
                match runs[i].as_mut().poll(cx) {
                    std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                    std::task::Poll::Ready(Ok(())) => drop(runs.swap_remove(i)),
                    std::task::Poll::Pending => i += 1,
                }
            }
            match runs.is_empty() {
                true => std::task::Poll::Ready(Ok(())),
                false => std::task::Poll::Pending,
            }
        })
        .await
    })
}

/// One unit's event loop, boxed so that several are polled side by side.
type Loop<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + 'a>>;

/// When a step runs next, and how often it has failed in a row.
#[derive(Debug, Clone, Copy)]
struct Step {
    at: Instant,
    kind: StepKind,
    failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepKind {
    Login,
    RenewToken,
    Refetch,
    RenewLease,
    Idle,
}

impl Step {
    fn now(kind: StepKind) -> Step {
        Step {
            at: Instant::now(),
            kind,
            failures: 0,
        }
    }
    fn after(d: Duration, kind: StepKind) -> Step {
        Step {
            at: Instant::now() + d,
            kind,
            failures: 0,
        }
    }
    fn idle() -> Step {
        // Far enough never to fire; tokio's timer handles it without waking.
        Step::after(Duration::from_secs(10 * 365 * 86400), StepKind::Idle)
    }
    /// The same step again after a failure, later by capped, jittered exponential backoff.
    fn retry(self, retry_after: Option<Duration>) -> Step {
        let failures = self.failures + 1;
        let base = BACKOFF_FIRST
            .saturating_mul(1u32 << (failures - 1).min(16))
            .min(BACKOFF_CAP);
        let mut delay = base / 2 + base.mul_f64(0.5 * random_unit());
        if let Some(ra) = retry_after {
            delay = delay.max(ra.min(BACKOFF_CAP * 5));
        }
        Step {
            at: Instant::now() + delay,
            kind: self.kind,
            failures,
        }
    }
}

struct Token {
    secret: SecretString,
    /// What to ask for at renewal: the TTL Vault first granted.
    increment: Duration,
    expires: Option<(Instant, SystemTime)>,
    obtained: Instant,
    accessor: String,
    renewable: bool,
}

/// A read's latest answer and what it means for freshness.
struct Fetched {
    /// None for a read adopted from `--state-dir`: its values are in the files on disk only.
    response: Option<Response>,
    /// Fingerprint of the values (see [`state::values`]).
    values: String,
    fetched_at: SystemTime,
    lifetime: Lifetime,
    /// The token generation it was fetched under (its lease dies with that token).
    generation: u64,
    /// What to ask for at renewal: the lease duration Vault first granted.
    increment: Duration,
    expires: Option<(Instant, SystemTime)>,
}

struct Slot {
    read: Read,
    fetched: Option<Fetched>,
    step: Step,
}

/// One network step, with owned inputs so it can run while signals are watched.
enum Job {
    Login,
    RenewToken(SecretString, Duration),
    Reads {
        token: SecretString,
        refetch: Vec<(usize, Read)>,
        renew: Vec<(usize, String, Duration)>,
    },
}

enum Outcome {
    Login(Result<VaultToken, FetchError>),
    RenewToken(Result<Renewal, FetchError>),
    Reads {
        fetched: Vec<(usize, Result<Response, FetchError>)>,
        renewed: Vec<(usize, Result<Renewal, FetchError>)>,
    },
}

/// What ended a turn of the loop.
enum Wake {
    Done(Outcome),
    Commit,
    Reload(&'static str),
    Stop(&'static str),
}

struct Sidecar {
    opts: Options,
    spec: Spec,
    config_text: String,
    fetcher: Arc<Fetcher>,
    volume: VolumeSet,
    notifier: Notifier,
    poll: Duration,
    metrics: Arc<Metrics>,
    token: Option<Token>,
    token_step: Step,
    slots: Vec<Slot>,
    /// A render+commit that is due (after a change, or retried after a failure).
    commit_step: Option<Step>,
    /// A replaced version to remove once readers are done with it.
    /// Replaced versions and when they may go: each stays readable for [`RETIRE_AFTER`],
    /// even when the next commit comes sooner (a 2 s poll interval).
    retire: Vec<(String, Instant)>,
    committed_once: bool,
    generation: u64,
    last_success: Option<SystemTime>,
    /// The files on disk are the render of the answers held (or adopted): nothing to commit.
    files_current: bool,
    /// The version on disk and its fingerprint, for the state file.
    rendered: Option<Rendered>,
    /// Leases replaced by newer ones, waiting for their revocation.
    replaced: Vec<Replaced>,
    /// Something the state file records changed since it was last written.
    state_dirty: bool,
}

impl Sidecar {
    fn new(
        opts: Options,
        spec: Spec,
        config_text: String,
        fetcher: Fetcher,
        volume: VolumeSet,
    ) -> Sidecar {
        let slots = spec
            .reads
            .iter()
            .map(|r| Slot {
                read: r.clone(),
                fetched: None,
                step: Step::now(StepKind::Refetch),
            })
            .collect();
        let (poll, notifier) = settings(&opts, &spec);
        Sidecar {
            opts,
            spec,
            config_text,
            fetcher: Arc::new(fetcher),
            volume,
            notifier,
            poll,
            metrics: Arc::new(Metrics::default()),
            token: None,
            token_step: Step::now(StepKind::Login),
            slots,
            commit_step: None,
            retire: Vec::new(),
            committed_once: false,
            generation: 0,
            last_success: None,
            files_current: false,
            rendered: None,
            replaced: Vec::new(),
            state_dirty: false,
        }
    }

    /// Takes over the token and leases recorded in `--state-dir`, if they still hold.
    async fn adopt(&mut self) {
        let Some(sd) = self.opts.state_dir.clone() else {
            return;
        };
        let deadline = Instant::now() + STEP_BUDGET;
        let Some(a) = state::adopt(&sd, &self.spec, &self.fetcher, &self.volume, deadline).await
        else {
            return;
        };
        let (now, wall) = (Instant::now(), SystemTime::now());
        self.generation = 1;
        let increment = if a.increment.is_zero() {
            a.ttl
        } else {
            a.increment
        };
        self.token_step = if a.ttl.is_zero() {
            Step::idle()
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
        let poll = self.poll;
        for (slot, record) in self.slots.iter_mut().zip(a.reads) {
            if let Some(r) = record {
                let (step, fetched) = adopted_slot(&r, poll, now, wall);
                slot.step = step;
                slot.fetched = Some(fetched);
            }
        }
        self.files_current = a.files_current;
        self.rendered = a.rendered;
        if self.opts.revoke_replaced_after.is_some() {
            self.replaced = a.replaced;
        }
        if self.files_current {
            self.commit_step = Some(Step::now(StepKind::Idle));
        }
        self.state_dirty = true;
    }

    /// The state file's content now; None before the first login.
    fn state(&self) -> Option<state::State> {
        let token = self.token.as_ref()?;
        let mut st = state::State::new(
            &self.spec,
            TokenRecord {
                token: token.secret.clone(),
                accessor: token.accessor.clone(),
                increment_secs: token.increment.as_secs(),
                renewable: token.renewable,
                expires_unix: token.expires.map(|(_, wall)| state::unix(wall)),
            },
        );
        st.reads = self
            .slots
            .iter()
            .filter_map(|s| {
                let f = s.fetched.as_ref()?;
                Some(ReadRecord {
                    read: state::read_key(&s.read),
                    lease_id: f.lifetime.lease_id().map(str::to_string),
                    renewable: matches!(f.lifetime, schedule::Lifetime::Renewable { .. }),
                    increment_secs: f.increment.as_secs(),
                    expires_unix: f.expires.map(|(_, wall)| state::unix(wall)),
                    fetched_unix: state::unix(f.fetched_at),
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

    fn save_state(&mut self) {
        self.state_dirty = false;
        if let (Some(sd), Some(st)) = (&self.opts.state_dir, self.state()) {
            sd.save_or_warn(&st);
        }
    }

    /// When the earliest replaced lease is due for revocation.
    fn next_revocation(&self) -> Option<Instant> {
        self.token.as_ref()?;
        let now = (Instant::now(), SystemTime::now());
        self.replaced
            .iter()
            .filter_map(|r| r.revoke_at_unix)
            .min()
            .map(|at| {
                now.0
                    + state::from_unix(at)
                        .duration_since(now.1)
                        .unwrap_or_default()
            })
    }

    /// Revokes the replaced leases that are due; a transient failure is tried again later.
    async fn revoke_replaced(&mut self) {
        let Some(token) = self.token.as_ref().map(|t| t.secret.clone()) else {
            return;
        };
        let now = SystemTime::now();
        let due: Vec<String> = self
            .replaced
            .iter()
            .filter(|r| r.revoke_at_unix.is_some_and(|t| state::from_unix(t) <= now))
            .map(|r| r.lease_id.clone())
            .collect();
        for lease in due {
            let done = revoke_lease(&self.fetcher, &token, &lease).await;
            if done {
                Metrics::inc(&self.metrics.revocations);
                self.replaced.retain(|r| r.lease_id != lease);
            } else if let Some(r) = self.replaced.iter_mut().find(|r| r.lease_id == lease) {
                r.revoke_at_unix = Some(state::unix(SystemTime::now() + REVOKE_RETRY));
            }
        }
        self.state_dirty = true;
    }

    async fn run(&mut self) -> Result<(), Error> {
        let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut watch = match crate::watch::watch(&self.opts.config) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(config = %self.opts.config.display(), error = %e, "cannot watch the config file; reload with SIGHUP");
                None
            }
        };
        tracing::info!(
            config = %self.opts.config.display(),
            dir = %self.volume.describe(),
            reads = self.slots.len(),
            files = self.spec.objects.len(),
            poll = %crate::logging::Dur(self.poll),
            "sidecar starting"
        );
        // The pending step survives wake-ups that change nothing (an unrelated file event), so
        // a request in flight is not cancelled and restarted.
        let mut pending: Option<std::pin::Pin<Box<dyn std::future::Future<Output = Wake>>>> = None;
        loop {
            let work = pending.get_or_insert_with(|| {
                let (at, job) = self.next_job();
                let fetcher = self.fetcher.clone();
                Box::pin(async move {
                    tokio::time::sleep_until(at.into()).await;
                    match job {
                        Some(job) => Wake::Done(perform(&fetcher, job).await),
                        None => Wake::Commit,
                    }
                })
            });
            let wake = tokio::select! {
                _ = term.recv() => Wake::Stop("SIGTERM"),
                _ = int.recv() => Wake::Stop("SIGINT"),
                _ = hup.recv() => Wake::Reload("SIGHUP"),
                Some(()) = async { match watch.as_mut() { Some(w) => w.changes.recv().await, None => std::future::pending().await } } => Wake::Reload("file change"),
                w = work => {
                    pending = None;
                    w
                }
            };
            match wake {
                Wake::Done(outcome) => self.apply(outcome),
                Wake::Commit => {}
                Wake::Reload(why) => {
                    if self.reload(why) {
                        pending = None;
                    }
                }
                Wake::Stop(why) => return self.shutdown(why).await,
            }
            if self.commit_step.is_some_and(|s| s.at <= Instant::now()) {
                self.commit().await;
                pending = None;
            }
            if self
                .next_revocation()
                .is_some_and(|at| at <= Instant::now())
            {
                self.revoke_replaced().await;
                pending = None;
            }
            if self.state_dirty {
                self.save_state();
            }
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retire)
                .into_iter()
                .partition(|(_, at)| *at <= now);
            self.retire = later;
            for (version, _) in due {
                match self.volume.retire(&version) {
                    Ok(()) => {
                        tracing::debug!(version = %version, "removed a replaced version after its grace period")
                    }
                    Err(e) => {
                        tracing::warn!(version = %version, error = %e, "cannot remove a replaced version; the next commit will")
                    }
                }
            }
            self.publish();
        }
    }

    /// The earliest deadline and the job due then; `None` job means only a commit is due.
    fn next_job(&self) -> (Instant, Option<Job>) {
        let now = Instant::now();
        let token_due = self.token.is_none() || self.token_step.at <= now;
        if token_due && self.token_step.kind != StepKind::Idle {
            let at = self.token_step.at;
            return match (&self.token, self.token_step.kind) {
                (Some(t), StepKind::RenewToken) => {
                    (at, Some(Job::RenewToken(t.secret.clone(), t.increment)))
                }
                _ => (at, Some(Job::Login)),
            };
        }
        let earliest_read = self.slots.iter().map(|s| s.step.at).min();
        let mut at = self.token_step.at;
        if let Some(r) = earliest_read {
            at = at.min(r);
        }
        let housekeeping = [
            self.commit_step.map(|c| c.at),
            self.retire.iter().map(|r| r.1).min(),
            self.next_revocation(),
        ];
        if let Some(h) = housekeeping.into_iter().flatten().min() {
            if h <= at {
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
        let poll_horizon = at.max(now) + BATCH_WINDOW.max(self.poll / 10);
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
            Some(Job::Reads {
                token: token.secret.clone(),
                refetch,
                renew,
            }),
        )
    }

    fn apply(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Login(r) => self.apply_login(r),
            Outcome::RenewToken(r) => self.apply_token_renewal(r),
            Outcome::Reads { fetched, renewed } => {
                let mut changed = false;
                for (i, r) in fetched {
                    changed |= self.apply_fetch(i, r);
                }
                for (i, r) in renewed {
                    self.apply_lease_renewal(i, r);
                }
                if changed && self.slots.iter().all(|s| s.fetched.is_some()) {
                    self.commit_step = Some(Step::now(StepKind::Idle));
                }
            }
        }
    }

    fn apply_login(&mut self, result: Result<VaultToken, FetchError>) {
        match result {
            Ok(t) => {
                Metrics::inc(&self.metrics.logins);
                self.generation += 1;
                let now = Instant::now();
                let expires = (!t.ttl.is_zero()).then(|| (now + t.ttl, SystemTime::now() + t.ttl));
                self.token_step = if t.ttl.is_zero() {
                    Step::idle()
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
                self.state_dirty = true;
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
                self.failed("login", &e, self.token_step.failures);
                self.token_step = Step {
                    kind: StepKind::Login,
                    ..self.token_step
                }
                .retry(e.retry_after());
            }
        }
    }

    fn apply_token_renewal(&mut self, result: Result<Renewal, FetchError>) {
        let Some(token) = self.token.as_mut() else {
            return;
        };
        match result {
            Ok(r) => {
                Metrics::inc(&self.metrics.token_renewals);
                token.expires = Some((Instant::now() + r.duration, SystemTime::now() + r.duration));
                self.state_dirty = true;
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
                self.failed("token renewal", &e, self.token_step.failures);
                self.token_step = if e.status() == Some(403) || expired {
                    Step::now(StepKind::Login)
                } else {
                    self.token_step.retry(e.retry_after())
                };
            }
        }
    }

    /// Applies a fetched answer; true when the content may have changed.
    fn apply_fetch(&mut self, i: usize, result: Result<Response, FetchError>) -> bool {
        let generation = self.generation;
        let poll = self.poll;
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
                let values = state::values(&response);
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
                    replaced.filter(|_| self.opts.revoke_replaced_after.is_some())
                {
                    // Revoked once its successor is on disk and the grace has passed.
                    self.replaced.push(Replaced {
                        lease_id,
                        revoke_at_unix: None,
                    });
                }
                if rotated {
                    Metrics::inc(&self.metrics.rotations);
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
                self.state_dirty = true;
                if changed {
                    self.files_current = false;
                } else {
                    Metrics::inc(&self.metrics.reads_unchanged);
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
                self.failed(&format!("read {path}"), &e, failures);
                if suspect_token {
                    self.token_step = Step::now(StepKind::Login);
                }
                false
            }
        }
    }

    fn apply_lease_renewal(&mut self, i: usize, result: Result<Renewal, FetchError>) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let Some(fetched) = slot.fetched.as_mut() else {
            return;
        };
        match result {
            Ok(r) => {
                Metrics::inc(&self.metrics.lease_renewals);
                fetched.expires =
                    Some((Instant::now() + r.duration, SystemTime::now() + r.duration));
                self.state_dirty = true;
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
                self.failed(&format!("lease renewal for {path}"), &e, failures);
            }
        }
    }

    /// Logs a failure once per state change and counts it.
    fn failed(&self, what: &str, e: &FetchError, previous_failures: u32) {
        self.metrics.failure(e.cause());
        if previous_failures == 0 {
            tracing::warn!(step = what, cause = e.cause(), error = %e, "step failed; keeping the current files and retrying with backoff");
        } else {
            tracing::debug!(step = what, cause = e.cause(), failures = previous_failures + 1, error = %e, "step failed again");
        }
    }

    /// Renders every file from the latest answers and commits them; notifies on a new version.
    async fn commit(&mut self) {
        let previous = self
            .commit_step
            .take()
            .unwrap_or_else(|| Step::now(StepKind::Idle));
        let adopted_without_values = self
            .slots
            .iter()
            .any(|s| s.fetched.as_ref().is_some_and(|f| f.response.is_none()));
        if adopted_without_values && self.files_current {
            // Adopted from --state-dir and nothing changed since: the files are the render.
            if !self.committed_once {
                tracing::info!(version = %self.volume.current_version().unwrap_or_default(), "the files on disk are already current (adopted from the state)");
                self.committed_once = true;
                self.last_success = Some(SystemTime::now());
                state::start_grace(
                    &mut self.replaced,
                    self.opts.revoke_replaced_after,
                    SystemTime::now(),
                );
                self.state_dirty = true;
            }
            return;
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
            return;
        }
        let responses: Option<Vec<Response>> = self
            .slots
            .iter()
            .map(|s| s.fetched.as_ref().and_then(|f| f.response.clone()))
            .collect();
        let Some(responses) = responses else { return };
        let snapshot = Snapshot { responses };
        let before = self.volume.current_version();
        let result = render::render(&self.spec, &snapshot)
            .map_err(|e| ("render", e.to_string()))
            .and_then(|p| {
                let keep: Vec<&str> = self.retire.iter().map(|(v, _)| v.as_str()).collect();
                self.volume
                    .commit_keeping(&p, &keep)
                    .map(|c| (c, p.files.len(), state::payload(&p)))
                    .map_err(|e| ("volume", e.to_string()))
            });
        match result {
            Ok((Commit::Written { version }, files, fingerprint)) => {
                self.committed(&version, fingerprint);
                Metrics::inc(&self.metrics.renders_written);
                self.last_success = Some(SystemTime::now());
                tracing::info!(version = %version, files, dir = %self.volume.describe(), "committed a new version");
                if let Some(old) = before {
                    self.retire.push((old, Instant::now() + RETIRE_AFTER));
                }
                if self.committed_once {
                    self.notify(&version).await;
                } else {
                    tracing::info!("ready: every file is rendered");
                }
                self.committed_once = true;
            }
            Ok((Commit::Unchanged { version }, _, fingerprint)) => {
                self.committed(&version, fingerprint);
                Metrics::inc(&self.metrics.renders_unchanged);
                self.last_success = Some(SystemTime::now());
                if !self.committed_once {
                    tracing::info!(version = %version, "the files on disk are already current");
                }
                self.committed_once = true;
                tracing::debug!("render unchanged; nothing written");
            }
            Err((cause, message)) => {
                self.metrics.failure(cause);
                if previous.failures == 0 {
                    tracing::error!(cause, error = %message, "cannot commit the new version; the previous one stays");
                }
                self.commit_step = Some(previous.retry(None));
            }
        }
    }

    /// Records a successful commit: the files are current, and the grace of the leases it
    /// replaced starts now.
    fn committed(&mut self, version: &str, fingerprint: String) {
        self.files_current = true;
        self.rendered = Some(Rendered {
            version: version.to_string(),
            files: fingerprint,
        });
        state::start_grace(
            &mut self.replaced,
            self.opts.revoke_replaced_after,
            SystemTime::now(),
        );
        self.state_dirty = true;
    }

    async fn notify(&self, version: &str) {
        if self.notifier.is_empty() {
            return;
        }
        for d in self.notifier.notify(version).await {
            if d.ok {
                tracing::info!(target_app = %d.target, detail = %d.detail, "notified the app");
            } else {
                Metrics::inc(&self.metrics.notifications_failed);
                tracing::warn!(target_app = %d.target, detail = %d.detail, "could not notify the app");
            }
        }
    }

    /// Re-reads the config; an invalid one is reported and the running one kept. True when
    /// the plan changed.
    fn reload(&mut self, why: &'static str) -> bool {
        let text = match config::read_bounded(&self.opts.config) {
            Ok(t) => t,
            Err(e) => {
                self.metrics.failure("config");
                tracing::error!(config = %self.opts.config.display(), error = %e, "cannot read the config; keeping the running one");
                return false;
            }
        };
        if text == self.config_text && why != "SIGHUP" {
            return false;
        }
        let units = config::volumes::load_units(
            &self.opts.config,
            &text,
            &VaultEnv::from_process(),
            &self.opts.layout(),
        );
        let spec = match units.map(|mut u| {
            let unit = (self.opts.unit < u.len()).then(|| u.swap_remove(self.opts.unit));
            unit.filter(|u| u.volumes == self.opts.members)
        }) {
            Ok(Some(u)) => u.spec,
            Ok(None) => {
                self.metrics.failure("config");
                tracing::error!(trigger = why, "the new config groups the volumes differently; keeping the running one (restart the pod to apply it)");
                self.config_text = text;
                return false;
            }
            Err(e) => {
                self.metrics.failure("config");
                tracing::error!(trigger = why, error = %e, "the new config is invalid; keeping the running one");
                self.config_text = text;
                return false;
            }
        };
        self.config_text = text;
        if spec.vault != self.spec.vault || spec.auth != self.spec.auth {
            match Fetcher::new(&spec, &self.opts.token_path, &self.opts.policy) {
                Ok(f) => self.fetcher = Arc::new(f.quiet()),
                Err(e) => {
                    self.metrics.failure("config");
                    tracing::error!(trigger = why, error = %e, "the new config is unusable; keeping the running one");
                    return false;
                }
            }
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
        if state::objects(&spec) != state::objects(&self.spec) || dropped > 0 {
            self.files_current = false;
        }
        self.spec = spec;
        let (poll, notifier) = settings(&self.opts, &self.spec);
        self.poll = poll;
        self.notifier = notifier;
        if self.slots.iter().all(|s| s.fetched.is_some()) {
            self.commit_step = Some(Step::now(StepKind::Idle));
        }
        tracing::info!(
            trigger = why,
            reads = self.slots.len(),
            dropped_reads = dropped,
            files = self.spec.objects.len(),
            "config reloaded"
        );
        true
    }

    async fn shutdown(&mut self, why: &'static str) -> Result<(), Error> {
        crate::logging::flush_suppressed();
        tracing::info!(signal = why, "shutting down; files stay in place");
        if self.opts.revoke_on_exit {
            if let Some(token) = &self.token {
                let deadline = Instant::now() + REVOKE_BUDGET;
                // Revoking the token revokes every lease it created.
                match tokio::time::timeout(
                    REVOKE_BUDGET,
                    self.fetcher.revoke_token(&token.secret, deadline),
                )
                .await
                {
                    Ok(Ok(())) => {
                        tracing::info!("revoked the token and its leases");
                        if let Some(sd) = &self.opts.state_dir {
                            sd.remove();
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not revoke the token"),
                    Err(_) => tracing::warn!("revoking the token took too long; exiting anyway"),
                }
            }
        }
        Ok(())
    }

    /// Publishes freshness for `/readyz` and the gauges.
    fn publish(&self) {
        let now = Instant::now();
        let complete = self.volume.current_version().is_some()
            && self.slots.iter().all(|s| s.fetched.is_some());
        let expired = self.slots.iter().any(|s| {
            s.fetched
                .as_ref()
                .and_then(|f| f.expires)
                .is_some_and(|(at, _)| at <= now)
        }) || self
            .token
            .as_ref()
            .and_then(|t| t.expires)
            .is_some_and(|(at, _)| at <= now);
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
        let ready = complete && !expired && self.committed_once;
        self.metrics.publish_loop(
            self.opts.unit,
            Status {
                ready,
                not_ready: if ready {
                    String::new()
                } else {
                    self.not_ready_reason(now)
                },
                last_success: self.last_success,
                token_expires: self
                    .token
                    .as_ref()
                    .and_then(|t| t.expires)
                    .map(|(_, wall)| wall),
                expiries,
            },
        );
    }
}

impl Sidecar {
    /// What `/readyz` says when not ready: the first thing missing, by path, never a value.
    fn not_ready_reason(&self, now: Instant) -> String {
        let dir = self.volume.describe();
        if let Some(s) = self.slots.iter().find(|s| s.fetched.is_none()) {
            return format!(
                "{} has not been read from Vault yet (see the log)",
                s.read.path
            );
        }
        if self.volume.current_version().is_none() || !self.committed_once {
            return format!("no complete render in {dir} yet (see the log)");
        }
        if self
            .token
            .as_ref()
            .and_then(|t| t.expires)
            .is_some_and(|(at, _)| at <= now)
        {
            return "the Vault token expired and logging in again has not succeeded yet".into();
        }
        if let Some(s) = self.slots.iter().find(|s| {
            s.fetched
                .as_ref()
                .and_then(|f| f.expires)
                .is_some_and(|(at, _)| at <= now)
        }) {
            return format!(
                "the lease or certificate of {} expired and has not been replaced yet",
                s.read.path
            );
        }
        "starting".into()
    }
}

/// Poll interval and notifier from flags over config.
pub(crate) fn settings(opts: &Options, spec: &Spec) -> (Duration, Notifier) {
    let poll = opts
        .poll_interval
        .or(spec.sidecar.poll_interval)
        .unwrap_or(DEFAULT_POLL);
    let notify = if opts.notify.is_empty()
        && opts.notify.process.is_none()
        && opts.notify.pid_file.is_none()
    {
        spec.sidecar.notify.clone()
    } else {
        opts.notify.clone()
    };
    (poll, Notifier::new(notify))
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, Error> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| Error::Runtime(format!("cannot install a signal handler: {e}")))
}

/// How long until something that lasts `increment`, with `left` of it remaining, is due for
/// the step normally taken `at` into it: the schedule of a fresh fetch, shifted by the time
/// already spent.
fn due_in(left: Duration, increment: Duration, at: Duration) -> Duration {
    left.saturating_sub(increment.saturating_sub(at))
}

/// An adopted read: its next step from the recorded expiry (or fetch time), and no values.
fn adopted_slot(r: &ReadRecord, poll: Duration, now: Instant, wall: SystemTime) -> (Step, Fetched) {
    let lifetime = r.lifetime(wall);
    let increment = Duration::from_secs(r.increment_secs);
    let unit = random_unit();
    let step = match &lifetime {
        schedule::Lifetime::Renewable { duration, .. } => Step::after(
            due_in(*duration, increment, schedule::renew_after(increment, unit)),
            StepKind::RenewLease,
        ),
        schedule::Lifetime::Fixed { duration, .. } => Step::after(
            due_in(
                *duration,
                increment,
                schedule::refetch_after(increment, unit),
            ),
            StepKind::Refetch,
        ),
        schedule::Lifetime::Certificate { valid_for } => Step::after(
            due_in(
                *valid_for,
                increment,
                schedule::renew_after(increment, unit),
            ),
            StepKind::Refetch,
        ),
        schedule::Lifetime::Static => {
            let since = wall
                .duration_since(state::from_unix(r.fetched_unix))
                .unwrap_or_default();
            Step::after(
                schedule::poll_after(poll, unit).saturating_sub(since),
                StepKind::Refetch,
            )
        }
    };
    let fetched = Fetched {
        response: None,
        values: r.values.clone(),
        fetched_at: state::from_unix(r.fetched_unix),
        increment,
        expires: lifetime.valid_for().map(|d| (now + d, wall + d)),
        lifetime,
        generation: 1,
    };
    (step, fetched)
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
async fn perform(fetcher: &Fetcher, job: Job) -> Outcome {
    let deadline = Instant::now() + STEP_BUDGET;
    match job {
        Job::Login => {
            let result = match fetcher.login(deadline).await {
                // A ready token (method token): ask Vault what it is worth.
                Ok(t) if t.ttl.is_zero() && matches!(fetcher.auth(), Auth::Token { .. }) => {
                    match fetcher.lookup_token(&t.token, deadline).await {
                        Ok(info) => Ok(VaultToken {
                            ttl: info.ttl,
                            renewable: info.renewable,
                            accessor: info.accessor,
                            ..t
                        }),
                        Err(e) => Err(e),
                    }
                }
                other => other,
            };
            Outcome::Login(result)
        }
        Job::RenewToken(token, increment) => {
            Outcome::RenewToken(fetcher.renew_token(&token, increment, deadline).await)
        }
        Job::Reads {
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
    }
}
