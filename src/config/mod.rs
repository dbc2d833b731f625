//! Configuration sources compiled into one validated, immutable [`Spec`] (docs/configuration.md).
//!
//! Three sources: a SecretProviderClass manifest ([`spc`]), the native `kind: Config` file
//! ([`native`]), and pod annotations through a downward-API file ([`annotations`]). Both share the `objects` schema ([`objects`]). Invariants of a
//! `Spec`: object names are valid, clean, relative and collision-free; every object points at
//! one entry of `reads`, which holds each distinct (path, method, body) once; templates parse;
//! modes are ≤ 0777. Every error names the file, the field and, where the YAML parser gives one,
//! the line and column.

pub mod annotations;
pub mod env;
pub mod error;
pub mod names;
pub mod native;
pub mod notify;
pub mod param;
pub mod pod_settings;
pub mod spc;
pub mod views;
pub mod volumes;
pub mod yaml;

pub use notify::{check_notify, parse_signal, NotifySettings, SIGNALS};

use std::path::{Path, PathBuf};

pub use crate::provider::vault::spec::{
    check_address, check_mount, Auth, Encoding, Format, JwtLogin, ObjectSpec, Output, Read,
    TlsSettings, VaultSettings, VaultSpec,
};
pub use crate::provider::ProviderSpec;
pub use env::VaultEnv;
pub use error::ConfigError;

/// Everything a render needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The file this spec came from, for messages.
    pub source: PathBuf,
    /// Settings only the resident sidecar uses (native config `sidecar:`; flags override them).
    pub sidecar: SidecarSettings,
    /// Which store, and everything it needs (its parameters, typed and validated).
    pub provider: ProviderSpec,
}

impl Spec {
    /// The Vault part, for a `provider: vault` spec.
    pub fn vault(&self) -> Option<&VaultSpec> {
        match &self.provider {
            ProviderSpec::Vault(v) => Some(v),
            _ => None,
        }
    }

    /// The AWS part, for a `provider: aws` spec.
    pub fn aws(&self) -> Option<&crate::provider::aws::params::AwsSpec> {
        match &self.provider {
            ProviderSpec::Aws(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SidecarSettings {
    pub poll_interval: Option<std::time::Duration>,
    pub notify: NotifySettings,
}

#[derive(serde::Deserialize)]
struct TypeMeta {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
}

/// Reads and validates a config file of either kind.
pub fn load(path: &Path, env: &VaultEnv) -> Result<Spec, ConfigError> {
    let text = read_bounded(path)?;
    parse(path, &text, env)
}

/// Config files (and the downward-API annotations file) larger than this are refused unread:
/// nothing legitimate comes close, and a huge file must not cost memory.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads a config file of at most [`MAX_CONFIG_BYTES`] as UTF-8 text.
pub fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let err = |m: String| ConfigError::new(path, m);
    let file =
        std::fs::File::open(path).map_err(|e| err(format!("cannot read config file: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(format!("cannot read config file: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(err(format!(
            "the file is larger than {MAX_CONFIG_BYTES} bytes; a config file is far smaller"
        )));
    }
    String::from_utf8(bytes).map_err(|_| err("the config file is not UTF-8 text".into()))
}

/// Parses config text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str, env: &VaultEnv) -> Result<Spec, ConfigError> {
    if annotations::looks_like_annotations(text) {
        return annotations::parse(path, text, env);
    }
    let meta: TypeMeta = yaml::from_str(text).map_err(|e| ConfigError::yaml(path, &e))?;
    match (meta.api_version.as_deref(), meta.kind.as_deref()) {
        (Some(v), Some("SecretProviderClass")) if v.starts_with("secrets-store.csi.x-k8s.io/") => {
            spc::parse(path, text, env)
        }
        (Some(native::API_VERSION), Some("Config")) => native::parse(path, text, env),
        (v, k) => Err(ConfigError::new(
            path,
            format!(
                "unsupported document apiVersion {:?} kind {:?}: expected a SecretProviderClass \
                 (apiVersion secrets-store.csi.x-k8s.io/v1) or apiVersion {} kind Config",
                v.unwrap_or(""),
                k.unwrap_or(""),
                native::API_VERSION
            ),
        )),
    }
}
