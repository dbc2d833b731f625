//! `provider: aws` in a pod the webhook injects (docs/webhook.md, "AWS"): annotation pods with
//! `secretdrop.dev/provider: aws` and converted CSI volumes whose class says `provider: aws`.
//! The injected container gets AWS credentials the way the AWS provider does:
//!
//! - IRSA: a projected token with audience `sts.amazonaws.com` where EKS puts it,
//!   `AWS_WEB_IDENTITY_TOKEN_FILE`, and `AWS_ROLE_ARN` from the pod's ServiceAccount annotation
//!   `eks.amazonaws.com/role-arn`, read through the Kubernetes API at admission;
//! - EKS Pod Identity (`usePodIdentity`): a token with audience `pods.eks.amazonaws.com`,
//!   `AWS_CONTAINER_CREDENTIALS_FULL_URI` (the agent) and `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
//!
//! Invariants: a role ARN is checked against the ARN grammar before it goes into the pod; the
//! AWS volumes of a pod agree on one identity (the webhook checks that through [`super::super::pod::Use`]).

use serde_json::{json, Value};

use crate::net::kube::KubeError;
use crate::provider::cluster::{Cluster, LOOKUP_TIME};

use super::credentials::{POD_IDENTITY_IPV4, POD_IDENTITY_IPV6};
use super::params::{AddressType, AwsSpec};

pub const IRSA_AUDIENCE: &str = "sts.amazonaws.com";
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";
/// Where EKS mounts the IRSA token (its pod identity webhook's path).
pub const IRSA_DIR: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
pub const IRSA_FILE: &str = "token";
/// Where EKS mounts the Pod Identity token (`crate::provider::aws::credentials::POD_IDENTITY_TOKEN_FILE`).
pub const POD_IDENTITY_DIR: &str = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
pub const POD_IDENTITY_FILE: &str = "eks-pod-identity-token";
/// The projected volume of the AWS token.
pub const AWS_TOKEN_VOLUME: &str = "secretdrop-aws-token";
/// The ServiceAccount annotation naming the IRSA role, as EKS and the AWS provider read it.
pub const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// IAM's limit on a role ARN.
const MAX_ARN: usize = 2048;

/// How an AWS volume gets its credentials, as its class or annotations say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsUse {
    pub pod_identity: bool,
    pub ipv6: bool,
}

impl AwsUse {
    pub fn of(spec: &AwsSpec) -> AwsUse {
        AwsUse {
            pod_identity: spec.use_pod_identity,
            ipv6: spec.preferred_address_type == AddressType::Ipv6,
        }
    }
}

/// The credentials the injected container is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Irsa { role_arn: String },
    PodIdentity { ipv6: bool },
}

/// The pod's identity for `using`: Pod Identity needs nothing; IRSA reads the pod's
/// ServiceAccount for its role. `Err` is the rejection message.
pub fn identity(
    pod: &Value,
    namespace: &str,
    cluster: &Cluster,
    using: AwsUse,
) -> Result<Identity, String> {
    if using.pod_identity {
        return Ok(Identity::PodIdentity { ipv6: using.ipv6 });
    }
    let sa = pod
        .pointer("/spec/serviceAccountName")
        .or_else(|| pod.pointer("/spec/serviceAccount"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let namespace = Some(namespace)
        .filter(|n| !n.is_empty())
        .or_else(|| pod.pointer("/metadata/namespace").and_then(Value::as_str))
        .unwrap_or("default");
    let Some(lookup) = cluster.service_accounts else {
        return Err(format!(
            "provider aws with IRSA: cannot read ServiceAccount {namespace}/{sa} for its \
             {ROLE_ANNOTATION} annotation: this webhook has no Kubernetes API access (run it in \
             a cluster or give it --kubeconfig), or use EKS Pod Identity (usePodIdentity)"
        ));
    };
    let found = match lookup(namespace, sa, LOOKUP_TIME) {
        Ok(found) => found,
        Err(KubeError::NotFound) => {
            return Err(format!(
                "provider aws with IRSA: ServiceAccount {sa:?} not found in namespace \
                 {namespace:?}; IRSA takes the role from its {ROLE_ANNOTATION} annotation"
            ))
        }
        Err(e @ KubeError::Denied { .. }) => {
            return Err(format!(
                "provider aws with IRSA: cannot read ServiceAccount {namespace}/{sa}: {e}; {}",
                crate::provider::cluster::SERVICE_ACCOUNTS_DENIED_HINT
            ))
        }
        Err(e) => {
            return Err(format!(
                "provider aws with IRSA: cannot read ServiceAccount {namespace}/{sa}: {e}"
            ))
        }
    };
    let arn = found
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ROLE_ANNOTATION))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            format!(
                "provider aws with IRSA: ServiceAccount {namespace}/{sa} has no {ROLE_ANNOTATION} \
                 annotation: annotate it with the IAM role to assume (e.g. \
                 arn:aws:iam::111122223333:role/app), or use EKS Pod Identity (usePodIdentity)"
            )
        })?;
    let role_arn = check_role_arn(arn).map_err(|m| {
        format!("provider aws with IRSA: ServiceAccount {namespace}/{sa}: {ROLE_ANNOTATION}: {m}")
    })?;
    Ok(Identity::Irsa { role_arn })
}

