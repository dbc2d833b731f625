//! `provider: vault` and `openbao` from a SecretProviderClass's `parameters` and from pod
//! annotations, into a [`VaultSpec`] (docs/configuration.md, docs/webhook.md).
//!
//! SecretProviderClass parameters keep their vault-csi-provider names and meanings; with
//! `provider: openbao` they are spelled with the `openbao` prefix (`openbaoAddress`, ...), as in
//! openbao-csi-provider. Unknown parameters are errors, except the `csi.storage.k8s.io/*`
//! entries the CSI driver adds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::env::{parse_bool, VaultEnv};
use crate::config::error::ConfigError;
use crate::config::names::PREFIX;
use crate::config::param::{objects_param, FileDefaults};
use crate::config::pod_settings::PodSettings;
use crate::config::yaml;

use super::objects::{self, Dialect, ObjectEntry};
use super::spec::{
    check_address, check_mount, Auth, JwtLogin, TlsSettings, VaultSettings, VaultSpec,
};

/// Parameter names after the provider prefix (`vault` or `openbao`).
const PREFIXED: &[&str] = &[
    "Address",
    "Namespace",
    "KubernetesMountPath",
    "AuthMountPath",
    "CACertPath",
    "CADirectory",
    "TLSServerName",
    "SkipTLSVerify",
    "TLSClientCertPath",
    "TLSClientKeyPath",
];
const UNPREFIXED: &[&str] = &["roleName", "audience", "objects"];
/// Removed from vault-csi-provider and ignored there; we say so instead of failing.
const LEGACY_IGNORED: &[&str] = &["kubernetesServiceAccountPath", "vaultCAPem"];

/// The parameters of a `provider: vault` (`prefix` "vault") or `openbao` SecretProviderClass;
/// `text` is the whole manifest, to place YAML errors inside `objects` on its lines.
pub fn from_spc(
    file: &Path,
    text: &str,
    prefix: &'static str,
    parameters: BTreeMap<String, serde_yaml::Value>,
    env: &VaultEnv,
) -> Result<VaultSpec, ConfigError> {
    let params = Params::new(file, text, prefix, parameters)?;

    let role = params.get("roleName").ok_or_else(|| {
        ConfigError::field(
            file,
            "spec.parameters.roleName",
            "missing: the Vault role to log in as",
        )
    })?;
    let address = match params.get_prefixed("Address") {
        Some(a) => check_address(file, &params.name("Address"), &a)?,
        None => match &env.addr {
            Some(a) => check_address(file, "VAULT_ADDR", a)?,
            None => return Err(ConfigError::field(
                file,
                format!("spec.parameters.{}", params.name("Address")),
                "missing, and VAULT_ADDR is not set: where is Vault? e.g. https://vault.vault:8200",
            )),
        },
    };
    let mount = match (
        params.get_prefixed("KubernetesMountPath"),
        params.get_prefixed("AuthMountPath"),
    ) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::field(
                file,
                format!("spec.parameters.{}", params.name("AuthMountPath")),
                format!(
                    "set either {} or {}, not both",
                    params.name("KubernetesMountPath"),
                    params.name("AuthMountPath")
                ),
            ))
        }
        (Some(m), None) => check_mount(file, &params.name("KubernetesMountPath"), &m)?,
        (None, Some(m)) => check_mount(file, &params.name("AuthMountPath"), &m)?,
        (None, None) => "kubernetes".to_string(),
    };
    let skip_verify = match params.get_prefixed("SkipTLSVerify") {
        Some(s) => Some(parse_bool(&s).ok_or_else(|| {
            ConfigError::field(
                file,
                format!("spec.parameters.{}", params.name("SkipTLSVerify")),
                format!("{s:?} is not a boolean: allowed are true, false, 1, 0"),
            )
        })?),
        None => None,
    };
    let path = |suffix: &str| params.get_prefixed(suffix).map(PathBuf::from);
    let from_params = TlsSettings {
        ca_cert: path("CACertPath"),
        ca_pem: None,
        ca_directory: path("CADirectory"),
        server_name: params.get_prefixed("TLSServerName"),
        client_cert: path("TLSClientCertPath"),
        client_key: path("TLSClientKeyPath"),
        skip_verify: false,
    };
    let tls = env.fill_tls(file, from_params, skip_verify)?;
    check_client_pair(file, &tls, &params)?;
    let vault = VaultSettings {
        address,
        namespace: params
            .get_prefixed("Namespace")
            .or_else(|| env.namespace.clone()),
        tls,
    };

    let entries: Vec<ObjectEntry> = objects_param(file, text, params.get("objects").as_deref())?;
    let (reads, objects) = objects::compile(
        file,
        "spec.parameters.objects",
        &entries,
        FileDefaults::CSI,
        Dialect::SecretProviderClass,
    )?;

    Ok(VaultSpec {
        vault,
        auth: Auth::Kubernetes(JwtLogin {
            mount,
            role,
            audience: params.get("audience").filter(|a| !a.is_empty()),
            token_path: None,
        }),
        reads,
        objects,
    })
}

fn check_client_pair(file: &Path, tls: &TlsSettings, params: &Params) -> Result<(), ConfigError> {
    match (&tls.client_cert, &tls.client_key) {
        (Some(_), None) | (None, Some(_)) => Err(ConfigError::field(
            file,
            format!("spec.parameters.{}", params.name("TLSClientCertPath")),
            format!(
                "{} and {} must be set together",
                params.name("TLSClientCertPath"),
                params.name("TLSClientKeyPath")
            ),
        )),
        _ => Ok(()),
    }
}

/// The SPC's string parameters, checked against the known names for the provider.
struct Params {
    prefix: &'static str,
    values: BTreeMap<String, String>,
}

