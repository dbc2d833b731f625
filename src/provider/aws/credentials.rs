//! AWS credentials the way an SDK finds them in a pod (docs/aws.md, "Credentials"):
//! IRSA (`sts:AssumeRoleWithWebIdentity` with `AWS_ROLE_ARN` and the projected token in
//! `AWS_WEB_IDENTITY_TOKEN_FILE`) or EKS Pod Identity (GET `AWS_CONTAINER_CREDENTIALS_FULL_URI`
//! with the token of `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` as `Authorization`).
//!
//! Invariants: token files are re-read for every exchange and bounded in size; keys are held
//! in redacting types and refreshed before they expire (a failed refresh keeps the old keys
//! while they are valid, so signing never has a gap); the Pod Identity token is only sent to
//! an https URL or a loopback / EKS link-local address, as the AWS SDKs require, and no
//! redirect is followed; STS's XML answer is read by bounded string search, nothing more.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::net::http::{network_text, MAX_NETWORK_TEXT};
use crate::secret::SecretString;

use crate::net::cloud::{host_header, Http, HttpError};
use crate::timestamp::parse_iso8601;

/// Where the Pod Identity agent listens by default (`preferredAddressType`).
pub const POD_IDENTITY_IPV4: &str = "http://169.254.170.23/v1/credentials";
pub const POD_IDENTITY_IPV6: &str = "http://[fd00:ec2::23]/v1/credentials";
/// Where EKS mounts the Pod Identity token.
pub const POD_IDENTITY_TOKEN_FILE: &str =
    "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token";
/// Token files larger than this are refused (a projected token is about 1 KiB).
const MAX_TOKEN_BYTES: u64 = 64 * 1024;
/// Credential answers larger than this are refused.
const MAX_CREDENTIAL_ANSWER: usize = 64 * 1024;
/// Keys are replaced this long before they expire (or at half their life if shorter).
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// Each credential field is at most this long (session tokens are around 1–2 KiB).
const MAX_FIELD: usize = 8 * 1024;

pub use super::sigv4::Keys;

