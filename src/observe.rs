//! What the sidecar tells the outside: counters and gauges in Prometheus text format, and a
//! small HTTP server for `/healthz`, `/readyz` and `/metrics` (`--listen`).
//!
//! The event loop owns the state and publishes a [`Status`] after each step; the server only
//! reads it, so scrapes never wait for Vault.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};

/// Counters, by name; gauges come from [`Status`].
#[derive(Default)]
pub struct Metrics {
    pub renders_written: AtomicU64,
    pub renders_unchanged: AtomicU64,
    pub logins: AtomicU64,
    pub token_renewals: AtomicU64,
    pub lease_renewals: AtomicU64,
    pub rotations: AtomicU64,
    pub reads_unchanged: AtomicU64,
    pub revocations: AtomicU64,
    pub notifications_failed: AtomicU64,
    failures: Mutex<BTreeMap<&'static str, u64>>,
    /// One status per event loop of the process (several when volumes log in differently).
    status: Mutex<Vec<Status>>,
}

/// The loop's view of freshness, published after each step.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// A complete render exists and nothing in it is known to have expired.
    pub ready: bool,
    pub last_success: Option<SystemTime>,
    pub token_expires: Option<SystemTime>,
    /// (secret path, lease or certificate expiry)
    pub expiries: Vec<(String, SystemTime)>,
    /// Why it is not ready, for `/readyz` (paths and states, never a value).
    pub not_ready: String,
    /// The provider of the loop that published it, and the volumes it serves (`--dir` for
    /// the config's own objects): the labels of the per-volume gauges.
    pub provider: &'static str,
    pub volumes: Vec<String>,
}

impl Status {
    /// The per-volume labels, escaped: `provider="vault",volume="secrets"`.
    fn labels(&self) -> Vec<String> {
        self.volumes
            .iter()
            .map(|v| {
                format!(
                    "provider=\"{}\",volume=\"{}\"",
                    escape_label(self.provider),
                    escape_label(v)
                )
            })
            .collect()
    }
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failure(&self, cause: &'static str) {
        if let Ok(mut f) = self.failures.lock() {
            *f.entry(cause).or_default() += 1;
        }
    }

    /// Metrics shared by `loops` event loops; until each has published, it counts as not ready.
    pub fn for_loops(loops: usize) -> Metrics {
        let m = Metrics::default();
        if let Ok(mut s) = m.status.lock() {
            *s = vec![Status::default(); loops.max(1)];
        }
        m
    }

    pub fn publish(&self, status: Status) {
        self.publish_loop(0, status);
    }

    /// The status of event loop `i` (see [`Metrics::for_loops`]).
    pub fn publish_loop(&self, i: usize, status: Status) {
        if let Ok(mut s) = self.status.lock() {
            if s.len() <= i {
                s.resize(i + 1, Status::default());
            }
            s[i] = status;
        }
    }

    /// All loops together: ready when every one is; the first reason a loop is not; the
    /// earliest token expiry and last success; every expiry.
    pub fn status(&self) -> Status {
        let all = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        let mut combined = Status {
            ready: !all.is_empty() && all.iter().all(|s| s.ready),
            ..Status::default()
        };
        for s in all {
            if !s.ready && combined.not_ready.is_empty() {
                combined.not_ready = match s.not_ready.is_empty() {
                    true => "starting".into(),
                    false => s.not_ready,
                };
            }
            combined.token_expires = match (combined.token_expires, s.token_expires) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            combined.last_success = match (combined.last_success, s.last_success) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            combined.expiries.extend(s.expiries);
        }
        combined
    }

