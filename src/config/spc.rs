//! A SecretProviderClass manifest read as the CSI driver reads it (docs/configuration.md), into a
//! [`Spec`]: the manifest here, its `parameters` by the provider `spec.provider` names
//! ([`ProviderSpec::from_spc`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::env::VaultEnv;
use super::yaml;
use super::{ConfigError, ProviderSpec, Spec};

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

pub fn parse(file: &Path, text: &str, env: &VaultEnv) -> Result<Spec, ConfigError> {
    let manifest: Manifest = yaml::from_str(text).map_err(|e| ConfigError::yaml(file, &e))?;
    let spec = manifest.spec;
    if spec.secret_objects.is_some() {
        tracing::warn!(
            file = %file.display(),
            "spec.secretObjects: secretdrop writes files and creates no Kubernetes Secret; in a pod the webhook converted, references to these Secrets are served from the files (docs/webhook.md, Synced Secrets)"
        );
    }
    Ok(Spec {
        source: file.to_path_buf(),
        sidecar: Default::default(),
        provider: ProviderSpec::from_spc(file, text, &spec.provider, spec.parameters, env)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Auth, Encoding, Output};

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
