//! The HTTP client of the cloud providers (AWS: STS, Secrets Manager, SSM, the Pod Identity
//! agent; Azure: Entra ID, Key Vault, IMDS; GCP: STS, iamCredentials, the metadata server,
//! Secret Manager). Never follows a redirect (a signed request or a token must not travel
//! elsewhere), bounds every attempt in time and every answer in bytes, and keeps no proxy
//! settings.

use std::time::Duration;

use zeroize::Zeroizing;

use crate::net::http::{BodyError, Failure};

/// The longest one attempt may take, whatever the caller's deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers larger than this are refused unread: a Secrets Manager value is at most 64 KiB
/// (base64 of SecretBinary a third more), ten SSM advanced parameters 80 KiB.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Error answers are only read for their code and message.
const MAX_ERROR_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

/// One request: where, what, and the largest successful answer to accept.
pub struct Call<'a> {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    pub headers: &'a [(String, String)],
    /// Header names whose values are credentials (kept out of HTTP-layer logs).
    pub sensitive: &'a [&'a str],
    pub body: Vec<u8>,
    pub limit: usize,
}

/// A complete answer: status and body (zeroed on drop: bodies hold secrets and credentials).
pub struct Answer {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
    /// `Retry-After` in seconds, when the server sent one (throttling).
    pub retry_after: Option<Duration>,
}

/// Why no answer came: always worth another attempt, except a failed certificate check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    Transport(String),
    TooBig(usize),
    Tls(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Transport(c) => write!(f, "{c}"),
            HttpError::TooBig(n) => {
                write!(f, "the answer is larger than {n} bytes; nothing was kept")
            }
            HttpError::Tls(c) => write!(f, "TLS: {c}"),
        }
    }
}

impl Http {
    pub fn new(ca_bundle: Option<&std::path::Path>) -> Result<Http, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = crate::provider::vault::spec::TlsSettings {
            ca_cert: ca_bundle.map(|p| p.to_path_buf()),
            ..Default::default()
        };
        let config = crate::provider::vault::tls::client_config(&tls).map_err(|e| e.to_string())?;
        let client =
            crate::net::http::builder(Duration::from_secs(10), reqwest::redirect::Policy::none())
                .use_preconfigured_tls(config)
                .build()
                .map_err(|e| e.to_string())?;
        Ok(Http { client })
    }

    /// One attempt of `call`, bounded by `timeout` (capped at 30 s).
    pub async fn send(&self, call: Call<'_>, timeout: Duration) -> Result<Answer, HttpError> {
        let mut req = self
            .client
            .request(call.method, call.url)
            .timeout(timeout.min(REQUEST_TIMEOUT).max(Duration::from_millis(1)));
        for (name, value) in call.headers {
            let mut v = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                HttpError::Transport(format!(
                    "header {name} holds characters not allowed in a header"
                ))
            })?;
            if call.sensitive.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                v.set_sensitive(true);
            }
            req = req.header(name.as_str(), v);
        }
        if !call.body.is_empty() {
            // The body may hold a token: the copy handed to the HTTP stack is zeroed once sent.
            let body = Zeroizing::new(call.body);
            req = req.body(crate::secret::zeroizing_bytes(&body));
        }
        let limit = call.limit;
        let mut resp = req.send().await.map_err(classify)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let limit = if (200..300).contains(&status) {
            limit
        } else {
            MAX_ERROR_BYTES
        };
        let body = crate::net::http::read_bounded(&mut resp, limit)
            .await
            .map_err(|e| match e {
                BodyError::TooBig => HttpError::TooBig(limit),
                BodyError::Transport(e) => classify(e),
            })?;
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }
}

/// The whole error chain: the top error names the URL, which callers do not.
fn classify(err: reqwest::Error) -> HttpError {
    let Failure { cause, tls } = crate::net::http::failure(&err, false);
    if tls {
        HttpError::Tls(cause)
    } else {
        HttpError::Transport(cause)
    }
}

/// `host` or `host:port` as the `Host` header (and SigV4's `host`) spell it.
pub fn host_header(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}
