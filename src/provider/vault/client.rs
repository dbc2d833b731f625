//! The Vault / OpenBao HTTP client: one request at a time, classified into success, a refusal
//! worth reporting at once, or a transient failure worth retrying.
//!
//! Invariants: tokens travel only in the `X-Vault-Token` header and never appear in errors;
//! every request is bounded by a timeout, so nothing here can hang; errors carry the method and
//! API path, never a request or response body.
//!
//! A hostile or misconfigured server is expected (see docs/security-model.md): requests only
//! ever go to the configured origin (scheme, host, port) under `/v1/`; a redirect is followed at
//! most once and only within that origin, so a token, a JWT or a secret-bearing body never
//! reaches another host and https is never downgraded; answers are read in chunks up to a byte
//! limit; every duration Vault sends is clamped to [`MAX_NETWORK_DURATION`].
//!
//! A redirect that is not followed comes back as [`CallError::Redirected`] with its
//! [`RedirectKind`]: one to another host or port of the same scheme is what an HA standby
//! answers while it cannot forward to the active node (during an election, for a few seconds),
//! so the caller may retry it (`fetch.rs` decides for how long); a change of scheme or a second
//! redirect is never an election's answer.

use std::fmt;
use std::time::Duration;

use super::spec::VaultSettings;
use crate::net::http::{BodyError, Failure};
use crate::secret::SecretString;

pub use super::tls::TlsSetupError;

/// The longest a single request may take, whatever the caller's deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read by default: a KV entry is at most about 1 MiB in Vault's own storage, and
/// several reads run at once inside a container limited to a few tens of MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Error answers are only read for their message.
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// The longest lease, TTL or `Retry-After` believed from the network: a year. Longer values
/// (up to `u64::MAX` seconds from a hostile server) would overflow clock arithmetic.
pub const MAX_NETWORK_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration in seconds from a Vault answer: a non-negative integer (or a float, as some
/// endpoints send), clamped to [`MAX_NETWORK_DURATION`]; anything else is zero.
pub fn network_secs(v: Option<&serde_json::Value>) -> Duration {
    let secs = match v {
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .unwrap_or(0),
        _ => 0,
    };
    Duration::from_secs(secs).min(MAX_NETWORK_DURATION)
}

/// What the operator allows, whatever the config file says (flags of `init` and `sidecar`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientPolicy {
    /// When non-empty, the only Vault addresses a config may name (`--allowed-vault-address`);
    /// the webhook pins an injected container to the address it admitted this way.
    pub allowed_addresses: Vec<String>,
    /// Largest answer read (`--max-response-size`); `None` is [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub max_response_bytes: Option<usize>,
}

impl ClientPolicy {
    /// `Err` naming the address and the allowed ones when `address` is not on the list.
    pub fn check_address(&self, address: &str) -> Result<(), String> {
        if self.allowed_addresses.is_empty() || is_allowed(&self.allowed_addresses, address) {
            return Ok(());
        }
        Err(format!(
            "Vault address {address} is not allowed here: the allowed addresses are {} \
             (--allowed-vault-address, set by the operator or the webhook that admitted this pod)",
            self.allowed_addresses.join(", ")
        ))
    }
}

/// Whether `address` has the origin of one of `allowed` (an address that does not parse has
/// none). Shared by the client's pin and the webhook's admission check.
pub fn is_allowed(allowed: &[String], address: &str) -> bool {
    let want = origin_of(address);
    want.is_some() && allowed.iter().any(|a| origin_of(a) == want)
}

/// Scheme, host and port of a URL, with default ports made explicit; `None` if it does not parse.
pub fn origin_of(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    Some(origin(&u))
}

fn origin(u: &reqwest::Url) -> String {
    format!(
        "{}://{}:{}",
        u.scheme(),
        u.host_str().unwrap_or(""),
        u.port_or_known_default().unwrap_or(0)
    )
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    address: String,
    /// `scheme://host:port` of `address`: the only origin requests may reach.
    origin: String,
    /// `<address's path>/v1/`: every request's path must start with it once parsed.
    api_prefix: String,
    namespace: Option<String>,
    max_response_bytes: usize,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// A JSON answer from Vault. Its `Debug` is redacted: responses hold secret values.
#[derive(Clone, PartialEq)]
pub struct Response(
    pub serde_json::Value,
    /// The answer as Vault sent it, kept when asked ([`Client::call_keeping`]): a Go template
    /// prints numbers as their literal text.
    pub Option<std::sync::Arc<crate::secret::SecretBytes>>,
);

impl Response {
    /// Whether two answers to the same read carry the same content: everything but
    /// `request_id`, which Vault makes new for every request. Equal answers render equal files
    /// (a whole-response object keeps the request id of the last answer that changed).
    pub fn same_content(&self, other: &Response) -> bool {
        match (&self.0, &other.0) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                let fields = |m: &'_ serde_json::Map<String, serde_json::Value>| {
                    m.iter().filter(|(k, _)| k.as_str() != "request_id").count()
                };
                fields(a) == fields(b)
                    && a.iter()
                        .filter(|(k, _)| k.as_str() != "request_id")
                        .all(|(k, v)| b.get(k) == Some(v))
            }
            (a, b) => a == b,
        }
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Response(<redacted>)")
    }
}

