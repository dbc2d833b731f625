//! The network side of [`super::credentials`]: the STS token exchange and the optional
//! service-account impersonation of Workload Identity Federation, and the metadata server's
//! token (docs/gcp.md, "Credentials").
//!
//! STS answers OAuth-style errors (`{"error": "invalid_grant", "error_description": ...}`),
//! iamCredentials and the metadata server Google's own shape; both are quoted through
//! [`network_text`], never the tokens sent. Answers are bounded in bytes; token fields in length.

use std::time::{Duration, SystemTime};

use crate::net::cloud::{Call, Http, HttpError};
use crate::net::http::{network_text, MAX_NETWORK_TEXT};
use crate::secret::SecretString;

use super::account::{read_bounded, CredentialError, ExternalAccount, SubjectFormat, Token};
use super::api::{form_encode, google_error};

/// Token answers larger than this are refused.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;
/// An access token longer than this is not one (they are a few hundred bytes to 2 KiB).
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// `expires_in` beyond this is not believed (tokens last an hour; 12 h at most).
const MAX_LIFETIME: u64 = 12 * 3600;
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The STS exchange, then the impersonation when the file asks for it.
pub async fn federated(
    http: &Http,
    x: &ExternalAccount,
    timeout: Duration,
) -> Result<Token, CredentialError> {
    let subject = subject_token(x)?;
    let form = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("audience", x.audience.as_str()),
        ("scope", CLOUD_PLATFORM),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("subject_token", subject.expose()),
        ("subject_token_type", x.subject_token_type.as_str()),
    ];
    let headers = vec![(
        "Content-Type".to_string(),
        "application/x-www-form-urlencoded".to_string(),
    )];
    let what = format!(
        "the STS token exchange at {} (audience {})",
        x.token_url, x.audience
    );
    let answer = http
        .send(
            Call {
                method: reqwest::Method::POST,
                url: x.token_url.clone(),
                headers: &headers,
                sensitive: &[],
                body: form_encode(&form).into_bytes(),
                limit: MAX_TOKEN_ANSWER,
            },
            timeout,
        )
        .await
        .map_err(|e| transport(&what, e))?;
    if answer.status != 200 {
        let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let text = |k: &str| {
            v.get(k)
                .and_then(|s| s.as_str())
                .map(|s| network_text(s, MAX_NETWORK_TEXT))
        };
        let detail = match (text("error"), text("error_description")) {
            (Some(e), Some(d)) => format!("{e}: {d}"),
            (Some(e), None) => e,
            _ => google_error(&answer.body)
                .map(|g| g.to_string())
                .unwrap_or_else(|| "no error in the answer".into()),
        };
        let m = format!("{what}: HTTP {}: {detail}", answer.status);
        return Err(classify(answer.status, m));
    }
    let v: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|_| CredentialError::refused(format!("{what}: the answer is not JSON")))?;
    let sts = Token {
        access: access_token(&v, "access_token").ok_or_else(|| {
            CredentialError::refused(format!("{what}: the answer holds no access_token"))
        })?,
        expires: expires_in(&v).ok_or_else(|| {
            CredentialError::refused(format!("{what}: the answer holds no valid expires_in"))
        })?,
    };
    match &x.impersonation_url {
        None => Ok(sts),
        Some(url) => impersonate(http, x, url, &sts, timeout).await,
    }
}

/// iamcredentials `generateAccessToken` with the STS token.
async fn impersonate(
    http: &Http,
    x: &ExternalAccount,
    url: &reqwest::Url,
    sts: &Token,
    timeout: Duration,
) -> Result<Token, CredentialError> {
    let sa = x.service_account().unwrap_or_default();
    let what = format!("impersonating service account {sa} (generateAccessToken)");
    let body = serde_json::json!({
        "scope": [CLOUD_PLATFORM],
        "lifetime": format!("{}s", x.lifetime_secs),
    });
    let headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        (
            "Authorization".to_string(),
            format!("Bearer {}", sts.access.expose()),
        ),
    ];
    let answer = http
        .send(
            Call {
                method: reqwest::Method::POST,
                url: url.clone(),
                headers: &headers,
                sensitive: &["Authorization"],
                body: body.to_string().into_bytes(),
                limit: MAX_TOKEN_ANSWER,
            },
            timeout,
        )
        .await
        .map_err(|e| transport(&what, e))?;
    if answer.status != 200 {
        let detail = google_error(&answer.body)
            .map(|g| g.to_string())
            .unwrap_or_else(|| "no error in the answer".into());
        let hint = if answer.status == 403 {
            " (the federated principal needs roles/iam.workloadIdentityUser on the service account)"
        } else {
            ""
        };
        let m = format!("{what}: HTTP {}: {detail}{hint}", answer.status);
        return Err(classify(answer.status, m));
    }
    let v: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|_| CredentialError::refused(format!("{what}: the answer is not JSON")))?;
    let access = access_token(&v, "accessToken").ok_or_else(|| {
        CredentialError::refused(format!("{what}: the answer holds no accessToken"))
    })?;
    let expires = v
        .get("expireTime")
        .and_then(|t| t.as_str())
        .and_then(parse_rfc3339)
        .filter(|t| *t <= SystemTime::now() + Duration::from_secs(MAX_LIFETIME))
        .ok_or_else(|| {
            CredentialError::refused(format!("{what}: the answer holds no valid expireTime"))
        })?;
    Ok(Token { access, expires })
}

