//! `exec --restart-on-change`: stay as the app's parent, safe as PID 1 of a container, and
//! restart the app when a new version changes its environment.
//!
//! Invariants:
//! * SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 reach the app (the kernel delivers
//!   nothing to a PID 1 without a handler, so ours forward them). After a forwarded SIGTERM,
//!   SIGINT or SIGQUIT the app is never restarted: the container is being stopped.
//! * Every child is reaped (`waitpid(-1)` on each SIGCHLD), the app's orphans included when we
//!   are PID 1, so no zombie accumulates.
//! * The app exiting on its own ends exec with the app's code (128+N for signal N), like a
//!   shell; only an exit we asked for (a restart) starts it again.
//! * A restart happens only when the new version changes a variable; a version that cannot be
//!   read (an object removed, a value with NUL) is logged and the running app is kept.
//! * Signal dispositions are the app's as if exec were not there (docs/exec.md, "Signals"): a
//!   signal ignored when exec started (`nohup` ignores SIGHUP, a shell's background job SIGINT
//!   and SIGQUIT) is not forwarded and stays ignored in the app; everything else starts at its
//!   default, with no signal blocked (the standard library resets the mask and SIGPIPE in the
//!   child, and our handlers do not survive execve).

use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};

use super::{command, command_error, read, Environment, ExecError, Request, Restart};
use crate::volume::Volume;

/// Forwarded to the app as they arrive.
const FORWARDED: &[i32] = &[
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];
/// After one of these the container is stopping: no restart.
const STOPPING: &[i32] = &[libc::SIGTERM, libc::SIGINT, libc::SIGQUIT];
/// A safety net behind the inotify watch (an overflowed queue loses events): `..data` is
/// looked at this often anyway; one readlink.
const RECHECK: Duration = Duration::from_secs(10);

pub struct Supervisor {
    pub volume: Volume,
    pub request: Request,
    pub restart: Restart,
    pub command: Vec<String>,
    /// The version `env` was read from.
    pub version: String,
    pub env: Environment,
}

/// Where the app is in its life.
enum State {
    Running,
    /// Asked to exit for a restart with `next`; SIGKILL at `deadline`.
    Restarting {
        deadline: Instant,
        killed: bool,
        next: Environment,
        version: String,
    },
    /// A terminating signal was forwarded: when the app exits, so do we.
    Stopping,
}

/// Sends the restart signal and starts the grace period after which the app is killed.
fn ask_to_restart(pid: i32, s: &Supervisor, version: String, next: Environment) -> State {
    send(pid, s.restart.signal);
    State::Restarting {
        deadline: Instant::now() + s.restart.grace,
        killed: false,
        next,
        version,
    }
}

pub fn run(s: Supervisor) -> Result<i32, ExecError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ExecError::Runtime(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(supervise(s))
}

fn handler(sig: i32) -> Result<Signal, ExecError> {
    signal(SignalKind::from_raw(sig))
        .map_err(|e| ExecError::Runtime(format!("cannot install a signal handler: {e}")))
}

