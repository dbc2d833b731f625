//! `provider: azure` end to end against the Azure stand-in (tests/azure/standin.py, checked
//! with Azure's own SDKs by tests/azure/sdk_check.py) at the real host names, inside a network
//! namespace: the CSI driver's own Azure classes byte for byte, the provider's output rules
//! (PEM, PFX, chains, keys, encodings, versions, permissions), workload identity and IMDS,
//! rotation by the sidecar, the token kept across processes, refusals and hostile answers.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::azure::{Azure, Workload, PUBLIC_LOGIN};
use common::cli::{read, run_command, Run};
use common::resident::Resident;
use common::{unique, TestDir};
use serde_json::json;

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/azure")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

/// `envsubst`: every `$NAME` of `vars` replaced (longer names first, so `$KEY_NAME` is not
/// taken for `$KEY`).
fn envsubst(text: &str, vars: &[(&str, &str)]) -> String {
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("${k}"), v);
    }
    assert!(
        !out.contains("$API_VERSION") && !out.contains("$KEYVAULT_NAME"),
        "{out}"
    );
    out
}

/// A vault with one workload identity allowed `permissions`, in a fresh tenant.
struct Scene {
    az: &'static Azure,
    dir: TestDir,
    vault: String,
    host: String,
    id: Workload,
}

impl Scene {
    fn new(permissions: &[&str]) -> Scene {
        let az = Azure::shared();
        let dir = TestDir::new();
        let tenant = unique("tenant");
        let id = az.workload(dir.path(), &tenant, "default", "app");
        let vault = unique("kv");
        let host = az.vault(
            &vault,
            &tenant,
            PUBLIC_LOGIN,
            json!({ &id.client_id: permissions }),
        );
        Scene {
            az,
            dir,
            vault,
            host,
            id,
        }
    }

    fn secret(&self, name: &str, value: &str) -> String {
        self.az
            .admin(json!({"op": "secret", "host": self.host, "name": name, "value": value}))
            ["version"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// An RSA key in the vault; (version, its public key PEM as openssl writes it).
    fn rsa_key(&self, name: &str) -> (String, String) {
        let (private, public) = rsa_pair(self.dir.path(), name);
        let v = self
            .az
            .admin(json!({"op": "key", "host": self.host, "name": name, "private_key": private}));
        (v["version"].as_str().unwrap().to_string(), public)
    }

    /// The environment of a pod with workload identity: the webhook's variables.
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_CLIENT_ID".into(), self.id.client_id.clone()),
            ("AZURE_TENANT_ID".into(), self.id.tenant.clone()),
            (
                "AZURE_FEDERATED_TOKEN_FILE".into(),
                self.id.token_file.display().to_string(),
            ),
            ("SSL_CERT_FILE".into(), self.az.ca.display().to_string()),
        ]
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        common::cli::write(self.dir.path(), name, text)
    }

    fn out(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::create_dir(&p).unwrap();
        p
    }

    /// secretdrop with `args`, inside the stand-in's namespace.
    fn run(&self, args: &[&str], env: &[(String, String)]) -> Run {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_command(self.az.command(common::cli::bin()), args, &env)
    }

