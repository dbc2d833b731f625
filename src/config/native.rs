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
use super::param::{parse_mode, parse_poll_interval, FileDefaults};
use super::yaml;
use super::{
    check_notify, parse_signal, ConfigError, NotifySettings, ProviderSpec, SidecarSettings, Spec,
};
use crate::provider::vault::native::{AuthSection, VaultSection};
use crate::provider::vault::objects::ObjectEntry;
use crate::provider::NativeSections;

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
    /// Which provider's sections apply (docs/configuration.md); absent means Vault, whose
    /// sections are `vault`, `auth` and `objects`. The others have a section named after them.
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
struct FilesSection {
    mode: Option<serde_yaml::Value>,
    owner: Option<u32>,
    group: Option<u32>,
}

pub fn parse(file: &Path, text: &str, env: &VaultEnv) -> Result<Spec, ConfigError> {
    let cfg: ConfigFile = yaml::from_str(text).map_err(|e| ConfigError::yaml(file, &e))?;
    let mode = match &cfg.files.mode {
        None => NATIVE_DEFAULT_MODE,
        Some(m) => parse_mode(m).map_err(|msg| ConfigError::field(file, "files.mode", msg))?,
    };
    let defaults = FileDefaults {
        mode,
        owner: cfg.files.owner,
        group: cfg.files.group,
    };
    let sections = NativeSections {
        vault: cfg.vault,
        auth: cfg.auth,
        objects: cfg.objects,
        aws: cfg.aws,
    };
    let provider =
        ProviderSpec::from_native(file, cfg.provider.as_deref(), sections, defaults, env)?;
    Ok(Spec {
        source: file.to_path_buf(),
        sidecar: compile_sidecar(file, cfg.sidecar)?,
        provider,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Auth, Format, Output};

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
