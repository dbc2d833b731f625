//! How the app learns that a new version was committed (docs/pod.md, "Notifying the app"): the
//! settings every config source fills and the signals secretdrop sends. A leaf: it imports
//! nothing of the crate, so providers use it without reaching the config envelope.

use std::path::PathBuf;

/// How the app learns that a new version was committed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NotifySettings {
    /// Signal number, validated.
    pub signal: Option<i32>,
    /// Send the signal to processes with this name (needs `shareProcessNamespace`).
    pub process: Option<String>,
    /// ... or to the pid in this file.
    pub pid_file: Option<PathBuf>,
    /// POST to this local URL.
    pub url: Option<String>,
}

impl NotifySettings {
    pub fn is_empty(&self) -> bool {
        self.signal.is_none() && self.url.is_none()
    }
}

/// Signal names accepted for notification, with and without the `SIG` prefix.
pub const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("TERM", libc::SIGTERM),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("WINCH", libc::SIGWINCH),
];

pub fn parse_signal(s: &str) -> Result<i32, String> {
    let name = s.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<String> = SIGNALS.iter().map(|(n, _)| format!("SIG{n}")).collect();
            format!(
                "{s:?} is not a signal we send: allowed are {}",
                names.join(", ")
            )
        })
}

/// Checks notification settings as a whole: a signal needs a target and vice versa; URLs are
/// http(s).
pub fn check_notify(n: &NotifySettings) -> Result<(), (&'static str, String)> {
    if n.signal.is_some() && n.process.is_none() && n.pid_file.is_none() {
        return Err((
            "signal",
            "needs process (a process name) or pidFile to send it to".into(),
        ));
    }
    if n.signal.is_none() && (n.process.is_some() || n.pid_file.is_some()) {
        return Err((
            "signal",
            "missing: which signal to send, e.g. SIGHUP".into(),
        ));
    }
    if n.process.is_some() && n.pid_file.is_some() {
        return Err(("process", "set process or pidFile, not both".into()));
    }
    if let Some(u) = &n.url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(("url", format!("{u:?} is not an http(s) URL")));
        }
    }
    Ok(())
}
