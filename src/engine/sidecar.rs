//! `secretdrop sidecar`: one resident process that keeps the pod's files valid and fresh,
//! whatever the provider of each volume (docs/pod.md, "The sidecar").
//!
//! One event loop per unit ([`super::Unit`]), all on one thread. Each turn a loop sleeps
//! until the earliest deadline (its session's next step, a due commit, a replaced version to
//! remove), runs the due network step while it watches signals and the config file, hands the
//! result to the session, and renders and commits when the session says the content changed.
//! Signals and config changes interrupt the sleep or the network step, never a commit:
//! commits happen while applying, outside `select!`.
//!
//! Invariants:
//! - a failure never removes or blanks a file: the last good version stays while the step is
//!   retried with capped, jittered backoff (the session's, or here for commits);
//! - nothing wakes up between deadlines;
//! - a replaced version stays readable for [`RETIRE_AFTER`] for readers that resolved `..data`
//!   before the swap;
//! - a reloaded config is applied only when it is valid, keeps the volumes grouped as they
//!   are, keeps every volume's provider, and stays inside the operator's pins; otherwise it is
//!   logged, counted, and the running one kept with its files.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{self, NotifySettings, VaultEnv};
use crate::error::Error;
use crate::fingerprint::{self, Rendered};
use crate::observe::{Metrics, Status};
use crate::provider::Render;
use crate::retry::Step;
use crate::volume::Commit;

use super::notify::Notifier;
use super::{adopt, prepare, runtime, save_state, Options, Unit};

/// How long a replaced version stays readable for readers that resolved `..data` before a swap.
const RETIRE_AFTER: Duration = Duration::from_secs(2);
/// How long adopting a recorded session may take before the loops start.
const ADOPT_BUDGET: Duration = Duration::from_secs(3);

/// What only the resident sidecar uses, from the command line.
#[derive(Debug, Clone)]
pub struct Resident {
    pub notify: NotifySettings,
    pub listen: Option<std::net::SocketAddr>,
    pub revoke_on_exit: bool,
}

