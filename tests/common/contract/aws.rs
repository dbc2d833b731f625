//! The contract's AWS store: Secrets Manager in moto (one server per test process, SigV4 and
//! IAM enforced), reached through a counting proxy of the store's own (`AWS_ENDPOINT_URL`), so
//! each test counts the STS exchanges and `GetSecretValue` calls that arrive from its process
//! alone. The identity is an IRSA role with a web identity token moto's STS trusts. An object
//! is the secret `<prefix>-<name>`, rendered to `name` (`objectAlias`); it exists in two
//! regions: [`Params::First`] reads it in `us-west-2`, [`Params::Second`] in `us-east-2`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::{Failure, Obj, Params, Store};
use crate::common::hostile::{Act, Proxy};
use crate::common::moto::{call, irsa_env, Moto};
use crate::common::unique;

pub const REGIONS: [&str; 2] = ["us-west-2", "us-east-2"];

pub struct AwsStore {
    moto: &'static Moto,
    proxy: Proxy,
    role: String,
    role_name: String,
    prefix: String,
    token: String,
    token_path: PathBuf,
    /// (region, object) pairs created so far: a later put updates them.
    created: Mutex<BTreeSet<(usize, String)>>,
}

fn region(params: Params) -> usize {
    match params {
        Params::First => 0,
        Params::Second => 1,
    }
}

impl AwsStore {
    fn secret(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Requests through the proxy whose `X-Amz-Target` or form body names `action`.
    fn count(&self, action: &str) -> usize {
        self.proxy
            .seen()
            .iter()
            .filter(|s| {
                let target = s.header("X-Amz-Target").unwrap_or_default();
                target.ends_with(&format!(".{action}"))
                    || String::from_utf8_lossy(&s.body).contains(&format!("Action={action}"))
            })
            .count()
    }
}

impl Store for AwsStore {
    fn start(dir: &Path) -> AwsStore {
        let moto = Moto::shared();
        let proxy = Proxy::start("127.0.0.1", Some(moto.port()), |_| Act::ForwardKeepingHost);
        let role_name = unique("contract-reader");
        let role = moto.role(&role_name, true);
        let token = format!("eyJ.{}.sig", unique("web-identity"));
        moto.trust_token(&token);
        let token_path = dir.join("web-identity-token");
        std::fs::write(&token_path, &token).unwrap();
        AwsStore {
            moto,
            proxy,
            role,
            role_name,
            prefix: unique("contract"),
            token,
            token_path,
            created: Mutex::new(BTreeSet::new()),
        }
    }

    fn provider(&self) -> &'static str {
        "aws"
    }

    fn put_at(&self, params: Params, values: &[(&str, &str)]) {
        let r = region(params);
        let mut created = self.created.lock().unwrap();
        let calls: Vec<Value> = values
            .iter()
            .map(|(name, value)| {
                let id = self.secret(name);
                match created.insert((r, name.to_string())) {
                    true => call(
                        "secretsmanager",
                        REGIONS[r],
                        "create_secret",
                        json!({"Name": id, "SecretString": value}),
                    ),
                    false => call(
                        "secretsmanager",
                        REGIONS[r],
                        "put_secret_value",
                        json!({"SecretId": id, "SecretString": value}),
                    ),
                }
            })
            .collect();
        self.moto.admin(Value::Array(calls));
    }

    fn fail(&self, object: &str, how: Failure) {
        match how {
            Failure::Missing => {
                self.created
                    .lock()
                    .unwrap()
                    .remove(&(0, object.to_string()));
                self.moto.admin(json!([call(
                    "secretsmanager",
                    REGIONS[0],
                    "delete_secret",
                    json!({"SecretId": self.secret(object), "ForceDeleteWithoutRecovery": true})
                )]));
            }
            // moto checks policies against every resource at once: the role loses its
            // read policy, so every object of this store is refused.
            Failure::Forbidden => {
                self.moto.admin(json!([call(
                    "iam",
                    "us-east-1",
                    "delete_role_policy",
                    json!({"RoleName": self.role_name, "PolicyName": "read"})
                )]));
            }
        }
    }

    fn class(&self, objects: &[Obj], params: Params) -> String {
        let mut list = String::new();
        for o in objects {
            list += &format!(
                "      - objectName: {}\n        objectType: secretsmanager\n        objectAlias: {}\n",
                self.secret(&o.name),
                o.name
            );
            if let Some(mode) = o.mode {
                list += &format!("        filePermission: \"0{mode:o}\"\n");
            }
        }
        format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: contract\nspec:\n  provider: aws\n  parameters:\n    region: {}\n    objects: |\n{list}",
            REGIONS[region(params)]
        )
    }

    fn bad_classes(&self) -> Vec<(String, String)> {
        let good = self.class(&[Obj::new("a")], Params::First);
        vec![
            (
                good.replace("objectType: secretsmanager", "objectType: secretsmanagr"),
                "objectType".into(),
            ),
            (
                good.replace(
                    "    objects:",
                    &format!("    failoverRegion: {}\n    objects:", REGIONS[0]),
                ),
                "failoverRegion".into(),
            ),
            (
                good.replace("objectAlias: a", "objectAlias: ../a"),
                "objectAlias".into(),
            ),
        ]
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = irsa_env(self.moto, &self.role, &self.token_path);
        env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
        env.push(("AWS_ENDPOINT_URL".into(), self.proxy.addr()));
        env
    }

    fn flags(&self) -> Vec<String> {
        Vec::new()
    }

    fn logins(&self) -> usize {
        self.count("AssumeRoleWithWebIdentity")
    }

    fn reads(&self) -> usize {
        self.count("GetSecretValue")
    }

    fn tokens(&self) -> Vec<String> {
        vec![self.token.clone()]
    }

    fn recorded_credentials(&self, state: &Value) -> Vec<String> {
        let key = state["secret_access_key"].as_str();
        let mut held = vec![key.expect("a secret key in the state").to_string()];
        held.extend(state["session_token"].as_str().map(String::from));
        held
    }
}
