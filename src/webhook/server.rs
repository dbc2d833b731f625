//! `secretdrop webhook`: an HTTPS server (rustls) answering AdmissionReviews on `/mutate`, with
//! `/healthz` and Prometheus `/metrics`. The certificate and key are re-read when their files
//! change (cert-manager rotates them through a `..data` swap); a broken pair is reported and
//! the previous one kept, so a rotation never takes the webhook down.
//!
//! Anyone who can reach the port can send it anything, so what one client can make it hold is
//! bounded ([`crate::net::serve`] owns the connection cap and the per-connection clock):
//! * A body longer than [`MAX_BODY`] (what a kube-apiserver can send) is refused with 413
//!   before any of it is read. A body is read only once its declared length (or
//!   [`MAX_BODY`] when it has none) is reserved in a budget: [`SMALL_BODIES`] bytes for
//!   bodies up to [`SMALL_BODY`], which is every ordinary review, and [`LARGE_BODIES`] for the
//!   rest, so large bodies that stall cannot starve ordinary ones.
//! * Parsing, mutating and serialising a review runs on blocking threads, [`REVIEWS_AT_ONCE`]
//!   at a time and one large one (see [`review::LARGE_HEAP`]) among them, never on the
//!   runtime thread: `/healthz` and the other connections do not wait for a review.
//! * An answer holds its bytes in the [`ANSWERS`] budget until hyper has taken the last of
//!   it, and is longer than [`MAX_ANSWER`] never.
//!
//! Nothing a review waits for can make another wait past the API server's patience:
//! * Every review is answered within [`REVIEW_DEADLINE`] (4 s) of its request's arrival,
//!   well inside the webhook's `timeoutSeconds` (5 in manifests/), whatever it waits for:
//!   room for its body, the body, a review slot, the Kubernetes API, room for its answer. One
//!   not decided by then is refused, naming the deadline and what it waited for (or gets 503,
//!   or 408 for a body that did not arrive, when it was never read and its uid is unknown).
//! * The review slots are for CPU work only: no review holds one while it waits for the
//!   Kubernetes API. A review that needs objects from it (the classes of its CSI volumes, an
//!   IRSA pod's ServiceAccount) is decided in rounds ([`lookups`]): a decision that asked for
//!   an object not read yet is dropped with its slots, the objects are read on the runtime,
//!   all at once, each within its own time ([`super::csi::LOOKUP_BUDGET`],
//!   [`crate::provider::pod::LOOKUP_TIME`]) and all by [`DECIDE_TIME`] before the deadline, and the
//!   review is decided again with them. An API server that answers slowly or never thus costs
//!   the reviews that wait for it their own time, each refused within its deadline naming its
//!   object and the time it was given, and the slots stay free for every other review; the
//!   reads have budgets of their own ([`lookups::LOOKUPS_AT_ONCE`] GETs in flight,
//!   [`lookups::LOOKUP_BYTES`] of answers), which only reviews that read wait for.
//!
//! Together, at most: the binary (5 MiB static, 13 MiB as a debug build) + connections
//! (64 × ~30 KiB, and their kernel buffers: 64 × 2 × 64 KiB, see [`crate::net::serve`]) + bodies
//! (2 + 6.5 MiB) + answers (4 MiB) + one large review (about 3 × [`review::MAX_HEAP`]) + one
//! other (about 3 × [`review::LARGE_HEAP`]) + reads of the Kubernetes API (16 connections,
//! their socket and TLS buffers ~2 MiB; 2 MiB of answers; in each review slot one of them
//! parsed with its copy, 2 × [`lookups::MAX_OBJECT_HEAP`]) ≈ 62 MiB static, below the 64 MiB
//! limit the Deployment sets. A review between rounds holds only its body (in the body
//! budgets) and the answers read for it (in the reads' budget).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body as _, Bytes, Frame, SizeHint};
use hyper::{Request, Response, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};

