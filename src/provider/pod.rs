//! What a provider needs in a pod the webhook injects (docs/webhook.md, "Providers"). Vault's
//! needs are the webhook's defaults (the shared token volume, `VAULT_ADDR`, the CA); a cloud
//! provider's volumes need the service-account token its SDK expects, where it expects it, and
//! its variables. The webhook asks [`super::ProviderSpec::pod_use`] per volume, resolves each
//! provider's [`Use`] once per pod into a [`Grant`], and dresses the injected container with
//! it; it names no provider.

use std::time::Duration;

use serde_json::Value;

use crate::net::kube::KubeError;

use super::aws;

/// How long the read of the pod's ServiceAccount may take (class reads have their own 3 s, all
/// of a review's reads end 3.5 s after it arrived; the API server waits 5 s for the webhook).
pub const LOOKUP_TIME: Duration = Duration::from_millis(1500);

/// Added to a refused ServiceAccount read: the base manifests do not allow it, an optional
/// component does (docs/webhook.md, "Manifests").
pub const SERVICE_ACCOUNTS_DENIED_HINT: &str = "the webhook may read ServiceAccounts only with \
     the manifests' component components/service-accounts: add it to your overlay";

/// Reads a ServiceAccount (namespace, name, time allowed) through the Kubernetes API.
pub type ServiceAccounts<'a> =
    &'a (dyn Fn(&str, &str, Duration) -> Result<Value, KubeError> + Send + Sync);

/// What the webhook knows of the cluster that a provider may need at admission.
pub struct Cluster<'a> {
    /// `None`: the webhook has no Kubernetes API access.
    pub service_accounts: Option<ServiceAccounts<'a>>,
    /// `--aws-region`: given to AWS containers as `AWS_REGION`.
    pub aws_region: Option<&'a str>,
}

/// How a volume gets its credentials, as its class or annotations say. All volumes of one pod
/// with the same provider must agree: the injected container has one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Aws(aws::pod::AwsUse),
}

/// A [`Use`] resolved at admission: the token and variables the injected container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Aws {
        id: aws::pod::Identity,
        region: Option<String>,
    },
}

impl Use {
    pub fn provider(&self) -> &'static str {
        match self {
            Use::Aws(_) => "aws",
        }
    }

    /// Why two volumes with this provider but other uses cannot share a container, and the fix.
    pub fn disagreement(&self) -> &'static str {
        match self {
            Use::Aws(_) => {
                "get AWS credentials differently (IRSA, or EKS Pod Identity with another address \
                 type); the injected container has one AWS identity: make their usePodIdentity \
                 and preferredAddressType agree, or move one to another pod"
            }
        }
    }

    /// The credentials the pod gets (reading its ServiceAccount where the provider needs it);
    /// `Err` is the rejection message.
    pub fn resolve(
        &self,
        pod: &Value,
        namespace: &str,
        cluster: &Cluster,
    ) -> Result<Grant, String> {
        match self {
            Use::Aws(u) => Ok(Grant::Aws {
                id: aws::pod::identity(pod, namespace, cluster, *u)?,
                region: cluster.aws_region.map(str::to_string),
            }),
        }
    }
}

impl Grant {
    /// The projected volume holding the provider's token.
    pub fn volume(&self) -> &'static str {
        match self {
            Grant::Aws { .. } => aws::pod::AWS_TOKEN_VOLUME,
        }
    }

    /// Where the injected container mounts [`Grant::volume`].
    pub fn dir(&self) -> &'static str {
        match self {
            Grant::Aws { id, .. } => aws::pod::token_dir(id),
        }
    }

    /// The projected service-account token source of [`Grant::volume`].
    pub fn token_source(&self) -> Value {
        match self {
            Grant::Aws { id, .. } => aws::pod::token_source(id),
        }
    }

    /// The variables the provider reads in the injected container.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Grant::Aws { id, region } => aws::pod::env(id, region.as_deref()),
        }
    }
}

/// A config error as the webhook says it: where the container would fall back on its
/// environment, the webhook's fallback is one of its flags.
pub fn webhook_message(message: String) -> String {
    aws::pod::region_hint(message)
}
