//! The Key Vault access token (docs/azure.md, "Authentication"): Azure Workload Identity (the
//! pod's projected service-account token, audience `api://AzureADTokenExchange`, exchanged at
//! Entra ID as a client assertion) or the node's managed identity through IMDS.
//!
//! Invariants: the token file is re-read for every exchange (the kubelet rotates it) and
//! bounded in size; the assertion goes only to the authority over https, never elsewhere, and
//! never into a message; the access token is held in a redacting type, reused until five
//! minutes before it expires (halfway for short lives), and a failed refresh keeps a held token
//! while it is valid; answers are bounded in bytes and their lifetimes in range.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::net::cloud::{Call, Http, HttpError};
use crate::net::http::{network_text, MAX_NETWORK_TEXT};
use crate::provider::aws::credentials::{read_token, CredentialError};
use crate::secret::SecretString;

use super::cloud::{self, Cloud};
use super::spec::{AzureSpec, CloudChoice, Identity};

/// Where IMDS answers on every Azure VM.
pub const IMDS_TOKEN_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// The audience Entra ID expects of a federated service-account token.
pub const TOKEN_AUDIENCE: &str = "api://AzureADTokenExchange";
/// Token answers larger than this are refused (an access token is 1-3 KiB).
const MAX_TOKEN_ANSWER: usize = 64 * 1024;
/// Tokens are replaced this long before they expire (or halfway, for shorter lives).
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// Longer lifetimes than this are taken as this (Entra's are about an hour, IMDS's a day).
const MAX_LIFETIME: Duration = Duration::from_secs(2 * 86400);

/// The Azure variables of the process, read once.
#[derive(Debug, Clone, Default)]
pub struct AzureEnv {
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    pub federated_token_file: Option<PathBuf>,
    pub authority_host: Option<String>,
    pub environment_filepath: Option<PathBuf>,
}

