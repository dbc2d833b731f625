//! What the Azure tests share (tests/azure.rs, azure_output.rs, azure_refusals.rs): a vault
//! with a workload identity in the stand-in ([`Scene`]), secretdrop run inside the stand-in's
//! namespace, classes, keys and certificate chains made with openssl, and the driver's fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use common::azure::{Azure, Workload, PUBLIC_LOGIN};
use common::cli::{read, run_command, Run};
use common::resident::Resident;
use common::{unique, TestDir};
use serde_json::json;

pub fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/azure")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

/// `envsubst`: every `$NAME` of `vars` replaced (longer names first, so `$KEY_NAME` is not
/// taken for `$KEY`).
pub fn envsubst(text: &str, vars: &[(&str, &str)]) -> String {
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
pub struct Scene {
    pub az: &'static Azure,
    pub dir: TestDir,
    pub vault: String,
    pub host: String,
    pub id: Workload,
}

impl Scene {
    pub fn new(permissions: &[&str]) -> Scene {
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

    pub fn secret(&self, name: &str, value: &str) -> String {
        self.az
            .admin(json!({"op": "secret", "host": self.host, "name": name, "value": value}))
            ["version"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// An RSA key in the vault; (version, its public key PEM as openssl writes it).
    pub fn rsa_key(&self, name: &str) -> (String, String) {
        let (private, public) = rsa_pair(self.dir.path(), name);
        let v = self
            .az
            .admin(json!({"op": "key", "host": self.host, "name": name, "private_key": private}));
        (v["version"].as_str().unwrap().to_string(), public)
    }

    /// The environment of a pod with workload identity: the webhook's variables.
    pub fn env(&self) -> Vec<(String, String)> {
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

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        common::cli::write(self.dir.path(), name, text)
    }

    pub fn out(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::create_dir(&p).unwrap();
        p
    }

    /// secretdrop with `args`, inside the stand-in's namespace.
    pub fn run(&self, args: &[&str], env: &[(String, String)]) -> Run {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_command(self.az.command(common::cli::bin()), args, &env)
    }

    pub fn init(&self, config: &Path, out: &Path, extra: &[&str]) -> Run {
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

    pub fn sidecar(&self, config: &Path, out: &Path, extra: &[&str]) -> Resident {
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
    pub fn vault_requests(&self) -> usize {
        self.az.requests_to(&self.host, "/").len()
    }

    pub fn exchanges(&self) -> u64 {
        self.az.exchanges(&self.id.client_id)
    }
}

/// An RSA-2048 key: (private PKCS#8 PEM, public PKIX PEM), by openssl.
pub fn rsa_pair(dir: &Path, name: &str) -> (String, String) {
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

pub fn file(out: &Path, name: &str) -> String {
    read(out.join(name))
}

pub fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A certificate as Key Vault keeps it, with its chain: (leaf, intermediate, root) PEMs and the
/// leaf's private key PEM.
pub struct Chain {
    pub key: String,
    pub leaf: String,
    pub intermediate: String,
    pub root: String,
}

/// A chain whose leaf has an RSA key, or an EC key on `curve` (`P-384`, `P-521`).
pub fn chain(dir: &Path, name: &str, curve: Option<&str>) -> Chain {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let run = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(&d)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let ext = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";
    std::fs::write(d.join("ca.ext"), ext).unwrap();
    std::fs::write(
        d.join("leaf.ext"),
        "basicConstraints=critical,CA:FALSE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nsubjectAltName=DNS:app.example\n",
    )
    .unwrap();
    let pkeyopt = format!("ec_paramgen_curve:{}", curve.unwrap_or(""));
    let newkey: Vec<&str> = match curve {
        Some(_) => vec!["-newkey", "ec", "-pkeyopt", &pkeyopt],
        None => vec!["-newkey", "rsa:2048"],
    };
    let mut root = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-nodes",
        "-subj",
        "/CN=root",
        "-keyout",
        "root.key",
        "-out",
        "root.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "subjectKeyIdentifier=hash",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ];
    root.extend(["-newkey", "rsa:2048"]);
    run(&root);
    run(&[
        "req",
        "-new",
        "-nodes",
        "-subj",
        "/CN=intermediate",
        "-newkey",
        "rsa:2048",
        "-keyout",
        "int.key",
        "-out",
        "int.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        "int.csr",
        "-CA",
        "root.crt",
        "-CAkey",
        "root.key",
        "-CAcreateserial",
        "-extfile",
        "ca.ext",
        "-out",
        "int.crt",
    ]);
    let mut leaf = vec![
        "req",
        "-new",
        "-nodes",
        "-subj",
        "/CN=app.example",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    ];
    leaf.extend(newkey);
    run(&leaf);
    run(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        "leaf.csr",
        "-CA",
        "int.crt",
        "-CAkey",
        "int.key",
        "-CAcreateserial",
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.crt",
    ]);
    Chain {
        key: read(d.join("leaf.key")),
        leaf: read(d.join("leaf.crt")),
        intermediate: read(d.join("int.crt")),
        root: read(d.join("root.crt")),
    }
}

/// The private key as Go's MarshalPKCS8PrivateKey writes it: openssl's PKCS#8 for RSA; for EC
/// the inner key without curve parameters, which `openssl pkey` cannot write, so compared
/// through `openssl pkey -text` (same key) and the absence of parameters.
pub fn pkcs8(dir: &Path, key_pem: &str) -> String {
    let k = dir.join(format!("{}.pem", unique("k")));
    std::fs::write(&k, key_pem).unwrap();
    let o = Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-in"])
        .arg(&k)
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap()
}

/// A class of `objects` (the YAML strings' lines, each starting `objectName:`) for the scene's
/// vault and tenant, with more `parameters` lines.
pub fn class(s: &Scene, parameters: &str, objects: &[&str]) -> String {
    let list: String = objects
        .iter()
        .map(|o| {
            format!(
                "        - |\n{}",
                o.lines()
                    .map(|l| format!("          {l}\n"))
                    .collect::<String>()
            )
        })
        .collect();
    format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: t\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: {}\n    tenantId: {}\n{parameters}    objects: |\n      array:\n{list}",
        s.vault, s.id.tenant
    )
}

pub fn assert_empty(out: &Path) {
    let entries = std::fs::read_dir(out).unwrap().count();
    assert_eq!(entries, 0, "nothing written: {}", common::cli::ls(out));
}

pub fn as_refs<'a>(e: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    e.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