/// The AWS variables of the process, read once.
#[derive(Debug, Clone, Default)]
pub struct AwsEnv {
    pub role_arn: Option<String>,
    pub web_identity_token_file: Option<PathBuf>,
    pub role_session_name: Option<String>,
    pub full_uri: Option<String>,
    pub authorization_token_file: Option<PathBuf>,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`; never printed.
    pub authorization_token: Option<SecretString>,
    pub endpoint_url: Option<String>,
    pub endpoint_url_sts: Option<String>,
    pub endpoint_url_secrets_manager: Option<String>,
    pub endpoint_url_ssm: Option<String>,
    pub ca_bundle: Option<PathBuf>,
}

impl AwsEnv {
    pub fn from_process() -> AwsEnv {
        AwsEnv::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> AwsEnv {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        AwsEnv {
            role_arn: var("AWS_ROLE_ARN"),
            web_identity_token_file: var("AWS_WEB_IDENTITY_TOKEN_FILE").map(PathBuf::from),
            role_session_name: var("AWS_ROLE_SESSION_NAME"),
            full_uri: var("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            authorization_token_file: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
                .map(PathBuf::from),
            authorization_token: var("AWS_CONTAINER_AUTHORIZATION_TOKEN").map(SecretString::new),
            endpoint_url: var("AWS_ENDPOINT_URL"),
            endpoint_url_sts: var("AWS_ENDPOINT_URL_STS"),
            endpoint_url_secrets_manager: var("AWS_ENDPOINT_URL_SECRETS_MANAGER"),
            endpoint_url_ssm: var("AWS_ENDPOINT_URL_SSM"),
            ca_bundle: var("AWS_CA_BUNDLE").map(PathBuf::from),
        }
    }
}

/// Why no keys could be had. `config` errors are the user's to fix (exit 2).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CredentialError {
    pub message: String,
    pub config: bool,
    /// Worth another attempt (network, 5xx, throttling).
    pub transient: bool,
}

impl CredentialError {
    fn config(message: String) -> Self {
        CredentialError {
            message,
            config: true,
            transient: false,
        }
    }
    fn refused(message: String) -> Self {
        CredentialError {
            message,
            config: false,
            transient: false,
        }
    }
    fn transient(message: String) -> Self {
        CredentialError {
            message,
            config: false,
            transient: true,
        }
    }
}

/// Where keys come from.
#[derive(Debug, Clone)]
pub enum Source {
    Irsa {
        role_arn: String,
        token_file: PathBuf,
        session_name: String,
        sts: reqwest::Url,
        region: String,
    },
    PodIdentity {
        url: reqwest::Url,
        token_file: Option<PathBuf>,
        token: Option<SecretString>,
    },
}

impl Source {
    /// Who we are, for messages: the role ARN (IRSA) or the agent's URL (Pod Identity).
    pub fn describe(&self) -> String {
        match self {
            Source::Irsa { role_arn, .. } => format!("role {role_arn} (IRSA)"),
            Source::PodIdentity { url, .. } => {
                format!("the Pod Identity role (credentials from {url})")
            }
        }
    }
}

/// The IRSA or Pod Identity source for a spec, from the environment.
pub fn source(
    env: &AwsEnv,
    use_pod_identity: bool,
    address_type: crate::provider::aws::params::AddressType,
    region: &str,
) -> Result<Source, CredentialError> {
    if use_pod_identity {
        let text = env.full_uri.clone().unwrap_or_else(|| {
            match address_type {
                crate::provider::aws::params::AddressType::Ipv6 => POD_IDENTITY_IPV6,
                _ => POD_IDENTITY_IPV4,
            }
            .to_string()
        });
        let url = reqwest::Url::parse(&text).map_err(|_| {
            CredentialError::config(format!(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI {text:?} is not a URL"
            ))
        })?;
        check_credentials_url(&url).map_err(CredentialError::config)?;
        let token_file = match (&env.authorization_token_file, &env.authorization_token) {
            (Some(f), _) => Some(f.clone()),
            (None, Some(_)) => None,
            (None, None) => Some(PathBuf::from(POD_IDENTITY_TOKEN_FILE)),
        };
        return Ok(Source::PodIdentity {
            url,
            token_file,
            token: env.authorization_token.clone(),
        });
    }
    let (Some(role_arn), Some(token_file)) = (&env.role_arn, &env.web_identity_token_file) else {
        return Err(CredentialError::config(
            "IRSA needs AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE (set by EKS for a service \
             account annotated eks.amazonaws.com/role-arn); for EKS Pod Identity set \
             usePodIdentity: \"true\""
                .into(),
        ));
    };
    if !role_arn.starts_with("arn:") {
        return Err(CredentialError::config(format!(
            "AWS_ROLE_ARN {role_arn:?} is not an ARN"
        )));
    }
    let session_name = env.role_session_name.clone().unwrap_or_else(|| {
        format!(
            "secretdrop-{}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
        )
    });
    let sts = endpoint(
        env.endpoint_url_sts.as_ref().or(env.endpoint_url.as_ref()),
        "sts",
        region,
    )
    .map_err(CredentialError::config)?;
    Ok(Source::Irsa {
        role_arn: role_arn.clone(),
        token_file: token_file.clone(),
        session_name,
        sts,
        region: region.to_string(),
    })
}

/// A service's endpoint: the override when given, else `https://SERVICE.REGION.amazonaws.com`
/// (`.amazonaws.com.cn` in the China regions).
pub fn endpoint(
    given: Option<&String>,
    service: &str,
    region: &str,
) -> Result<reqwest::Url, String> {
    let text = match given {
        Some(u) => u.clone(),
        None if region.starts_with("cn-") => format!("https://{service}.{region}.amazonaws.com.cn"),
        None => format!("https://{service}.{region}.amazonaws.com"),
    };
    let url = reqwest::Url::parse(&text).map_err(|_| format!("endpoint {text:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("endpoint {text:?} is not an http(s) URL"));
    }
    if url.query().is_some() || url.path() != "/" {
        return Err(format!("endpoint {text:?} must have no path or query"));
    }
    Ok(url)
}

/// The AWS SDKs' rule for a container credentials URL: https anywhere, plain http only to a
/// loopback address or the ECS/EKS agents' link-local ones.
pub fn check_credentials_url(url: &reqwest::Url) -> Result<(), String> {
    use std::net::IpAddr;
    match url.scheme() {
        "https" => return Ok(()),
        "http" => {}
        s => {
            return Err(format!(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI: scheme {s:?} is not http(s)"
            ))
        }
    }
    let host = url.host_str().unwrap_or_default();
    let allowed = match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(IpAddr::V4(ip)) => {
            ip.is_loopback()
                || ip == std::net::Ipv4Addr::new(169, 254, 170, 2)
                || ip == std::net::Ipv4Addr::new(169, 254, 170, 23)
        }
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)
        }
        Err(_) => host == "localhost",
    };
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI: {} is neither https nor a loopback or EKS/ECS \
             agent address (169.254.170.23, fd00:ec2::23, 169.254.170.2); the token is not sent there",
            host_header(url)
        ))
    }
}

