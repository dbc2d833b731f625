//! From an [`AzureSpec`] to an [`AzureSnapshot`]: one GET per object (and with
//! `objectVersionHistory` the version list plus one GET per version kept), concurrently, all
//! or nothing. Errors name the object, the vault and the identity, with Key Vault's or Entra's
//! code and message.

// Errors carry their context by value; they are built once, on the way out.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;

use crate::secret::SecretString;

use super::auth::{self, AzureEnv, Tokens};
use super::keyvault::{version_of, KvError, Vault};
use super::pem::Jwk;
use super::spec::{describe, AzureObject, AzureSpec, ObjectType};

/// Concurrent requests at most.
const MAX_CONCURRENT: usize = 8;

/// One version of an object, as Key Vault gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Secret {
        value: SecretString,
        content_type: Option<String>,
        /// The secret backs a certificate (its answer has a `kid`).
        cert_backed: bool,
    },
    Key(JwkFields),
    /// The certificate's DER (`cer`).
    Cert(Vec<u8>),
}

/// A JWK's public fields, comparable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwkFields {
    pub kty: String,
    pub n: Option<String>,
    pub e: Option<String>,
    pub crv: Option<String>,
    pub x: Option<String>,
    pub y: Option<String>,
}

impl JwkFields {
    pub fn jwk(&self) -> Jwk {
        Jwk {
            kid: None,
            kty: self.kty.clone(),
            n: self.n.clone(),
            e: self.e.clone(),
            crv: self.crv.clone(),
            x: self.x.clone(),
            y: self.y.clone(),
        }
    }
}

/// One object's versions: the current (or pinned) one, or with history the versions kept,
/// newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub versions: Vec<(String, Raw)>,
}

/// Values in the order of [`AzureSpec::objects`].
#[derive(Debug, Clone, PartialEq)]
pub struct AzureSnapshot {
    pub objects: Vec<Fetched>,
}

impl AzureSnapshot {
    /// Same versions and content: nothing to render.
    pub fn same_content(&self, other: &AzureSnapshot) -> bool {
        self == other
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AzureError {
    /// Something the user fixes in the class or the pod's environment (exit 2).
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Internal(String),
    #[error("{what} in key vault {vault} as {who}: {error}{hint}")]
    Request {
        what: String,
        vault: String,
        who: String,
        error: KvError,
        hint: &'static str,
    },
}

impl AzureError {
    pub fn is_config(&self) -> bool {
        matches!(self, AzureError::Config(_))
    }

    /// A short label for metrics and logs.
    pub fn cause(&self) -> &'static str {
        match self {
            AzureError::Config(_) => "config",
            AzureError::Internal(_) => "internal",
            AzureError::Request { error, .. } => match error.status {
                Some(401) | Some(403) => "denied",
                Some(404) => "not_found",
                None if error.code == "Token" && !error.transient => "denied",
                Some(s) if (400..500).contains(&s) && s != 429 => "rejected",
                Some(200) => "rejected",
                _ => "unavailable",
            },
        }
    }

    pub fn transient(&self) -> bool {
        matches!(self, AzureError::Request { error, .. } if error.transient)
    }
}

impl From<AzureError> for crate::error::Error {
    fn from(e: AzureError) -> Self {
        crate::error::Error::failed(e.is_config(), e)
    }
}

fn hint(e: &KvError) -> &'static str {
    match e.status {
        Some(403) => {
            " (grant this identity get on the object's kind (secrets, keys or certificates) in \
             the vault's access policy or RBAC role, and list for objectVersionHistory)"
        }
        Some(404) => " (check objectName, objectType and objectVersion)",
        Some(401) => " (Key Vault did not accept the token: check the cloud and tenant)",
        None if e.code == "Token" && e.message.contains("AADSTS7002") => {
            " (the federated identity credential of this client must name the cluster's issuer, \
             the subject system:serviceaccount:NAMESPACE:SERVICEACCOUNT and the audience \
             api://AzureADTokenExchange)"
        }
        _ => "",
    }
}

struct Inner {
    vault: Vault,
    spec: AzureSpec,
    who: String,
    vault_shown: String,
}

/// Performs the reads of one spec; cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

impl Fetcher {
    /// A fetcher for `spec` in this environment; `token_path` is `--token-path`.
    pub fn new(
        spec: &AzureSpec,
        env: &AzureEnv,
        token_path: &std::path::Path,
    ) -> Result<Fetcher, AzureError> {
        let (cloud, source) = auth::resolve(spec, env, token_path).map_err(AzureError::Config)?;
        // Trust: the system roots, or SSL_CERT_FILE (the AWS provider's client, docs/azure.md).
        let http = crate::net::cloud::Http::new(None)
            .map_err(|e| AzureError::Config(format!("Azure HTTP client (SSL_CERT_FILE): {e}")))?;
        let base = reqwest::Url::parse(&format!(
            "https://{}.{}/",
            spec.vault_name, cloud.dns_suffix
        ))
        .map_err(|_| {
            AzureError::Config(format!(
                "the vault name {:?} and DNS suffix {:?} make no URL",
                spec.vault_name, cloud.dns_suffix
            ))
        })?;
        let who = source.describe();
        let vault_shown = format!(
            "{} ({})",
            spec.vault_name,
            base.as_str().trim_end_matches('/')
        );
        Ok(Fetcher {
            inner: Arc::new(Inner {
                vault: Vault::new(base, http.clone(), Tokens::new(source, http)),
                spec: spec.clone(),
                who,
                vault_shown,
            }),
        })
    }