use super::lookups::{self, Reads, DECIDE_TIME, REVIEW_DEADLINE};
use super::mutate::Defaults;
use super::review::{self, Outcome};
use super::shape::Shape;
use crate::error::Error;
use crate::logging::Flood;
use crate::net::serve::{self, Conn, Limits};

/// The kube-apiserver refuses requests over 3 MiB, so a pod is at most that; the
/// AdmissionReview around it (uid, kind, userInfo) adds little.
pub const MAX_BODY: usize = 3 * 1024 * 1024 + 256 * 1024;
/// Bodies up to this size come out of [`SMALL_BODIES`]; a review of an ordinary pod is 2-20 KiB.
pub const SMALL_BODY: usize = 64 * 1024;
pub const SMALL_BODIES: usize = 2 * 1024 * 1024;
/// Two bodies of the largest size at once.
pub const LARGE_BODIES: usize = 2 * MAX_BODY;
/// Answers being written. An answer longer than [`MAX_ANSWER`] becomes a rejection.
pub const ANSWERS: usize = 4 * 1024 * 1024;
pub const MAX_ANSWER: usize = 3 * 1024 * 1024;
/// Reviews computed at once: one slow review (a pathological annotation) leaves the other
/// slot to everyone else.
pub const REVIEWS_AT_ONCE: usize = 2;
/// Every phase of a connection (handshake and request head, body, answer, idle keep-alive)
/// must end within this; a review, its body included, within [`REVIEW_DEADLINE`]. The
/// apiserver sends a review within milliseconds and stops waiting after the webhook's
/// timeoutSeconds (at most 30, 5 in manifests/).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections at most, fewer if the fd limit requires (keeping [`KEEP_FREE_FDS`]). An
/// apiserver keeps a few keep-alive connections to each replica; idle ones make room for new
/// ones at the cap.
pub const MAX_CONNECTIONS: usize = 64;
const KEEP_FREE_FDS: usize = 32;
/// rustls buffers at most this much of an answer per connection (its default is 64 KiB).
const TLS_BUFFER: usize = 16 * 1024;
/// Answers go to hyper in pieces this large, copied, so a piece hyper still queues never
/// pins a whole answer after its budget is returned.
const ANSWER_PIECE: usize = 16 * 1024;
// Each budget holds at least the largest thing drawn from it, so no wait is endless.
const _: () = assert!(SMALL_BODY <= SMALL_BODIES && MAX_BODY <= LARGE_BODIES);
const _: () = assert!(MAX_ANSWER <= ANSWERS);

/// Latency histogram buckets, in seconds.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.5];

#[derive(Debug, Clone)]
pub struct Options {
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub listen: std::net::SocketAddr,
    pub defaults: Defaults,
    /// The Kubernetes API, for the SecretProviderClasses of CSI volumes.
    pub kube: Option<crate::net::kube::Client>,
}

/// Serves until SIGTERM or SIGINT.
pub fn run(opts: Options) -> Result<(), Error> {
    one_malloc_arena();
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
        .map_err(|e| Error::Runtime(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(async move {
        let listener = serve::bind(opts.listen)
            .map_err(|e| serve::bind_error(opts.listen, e))?;
        let mut watch = crate::watch::watch_files(&[&opts.tls_cert, &opts.tls_key])
            .map_err(|e| Error::Runtime(format!("cannot watch the TLS files: {e}")))?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Error::Runtime(format!("cannot install a signal handler: {e}")))?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| Error::Runtime(format!("cannot install a signal handler: {e}")))?;
        let api = opts.kube.clone().map(lookups::Api::new);
        let state = Arc::new(State::new(opts.defaults.clone(), api));
        let limits = Limits::new(MAX_CONNECTIONS, KEEP_FREE_FDS, TIMEOUT);
        tracing::info!(listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), connections = limits.connections, "webhook serving /mutate, /healthz, /metrics");
        let server = serve::serve(listener, limits, move |stream, conn| {
            let (acceptor, state) = (acceptor.clone(), state.clone());
            async move {
                // Answers are small and latency matters: no Nagle delay.
                let _ = stream.set_nodelay(true);
                let tls = acceptor.accept_with(stream, |c| c.set_buffer_limit(Some(TLS_BUFFER)));
                let Ok(tls) = tls.await else { return };
                let service = hyper::service::service_fn(move |req| {
                    let (state, conn) = (state.clone(), conn.clone());
                    async move { Ok::<_, Infallible>(handle(req, &state, &conn).await) }
                });
                let _ = serve::http1()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            }
        });
        tokio::pin!(server);
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
                () = &mut server => break,
            }
        }
        crate::logging::flush_suppressed();
        tracing::info!("webhook shutting down");
        Ok(())
    });
    // A review still computing on a blocking thread must not hold up the exit: nobody waits
    // for its answer any more.
    runtime.shutdown_background();
    result
}