/// Reads a token file afresh, bounded, trimmed (the Azure provider reads its federated token
/// the same way).
pub fn read_token(path: &Path, what: &str) -> Result<SecretString, CredentialError> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).map_err(|e| {
        CredentialError::refused(format!("cannot read the {what} {}: {e}", path.display()))
    })?;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    f.take(MAX_TOKEN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            CredentialError::refused(format!("cannot read the {what} {}: {e}", path.display()))
        })?;
    if bytes.len() as u64 > MAX_TOKEN_BYTES {
        return Err(CredentialError::refused(format!(
            "the {what} {} is larger than {MAX_TOKEN_BYTES} bytes",
            path.display()
        )));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| {
            CredentialError::refused(format!("the {what} {} is not text", path.display()))
        })?
        .trim();
    if text.is_empty() {
        return Err(CredentialError::refused(format!(
            "the {what} {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::new(text.to_string()))
}

/// Keys from a [`Source`], cached and refreshed ahead of expiry.
pub struct Credentials {
    source: Source,
    http: Http,
    /// Held keys and when to refresh them; locked across an exchange, so concurrent
    /// requests wait for one exchange instead of each making their own.
    held: tokio::sync::Mutex<Option<(Keys, Instant)>>,
    /// How many exchanges were made (STS calls or agent GETs), for tests and metrics.
    pub exchanges: std::sync::atomic::AtomicU64,
}

impl Credentials {
    pub fn new(source: Source, http: Http) -> Credentials {
        Credentials {
            source,
            http,
            held: tokio::sync::Mutex::new(None),
            exchanges: Default::default(),
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Valid keys: the held ones until their refresh time, else new ones. A failed refresh
    /// falls back to held keys that have not expired yet.
    pub async fn get(&self, timeout: Duration) -> Result<Keys, CredentialError> {
        let mut held = self.held.lock().await;
        if let Some((keys, refresh_at)) = held.as_ref() {
            if Instant::now() < *refresh_at {
                return Ok(keys.clone());
            }
        }
        self.exchanges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.exchange(timeout).await {
            Ok(keys) => {
                *held = Some((keys.clone(), refresh_time(keys.expires)));
                Ok(keys)
            }
            Err(e) => match held.as_ref() {
                Some((keys, _))
                    if keys
                        .expires
                        .is_some_and(|t| t > SystemTime::now() + Duration::from_secs(10)) =>
                {
                    tracing::warn!(error = %e, "refreshing AWS credentials failed; the held ones are still valid");
                    Ok(keys.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// The keys held now, if any (for `--state-dir`).
    pub fn held(&self) -> Option<Keys> {
        self.held
            .try_lock()
            .ok()?
            .as_ref()
            .map(|(keys, _)| keys.clone())
    }

    /// Keys a previous process obtained from the same source, used until their refresh time
    /// as if this process had obtained them. False (nothing held) when they carry no expiry
    /// or are already due for replacement.
    pub fn adopt(&self, keys: Keys) -> bool {
        let refresh_at = refresh_time(keys.expires);
        if keys.expires.is_none() || refresh_at <= Instant::now() {
            return false;
        }
        match self.held.try_lock() {
            Ok(mut held) => {
                *held = Some((keys, refresh_at));
                true
            }
            Err(_) => false,
        }
    }

    /// Forget held keys (after the service said they are expired or invalid).
    pub async fn forget(&self) {
        *self.held.lock().await = None;
    }

    async fn exchange(&self, timeout: Duration) -> Result<Keys, CredentialError> {
        match &self.source {
            Source::Irsa {
                role_arn,
                token_file,
                session_name,
                sts,
                region: _,
            } => {
                let token = read_token(
                    token_file,
                    "web identity token file (AWS_WEB_IDENTITY_TOKEN_FILE)",
                )?;
                let form = [
                    ("Action", "AssumeRoleWithWebIdentity"),
                    ("Version", "2011-06-15"),
                    ("RoleArn", role_arn.as_str()),
                    ("RoleSessionName", session_name.as_str()),
                    ("WebIdentityToken", token.expose()),
                ];
                let body: String = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", super::sigv4::uri_encode(v, false)))
                    .collect::<Vec<_>>()
                    .join("&");
                let headers = vec![
                    (
                        "Content-Type".to_string(),
                        "application/x-www-form-urlencoded; charset=utf-8".to_string(),
                    ),
                    ("Accept".to_string(), "text/xml".to_string()),
                ];
                let what = format!("sts:AssumeRoleWithWebIdentity for {role_arn} at {sts}");
                let answer = self
                    .http
                    .send(
                        crate::net::cloud::Call {
                            method: reqwest::Method::POST,
                            url: sts.clone(),
                            headers: &headers,
                            sensitive: &[],
                            body: body.into_bytes(),
                            limit: MAX_CREDENTIAL_ANSWER,
                        },
                        timeout,
                    )
                    .await
                    .map_err(|e| transport(&what, e))?;
                let text = String::from_utf8_lossy(&answer.body);
                if answer.status != 200 {
                    // STS's words, or whatever answers there: escaped and capped.
                    let code = xml_field(&text, "Code")
                        .map(|c| network_text(&c, 100))
                        .unwrap_or_else(|| "no error code".into());
                    let message = xml_field(&text, "Message")
                        .map(|m| network_text(&m, MAX_NETWORK_TEXT))
                        .unwrap_or_default();
                    let m = format!("{what} failed: HTTP {} {code}: {message}", answer.status);
                    return Err(
                        if answer.status >= 500
                            || answer.status == 429
                            || code.contains("Throttl")
                            || code == "IDPCommunicationError"
                        {
                            CredentialError::transient(m)
                        } else {
                            CredentialError::refused(m)
                        },
                    );
                }
                let creds = xml_section(&text, "Credentials").ok_or_else(|| {
                    CredentialError::refused(format!("{what}: the answer holds no Credentials"))
                })?;
                keys_from(&what, "SessionToken", |name| xml_field(creds, name))
            }
            Source::PodIdentity {
                url,
                token_file,
                token,
            } => {
                let token = match token_file {
                    Some(f) => read_token(
                        f,
                        "Pod Identity token file (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)",
                    )?,
                    None => token
                        .clone()
                        .ok_or_else(|| CredentialError::config("no Pod Identity token".into()))?,
                };
                let headers = vec![("Authorization".to_string(), token.expose().to_string())];
                let what = format!("Pod Identity credentials from {url}");
                let answer = self
                    .http
                    .send(
                        crate::net::cloud::Call {
                            method: reqwest::Method::GET,
                            url: url.clone(),
                            headers: &headers,
                            sensitive: &["Authorization"],
                            body: Vec::new(),
                            limit: MAX_CREDENTIAL_ANSWER,
                        },
                        timeout,
                    )
                    .await
                    .map_err(|e| transport(&what, e))?;
                if answer.status != 200 {
                    let v: serde_json::Value =
                        serde_json::from_slice(&answer.body).unwrap_or_default();
                    let message = ["message", "Message"]
                        .iter()
                        .find_map(|k| v.get(k).and_then(|m| m.as_str()))
                        .map(|m| network_text(m, MAX_NETWORK_TEXT))
                        .unwrap_or_else(|| "no message".into());
                    let m = format!("{what}: HTTP {}: {message}", answer.status);
                    return Err(if answer.status >= 500 || answer.status == 429 {
                        CredentialError::transient(m)
                    } else {
                        CredentialError::refused(m)
                    });
                }
                let v: serde_json::Value = serde_json::from_slice(&answer.body).map_err(|_| {
                    CredentialError::refused(format!("{what}: the answer is not JSON"))
                })?;
                keys_from(&what, "Token", |name| {
                    v.get(name)
                        .and_then(|s| s.as_str())
                        .filter(|s| !s.is_empty() && s.len() <= MAX_FIELD)
                        .map(str::to_string)
                })
            }
        }
    }
}

/// Keys from the fields of an answer (`what` names it in errors): STS and the Pod Identity
/// agent use the same names but for the session token (`SessionToken`, `Token`).
fn keys_from(
    what: &str,
    session_token: &str,
    field: impl Fn(&str) -> Option<String>,
) -> Result<Keys, CredentialError> {
    let field = |name: &str| {
        field(name)
            .ok_or_else(|| CredentialError::refused(format!("{what}: the answer holds no {name}")))
    };
    Ok(Keys {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: SecretString::new(field("SecretAccessKey")?),
        session_token: Some(SecretString::new(field(session_token)?)),
        expires: Some(parse_iso8601(&field("Expiration")?).ok_or_else(|| {
            CredentialError::refused(format!("{what}: Expiration is not an ISO 8601 time"))
        })?),
    })
}

fn transport(what: &str, e: HttpError) -> CredentialError {
    match e {
        HttpError::Transport(_) => CredentialError::transient(format!("{what}: {e}")),
        _ => CredentialError::refused(format!("{what}: {e}")),
    }
}

/// When to replace keys that expire at `expires`: five minutes before, or halfway for short
/// lives; keys without an expiry are kept an hour.
fn refresh_time(expires: Option<SystemTime>) -> Instant {
    let now = Instant::now();
    let Some(t) = expires else {
        return now + Duration::from_secs(3600);
    };
    let left = t
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .min(Duration::from_secs(366 * 24 * 3600));
    now + left - REFRESH_BEFORE.min(left / 2)
}

/// The text between `<name>` and the next `</name>`, both found once at most; entities
/// decoded; at most [`MAX_FIELD`] bytes and no markup inside.
pub(crate) fn xml_field(doc: &str, name: &str) -> Option<String> {
    let raw = xml_section(doc, name)?;
    if raw.len() > MAX_FIELD || raw.contains('<') {
        return None;
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (ch, len) = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
            ("&apos;", '\''),
        ]
        .iter()
        .find(|(e, _)| tail.starts_with(e))
        .map(|(e, c)| (*c, e.len()))?;
        out.push(ch);
        rest = &tail[len..];
    }
    out.push_str(rest);
    Some(out.trim().to_string())
}

/// The content of the one `<name>...</name>` element; `None` if absent or repeated.
fn xml_section<'a>(doc: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = doc.find(&open)? + open.len();
    let end = start + doc[start..].find(&close)?;
    if doc[end + close.len()..].contains(&open) {
        return None;
    }
    Some(&doc[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_xml_fields_are_found_once_and_bounded() {
        let doc = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
                   <AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>a/b+c&amp;d</SecretAccessKey>\
                   <SessionToken>tok</SessionToken><Expiration>2026-11-28T01:00:00Z</Expiration>\
                   </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        let c = xml_section(doc, "Credentials").unwrap();
        assert_eq!(xml_field(c, "SecretAccessKey").unwrap(), "a/b+c&d");
        assert_eq!(xml_field(c, "AccessKeyId").unwrap(), "ASIA1");
        assert_eq!(
            xml_field("<A>1</A><A>2</A>", "A"),
            None,
            "a repeated field is refused"
        );
        assert_eq!(
            xml_field("<A><B>x</B></A>", "A"),
            None,
            "markup inside is refused"
        );
        assert_eq!(xml_field("<A>x", "A"), None);
        assert_eq!(
            xml_field(&format!("<A>{}</A>", "x".repeat(MAX_FIELD + 1)), "A"),
            None
        );
        assert_eq!(xml_field("<A>&bogus;</A>", "A"), None);
    }

    #[test]
    fn the_pod_identity_token_only_goes_to_allowed_hosts() {
        for ok in [
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
            "http://127.0.0.1:8080/creds",
            "http://127.9.9.9/creds",
            "http://[::1]:1/x",
            "http://localhost:80/x",
            "https://agent.example.com/creds",
        ] {
            assert!(
                check_credentials_url(&reqwest::Url::parse(ok).unwrap()).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "http://10.0.0.1/creds",
            "http://169.254.169.254/latest/meta-data",
            "http://evil.example.com/creds",
            "http://localhost.evil.example/x",
            "http://127.0.0.1.nip.io/x",
            "ftp://127.0.0.1/x",
        ] {
            assert!(
                check_credentials_url(&reqwest::Url::parse(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_never_show_in_debug() {
        let k = Keys {
            access_key_id: "AKIDSECRETLOOKING".into(),
            secret_access_key: SecretString::new("verysecret".into()),
            session_token: Some(SecretString::new("tokentoken".into())),
            expires: None,
        };
        let shown = format!("{k:?}");
        assert!(
            !shown.contains("AKID")
                && !shown.contains("verysecret")
                && !shown.contains("tokentoken"),
            "{shown}"
        );
    }

    #[test]
    fn endpoints_and_refresh_times() {
        assert_eq!(
            endpoint(None, "sts", "us-west-2").unwrap().as_str(),
            "https://sts.us-west-2.amazonaws.com/"
        );
        assert_eq!(
            endpoint(None, "ssm", "cn-north-1").unwrap().as_str(),
            "https://ssm.cn-north-1.amazonaws.com.cn/"
        );
        assert!(endpoint(
            Some(&"http://127.0.0.1:5000/x".to_string()),
            "ssm",
            "us-west-2"
        )
        .is_err());
        let in_hour = SystemTime::now() + Duration::from_secs(3600);
        let at = refresh_time(Some(in_hour));
        assert!(
            at > Instant::now() + Duration::from_secs(3200)
                && at < Instant::now() + Duration::from_secs(3301)
        );
        let short = refresh_time(Some(SystemTime::now() + Duration::from_secs(60)));
        assert!(short < Instant::now() + Duration::from_secs(31));
    }
}
