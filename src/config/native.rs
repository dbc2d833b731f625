//! The native config file (`apiVersion: secretdrop.dev/v1alpha1`, `kind: Config`): a superset of
//! the SecretProviderClass with a choice of auth method, file owner/group/mode defaults, and
//! output formats and templates per object.
//!
//! ```yaml
//! apiVersion: secretdrop.dev/v1alpha1
//! kind: Config
//! vault:
//!   address: https://vault.vault:8200
//!   caCert: /etc/vault-ca/ca.crt
//! auth:
//!   method: kubernetes        # kubernetes | jwt | approle | token
//!   role: app
//! files:
//!   mode: "0440"
//!   group: 2000
//! objects:
//!   - objectName: app.env
//!     secretPath: secret/data/app
//!     format: dotenv
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::env::VaultEnv;
use super::objects::{self, Dialect, FileDefaults, ObjectEntry};
use super::yaml;
use super::{
    check_address, check_mount, check_notify, parse_signal, Auth, ConfigError, JwtLogin,
    NotifySettings, ProviderSpec, SidecarSettings, Spec, TlsSettings, VaultSettings, VaultSpec,
};

pub const API_VERSION: &str = "secretdrop.dev/v1alpha1";

/// Native default mode: owner and group may read, nobody else (the CSI driver's 0644 is
/// world-readable, a complaint docs/architecture.md records).
pub const NATIVE_DEFAULT_MODE: u32 = 0o440;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConfigFile {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default, rename = "metadata")]
    _metadata: Option<serde_yaml::Value>,
    #[serde(default)]
    vault: VaultSection,
    auth: Option<AuthSection>,
    #[serde(default)]
    files: FilesSection,
    #[serde(default)]
    objects: Vec<ObjectEntry>,
    #[serde(default)]
    sidecar: SidecarSection,
    /// `provider: aws` with an `aws:` section (docs/aws.md); absent means Vault.
    provider: Option<String>,
    aws: Option<serde_yaml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SidecarSection {
    poll_interval: Option<String>,
    #[serde(default)]
    notify: NotifySection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NotifySection {
    signal: Option<String>,
    process: Option<String>,
    pid_file: Option<PathBuf>,
    url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VaultSection {
    address: Option<String>,
    namespace: Option<String>,
    ca_cert: Option<PathBuf>,
    ca_directory: Option<PathBuf>,
    tls_server_name: Option<String>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    #[serde(rename = "skipTLSVerify")]
    skip_tls_verify: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AuthSection {
    method: String,
    mount_path: Option<String>,
    role: Option<String>,
    audience: Option<String>,
    token_path: Option<PathBuf>,
    role_id_file: Option<PathBuf>,
    secret_id_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FilesSection {
    mode: Option<serde_yaml::Value>,
    owner: Option<u32>,
    group: Option<u32>,
}

pub fn parse(file: &Path, text: &str, env: &VaultEnv) -> Result<Spec, ConfigError> {
    let cfg: ConfigFile = yaml::from_str(text).map_err(|e| ConfigError::yaml(file, &e))?;
    if let Some(spec) = aws_config(file, &cfg, env)? {
        return Ok(spec);
    }

    let address =
        match (&cfg.vault.address, &env.addr) {
            (Some(a), _) => check_address(file, "vault.address", a)?,
            (None, Some(a)) => check_address(file, "VAULT_ADDR", a)?,
            (None, None) => return Err(ConfigError::field(
                file,
                "vault.address",
                "missing, and VAULT_ADDR is not set: where is Vault? e.g. https://vault.vault:8200",
            )),
        };
    let v = cfg.vault;
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

    let auth = cfg.auth.ok_or_else(|| {
        ConfigError::field(
            file,
            "auth",
            "missing: e.g. {method: kubernetes, role: my-role}",
        )
    })?;
    let auth = compile_auth(file, auth)?;

    let mode = match &cfg.files.mode {
        None => NATIVE_DEFAULT_MODE,
        Some(m) => {
            objects::parse_mode(m).map_err(|msg| ConfigError::field(file, "files.mode", msg))?
        }
    };
    let defaults = FileDefaults {
        mode,
        owner: cfg.files.owner,
        group: cfg.files.group,
    };
    let (reads, objects) =
        objects::compile(file, "objects", &cfg.objects, defaults, Dialect::Native)?;
    let sidecar = compile_sidecar(file, cfg.sidecar)?;
    Ok(Spec {
        source: file.to_path_buf(),
        provider: ProviderSpec::Vault(VaultSpec {
            vault,
            auth,
            reads,
            objects,
        }),
        sidecar,
    })
}

/// `provider: aws`: the `aws:` section plus `files:` and `sidecar:`; Vault's sections and
/// top-level `objects` do not apply. `None` for a Vault config.
fn aws_config(file: &Path, cfg: &ConfigFile, env: &VaultEnv) -> Result<Option<Spec>, ConfigError> {
    match cfg.provider.as_deref() {
        None | Some("vault") | Some("openbao") => {
            if cfg.aws.is_some() {
                return Err(ConfigError::field(
                    file,
                    "aws",
                    "only applies with provider: aws",
                ));
            }
            return Ok(None);
        }
        Some("aws") => {}
        Some(other) => {
            return Err(ConfigError::field(
                file,
                "provider",
                format!("{other:?} is not supported: allowed are vault, openbao, aws"),
            ))
        }
    }
    let vault_set = cfg.vault.address.is_some() || cfg.vault.namespace.is_some();
    if let Some(f) = [
        ("vault", vault_set),
        ("auth", cfg.auth.is_some()),
        ("objects", !cfg.objects.is_empty()),
    ]
    .iter()
    .find(|(_, set)| *set)
    {
        return Err(ConfigError::field(
            file,
            f.0,
            "does not apply with provider: aws (objects go under aws.objects)",
        ));
    }
    let mode = match &cfg.files.mode {
        None => NATIVE_DEFAULT_MODE,
        Some(m) => {
            objects::parse_mode(m).map_err(|msg| ConfigError::field(file, "files.mode", msg))?
        }
    };
    let defaults = crate::provider::aws::params::AwsDefaults {
        mode,
        owner: cfg.files.owner,
        group: cfg.files.group,
    };
    let sidecar = compile_sidecar(
        file,
        SidecarSection {
            poll_interval: cfg.sidecar.poll_interval.clone(),
            notify: NotifySection {
                signal: cfg.sidecar.notify.signal.clone(),
                process: cfg.sidecar.notify.process.clone(),
                pid_file: cfg.sidecar.notify.pid_file.clone(),
                url: cfg.sidecar.notify.url.clone(),
            },
        },
    )?;
    let section = cfg.aws.clone().unwrap_or(serde_yaml::Value::Null);
    let aws = crate::provider::aws::params::from_native(file, &section, defaults, env)?;
    Ok(Some(Spec {
        source: file.to_path_buf(),
        sidecar,
        provider: ProviderSpec::Aws(aws),
    }))
}

fn compile_sidecar(file: &Path, s: SidecarSection) -> Result<SidecarSettings, ConfigError> {
    let poll_interval = match &s.poll_interval {
        None => None,
        Some(text) => Some(
            parse_poll_interval(text)
                .map_err(|m| ConfigError::field(file, "sidecar.pollInterval", m))?,
        ),
    };
    let signal = match &s.notify.signal {
        None => None,
        Some(sig) => Some(
            parse_signal(sig).map_err(|m| ConfigError::field(file, "sidecar.notify.signal", m))?,
        ),
    };
    let notify = NotifySettings {
        signal,
        process: s.notify.process,
        pid_file: s.notify.pid_file,
        url: s.notify.url,
    };
    check_notify(&notify)
        .map_err(|(f, m)| ConfigError::field(file, format!("sidecar.notify.{f}"), m))?;
    Ok(SidecarSettings {
        poll_interval,
        notify,
    })
}

/// A poll interval: a humantime duration of at least one second.
/// The longest poll interval accepted.
pub const MAX_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

pub fn parse_poll_interval(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}); e.g. 30s, 5m"))?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("{text:?} is shorter than the minimum of 1s"));
    }
    // Longer polls mean "never" in practice, and unbounded ones overflow clock arithmetic.
    if d > MAX_POLL_INTERVAL {
        return Err(format!("{text:?} is longer than the maximum of 30 days"));
    }
    Ok(d)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, Output};

    fn parse_str(text: &str) -> Result<Spec, ConfigError> {
        parse(Path::new("cfg.yaml"), text, &VaultEnv::default())
    }

    const BASE: &str = "apiVersion: secretdrop.dev/v1alpha1
kind: Config
vault:
  address: http://127.0.0.1:8200
auth:
  method: approle
  roleIdFile: /r
  secretIdFile: /s
files:
  mode: 0640
  group: 2000
objects:
  - objectName: app.env
    secretPath: secret/data/app
    format: dotenv
    keys: [username]
  - objectName: cert
    secretPath: pki/issue/web
    method: post
    secretArgs: {common_name: a.example.com}
    template: \"{{ data.certificate }}\"
    filePermission: 0600
    owner: 1000
";

    #[test]
    fn native_config_compiles() {
        let spec = parse_str(BASE).unwrap();
        assert!(
            matches!(spec.vault().unwrap().auth, Auth::AppRole { ref mount, .. } if mount == "approle")
        );
        assert_eq!(spec.vault().unwrap().objects[0].mode, 0o640);
        assert_eq!(spec.vault().unwrap().objects[0].group, Some(2000));
        assert_eq!(
            spec.vault().unwrap().objects[0].output,
            Output::Format {
                format: Format::Dotenv,
                keys: Some(vec!["username".into()])
            }
        );
        assert_eq!(spec.vault().unwrap().objects[1].mode, 0o600);
        assert_eq!(spec.vault().unwrap().objects[1].owner, Some(1000));
        assert_eq!(spec.vault().unwrap().reads[1].method, "POST");
        assert_eq!(
            spec.vault().unwrap().reads[1].body.as_deref(),
            Some(r#"{"common_name":"a.example.com"}"#)
        );
    }

    #[test]
    fn unknown_fields_are_named_with_their_line() {
        let e = parse_str(&BASE.replace("  group: 2000", "  gruop: 2000")).unwrap_err();
        assert_eq!(e.line, Some(11), "{e}");
        assert!(e.to_string().contains("unknown field `gruop`"), "{e}");
    }

    #[test]
    fn auth_fields_must_fit_the_method() {
        let e = parse_str(&BASE.replace("  roleIdFile: /r", "  role: x\n  roleIdFile: /r"))
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("auth.role"), "{e}");
        let e = parse_str(&BASE.replace("method: approle", "method: ldap")).unwrap_err();
        assert!(
            e.to_string()
                .contains("allowed are kubernetes, jwt, approle, token"),
            "{e}"
        );
    }

    #[test]
    fn a_template_that_does_not_parse_is_a_config_error() {
        let e =
            parse_str(&BASE.replace("{{ data.certificate }}", "{{ data.certificate ")).unwrap_err();
        assert!(
            e.field.as_deref().unwrap_or("").ends_with(".template"),
            "{e}"
        );
    }
}