/// glibc's malloc gives each thread an arena of its own, and memory freed in one is not
/// reused by another: every blocking thread that ever computed a large review would keep that
/// review's peak resident, and the budgets above would not add up. One arena for the process
/// (its two review threads rarely allocate at once) keeps freed memory reusable wherever the
/// next review runs. mimalloc, which the static build uses (src/main.rs), gives threads heaps
/// of their own too, but returns the pages that frees empty to the system after a short delay.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before the other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
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
    /// The Kubernetes API, when the webhook has access: reviews read it through
    /// [`lookups::Reads`], outside the review slots.
    api: Option<lookups::Api>,
    metrics: Metrics,
    small_bodies: Arc<Semaphore>,
    large_bodies: Arc<Semaphore>,
    answers: Arc<Semaphore>,
    reviews: Arc<Semaphore>,
    large_review: Arc<Semaphore>,
}

impl State {
    fn new(defaults: Defaults, api: Option<lookups::Api>) -> State {
        let bytes = |n: usize| Arc::new(Semaphore::new(n));
        State {
            defaults,
            api,
            metrics: Metrics::default(),
            small_bodies: bytes(SMALL_BODIES),
            large_bodies: bytes(LARGE_BODIES),
            answers: bytes(ANSWERS),
            reviews: Arc::new(Semaphore::new(REVIEWS_AT_ONCE)),
            large_review: Arc::new(Semaphore::new(1)),
        }
    }
}

/// A request body as it arrives. An ordinary review comes in one piece (hyper reads up to
/// [`serve::READ_BUFFER`] at a time), which is kept as hyper handed it: a slice of the
/// connection's read buffer, so a review in progress holds at most [`serve::READ_BUFFER`]
/// beyond its reserved body (hyper reads the next request into a new one). Only a body in
/// several pieces is copied into one buffer, allocated once at the declared length.
#[derive(Default)]
enum Text {
    #[default]
    Empty,
    One(Bytes),
    Joined(Vec<u8>),
}

impl Text {
    fn len(&self) -> usize {
        self.bytes().len()
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Text::Empty => &[],
            Text::One(b) => b,
            Text::Joined(v) => v,
        }
    }

    /// Appends `data`; `want` (the declared length, or the limit) sizes the joined buffer.
    fn push(&mut self, data: Bytes, want: usize) {
        *self = match std::mem::take(self) {
            Text::Empty => Text::One(data),
            Text::One(first) => {
                let mut joined = Vec::with_capacity(want.max(first.len() + data.len()));
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&data);
                Text::Joined(joined)
            }
            Text::Joined(mut joined) => {
                joined.extend_from_slice(&data);
                Text::Joined(joined)
            }
        };
    }
}

/// `n` bytes of a budget, waiting for them (the connection's clock bounds the wait).
async fn reserve(budget: &Arc<Semaphore>, n: usize) -> Option<OwnedSemaphorePermit> {
    let n = u32::try_from(n.max(1)).ok()?;
    budget.clone().acquire_many_owned(n).await.ok()
}

