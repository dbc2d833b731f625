//! What the webhook knows of the cluster that a provider may need when it admits a pod
//! (docs/webhook.md): the pod's ServiceAccount, read through the Kubernetes API, and the
//! webhook's own settings for providers. A leaf: the providers' `pod.rs` files and
//! [`super::pod`] both use it.

use std::time::Duration;

use serde_json::Value;

use crate::net::kube::KubeError;

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
