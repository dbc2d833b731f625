//! A SecretProviderClass manifest (`provider: vault` or `openbao`) read as the CSI provider reads
//! it (docs/configuration.md), into a [`Spec`].
//!
//! Parameters keep their vault-csi-provider names and meanings; with `provider: openbao` they are
//! spelled with the `openbao` prefix (`openbaoAddress`, ...), as in openbao-csi-provider. Unknown
//! parameters are errors, except the `csi.storage.k8s.io/*` entries the CSI driver adds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::env::{parse_bool, VaultEnv};
use super::objects::{self, Dialect, FileDefaults, ObjectEntry};
use super::param::objects_param;
use super::yaml;
use super::{
    check_address, check_mount, Auth, ConfigError, JwtLogin, ProviderSpec, Spec, TlsSettings,
    VaultSettings, VaultSpec,
};

/// The CSI driver's fixed default file mode (`permission` = 0644); `filePermission` overrides it.
pub const CSI_DEFAULT_MODE: u32 = 0o644;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(rename = "metadata", default)]
    _metadata: Option<serde_yaml::Value>,
    spec: SpcSpec,
    #[serde(rename = "status", default)]
    _status: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SpcSpec {
    provider: String,
    #[serde(default)]
    parameters: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    secret_objects: Option<serde_yaml::Value>,
}

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

pub fn parse(file: &Path, text: &str, env: &VaultEnv) -> Result<Spec, ConfigError> {
    let manifest: Manifest = yaml::from_str(text).map_err(|e| ConfigError::yaml(file, &e))?;
    let spec = manifest.spec;
    if spec.secret_objects.is_some() {
        tracing::warn!(
            file = %file.display(),
            "spec.secretObjects is ignored: secretdrop writes files only and never syncs Kubernetes Secrets"
        );
    }
    let prefix = match spec.provider.as_str() {
        "vault" => "vault",
        "openbao" => "openbao",
        // The AWS provider's parameters (docs/aws.md).
        "aws" => {
            let aws = crate::provider::aws::params::from_spc(file, text, spec.parameters, env)?;
            return Ok(Spec {
                source: file.to_path_buf(),
                sidecar: Default::default(),
                provider: ProviderSpec::Aws(aws),
            });
        }
        other => {
            return Err(ConfigError::field(
                file,
                "spec.provider",
                format!("{other:?} is not supported: allowed are vault, openbao, aws"),
            ))
        }
    };
    let params = Params::new(file, prefix, spec.parameters)?;

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
    let defaults = FileDefaults {
        mode: CSI_DEFAULT_MODE,
        owner: None,
        group: None,
    };
    let (reads, objects) = objects::compile(
        file,
        "spec.parameters.objects",
        &entries,
        defaults,
        Dialect::SecretProviderClass,
    )?;

    Ok(Spec {
        source: file.to_path_buf(),
        provider: ProviderSpec::Vault(VaultSpec {
            vault,
            auth: Auth::Kubernetes(JwtLogin {
                mount,
                role,
                audience: params.get("audience").filter(|a| !a.is_empty()),
                token_path: None,
            }),
            reads,
            objects,
        }),
        sidecar: Default::default(),
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
                let hint = if suffix_known(other) {
                    format!(
                        "with provider {prefix} this parameter is spelled {prefix}{}",
                        &key[other.len()..]
                    )
                } else {
                    let mut allowed: Vec<String> =
                        UNPREFIXED.iter().map(|s| s.to_string()).collect();
                    allowed.extend(PREFIXED.iter().map(|s| format!("{prefix}{s}")));
                    format!("allowed are {}", allowed.join(", "))
                };
                return Err(ConfigError::field(
                    file,
                    field,
                    format!("unknown parameter; {hint}"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Encoding, Output};

    const BLOG: &str = r#"apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: mycsispc
spec:
  provider: vault
  parameters:
    roleName: mycsirole
    vaultAddress: http://127.0.0.1:8200
    objects: |
      - objectName: "myUsername"
        secretPath: "secret/data/app"
        secretKey: "username"
      - objectName: "myPassword"
        secretPath: "secret/data/app"
        secretKey: "password"
"#;

    fn parse_str(text: &str) -> Result<Spec, ConfigError> {
        parse(Path::new("spc.yaml"), text, &VaultEnv::default())
    }

    #[test]
    fn the_blog_post_class_compiles_to_one_read_and_two_files() {
        let spec = parse_str(BLOG).unwrap();
        assert_eq!(spec.vault().unwrap().vault.address, "http://127.0.0.1:8200");
        assert_eq!(spec.vault().unwrap().reads.len(), 1);
        assert_eq!(spec.vault().unwrap().reads[0].path, "secret/data/app");
        assert_eq!(spec.vault().unwrap().objects[1].name, "myPassword");
        assert_eq!(spec.vault().unwrap().objects[1].mode, 0o644);
        assert_eq!(
            spec.vault().unwrap().objects[1].output,
            Output::Key {
                key: "password".into(),
                encoding: Encoding::Utf8
            }
        );
        match &spec.vault().unwrap().auth {
            Auth::Kubernetes(l) => assert_eq!(
                (l.mount.as_str(), l.role.as_str()),
                ("kubernetes", "mycsirole")
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn openbao_provider_uses_openbao_names() {
        let text = BLOG
            .replace("provider: vault", "provider: openbao")
            .replace("vaultAddress", "openbaoAddress");
        assert_eq!(
            parse_str(&text).unwrap().vault().unwrap().vault.address,
            "http://127.0.0.1:8200"
        );
        let wrong = BLOG.replace("provider: vault", "provider: openbao");
        let e = parse_str(&wrong).unwrap_err();
        assert!(e.to_string().contains("spelled openbaoAddress"), "{e}");
    }

    #[test]
    fn errors_inside_objects_point_at_the_manifest_line() {
        let text = BLOG.replace("secretKey: \"password\"", "secretKee: \"password\"");
        let e = parse_str(&text).unwrap_err();
        assert_eq!(e.line, Some(16), "{e}");
        assert!(e.to_string().contains("unknown field `secretKee`"), "{e}");
    }

    #[test]
    fn both_mount_path_spellings_is_an_error() {
        let text = BLOG.replace(
            "roleName: mycsirole",
            "roleName: mycsirole\n    vaultKubernetesMountPath: k8s\n    vaultAuthMountPath: jwt",
        );
        assert!(parse_str(&text)
            .unwrap_err()
            .to_string()
            .contains("not both"));
    }

    #[test]
    fn address_falls_back_to_vault_addr() {
        let text = BLOG.replace("    vaultAddress: http://127.0.0.1:8200\n", "");
        assert!(parse_str(&text)
            .unwrap_err()
            .to_string()
            .contains("VAULT_ADDR"));
        let env = VaultEnv {
            addr: Some("https://vault:8200/".into()),
            ..Default::default()
        };
        let spec = parse(Path::new("spc.yaml"), &text, &env).unwrap();
        assert_eq!(spec.vault().unwrap().vault.address, "https://vault:8200");
    }
}
