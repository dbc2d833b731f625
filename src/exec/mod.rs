//! `secretdrop exec`: rendered objects as the environment of an app (docs/exec.md).
//!
//! ```text
//! --dir:    wait for ..data (bounded) ─► read every object from that one version ─┐
//! --config: log in and fetch like init, render in memory (no files) ──────────────┤
//!                                          build the variables (env) ◄────────────┘
//!                 execve COMMAND (same pid)  or  supervise it (--restart-on-change)
//! ```
//! Invariants:
//! * The app never starts with a partial or mixed environment: every value comes from one
//!   version ([`Volume::read_objects`]) or one fetch, and every check (names, NUL bytes, sizes,
//!   unknown objects, the dotenv grammar) passes before COMMAND runs.
//! * Values are secrets: they stay in [`SecretBytes`] until handed to the kernel, and messages
//!   name objects, variables and paths, never values.
//! * Exit codes: 2 for what the user must fix (flags, object names, values that cannot be
//!   variables, a COMMAND that cannot be found), 1 for run-time failures (no render in time,
//!   Vault unreachable); once the app runs, its exit code is ours.

mod copy_self;
pub mod dotenv;
pub mod env;
pub mod expand;
mod supervise;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub use copy_self::{copy_self, BINARY_NAME};
pub use env::{Environment, Request};

use crate::config::Spec;
use crate::error::Error;
use crate::secret::SecretBytes;
use crate::volume::{ReadError, Volume};

/// The most read from one object file: an emptyDir's whole default size. Values must also fit
/// the kernel's per-variable limit ([`env::MAX_VARIABLE_BYTES`]), checked when building.
pub const MAX_OBJECT_BYTES: u64 = 1024 * 1024;
/// How often the directory is looked at while waiting for the first render.
const WAIT_POLL: Duration = Duration::from_millis(100);

impl From<ExecError> for crate::error::Error {
    fn from(e: ExecError) -> Self {
        crate::error::Error::failed(e.is_config(), e)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(
        "{dir}: no complete render after {waited}: is a secretdrop sidecar or init container \
         writing to this directory? Raise --wait if the first render takes longer"
    )]
    NotReady { dir: PathBuf, waited: String },
    #[error("object {object:?}: {message}")]
    Value { object: String, message: String },
    #[error("cannot run {program:?}: {message}")]
    Command {
        program: String,
        message: String,
        usage: bool,
    },
    #[error("{0}")]
    Runtime(String),
}

impl ExecError {
    pub fn is_config(&self) -> bool {
        match self {
            ExecError::Usage(_) | ExecError::Value { .. } => true,
            ExecError::Read(e) => e.is_config(),
            ExecError::Command { usage, .. } => *usage,
            ExecError::NotReady { .. } | ExecError::Runtime(_) => false,
        }
    }
}

/// Where the values come from.
pub enum Source {
    /// A directory a sidecar or init container renders into.
    Dir { dir: PathBuf, wait: Duration },
    /// Straight from the store, as `init` would fetch it.
    Config {
        spec: Box<Spec>,
        settings: Box<crate::provider::Settings>,
        timeout: Duration,
    },
}

/// `--restart-on-change`.
#[derive(Debug, Clone, Copy)]
pub struct Restart {
    pub signal: i32,
    pub grace: Duration,
}

pub struct Options {
    pub source: Source,
    pub request: Request,
    pub restart: Option<Restart>,
    /// COMMAND and its arguments; not empty.
    pub command: Vec<String>,
}

/// Runs exec; returns only on failure, or with the supervised app's exit code.
pub fn run(opts: Options) -> Result<i32, Error> {
    let started = Instant::now();
    let Some(program) = opts.command.first() else {
        return Err(ExecError::Usage("no COMMAND after --".into()).into());
    };
    match (&opts.source, opts.restart) {
        (Source::Dir { dir, wait }, restart) => {
            let volume = Volume::new(dir, true);
            let (version, env) = wait_and_read(&volume, &opts.request, *wait)?;
            tracing::info!(
                dir = %dir.display(),
                version = %version,
                variables = env.len(),
                waited_ms = started.elapsed().as_millis() as u64,
                "environment read"
            );
            match restart {
                Some(restart) => Ok(supervise::run(supervise::Supervisor {
                    volume,
                    request: opts.request,
                    restart,
                    command: opts.command,
                    version,
                    env,
                })?),
                None => Err(exec(program, &opts.command[1..], &env).into()),
            }
        }
        (Source::Config { .. }, Some(_)) => Err(ExecError::Usage(
            "--restart-on-change needs --dir: with --config there are no files to watch".into(),
        )
        .into()),
        (
            Source::Config {
                spec,
                settings,
                timeout,
            },
            None,
        ) => {
            let env = from_config(spec, settings, started + *timeout, &opts.request)?;
            tracing::info!(
                variables = env.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "environment fetched"
            );
            Err(exec(program, &opts.command[1..], &env).into())
        }
    }
}

