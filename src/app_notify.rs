//! Telling the app that a new version of its files was committed: a signal to a process found
//! by name (pods with `shareProcessNamespace`) or by pid file, and/or an HTTP POST to a local
//! URL. Best effort: a failure is logged and counted, never fatal, and never blocks for long.

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

pub struct Notifier {
    settings: NotifySettings,
    http: Option<reqwest::Client>,
}

impl Notifier {
    pub fn new(settings: NotifySettings) -> Notifier {
        let http = settings.url.as_ref().and_then(|_| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .no_proxy()
                .build()
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
            out.push(match result {
                Ok(r) if r.status().is_success() => Delivery {
                    target: format!("POST {url}"),
                    ok: true,
                    detail: r.status().to_string(),
                },
                Ok(r) => Delivery {
                    target: format!("POST {url}"),
                    ok: false,
                    detail: format!("answered {}", r.status()),
                },
                Err(e) => Delivery {
                    target: format!("POST {url}"),
                    ok: false,
                    detail: e.to_string(),
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

fn signal_name(sig: i32) -> String {
    crate::config::SIGNALS
        .iter()
        .find(|(_, v)| *v == sig)
        .map_or(format!("signal {sig}"), |(n, _)| format!("SIG{n}"))
}

fn pid_from_file(path: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    match text.trim().parse::<i32>() {
        Ok(p) if p > 1 => Ok(p),
        _ => Err(format!("{:?} is not a process id", text.trim())),
    }
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
        let pids = pids_named("sleep");
        let _ = child.kill();
        let _ = child.wait();
        assert!(pids.contains(&(child.id() as i32)), "{pids:?}");
        assert!(!pids.contains(&(std::process::id() as i32)));
    }

    #[test]
    fn pid_files_must_hold_a_pid() {
        let p = std::env::temp_dir().join(format!("secretdrop-pidfile-{}", std::process::id()));
        std::fs::write(&p, "1234\n").unwrap();
        assert_eq!(pid_from_file(&p), Ok(1234));
        std::fs::write(&p, "nope").unwrap();
        assert!(pid_from_file(&p).is_err());
        let _ = std::fs::remove_file(&p);
    }
}