async fn supervise(mut s: Supervisor) -> Result<i32, ExecError> {
    // Handlers first: a signal or a child's exit before they exist would be lost.
    // Not for signals ignored at start: a handler would end the ignoring in the app too.
    let mut forwarded: Vec<(i32, Signal)> = FORWARDED
        .iter()
        .filter(|&&sig| !super::ignored_at_start(sig))
        .map(|&sig| handler(sig).map(|h| (sig, h)))
        .collect::<Result<_, _>>()?;
    let mut chld = handler(libc::SIGCHLD)?;
    let data = s.volume.dir().join(crate::volume::DATA_LINK);
    let mut watch = match crate::watch::watch_files(&[data.as_path()]) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %s.volume.dir().display(), error = %e, "cannot watch the directory; checking every 10s instead");
            None
        }
    };
    let program = s.command[0].clone();
    let mut pid = spawn(&s.command, &s.env)?;
    tracing::info!(program = %program, pid, version = %s.version, "app started; restarting it when a new version changes its environment");
    let mut state = State::Running;
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = match &state {
            State::Restarting {
                deadline,
                killed: false,
                ..
            } => Some(*deadline),
            _ => None,
        };
        let event = tokio::select! {
            sig = next_signal(&mut forwarded) => Event::Signal(sig),
            _ = chld.recv() => Event::Child,
            Some(()) = async { match watch.as_mut() { Some(w) => w.changes.recv().await, None => std::future::pending().await } } => Event::Change,
            _ = recheck.tick() => Event::Change,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d.into()).await, None => std::future::pending().await } } => Event::Grace,
        };
        match event {
            Event::Signal(sig) => {
                send(pid, sig);
                if STOPPING.contains(&sig) {
                    state = State::Stopping;
                }
            }
            Event::Grace => {
                if let State::Restarting { killed, .. } = &mut state {
                    tracing::warn!(pid, grace = %humantime::format_duration(s.restart.grace), "the app did not exit within the grace period; SIGKILL");
                    send(pid, libc::SIGKILL);
                    *killed = true;
                }
            }
            Event::Change => {
                if matches!(state, State::Running) {
                    if let Some((version, next)) = changed(&mut s) {
                        tracing::info!(pid, version = %version, signal = s.restart.signal, "a new version changes the environment; restarting the app");
                        state = ask_to_restart(pid, &s, version, next);
                    }
                }
            }
            Event::Child => {
                let Some(status) = reap(pid) else { continue };
                match std::mem::replace(&mut state, State::Running) {
                    State::Restarting { next, version, .. } => {
                        s.env = next;
                        s.version = version;
                        pid = spawn(&s.command, &s.env)?;
                        tracing::info!(program = %program, pid, version = %s.version, "app restarted");
                        // A version committed during the grace period was not acted on.
                        if let Some((version, next)) = changed(&mut s) {
                            state = ask_to_restart(pid, &s, version, next);
                        }
                    }
                    State::Running | State::Stopping => {
                        let code = exit_code(status);
                        tracing::info!(pid, code, "app exited");
                        return Ok(code);
                    }
                }
            }
        }
    }
}

enum Event {
    Signal(i32),
    Child,
    Change,
    Grace,
}

/// The next of the forwarded signals to arrive.
async fn next_signal(handlers: &mut [(i32, Signal)]) -> i32 {
    std::future::poll_fn(|cx| {
        for (sig, h) in handlers.iter_mut() {
            if h.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(*sig);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// The new version and environment, when `..data` moved on and the variables differ. A
/// version that changes nothing the app sees is adopted silently; one that cannot be read is
/// logged and skipped (the app keeps its environment).
fn changed(s: &mut Supervisor) -> Option<(String, Environment)> {
    let current = s.volume.current_version()?;
    if current == s.version {
        return None;
    }
    match read(&s.volume, &s.request) {
        Ok((version, env)) if env == s.env => {
            tracing::debug!(version = %version, "new version, same environment: no restart");
            s.version = version;
            None
        }
        Ok(next) => Some(next),
        Err(e) => {
            tracing::error!(version = %current, error = %e, "cannot build the environment from the new version; the app keeps running with the previous one");
            // Not retried until the next version: the same files give the same error.
            s.version = current;
            None
        }
    }
}

fn spawn(argv: &[String], env: &Environment) -> Result<i32, ExecError> {
    let child = command(&argv[0], &argv[1..], env)
        .spawn()
        .map_err(|e| command_error(&argv[0], e))?;
    // Reaped by `reap`, never through `Child` (dropping it neither waits nor kills).
    i32::try_from(child.id())
        .map_err(|_| ExecError::Runtime(format!("pid {} out of range", child.id())))
}

fn send(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory preconditions; `pid` is our child, not yet reaped (we reap
    // it ourselves), so the number cannot have been reused for another process.
    unsafe { libc::kill(pid, sig) };
}

/// Reaps every exited child; the app's wait status if it is among them.
fn reap(app: i32) -> Option<i32> {
    let mut app_status = None;
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-parameter.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            // 0: children remain, none exited; -1: ECHILD, none at all.
            return app_status;
        }
        if pid == app {
            app_status = Some(status);
        } else {
            tracing::debug!(pid, "reaped an orphan");
        }
    }
}

/// A shell's convention: the exit code, or 128 + the signal that ended the process.
fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}