/// An IAM role ARN: `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`, with IAM's characters.
pub fn check_role_arn(arn: &str) -> Result<String, String> {
    let shown: String = arn.chars().take(80).collect();
    let bad = || {
        format!(
            "{shown:?} is not an IAM role ARN: expected arn:aws:iam::<12-digit account>:role/<name> \
             (letters, digits and +=,.@_-/)"
        )
    };
    if arn.len() > MAX_ARN {
        return Err(format!(
            "{shown:?}...: longer than IAM's {MAX_ARN} characters"
        ));
    }
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    let partition_ok = !partition.is_empty()
        && partition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-')
        && partition.starts_with("aws");
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let name = resource.strip_prefix("role/").unwrap_or("");
    let name_ok = !name.is_empty()
        && !name
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b));
    if partition_ok && account_ok && name_ok {
        Ok(arn.to_string())
    } else {
        Err(bad())
    }
}

/// A config error about a missing region, as the webhook says it: its fallback is
/// `--aws-region`, not the environment the message names for the sidecar.
pub fn region_hint(message: String) -> String {
    message.replace(
        "neither AWS_REGION nor AWS_DEFAULT_REGION is set",
        "this webhook has no --aws-region",
    )
}

/// Where the injected container mounts the token of `id`: where EKS puts it.
pub fn token_dir(id: &Identity) -> &'static str {
    match id {
        Identity::Irsa { .. } => IRSA_DIR,
        Identity::PodIdentity { .. } => POD_IDENTITY_DIR,
    }
}

/// The projected token source of `id`.
pub fn token_source(id: &Identity) -> Value {
    let (path, audience) = match id {
        Identity::Irsa { .. } => (IRSA_FILE, IRSA_AUDIENCE),
        Identity::PodIdentity { .. } => (POD_IDENTITY_FILE, POD_IDENTITY_AUDIENCE),
    };
    // EKS projects both with a one-day life; kubelet renews at 80%.
    json!({"serviceAccountToken": {"path": path, "expirationSeconds": 86400, "audience": audience}})
}

/// The AWS SDK variables of `id`, and the region the webhook was given (`--aws-region`).
pub fn env(id: &Identity, region: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = match id {
        Identity::Irsa { role_arn } => vec![
            ("AWS_ROLE_ARN", role_arn.clone()),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                format!("{IRSA_DIR}/{IRSA_FILE}"),
            ),
        ],
        Identity::PodIdentity { ipv6 } => vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                if *ipv6 {
                    POD_IDENTITY_IPV6
                } else {
                    POD_IDENTITY_IPV4
                }
                .to_string(),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                format!("{POD_IDENTITY_DIR}/{POD_IDENTITY_FILE}"),
            ),
        ],
    };
    if let Some(r) = region {
        env.push(("AWS_REGION", r.to_string()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 403 on the ServiceAccount names the component that grants the read; other failures
    /// do not blame it.
    #[test]
    fn a_denied_service_account_read_names_the_component() {
        let using = AwsUse {
            pod_identity: false,
            ipv6: false,
        };
        let pod = serde_json::json!({"spec": {"serviceAccountName": "app"}});
        let refuse = |e: KubeError| {
            let lookup = move |_: &str, _: &str, _: std::time::Duration| Err(e.clone());
            let cluster = Cluster {
                service_accounts: Some(&lookup),
                aws_region: None,
            };
            identity(&pod, "team", &cluster, using).unwrap_err()
        };
        let denied = refuse(KubeError::Denied {
            status: 403,
            message: "serviceaccounts \"app\" is forbidden".into(),
        });
        assert!(
            denied.contains("team/app")
                && denied.contains("HTTP 403")
                && denied.contains("components/service-accounts"),
            "{denied}"
        );
        let failed = refuse(KubeError::Failed("connection refused".into()));
        assert!(!failed.contains("components/"), "{failed}");
    }

    #[test]
    fn role_arns_follow_the_grammar() {
        for ok in [
            "arn:aws:iam::111122223333:role/app",
            "arn:aws-cn:iam::111122223333:role/team/app",
            "arn:aws-us-gov:iam::111122223333:role/a+b=c,d.e@f_g-h",
        ] {
            assert_eq!(check_role_arn(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "",
            "app",
            "arn:aws:iam::1111:role/app",
            "arn:aws:iam::111122223333:user/app",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:sts::111122223333:role/app",
            "arn:aws:iam:us-east-1:111122223333:role/app",
            "arn:aws:iam::111122223333:role/app\nAWS_ROLE_ARN=x",
            "arn:aws:iam::111122223333:role/a b",
            "arn:evil:iam::111122223333:role/app",
            "arn:aws:iam::111122223333:role/app//x",
        ] {
            let m = check_role_arn(bad).unwrap_err();
            assert!(m.contains("not an IAM role ARN"), "{bad:?}: {m}");
        }
        let long = format!("arn:aws:iam::111122223333:role/{}", "a".repeat(3000));
        assert!(check_role_arn(&long).unwrap_err().contains("longer than"));
    }
}
