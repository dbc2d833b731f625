//! The top-level error of a command and its exit code (docs/cli.md, "Exit codes").
//!
//! Each layer has its own typed error carrying context (file and field for config, path and role
//! for Vault, directory for the volume) and converts it into this type itself, deciding the exit
//! code: 2 for bad usage or configuration the user must fix, 1 for failures at run time. This
//! module imports none of them, so every layer can use it.

use std::fmt;

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
    /// A layer's own typed error (config, fetch, render, volume, exec), with the exit code
    /// that layer decided when it converted it (each layer implements `From` for its error).
    #[error("{source}")]
    Failed {
        code: ExitCode,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// A layer's error: exit 2 when `config` (the user fixes the config or the flags), else 1.
    pub fn failed(config: bool, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Failed {
            code: if config {
                ExitCode::Usage
            } else {
                ExitCode::Runtime
            },
            source: Box::new(source),
        }
    }
}

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
            Error::Usage(_) | Error::Unfit(_) => ExitCode::Usage,
            Error::Failed { code, .. } => *code,
            Error::NotReady(_) | Error::Runtime(_) => ExitCode::Runtime,
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