/// Waits until a complete render exists (the test `probe` uses), then reads the objects from
/// its version.
fn wait_and_read(
    volume: &Volume,
    request: &Request,
    wait: Duration,
) -> Result<(String, Environment), ExecError> {
    let deadline = Instant::now() + wait;
    loop {
        match read(volume, request) {
            Err(ExecError::Read(ReadError::NotReady { .. })) if Instant::now() < deadline => {
                std::thread::sleep(
                    WAIT_POLL.min(deadline.saturating_duration_since(Instant::now())),
                );
            }
            Err(ExecError::Read(ReadError::NotReady { dir })) => {
                return Err(ExecError::NotReady {
                    dir,
                    waited: humantime::format_duration(wait).to_string(),
                })
            }
            r => return r,
        }
    }
}

/// The current version's name and the environment built from it.
fn read(volume: &Volume, request: &Request) -> Result<(String, Environment), ExecError> {
    let names = request.objects();
    let objects = volume.read_objects(&names, MAX_OBJECT_BYTES)?;
    let values: BTreeMap<&str, &SecretBytes> =
        names.iter().copied().zip(objects.values.iter()).collect();
    Ok((objects.version, request.build(&values)?))
}

/// Fetches and renders like `init`, without writing anything.
fn from_config(
    spec: &Spec,
    settings: &crate::provider::Settings,
    deadline: Instant,
    request: &Request,
) -> Result<Environment, Error> {
    // Unknown objects are usage errors before the store is contacted.
    let files = spec.provider.files();
    let known: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    if let Some(missing) = request.objects().into_iter().find(|o| !known.contains(o)) {
        return Err(ExecError::Usage(format!(
            "no object {missing:?} in {}; its objects are: {}",
            spec.source.display(),
            known.join(", ")
        ))
        .into());
    }
    let payload = crate::engine::init::fetch_payload(spec, settings, deadline)?;
    let values: BTreeMap<&str, &SecretBytes> = payload
        .files
        .iter()
        .map(|(name, file)| (name.as_str(), &file.data))
        .collect();
    Ok(request.build(&values)?)
}

/// Whether `sig` is ignored in this process (inherited: secretdrop ignores nothing itself, and
/// the standard library's ignored SIGPIPE is reset in every child it starts). Such a signal is
/// left ignored for the app, as a shell leaves it (docs/exec.md, "Signals").
fn ignored_at_start(sig: i32) -> bool {
    // SAFETY: a null new action only reads the current disposition into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// The app's command with `env` added to our environment, started with no signal blocked
/// (docs/exec.md, "Signals"): a mask left by whoever started exec is cleared, as tini and
/// dumb-init do; dispositions our parent set to ignore are kept. The hook also makes the
/// standard library fork and exec rather than posix_spawn, whose glibc version starts the
/// child with the C library's two reserved real-time signals ignored.
fn command(program: &str, args: &[String], env: &Environment) -> Command {
    let argv: Vec<String> = std::iter::once(program.to_string())
        .chain(args.iter().cloned())
        .collect();
    let mut argv = env.command(&argv).into_iter();
    let mut cmd = Command::new(argv.next().unwrap_or_else(|| program.into()));
    cmd.args(argv);
    for (name, value) in env.iter() {
        cmd.env(name, OsStr::from_bytes(value.expose()));
    }
    // SAFETY: sigemptyset and sigprocmask are async-signal-safe and allocate nothing.
    unsafe {
        cmd.pre_exec(|| {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
    cmd
}

/// Replaces this process with the app (same pid); returns only on failure.
fn exec(program: &str, args: &[String], env: &Environment) -> ExecError {
    tracing::debug!(program, "exec");
    let e = command(program, args, env).exec();
    command_error(program, e)
}

/// A failure to start COMMAND, worded for the person who wrote it.
fn command_error(program: &str, e: std::io::Error) -> ExecError {
    let (message, usage) = match e.kind() {
        std::io::ErrorKind::NotFound if program.contains('/') => ("no such file".to_string(), true),
        std::io::ErrorKind::NotFound => (
            "not found in PATH; give the full path of the program".to_string(),
            true,
        ),
        std::io::ErrorKind::PermissionDenied => {
            ("permission denied (is it executable?)".to_string(), true)
        }
        _ if e.raw_os_error() == Some(libc::E2BIG) => (
            "the arguments and environment are larger than the kernel accepts (E2BIG); mount \
             large objects as files instead"
                .to_string(),
            true,
        ),
        _ => (e.to_string(), false),
    };
    ExecError::Command {
        program: program.to_string(),
        message,
        usage,
    }
}