/// What a redirect that was not followed pointed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    /// The first redirect, to another host or port with the same scheme: what a standby answers
    /// (`307` to the active node's `api_addr`) while it cannot forward the request, as during
    /// an election. Retrying can succeed; following it never happens.
    AnotherNode,
    /// To another scheme (https to http or the reverse), a second redirect, or a `Location`
    /// that does not parse: no standby answers so, and retrying will not change it.
    Refused,
}

/// Why one request failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// A redirect elsewhere than the configured origin (or a second one): not followed, since
    /// it would carry the token or credentials there.
    Redirected {
        from: String,
        to: String,
        kind: RedirectKind,
    },
    /// Connection refused/reset, timeout, 5xx, 429, sealed or standby: try again later.
    Transient {
        cause: String,
        retry_after: Option<Duration>,
    },
    /// Vault answered 4xx (not 429): retrying will not change its mind.
    Refused { status: u16, message: String },
    /// The server's certificate did not verify: retrying will not help either.
    Tls { cause: String },
    /// A 2xx answer that is not the JSON Vault sends.
    Invalid { cause: String },
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Transient { cause, .. } => write!(f, "{cause}"),
            CallError::Refused { status, message } => {
                write!(f, "Vault answered {status}: {message}")
            }
            CallError::Tls { cause } => write!(f, "TLS: {cause}"),
            // No advice here: whether this is an election or a misconfiguration depends on how
            // long it lasts, which only the caller knows (fetch.rs adds it to a redirect that
            // persists).
            CallError::Redirected {
                from,
                to,
                kind: RedirectKind::AnotherNode,
            } => write!(
                f,
                "Vault at {from} redirected to {to}, another host or port: not followed \
                 (secretdrop sends tokens and credentials only to the configured address; a \
                 standby answers so while it cannot forward to the active node)"
            ),
            CallError::Redirected {
                from,
                to,
                kind: RedirectKind::Refused,
            } => write!(
                f,
                "Vault at {from} redirected to {to}, which is not the configured address \
                 (another scheme, or a second redirect): not followed (secretdrop sends tokens \
                 and credentials only to the configured address)"
            ),
            CallError::Invalid { cause } => write!(f, "unexpected answer: {cause}"),
        }
    }
}

