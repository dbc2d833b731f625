//! The contract's GCP store: the Google stand-in (tests/gcp/standin.py, validated by
//! tests/gcp_standin.rs), one per test, answering at a loopback address of its own under
//! Google's real host names, which the hosts file of its mount namespace maps there; secretdrop
//! runs in that mount namespace ([`crate::common::gcp::Google::wrapper`]) with the stand-in's
//! CA as `SSL_CERT_FILE`. The identity is Workload Identity Federation: a projected token the
//! stand-in's STS trusts, the federated principal granted each secret. An object is the secret
//! `<prefix>-<name>`, rendered to `name` (`path`): [`Params::First`] reads the global secret,
//! [`Params::Second`] the regional one (`locations/us-central1`) of the same name.

use std::path::Path;

use serde_json::{json, Value};

use super::{Failure, Obj, Params, Store};
use crate::common::cli::{bin, scrub_env};
use crate::common::gcp::{Federation, Google, LOCATION, PROJECT_ID};
use crate::common::unique;

pub struct GcpStore {
    google: Google,
    federation: Federation,
    prefix: String,
}

fn location(params: Params) -> Option<&'static str> {
    match params {
        Params::First => None,
        Params::Second => Some(LOCATION),
    }
}

impl GcpStore {
    fn secret(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }
}

impl Store for GcpStore {
    fn start(dir: &Path) -> GcpStore {
        let google = Google::start_on_loopback(&dir.join("google"));
        let federation = google.federation(dir, "contract", None);
        GcpStore {
            google,
            federation,
            prefix: unique("contract"),
        }
    }

    fn provider(&self) -> &'static str {
        "gcp"
    }

    fn put_at(&self, params: Params, values: &[(&str, &str)]) {
        for (name, value) in values {
            let id = self.secret(name);
            self.google
                .add_version(location(params), &id, value.as_bytes());
            self.google
                .grant_secret(location(params), &id, &self.federation.principal);
        }
    }

    fn fail(&self, object: &str, how: Failure) {
        let op = match how {
            Failure::Missing => json!({"op": "delete_secret", "secret": self.secret(object)}),
            Failure::Forbidden => json!({"op": "revoke_secret", "secret": self.secret(object),
                "member": self.federation.principal}),
        };
        self.google.admin(op);
    }

    fn class(&self, objects: &[Obj], params: Params) -> String {
        let mut list = String::new();
        for o in objects {
            let at = location(params)
                .map(|l| format!("locations/{l}/"))
                .unwrap_or_default();
            list += &format!(
                "      - resourceName: projects/{PROJECT_ID}/{at}secrets/{}/versions/latest\n        path: {}\n",
                self.secret(&o.name),
                o.name
            );
            if let Some(mode) = o.mode {
                list += &format!("        mode: 0{mode:o}\n");
            }
        }
        format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: contract\nspec:\n  provider: gcp\n  parameters:\n    secrets: |\n{list}"
        )
    }

    fn list_parameter(&self) -> &'static str {
        "secrets"
    }

    fn bad_classes(&self) -> Vec<(String, String)> {
        let good = self.class(&[Obj::new("a")], Params::First);
        vec![
            (good.replace("path: a", "path: my/../a"), "path".into()),
            (
                good.replace("path: a", "path: a\n        mode: \"0400\""),
                "mode".into(),
            ),
            (
                good.replace("versions/latest", "versions/latest/extra"),
                "resourceName".into(),
            ),
        ]
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.federation.env.clone();
        env.push(("SSL_CERT_FILE".into(), self.google.ca.display().to_string()));
        env
    }

    fn flags(&self) -> Vec<String> {
        Vec::new()
    }

    fn command(&self) -> std::process::Command {
        let mut cmd = self.google.wrapper(&bin());
        scrub_env(&mut cmd);
        for (k, _) in std::env::vars() {
            if k.starts_with("GOOGLE_") || k.starts_with("GCE_") || k == "SSL_CERT_FILE" {
                cmd.env_remove(k);
            }
        }
        cmd
    }

    fn logins(&self) -> usize {
        self.google.count("sts") as usize
    }

    fn reads(&self) -> usize {
        self.google.count("access") as usize
    }

    fn tokens(&self) -> Vec<String> {
        vec![self.federation.token.clone()]
    }

    fn recorded_credentials(&self, state: &Value) -> Vec<String> {
        vec![state["access_token"]
            .as_str()
            .expect("an access token in the state")
            .to_string()]
    }
}
