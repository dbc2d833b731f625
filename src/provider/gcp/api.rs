//! Secret Manager's `AccessSecretVersion` and Parameter Manager's `RenderParameterVersion` over
//! REST (docs/gcp.md, "Reading, integrity, errors"), and what Google's REST APIs share: their
//! error shape.
//!
//! Invariants: the answer is bounded in bytes ([`MAX_ACCESS_ANSWER`]) and its `name` in length;
//! the payload is verified against `dataCrc32c` when the answer carries one, and refused on a
//! mismatch; error texts from the service are quoted through [`network_text`]; the token goes
//! only to the version's own endpoint (the client follows no redirect).

use std::time::Duration;

use base64::Engine;

use crate::net::cloud::{Call, Http, HttpError};
use crate::net::http::{network_text, MAX_NETWORK_TEXT};
use crate::secret::SecretBytes;

use super::crc32c::crc32c;
use super::spec::{Resource, Store};

/// A payload is at most 64 KiB, a third more in base64; the rest of the answer is small.
pub const MAX_ACCESS_ANSWER: usize = 256 * 1024;
/// The resolved version's name is short (`projects/NUMBER/locations/L/secrets/S/versions/N`).
const MAX_NAME: usize = 1024;

/// Google's REST error: `{"error": {"code", "message", "status", "details": [...]}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct GoogleError {
    pub status: String,
    pub message: String,
    /// `ErrorInfo.reason` from the details, when there is one (`IAM_PERMISSION_DENIED`, ...).
    pub reason: Option<String>,
}

impl std::fmt::Display for GoogleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)?;
        if let Some(r) = &self.reason {
            write!(f, " (reason {r})")?;
        }
        Ok(())
    }
}

/// The error of a Google REST answer, made fit for a log line; `None` when it has none.
pub fn google_error(body: &[u8]) -> Option<GoogleError> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let text = |k: &str| {
        e.get(k)
            .and_then(|s| s.as_str())
            .map(|s| network_text(s, MAX_NETWORK_TEXT))
    };
    let reason = e
        .get("details")
        .and_then(|d| d.as_array())
        .and_then(|d| d.iter().take(16).find_map(|i| i.get("reason")?.as_str()))
        .map(|r| network_text(r, 64));
    Some(GoogleError {
        status: text("status").unwrap_or_else(|| "UNKNOWN".into()),
        message: text("message").unwrap_or_else(|| "no message".into()),
        reason,
    })
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A version's payload and the resolved version's name.
pub struct Accessed {
    pub name: String,
    pub data: SecretBytes,
}

/// Why a version could not be read.
#[derive(Debug, Clone)]
pub struct AccessError {
    /// HTTP status, when an answer came.
    pub http: Option<u16>,
    /// Google's status (`PERMISSION_DENIED`), or ours for answers we refuse
    /// (`DATA_CORRUPTED`, `INVALID_ANSWER`, `UNREACHABLE`).
    pub status: String,
    pub message: String,
    /// Worth another attempt: 429, 5xx, network.
    pub transient: bool,
}

impl std::fmt::Display for AccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.http {
            Some(h) => write!(f, "{} (HTTP {h}): {}", self.status, self.message),
            None => write!(f, "{}: {}", self.status, self.message),
        }
    }
}

impl AccessError {
    fn ours(status: &str, message: String) -> AccessError {
        AccessError {
            http: Some(200),
            status: status.into(),
            message,
            transient: false,
        }
    }
}