    /// The Prometheus text exposition.
    pub fn prometheus(&self, now: SystemTime) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters = [
            (
                "secretdrop_logins_total",
                "Logins to Vault.",
                get(&self.logins),
            ),
            (
                "secretdrop_token_renewals_total",
                "Successful token renewals.",
                get(&self.token_renewals),
            ),
            (
                "secretdrop_lease_renewals_total",
                "Successful lease renewals.",
                get(&self.lease_renewals),
            ),
            (
                "secretdrop_rotations_total",
                "Leased secrets re-fetched because their lease could not be extended.",
                get(&self.rotations),
            ),
            (
                "secretdrop_reads_unchanged_total",
                "Reads whose answer equalled the one held: nothing rendered or checked on disk.",
                get(&self.reads_unchanged),
            ),
            (
                "secretdrop_replaced_leases_revoked_total",
                "Replaced leases ended after --revoke-replaced-after.",
                get(&self.revocations),
            ),
            (
                "secretdrop_notifications_failed_total",
                "App notifications that failed.",
                get(&self.notifications_failed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let _ = writeln!(out, "# HELP secretdrop_renders_total Renders by result.\n# TYPE secretdrop_renders_total counter");
        let _ = writeln!(
            out,
            "secretdrop_renders_total{{result=\"written\"}} {}",
            get(&self.renders_written)
        );
        let _ = writeln!(
            out,
            "secretdrop_renders_total{{result=\"unchanged\"}} {}",
            get(&self.renders_unchanged)
        );
        let _ = writeln!(out, "# HELP secretdrop_failures_total Failed steps by cause.\n# TYPE secretdrop_failures_total counter");
        if let Ok(f) = self.failures.lock() {
            for (cause, n) in f.iter() {
                let _ = writeln!(out, "secretdrop_failures_total{{cause=\"{cause}\"}} {n}");
            }
        }
        let loops = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        let _ = writeln!(out, "# HELP secretdrop_volume_ready 1 when the volume has a complete, current render.\n# TYPE secretdrop_volume_ready gauge");
        for l in &loops {
            for labels in l.labels() {
                let _ = writeln!(
                    out,
                    "secretdrop_volume_ready{{{labels}}} {}",
                    u8::from(l.ready)
                );
            }
        }
        let with_success: Vec<&Status> =
            loops.iter().filter(|l| l.last_success.is_some()).collect();
        if !with_success.is_empty() {
            let _ = writeln!(out, "# HELP secretdrop_volume_last_success_timestamp_seconds When the volume's files were last known current.\n# TYPE secretdrop_volume_last_success_timestamp_seconds gauge");
            for l in with_success {
                let unix = l
                    .last_success
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0.0, |d| d.as_secs_f64());
                for labels in l.labels() {
                    let _ = writeln!(
                        out,
                        "secretdrop_volume_last_success_timestamp_seconds{{{labels}}} {unix:.3}"
                    );
                }
            }
        }
        let status = self.status();
        let secs_until = |t: SystemTime| match t.duration_since(now) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        let _ = writeln!(out, "# HELP secretdrop_ready 1 when a complete, current render exists.\n# TYPE secretdrop_ready gauge\nsecretdrop_ready {}", u8::from(status.ready));
        if let Some(t) = status.token_expires {
            let _ = writeln!(out, "# HELP secretdrop_token_expiry_seconds Seconds until the Vault token expires.\n# TYPE secretdrop_token_expiry_seconds gauge\nsecretdrop_token_expiry_seconds {:.3}", secs_until(t));
        }
        if !status.expiries.is_empty() {
            let _ = writeln!(out, "# HELP secretdrop_secret_expiry_seconds Seconds until a leased secret or certificate expires.\n# TYPE secretdrop_secret_expiry_seconds gauge");
            for (path, t) in &status.expiries {
                let _ = writeln!(
                    out,
                    "secretdrop_secret_expiry_seconds{{path=\"{}\"}} {:.3}",
                    escape_label(path),
                    secs_until(*t)
                );
            }
        }
        if let Some(t) = status.last_success {
            let unix = t
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            let _ = writeln!(out, "# HELP secretdrop_last_success_timestamp_seconds When the files were last known current.\n# TYPE secretdrop_last_success_timestamp_seconds gauge\nsecretdrop_last_success_timestamp_seconds {unix:.3}");
        }
        out
    }
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Connections the `--listen` server keeps open at most: probes and a scraper need a few,
/// and every descriptor it does not take stays with the sidecar's real work.
const MAX_CONNECTIONS: usize = 8;
/// The cap never leaves fewer descriptors than this to the rest of the sidecar (Vault
/// connections, the files it writes, its watches).
const KEEP_FREE_FDS: usize = 48;
/// A request must arrive, and an idle connection goes, within this.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `/healthz`, `/readyz` and `/metrics` on an already bound listener, forever, within
/// the limits of [`crate::net::serve`].
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    let limits = crate::net::serve::Limits::new(MAX_CONNECTIONS, KEEP_FREE_FDS, TIMEOUT);
    crate::net::serve::serve(listener, limits, move |stream, conn| {
        let metrics = metrics.clone();
        async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let _answering = conn.answering();
                let resp = route(&req, &metrics);
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = crate::net::serve::http1()
                .serve_connection(io, service)
                .await;
        }
    })
    .await
}

