//! `init` and `sidecar` for a `provider: aws` spec (docs/aws.md): the same volume, probe,
//! notification and metrics as with Vault; what differs is fetching (no login, no leases:
//! versions) and so the loop, which is a plain poll.
//!
//! Sidecar invariants: a poll whose values and versions equal the ones held renders nothing
//! and touches nothing on disk (`secretdrop_reads_unchanged_total` counts the objects); a
//! changed object is committed together with all others as one new version; a failed poll
//! leaves the files as they are and is retried with capped, jittered backoff; keys are
//! refreshed ahead of expiry by [`super::credentials`], so polls never wait on an expired key.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{ObjectSpec, Output, Spec};
use crate::engine::observe::{Metrics, Status};
use crate::engine::sidecar::Options;
use crate::error::Error;
use crate::provider::aws::params::AwsSpec;
use crate::retry::{jitter, random_unit};
use crate::volume::{Commit, Volume};

use super::credentials::AwsEnv;
use super::fetch::{AwsSnapshot, Fetcher};

/// How long one poll may retry a transient failure before it counts as failed.
const POLL_BUDGET: Duration = Duration::from_secs(10);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// How long a replaced version stays readable for readers that resolved `..data` before.
const RETIRE_AFTER: Duration = Duration::from_secs(2);

/// The files of an AWS spec as `ObjectSpec`s, for the ownership check shared with Vault.
fn file_specs(aws: &AwsSpec) -> Vec<ObjectSpec> {
    aws.objects
        .iter()
        .flat_map(|o| {
            std::iter::once((o.file.clone(), o.mode))
                .chain(o.jmes.iter().map(|j| (j.file.clone(), j.mode)))
                .map(|(name, mode)| ObjectSpec {
                    name,
                    read: 0,
                    output: Output::WholeResponse,
                    mode,
                    owner: o.owner,
                    group: o.group,
                })
        })
        .collect()
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the async runtime: {e}")))
}

