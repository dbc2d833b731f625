//! The contract's Vault store: a real OpenBao dev server per test process with a file audit
//! device, so logins and reads are counted as OpenBao records them. Each store has its own
//! kubernetes auth mount (its logins are the audit entries on `auth/<mount>/login`), two
//! roles for one service account, and its own KV v2 prefix (its reads are the entries under
//! `secret/data/<prefix>/`). Each object is a KV secret with two keys: `value` (read by a
//! class with [`Params::First`]: the first role, `secretKey: value`) and `other`
//! ([`Params::Second`]: the second role, `secretKey: other`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde_json::{json, Map, Value};

use super::{Failure, Obj, Params, Store};
use crate::common::{
    enable_kubernetes_auth, harness_dir, http, once_or_fail, unique, Bao, SaClaims, Server,
    TokenReviewer,
};

/// The audited server of this test process, and its audit log.
struct Audited {
    bao: Bao,
    audit: PathBuf,
}

fn audited() -> &'static Audited {
    static CELL: OnceLock<Result<Audited, String>> = OnceLock::new();
    once_or_fail(&CELL, || {
        let audit = harness_dir().join("contract-audit.log");
        let config = harness_dir().join("contract-audit.hcl");
        // OpenBao takes audit devices only from its config file, not over the API.
        let hcl = format!(
            "audit \"file\" \"contract\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
            audit.display()
        );
        std::fs::write(&config, hcl).expect("write the audit config");
        let bao = Bao::start_with_config(&config);
        Audited { bao, audit }
    })
}

pub struct VaultStore {
    bao: &'static Bao,
    audit: &'static Path,
    mount: String,
    roles: [String; 2],
    policy: String,
    prefix: String,
    token: String,
    token_path: PathBuf,
    /// Per object: its `value` and `other` keys, written together (a KV v2 write replaces
    /// the whole secret).
    values: Mutex<BTreeMap<String, Map<String, Value>>>,
    forbidden: Mutex<Vec<String>>,
}

impl VaultStore {
    /// The server, for a test that needs more than the contract offers.
    pub fn server(&self) -> &'static Bao {
        self.bao
    }

    fn write_policy(&self) {
        let mut hcl = format!(
            "path \"secret/data/{}/*\" {{ capabilities = [\"read\"] }}\n",
            self.prefix
        );
        for name in self.forbidden.lock().unwrap().iter() {
            hcl += &format!(
                "path \"secret/data/{}/{name}\" {{ capabilities = [\"deny\"] }}\n",
                self.prefix
            );
        }
        self.bao
            .cli_stdin(&["policy", "write", &self.policy, "-"], &hcl);
    }

    /// Response entries of the audit log that hold `needle` (a quoted JSON fragment).
    fn audited(&self, needles: &[&str]) -> usize {
        let text = std::fs::read_to_string(self.audit).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("\"type\":\"response\""))
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    fn root(&self, method: &str, path: &str, body: &str) {
        let token = [("X-Vault-Token", self.bao.root_token())];
        let r = http(method, self.bao.port(), path, &token, body);
        match r {
            Ok((code, _)) if code < 300 => {}
            other => panic!("{method} {path}: {other:?}"),
        }
    }
}

impl Store for VaultStore {
    fn start(dir: &Path) -> VaultStore {
        let a = audited();
        let bao = &a.bao;
        let mount = unique("contract-k8s");
        enable_kubernetes_auth(bao, &mount);
        let (sa, policy, prefix) = (unique("sa"), unique("policy"), unique("contract"));
        let roles = [unique("role"), unique("role")];
        let store = VaultStore {
            bao,
            audit: &a.audit,
            mount,
            roles,
            policy,
            prefix,
            token: TokenReviewer::shared().mint(&SaClaims::new("default", &sa)),
            token_path: dir.join("sa-token"),
            values: Mutex::new(BTreeMap::new()),
            forbidden: Mutex::new(Vec::new()),
        };
        store.write_policy();
        for role in &store.roles {
            bao.cli(&[
                "write",
                &format!("auth/{}/role/{role}", store.mount),
                &format!("bound_service_account_names={sa}"),
                "bound_service_account_namespaces=default",
                &format!("policies={}", store.policy),
                "ttl=20m",
            ]);
        }
        std::fs::write(&store.token_path, &store.token).unwrap();
        store
    }

    fn provider(&self) -> &'static str {
        "vault"
    }

    fn put_at(&self, params: Params, values: &[(&str, &str)]) {
        let key = match params {
            Params::First => "value",
            Params::Second => "other",
        };
        let mut all = self.values.lock().unwrap();
        for (name, value) in values {
            let data = all.entry(name.to_string()).or_default();
            data.insert(key.into(), json!(value));
            let body = json!({ "data": data }).to_string();
            let path = format!("/v1/secret/data/{}/{name}", self.prefix);
            self.root("POST", &path, &body);
        }
    }

    fn fail(&self, object: &str, how: Failure) {
        match how {
            Failure::Missing => {
                self.values.lock().unwrap().remove(object);
                let path = format!("/v1/secret/metadata/{}/{object}", self.prefix);
                self.root("DELETE", &path, "");
            }
            Failure::Forbidden => {
                self.forbidden.lock().unwrap().push(object.into());
                self.write_policy();
            }
        }
    }

    fn class(&self, objects: &[Obj], params: Params) -> String {
        let (role, key) = match params {
            Params::First => (&self.roles[0], "value"),
            Params::Second => (&self.roles[1], "other"),
        };
        let mut list = String::new();
        for o in objects {
            list += &format!(
                "      - objectName: {}\n        secretPath: secret/data/{}/{}\n        secretKey: {key}\n",
                o.name, self.prefix, o.name
            );
            if let Some(mode) = o.mode {
                list += &format!("        filePermission: 0{mode:o}\n");
            }
        }
        format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: contract\nspec:\n  provider: vault\n  parameters:\n    roleName: {role}\n    vaultAddress: {}\n    vaultKubernetesMountPath: {}\n    objects: |\n{list}",
            self.bao.addr(),
            self.mount
        )
    }

    fn bad_classes(&self) -> Vec<(String, String)> {
        let good = self.class(&[Obj::new("a")], Params::First);
        vec![
            (good.replace("secretKey:", "secretKee:"), "secretKee".into()),
            (
                good.replace(&format!("    roleName: {}\n", self.roles[0]), ""),
                "spec.parameters.roleName".into(),
            ),
            (
                good.replace("objectName: a", "objectName: ../a"),
                "objectName".into(),
            ),
        ]
    }

    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    fn flags(&self) -> Vec<String> {
        vec!["--token-path".into(), self.token_path.display().to_string()]
    }

    fn logins(&self) -> usize {
        self.audited(&[&format!("\"path\":\"auth/{}/login\"", self.mount)])
    }

    fn reads(&self) -> usize {
        let path = format!("\"path\":\"secret/data/{}/", self.prefix);
        self.audited(&["\"operation\":\"read\"", &path])
    }

    fn tokens(&self) -> Vec<String> {
        vec![self.token.clone()]
    }
}