impl Client {
    pub fn new(settings: &VaultSettings, policy: &ClientPolicy) -> Result<Client, TlsSetupError> {
        // reqwest builds a TLS context even for http:// clients; it needs a process-wide provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = reqwest::Url::parse(&settings.address).map_err(|e| TlsSetupError {
            what: "Vault address",
            path: settings.address.clone().into(),
            // The static build carries no Unicode tables for host names (Cargo.toml, idna_adapter).
            message: match settings.address.is_ascii() {
                true => format!("is not a URL ({e})"),
                false => format!(
                    "is not a URL ({e}): host names must be ASCII; write an internationalised \
                     name in its xn-- form"
                ),
            },
        })?;
        let home = origin(&base);
        let origin_text = home.clone();
        // One redirect, within the configured origin (a path moved on the same server). Anything
        // else stops here and comes back as a 3xx that `call` turns into an error.
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > 1 || origin(attempt.url()) != home {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let mut builder = crate::net::http::builder(Duration::from_secs(10), redirects);
        if settings.address.starts_with("https://") {
            builder = builder.use_preconfigured_tls(super::tls::client_config(&settings.tls)?);
        }
        let http = builder.build().map_err(|e| TlsSetupError {
            what: "HTTP client",
            path: "-".into(),
            message: e.to_string(),
        })?;
        Ok(Client {
            http,
            address: settings.address.clone(),
            origin: origin_text,
            api_prefix: format!("{}/v1/", base.path().trim_end_matches('/')),
            namespace: settings.namespace.clone(),
            max_response_bytes: policy
                .max_response_bytes
                .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
        })
    }

    /// `<address>/v1/<path>`, refused unless it stays on our origin and under `/v1/` once the
    /// URL parser has resolved dot segments and escapes.
    fn url(&self, path: &str) -> Result<reqwest::Url, CallError> {
        let text = format!("{}/v1/{}", self.address, path.trim_start_matches('/'));
        let bad = || CallError::Invalid {
            cause: format!(
                "the API path {path:?} does not stay under /v1/ on {}",
                self.address
            ),
        };
        let url = reqwest::Url::parse(&text).map_err(|_| bad())?;
        if origin(&url) != self.origin || !url.path().starts_with(&self.api_prefix) {
            return Err(bad());
        }
        Ok(url)
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Where requests go, for messages: the address, and the Vault namespace when one is set
    /// (a login refused in the wrong namespace looks like any other 403).
    pub fn place(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} (Vault namespace {ns})", self.address),
            None => self.address.clone(),
        }
    }

    /// One request to `/v1/<path>`. `timeout` bounds this attempt (capped at 30 s).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&SecretString>,
        body: Option<&str>,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        self.call_keeping(method, path, token, body, timeout, false)
            .await
    }

    /// [`Client::call`], the answer's bytes kept in the [`Response`] when `keep`.
    pub async fn call_keeping(
        &self,
        method: &str,
        path: &str,
        token: Option<&SecretString>,
        body: Option<&str>,
        timeout: Duration,
        keep: bool,
    ) -> Result<Response, CallError> {
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| CallError::Invalid {
                cause: format!("bad HTTP method {method:?}"),
            })?;
        let url = self.url(path)?;
        let requested = url.clone();
        let mut req = self
            .http
            .request(method, url)
            .timeout(timeout.min(REQUEST_TIMEOUT).max(Duration::from_millis(1)))
            .header("X-Vault-Request", "true");
        if let Some(t) = token {
            let mut value = reqwest::header::HeaderValue::from_str(t.expose()).map_err(|_| {
                CallError::Invalid {
                    cause: "the Vault token contains characters not allowed in a header".into(),
                }
            })?;
            value.set_sensitive(true);
            req = req.header("X-Vault-Token", value);
        }
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                // Login bodies hold credentials: the copy handed to the HTTP stack is zeroed
                // once sent, whatever the body.
                .body(crate::secret::zeroizing_bytes(b.as_bytes()));
        }
        let mut resp = req.send().await.map_err(classify_send_error)?;
        let status = resp.status().as_u16();
        if resp.status().is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| resp.url().join(l).ok());
            let kind = redirect_kind(&requested, resp.url(), location.as_ref());
            let to = location.map_or_else(|| "an unreadable Location".to_string(), String::from);
            return Err(CallError::Redirected {
                from: resp.url().to_string(),
                to: to.chars().take(256).collect(),
                kind,
            });
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_NETWORK_DURATION));
        let limit = if (200..300).contains(&status) {
            self.max_response_bytes
        } else {
            MAX_ERROR_BYTES
        };
        // The raw answer holds secret values: zeroed once parsed.
        let bytes = read_bounded(&mut resp, limit).await?;
        if (200..300).contains(&status) {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Response(serde_json::Value::Null, None));
            }
            let raw =
                keep.then(|| std::sync::Arc::new(crate::secret::SecretBytes::new(bytes.to_vec())));
            return serde_json::from_slice(&bytes)
                .map(|v| Response(v, raw))
                .map_err(|e| CallError::Invalid {
                    cause: format!("HTTP {status} with a body that is not JSON ({e})"),
                });
        }
        Err(classify_status(status, error_message(&bytes), retry_after))
    }
}

/// An error answer (not 2xx, not a redirect): 429 and 5xx are transient, among them the
/// sealed node's 503 and a standby's `500 local node not active but active cluster node not
/// found` between an active node's death and its successor's election; other 4xx are
/// refusals.
fn classify_status(status: u16, message: String, retry_after: Option<Duration>) -> CallError {
    if status == 429 || status >= 500 {
        let what = match status {
            429 => "rate limited (429)".to_string(),
            503 if message.contains("sealed") => "Vault is sealed (503)".to_string(),
            s => format!("HTTP {s}"),
        };
        return CallError::Transient {
            cause: format!("{what}: {message}"),
            retry_after,
        };
    }
    CallError::Refused { status, message }
}

/// What a redirect that the policy did not follow points at. `requested` is the URL asked for,
/// `answered` the one that answered with the redirect (they differ when one same-origin hop was
/// followed already), `location` the redirect's target resolved against `answered`.
fn redirect_kind(
    requested: &reqwest::Url,
    answered: &reqwest::Url,
    location: Option<&reqwest::Url>,
) -> RedirectKind {
    match location {
        Some(to)
            if answered == requested
                && to.scheme() == requested.scheme()
                && origin(to) != origin(requested) =>
        {
            RedirectKind::AnotherNode
        }
        _ => RedirectKind::Refused,
    }
}

