//! Telling the app that a new version of its files was committed: a signal to a process found
//! by name (pods with `shareProcessNamespace`) or by pid file, and/or an HTTP POST to a local
//! URL. Best effort: a failure is logged and counted, never fatal, and never blocks for long.
//!
//! Invariants of the POST: it goes to the configured URL and nowhere else. The client is the
//! one every secretdrop client starts from ([`crate::net::http::builder`]: no proxy from the
//! environment, no Referer) and follows no redirect, so an app (or whoever answers at the
//! loopback address) cannot send the sidecar on to another host with a 3xx; a 3xx is a failed
//! notification, logged with its status. Connecting takes at most [`CONNECT_TIMEOUT`], the
//! whole exchange at most [`POST_TIMEOUT`], and the answer's body is never read.

use std::path::Path;
use std::time::Duration;

use crate::config::NotifySettings;

/// The outcome of one notification, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// What was notified, e.g. "SIGHUP to 2 processes named nginx".
    pub target: String,
    pub ok: bool,
    pub detail: String,
}

/// How long the POST may take to connect, and in all (headers of the answer included).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const POST_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Notifier {
    settings: NotifySettings,
    http: Option<reqwest::Client>,
}

impl Notifier {
    pub fn new(settings: NotifySettings) -> Notifier {
        let http = settings.url.as_ref().and_then(|_| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            crate::net::http::builder(CONNECT_TIMEOUT, reqwest::redirect::Policy::none())
                .timeout(POST_TIMEOUT)
                .build()
                .map_err(|e| tracing::error!(error = %e, "cannot build the HTTP client for --notify-url"))
                .ok()
        });
        Notifier { settings, http }
    }

    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
    }

    /// Sends every configured notification about `version`.
    pub async fn notify(&self, version: &str) -> Vec<Delivery> {
        let mut out = Vec::new();
        if let Some(sig) = self.settings.signal {
            out.push(self.signal(sig));
        }
        if let (Some(url), Some(http)) = (&self.settings.url, &self.http) {
            let result = http
                .post(url)
                .header("Content-Type", "application/json")
                .body(format!("{{\"version\":\"{version}\"}}"))
                .send()
                .await;
            // The answer is dropped unread: only its status counts.
            out.push(match result {
                Ok(r) if r.status().is_success() => Delivery {
                    target: format!("POST {url}"),
                    ok: true,
                    detail: r.status().to_string(),
                },
                Ok(r) if r.status().is_redirection() => Delivery {
                    target: format!("POST {url}"),
                    ok: false,
                    detail: format!(
                        "answered {} (to {}): redirects are not followed; notify the URL that \
                         handles the POST",
                        r.status(),
                        location(&r)
                    ),
                },
                Ok(r) => Delivery {
                    target: format!("POST {url}"),
                    ok: false,
                    detail: format!("answered {}", r.status()),
                },
                Err(e) => Delivery {
                    target: format!("POST {url}"),
                    ok: false,
                    detail: crate::net::http::failure(&e, true).cause,
                },
            });
        }
        out
    }

    fn signal(&self, sig: i32) -> Delivery {
        let name = signal_name(sig);
        let (target, pids) = match (&self.settings.process, &self.settings.pid_file) {
            (Some(process), _) => (
                format!("{name} to processes named {process:?}"),
                Ok(pids_named(process)),
            ),
            (None, Some(file)) => (
                format!("{name} to the pid in {}", file.display()),
                pid_from_file(file).map(|p| vec![p]),
            ),
            (None, None) => {
                return Delivery {
                    target: name,
                    ok: false,
                    detail: "no target".into(),
                }
            }
        };
        let pids = match pids {
            Ok(p) if p.is_empty() => {
                return Delivery {
                    target,
                    ok: false,
                    detail: "no such process".into(),
                }
            }
            Ok(p) => p,
            Err(e) => {
                return Delivery {
                    target,
                    ok: false,
                    detail: e,
                }
            }
        };
        let mut failed = Vec::new();
        for pid in &pids {
            // SAFETY: kill(2) with a pid we looked up and a validated signal number.
            if unsafe { libc::kill(*pid, sig) } != 0 {
                failed.push(format!("{pid}: {}", std::io::Error::last_os_error()));
            }
        }
        Delivery {
            target,
            ok: failed.is_empty(),
            detail: if failed.is_empty() {
                format!("pids {pids:?}")
            } else {
                failed.join("; ")
            },
        }
    }
}

