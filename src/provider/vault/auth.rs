//! Turning an [`Auth`] method into a Vault token: reading the credential files afresh at every
//! login (kubelet rotates projected tokens), building the login request, and reading the answer.
//!
//! Credentials are held in [`SecretString`]s from the moment they are read.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

use super::spec::{Auth, JwtLogin};
use crate::secret::SecretString;

use super::client::Response;

/// A credential file that cannot be used: missing, unreadable, empty, expired, wrong audience.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} {}: {message}", what, path.display())]
pub struct CredentialError {
    pub what: &'static str,
    pub path: PathBuf,
    pub message: String,
}

/// What to send to log in; `None` path means the credential already is a token.
pub enum LoginRequest {
    Post { path: String, body: SecretString },
    Token(SecretString),
}

/// A Vault token and what Vault said about it.
#[derive(Debug, Clone)]
pub struct VaultToken {
    pub token: SecretString,
    pub ttl: Duration,
    pub renewable: bool,
    /// The token's accessor (not a secret: it can look the token up, not use it); empty when
    /// Vault did not say.
    pub accessor: String,
}

/// Reads the credentials of `auth` now. `default_token_path` is `--token-path`.
pub fn prepare(auth: &Auth, default_token_path: &Path) -> Result<LoginRequest, CredentialError> {
    match auth {
        Auth::Kubernetes(l) | Auth::Jwt(l) => {
            let path = l.token_path.as_deref().unwrap_or(default_token_path);
            let jwt = read_secret_file("service-account token file", path)?;
            check_jwt(&jwt, l, path)?;
            Ok(LoginRequest::Post {
                path: format!("auth/{}/login", l.mount),
                body: json_body(&[("role", &l.role), ("jwt", jwt.expose())]),
            })
        }
        Auth::AppRole {
            mount,
            role_id_file,
            secret_id_file,
        } => {
            let role_id = read_secret_file("AppRole role_id file", role_id_file)?;
            let secret_id = read_secret_file("AppRole secret_id file", secret_id_file)?;
            Ok(LoginRequest::Post {
                path: format!("auth/{mount}/login"),
                body: json_body(&[
                    ("role_id", role_id.expose()),
                    ("secret_id", secret_id.expose()),
                ]),
            })
        }
        Auth::Token { token_file } => Ok(LoginRequest::Token(read_secret_file(
            "Vault token file",
            token_file,
        )?)),
    }
}

/// A JSON object of string fields, serialised straight into one buffer sized for the worst
/// case of escaping, so no intermediate or reallocated copy of a credential is left unzeroed.
fn json_body(fields: &[(&str, &str)]) -> SecretString {
    let worst: usize = fields
        .iter()
        .map(|(k, v)| 6 * (k.len() + v.len()) + 6)
        .sum();
    let mut buf = Vec::with_capacity(worst + 2);
    let map: std::collections::BTreeMap<&str, &str> = fields.iter().copied().collect();
    // Serialising borrowed strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut buf, &map);
    match String::from_utf8(buf) {
        Ok(text) => SecretString::new(text),
        Err(e) => {
            crate::secret::wipe(&mut e.into_bytes());
            SecretString::new(String::new())
        }
    }
}

/// Who we log in as, for messages: `role "x" at auth/kubernetes`.
pub fn describe(auth: &Auth, default_token_path: &Path) -> String {
    match auth {
        Auth::Kubernetes(l) | Auth::Jwt(l) => format!(
            "role {:?} at auth/{} with the token from {}",
            l.role,
            l.mount,
            l.token_path
                .as_deref()
                .unwrap_or(default_token_path)
                .display()
        ),
        Auth::AppRole {
            mount,
            role_id_file,
            ..
        } => {
            format!(
                "AppRole at auth/{mount} with the role_id from {}",
                role_id_file.display()
            )
        }
        Auth::Token { token_file } => format!("the token from {}", token_file.display()),
    }
}

fn read_secret_file(what: &'static str, path: &Path) -> Result<SecretString, CredentialError> {
    let err = |message: String| CredentialError {
        what,
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| err("is not UTF-8 text".into()))?;
    let value = SecretString::new(text.trim().to_string());
    drop(SecretString::new(text));
    if value.is_empty() {
        return Err(err("is empty".into()));
    }
    Ok(value)
}

