//! The AWS provider (docs/aws.md): Secrets Manager and SSM Parameter Store, with the
//! credentials an AWS SDK finds in a pod (IRSA, EKS Pod Identity), signed with SigV4.
//!
//! One file per concern: [`sigv4`] signs, [`credentials`] obtains and refreshes keys,
//! [`http`] is the bounded HTTP client, [`secrets_manager`] and [`ssm`] are the two APIs,
//! [`jmespath`] the expression subset, [`fetch`] turns an [`crate::provider::aws::params::AwsSpec`] into
//! values with failover, and [`render`] turns those into a [`crate::render::Payload`].

pub mod api;
pub mod credentials;
mod descriptors;
pub mod fetch;
pub mod jmespath;
pub mod params;
pub mod pod;
pub mod render;
pub mod secrets_manager;
pub mod session;
pub mod sigv4;
pub mod spec;
pub mod ssm;

use crate::provider::aws::params::{AwsSpec, ObjectRef, Service};
use crate::provider::FileSpec;

/// Every file: each object's own, then its jmesPath entries'.
pub fn files(spec: &AwsSpec) -> Vec<FileSpec> {
    spec.objects
        .iter()
        .flat_map(|o| {
            std::iter::once((o.file.clone(), o.mode))
                .chain(o.jmes.iter().map(|j| (j.file.clone(), j.mode)))
                .map(|(name, mode)| FileSpec {
                    name,
                    mode,
                    owner: o.owner,
                    group: o.group,
                })
        })
        .collect()
}

/// Volumes with the same regions and the same way of getting credentials share one set of
/// credentials (one STS exchange).
pub fn shares_session(a: &AwsSpec, b: &AwsSpec) -> bool {
    a.region == b.region
        && a.failover_region == b.failover_region
        && a.use_pod_identity == b.use_pod_identity
        && a.preferred_address_type == b.preferred_address_type
}

/// One spec fetching every member's objects; file names prefixed with the member's index.
pub fn merge(specs: Vec<AwsSpec>) -> AwsSpec {
    let mut merged = AwsSpec {
        objects: Vec::new(),
        ..specs[0].clone()
    };
    for (member, spec) in specs.into_iter().enumerate() {
        for mut o in spec.objects {
            o.file = crate::provider::member_prefix(member, &o.file);
            for j in &mut o.jmes {
                j.file = crate::provider::member_prefix(member, &j.file);
            }
            merged.objects.push(o);
        }
    }
    merged
}

/// `secretdrop check` for an AWS spec: regions, credentials source, and each file with the
/// object it comes from (no values).
pub fn plan(source: &std::path::Path, aws: &AwsSpec) -> String {
    let mut s = format!("config: {} (valid)\n", source.display());
    s.push_str(&format!("aws: region {}", aws.region));
    if let Some(f) = &aws.failover_region {
        s.push_str(&format!(
            ", failover region {f} (asked only when {} fails with a non-4xx error)",
            aws.region
        ));
    }
    s.push('\n');
    s.push_str(if aws.use_pod_identity {
        "credentials: EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)\n"
    } else {
        "credentials: IRSA (sts:AssumeRoleWithWebIdentity with AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE)\n"
    });
    let describe = |r: &ObjectRef| {
        let mut d = r.name.clone();
        if let Some(v) = &r.version_id {
            d.push_str(&format!(" version {v}"));
        }
        if let Some(l) = &r.version_stage {
            d.push_str(&format!(" label {l}"));
        }
        d
    };
    let sm = aws
        .objects
        .iter()
        .filter(|o| o.service == Service::SecretsManager)
        .count();
    let ssm = aws.objects.len() - sm;
    s.push_str(&format!(
        "requests per render: {sm} secretsmanager:GetSecretValue, {} ssm:GetParameters (batches of 10)\n",
        ssm.div_ceil(10)
    ));
    let files: usize = aws.objects.iter().map(|o| 1 + o.jmes.len()).sum();
    s.push_str(&format!("files ({files}):\n"));
    for o in &aws.objects {
        s.push_str(&format!(
            "  {} {:04o} <- {} {}",
            o.file,
            o.mode,
            o.service.name(),
            describe(&o.primary)
        ));
        if let Some(f) = &o.failover {
            s.push_str(&format!(" (failover: {})", describe(f)));
        }
        s.push('\n');
        for j in &o.jmes {
            s.push_str(&format!(
                "  {} {:04o} <- jmesPath {:?} of {}\n",
                j.file, j.mode, j.path, o.file
            ));
        }
    }
    s
}