/// `secretdrop init`: one complete render, or nothing changed and exit code != 0.
pub fn init(
    aws: &AwsSpec,
    volume: &Volume,
    started: Instant,
    timeout: Duration,
) -> Result<(), Error> {
    volume.check_filesystem()?;
    crate::volume::check_ownership(&file_specs(aws)).map_err(Error::Unfit)?;
    let fetcher = Fetcher::new(aws, &AwsEnv::from_process())?;
    let snapshot = runtime()?.block_on(fetcher.fetch(started + timeout))?;
    let payload = super::render::render(aws, &snapshot)?;
    let outcome = volume.commit(&payload)?;
    let (what, version) = match &outcome {
        Commit::Written { version } => ("rendered", version),
        Commit::Unchanged { version } => ("unchanged", version),
    };
    tracing::info!(
        dir = %volume.dir().display(),
        version = %version,
        files = payload.files.len(),
        aws_requests = fetcher.requests(),
        credential_exchanges = fetcher.credential_exchanges(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "{what}"
    );
    Ok(())
}

/// `secretdrop sidecar` for an AWS spec: render, then poll until SIGTERM or SIGINT.
pub fn sidecar(opts: Options, spec: Spec) -> Result<(), Error> {
    let Some(aws) = spec.aws.clone() else {
        return Err(Error::Runtime("not an AWS config".into()));
    };
    let volume = Volume::new(&opts.dir, opts.allow_disk).keeping_previous();
    volume.check_filesystem()?;
    crate::volume::check_ownership(&file_specs(&aws)).map_err(Error::Unfit)?;
    if opts.state_dir.is_some() {
        tracing::info!(
            "--state-dir keeps nothing for provider aws: there is no token or lease to adopt"
        );
    }
    let fetcher = Fetcher::new(&aws, &AwsEnv::from_process())?.quiet();
    let (poll, notifier) = crate::engine::sidecar::settings(&opts, &spec);
    runtime()?.block_on(async move {
        let metrics = Arc::new(Metrics::default());
        if let Some(addr) = opts.listen {
            let l = crate::net::serve::bind(addr).map_err(|e| crate::net::serve::bind_error(addr, e))?;
            tracing::info!(listen = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /healthz, /readyz, /metrics");
            tokio::spawn(crate::engine::observe::serve(l, metrics.clone()));
        }
        let signal = |k| {
            tokio::signal::unix::signal(k)
                .map_err(|e| Error::Runtime(format!("cannot install a signal handler: {e}")))
        };
        let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
        // SIGHUP would end the process by default; here it asks for a poll now.
        let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut held: Option<AwsSnapshot> = None;
        let mut failures = 0u32;
        let mut next_poll = Instant::now();
        let mut retire: Vec<(String, Instant)> = Vec::new();
        let mut last_success: Option<SystemTime> = None;
        tracing::info!(region = %aws.region, who = %fetcher.who(), poll = %humantime::format_duration(poll), "sidecar started (provider aws)");
        loop {
            let wake = retire.iter().map(|(_, t)| *t).chain([next_poll]).min().unwrap_or(next_poll);
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: polling now (a changed config file takes effect at the next start)");
                    next_poll = Instant::now();
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            retire.retain(|(v, at)| {
                if *at <= now {
                    if let Err(e) = volume.retire(v) {
                        tracing::warn!(version = %v, error = %e, "cannot remove a replaced version");
                    }
                    false
                } else {
                    true
                }
            });
            if now < next_poll {
                continue;
            }
            let result = tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                r = fetcher.fetch(Instant::now() + POLL_BUDGET) => r,
            };
            let snapshot = match result {
                Ok(s) => s,
                Err(e) => {
                    metrics.failure(e.cause());
                    failures += 1;
                    let base = BACKOFF_FIRST.saturating_mul(1u32 << (failures - 1).min(16)).min(BACKOFF_CAP);
                    let delay = (base / 2 + base.mul_f64(0.5 * random_unit())).min(poll);
                    if failures == 1 {
                        tracing::error!(cause = e.cause(), error = %e, retry_in = %humantime::format_duration(Duration::from_millis(delay.as_millis() as u64)), "poll failed; the files stay as they are");
                    } else {
                        tracing::debug!(cause = e.cause(), failures, error = %e, "poll failed again");
                    }
                    publish(&metrics, held.is_some(), last_success, &format!("the last poll failed: {}", e.cause()));
                    next_poll = Instant::now() + delay;
                    continue;
                }
            };
            if failures > 0 {
                tracing::info!(failures, "AWS answered again");
                failures = 0;
            }
            next_poll = Instant::now() + jitter(poll, 0.1);
            last_success = Some(SystemTime::now());
            let unchanged = held.as_ref().map_or(0, |h| {
                h.values.iter().zip(&snapshot.values).filter(|(a, b)| a.version == b.version && a.value == b.value).count()
            });
            if held.as_ref().is_some_and(|h| h.same_content(&snapshot)) {
                metrics.reads_unchanged.fetch_add(unchanged as u64, std::sync::atomic::Ordering::Relaxed);
                Metrics::inc(&metrics.renders_unchanged);
                tracing::debug!("every version unchanged; nothing rendered");
                publish(&metrics, true, last_success, "");
                continue;
            }
            metrics.reads_unchanged.fetch_add(unchanged as u64, std::sync::atomic::Ordering::Relaxed);
            let before = volume.current_version();
            let keep: Vec<&str> = retire.iter().map(|(v, _)| v.as_str()).collect();
            let committed = super::render::render(&aws, &snapshot)
                .map_err(|e| ("render", e.to_string()))
                .and_then(|p| volume.commit_keeping(&p, &keep).map(|c| (c, p.files.len())).map_err(|e| ("volume", e.to_string())));
            match committed {
                Ok((Commit::Written { version }, files)) => {
                    Metrics::inc(&metrics.renders_written);
                    let changed: Vec<&str> = match &held {
                        Some(h) => aws.objects.iter().zip(h.values.iter().zip(&snapshot.values)).filter(|(_, (a, b))| a.version != b.version || a.value != b.value).map(|(o, _)| o.file.as_str()).collect(),
                        None => Vec::new(),
                    };
                    if held.is_some() {
                        tracing::info!(version = %version, files, changed = %changed.join(", "), dir = %volume.dir().display(), "committed a new version");
                    } else {
                        tracing::info!(version = %version, files, dir = %volume.dir().display(), "committed a new version");
                    }
                    if let Some(old) = before {
                        retire.push((old, Instant::now() + RETIRE_AFTER));
                    }
                    if held.is_some() && !notifier.is_empty() {
                        for d in notifier.notify(&version).await {
                            if d.ok {
                                tracing::info!(target_app = %d.target, detail = %d.detail, "notified the app");
                            } else {
                                Metrics::inc(&metrics.notifications_failed);
                                tracing::warn!(target_app = %d.target, detail = %d.detail, "could not notify the app");
                            }
                        }
                    } else if held.is_none() {
                        tracing::info!("ready: every file is rendered");
                    }
                    held = Some(snapshot);
                }
                Ok((Commit::Unchanged { version }, _)) => {
                    Metrics::inc(&metrics.renders_unchanged);
                    if held.is_none() {
                        tracing::info!(version = %version, "the files on disk are already current");
                    }
                    held = Some(snapshot);
                }
                Err((cause, message)) => {
                    metrics.failure(cause);
                    tracing::error!(cause, error = %message, "cannot commit the new version; the previous one stays");
                    next_poll = Instant::now() + BACKOFF_FIRST;
                }
            }
            publish(&metrics, held.is_some(), last_success, "nothing rendered yet");
        }
        crate::logging::flush_suppressed();
        tracing::info!("stopping");
        Ok(())
    })
}

fn publish(metrics: &Metrics, ready: bool, last_success: Option<SystemTime>, why: &str) {
    metrics.publish(Status {
        ready,
        last_success,
        token_expires: None,
        expiries: Vec::new(),
        not_ready: if ready {
            String::new()
        } else {
            why.to_string()
        },
    });
}
