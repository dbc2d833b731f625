//! Vault's sections of the native config (docs/configuration.md): `vault:` (where Vault is and
//! how to trust it), `auth:` (how to log in: kubernetes, jwt, approle or token) and the
//! top-level `objects`, into a [`VaultSpec`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::env::VaultEnv;
use crate::config::error::ConfigError;
use crate::config::param::FileDefaults;

use super::objects::{self, Dialect, ObjectEntry};
use super::spec::{
    check_address, check_mount, Auth, JwtLogin, TlsSettings, VaultSettings, VaultSpec,
};

/// `vault:`: where Vault is and how to trust it.
#[derive(Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VaultSection {
    pub address: Option<String>,
    pub namespace: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub ca_directory: Option<PathBuf>,
    pub tls_server_name: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    #[serde(rename = "skipTLSVerify")]
    pub skip_tls_verify: Option<bool>,
}

/// `auth:`: how to log in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthSection {
    pub method: String,
    pub mount_path: Option<String>,
    pub role: Option<String>,
    pub audience: Option<String>,
    pub token_path: Option<PathBuf>,
    pub role_id_file: Option<PathBuf>,
    pub secret_id_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
}

/// A native config's Vault sections; `defaults` are its `files:`.
pub fn from_native(
    file: &Path,
    vault: VaultSection,
    auth: Option<AuthSection>,
    entries: &[ObjectEntry],
    defaults: FileDefaults,
    env: &VaultEnv,
) -> Result<VaultSpec, ConfigError> {
    let address =
        match (&vault.address, &env.addr) {
            (Some(a), _) => check_address(file, "vault.address", a)?,
            (None, Some(a)) => check_address(file, "VAULT_ADDR", a)?,
            (None, None) => return Err(ConfigError::field(
                file,
                "vault.address",
                "missing, and VAULT_ADDR is not set: where is Vault? e.g. https://vault.vault:8200",
            )),
        };
    let v = vault;
    let from_file = TlsSettings {
        ca_cert: v.ca_cert,
        ca_pem: None,
        ca_directory: v.ca_directory,
        server_name: v.tls_server_name,
        client_cert: v.client_cert,
        client_key: v.client_key,
        skip_verify: false,
    };
    let tls = env.fill_tls(file, from_file, v.skip_tls_verify)?;
    if tls.client_cert.is_some() != tls.client_key.is_some() {
        return Err(ConfigError::field(
            file,
            "vault.clientCert",
            "clientCert and clientKey must be set together",
        ));
    }
    let vault = VaultSettings {
        address,
        namespace: v.namespace.or_else(|| env.namespace.clone()),
        tls,
    };

    let auth = auth.ok_or_else(|| {
        ConfigError::field(
            file,
            "auth",
            "missing: e.g. {method: kubernetes, role: my-role}",
        )
    })?;
    let auth = compile_auth(file, auth)?;

    let (reads, objects) = objects::compile(file, "objects", entries, defaults, Dialect::Native)?;
    Ok(VaultSpec {
        vault,
        auth,
        reads,
        objects,
    })
}

fn compile_auth(file: &Path, a: AuthSection) -> Result<Auth, ConfigError> {
    let used: Vec<&str> = [
        ("role", a.role.is_some()),
        ("audience", a.audience.is_some()),
        ("tokenPath", a.token_path.is_some()),
        ("roleIdFile", a.role_id_file.is_some()),
        ("secretIdFile", a.secret_id_file.is_some()),
        ("tokenFile", a.token_file.is_some()),
        ("mountPath", a.mount_path.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(n, _)| *n)
    .collect();
    let allow = |allowed: &[&str]| -> Result<(), ConfigError> {
        match used.iter().find(|f| !allowed.contains(f)) {
            Some(f) => Err(ConfigError::field(
                file,
                format!("auth.{f}"),
                format!(
                    "does not apply to method {}: allowed are method, {}",
                    a.method,
                    allowed.join(", ")
                ),
            )),
            None => Ok(()),
        }
    };
    let required = |v: &Option<PathBuf>, f: &str| {
        v.clone().ok_or_else(|| {
            ConfigError::field(
                file,
                format!("auth.{f}"),
                format!("missing: required by method {}", a.method),
            )
        })
    };
    let mount = |default: &str| match &a.mount_path {
        Some(m) => check_mount(file, "auth.mountPath", m),
        None => Ok(default.to_string()),
    };
    match a.method.as_str() {
        "kubernetes" | "jwt" => {
            allow(&["role", "audience", "tokenPath", "mountPath"])?;
            let role = a.role.clone().filter(|r| !r.is_empty()).ok_or_else(|| {
                ConfigError::field(
                    file,
                    "auth.role",
                    format!("missing: required by method {}", a.method),
                )
            })?;
            let login = JwtLogin {
                mount: mount(&a.method)?,
                role,
                audience: a.audience.clone().filter(|s| !s.is_empty()),
                token_path: a.token_path.clone(),
            };
            Ok(if a.method == "jwt" {
                Auth::Jwt(login)
            } else {
                Auth::Kubernetes(login)
            })
        }
        "approle" => {
            allow(&["roleIdFile", "secretIdFile", "mountPath"])?;
            Ok(Auth::AppRole {
                mount: mount("approle")?,
                role_id_file: required(&a.role_id_file, "roleIdFile")?,
                secret_id_file: required(&a.secret_id_file, "secretIdFile")?,
            })
        }
        "token" => {
            allow(&["tokenFile"])?;
            Ok(Auth::Token {
                token_file: required(&a.token_file, "tokenFile")?,
            })
        }
        other => Err(ConfigError::field(
            file,
            "auth.method",
            format!("unknown method {other:?}: allowed are kubernetes, jwt, approle, token"),
        )),
    }
}