/// The body within `limit` bytes (`--max-response-size` for successful answers).
async fn read_bounded(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<zeroize::Zeroizing<Vec<u8>>, CallError> {
    crate::net::http::read_bounded(resp, limit)
        .await
        .map_err(|e| match e {
            BodyError::TooBig => CallError::Invalid {
                cause: format!(
                    "the answer is larger than {limit} bytes (--max-response-size); nothing was kept"
                ),
            },
            BodyError::Transport(e) => classify_send_error(e),
        })
}

/// Vault's `{"errors": [...]}` joined, or a placeholder. Bodies of errors carry no secret values.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let errors: Vec<String> = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|e| e.as_str()).flat_map(tidy).collect())
        .unwrap_or_default();
    if errors.is_empty() {
        "no error message".to_string()
    } else {
        // Vault's words, or whatever answers on its address: escaped and capped.
        crate::net::http::network_text(&errors.join("; "), crate::net::http::MAX_NETWORK_TEXT)
    }
}

/// Vault wraps messages as "1 error occurred:\n\t* permission denied\n\n"; keep the items.
fn tidy(message: &str) -> Vec<String> {
    message
        .lines()
        .map(|l| l.trim().trim_start_matches("* ").trim())
        .filter(|l| !(l.is_empty() || l.ends_with("occurred:") && l.contains("error")))
        .map(str::to_string)
        .collect()
}

/// Connection-level failures are transient, except certificate verification failures.
fn classify_send_error(err: reqwest::Error) -> CallError {
    // The top error only says "error sending request for url (...)": callers name the URL.
    let Failure { cause, tls } = crate::net::http::failure(&err, true);
    if tls {
        CallError::Tls { cause }
    } else {
        CallError::Transient {
            cause,
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_differing_only_in_request_id_have_the_same_content() {
        let a = Response(
            serde_json::json!({"request_id": "1", "data": {"data": {"k": "v"}}}),
            None,
        );
        let b = Response(
            serde_json::json!({"request_id": "2", "data": {"data": {"k": "v"}}}),
            None,
        );
        let c = Response(
            serde_json::json!({"request_id": "2", "data": {"data": {"k": "w"}}}),
            None,
        );
        let d = Response(
            serde_json::json!({"data": {"data": {"k": "v"}}, "lease_id": "x"}),
            None,
        );
        assert!(a.same_content(&b));
        assert!(!a.same_content(&c));
        assert!(!a.same_content(&d));
    }

    #[test]
    fn an_election_answers_as_a_transient_failure() {
        // What a standby answers once the active node is gone and before a new one is elected.
        let c = classify_status(
            500,
            error_message(
                br#"{"errors":["local node not active but active cluster node not found"]}"#,
            ),
            None,
        );
        assert!(
            matches!(&c, CallError::Transient { cause, .. } if cause.contains("local node not active")),
            "{c:?}"
        );
        let sealed = classify_status(503, "Vault is sealed".into(), None);
        assert!(
            matches!(&sealed, CallError::Transient { cause, .. } if cause.starts_with("Vault is sealed (503)"))
        );
        let limited = classify_status(429, "x".into(), Some(Duration::from_secs(2)));
        assert!(matches!(
            limited,
            CallError::Transient {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            classify_status(403, "permission denied".into(), None),
            CallError::Refused { status: 403, .. }
        ));
    }

    #[test]
    fn a_standby_redirect_is_told_apart_from_a_refused_one() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let asked = url("http://vault:8200/v1/auth/token/renew-self");
        // A standby's 307 to the active node's api_addr: same scheme, another host or port.
        let active = url("http://10.0.0.7:8200/v1/auth/token/renew-self");
        assert_eq!(
            redirect_kind(&asked, &asked, Some(&active)),
            RedirectKind::AnotherNode
        );
        let other_port = url("http://vault:8201/v1/auth/token/renew-self");
        assert_eq!(
            redirect_kind(&asked, &asked, Some(&other_port)),
            RedirectKind::AnotherNode
        );
        // A scheme change, either way, is never a standby's answer.
        let https = url("https://vault:8200/v1/x");
        let http = url("http://10.0.0.7:8200/v1/x");
        assert_eq!(
            redirect_kind(&asked, &asked, Some(&url("https://10.0.0.7:8200/v1/x"))),
            RedirectKind::Refused
        );
        assert_eq!(
            redirect_kind(&https, &https, Some(&http)),
            RedirectKind::Refused
        );
        // A second redirect (one same-origin hop was followed), or no readable Location.
        let moved = url("http://vault:8200/v1/moved");
        assert_eq!(
            redirect_kind(&asked, &moved, Some(&active)),
            RedirectKind::Refused
        );
        assert_eq!(redirect_kind(&asked, &asked, None), RedirectKind::Refused);
    }

    #[test]
    fn vault_error_lists_are_flattened() {
        let body = br#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#;
        assert_eq!(error_message(body), "permission denied");
        assert_eq!(error_message(br#"{"errors":["a","b"]}"#), "a; b");
        assert_eq!(error_message(b"<html>"), "no error message");
    }
}