/// Starts the sidecar and runs until SIGTERM or SIGINT.
pub fn run(opts: Options, resident: Resident) -> Result<(), Error> {
    let (text, units) = prepare(&opts, true)?;
    // One set of counters for the process; `/readyz` is ready only when every loop is.
    let metrics = Arc::new(Metrics::for_loops(units.len()));
    let mut loops: Vec<Loop> = units
        .into_iter()
        .enumerate()
        .map(|(index, unit)| Loop::new(index, unit, &opts, &resident, &text, metrics.clone()))
        .collect();
    runtime()?.block_on(async move {
        let listener = match resident.listen {
            Some(addr) => Some(
                crate::net::serve::bind(addr).map_err(|e| crate::net::serve::bind_error(addr, e))?,
            ),
            None => None,
        };
        for l in &mut loops {
            if adopt(&mut l.unit, Instant::now() + ADOPT_BUDGET).await {
                l.commit_step = Some(Step::now(()));
            }
        }
        if let Some(l) = listener {
            tracing::info!(listen = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /healthz, /readyz, /metrics");
            tokio::spawn(crate::observe::serve(l, metrics));
        }
        // Every loop on this one thread; the first error ends the process, as with one loop.
        let mut runs: Vec<Running<'_>> = loops.iter_mut().map(|l| Box::pin(l.run()) as _).collect();
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
type Running<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + 'a>>;

/// What ended a turn of the loop.
enum Wake {
    Done(crate::provider::Outcome),
    Housekeeping,
    Reload(&'static str),
    Stop(&'static str),
}

struct Loop {
    index: usize,
    unit: Unit,
    opts: Options,
    resident: Resident,
    config_text: String,
    notifier: Notifier,
    poll: Duration,
    metrics: Arc<Metrics>,
    /// A render+commit that is due (after a change, or retried after a failure).
    commit_step: Option<Step<()>>,
    /// Replaced versions and when they may go: each stays readable for [`RETIRE_AFTER`],
    /// even when the next commit comes sooner (a 2 s poll interval).
    retire: Vec<(String, Instant)>,
    committed_once: bool,
    last_success: Option<SystemTime>,
}

impl Loop {
    fn new(
        index: usize,
        unit: Unit,
        opts: &Options,
        resident: &Resident,
        text: &str,
        metrics: Arc<Metrics>,
    ) -> Loop {
        let poll = opts.settings_for(&unit.spec).poll;
        let notifier = Notifier::new(notify_settings(&resident.notify, &unit.spec));
        Loop {
            index,
            unit,
            opts: opts.clone(),
            resident: resident.clone(),
            config_text: text.to_string(),
            notifier,
            poll,
            metrics,
            commit_step: None,
            retire: Vec::new(),
            committed_once: false,
            last_success: None,
        }
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
            provider = self.unit.session.provider(),
            dir = %self.unit.volume.describe(),
            files = self.unit.spec.provider.files().len(),
            poll = %crate::logging::Dur(self.poll),
            "sidecar starting"
        );
        // The pending step survives wake-ups that change nothing (an unrelated file event), so
        // a request in flight is not cancelled and restarted.
        let mut pending: Option<std::pin::Pin<Box<dyn std::future::Future<Output = Wake>>>> = None;
        loop {
            let work = pending.get_or_insert_with(|| {
                let (at, job) = self.next_job();
                Box::pin(async move {
                    tokio::time::sleep_until(at.into()).await;
                    match job {
                        Some(job) => Wake::Done(job.await),
                        None => Wake::Housekeeping,
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
                Wake::Done(outcome) => {
                    if self.unit.session.apply(outcome, &self.metrics) {
                        self.commit_step = Some(Step::now(()));
                    }
                }
                Wake::Housekeeping => {}
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
            save_state(&mut self.unit);
            self.retire_due();
            self.publish();
        }
    }

    /// The earliest deadline and the session's step due then; housekeeping (a due commit, a
    /// version to retire) comes first when it is earlier.
    fn next_job(&self) -> (Instant, Option<crate::provider::Job>) {
        let (at, job) = self.unit.session.next();
        let housekeeping = [
            self.commit_step.map(|c| c.at),
            self.retire.iter().map(|r| r.1).min(),
        ];
        match housekeeping.into_iter().flatten().min() {
            Some(h) if h <= at => (h, None),
            _ => (at, job),
        }
    }

    fn retire_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retire)
            .into_iter()
            .partition(|(_, at)| *at <= now);
        self.retire = later;
        for (version, _) in due {
            match self.unit.volume.retire(&version) {
                Ok(()) => {
                    tracing::debug!(version = %version, "removed a replaced version after its grace period")
                }
                Err(e) => {
                    tracing::warn!(version = %version, error = %e, "cannot remove a replaced version; the next commit will")
                }
            }
        }
    }

    /// Renders every file from what the session holds and commits them; notifies the app of
    /// a new version.
    async fn commit(&mut self) {
        let previous = self.commit_step.take().unwrap_or_else(|| Step::now(()));
        let payload = match self.unit.session.render() {
            Ok(Render::Payload(p)) => p,
            Ok(Render::Current) => {
                if !self.committed_once {
                    tracing::info!(version = %self.unit.volume.current_version().unwrap_or_default(), "the files on disk are already current (adopted from the state)");
                    self.committed_once = true;
                    self.last_success = Some(SystemTime::now());
                    self.unit.session.committed(None);
                }
                return;
            }
            Ok(Render::NotYet) => return,
            Err(e) => {
                self.commit_failed(previous, "render", e.to_string());
                return;
            }
        };
        let before = self.unit.volume.current_version();
        let keep: Vec<&str> = self.retire.iter().map(|(v, _)| v.as_str()).collect();
        let result = self.unit.volume.commit_keeping(&payload, &keep);
        let fingerprint = fingerprint::payload(&payload);
        let files = payload.files.len();
        drop(payload);
        match result {
            Ok(Commit::Written { version }) => {
                self.unit.session.committed(Some(Rendered {
                    version: version.clone(),
                    files: fingerprint,
                }));
                Metrics::inc(&self.metrics.renders_written);
                self.last_success = Some(SystemTime::now());
                tracing::info!(version = %version, files, dir = %self.unit.volume.describe(), "committed a new version");
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
            Ok(Commit::Unchanged { version }) => {
                self.unit.session.committed(Some(Rendered {
                    version: version.clone(),
                    files: fingerprint,
                }));
                Metrics::inc(&self.metrics.renders_unchanged);
                self.last_success = Some(SystemTime::now());
                if !self.committed_once {
                    tracing::info!(version = %version, "the files on disk are already current");
                }
                self.committed_once = true;
                tracing::debug!("render unchanged; nothing written");
            }
            Err(e) => self.commit_failed(previous, "volume", e.to_string()),
        }
    }

    fn commit_failed(&mut self, previous: Step<()>, cause: &'static str, message: String) {
        self.metrics.failure(cause);
        if previous.failures == 0 {
            tracing::error!(cause, error = %message, "cannot commit the new version; the previous one stays");
        }
        self.commit_step = Some(previous.retry(None));
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
        // Every refusal is logged and counted; the running config keeps its files.
        let refuse = |metrics: &Metrics, what: &str, error: String| {
            metrics.failure("config");
            tracing::error!(trigger = why, error = %error, "the new config {what}; keeping the running one");
            false
        };
        let units = config::volumes::load_units(
            &self.opts.config,
            &text,
            &VaultEnv::from_process(),
            &self.opts.layout(),
        );
        if let Err(e) = super::check_admitted(&self.opts, &text) {
            self.config_text = text;
            return refuse(&self.metrics, "is unusable", e);
        }
        self.config_text = text;
        let mut units = match units {
            Ok(units) => units,
            Err(e) => return refuse(&self.metrics, "is invalid", e.to_string()),
        };
        let spec = match units.get(self.index) {
            Some(u) if u.volumes == self.unit.members => units.swap_remove(self.index).spec,
            _ => {
                // Name a provider switch, the likeliest cause; else say how to apply it.
                let running = self.unit.session.provider();
                let switched = units.iter().find_map(|u| {
                    let member = u.volumes.iter().find(|v| self.unit.members.contains(v))?;
                    let name = u.spec.provider.name();
                    (name != running).then(|| (member.clone(), name))
                });
                let why = match switched {
                    Some((member, name)) => format!(
                        "it switches {} from provider {running} to provider {name} (a provider \
                         change needs a new pod)",
                        member.map_or("the --dir volume".into(), |m| format!("volume {m:?}"))
                    ),
                    None => "restart the pod to apply it".into(),
                };
                return refuse(&self.metrics, "groups the volumes differently", why);
            }
        };
        if let Err(e) = crate::volume::check_ownership(&spec.provider.files()) {
            return refuse(&self.metrics, "is unusable", e);
        }
        let settings = self.opts.settings_for(&spec);
        match self.unit.session.reload(&spec.provider, &settings) {
            Ok(render_due) => {
                if render_due {
                    self.commit_step = Some(Step::now(()));
                }
            }
            Err(e) => return refuse(&self.metrics, "is unusable", e),
        }
        self.poll = settings.poll;
        self.notifier = Notifier::new(notify_settings(&self.resident.notify, &spec));
        tracing::info!(
            trigger = why,
            provider = spec.provider.name(),
            files = spec.provider.files().len(),
            "config reloaded"
        );
        self.unit.spec = spec;
        true
    }

    async fn shutdown(&mut self, why: &'static str) -> Result<(), Error> {
        crate::logging::flush_suppressed();
        tracing::info!(signal = why, "shutting down; files stay in place");
        if self
            .unit
            .session
            .shutdown(self.resident.revoke_on_exit)
            .await
        {
            if let Some(sd) = &self.unit.state_dir {
                sd.remove();
            }
        }
        Ok(())
    }

    /// Publishes freshness for `/readyz` and the gauges.
    fn publish(&self) {
        let now = Instant::now();
        let f = self.unit.session.freshness(now);
        let rendered = self.unit.volume.current_version().is_some() && self.committed_once;
        let ready = f.complete && rendered && f.problem.is_none();
        let not_ready = match (&f.problem, ready) {
            (_, true) => String::new(),
            (Some(p), _) if !f.complete => p.clone(),
            _ if !rendered => format!(
                "no complete render in {} yet (see the log)",
                self.unit.volume.describe()
            ),
            (Some(p), _) => p.clone(),
            (None, _) => "starting".into(),
        };
        self.metrics.publish_loop(
            self.index,
            Status {
                ready,
                not_ready,
                last_success: self.last_success,
                token_expires: f.token_expires,
                expiries: f.expiries,
                provider: self.unit.session.provider(),
                volumes: self
                    .unit
                    .members
                    .iter()
                    .map(|m| m.clone().unwrap_or_else(|| "--dir".into()))
                    .collect(),
            },
        );
    }
}

/// The notification settings: the flags when any is given, else the config's.
pub fn notify_settings(n: &NotifySettings, spec: &config::Spec) -> NotifySettings {
    if n.is_empty() && n.process.is_none() && n.pid_file.is_none() {
        spec.sidecar.notify.clone()
    } else {
        n.clone()
    }
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, Error> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| Error::Runtime(format!("cannot install a signal handler: {e}")))
}