impl Params {
    fn new(
        file: &Path,
        text: &str,
        prefix: &'static str,
        raw: BTreeMap<String, serde_yaml::Value>,
    ) -> Result<Self, ConfigError> {
        let other = if prefix == "vault" {
            "openbao"
        } else {
            "vault"
        };
        let mut values = BTreeMap::new();
        for (key, value) in raw {
            let field = format!("spec.parameters.{key}");
            if key.starts_with("csi.storage.k8s.io/") {
                continue;
            }
            if LEGACY_IGNORED.contains(&key.as_str()) {
                tracing::warn!(file = %file.display(), parameter = %key, "parameter was removed from the CSI provider and is ignored");
                continue;
            }
            let suffix_known = |p: &str| key.strip_prefix(p).is_some_and(|s| PREFIXED.contains(&s));
            if !UNPREFIXED.contains(&key.as_str()) && !suffix_known(prefix) {
                if suffix_known(other) {
                    return Err(ConfigError::field(
                        file,
                        field,
                        format!(
                            "unknown parameter; with provider {prefix} this parameter is \
                             spelled {prefix}{}",
                            &key[other.len()..]
                        ),
                    ));
                }
                let mut allowed: Vec<String> = UNPREFIXED.iter().map(|s| s.to_string()).collect();
                allowed.extend(PREFIXED.iter().map(|s| format!("{prefix}{s}")));
                return Err(crate::config::param::unknown_parameter(
                    file, text, &key, &allowed, "",
                ));
            }
            let text = match value {
                serde_yaml::Value::String(s) => s,
                other => {
                    return Err(ConfigError::field(
                        file,
                        field,
                        format!(
                            "must be a string (Kubernetes stores SecretProviderClass parameters as strings): quote it, e.g. \"{}\"",
                            scalar_text(&other)
                        ),
                    ))
                }
            };
            values.insert(key, text);
        }
        Ok(Params { prefix, values })
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    fn get(&self, key: &str) -> Option<String> {
        self.values.get(key).cloned()
    }

    /// A prefixed parameter; an empty string counts as unset, as in the CSI provider.
    fn get_prefixed(&self, suffix: &str) -> Option<String> {
        self.get(&self.name(suffix))
            .filter(|v| !v.trim().is_empty())
    }
}

fn scalar_text(v: &serde_yaml::Value) -> String {
    serde_yaml::to_string(v)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Annotations that only mean something for Vault: refused on a `provider: aws` pod, rather
/// than silently ignored.
pub const ANNOTATIONS: &[&str] = &[
    "role",
    "vault-address",
    "auth-path",
    "vault-namespace",
    "ca-cert",
    "ca-configmap",
    "tls-server-name",
    "token-audience",
    "env",
    "env-file",
];

/// A pod's `secretdrop.dev/` annotations (`a`, without the prefix; `settings` their pod
/// settings, already parsed) for Vault.
pub fn from_annotations(
    file: &Path,
    a: &BTreeMap<String, String>,
    settings: &PodSettings,
    env: &VaultEnv,
) -> Result<VaultSpec, ConfigError> {
    let field = |n: &str| format!("{PREFIX}{n}");
    let role = a
        .get("role")
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| {
            ConfigError::field(file, field("role"), "missing: the Vault role to log in as")
        })?;
    let address = match (a.get("vault-address"), &env.addr) {
        (Some(v), _) => check_address(file, &field("vault-address"), v)?,
        (None, Some(v)) => check_address(file, "VAULT_ADDR", v)?,
        (None, None) => {
            return Err(ConfigError::field(
                file,
                field("vault-address"),
                "missing, and VAULT_ADDR is not set: where is Vault?",
            ))
        }
    };
    let mount = match a.get("auth-path") {
        Some(m) => auth_mount(file, &field("auth-path"), m)?,
        None => "kubernetes".to_string(),
    };
    let objects_text = a.get("objects").ok_or_else(|| {
        ConfigError::field(
            file,
            field("objects"),
            "missing: a YAML list of objects, as in a SecretProviderClass",
        )
    })?;
    let entries: Vec<ObjectEntry> = yaml::from_str(objects_text).map_err(|e| {
        let mut err = ConfigError::yaml(file, &e);
        err.field = Some(field("objects"));
        if let (Some(l), Some(c)) = (err.line.take(), err.column.take()) {
            err.message = format!("{} (at line {l} column {c} of the annotation)", err.message);
        }
        err
    })?;
    let (reads, objects) = objects::compile(
        file,
        &field("objects"),
        &entries,
        FileDefaults::CSI,
        Dialect::Annotations,
    )?;
    let given = TlsSettings {
        ca_pem: settings.ca_pem.clone(),
        server_name: settings.tls_server_name.clone(),
        ..TlsSettings::default()
    };
    let tls = env.fill_tls(file, given, None)?;
    Ok(VaultSpec {
        vault: VaultSettings {
            address,
            namespace: settings
                .vault_namespace
                .clone()
                .or_else(|| env.namespace.clone()),
            tls,
        },
        auth: Auth::Kubernetes(JwtLogin {
            mount,
            role: role.clone(),
            audience: settings.token_audience.clone(),
            token_path: None,
        }),
        reads,
        objects,
    })
}

/// The auth mount of `auth-path`. vault-k8s's annotation takes the full path (`auth/jwt`), ours
/// the mount (`jwt`); both spellings mean the mount, never `auth/auth/jwt/login`.
fn auth_mount(file: &Path, field: &str, value: &str) -> Result<String, ConfigError> {
    let mount = check_mount(file, field, value)?;
    match mount.strip_prefix("auth/") {
        Some(rest) => check_mount(file, field, rest),
        None => Ok(mount),
    }
}