#[derive(Default)]
struct Metrics {
    requests: AtomicU64,
    injected: AtomicU64,
    skipped: AtomicU64,
    rejected: AtomicU64,
    bad_requests: AtomicU64,
    /// Reviews not decided by their deadline (refused, or 503 when not read yet).
    late: AtomicU64,
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
        s.push_str("# HELP secretdrop_webhook_late_total AdmissionReviews not decided within the webhook's deadline.\n# TYPE secretdrop_webhook_late_total counter\n");
        s.push_str(&format!(
            "secretdrop_webhook_late_total {}\n",
            g(&self.late)
        ));
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

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: &Arc<State>,
    conn: &Conn,
) -> Response<Answer> {
    conn.request_started();
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/healthz") => {
            let _answering = conn.answering();
            reply(StatusCode::OK, "text/plain", "ok\n".into())
        }
        ("GET", "/metrics") => {
            let _answering = conn.answering();
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                state.metrics.prometheus().into(),
            )
        }
        ("POST", "/mutate") => mutate(req, state, conn, false).await,
        ("POST", "/convert-vault-agent") => mutate(req, state, conn, true).await,
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: POST /mutate, POST /convert-vault-agent, GET /healthz, GET /metrics\n"
                .into(),
        ),
    }
}

/// `/mutate`, or with `vault_agent` `/convert-vault-agent` (see [`super::vault_agent`]).
async fn mutate(
    req: Request<hyper::body::Incoming>,
    state: &Arc<State>,
    conn: &Conn,
    vault_agent: bool,
) -> Response<Answer> {
    let started = Instant::now();
    let deadline = started + REVIEW_DEADLINE;
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let declared = req.body().size_hint().exact();
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large(state);
    }
    // Without a Content-Length (chunked), the most it may be.
    let want = declared.map_or(MAX_BODY, |n| n as usize);
    let budget = match want <= SMALL_BODY {
        true => &state.small_bodies,
        false => &state.large_bodies,
    };
    let body_bytes = match timeout_at(deadline, reserve(budget, want)).await {
        Ok(Some(b)) => b,
        Ok(None) => return unavailable(),
        Err(_) => return late(state, None, Waiting::BodyRoom, started),
    };
    let mut text = Text::default();
    let mut shape = Shape::new();
    let mut body = req.into_body();
    let reading = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(bad_request(state, "cannot read the body".into()));
            };
            if let Ok(data) = frame.into_data() {
                if text.len() + data.len() > want {
                    return Err(too_large(state));
                }
                shape.feed(&data);
                text.push(data, want);
            }
        }
        Ok(())
    };
    match timeout_at(deadline, reading).await {
        Ok(Ok(())) => {}
        Ok(Err(refused)) => return refused,
        Err(_) => return late(state, None, Waiting::Body, started),
    }
    drop(body);

    let large = shape.heap() > review::LARGE_HEAP && shape.heap() <= review::MAX_HEAP;
    let review = Arc::new(Review {
        text,
        shape,
        _bytes: body_bytes,
    });
    let reads = state.api.as_ref().map(|_| lookups::Reads::default());
    // The first decision's uid and names: what a refusal at the deadline needs.
    let mut known: Option<review::Answered> = None;
    let (answered, slots) = loop {
        let round = decide(state, conn, &review, large, reads.as_ref(), vault_agent);
        let (answered, slots) = match timeout_at(deadline, round).await {
            Ok(Ok(decided)) => decided,
            Ok(Err(refused)) => return refused,
            Err(_) => return late(state, known.as_ref(), Waiting::Slot, started),
        };
        let missing = reads.as_ref().map(Reads::take_missing).unwrap_or_default();
        let images = reads
            .as_ref()
            .map(Reads::take_missing_images)
            .unwrap_or_default();
        let nothing = missing.is_empty() && images.is_empty();
        let (Some(api), Some(reads), false) = (&state.api, &reads, nothing) else {
            break (answered, slots);
        };
        // Not sent: it was made without some object. Read those, the slots given back.
        let mut answered = answered;
        answered.body = Vec::new();
        drop(slots);
        known.get_or_insert(answered);
        reads.read(api, missing, deadline - DECIDE_TIME).await;
        reads.read_images(api, images, deadline - DECIDE_TIME).await;
    };
    // Decided: the body's budget is given back (by the thread, if it is still running), as
    // are the answers read for it.
    drop((review, reads));
    let answering = conn.answering();
    let reserved = timeout_at(deadline, reserve(&state.answers, answered.body.len())).await;
    let answer_bytes = match reserved {
        Ok(Some(b)) => b,
        Ok(None) => return unavailable(),
        Err(_) => return late(state, Some(&answered), Waiting::AnswerRoom, started),
    };
    drop(slots);
    let r = send(state, answered, Some(answer_bytes), started);
    drop(answering);
    r
}

