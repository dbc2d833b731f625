//! The typed spec of a `provider: gcp` volume (docs/gcp.md): how the pod authenticates, and
//! every Secret Manager or Parameter Manager version with the file it writes. Invariants of a
//! [`GcpSpec`]: every resource name is one of the four forms, its parts safe to put in a URL (the
//! location in a host name); every file name is valid and unique and no file sits where
//! another needs a directory; modes are at most 0777.

/// The CSI driver's file mode when an entry has no `mode`.
pub const GCP_DEFAULT_MODE: u32 = 0o644;

/// Everything a GCP render needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct GcpSpec {
    /// `auth` as written. In a pod both values mean the pod's own Application Default
    /// Credentials (docs/gcp.md, "Credentials").
    pub auth: AuthParam,
    pub secrets: Vec<GcpSecret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthParam {
    /// `pod-adc`, or absent.
    PodAdc,
    /// `provider-adc`: the DaemonSet's identity upstream; the pod's here.
    ProviderAdc,
}

impl AuthParam {
    pub fn name(self) -> &'static str {
        match self {
            AuthParam::PodAdc => "pod-adc",
            AuthParam::ProviderAdc => "provider-adc",
        }
    }
}

/// One entry of `secrets`.
#[derive(Debug, Clone, PartialEq)]
pub struct GcpSecret {
    pub resource: Resource,
    /// `path`, else `fileName`: relative to the volume, maybe nested.
    pub file: String,
    pub mode: u32,
    pub extract: Extract,
}

/// What of the payload is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extract {
    Whole,
    /// `extractJSONKey`: the string value of this top-level key of a JSON object.
    Json(String),
    /// `extractYAMLKey`: the same for a YAML mapping.
    Yaml(String),
}

/// Which service holds a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Store {
    /// Secret Manager: `AccessSecretVersion`.
    SecretManager,
    /// Parameter Manager: `RenderParameterVersion` (secret references resolved).
    ParameterManager,
}

impl Store {
    fn service(self) -> &'static str {
        match self {
            Store::SecretManager => "secretmanager",
            Store::ParameterManager => "parametermanager",
        }
    }

    /// The method, as `check` names it.
    pub fn method(self) -> &'static str {
        match self {
            Store::SecretManager => "AccessSecretVersion",
            Store::ParameterManager => "RenderParameterVersion",
        }
    }
}

/// A secret version or a parameter version, global or regional.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    /// As written; sent to the API as is.
    pub name: String,
    pub store: Store,
    /// `None`: the global endpoint; else the regional one of this location.
    pub location: Option<String>,
}

impl Resource {
    /// The host that serves this version: `SERVICE.googleapis.com`, or
    /// `SERVICE.LOCATION.rep.googleapis.com` for a regional one (served only there).
    pub fn host(&self) -> String {
        let service = self.store.service();
        match &self.location {
            None => format!("{service}.googleapis.com"),
            Some(l) => format!("{service}.{l}.rep.googleapis.com"),
        }
    }

    /// `https://HOST/v1/NAME:access` (Secret Manager) or `:render` (Parameter Manager).
    pub fn access_url(&self) -> String {
        let verb = match self.store {
            Store::SecretManager => "access",
            Store::ParameterManager => "render",
        };
        format!("https://{}/v1/{}:{verb}", self.host(), self.name)
    }
}
