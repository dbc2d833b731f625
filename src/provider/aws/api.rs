//! One signed call to an AWS JSON API (Secrets Manager, SSM): `POST /` with `X-Amz-Target`,
//! SigV4 over the body, the answer classified into a value, a refusal (4xx: fail at once, no
//! failover) or a transient failure (network, 5xx, throttling: retry, then fail over).
//!
//! Invariants: requests only go to the configured endpoint (no redirects); error messages
//! carry AWS's error code and message (which name the role and resource, never a value) and
//! never a request or answer body.

use std::time::{Duration, SystemTime};

use crate::net::http::{network_text, MAX_NETWORK_TEXT};

use super::credentials::Credentials;
use super::sigv4::{self, Scope};
use crate::net::cloud::{host_header, Call, Http, HttpError, MAX_ANSWER_BYTES};

/// A JSON API: its signing name, target prefix and endpoint in each region it is used in.
#[derive(Debug, Clone)]
pub struct Api {
    /// SigV4 service name: `secretsmanager` or `ssm`.
    pub signing_name: &'static str,
    /// `X-Amz-Target` prefix: `secretsmanager` or `AmazonSSM`.
    pub target_prefix: &'static str,
    /// (region, endpoint): the regional endpoint, or the same override for every region.
    pub endpoints: Vec<(String, reqwest::Url)>,
}

impl Api {
    pub fn endpoint(&self, region: &str) -> Option<&reqwest::Url> {
        self.endpoints
            .iter()
            .find(|(r, _)| r == region)
            .map(|(_, u)| u)
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    /// AWS's error code (`AccessDeniedException`, `ResourceNotFoundException`, ...).
    pub code: String,
    pub message: String,
    /// Worth another attempt, and so a reason to fail over.
    pub transient: bool,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s} {}: {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

impl ApiError {
    fn local(code: &str, message: String, transient: bool) -> Self {
        ApiError {
            status: None,
            code: code.into(),
            message,
            transient,
        }
    }
}

/// Error codes AWS sends with a 400 that still mean "try again".
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalServiceError",
    "InternalFailure",
    "ServiceUnavailable",
];

/// Codes that mean our keys are stale: forget them and try again with new ones.
const STALE_KEY_CODES: &[&str] = &["ExpiredTokenException", "ExpiredToken", "RequestExpired"];

/// One attempt of `operation` in `region`, bounded by `timeout`.
pub async fn call(
    http: &Http,
    creds: &Credentials,
    api: &Api,
    region: &str,
    operation: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value, ApiError> {
    let endpoint = api.endpoint(region).ok_or_else(|| {
        ApiError::local("Request", format!("no endpoint for region {region}"), false)
    })?;
    let keys = creds.get(timeout).await.map_err(|e| ApiError {
        status: None,
        code: "Credentials".into(),
        message: e.message.clone(),
        transient: e.transient,
    })?;
    let body =
        serde_json::to_vec(body).map_err(|e| ApiError::local("Request", e.to_string(), false))?;
    let amz_date = crate::timestamp::amz_date(SystemTime::now());
    let mut headers = vec![
        (
            "Content-Type".to_string(),
            "application/x-amz-json-1.1".to_string(),
        ),
        ("Host".to_string(), host_header(endpoint)),
        ("X-Amz-Date".to_string(), amz_date.clone()),
        (
            "X-Amz-Target".to_string(),
            format!("{}.{operation}", api.target_prefix),
        ),
    ];
    if let Some(t) = &keys.session_token {
        headers.push(("X-Amz-Security-Token".to_string(), t.expose().to_string()));
    }
    let path = endpoint.path().to_string();
    let authorization = sigv4::authorization(
        &sigv4::Request {
            method: "POST",
            path: &path,
            query: &[],
            headers: &headers,
            body: &body,
        },
        &keys,
        &Scope {
            region,
            service: api.signing_name,
            amz_date: &amz_date,
        },
    );
    headers.push(("Authorization".to_string(), authorization));
    let answer = http
        .send(
            Call {
                method: reqwest::Method::POST,
                url: endpoint.clone(),
                headers: &headers,
                sensitive: &["Authorization", "X-Amz-Security-Token"],
                body,
                limit: MAX_ANSWER_BYTES,
            },
            timeout,
        )
        .await
        .map_err(|e| match e {
            HttpError::Transport(m) => ApiError::local("Unavailable", m, true),
            other => ApiError::local("InvalidAnswer", other.to_string(), false),
        })?;
    if (200..300).contains(&answer.status) {
        return serde_json::from_slice(&answer.body).map_err(|_| ApiError {
            status: Some(answer.status),
            code: "InvalidAnswer".into(),
            message: "the answer is not JSON".into(),
            transient: false,
        });
    }
    // JSON (`{"__type": "...#AccessDeniedException", "Message": ...}`), or the XML error
    // document some front ends answer with.
    let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let text = String::from_utf8_lossy(&answer.body);
    // The code is matched against known ones below and both are quoted in messages: escaped
    // and capped, whoever answered.
    let code = v
        .get("__type")
        .and_then(|t| t.as_str())
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
        .or_else(|| super::credentials::xml_field(&text, "Code"))
        .map(|c| network_text(&c, 100))
        .unwrap_or_else(|| "no error code".into());
    let message: String = ["message", "Message"]
        .iter()
        .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_string))
        .or_else(|| super::credentials::xml_field(&text, "Message"))
        .map(|m| network_text(&m, MAX_NETWORK_TEXT))
        .unwrap_or_else(|| "no message".into());
    if STALE_KEY_CODES.contains(&code.as_str()) {
        creds.forget().await;
    }
    let transient = answer.status >= 500
        || answer.status == 429
        || TRANSIENT_CODES.contains(&code.as_str())
        || STALE_KEY_CODES.contains(&code.as_str());
    Err(ApiError {
        status: Some(answer.status),
        code,
        message,
        transient,
    })
}