/// A review's body and its share of the body budget, kept until its last decision is made
/// (and its thread is done with it, if the client left).
struct Review {
    text: Text,
    shape: Shape,
    _bytes: OwnedSemaphorePermit,
}

/// The review slots one decision holds: the large one, if it is large, and a common one.
type Slots = (Option<OwnedSemaphorePermit>, OwnedSemaphorePermit);

/// One decision of `review`, on a blocking thread in a review slot; objects it asks for are
/// answered from `reads` (or, without the Kubernetes API, not at all). `Err`: the response
/// to send instead (not an AdmissionReview, or the webhook is shutting down).
async fn decide(
    state: &Arc<State>,
    conn: &Conn,
    review: &Arc<Review>,
    large: bool,
    reads: Option<&Reads>,
    vault_agent: bool,
) -> Result<(review::Answered, Slots), Response<Answer>> {
    // Large reviews queue for their own slot before taking a common one, so waiting for it
    // never holds a slot small reviews could use.
    let large = match large {
        true => match state.large_review.clone().acquire_owned().await {
            Ok(p) => Some(p),
            Err(_) => return Err(unavailable()),
        },
        false => None,
    };
    let Ok(slot) = state.reviews.clone().acquire_owned().await else {
        return Err(unavailable());
    };
    let _answering = conn.answering();
    let (st, review, reads) = (state.clone(), review.clone(), reads.cloned());
    // The permits travel with the work: a review whose client left still counts until its
    // thread is done with it.
    let work = tokio::task::spawn_blocking(move || {
        let mut defaults = match &reads {
            Some(reads) => reads.defaults(&st.defaults),
            None => st.defaults.clone(),
        };
        defaults.vault_agent = vault_agent;
        let answered =
            review::answer_text(review.text.bytes(), &review.shape, &defaults, MAX_ANSWER);
        drop((defaults, review));
        (answered, (large, slot))
    });
    let Ok((answered, slots)) = work.await else {
        return Err(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "the review failed\n".into(),
        ));
    };
    match answered {
        Ok(a) => Ok((a, slots)),
        Err(e) => Err(bad_request(state, e)),
    }
}

/// Counts, logs and sends an answered review.
fn send(
    state: &State,
    answered: review::Answered,
    lease: Option<OwnedSemaphorePermit>,
    started: Instant,
) -> Response<Answer> {
    let counter = match &answered.outcome {
        Outcome::Injected(_) => &state.metrics.injected,
        Outcome::Skipped(_) => &state.metrics.skipped,
        Outcome::Rejected => &state.metrics.rejected,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    // Only opted-in pods and pods of namespaces labelled for conversion are sent here (the
    // webhook configurations' selectors), so every review is worth a line. The fields are
    // recorded as strings, which the text format quotes and escapes: a pod name or a reason
    // holding a newline cannot forge a log line.
    let a = &answered;
    let (namespace, pod, owner) = (a.namespace.as_str(), a.pod.as_str(), a.owner.as_str());
    let (outcome, detail) = (a.outcome.name(), a.detail.as_str());
    if let Outcome::Injected(_) = a.outcome {
        tracing::info!(
            namespace,
            pod,
            owner,
            outcome,
            mode = detail,
            "admission review"
        );
    } else {
        tracing::info!(
            namespace,
            pod,
            owner,
            outcome,
            reason = detail,
            "admission review"
        );
    }
    state.metrics.observe(started.elapsed().as_secs_f64());
    let mut r = reply(StatusCode::OK, "application/json", answered.body.into());
    r.body_mut().lease = lease;
    r
}

/// What a review not decided by its deadline was waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    BodyRoom,
    Body,
    Slot,
    AnswerRoom,
}

