//! `secretdrop webhook`: an HTTPS server (rustls) answering AdmissionReviews on `/mutate`, with
//! `/healthz` and Prometheus `/metrics`. The certificate and key are re-read when their files
//! change (cert-manager rotates them through a `..data` swap); a broken pair is reported and
//! the previous one kept, so a rotation never takes the webhook down.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::mutate::Defaults;
use super::review::{self, Outcome};
use crate::error::Error;

/// AdmissionReviews for big pods stay far below this; anything larger is refused.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Latency histogram buckets, in seconds.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.5];

#[derive(Debug, Clone)]
pub struct Options {
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub listen: std::net::SocketAddr,
    pub defaults: Defaults,
}

/// Serves until SIGTERM or SIGINT.
pub fn run(opts: Options) -> Result<(), Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = load(&opts.tls_cert, &opts.tls_key).map_err(Error::Usage)?;
    let resolver = Arc::new(Reloading {
        current: RwLock::new(Arc::new(key)),
    });
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|e| Error::Usage(format!("--listen {}: {e}", opts.listen)))?;
        let mut watch = crate::watch::watch_files(&[&opts.tls_cert, &opts.tls_key])
            .map_err(|e| Error::Usage(format!("cannot watch the TLS files: {e}")))?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Error::Usage(format!("signal handler: {e}")))?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| Error::Usage(format!("signal handler: {e}")))?;
        let state = Arc::new(State { defaults: opts.defaults.clone(), metrics: Metrics::default() });
        tracing::info!(listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "webhook serving /mutate, /healthz, /metrics");
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                Some(()) = watch.changes.recv() => match load(&opts.tls_cert, &opts.tls_key) {
                    Ok(key) => {
                        if let Ok(mut current) = resolver.current.write() {
                            *current = Arc::new(key);
                        }
                        tracing::info!("reloaded the TLS certificate");
                    }
                    Err(e) => tracing::warn!(error = %e, "the new TLS certificate is unusable; keeping the current one"),
                },
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    // Answers are small and latency matters: no Nagle delay.
                    let _ = stream.set_nodelay(true);
                    let (acceptor, state) = (acceptor.clone(), state.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(stream).await else { return };
                        let service = hyper::service::service_fn(move |req| {
                            let state = state.clone();
                            async move { Ok::<_, std::convert::Infallible>(handle(req, &state).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    });
                }
            }
        }
        tracing::info!("webhook shutting down");
        Ok(())
    })
}

/// Reads a certificate chain and its key; every problem names the file.
fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("--tls-cert {}: no PEM certificate", cert.display()));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "--tls-cert {} and --tls-key {} do not belong together: {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok(certified)
}

#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

struct State {
    defaults: Defaults,
    metrics: Metrics,
}

#[derive(Default)]
struct Metrics {
    requests: AtomicU64,
    injected: AtomicU64,
    skipped: AtomicU64,
    rejected: AtomicU64,
    bad_requests: AtomicU64,
    /// Cumulative counts per bucket, then the sum in microseconds.
    latency: [AtomicU64; 8],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    fn observe(&self, seconds: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.latency[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    fn prometheus(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = String::new();
        s.push_str("# HELP secretdrop_webhook_requests_total AdmissionReviews received.\n# TYPE secretdrop_webhook_requests_total counter\n");
        s.push_str(&format!(
            "secretdrop_webhook_requests_total {}\n",
            g(&self.requests)
        ));
        s.push_str("# HELP secretdrop_webhook_reviews_total AdmissionReviews by result.\n# TYPE secretdrop_webhook_reviews_total counter\n");
        for (result, c) in [
            ("injected", &self.injected),
            ("skipped", &self.skipped),
            ("rejected", &self.rejected),
            ("bad_request", &self.bad_requests),
        ] {
            s.push_str(&format!(
                "secretdrop_webhook_reviews_total{{result=\"{result}\"}} {}\n",
                g(c)
            ));
        }
        s.push_str("# HELP secretdrop_webhook_latency_seconds Time to answer an AdmissionReview.\n# TYPE secretdrop_webhook_latency_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            s.push_str(&format!(
                "secretdrop_webhook_latency_seconds_bucket{{le=\"{b}\"}} {}\n",
                g(&self.latency[i])
            ));
        }
        s.push_str(&format!(
            "secretdrop_webhook_latency_seconds_bucket{{le=\"+Inf\"}} {}\n",
            g(&self.latency_count)
        ));
        s.push_str(&format!(
            "secretdrop_webhook_latency_seconds_sum {:.6}\n",
            g(&self.latency_sum_us) as f64 / 1e6
        ));
        s.push_str(&format!(
            "secretdrop_webhook_latency_seconds_count {}\n",
            g(&self.latency_count)
        ));
        s
    }
}

async fn handle(req: Request<hyper::body::Incoming>, state: &State) -> Response<Full<Bytes>> {
    let started = Instant::now();
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        ("GET", "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.metrics.prometheus(),
        ),
        ("POST", "/mutate") => {
            state.metrics.requests.fetch_add(1, Ordering::Relaxed);
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return bad_request(state, format!("cannot read the body: {e}")),
            };
            let review: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return bad_request(state, format!("the body is not JSON: {e}")),
            };
            let (answer, outcome) = match review::answer(&review, &state.defaults) {
                Ok(a) => a,
                Err(e) => return bad_request(state, e),
            };
            let (counter, level) = match &outcome {
                Outcome::Injected(_) => (&state.metrics.injected, tracing::Level::INFO),
                Outcome::Skipped(_) => (&state.metrics.skipped, tracing::Level::DEBUG),
                Outcome::Rejected => (&state.metrics.rejected, tracing::Level::INFO),
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let pod = review
                .pointer("/request/object/metadata/generateName")
                .or(review.pointer("/request/object/metadata/name"));
            let ns = review.pointer("/request/namespace");
            let pod = pod.and_then(|v| v.as_str()).unwrap_or("");
            let ns = ns.and_then(|v| v.as_str()).unwrap_or("");
            if level == tracing::Level::INFO {
                tracing::info!(namespace = ns, pod, outcome = ?outcome, "admission review");
            } else {
                tracing::debug!(namespace = ns, pod, outcome = ?outcome, "admission review");
            }
            state.metrics.observe(started.elapsed().as_secs_f64());
            reply(StatusCode::OK, "application/json", answer.to_string())
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: POST /mutate, GET /healthz, GET /metrics\n".into(),
        ),
    }
}

fn bad_request(state: &State, message: String) -> Response<Full<Bytes>> {
    state.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(error = %message, "bad AdmissionReview");
    reply(
        StatusCode::BAD_REQUEST,
        "text/plain",
        format!("{message}\n"),
    )
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}
