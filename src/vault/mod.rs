//! The Vault / OpenBao HTTP client: one request at a time, classified into success, a refusal
//! worth reporting at once, or a transient failure worth retrying.
//!
//! Invariants: tokens travel only in the `X-Vault-Token` header and never appear in errors;
//! every request is bounded by a timeout, so nothing here can hang; errors carry the method and
//! API path, never a request or response body.

pub mod auth;
pub mod tls;

use std::fmt;
use std::time::Duration;

use crate::config::VaultSettings;
use crate::secret::SecretString;

pub use tls::TlsSetupError;

/// The longest a single request may take, whatever the caller's deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    address: String,
    namespace: Option<String>,
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
pub struct Response(pub serde_json::Value);

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Response(<redacted>)")
    }
}

/// Why one request failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
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
            CallError::Invalid { cause } => write!(f, "unexpected answer: {cause}"),
        }
    }
}

impl Client {
    pub fn new(settings: &VaultSettings) -> Result<Client, TlsSetupError> {
        // reqwest builds a TLS context even for http:// clients; it needs a process-wide provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("secretdrop/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if settings.address.starts_with("https://") {
            builder = builder.use_preconfigured_tls(tls::client_config(&settings.tls)?);
        }
        let http = builder.build().map_err(|e| TlsSetupError {
            what: "HTTP client",
            path: "-".into(),
            message: e.to_string(),
        })?;
        Ok(Client {
            http,
            address: settings.address.clone(),
            namespace: settings.namespace.clone(),
        })
    }

    pub fn address(&self) -> &str {
        &self.address
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
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| CallError::Invalid {
                cause: format!("bad HTTP method {method:?}"),
            })?;
        let url = format!("{}/v1/{}", self.address, path.trim_start_matches('/'));
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
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(classify_send_error)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.bytes().await.map_err(classify_send_error)?;
        if (200..300).contains(&status) {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Response(serde_json::Value::Null));
            }
            return serde_json::from_slice(&bytes)
                .map(Response)
                .map_err(|e| CallError::Invalid {
                    cause: format!("HTTP {status} with a body that is not JSON ({e})"),
                });
        }
        let message = error_message(&bytes);
        if status == 429 || status >= 500 {
            let what = match status {
                429 => "rate limited (429)".to_string(),
                503 if message.contains("sealed") => "Vault is sealed (503)".to_string(),
                s => format!("HTTP {s}"),
            };
            return Err(CallError::Transient {
                cause: format!("{what}: {message}"),
                retry_after,
            });
        }
        Err(CallError::Refused { status, message })
    }
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
        errors.join("; ")
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
    let mut cause = String::new();
    // The top error only says "error sending request for url (...)": callers name the URL.
    let top: &(dyn std::error::Error + 'static) = &err;
    let mut source = top.source().or(Some(top));
    let mut tls = false;
    while let Some(e) = source {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            tls = tls || is_cert_error(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                tls = tls || is_cert_error(r);
            }
        }
        let text = e.to_string();
        // rustls errors can sit inside io::Error layers that hide them from `source()`; their
        // text is stable (`invalid peer certificate: ...`).
        // A fatal alert during the handshake (e.g. the server wants a client certificate) is
        // no more transient than a certificate that does not verify.
        tls = tls
            || [
                "invalid peer certificate",
                "peer sent no certificates",
                "received fatal alert",
            ]
            .iter()
            .any(|m| text.contains(m));
        if !cause.contains(&text) {
            if !cause.is_empty() {
                cause.push_str(": ");
            }
            cause.push_str(&text);
        }
        source = e.source();
    }
    if err.is_timeout() && !cause.contains("timed out") {
        cause.push_str(" (timed out)");
    }
    if tls {
        CallError::Tls { cause }
    } else {
        CallError::Transient {
            cause,
            retry_after: None,
        }
    }
}

fn is_cert_error(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_error_lists_are_flattened() {
        let body = br#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#;
        assert_eq!(error_message(body), "permission denied");
        assert_eq!(error_message(br#"{"errors":["a","b"]}"#), "a; b");
        assert_eq!(error_message(b"<html>"), "no error message");
    }
}
