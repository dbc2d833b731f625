//! From an [`AwsSpec`] to an [`AwsSnapshot`]: every Secrets Manager object with its own
//! `GetSecretValue`, SSM objects in `GetParameters` batches of ten, concurrently.
//!
//! Failover (docs/aws.md): the primary region answers unless it fails with something other
//! than a 4xx refusal (network, 5xx, throttling) after a few attempts; only then is the
//! failover region asked, and for that object alone. A 4xx is final: it names the object, the
//! name or ARN, the region and the role. A snapshot is complete or not returned at all.

// Errors carry their context by value; they are built once, on the way out.
#![allow(clippy::result_large_err)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::provider::aws::params::{AwsSpec, ObjectRef, Service};
use crate::retry::Backoff;
use crate::secret::SecretBytes;

use super::api::{self, Api, ApiError};
use super::credentials::{self, AwsEnv, Credentials};
use super::{secrets_manager, ssm};
use crate::net::cloud::Http;

/// Concurrent requests at most.
const MAX_CONCURRENT: usize = 16;
/// With a failover region, the primary gets this many attempts before it is passed over.
const PRIMARY_ATTEMPTS: u32 = 3;

/// One object's value as fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub value: SecretBytes,
    /// Secrets Manager VersionId, SSM Version.
    pub version: String,
    /// The region that answered.
    pub region: String,
}

/// Values in the order of [`AwsSpec::objects`].
#[derive(Debug, Clone, PartialEq)]
pub struct AwsSnapshot {
    pub values: Vec<Fetched>,
}

impl AwsSnapshot {
    /// Same versions and bytes: nothing to render.
    pub fn same_content(&self, other: &AwsSnapshot) -> bool {
        self.values.len() == other.values.len()
            && self
                .values
                .iter()
                .zip(&other.values)
                .all(|(a, b)| a.version == b.version && a.value == b.value)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AwsError {
    /// Something the user fixes in the config or the pod's environment (exit 2).
    #[error("{0}")]
    Config(String),
    /// A fault of secretdrop itself (a read task that did not finish): exit 1.
    #[error("{0}")]
    Internal(String),
    #[error("{what} in {region} as {who}: {error}{hint}")]
    Request {
        what: String,
        region: String,
        who: String,
        error: String,
        hint: &'static str,
        code: String,
        status: Option<u16>,
    },
}

impl AwsError {
    pub fn is_config(&self) -> bool {
        matches!(self, AwsError::Config(_))
    }

    /// A short label for metrics and logs.
    pub fn cause(&self) -> &'static str {
        match self {
            AwsError::Config(_) => "config",
            AwsError::Internal(_) => "internal",
            AwsError::Request { code, status, .. } => match (code.as_str(), status) {
                ("AccessDeniedException", _) | (_, Some(403)) => "denied",
                ("ResourceNotFoundException" | "ParameterNotFound" | "InvalidParameters", _) => {
                    "not_found"
                }
                (_, Some(s)) if (400..500).contains(s) => "rejected",
                _ => "unavailable",
            },
        }
    }
}

impl From<AwsError> for crate::error::Error {
    fn from(e: AwsError) -> Self {
        crate::error::Error::failed(e.is_config(), e)
    }
}

fn hint(code: &str) -> &'static str {
    match code {
        "AccessDeniedException" | "AccessDenied" => {
            " (the role's policy does not allow this action on this resource, or a KMS key \
             policy forbids decryption)"
        }
        "ResourceNotFoundException" | "InvalidParameters" | "ParameterNotFound" => {
            " (check the name or ARN, the region, and objectVersion / objectVersionLabel)"
        }
        "UnrecognizedClientException" | "InvalidSignatureException" => {
            " (the credentials were not accepted: check the role's trust policy and the endpoint)"
        }
        _ => "",
    }
}

struct Inner {
    http: Http,
    creds: Credentials,
    spec: AwsSpec,
    secrets_manager: Api,
    ssm: Api,
    requests: AtomicU64,
    quiet: std::sync::atomic::AtomicBool,
}