/// Checks what can be checked without the signing key: expiry and audience. This turns Vault's
/// bare "permission denied" into an error that says what is wrong. Opaque tokens pass.
fn check_jwt(jwt: &SecretString, login: &JwtLogin, path: &Path) -> Result<(), CredentialError> {
    let err = |message: String| CredentialError {
        what: "service-account token file",
        path: path.to_path_buf(),
        message,
    };
    let Some(claims) = jwt_claims(jwt.expose()) else {
        return Err(err(
            "does not hold a JWT (expected three base64url parts separated by dots)".into(),
        ));
    };
    if let Some(exp) = claims.get("exp").and_then(|v| v.as_u64()) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if exp <= now {
            let when = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(exp));
            return Err(err(format!(
                "the token expired at {when} ({} ago); kubelet refreshes projected tokens, so check \
                 the volume projection (expirationSeconds) or the file's source",
                humantime::format_duration(Duration::from_secs(now - exp))
            )));
        }
    }
    if let Some(aud) = &login.audience {
        let auds: Vec<&str> = match claims.get("aud") {
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => vec![],
        };
        if !auds.contains(&aud.as_str()) {
            return Err(err(format!(
                "the token's audiences {auds:?} do not include the configured audience {aud:?}; \
                 project the token with `audience: {aud}`"
            )));
        }
    }
    Ok(())
}

/// The claims of a JWT, not verified (Vault verifies). Claims are not secret; the signature is.
fn jwt_claims(jwt: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut parts = jwt.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Reads `auth.client_token` and its lease from a login answer.
pub fn token_from_login(resp: &Response) -> Option<VaultToken> {
    let auth = resp.0.get("auth")?;
    let token = auth.get("client_token")?.as_str()?.to_string();
    Some(VaultToken {
        token: SecretString::new(token),
        ttl: super::client::network_secs(auth.get("lease_duration")),
        renewable: auth
            .get("renewable")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        accessor: auth
            .get("accessor")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt_with(claims: serde_json::Value) -> SecretString {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        SecretString::new(format!(
            "{}.{}.sig",
            b64(br#"{"alg":"RS256"}"#),
            b64(claims.to_string().as_bytes())
        ))
    }

    fn login(aud: Option<&str>) -> JwtLogin {
        JwtLogin {
            mount: "kubernetes".into(),
            role: "r".into(),
            audience: aud.map(str::to_string),
            token_path: None,
        }
    }

    #[test]
    fn expired_tokens_are_reported_before_login() {
        let t = jwt_with(serde_json::json!({"exp": 1000}));
        let e = check_jwt(&t, &login(None), Path::new("/tok")).unwrap_err();
        assert!(
            e.to_string().contains("expired at 1970-01-01T00:16:40Z"),
            "{e}"
        );
        assert!(!e.to_string().contains(t.expose()));
    }

    #[test]
    fn audience_must_match_when_configured() {
        let t = jwt_with(serde_json::json!({"aud": ["vault"], "exp": 4_000_000_000u64}));
        assert!(check_jwt(&t, &login(Some("vault")), Path::new("/tok")).is_ok());
        let e = check_jwt(&t, &login(Some("openbao")), Path::new("/tok")).unwrap_err();
        assert!(e.message.contains("\"openbao\""), "{e}");
    }

    #[test]
    fn login_bodies_are_json_with_escaping() {
        let b = json_body(&[("role", "r\"x"), ("jwt", "a.b.c")]);
        let v: serde_json::Value = serde_json::from_str(b.expose()).unwrap();
        assert_eq!(v, serde_json::json!({"role": "r\"x", "jwt": "a.b.c"}));
    }

    #[test]
    fn absurd_lease_durations_are_clamped() {
        let r = Response(
            serde_json::json!({"auth": {"client_token": "t",
            "lease_duration": u64::MAX, "renewable": true}}),
            None,
        );
        assert_eq!(
            token_from_login(&r).unwrap().ttl,
            crate::provider::vault::client::MAX_NETWORK_DURATION
        );
    }

    #[test]
    fn garbage_is_not_a_jwt() {
        let e = check_jwt(
            &SecretString::new("nope".into()),
            &login(None),
            Path::new("/tok"),
        )
        .unwrap_err();
        assert!(e.message.contains("does not hold a JWT"));
    }
}