/// `GET https://HOST/v1/NAME:access` (or `:render`) with `token`.
pub async fn access(
    http: &Http,
    resource: &Resource,
    token: &str,
    quota_project: Option<&str>,
    timeout: Duration,
) -> Result<Accessed, AccessError> {
    let url = reqwest::Url::parse(&resource.access_url()).map_err(|_| {
        AccessError::ours("INVALID_ARGUMENT", "the resource name makes no URL".into())
    })?;
    let mut headers = vec![("Authorization".to_string(), format!("Bearer {token}"))];
    if let Some(q) = quota_project {
        headers.push(("x-goog-user-project".to_string(), q.to_string()));
    }
    let answer = http
        .send(
            Call {
                method: reqwest::Method::GET,
                url,
                headers: &headers,
                sensitive: &["Authorization"],
                body: Vec::new(),
                limit: MAX_ACCESS_ANSWER,
            },
            timeout,
        )
        .await
        .map_err(|e| AccessError {
            http: None,
            status: match e {
                HttpError::Tls(_) => "TLS",
                HttpError::TooBig(_) => "ANSWER_TOO_LARGE",
                HttpError::Transport(_) => "UNAVAILABLE",
            }
            .into(),
            transient: matches!(e, HttpError::Transport(_)),
            message: e.to_string(),
        })?;
    if answer.status != 200 {
        let g = google_error(&answer.body);
        return Err(AccessError {
            http: Some(answer.status),
            status: g
                .as_ref()
                .map(|g| g.status.clone())
                .unwrap_or_else(|| format!("HTTP_{}", answer.status)),
            message: g
                .map(|g| match g.reason {
                    Some(r) => format!("{} (reason {r})", g.message),
                    None => g.message,
                })
                .unwrap_or_else(|| "no error in the answer".into()),
            transient: answer.status == 429 || answer.status >= 500,
        });
    }
    let v: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|_| AccessError::ours("INVALID_ANSWER", "the answer is not JSON".into()))?;
    if resource.store == Store::ParameterManager {
        return rendered(&v);
    }
    let name = v
        .get("name")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty() && n.len() <= MAX_NAME)
        .ok_or_else(|| AccessError::ours("INVALID_ANSWER", "the answer names no version".into()))?
        .to_string();
    let payload = v.get("payload");
    // proto3 JSON leaves an empty payload out.
    let data = match payload.and_then(|p| p.get("data")) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| {
                AccessError::ours("INVALID_ANSWER", "payload.data is not base64".into())
            })?,
        Some(_) => {
            return Err(AccessError::ours(
                "INVALID_ANSWER",
                "payload.data is not a string".into(),
            ))
        }
    };
    let data = SecretBytes::new(data);
    // An int64, so a JSON string; a number is accepted too.
    let expected = match payload.and_then(|p| p.get("dataCrc32c")) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.parse::<u64>().ok()),
        Some(serde_json::Value::Number(n)) => Some(n.as_u64()),
        Some(_) => Some(None),
    };
    match expected {
        None => {}
        Some(None) => {
            return Err(AccessError::ours(
                "INVALID_ANSWER",
                "payload.dataCrc32c is not a number".into(),
            ))
        }
        Some(Some(crc)) => {
            let got = crc32c(data.expose());
            if crc != got as u64 {
                return Err(AccessError::ours(
                    "DATA_CORRUPTED",
                    format!(
                        "the payload's CRC32C is {got}, the answer says {crc}: refused, nothing \
                         written (corrupted in transit or by a proxy)"
                    ),
                ));
            }
        }
    }
    Ok(Accessed { name, data })
}

/// A `RenderParameterVersion` answer: `renderedPayload` (secret references resolved), and the
/// version it names (`parameterVersion`).
fn rendered(v: &serde_json::Value) -> Result<Accessed, AccessError> {
    let name = v
        .get("parameterVersion")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty() && n.len() <= MAX_NAME)
        .ok_or_else(|| AccessError::ours("INVALID_ANSWER", "the answer names no version".into()))?
        .to_string();
    let data = match v.get("renderedPayload") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| {
                AccessError::ours("INVALID_ANSWER", "renderedPayload is not base64".into())
            })?,
        Some(_) => {
            return Err(AccessError::ours(
                "INVALID_ANSWER",
                "renderedPayload is not a string".into(),
            ))
        }
    };
    Ok(Accessed {
        name,
        data: SecretBytes::new(data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_errors_and_forms() {
        let body = br#"{"error": {"code": 403, "message": "Permission 'secretmanager.versions.access' denied on resource (or it may not exist).", "status": "PERMISSION_DENIED", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED"}]}}"#;
        let g = google_error(body).unwrap();
        assert_eq!(g.status, "PERMISSION_DENIED");
        assert_eq!(g.reason.as_deref(), Some("IAM_PERMISSION_DENIED"));
        assert!(g.to_string().starts_with("PERMISSION_DENIED: Permission"));
        let hostile = br#"{"error": {"status": "X\u001b[2J", "message": "\u202eevil"}}"#;
        let g = google_error(hostile).unwrap();
        assert!(!g.to_string().contains('\u{1b}') && !g.to_string().contains('\u{202e}'));
        assert!(google_error(b"<html>").is_none());
        assert_eq!(
            form_encode(&[("a", "x y/&="), ("b", "ok-._~")]),
            "a=x%20y%2F%26%3D&b=ok-._~"
        );
    }
}