impl AzureEnv {
    pub fn from_process() -> AzureEnv {
        AzureEnv::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> AzureEnv {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        AzureEnv {
            client_id: var("AZURE_CLIENT_ID"),
            tenant_id: var("AZURE_TENANT_ID"),
            federated_token_file: var("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
            authority_host: var("AZURE_AUTHORITY_HOST"),
            environment_filepath: var("AZURE_ENVIRONMENT_FILEPATH").map(PathBuf::from),
        }
    }
}

/// Where the token comes from, resolved against the environment.
#[derive(Debug, Clone)]
pub enum Source {
    Workload {
        token_url: reqwest::Url,
        tenant: String,
        client_id: String,
        scope: String,
        token_file: PathBuf,
    },
    Imds {
        url: reqwest::Url,
        client_id: Option<String>,
    },
}

impl Source {
    /// Who we are, for messages and the state's identity.
    pub fn describe(&self) -> String {
        match self {
            Source::Workload {
                token_url,
                client_id,
                ..
            } => format!("workload identity {client_id} at {token_url}"),
            Source::Imds {
                client_id: Some(c), ..
            } => format!("user-assigned managed identity {c} (IMDS)"),
            Source::Imds {
                client_id: None, ..
            } => "the node's system-assigned managed identity (IMDS)".into(),
        }
    }
}

/// The cloud and token source of `spec` in this environment; Err (exit 2) names what is missing.
pub fn resolve(
    spec: &AzureSpec,
    env: &AzureEnv,
    token_path: &std::path::Path,
) -> Result<(Cloud, Source), String> {
    let (cloud, authority_from_cloud) = match &spec.cloud {
        CloudChoice::Named { cloud, explicit } => (cloud.clone(), *explicit),
        CloudChoice::Stack { file } => {
            let (path, what) = match (file, &env.environment_filepath) {
                (Some(f), _) => (f.clone(), "spec.parameters.cloudEnvFileName"),
                (None, Some(f)) => (f.clone(), "AZURE_ENVIRONMENT_FILEPATH"),
                (None, None) => {
                    return Err(format!(
                        "cloudName {} needs its environment file: set spec.parameters.\
                         cloudEnvFileName or AZURE_ENVIRONMENT_FILEPATH",
                        cloud::STACK
                    ))
                }
            };
            (cloud::from_file(&path, what)?, true)
        }
    };
    let source = match &spec.identity {
        Identity::VmManaged { client_id } => {
            let mut url = reqwest::Url::parse(IMDS_TOKEN_URL).expect("a URL");
            url.query_pairs_mut()
                .append_pair("api-version", "2018-02-01")
                .append_pair("resource", cloud.resource_id());
            if let Some(c) = client_id {
                url.query_pairs_mut().append_pair("client_id", c);
            }
            Source::Imds {
                url,
                client_id: client_id.clone(),
            }
        }
        Identity::Workload { client_id } => {
            let tenant = spec.tenant_id.clone().or(env.tenant_id.clone()).ok_or(
                "spec.parameters.tenantId: missing, and AZURE_TENANT_ID is not set: which Entra \
                 ID tenant is the vault's?",
            )?;
            let client_id = client_id.clone().or(env.client_id.clone()).ok_or(
                "spec.parameters.clientID: missing, and AZURE_CLIENT_ID is not set: the client \
                 id of the managed identity or app whose federated credential trusts this \
                 service account",
            )?;
            for (what, id) in [
                ("AZURE_TENANT_ID", &tenant),
                ("AZURE_CLIENT_ID", &client_id),
            ] {
                if !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                    || id.len() > 128
                {
                    return Err(format!("{what} {id:?} is not an id (a GUID)"));
                }
            }
            let authority = match (&env.authority_host, authority_from_cloud) {
                (Some(host), false) => cloud::with_slash(
                    &cloud::https_endpoint(host)
                        .map_err(|e| format!("AZURE_AUTHORITY_HOST {e}"))?,
                ),
                _ => cloud.authority.clone(),
            };
            let token_url = reqwest::Url::parse(&format!("{authority}{tenant}/oauth2/v2.0/token"))
                .map_err(|_| format!("the authority {authority:?} does not make a token URL"))?;
            Source::Workload {
                token_url,
                tenant,
                client_id,
                scope: cloud.scope(),
                token_file: env
                    .federated_token_file
                    .clone()
                    .unwrap_or_else(|| token_path.to_path_buf()),
            }
        }
    };
    Ok((cloud, source))
}

/// A Key Vault access token and when it expires.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub token: SecretString,
    pub expires: SystemTime,
}

/// Access tokens from a [`Source`], cached and refreshed ahead of expiry.
pub struct Tokens {
    source: Source,
    http: Http,
    /// Locked across an exchange: concurrent reads wait for one exchange.
    held: tokio::sync::Mutex<Option<(AccessToken, Instant)>>,
    /// Exchanges made (Entra or IMDS requests), for tests and the state.
    pub exchanges: std::sync::atomic::AtomicU64,
}

impl Tokens {
    pub fn new(source: Source, http: Http) -> Tokens {
        Tokens {
            source,
            http,
            held: tokio::sync::Mutex::new(None),
            exchanges: Default::default(),
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// A valid token: the held one until its refresh time, else a new one; a failed refresh
    /// falls back to a held token that is still valid.
    pub async fn get(&self, timeout: Duration) -> Result<AccessToken, CredentialError> {
        let mut held = self.held.lock().await;
        if let Some((t, refresh_at)) = held.as_ref() {
            if Instant::now() < *refresh_at {
                return Ok(t.clone());
            }
        }
        self.exchanges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.exchange(timeout).await {
            Ok(t) => {
                *held = Some((t.clone(), refresh_time(t.expires)));
                Ok(t)
            }
            Err(e) => match held.as_ref() {
                Some((t, _)) if t.expires > SystemTime::now() + Duration::from_secs(30) => {
                    tracing::warn!(error = %e, "refreshing the Key Vault token failed; the held one is still valid");
                    Ok(t.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// The token held now, if any (for `--state-dir`).
    pub fn held(&self) -> Option<AccessToken> {
        self.held.try_lock().ok()?.as_ref().map(|(t, _)| t.clone())
    }

    /// A token a previous process obtained from the same source, used until its refresh time.
    /// False when it is already due.
    pub fn adopt(&self, t: AccessToken) -> bool {
        let refresh_at = refresh_time(t.expires);
        if refresh_at <= Instant::now() {
            return false;
        }
        match self.held.try_lock() {
            Ok(mut held) => {
                *held = Some((t, refresh_at));
                true
            }
            Err(_) => false,
        }
    }

    /// Forgets the held token (Key Vault said it is not valid).
    pub async fn forget(&self) {
        *self.held.lock().await = None;
    }

    async fn exchange(&self, timeout: Duration) -> Result<AccessToken, CredentialError> {
        let (call, what, assertion) = match &self.source {
            Source::Workload {
                token_url,
                tenant,
                client_id,
                scope,
                token_file,
            } => {
                let assertion = read_token(
                    token_file,
                    "federated token file (AZURE_FEDERATED_TOKEN_FILE or --token-path)",
                )?;
                let mut form = reqwest::Url::parse("form:").expect("a URL");
                form.query_pairs_mut()
                    .append_pair("client_id", client_id)
                    .append_pair("grant_type", "client_credentials")
                    .append_pair("scope", scope)
                    .append_pair(
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    )
                    .append_pair("client_assertion", assertion.expose());
                let body = form.query().unwrap_or_default().as_bytes().to_vec();
                // The URL's buffer holds the assertion too.
                crate::secret::wipe_string(&mut String::from(form));
                (
                    (reqwest::Method::POST, token_url.clone(), body, true),
                    format!("Entra ID token exchange for client {client_id} in tenant {tenant} at {token_url}"),
                    Some(assertion),
                )
            }
            Source::Imds { url, .. } => (
                (reqwest::Method::GET, url.clone(), Vec::new(), false),
                format!(
                    "managed identity token from IMDS ({})",
                    self.source.describe()
                ),
                None,
            ),
        };
        let (method, url, body, form) = call;
        let mut headers = vec![("Accept".to_string(), "application/json".to_string())];
        if form {
            headers.push((
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ));
        } else {
            headers.push(("Metadata".to_string(), "true".to_string()));
        }
        let answer = self
            .http
            .send(
                Call {
                    method,
                    url,
                    headers: &headers,
                    sensitive: &[],
                    body,
                    limit: MAX_TOKEN_ANSWER,
                },
                timeout,
            )
            .await
            .map_err(|e| match e {
                HttpError::Transport(_) => transient(format!("{what}: {e}")),
                _ => refused(format!("{what}: {e}")),
            })?;
        let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        if answer.status != 200 {
            let code = v
                .get("error")
                .and_then(|e| e.as_str())
                .map(|c| network_text(c, 100))
                .unwrap_or_else(|| "no error code".into());
            let mut description = v
                .get("error_description")
                .and_then(|e| e.as_str())
                .unwrap_or("")
                .to_string();
            // Entra's text ends with trace and correlation ids after the first line.
            if let Some(i) = description.find(" Trace ID:") {
                description.truncate(i);
            }
            if let Some(a) = &assertion {
                description = description.replace(a.expose(), "<the service-account token>");
            }
            let m = format!(
                "{what}: HTTP {} {code}: {}",
                answer.status,
                network_text(description.trim(), MAX_NETWORK_TEXT)
            );
            return Err(if answer.status >= 500 || answer.status == 429 {
                transient(m)
            } else {
                refused(m)
            });
        }
        let token = v
            .get("access_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty() && t.len() <= 16 * 1024)
            .ok_or_else(|| refused(format!("{what}: the answer holds no access_token")))?;
        // Entra gives numbers, IMDS strings.
        let seconds = |name: &str| -> Option<u64> {
            match v.get(name)? {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
        };
        let lifetime = seconds("expires_in")
            .filter(|s| *s > 0)
            .ok_or_else(|| refused(format!("{what}: the answer holds no expires_in")))?;
        let lifetime = Duration::from_secs(lifetime).min(MAX_LIFETIME);
        Ok(AccessToken {
            token: SecretString::new(token.to_string()),
            expires: SystemTime::now() + lifetime,
        })
    }
}

fn transient(message: String) -> CredentialError {
    CredentialError {
        message,
        config: false,
        transient: true,
    }
}

fn refused(message: String) -> CredentialError {
    CredentialError {
        message,
        config: false,
        transient: false,
    }
}

/// When to replace a token that expires at `expires`: five minutes before, or halfway for
/// short lives.
fn refresh_time(expires: SystemTime) -> Instant {
    let left = expires
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let early = if left > REFRESH_BEFORE * 2 {
        left - REFRESH_BEFORE
    } else {
        left / 2
    };
    Instant::now() + early
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::azure::spec::AzureSpec;

    fn spec(cloud: CloudChoice, identity: Identity, tenant: Option<&str>) -> AzureSpec {
        AzureSpec {
            vault_name: "kv".into(),
            cloud,
            tenant_id: tenant.map(str::to_string),
            identity,
            objects: Vec::new(),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> AzureEnv {
        AzureEnv::from_lookup(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn the_authority_is_the_named_clouds_else_the_environments_else_public() {
        let wi = Identity::Workload { client_id: None };
        let default = CloudChoice::Named {
            cloud: cloud::public(),
            explicit: false,
        };
        let e = env(&[
            ("AZURE_CLIENT_ID", "c1"),
            ("AZURE_TENANT_ID", "t1"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
        ]);
        let url = |s: &Source| match s {
            Source::Workload {
                token_url,
                token_file,
                ..
            } => (token_url.to_string(), token_file.display().to_string()),
            _ => panic!(),
        };
        let (_, s) = resolve(&spec(default.clone(), wi.clone(), None), &e, "/t".as_ref()).unwrap();
        assert_eq!(
            url(&s),
            (
                "https://login.microsoftonline.us/t1/oauth2/v2.0/token".into(),
                "/var/run/secrets/azure/tokens/azure-identity-token".into()
            )
        );
        let china = CloudChoice::Named {
            cloud: cloud::named("AzureChinaCloud").unwrap(),
            explicit: true,
        };
        let (c, s) = resolve(&spec(china, wi.clone(), Some("t2")), &e, "/t".as_ref()).unwrap();
        assert_eq!(
            url(&s).0,
            "https://login.chinacloudapi.cn/t2/oauth2/v2.0/token"
        );
        assert_eq!(c.scope(), "https://vault.azure.cn/.default");
        let (_, s) = resolve(
            &spec(default.clone(), wi.clone(), Some("t3")),
            &env(&[("AZURE_CLIENT_ID", "c")]),
            "/tok".as_ref(),
        )
        .unwrap();
        assert_eq!(
            url(&s),
            (
                "https://login.microsoftonline.com/t3/oauth2/v2.0/token".into(),
                "/tok".into()
            )
        );
        let bad = env(&[
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_AUTHORITY_HOST", "http://evil.example/"),
        ]);
        let e = resolve(
            &spec(default.clone(), wi.clone(), Some("t")),
            &bad,
            "/t".as_ref(),
        )
        .unwrap_err();
        assert!(
            e.contains("AZURE_AUTHORITY_HOST") && e.contains("https"),
            "{e}"
        );
        let e = resolve(
            &spec(default.clone(), wi, None),
            &env(&[("AZURE_CLIENT_ID", "c")]),
            "/t".as_ref(),
        )
        .unwrap_err();
        assert!(e.contains("AZURE_TENANT_ID"), "{e}");
        let (_, s) = resolve(
            &spec(
                default,
                Identity::VmManaged {
                    client_id: Some("u1".into()),
                },
                None,
            ),
            &env(&[]),
            "/t".as_ref(),
        )
        .unwrap();
        match s {
            Source::Imds { url, .. } => assert_eq!(
                url.as_str(),
                "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&client_id=u1"
            ),
            _ => panic!(),
        }
    }

    #[test]
    fn tokens_never_show_in_debug() {
        let t = AccessToken {
            token: SecretString::new("eyJ0eXAiOiJKV1Q.secret".into()),
            expires: SystemTime::now(),
        };
        assert!(!format!("{t:?}").contains("eyJ0"));
    }
}