/// Performs the reads of one spec; cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

/// One unit of work: a Secrets Manager object or an SSM batch (object indexes).
enum Job {
    Secret(usize),
    Parameters(Vec<usize>),
}

impl Fetcher {
    pub fn new(spec: &AwsSpec, env: &AwsEnv) -> Result<Fetcher, AwsError> {
        let http = Http::new(env.ca_bundle.as_deref())
            .map_err(|e| AwsError::Config(format!("AWS HTTP client (AWS_CA_BUNDLE): {e}")))?;
        let source = credentials::source(
            env,
            spec.use_pod_identity,
            spec.preferred_address_type,
            &spec.region,
        )
        .map_err(|e| AwsError::Config(e.message))?;
        let regions: Vec<&String> = std::iter::once(&spec.region)
            .chain(spec.failover_region.as_ref())
            .collect();
        // Each region's own endpoint, unless AWS_ENDPOINT_URL(_SERVICE) names one for all.
        let endpoints = |given: Option<&String>, service: &str, var: &str| {
            regions
                .iter()
                .map(|r| {
                    credentials::endpoint(given.or(env.endpoint_url.as_ref()), service, r)
                        .map(|u| (r.to_string(), u))
                        .map_err(|e| AwsError::Config(format!("{var}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let secrets_manager = Api {
            signing_name: "secretsmanager",
            target_prefix: "secretsmanager",
            endpoints: endpoints(
                env.endpoint_url_secrets_manager.as_ref(),
                "secretsmanager",
                "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            )?,
        };
        let ssm = Api {
            signing_name: "ssm",
            target_prefix: "AmazonSSM",
            endpoints: endpoints(env.endpoint_url_ssm.as_ref(), "ssm", "AWS_ENDPOINT_URL_SSM")?,
        };
        Ok(Fetcher {
            inner: Arc::new(Inner {
                creds: Credentials::new(source, http.clone()),
                http,
                spec: spec.clone(),
                secrets_manager,
                ssm,
                requests: AtomicU64::new(0),
                quiet: Default::default(),
            }),
        })
    }

    /// Retries are logged at debug level only (the sidecar reports state changes itself).
    pub fn quiet(self) -> Fetcher {
        self.inner.quiet.store(true, Ordering::Relaxed);
        self
    }

    /// Where `service` (`secretsmanager` or `ssm`) is asked in `region`.
    pub fn endpoint(&self, service: &str, region: &str) -> Option<String> {
        let api = if service == "ssm" {
            &self.inner.ssm
        } else {
            &self.inner.secrets_manager
        };
        api.endpoint(region).map(|u| u.to_string())
    }

    /// Secrets Manager and SSM requests sent so far (each attempt counts).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Credential exchanges (STS calls or agent GETs) so far.
    pub fn credential_exchanges(&self) -> u64 {
        self.inner.creds.exchanges.load(Ordering::Relaxed)
    }

    /// The credentials this fetcher signs with (held keys, adoption of recorded ones).
    pub fn credentials(&self) -> &Credentials {
        &self.inner.creds
    }

    pub fn who(&self) -> String {
        self.inner.creds.source().describe()
    }

    /// Every object, or the first failure.
    pub async fn fetch(&self, deadline: Instant) -> Result<AwsSnapshot, AwsError> {
        let spec = &self.inner.spec;
        let mut jobs = Vec::new();
        let ssm_objects: Vec<usize> = (0..spec.objects.len())
            .filter(|&i| spec.objects[i].service == Service::Ssm)
            .collect();
        for chunk in ssm_objects.chunks(ssm::BATCH) {
            jobs.push(Job::Parameters(chunk.to_vec()));
        }
        jobs.extend(
            (0..spec.objects.len())
                .filter(|&i| spec.objects[i].service == Service::SecretsManager)
                .map(Job::Secret),
        );
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
        let mut tasks = tokio::task::JoinSet::new();
        for job in jobs {
            let (me, limit) = (self.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                match job {
                    Job::Secret(i) => me.secret(i, deadline).await.map(|f| vec![(i, f)]),
                    Job::Parameters(batch) => me.parameters(&batch, deadline).await,
                }
            });
        }
        let mut values: Vec<Option<Fetched>> = vec![None; spec.objects.len()];
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(list)) => {
                    for (i, f) in list {
                        values[i] = Some(f);
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(AwsError::Internal(format!("a read task failed: {e}"))),
            }
        }
        let values = values
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| AwsError::Internal("a read task did not finish".into()))?;
        Ok(AwsSnapshot { values })
    }

    async fn secret(&self, i: usize, deadline: Instant) -> Result<Fetched, AwsError> {
        let o = &self.inner.spec.objects[i];
        let what = format!("object {:?} (secretsmanager {})", o.file, o.primary.name);
        let refs = |failover: bool| -> &ObjectRef {
            match (&o.failover, failover) {
                (Some(f), true) => f,
                _ => &o.primary,
            }
        };
        let (answer, region) = self
            .in_regions(
                &what,
                deadline,
                &self.inner.secrets_manager,
                secrets_manager::OPERATION,
                &|failover| secrets_manager::request(refs(failover)),
            )
            .await?;
        let (value, version) = secrets_manager::value_of(&answer).map_err(|m| {
            self.error(
                &what,
                &region,
                ApiError {
                    status: Some(200),
                    code: "InvalidAnswer".into(),
                    message: m,
                    transient: false,
                },
            )
        })?;
        Ok(Fetched {
            value,
            version,
            region,
        })
    }

    async fn parameters(
        &self,
        batch: &[usize],
        deadline: Instant,
    ) -> Result<Vec<(usize, Fetched)>, AwsError> {
        let objects = &self.inner.spec.objects;
        let names = |failover: bool| -> Vec<String> {
            let mut v: Vec<String> = Vec::new();
            for &i in batch {
                let o = &objects[i];
                let r = match (&o.failover, failover) {
                    (Some(f), true) => f,
                    _ => &o.primary,
                };
                let n = r.ssm_name();
                if !v.contains(&n) {
                    v.push(n);
                }
            }
            v
        };
        let what = if batch.len() == 1 {
            format!(
                "object {:?} (ssm parameter {})",
                objects[batch[0]].file,
                objects[batch[0]].primary.ssm_name()
            )
        } else {
            format!(
                "ssm parameters {}",
                batch
                    .iter()
                    .map(|&i| objects[i].primary.ssm_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let (answer, region) = self
            .in_regions(
                &what,
                deadline,
                &self.inner.ssm,
                ssm::OPERATION,
                &|failover| ssm::request(&names(failover)),
            )
            .await?;
        let failover = self.inner.spec.failover_region.as_ref() == Some(&region);
        let asked = names(failover);
        let values = ssm::values_of(&asked, &answer).map_err(|m| {
            let code = if m.starts_with("InvalidParameters") {
                "InvalidParameters"
            } else {
                "InvalidAnswer"
            };
            self.error(
                &what,
                &region,
                ApiError {
                    status: Some(200),
                    code: code.into(),
                    message: m,
                    transient: false,
                },
            )
        })?;
        Ok(batch
            .iter()
            .map(|&i| {
                let o = &objects[i];
                let r = match (&o.failover, failover) {
                    (Some(f), true) => f,
                    _ => &o.primary,
                };
                let at = asked.iter().position(|n| *n == r.ssm_name()).unwrap_or(0);
                let (value, version) = values[at].clone();
                (
                    i,
                    Fetched {
                        value,
                        version,
                        region: region.clone(),
                    },
                )
            })
            .collect())
    }

    fn error(&self, what: &str, region: &str, e: ApiError) -> AwsError {
        AwsError::Request {
            what: what.to_string(),
            region: region.to_string(),
            who: self.who(),
            hint: hint(&e.code),
            error: e.to_string(),
            code: e.code,
            status: e.status,
        }
    }

    /// Calls `operation` with `body(failover)` in the primary region, retrying transient
    /// failures; with a failover region, after [`PRIMARY_ATTEMPTS`] transient failures, in the
    /// failover region until `deadline`. Returns the answer and the region that gave it. (Not
    /// generic over the call: one copy in the binary for both services.)
    async fn in_regions(
        &self,
        what: &str,
        deadline: Instant,
        api: &Api,
        operation: &str,
        body: &(dyn Fn(bool) -> serde_json::Value + Sync),
    ) -> Result<(serde_json::Value, String), AwsError> {
        let spec = &self.inner.spec;
        let mut regions: Vec<(&str, bool)> = vec![(spec.region.as_str(), false)];
        if let Some(f) = &spec.failover_region {
            regions.push((f.as_str(), true));
        }
        let mut last = None;
        for (n, (region, failover)) in regions.iter().enumerate() {
            let is_last = n + 1 == regions.len();
            let mut backoff = Backoff::default();
            let mut failures = 0u32;
            loop {
                let remaining = deadline.saturating_duration_since(Instant::now());
                self.inner.requests.fetch_add(1, Ordering::Relaxed);
                let request = body(*failover);
                let call = api::call(
                    &self.inner.http,
                    &self.inner.creds,
                    api,
                    region,
                    operation,
                    &request,
                    remaining,
                );
                match call.await {
                    Ok(v) => {
                        if *failover {
                            tracing::warn!(what, region, "answered by the failover region");
                        }
                        return Ok((v, region.to_string()));
                    }
                    Err(e) if !e.transient => return Err(self.error(what, region, e)),
                    Err(e) => {
                        failures += 1;
                        let give_up_region = !is_last && failures >= PRIMARY_ATTEMPTS;
                        let delay = if give_up_region {
                            None
                        } else {
                            backoff.delay_before(deadline, None)
                        };
                        match delay {
                            Some(d) => {
                                if self.inner.quiet.load(Ordering::Relaxed) {
                                    tracing::debug!(what, region, error = %e, "AWS unavailable, retrying");
                                } else {
                                    tracing::warn!(what, region, error = %e, "AWS unavailable, retrying");
                                }
                                tokio::time::sleep(d).await;
                            }
                            None => {
                                last = Some(self.error(what, region, e));
                                break;
                            }
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(last.unwrap_or_else(|| AwsError::Internal(format!("{what}: no region to ask"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::aws::params::AddressType;

    fn spec() -> AwsSpec {
        AwsSpec {
            region: "us-west-2".into(),
            failover_region: Some("us-east-2".into()),
            use_pod_identity: false,
            preferred_address_type: AddressType::Auto,
            objects: Vec::new(),
        }
    }

    fn irsa_env(extra: &[(&str, &str)]) -> AwsEnv {
        let vars: Vec<(String, String)> = [
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        AwsEnv::from_lookup(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn each_region_is_asked_at_its_own_endpoint_unless_one_is_configured() {
        let f = Fetcher::new(&spec(), &irsa_env(&[])).unwrap();
        assert_eq!(
            f.endpoint("secretsmanager", "us-east-2").unwrap(),
            "https://secretsmanager.us-east-2.amazonaws.com/"
        );
        assert_eq!(
            f.endpoint("ssm", "us-west-2").unwrap(),
            "https://ssm.us-west-2.amazonaws.com/"
        );
        let f = Fetcher::new(
            &spec(),
            &irsa_env(&[
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
                ("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9999"),
            ]),
        )
        .unwrap();
        assert_eq!(
            f.endpoint("secretsmanager", "us-east-2").unwrap(),
            "http://127.0.0.1:4566/"
        );
        assert_eq!(
            f.endpoint("ssm", "us-east-2").unwrap(),
            "http://127.0.0.1:9999/"
        );
        assert!(Fetcher::new(&spec(), &AwsEnv::default())
            .err()
            .unwrap()
            .is_config());
    }
}
