//! The Key Vault data plane (docs/azure.md, "Key Vault"): GET of a secret, key or
//! certificate version, and the version lists with their `nextLink` paging.
//!
//! Invariants: the access token is sent at once (the cloud is known, so the 401 challenge the
//! SDKs use to learn it is not needed) and only to the vault's own origin: a redirect is an
//! error, never followed, and a `nextLink` to another origin or path is refused before
//! anything is sent; every answer is bounded in bytes ([`MAX_ANSWER_BYTES`]) and time, every
//! listing in pages and items; throttling and 5xx are retried until the deadline, honouring
//! `Retry-After`; a 401 drops the held token and is retried once with a new one; errors carry
//! Key Vault's code and message, sanitized, never the token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::net::cloud::{Call, Http, HttpError, MAX_ANSWER_BYTES};
use crate::net::http::{network_text, MAX_NETWORK_TEXT};
use crate::retry::Backoff;

use super::auth::Tokens;
use super::spec::ObjectType;

/// The REST API version sent with every request.
pub const API_VERSION: &str = "7.4";
/// Pages of one version list at most (25 versions a page).
const MAX_PAGES: usize = 200;
/// Versions of one object at most.
const MAX_VERSIONS: usize = 5000;
/// One attempt never takes longer than this.
const ATTEMPT: Duration = Duration::from_secs(30);

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvError {
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
    pub transient: bool,
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s} {}: {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

impl KvError {
    fn local(code: &str, message: String, transient: bool) -> KvError {
        KvError {
            status: None,
            code: code.into(),
            message,
            transient,
        }
    }
}

/// One vault: its origin, the HTTP client and the token source.
pub struct Vault {
    pub base: reqwest::Url,
    http: Http,
    pub tokens: Tokens,
    pub requests: AtomicU64,
}

/// One entry of a version list.
#[derive(Debug, Clone)]
pub struct VersionItem {
    pub version: String,
    pub enabled: bool,
    pub created: i64,
}

impl Vault {
    pub fn new(base: reqwest::Url, http: Http, tokens: Tokens) -> Vault {
        Vault {
            base,
            http,
            tokens,
            requests: AtomicU64::new(0),
        }
    }

    /// `GET /{collection}/{name}/{version}` (current version when `None`).
    pub async fn object(
        &self,
        kind: ObjectType,
        name: &str,
        version: Option<&str>,
        deadline: Instant,
    ) -> Result<serde_json::Value, KvError> {
        let mut url = self.base.clone();
        url.set_path(&format!(
            "/{}/{name}/{}",
            kind.collection(),
            version.unwrap_or("")
        ));
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION);
        self.get(url, deadline).await
    }

    /// Every version of an object, following `nextLink` within the vault's origin.
    pub async fn versions(
        &self,
        kind: ObjectType,
        name: &str,
        deadline: Instant,
    ) -> Result<Vec<VersionItem>, KvError> {
        let path = format!("/{}/{name}/versions", kind.collection());
        let mut url = self.base.clone();
        url.set_path(&path);
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION)
            .append_pair("maxresults", "25");
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let page = self.get(url.clone(), deadline).await?;
            let list = page
                .get("value")
                .and_then(|v| v.as_array())
                .ok_or_else(|| invalid("the version list has no value array"))?;
            for item in list {
                let id = item
                    .get(if kind == ObjectType::Key { "kid" } else { "id" })
                    .and_then(|i| i.as_str())
                    .ok_or_else(|| invalid("a version list item has no id"))?;
                let attributes = item.get("attributes");
                items.push(VersionItem {
                    version: version_of(id).ok_or_else(|| invalid("a version id is malformed"))?,
                    enabled: attributes
                        .and_then(|a| a.get("enabled"))
                        .and_then(|e| e.as_bool())
                        .unwrap_or(true),
                    created: attributes
                        .and_then(|a| a.get("created"))
                        .and_then(|c| c.as_i64())
                        .unwrap_or(0),
                });
                if items.len() > MAX_VERSIONS {
                    return Err(invalid(&format!(
                        "the object has more than {MAX_VERSIONS} versions"
                    )));
                }
            }
            match page.get("nextLink") {
                None | Some(serde_json::Value::Null) => return Ok(items),
                Some(serde_json::Value::String(s)) if s.is_empty() => return Ok(items),
                Some(serde_json::Value::String(next)) => {
                    url = self.same_origin(next, &path)?;
                }
                Some(_) => return Err(invalid("nextLink is not a string")),
            }
        }
        Err(invalid(&format!(
            "the version list goes on past {MAX_PAGES} pages"
        )))
    }

    /// A `nextLink` the token may follow: https, the vault's host and port 443, the same
    /// list's path.
    fn same_origin(&self, next: &str, path: &str) -> Result<reqwest::Url, KvError> {
        let refuse = || KvError {
            status: Some(200),
            code: "ForeignNextLink".into(),
            message: format!(
                "the version list's nextLink {} is not on {}{path}; the token is not sent there",
                network_text(next, 200),
                self.base.origin().ascii_serialization()
            ),
            transient: false,
        };
        let url = reqwest::Url::parse(next).map_err(|_| refuse())?;
        if url.origin() != self.base.origin()
            || url.path().trim_end_matches('/') != path
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(refuse());
        }
        Ok(url)
    }

    async fn get(
        &self,
        url: reqwest::Url,
        deadline: Instant,
    ) -> Result<serde_json::Value, KvError> {
        let mut backoff = Backoff::default();
        let mut renewed = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let result = self.attempt(&url, left.min(ATTEMPT)).await;
            let (err, retry_after) = match result {
                Ok(v) => return Ok(v),
                Err((e, _)) if e.status == Some(401) && !renewed => {
                    // A token Key Vault no longer takes: one more try with a new one.
                    renewed = true;
                    self.tokens.forget().await;
                    tracing::debug!(error = %e, "Key Vault refused the token; exchanging anew");
                    continue;
                }
                Err((e, _)) if !e.transient => return Err(e),
                Err((e, ra)) => (e, ra),
            };
            match backoff.delay_before(deadline, retry_after) {
                Some(d) => {
                    tracing::debug!(error = %err, delay = ?d, "Key Vault request failed; retrying");
                    tokio::time::sleep(d).await;
                }
                None => return Err(err),
            }
        }
    }

    async fn attempt(
        &self,
        url: &reqwest::Url,
        timeout: Duration,
    ) -> Result<serde_json::Value, (KvError, Option<Duration>)> {
        let token = self.tokens.get(timeout).await.map_err(|e| {
            (
                KvError {
                    status: None,
                    code: "Token".into(),
                    message: e.message.clone(),
                    transient: e.transient,
                },
                None,
            )
        })?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let headers = vec![
            (
                "Authorization".to_string(),
                format!("Bearer {}", token.token.expose()),
            ),
            ("Accept".to_string(), "application/json".to_string()),
        ];
        let answer = self
            .http
            .send(
                Call {
                    method: reqwest::Method::GET,
                    url: url.clone(),
                    headers: &headers,
                    sensitive: &["Authorization"],
                    body: Vec::new(),
                    limit: MAX_ANSWER_BYTES,
                },
                timeout,
            )
            .await
            .map_err(|e| {
                (
                    match e {
                        HttpError::Transport(m) => KvError::local("Unavailable", m, true),
                        other => KvError::local("InvalidAnswer", other.to_string(), false),
                    },
                    None,
                )
            })?;
        if answer.status == 200 {
            return serde_json::from_slice(&answer.body)
                .map_err(|_| (invalid("the answer is not JSON"), None));
        }
        if (300..400).contains(&answer.status) {
            return Err((
                KvError {
                    status: Some(answer.status),
                    code: "Redirect".into(),
                    message: "Key Vault does not redirect; the redirect was not followed (the \
                              token goes only to the vault)"
                        .into(),
                    transient: false,
                },
                None,
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let error = v.get("error");
        let text = |k: &str| error.and_then(|e| e.get(k)).and_then(|c| c.as_str());
        let mut code = text("code").unwrap_or("no error code").to_string();
        if let Some(inner) = error
            .and_then(|e| e.get("innererror"))
            .and_then(|i| i.get("code"))
            .and_then(|c| c.as_str())
        {
            code = format!("{code} ({inner})");
        }
        let transient = answer.status == 429 || answer.status >= 500;
        Err((
            KvError {
                status: Some(answer.status),
                code: network_text(&code, 100),
                message: network_text(text("message").unwrap_or(""), MAX_NETWORK_TEXT),
                transient,
            },
            answer.retry_after,
        ))
    }
}

fn invalid(message: &str) -> KvError {
    KvError {
        status: Some(200),
        code: "InvalidAnswer".into(),
        message: message.into(),
        transient: false,
    }
}

/// The version of an object id (`https://v.vault.azure.net/secrets/NAME/VERSION`): its last
/// path segment.
pub fn version_of(id: &str) -> Option<String> {
    let v = id.trim_end_matches('/').rsplit('/').next()?;
    (!v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_the_last_segment_of_ids() {
        assert_eq!(
            version_of("https://kv.vault.azure.net/secrets/s1/0a1b2c").as_deref(),
            Some("0a1b2c")
        );
        assert_eq!(
            version_of("https://kv.vault.azure.net/secrets/s1/../x/"),
            Some("x".into())
        );
        assert_eq!(version_of("https://kv/secrets/s1/a%2Fb"), None);
    }
}
