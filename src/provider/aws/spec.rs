//! The typed spec of a `provider: aws` volume (docs/aws.md): regions, how credentials are
//! obtained, and every object with the files it writes. Invariants of an [`AwsSpec`]: a region
//! is known; every file name is valid and unique; every jmesPath parses; ARNs name the region
//! they are used in.

use super::jmespath::Expr;

/// Everything an AWS render needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsSpec {
    pub region: String,
    pub failover_region: Option<String>,
    /// Credentials from the EKS Pod Identity agent instead of IRSA.
    pub use_pod_identity: bool,
    pub preferred_address_type: AddressType,
    pub objects: Vec<AwsObject>,
}

/// `preferredAddressType`: which Pod Identity agent address the provider prefers. In a pod the
/// agent's address comes from `AWS_CONTAINER_CREDENTIALS_FULL_URI`, so this only chooses the
/// default when that variable is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressType {
    Auto,
    Ipv4,
    Ipv6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    SecretsManager,
    Ssm,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::SecretsManager => "secretsmanager",
            Service::Ssm => "ssmparameter",
        }
    }
}

/// Which object to ask one region for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// A name or an ARN, as written.
    pub name: String,
    /// Secrets Manager VersionId (SSM: `name:version`).
    pub version_id: Option<String>,
    /// Secrets Manager VersionStage (SSM: `name:label`).
    pub version_stage: Option<String>,
}

impl ObjectRef {
    /// The name SSM's GetParameters is asked for: `name`, `name:version` or `name:label`.
    pub fn ssm_name(&self) -> String {
        match (&self.version_id, &self.version_stage) {
            (Some(v), _) => format!("{}:{v}", self.name),
            (None, Some(l)) => format!("{}:{l}", self.name),
            (None, None) => self.name.clone(),
        }
    }
}

/// One object: a file with the whole value, plus one file per jmesPath entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsObject {
    pub service: Service,
    pub primary: ObjectRef,
    /// Asked in the failover region; `None` means `primary` there too.
    pub failover: Option<ObjectRef>,
    pub file: String,
    pub mode: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub jmes: Vec<JmesEntry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JmesEntry {
    pub path: String,
    pub expr: Expr,
    pub file: String,
    pub mode: u32,
}

pub use crate::config::param::FileDefaults;

/// SecretProviderClass parameter → pod annotation name (without `secretdrop.dev/`).
pub const ANNOTATIONS: &[(&str, &str)] = &[
    ("region", "region"),
    ("failoverRegion", "failover-region"),
    ("pathTranslation", "path-translation"),
    ("usePodIdentity", "use-pod-identity"),
    ("preferredAddressType", "preferred-address-type"),
    ("objects", "objects"),
];

/// The name of parameter `name` under `at`: `spec.parameters.region`, `aws.region`, or for
/// annotations (`at` is the prefix `secretdrop.dev/`) `secretdrop.dev/failover-region`.
pub(super) fn join(at: &str, name: &str) -> String {
    match at.strip_suffix('/') {
        Some(_) => {
            let an = ANNOTATIONS
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(name, |(_, a)| a);
            format!("{at}{an}")
        }
        None => format!("{at}.{name}"),
    }
}