fn route(req: &Request<hyper::body::Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n".to_string()),
        "/readyz" if metrics.status().ready => (StatusCode::OK, "ready\n".to_string()),
        "/readyz" => {
            let why = metrics.status().not_ready;
            let why = if why.is_empty() { "starting" } else { &why };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            )
        }
        "/metrics" => (StatusCode::OK, metrics.prometheus(SystemTime::now())),
        _ => (
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz, /metrics\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

/// Parses `--listen`: `HOST:PORT` or `:PORT` (all interfaces).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| format!("{s:?} is not an address to listen on: expected HOST:PORT or :PORT, e.g. 127.0.0.1:9090"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn exposition_has_counters_and_gauges() {
        let m = Metrics::default();
        Metrics::inc(&m.logins);
        m.failure("unavailable");
        m.failure("unavailable");
        let now = SystemTime::now();
        m.publish(Status {
            ready: true,
            last_success: Some(now),
            token_expires: Some(now + Duration::from_secs(60)),
            expiries: vec![("database/creds/app".into(), now + Duration::from_secs(10))],
            not_ready: String::new(),
            provider: "vault",
            volumes: vec!["--dir".into()],
        });
        let text = m.prometheus(now);
        assert!(text.contains("secretdrop_logins_total 1"), "{text}");
        assert!(
            text.contains("secretdrop_failures_total{cause=\"unavailable\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("secretdrop_token_expiry_seconds 60.000"),
            "{text}"
        );
        assert!(
            text.contains("secretdrop_secret_expiry_seconds{path=\"database/creds/app\"} 10.000"),
            "{text}"
        );
        assert!(text.contains("secretdrop_ready 1"));
        assert!(
            text.contains("secretdrop_volume_ready{provider=\"vault\",volume=\"--dir\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("secretdrop_volume_last_success_timestamp_seconds{provider=\"vault\",volume=\"--dir\"}"),
            "{text}"
        );
    }

    #[test]
    fn each_volume_is_labelled_with_its_provider() {
        let m = Metrics::for_loops(2);
        m.publish_loop(
            0,
            Status {
                ready: true,
                provider: "vault",
                volumes: vec!["a".into(), "b".into()],
                ..Status::default()
            },
        );
        m.publish_loop(
            1,
            Status {
                ready: false,
                provider: "aws",
                volumes: vec!["from-aws".into()],
                ..Status::default()
            },
        );
        let text = m.prometheus(SystemTime::now());
        for line in [
            "secretdrop_volume_ready{provider=\"vault\",volume=\"a\"} 1",
            "secretdrop_volume_ready{provider=\"vault\",volume=\"b\"} 1",
            "secretdrop_volume_ready{provider=\"aws\",volume=\"from-aws\"} 0",
            "secretdrop_ready 0",
        ] {
            assert!(text.contains(line), "{line}:\n{text}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen(":9090").unwrap().port(), 9090);
        assert!(parse_listen("127.0.0.1:0").is_ok());
        assert!(parse_listen("localhost").is_err());
    }

    #[test]
    fn several_loops_are_ready_only_together() {
        let m = Metrics::for_loops(2);
        assert!(!m.status().ready);
        assert_eq!(m.status().not_ready, "starting");
        m.publish_loop(
            0,
            Status {
                ready: true,
                ..Status::default()
            },
        );
        assert!(!m.status().ready, "the second loop has not rendered");
        m.publish_loop(
            1,
            Status {
                ready: false,
                not_ready: "secret/data/b has not been read".into(),
                ..Status::default()
            },
        );
        assert_eq!(m.status().not_ready, "secret/data/b has not been read");
        m.publish_loop(
            1,
            Status {
                ready: true,
                ..Status::default()
            },
        );
        assert!(m.status().ready);
    }
}
