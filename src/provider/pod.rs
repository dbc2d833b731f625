//! What a provider needs in a pod the webhook injects (docs/webhook.md, "Providers"). Vault's
//! needs are the webhook's defaults (the shared token volume, `VAULT_ADDR`, the CA); a cloud
//! provider's volumes need the service-account token its SDK expects, where it expects it, and
//! its variables. The webhook asks [`super::ProviderSpec::pod_use`] per volume, resolves each
//! provider's [`Use`] once per pod into a [`Grant`], and dresses the injected container with
//! it; it names no provider.

use serde_json::Value;

pub use super::cluster::{Cluster, ServiceAccounts, LOOKUP_TIME};
use super::{aws, azure, gcp};

/// How a volume gets its credentials, as its class or annotations say. All volumes of one pod
/// with the same provider must agree: the injected container has one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Aws(aws::pod::AwsUse),
    Azure(azure::pod::AzureUse),
    /// Google credentials as the pod's containers have them (docs/gcp.md, "Through the
    /// webhook").
    Gcp,
}

/// A [`Use`] resolved at admission: the token and variables the injected container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Aws {
        id: aws::pod::Identity,
        region: Option<String>,
    },
    Azure(azure::pod::AzureGrant),
    Gcp(gcp::pod::GcpGrant),
}

impl Use {
    pub fn provider(&self) -> &'static str {
        match self {
            Use::Aws(_) => "aws",
            Use::Azure(_) => "azure",
            Use::Gcp => "gcp",
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
            Use::Azure(_) => {
                "get the Azure token differently (workload identity, or the node's managed \
                 identity); the injected container has one: make their useVMManagedIdentity \
                 agree, or move one to another pod"
            }
            // One way for every GCP volume: the pod's own.
            Use::Gcp => "get Google credentials differently",
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
            Use::Azure(u) => Ok(Grant::Azure(azure::pod::grant(
                pod, namespace, cluster, *u,
            )?)),
            Use::Gcp => Ok(Grant::Gcp(gcp::pod::identity(pod)?)),
        }
    }
}

impl Grant {
    /// The volumes the pod gains: the provider's projected token, where it needs one.
    pub fn volumes(&self) -> Vec<Value> {
        match self {
            Grant::Aws { id, .. } => vec![serde_json::json!({
                "name": aws::pod::AWS_TOKEN_VOLUME,
                "projected": {"sources": [aws::pod::token_source(id)]},
            })],
            Grant::Azure(_) => vec![serde_json::json!({
                "name": azure::pod::AZURE_TOKEN_VOLUME,
                "projected": {"sources": [azure::pod::token_source()]},
            })],
            Grant::Gcp(_) => Vec::new(),
        }
    }

    /// The injected container's mounts for this provider, read-only.
    pub fn mounts(&self) -> Vec<Value> {
        match self {
            Grant::Aws { id, .. } => vec![serde_json::json!({
                "name": aws::pod::AWS_TOKEN_VOLUME,
                "mountPath": aws::pod::token_dir(id),
                "readOnly": true,
            })],
            Grant::Azure(_) => vec![serde_json::json!({
                "name": azure::pod::AZURE_TOKEN_VOLUME,
                "mountPath": azure::pod::AZURE_TOKEN_DIR,
                "readOnly": true,
            })],
            Grant::Gcp(g) => gcp::pod::mounts(g),
        }
    }

    /// The variables the provider reads in the injected container.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Grant::Aws { id, region } => aws::pod::env(id, region.as_deref()),
            Grant::Azure(g) => azure::pod::env(g),
            Grant::Gcp(g) => gcp::pod::env(g),
        }
    }
}

/// A config error as the webhook says it: where the container would fall back on its
/// environment, the webhook's fallback is one of its flags.
pub fn webhook_message(message: String) -> String {
    aws::pod::region_hint(message)
}
