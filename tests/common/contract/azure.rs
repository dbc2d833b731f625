//! The contract's Azure store: Key Vault in the Azure stand-in (tests/azure/standin.py, one
//! per test process), reached at the real host names. Each store has its own tenant, a
//! workload identity whose federated credential trusts its own service-account token, and two
//! vaults: [`Params::First`] reads `keyvaultName` one, [`Params::Second`] the other. An object
//! is the secret `<prefix>-<name>`, rendered to `name` (`objectAlias`). The stand-in counts the
//! token exchanges of the store's client and the reads of its objects.
//!
//! secretdrop runs in a mount namespace whose hosts file maps the real names to a loopback
//! address of the host relayed to the stand-in's TLS server ([`Azure::mounted_command`]), so
//! it also reaches the other providers' servers and answers `--listen` on the host, as the
//! scenarios with two providers in one process need; the provider's own tests
//! (tests/azure.rs) run it inside the stand-in's network namespace.

use std::path::Path;

use serde_json::{json, Value};

use super::{Failure, Obj, Params, Store};
use crate::common::azure::{Azure, Workload, PUBLIC_LOGIN};
use crate::common::cli::{bin, scrub_env};
use crate::common::unique;

pub struct AzureStore {
    az: &'static Azure,
    id: Workload,
    token: String,
    prefix: String,
    /// (vault name, host) of the First and Second parameters.
    vaults: [(String, String); 2],
}

fn index(params: Params) -> usize {
    match params {
        Params::First => 0,
        Params::Second => 1,
    }
}

impl AzureStore {
    fn secret(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }
}

impl Store for AzureStore {
    fn start(dir: &Path) -> AzureStore {
        let az = Azure::shared();
        let tenant = unique("tenant");
        let id = az.workload(dir, &tenant, "default", "contract");
        let token = std::fs::read_to_string(&id.token_file).unwrap();
        let vaults = [0, 1].map(|_| {
            let name = unique("kv");
            let host = az.vault(
                &name,
                &tenant,
                PUBLIC_LOGIN,
                json!({&id.client_id: ["secrets/get"]}),
            );
            (name, host)
        });
        AzureStore {
            az,
            id,
            token,
            prefix: unique("c"),
            vaults,
        }
    }

    fn provider(&self) -> &'static str {
        "azure"
    }

    fn put_at(&self, params: Params, values: &[(&str, &str)]) {
        let host = &self.vaults[index(params)].1;
        for (name, value) in values {
            self.az.admin(
                json!({"op": "secret", "host": host, "name": self.secret(name), "value": value}),
            );
        }
    }

    fn fail(&self, object: &str, how: Failure) {
        match how {
            Failure::Missing => {
                self.az
                    .admin(json!({"op": "delete", "host": self.vaults[0].1,
                    "collection": "secrets", "name": self.secret(object)}));
            }
            // Access policies are per vault and kind: the identity loses secrets get.
            Failure::Forbidden => {
                for (_, host) in &self.vaults {
                    self.az.admin(json!({"op": "policy", "host": host,
                        "client_id": self.id.client_id, "permissions": []}));
                }
            }
        }
    }

    fn class(&self, objects: &[Obj], params: Params) -> String {
        let mut list = String::new();
        for o in objects {
            list += &format!(
                "        - |\n          objectName: {}\n          objectType: secret\n          objectAlias: {}\n",
                self.secret(&o.name),
                o.name
            );
            if let Some(mode) = o.mode {
                list += &format!("          filePermission: \"0{mode:o}\"\n");
            }
        }
        format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: contract\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: {}\n    tenantId: {}\n    clientID: {}\n    objects: |\n      array:\n{list}",
            self.vaults[index(params)].0,
            self.id.tenant,
            self.id.client_id
        )
    }

    fn bad_classes(&self) -> Vec<(String, String)> {
        let good = self.class(&[Obj::new("a")], Params::First);
        vec![
            (
                good.replace("objectType: secret", "objectType: Secret"),
                "objectType".into(),
            ),
            (
                good.replace("    objects:", "    usePodIdentity: \"true\"\n    objects:"),
                "usePodIdentity".into(),
            ),
            (
                good.replace("objectAlias: a", "objectAlias: ../a"),
                "objectAlias".into(),
            ),
        ]
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "AZURE_FEDERATED_TOKEN_FILE".into(),
                self.id.token_file.display().to_string(),
            ),
            ("SSL_CERT_FILE".into(), self.az.ca.display().to_string()),
        ]
    }

    fn flags(&self) -> Vec<String> {
        Vec::new()
    }

    fn command(&self) -> std::process::Command {
        let mut cmd = self.az.mounted_command(bin());
        scrub_env(&mut cmd);
        cmd
    }

    fn logins(&self) -> usize {
        self.az.exchanges(&self.id.client_id) as usize
    }

    fn reads(&self) -> usize {
        let mine = format!("/secrets/{}-", self.prefix);
        self.az
            .requests()
            .iter()
            .filter(|r| {
                self.vaults.iter().any(|(_, h)| r["host"] == h.as_str())
                    && r["method"] == "GET"
                    && r["path"].as_str().is_some_and(|p| p.starts_with(&mine))
            })
            .count()
    }

    fn tokens(&self) -> Vec<String> {
        vec![self.token.clone()]
    }

    fn recorded_credentials(&self, state: &Value) -> Vec<String> {
        vec![state["access_token"]
            .as_str()
            .expect("an access token in the state")
            .to_string()]
    }
}