    fn init(&self, config: &Path, out: &Path, extra: &[&str]) -> Run {
        let mut args = vec![
            "init",
            "--config",
            config.to_str().unwrap(),
            "--dir",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        self.run(&args, &self.env())
    }

    fn sidecar(&self, config: &Path, out: &Path, extra: &[&str]) -> Resident {
        let env = self.env();
        Resident::start_program(
            self.az.command(common::cli::bin()),
            config,
            out,
            &self.dir.join(format!("{}.log", unique("sidecar"))),
            extra,
            |c| {
                c.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            },
        )
    }

    /// Key Vault GETs (and lists) of this vault so far.
    fn vault_requests(&self) -> usize {
        self.az.requests_to(&self.host, "/").len()
    }

    fn exchanges(&self) -> u64 {
        self.az.exchanges(&self.id.client_id)
    }
}

/// An RSA-2048 key: (private PKCS#8 PEM, public PKIX PEM), by openssl.
fn rsa_pair(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(format!("{name}.key.pem"));
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    (read(&key), String::from_utf8(public.stdout).unwrap())
}

fn file(out: &Path, name: &str) -> String {
    read(out.join(name))
}

#[test]
fn the_drivers_e2e_classes_render_the_secret_and_the_key_with_one_exchange_and_one_get_each() {
    let s = Scene::new(&["secrets/get", "keys/get"]);
    s.secret("secret1", "test");
    let (key_version, public) = s.rsa_key("key1");
    let vars = [
        ("API_VERSION", "secrets-store.csi.x-k8s.io/v1"),
        ("KEYVAULT_NAME", s.vault.as_str()),
        ("SECRET_NAME", "secret1"),
        ("SECRET_VERSION", ""),
        ("KEY_NAME", "key1"),
        ("KEY_VERSION", key_version.as_str()),
        ("TENANT_ID", s.id.tenant.as_str()),
        ("AZURE_TENANT_ID", s.id.tenant.as_str()),
        ("IDENTITY_CLIENT_ID", s.id.client_id.as_str()),
    ];
    // Secret and key (the inline-volume test): one exchange, one GET per object.
    let spc = s.write(
        "v1alpha1.yaml",
        &envsubst(&fixture("azure_v1alpha1_secretproviderclass.yaml"), &vars),
    );
    let out = s.out("inline");
    let before = (s.exchanges(), s.vault_requests());
    s.init(&spc, &out, &[]).expect_code(0);
    assert_eq!(file(&out, "secret1"), "test");
    assert_eq!(
        file(&out, "key1"),
        public,
        "the key as PKIX PEM, as openssl writes it"
    );
    assert!(
        base64_of(&file(&out, "key1")).starts_with("LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0K"),
        "azure.bats KEY_VALUE_CONTAINS"
    );
    assert_eq!(
        (s.exchanges() - before.0, s.vault_requests() - before.1),
        (1, 2),
        "{:#?}",
        s.az.requests_to(&s.host, "/")
    );
    let reads: Vec<String> =
        s.az.requests_to(&s.host, "/")
            .iter()
            .map(|r| {
                format!(
                    "{} {}?{}",
                    r["method"].as_str().unwrap(),
                    r["path"].as_str().unwrap(),
                    r["query"].as_str().unwrap()
                )
            })
            .collect();
    assert!(
        reads.contains(&"GET /secrets/secret1/?api-version=7.4".to_string()),
        "{reads:?}"
    );
    assert!(
        reads.contains(&format!("GET /keys/key1/{key_version}?api-version=7.4")),
        "{reads:?}"
    );
    assert!(
        s.az.requests_to(&s.host, "/")
            .iter()
            .all(|r| r["auth"] == true),
        "the token goes with the first request: the cloud is known, no challenge round trip"
    );

    // The sync class: alias for the secret; the v1 class: clientID in the class.
    let spc = s.write(
        "sync.yaml",
        &envsubst(&fixture("azure_synck8s_v1_secretproviderclass.yaml"), &vars),
    );
    let out = s.out("sync");
    s.init(&spc, &out, &[]).expect_code(0);
    assert_eq!(file(&out, "secretalias"), "test");
    assert_eq!(file(&out, "key1"), public);
    let spc = s.write(
        "v1.yaml",
        &envsubst(&fixture("azure_v1_secretproviderclass.yaml"), &vars),
    );
    let out = s.out("v1");
    let mut env = s.env();
    env.retain(|(k, _)| k != "AZURE_CLIENT_ID" && k != "AZURE_TENANT_ID");
    s.run(
        &[
            "init",
            "--config",
            spc.to_str().unwrap(),
            "--dir",
            out.to_str().unwrap(),
        ],
        &env,
    )
    .expect_code(0);
    assert_eq!(file(&out, "secret1"), "test");
    common::cli::assert_layout(&out, &["secret1"]);
    assert_eq!(common::cli::mode_of(out.join("secret1")) & 0o777, 0o644);

    // The two classes of one file, as two volumes of one pod (the annotations a converted
    // pod carries, one per class).
    let both = envsubst(
        &fixture("azure_v1_multiple_secretproviderclass.yaml"),
        &vars,
    );
    let (first, second) = both.split_once("---\n").unwrap();
    let quoted = |t: &str| serde_json::to_string(t).unwrap();
    let config = s.write(
        "annotations",
        &format!(
            "csi.secretdrop.dev/spc-0={}\ncsi.secretdrop.dev/spc-1={}\n",
            quoted(first),
            quoted(second)
        ),
    );
    let (oa, ob) = (s.out("spc-0"), s.out("spc-1"));
    let before = s.exchanges();
    let va = format!("spc-0={}", oa.display());
    let vb = format!("spc-1={}", ob.display());
    let own = s.dir.join("own");
    s.run(
        &[
            "init",
            "--config",
            config.to_str().unwrap(),
            "--dir",
            own.to_str().unwrap(),
            "--volume",
            &va,
            "--volume",
            &vb,
        ],
        &env,
    )
    .expect_code(0);
    assert_eq!(
        (file(&oa, "secretalias"), file(&ob, "secretalias")),
        ("test".into(), "test".into())
    );
    assert_eq!(
        s.exchanges() - before,
        1,
        "two volumes of one vault and identity share one token"
    );
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