/// The answer to a review not decided by its deadline: a refusal naming the deadline when an
/// earlier decision gave its uid (small, sent without waiting for the answers budget), else
/// 503 (408 for a body that did not arrive), which the API server reports as the webhook
/// failing: with `failurePolicy: Fail` the pod is refused too.
fn late(
    state: &State,
    known: Option<&review::Answered>,
    waiting: Waiting,
    started: Instant,
) -> Response<Answer> {
    state.metrics.late.fetch_add(1, Ordering::Relaxed);
    let deadline = crate::logging::Dur(REVIEW_DEADLINE);
    let (status, message) = match waiting {
        Waiting::Body => (
            StatusCode::REQUEST_TIMEOUT,
            format!("the request's body did not arrive within {deadline}"),
        ),
        _ => {
            let what = match waiting {
                Waiting::BodyRoom => "room for its body: the bodies of other reviews filled it",
                Waiting::Slot => "a review slot or its decision: other reviews kept them busy",
                _ => "room for its answer: other answers were being sent slowly",
            };
            let message = format!(
                "this webhook could not decide within {deadline} of the request, waiting for \
                 {what}; create the pod again, and if this repeats give the webhook more \
                 replicas or CPU"
            );
            (StatusCode::SERVICE_UNAVAILABLE, message)
        }
    };
    if let Some(Ok(refused)) = known.map(|k| k.refused(&message)) {
        return send(state, refused, None, started);
    }
    crate::logging::limited(
        Flood::Late,
        || tracing::warn!(reason = %message, "admission review not decided in time"),
    );
    let mut r = reply(status, "text/plain", format!("{message}\n").into());
    // A body may still be on its way: it is not read.
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

fn bad_request(state: &State, message: String) -> Response<Answer> {
    state.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
    crate::logging::limited(
        Flood::BadReview,
        || tracing::warn!(error = %message, "bad AdmissionReview"),
    );
    reply(
        StatusCode::BAD_REQUEST,
        "text/plain",
        format!("{message}\n").into(),
    )
}

/// 413, closing the connection: the rest of the body is never read.
fn too_large(state: &State) -> Response<Answer> {
    state.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
    crate::logging::limited(Flood::TooLarge, || {
        tracing::warn!(
            limit = MAX_BODY,
            "refused an AdmissionReview larger than the limit"
        )
    });
    let mut r = reply(
        StatusCode::PAYLOAD_TOO_LARGE,
        "text/plain",
        format!("the body is larger than {MAX_BODY} bytes\n").into(),
    );
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

fn unavailable() -> Response<Answer> {
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/plain",
        "busy\n".into(),
    )
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Answer> {
    let mut r = Response::new(Answer {
        rest: body,
        lease: None,
    });
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// A response body handed to hyper in [`ANSWER_PIECE`] copies (an answer of at most one piece,
/// which is every ordinary one, without a copy); it holds its share of the
/// [`ANSWERS`] budget until hyper has taken the last piece and dropped it.
pub struct Answer {
    rest: Bytes,
    lease: Option<OwnedSemaphorePermit>,
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.rest.is_empty() {
            return Poll::Ready(None);
        }
        // An answer of one piece goes as it is: the piece hyper may still queue is then the
        // whole answer, no larger than a copied piece would be.
        let piece = match this.rest.len() <= ANSWER_PIECE {
            true => std::mem::take(&mut this.rest),
            false => {
                let piece = Bytes::copy_from_slice(&this.rest[..ANSWER_PIECE]);
                this.rest = this.rest.slice(ANSWER_PIECE..);
                piece
            }
        };
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}
