//! The top-level error of a command and its exit code (docs/cli.md, "Exit codes").
//!
//! Each layer has its own typed error carrying context (file and field for config, path and role
//! for Vault, directory for the volume); this type only gathers them and decides the exit code:
//! 2 for bad usage or configuration the user must fix, 1 for failures at run time.

use std::fmt;

use crate::config::ConfigError;
use crate::exec::ExecError;
use crate::provider::vault::fetch::FetchError;
use crate::render::RenderError;
use crate::volume::VolumeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad command line: unknown flag, missing value, malformed duration.
    #[error("{0}")]
    Usage(String),
    /// A failure of the environment at run time that no flag fixes: a port already in use, no
    /// signal handler, no async runtime (exit 1, no usage hint).
    #[error("{0}")]
    Runtime(String),
    /// The config asks for something this container is not allowed to do (file owners without
    /// the CHOWN capability): exit 2, with what to change, no usage hint.
    #[error("{0}")]
    Unfit(String),
    /// `probe`: nothing complete yet (exit 1, a normal answer rather than a fault).
    #[error("{0}")]
    NotReady(String),
    #[error(transparent)]
    Config(Box<ConfigError>),
    #[error(transparent)]
    Fetch(Box<FetchError>),
    #[error(transparent)]
    Render(Box<RenderError>),
    #[error(transparent)]
    Volume(Box<VolumeError>),
    #[error(transparent)]
    Exec(Box<ExecError>),
}

macro_rules! boxed_from {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::$variant(Box::new(e))
            }
        }
    )*};
}
boxed_from!(
    Config(ConfigError),
    Fetch(FetchError),
    Render(RenderError),
    Volume(VolumeError),
    Exec(ExecError)
);

/// Process exit codes, a stable contract (docs/cli.md, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    Runtime = 1,
    Usage = 2,
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) | Error::Config(_) | Error::Unfit(_) => ExitCode::Usage,
            Error::Fetch(e) if e.is_config() => ExitCode::Usage,
            Error::Volume(e) if e.is_config() => ExitCode::Usage,
            Error::Exec(e) if e.is_config() => ExitCode::Usage,
            Error::Fetch(_)
            | Error::Render(_)
            | Error::Volume(_)
            | Error::NotReady(_)
            | Error::Runtime(_)
            | Error::Exec(_) => ExitCode::Runtime,
        }
    }
}

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", *self as i32)
    }
}

/// The first `shown` of `names` and, when there are more, how many in all: a message that lists
/// what exists stays readable whatever the count.
pub fn first_few<'a, I>(names: I, shown: usize) -> String
where
    I: IntoIterator<Item = &'a String>,
    I::IntoIter: ExactSizeIterator,
{
    let names = names.into_iter();
    let all = names.len();
    let mut text = names
        .take(shown)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if all > shown {
        text.push_str(&format!(", ... ({all} in all)"));
    }
    text
}
