//! The contract's Vault store: a real OpenBao dev server per test process with a file audit
//! device, so logins and reads are counted as OpenBao records them. Each store has its own
//! kubernetes auth mount (its logins are the audit entries on `auth/<mount>/login`), two
//! roles for one service account, and its own KV v2 prefix (its reads are the entries under
//! `secret/data/<prefix>/`). An object is the KV secret `<prefix>/<name>` (key `value`), read
//! by the first role ([`Params::First`]); [`Params::Second`] names the second role and reads
//! `<prefix>/second/<name>`, which only that role may read: a class switched to it renders only
//! once the new role is logged in, so the role change itself is proven applied.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde_json::json;

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
    /// The policy of each role.
    policies: [String; 2],
    prefix: String,
    token: String,
    token_path: PathBuf,
    forbidden: Mutex<Vec<String>>,
}

impl VaultStore {
    /// The server, for a test that needs more than the contract offers.
    pub fn server(&self) -> &'static Bao {
        self.bao
    }

    /// The KV path (under `secret/data/`) of `name` for `params`.
    fn path(&self, params: Params, name: &str) -> String {
        match params {
            Params::First => format!("{}/{name}", self.prefix),
            Params::Second => format!("{}/second/{name}", self.prefix),
        }
    }

    /// The first role reads `<prefix>/*` but `second/` and what was made forbidden; the
    /// second role reads `<prefix>/second/*` alone.
    fn write_policies(&self) {
        let p = &self.prefix;
        let mut first = format!(
            "path \"secret/data/{p}/*\" {{ capabilities = [\"read\"] }}\npath \"secret/data/{p}/second/*\" {{ capabilities = [\"deny\"] }}\n"
        );
        for name in self.forbidden.lock().unwrap().iter() {
            first += &format!("path \"secret/data/{p}/{name}\" {{ capabilities = [\"deny\"] }}\n");
        }
        let second = format!("path \"secret/data/{p}/second/*\" {{ capabilities = [\"read\"] }}\n");
        for (policy, hcl) in self.policies.iter().zip([first, second]) {
            self.bao.cli_stdin(&["policy", "write", policy, "-"], &hcl);
        }
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
        let (sa, prefix) = (unique("sa"), unique("contract"));
        let store = VaultStore {
            bao,
            audit: &a.audit,
            mount,
            roles: [unique("role"), unique("role")],
            policies: [unique("policy"), unique("policy")],
            prefix,
            token: TokenReviewer::shared().mint(&SaClaims::new("default", &sa)),
            token_path: dir.join("sa-token"),
            forbidden: Mutex::new(Vec::new()),
        };
        store.write_policies();
        for (role, policy) in store.roles.iter().zip(&store.policies) {
            bao.cli(&[
                "write",
                &format!("auth/{}/role/{role}", store.mount),
                &format!("bound_service_account_names={sa}"),
                "bound_service_account_namespaces=default",
                &format!("policies={policy}"),
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
        for (name, value) in values {
            let body = json!({ "data": { "value": value } }).to_string();
            let path = format!("/v1/secret/data/{}", self.path(params, name));
            self.root("POST", &path, &body);
        }
    }

    fn fail(&self, object: &str, how: Failure) {
        match how {
            Failure::Missing => {
                let path = format!("/v1/secret/metadata/{}", self.path(Params::First, object));
                self.root("DELETE", &path, "");
            }
            Failure::Forbidden => {
                self.forbidden.lock().unwrap().push(object.into());
                self.write_policies();
            }
        }
    }

    fn class(&self, objects: &[Obj], params: Params) -> String {
        let role = match params {
            Params::First => &self.roles[0],
            Params::Second => &self.roles[1],
        };
        let mut list = String::new();
        for o in objects {
            list += &format!(
                "      - objectName: {}\n        secretPath: secret/data/{}\n        secretKey: value\n",
                o.name,
                self.path(params, &o.name)
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

    fn recorded_credentials(&self, state: &serde_json::Value) -> Vec<String> {
        let token = state["token"]["token"].as_str();
        vec![token.expect("a Vault token in the state").to_string()]
    }
}
