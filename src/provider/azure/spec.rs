//! The typed spec of a `provider: azure` volume (docs/azure.md): which vault in which cloud,
//! how the access token is obtained, and every object with the file (or directory of versions)
//! it writes. Invariants of an [`AzureSpec`]: the vault name is 3–24 characters of
//! `[-A-Za-z0-9]`; every file name is valid, relative, without `..`, and unique; `pfx` and an
//! encoding other than utf-8 only on secrets; modes are at most 0777.

use std::path::PathBuf;

use super::cloud::Cloud;

/// The provider's default file mode.
pub const AZURE_DEFAULT_MODE: u32 = 0o644;

/// Everything an Azure render needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureSpec {
    pub vault_name: String,
    pub cloud: CloudChoice,
    /// `tenantID` (or `tenantId`); `None`: `AZURE_TENANT_ID` at run time.
    pub tenant_id: Option<String>,
    pub identity: Identity,
    pub objects: Vec<AzureObject>,
}

/// `cloudName`, resolved as far as the class alone allows.
#[derive(Debug, Clone, PartialEq)]
pub enum CloudChoice {
    /// A cloud whose endpoints are known; `explicit` when the class named it (its authority
    /// then wins over `AZURE_AUTHORITY_HOST`).
    Named { cloud: Cloud, explicit: bool },
    /// `AzureStackCloud`: endpoints from a JSON environment file, `cloudEnvFileName` or, when
    /// `None`, `AZURE_ENVIRONMENT_FILEPATH`; read when the session opens.
    Stack { file: Option<PathBuf> },
}

/// How the Key Vault access token is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Azure Workload Identity: the projected service-account token exchanged at Entra ID for
    /// the app `client_id` (`None`: `AZURE_CLIENT_ID` at run time).
    Workload { client_id: Option<String> },
    /// `useVMManagedIdentity`: the node's managed identity through IMDS; a user-assigned one
    /// when `client_id` is set (`userAssignedIdentityID`).
    VmManaged { client_id: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    Secret,
    Key,
    Cert,
}

impl ObjectType {
    /// As the class spells it.
    pub fn name(self) -> &'static str {
        match self {
            ObjectType::Secret => "secret",
            ObjectType::Key => "key",
            ObjectType::Cert => "cert",
        }
    }

    /// The Key Vault collection (`/secrets/NAME`, ...).
    pub fn collection(self) -> &'static str {
        match self {
            ObjectType::Secret => "secrets",
            ObjectType::Key => "keys",
            ObjectType::Cert => "certificates",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectFormat {
    Pem,
    Pfx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectEncoding {
    Utf8,
    Base64,
    Hex,
}

/// One object of `objects`.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureObject {
    pub name: String,
    pub kind: ObjectType,
    /// `objectVersion`; `None`: the current version.
    pub version: Option<String>,
    /// The alias, else the name: the file, or with history the directory of versions.
    pub file: String,
    pub format: ObjectFormat,
    pub encoding: ObjectEncoding,
    /// `objectVersionHistory` when above 1: a directory `file/0`, `file/1`, ...
    pub history: Option<u32>,
    pub mode: u32,
}

impl AzureObject {
    /// Every file this object may write: one, or with history `file/0` to `file/N` (the
    /// provider writes up to N+1 versions, docs/azure.md "Version history").
    pub fn file_names(&self) -> Vec<String> {
        match self.history {
            None => vec![self.file.clone()],
            Some(n) => (0..=n).map(|i| format!("{}/{i}", self.file)).collect(),
        }
    }
}

/// The identifier as the CSI provider reports it: `TYPE/NAME`.
pub fn describe(o: &AzureObject) -> String {
    let mut d = format!("{}/{}", o.kind.name(), o.name);
    if let Some(v) = &o.version {
        d.push_str(&format!(" version {v}"));
    }
    d
}