/// The metadata server's token for the default service account (on GKE, the pod's).
pub async fn metadata(
    http: &Http,
    host: &str,
    timeout: Duration,
) -> Result<Token, CredentialError> {
    let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
    let what = format!("the metadata server's token at http://{host}");
    let url = reqwest::Url::parse(&url)
        .map_err(|_| CredentialError::config(format!("{what}: not a URL")))?;
    let headers = vec![("Metadata-Flavor".to_string(), "Google".to_string())];
    let answer = http
        .send(
            Call {
                method: reqwest::Method::GET,
                url,
                headers: &headers,
                sensitive: &[],
                body: Vec::new(),
                limit: MAX_TOKEN_ANSWER,
            },
            timeout,
        )
        .await
        .map_err(|e| transport(&what, e))?;
    if answer.status != 200 {
        let detail = google_error(&answer.body)
            .map(|g| g.to_string())
            .unwrap_or_else(|| {
                network_text(&String::from_utf8_lossy(&answer.body), MAX_NETWORK_TEXT)
            });
        let hint = if answer.status == 404 {
            " (no service account: on GKE, is Workload Identity enabled on the node pool and the \
             Kubernetes service account allowed to act as one?)"
        } else {
            ""
        };
        return Err(classify(
            answer.status,
            format!("{what}: HTTP {}: {}{hint}", answer.status, detail.trim()),
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|_| CredentialError::refused(format!("{what}: the answer is not JSON")))?;
    Ok(Token {
        access: access_token(&v, "access_token").ok_or_else(|| {
            CredentialError::refused(format!("{what}: the answer holds no access_token"))
        })?,
        expires: expires_in(&v).ok_or_else(|| {
            CredentialError::refused(format!("{what}: the answer holds no valid expires_in"))
        })?,
    })
}

/// The subject token, read afresh (projected tokens rotate).
fn subject_token(x: &ExternalAccount) -> Result<SecretString, CredentialError> {
    let what = format!(
        "the subject token file {} (credential_source.file)",
        x.subject_file.display()
    );
    let bytes = read_bounded(&x.subject_file)
        .map_err(|m| CredentialError::refused(format!("{what}: {m}")))?;
    let token = match &x.format {
        SubjectFormat::Text => std::str::from_utf8(&bytes)
            .map_err(|_| CredentialError::refused(format!("{what}: not text")))?
            .trim()
            .to_string(),
        SubjectFormat::Json(field) => {
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|_| CredentialError::refused(format!("{what}: not JSON")))?;
            v.get(field)
                .and_then(|s| s.as_str())
                .ok_or_else(|| {
                    CredentialError::refused(format!("{what}: no string field {field:?}"))
                })?
                .to_string()
        }
    };
    if token.is_empty() {
        return Err(CredentialError::refused(format!("{what}: empty")));
    }
    Ok(SecretString::new(token))
}

fn access_token(v: &serde_json::Value, field: &str) -> Option<SecretString> {
    v.get(field)
        .and_then(|s| s.as_str())
        .filter(|s| {
            !s.is_empty() && s.len() <= MAX_TOKEN_LEN && s.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(|s| SecretString::new(s.to_string()))
}

fn expires_in(v: &serde_json::Value) -> Option<SystemTime> {
    let secs = v.get("expires_in")?.as_u64()?;
    (secs > 0 && secs <= MAX_LIFETIME).then(|| SystemTime::now() + Duration::from_secs(secs))
}

/// `2026-01-01T00:00:00Z`, with or without fractional seconds.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    crate::timestamp::parse_iso8601(s)
}

fn classify(status: u16, message: String) -> CredentialError {
    if status >= 500 || status == 429 {
        CredentialError::transient(message)
    } else {
        CredentialError::refused(message)
    }
}

fn transport(what: &str, e: HttpError) -> CredentialError {
    match e {
        HttpError::Transport(_) => CredentialError::transient(format!("{what}: {e}")),
        _ => CredentialError::refused(format!("{what}: {e}")),
    }
}