    pub fn tokens(&self) -> &Tokens {
        &self.inner.vault.tokens
    }

    pub fn who(&self) -> &str {
        &self.inner.who
    }

    /// The vault's URL.
    pub fn vault_url(&self) -> &str {
        self.inner.vault.base.as_str()
    }

    pub fn requests(&self) -> u64 {
        self.inner
            .vault
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn exchanges(&self) -> u64 {
        self.tokens()
            .exchanges
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every object, or the first failure.
    pub async fn fetch(&self, deadline: Instant) -> Result<AzureSnapshot, AzureError> {
        let n = self.inner.spec.objects.len();
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let (me, limit) = (self.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                me.object(i, deadline).await.map(|f| (i, f))
            });
        }
        let mut objects: Vec<Option<Fetched>> = vec![None; n];
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok((i, f))) => objects[i] = Some(f),
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(AzureError::Internal(format!("a read task failed: {e}"))),
            }
        }
        let objects = objects
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| AzureError::Internal("a read task did not finish".into()))?;
        Ok(AzureSnapshot { objects })
    }

    fn error(&self, o: &AzureObject, error: KvError) -> AzureError {
        AzureError::Request {
            what: format!("object {:?} ({})", o.file, describe(o)),
            vault: self.inner.vault_shown.clone(),
            who: self.inner.who.clone(),
            hint: hint(&error),
            error,
        }
    }

    async fn object(&self, i: usize, deadline: Instant) -> Result<Fetched, AzureError> {
        let o = &self.inner.spec.objects[i];
        let vault = &self.inner.vault;
        let Some(n) = o.history else {
            let answer = vault
                .object(o.kind, &o.name, o.version.as_deref(), deadline)
                .await
                .map_err(|e| self.error(o, e))?;
            let (version, raw) = parse(o.kind, &answer).map_err(|m| self.error(o, invalid(m)))?;
            return Ok(Fetched {
                versions: vec![(version, raw)],
            });
        };
        let mut items = vault
            .versions(o.kind, &o.name, deadline)
            .await
            .map_err(|e| self.error(o, e))?;
        items.retain(|v| v.enabled);
        // Newest first; equal times keep the list's order.
        items.sort_by_key(|v| std::cmp::Reverse(v.created));
        let start = match &o.version {
            None => 0,
            Some(v) => items.iter().position(|i| &i.version == v).ok_or_else(|| {
                self.error(
                    o,
                    KvError {
                        status: None,
                        code: "VersionNotFound".into(),
                        message: format!(
                            "objectVersion {v} is not among the object's enabled versions"
                        ),
                        transient: false,
                    },
                )
            })?,
        };
        // The provider writes up to N+1 versions (docs/azure.md, "Version history").
        let kept: Vec<String> = items
            .into_iter()
            .skip(start)
            .take(n as usize + 1)
            .map(|i| i.version)
            .collect();
        let mut versions = Vec::with_capacity(kept.len());
        for v in kept {
            let answer = vault
                .object(o.kind, &o.name, Some(&v), deadline)
                .await
                .map_err(|e| self.error(o, e))?;
            let (_, raw) = parse(o.kind, &answer).map_err(|m| self.error(o, invalid(m)))?;
            versions.push((v, raw));
        }
        Ok(Fetched { versions })
    }
}

fn invalid(message: String) -> KvError {
    KvError {
        status: Some(200),
        code: "InvalidAnswer".into(),
        message,
        transient: false,
    }
}

/// The version and content of a GET answer.
fn parse(kind: ObjectType, v: &serde_json::Value) -> Result<(String, Raw), String> {
    let text = |k: &str| v.get(k).and_then(|x| x.as_str());
    match kind {
        ObjectType::Secret => {
            let version = text("id")
                .and_then(version_of)
                .ok_or("the secret's id is missing or malformed")?;
            let value = text("value").ok_or("the secret has no value")?;
            Ok((
                version,
                Raw::Secret {
                    value: SecretString::new(value.to_string()),
                    content_type: text("contentType").map(str::to_string),
                    cert_backed: text("kid").is_some_and(|k| !k.is_empty()),
                },
            ))
        }
        ObjectType::Key => {
            let key = v.get("key").ok_or("the answer has no key")?;
            let jwk: Jwk =
                serde_json::from_value(key.clone()).map_err(|_| "the key is not a JWK")?;
            let version = jwk
                .kid
                .as_deref()
                .and_then(version_of)
                .ok_or("the key's kid is missing or malformed")?;
            Ok((
                version,
                Raw::Key(JwkFields {
                    kty: jwk.kty,
                    n: jwk.n,
                    e: jwk.e,
                    crv: jwk.crv,
                    x: jwk.x,
                    y: jwk.y,
                }),
            ))
        }
        ObjectType::Cert => {
            let version = text("id")
                .and_then(version_of)
                .ok_or("the certificate's id is missing or malformed")?;
            let cer = text("cer").ok_or("the certificate has no cer")?;
            let der = base64::engine::general_purpose::STANDARD
                .decode(cer)
                .map_err(|_| "the certificate's cer is not base64")?;
            Ok((version, Raw::Cert(der)))
        }
    }
}