/// A redirect's `Location`, shortened and escaped for the log line (the app chooses it).
fn location(r: &reqwest::Response) -> String {
    let raw = r
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_else(|| "no Location".into());
    crate::net::http::network_text(&raw, 128)
}

fn signal_name(sig: i32) -> String {
    crate::config::SIGNALS
        .iter()
        .find(|(_, v)| *v == sig)
        .map_or(format!("signal {sig}"), |(n, _)| format!("SIG{n}"))
}

/// The pid in `path`, if it names a process the file's owner could signal itself.
///
/// The pid file usually sits where the app writes, so the app chooses the pid: without a check
/// it could aim our signal at any process we may signal (another container's, or ours). The
/// target must be neither us nor pid 1, and must run as the uid that owns the file: then the
/// signal is one the app could have sent itself.
fn pid_from_file(path: &Path) -> Result<i32, String> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let owner = file
        .metadata()
        .map_err(|e| format!("cannot stat: {e}"))?
        .uid();
    let mut text = String::new();
    file.take(64)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    let pid = match text.trim().parse::<i32>() {
        Ok(p) if p > 1 && p != std::process::id() as i32 => p,
        _ => return Err(format!("{:?} is not the process id of an app", text.trim())),
    };
    match process_uid(pid) {
        Some(uid) if uid == owner => Ok(pid),
        Some(uid) => Err(format!(
            "pid {pid} runs as uid {uid} but the pid file belongs to uid {owner}: refusing to \
             signal a process the file's owner could not signal itself"
        )),
        None => Err(format!("no process {pid}")),
    }
}

/// The real uid of a process, from `/proc/PID/status`.
fn process_uid(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Processes whose `comm` or argv[0] basename is `name`, other than ourselves.
fn pids_named(name: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let argv0 = std::fs::read(entry.path().join("cmdline"))
            .ok()
            .and_then(|c| c.split(|b| *b == 0).next().map(|a| a.to_vec()))
            .map(|a| String::from_utf8_lossy(&a).into_owned())
            .unwrap_or_default();
        let base = argv0.rsplit('/').next().unwrap_or("");
        if comm.trim() == name || base == name {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_processes_by_name_but_not_itself() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        // spawn returns once exec has begun; the kernel names the new program a moment later
        // (comm, argv), so a loaded machine can show the old name for a while.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut pids = pids_named("sleep");
        while !pids.contains(&(child.id() as i32)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            pids = pids_named("sleep");
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(pids.contains(&(child.id() as i32)), "{pids:?}");
        assert!(!pids.contains(&(std::process::id() as i32)));
    }

    #[test]
    fn pid_files_must_hold_a_pid_of_their_owner() {
        let p = std::env::temp_dir().join(format!("secretdrop-pidfile-{}", std::process::id()));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(&p, format!("{}\n", child.id())).unwrap();
        assert_eq!(pid_from_file(&p), Ok(child.id() as i32));
        std::fs::write(&p, "nope").unwrap();
        assert!(pid_from_file(&p).is_err());
        // Not ourselves, not pid 1.
        std::fs::write(&p, std::process::id().to_string()).unwrap();
        assert!(pid_from_file(&p).is_err());
        std::fs::write(&p, "1").unwrap();
        assert!(pid_from_file(&p).is_err());
        // A file owned by another uid may not aim at our uid's processes.
        std::fs::write(&p, child.id().to_string()).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&p, Some(4242), None).unwrap();
            let e = pid_from_file(&p).unwrap_err();
            assert!(e.contains("uid 4242"), "{e}");
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&p);
    }
}
