//! Vault CLI environment variables, honoured as defaults below the config file (docs/cli.md).
//!
//! Captured once into a plain struct so config parsing stays a pure function of (text, env).
//! `VAULT_*` wins over its `BAO_*` twin when both are set.

use std::path::{Path, PathBuf};

use super::error::ConfigError;
use crate::provider::vault::spec::TlsSettings;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VaultEnv {
    pub addr: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub namespace: Option<String>,
    pub skip_verify: Option<String>,
    pub tls_server_name: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`: the region of a `provider: aws` config without one.
    pub aws_region: Option<String>,
}

impl VaultEnv {
    pub fn from_process() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| {
            get(&format!("VAULT_{name}"))
                .or_else(|| get(&format!("BAO_{name}")))
                .filter(|v| !v.is_empty())
        };
        VaultEnv {
            addr: var("ADDR"),
            ca_cert: var("CACERT").map(PathBuf::from),
            ca_path: var("CAPATH").map(PathBuf::from),
            namespace: var("NAMESPACE"),
            skip_verify: var("SKIP_VERIFY"),
            tls_server_name: var("TLS_SERVER_NAME"),
            client_cert: var("CLIENT_CERT").map(PathBuf::from),
            client_key: var("CLIENT_KEY").map(PathBuf::from),
            aws_region: get("AWS_REGION")
                .filter(|v| !v.is_empty())
                .or_else(|| get("AWS_DEFAULT_REGION").filter(|v| !v.is_empty())),
        }
    }
}

impl VaultEnv {
    /// The TLS settings a source gave, each unset one filled from its `VAULT_*` variable (the
    /// Vault CLI's precedence). A `skip_verify` the source set wins without reading
    /// `VAULT_SKIP_VERIFY`; `tls.skip_verify` itself is ignored.
    pub fn fill_tls(
        &self,
        file: &Path,
        tls: TlsSettings,
        skip_verify: Option<bool>,
    ) -> Result<TlsSettings, ConfigError> {
        let skip_verify = match (skip_verify, &self.skip_verify) {
            (Some(b), _) => b,
            (None, None) => false,
            (None, Some(s)) => parse_bool(s).ok_or_else(|| {
                ConfigError::field(
                    file,
                    "VAULT_SKIP_VERIFY",
                    format!("{s:?} is not a boolean: allowed are true, false, 1, 0"),
                )
            })?,
        };
        Ok(TlsSettings {
            // CA text from the source replaces VAULT_CACERT, as a CA file from it would.
            ca_cert: tls
                .ca_cert
                .or_else(|| self.ca_cert.clone().filter(|_| tls.ca_pem.is_none())),
            ca_pem: tls.ca_pem,
            ca_directory: tls.ca_directory.or_else(|| self.ca_path.clone()),
            server_name: tls.server_name.or_else(|| self.tls_server_name.clone()),
            client_cert: tls.client_cert.or_else(|| self.client_cert.clone()),
            client_key: tls.client_key.or_else(|| self.client_key.clone()),
            skip_verify,
        })
    }
}

/// Parses a boolean the way Go's `strconv.ParseBool` does (the CSI provider's parser).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names_win_over_bao_twins() {
        let env = VaultEnv::from_lookup(|k| match k {
            "VAULT_ADDR" => Some("http://a:1".into()),
            "BAO_ADDR" => Some("http://b:2".into()),
            "BAO_NAMESPACE" => Some("team".into()),
            _ => None,
        });
        assert_eq!(env.addr.as_deref(), Some("http://a:1"));
        assert_eq!(env.namespace.as_deref(), Some("team"));
        assert_eq!(env.ca_cert, None);
    }

    #[test]
    fn config_tls_settings_win_and_env_fills_the_rest() {
        let env = VaultEnv {
            ca_cert: Some("/env/ca".into()),
            tls_server_name: Some("env.example".into()),
            skip_verify: Some("maybe".into()),
            ..Default::default()
        };
        let file = Path::new("c");
        let given = TlsSettings {
            ca_cert: Some("/cfg/ca".into()),
            ..Default::default()
        };
        let tls = env.fill_tls(file, given, Some(false)).unwrap();
        assert_eq!(tls.ca_cert, Some("/cfg/ca".into()));
        assert_eq!(tls.server_name.as_deref(), Some("env.example"));
        assert!(
            !tls.skip_verify,
            "a source's own skip-verify never reads the bad env value"
        );
        let e = env
            .fill_tls(file, TlsSettings::default(), None)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("VAULT_SKIP_VERIFY"));
    }

    #[test]
    fn go_style_booleans() {
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}
