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

/// The driver's rotation class under the sidecar: a new version in Key Vault reaches the file
/// at the next poll, an unchanged vault leaves `..data` alone; init then the sidecar then a
/// restarted sidecar make one token exchange in all (the token kept in `--state-dir`).
#[test]
fn the_sidecar_rotates_and_init_sidecar_and_restart_share_one_token_exchange() {
    let s = Scene::new(&["secrets/get"]);
    let name = unique("rotated");
    s.secret(&name, "BeforeRotation");
    let vars = [
        ("API_VERSION", "secrets-store.csi.x-k8s.io/v1"),
        ("KEYVAULT_NAME", s.vault.as_str()),
        ("AUTO_ROTATE_SECRET_NAME", name.as_str()),
        ("TENANT_ID", s.id.tenant.as_str()),
    ];
    let spc = s.write(
        "rotation.yaml",
        &envsubst(
            &fixture("rotation_azure_synck8s_v1_secretproviderclass.yaml"),
            &vars,
        ),
    );
    let out = s.out("out");
    let state = s.dir.join("state");
    let state_arg = ["--state-dir", state.to_str().unwrap()];
    s.init(&spc, &out, &state_arg).expect_code(0);
    assert_eq!(file(&out, "secretalias"), "BeforeRotation");
    assert_eq!(s.exchanges(), 1);
    let saved = read(state.join("state.json"));
    assert!(saved.contains("secretdrop.dev/state/azure/v1"));
    assert_eq!(
        common::cli::mode_of(state.join("state.json")) & 0o777,
        0o600
    );

    let mut args = vec!["--poll-interval", "1s"];
    args.extend(state_arg);
    let mut sidecar = s.sidecar(&spc, &out, &args);
    sidecar.wait_ready(Duration::from_secs(20));
    let version = common::cli::current_version(&out);
    let gets = s.vault_requests();
    assert!(
        sidecar.eventually(Duration::from_secs(10), || s.vault_requests() >= gets + 2),
        "two more polls"
    );
    assert_eq!(
        common::cli::current_version(&out),
        version,
        "unchanged vault, ..data untouched"
    );
    s.secret(&name, "AfterRotation");
    assert!(
        sidecar.eventually(Duration::from_secs(10), || file(&out, "secretalias")
            == "AfterRotation"),
        "{}",
        sidecar.log_text()
    );
    assert_ne!(common::cli::current_version(&out), version);
    let (code, _) = sidecar.stop();
    assert_eq!(code, Some(0));
    let mut restarted = s.sidecar(&spc, &out, &args);
    restarted.wait_ready(Duration::from_secs(20));
    let log = sidecar.log_text() + &restarted.log_text();
    assert!(
        log.contains("adopted the recorded Key Vault token"),
        "{log}"
    );
    assert_eq!(
        s.exchanges(),
        1,
        "init, sidecar and restart: one exchange\n{log}"
    );
    let token = read(&s.id.token_file);
    for leak in [token.as_str(), "AfterRotation", "BeforeRotation"] {
        assert!(!log.contains(leak), "{leak} in the log");
    }
    let access: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert!(!log.contains(access["access_token"].as_str().unwrap()));
    restarted.stop();
}

/// A certificate as Key Vault keeps it, with its chain: (leaf, intermediate, root) PEMs and the
/// leaf's private key PEM.
struct Chain {
    key: String,
    leaf: String,
    intermediate: String,
    root: String,
}

fn chain(dir: &Path, name: &str, ec: bool) -> Chain {
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
    let newkey: &[&str] = if ec {
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"]
    } else {
        &["-newkey", "rsa:2048"]
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
fn pkcs8(dir: &Path, key_pem: &str) -> String {
    let k = dir.join(format!("{}.pem", unique("k")));
    std::fs::write(&k, key_pem).unwrap();
    let o = Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-in"])
        .arg(&k)
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn certificates_are_written_as_the_provider_writes_them_pem_pfx_chain_keys() {
    let s = Scene::new(&["secrets/get", "keys/get", "certificates/get"]);
    let rsa = chain(s.dir.path(), "rsa", false);
    let ec = chain(s.dir.path(), "ec", true);
    // The PFX holds the chain in the order openssl writes it (leaf first, then the others as
    // given): given root first, so that reordering is needed.
    for (name, c, content_type) in [
        ("web-pfx", &rsa, "application/x-pkcs12"),
        ("web-pem", &rsa, "application/x-pem-file"),
        ("ec-pfx", &ec, "application/x-pkcs12"),
    ] {
        s.az.admin(
            json!({"op": "certificate", "host": s.host, "name": name, "private_key": c.key,
            "certificates": [c.leaf, c.root, c.intermediate], "contentType": content_type}),
        );
    }
    let objects = [
        "objectName: web-pfx\n          objectType: secret",
        "objectName: web-pfx\n          objectType: secret\n          objectAlias: web.pfx\n          objectFormat: PFX",
        "objectName: web-pfx\n          objectType: secret\n          objectAlias: web.bin.pfx\n          objectFormat: pfx\n          objectEncoding: base64",
        "objectName: web-pfx\n          objectType: cert\n          objectAlias: web.crt",
        "objectName: web-pfx\n          objectType: key\n          objectAlias: web.pub",
        "objectName: web-pem\n          objectType: secret",
        "objectName: ec-pfx\n          objectType: secret\n          filePermission: \"0600\"",
        "objectName: ec-pfx\n          objectType: key\n          objectAlias: ec.pub",
    ];
    let list: String = objects
        .iter()
        .map(|o| format!("        - |\n          {o}\n"))
        .collect();
    let spc = s.write(
        "certs.yaml",
        &format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: certs\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: {}\n    tenantId: {}\n    objects: |\n      array:\n{list}",
            s.vault, s.id.tenant
        ),
    );
    let out = s.out("out");
    s.init(&spc, &out, &[]).expect_code(0);
    let chained = |c: &Chain| format!("{}{}{}", c.leaf, c.intermediate, c.root);
    // PFX → PEM: the key as PKCS#8, then the chain leaf → intermediate → root.
    assert_eq!(
        file(&out, "web-pfx"),
        format!("{}{}", pkcs8(s.dir.path(), &rsa.key), chained(&rsa))
    );
    // objectFormat pfx: the base64 text as stored; with base64, the PFX itself.
    let text = file(&out, "web.pfx");
    let bin = std::fs::read(out.join("web.bin.pfx")).unwrap();
    use base64::Engine;
    assert_eq!(base64::engine::general_purpose::STANDARD.encode(&bin), text);
    let opened = Command::new("openssl")
        .args(["pkcs12", "-in"])
        .arg(out.join("web.bin.pfx"))
        .args(["-passin", "pass:", "-nokeys"])
        .output()
        .unwrap();
    assert!(
        opened.status.success(),
        "openssl opens the written PFX with the empty password"
    );
    assert_eq!(file(&out, "web.crt"), rsa.leaf, "cert: the leaf as PEM");
    let pubkey = Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(s.dir.join("rsa/leaf.crt"))
        .output()
        .unwrap();
    assert_eq!(
        file(&out, "web.pub"),
        String::from_utf8(pubkey.stdout).unwrap()
    );
    // PEM content type: the value as stored (PKCS#8 key, then the certificates as given).
    assert_eq!(
        file(&out, "web-pem"),
        format!(
            "{}{}{}{}",
            pkcs8(s.dir.path(), &rsa.key),
            rsa.leaf,
            rsa.root,
            rsa.intermediate
        )
    );
    // EC (P-384): one PRIVATE KEY block, then the chain in order; the key is the same key.
    let written = file(&out, "ec-pfx");
    assert!(
        written.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "{written}"
    );
    assert!(written.ends_with(&chained(&ec)), "{written}");
    assert_eq!(common::cli::mode_of(out.join("ec-pfx")) & 0o777, 0o600);
    let key_only = written
        .split("-----END PRIVATE KEY-----\n")
        .next()
        .unwrap()
        .to_string()
        + "-----END PRIVATE KEY-----\n";
    let k = s.dir.join("written-ec.pem");
    std::fs::write(&k, &key_only).unwrap();
    let text_of = |p: &Path| {
        let o = Command::new("openssl")
            .args(["pkey", "-noout", "-text", "-in"])
            .arg(p)
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(
        text_of(&k),
        text_of(&s.dir.join("ec/leaf.key")),
        "the same EC key"
    );
    let ec_pub = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(s.dir.join("ec/leaf.key"))
        .output()
        .unwrap();
    assert_eq!(
        file(&out, "ec.pub"),
        String::from_utf8(ec_pub.stdout).unwrap()
    );
}

/// The stand-in against Azure's own Python SDKs (tests/azure/sdk_check.py): they take its
/// challenge, its token endpoint, its answers, its paging and its errors as the real
/// services'. What they read is compared with what the stand-in was given.
#[test]
fn the_stand_in_satisfies_azures_own_sdks() {
    let s = Scene::new(&[
        "secrets/get",
        "secrets/list",
        "secrets/set",
        "keys/get",
        "certificates/get",
    ]);
    s.az.admin(json!({"op": "vault", "name": s.vault, "tenant": s.id.tenant, "authority": PUBLIC_LOGIN,
        "policies": {&s.id.client_id: ["secrets/get", "secrets/list", "secrets/set", "keys/get", "certificates/get"]},
        "page_size": 2}));
    let name = "sdk-secret";
    let versions: Vec<String> = (0..5)
        .map(|i| s.secret(name, &format!("value-{i}")))
        .collect();
    let (key_version, _) = s.rsa_key("sdk-key");
    let c = chain(s.dir.path(), "sdk", false);
    let cert_version = s.az.admin(
        json!({"op": "certificate", "host": s.host, "name": "sdk-cert",
        "private_key": c.key, "certificates": [c.leaf], "contentType": "application/x-pkcs12"}),
    )["version"]
        .as_str()
        .unwrap()
        .to_string();
    let denied =
        s.az.workload(s.dir.path(), &s.id.tenant, "default", "other");
    let wrong = common::TokenReviewer::shared().mint(
        &common::SaClaims::new("default", "not-the-app").with_audiences(&[common::azure::AUDIENCE]),
    );
    let wrong_file = s.write("wrong.token", &wrong);
    // The custom cloud.
    let stack_tenant = unique("tenant");
    let stack_id = s.az.workload(s.dir.path(), &stack_tenant, "default", "app");
    let stack_vault = unique("kv");
    let stack_host = s.az.vault(
        &stack_vault,
        &stack_tenant,
        common::azure::STACK_LOGIN,
        json!({&stack_id.client_id: ["secrets/get"]}),
    );
    s.az.admin(json!({"op": "secret", "host": stack_host, "name": "stack-secret", "value": "from-the-stack"}));

    let cfg = json!({
        "vault_url": format!("https://{}/", s.host), "tenant": s.id.tenant, "client_id": s.id.client_id,
        "token_file": s.id.token_file, "secret": name, "missing": "no-such-secret", "key": "sdk-key",
        "cert": "sdk-cert", "denied_client_id": denied.client_id, "denied_token_file": denied.token_file,
        "wrong_token_file": wrong_file,
        "stack": {"vault_url": format!("https://{stack_host}/"), "tenant": stack_tenant,
            "client_id": stack_id.client_id, "token_file": stack_id.token_file,
            "authority": common::azure::STACK_LOGIN, "secret": "stack-secret"},
    });
    let mut cmd = s.az.command("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/azure/sdk_check.py"))
        .env("REQUESTS_CA_BUNDLE", &s.az.ca)
        .env("SSL_CERT_FILE", &s.az.ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("AZURE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cfg.to_string().as_bytes())
        .unwrap();
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "sdk_check.py (pip install the SDKs with scripts/tools.sh):\n{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(got["secret"], "value-4");
    let mut sorted = versions.clone();
    sorted.sort();
    assert_eq!(
        got["versions"],
        json!(sorted),
        "five versions over three pages (nextLink)"
    );
    assert!(
        s.az.requests_to(&s.host, &format!("/secrets/{name}/versions"))
            .iter()
            .filter(|r| r["status"] == 200)
            .count()
            == 3
    );
    assert_eq!(got["after_write"], "written-by-the-sdk");
    assert!(!versions.contains(&got["written_version"].as_str().unwrap().to_string()));
    assert_eq!(
        got["missing"],
        json!({"status": 404, "code": "SecretNotFound"})
    );
    assert_eq!(got["key"]["kty"], "RSA");
    assert_eq!(got["key"]["version"], key_version.as_str());
    assert_eq!(got["cert"]["version"], cert_version.as_str());
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(s.dir.join("sdk/leaf.crt"))
        .output()
        .unwrap()
        .stdout;
    let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got["cert"]["cer"], hex);
    assert_eq!(
        got["cert"]["secret_id"],
        format!("https://{}/secrets/sdk-cert/{cert_version}", s.host)
    );
    assert_eq!(got["cert_secret_content_type"], "application/x-pkcs12");
    assert_eq!(got["forbidden"]["status"], 403);
    assert_eq!(got["forbidden"]["code"], "Forbidden");
    assert!(
        got["wrong_subject"]["message"]
            .as_str()
            .unwrap()
            .contains("AADSTS700213"),
        "{}",
        got["wrong_subject"]
    );
    assert_eq!(got["stack_secret"], "from-the-stack");
    // The SDKs' first request to a vault is unauthenticated, answered with the challenge.
    let first = &s.az.requests_to(&s.host, "/")[0];
    assert_eq!(
        (first["auth"].clone(), first["status"].clone()),
        (json!(false), json!(401))
    );
}

/// A class of `objects` (the YAML strings' lines, each starting `objectName:`) for the scene's
/// vault and tenant, with more `parameters` lines.
fn class(s: &Scene, parameters: &str, objects: &[&str]) -> String {
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

fn assert_empty(out: &Path) {
    let entries = std::fs::read_dir(out).unwrap().count();
    assert_eq!(entries, 0, "nothing written: {}", common::cli::ls(out));
}

/// Mistakes in the class are exit 2, name the field and what is allowed, and write nothing.
#[test]
fn bad_classes_are_exit_2_naming_the_field_and_write_nothing() {
    let s = Scene::new(&["secrets/get"]);
    s.secret("s1", "v1");
    let ok = "objectName: s1\nobjectType: secret";
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "    usePodIdentity: \"true\"\n",
            &[ok],
            &[
                "spec.parameters.usePodIdentity",
                "retired",
                "Workload Identity",
            ],
        ),
        (
            "    useAzureTokenProxy: \"true\"\n",
            &[ok],
            &["spec.parameters.useAzureTokenProxy", "not supported"],
        ),
        (
            "    usePodIdentity: \"yes\"\n",
            &[ok],
            &["spec.parameters.usePodIdentity", "not a boolean"],
        ),
        (
            "    region: westeurope\n",
            &[ok],
            &[
                "spec.parameters.region",
                "unknown parameter for provider azure",
            ],
        ),
        (
            "    cloudName: AzureGermanCloud\n",
            &[ok],
            &["spec.parameters.cloudName", "AzureChinaCloud"],
        ),
        (
            "    cloudName: AzureStackCloud\n",
            &[ok],
            &["cloudEnvFileName", "AZURE_ENVIRONMENT_FILEPATH"],
        ),
        (
            "    cloudEnvFileName: /etc/env.json\n",
            &[ok],
            &[
                "spec.parameters.cloudEnvFileName",
                "only applies with cloudName: AzureStackCloud",
            ],
        ),
        (
            "    useVMManagedIdentity: \"true\"\n    clientID: abc\n",
            &[ok],
            &["spec.parameters.clientID", "not both"],
        ),
        (
            "    userAssignedIdentityID: abc\n",
            &[ok],
            &[
                "spec.parameters.userAssignedIdentityID",
                "useVMManagedIdentity",
            ],
        ),
        (
            "",
            &["objectName: s1\nobjectType: Secret"],
            &[
                "spec.parameters.objects.array[0].objectType",
                "secret, key, cert",
            ],
        ),
        (
            "",
            &["objectName: s1\nobjectType: key\nobjectFormat: pfx"],
            &[
                "array[0].objectFormat",
                "only applies to objectType: secret",
            ],
        ),
        (
            "",
            &["objectName: s1\nobjectType: key\nobjectEncoding: hex"],
            &["array[0].objectEncoding"],
        ),
        (
            "",
            &["objectName: s1\nobjectType: secret\nobjectAlias: ../../etc/passwd"],
            &["array[0].objectAlias", ".."],
        ),
        (
            "",
            &["objectName: s1\nobjectType: secret\nobjectAlias: a..b"],
            &["array[0].objectAlias", ".."],
        ),
        (
            "",
            &["objectName: s1\nobjectType: secret\nobjectAlias: /etc/x"],
            &["array[0].objectAlias", "absolute"],
        ),
        (
            "",
            &["objectName: s1\nobjectType: secret\nfilePermission: \"0999\""],
            &["array[0].filePermission", "octal"],
        ),
        (
            "",
            &["objectName: s1\nobjectType: secret\nobjectVersionHistory: -1"],
            &["array[0].objectVersionHistory"],
        ),
        (
            "",
            &["objectName: s1\nobjectType: secret\nobjectname: typo"],
            &["array[0].objectname", "unknown field"],
        ),
        (
            "",
            &[ok, "objectName: s1\nobjectType: key"],
            &["array[1]", "collides"],
        ),
    ];
    for (i, (params, objects, fragments)) in cases.iter().enumerate() {
        let spc = s.write(&format!("bad-{i}.yaml"), &class(&s, params, objects));
        let out = s.out(&format!("bad-{i}"));
        let run = s.init(&spc, &out, &[]);
        run.expect_code(2).expect_stderr(fragments);
        assert_empty(&out);
    }
    // The tenant is the class's or AZURE_TENANT_ID's: without either, exit 2 before any request.
    let text = class(&s, "", &[ok]).replace(&format!("    tenantId: {}\n", s.id.tenant), "");
    let spc = s.write("no-tenant.yaml", &text);
    let out = s.out("no-tenant");
    let mut env = s.env();
    env.retain(|(k, _)| k != "AZURE_TENANT_ID");
    let args = [
        "init",
        "--config",
        spc.to_str().unwrap(),
        "--dir",
        out.to_str().unwrap(),
    ];
    s.run(&args, &env)
        .expect_code(2)
        .expect_stderr(&["tenantId", "AZURE_TENANT_ID"]);
    assert_empty(&out);
    // With it, the same class works.
    s.run(&args, &s.env()).expect_code(0);
}

/// What Key Vault and Entra refuse is exit 1 with their code and message, the object and the
/// vault named, nothing written, no secret or token in the output.
#[test]
fn refusals_name_the_object_the_vault_and_the_services_words() {
    let s = Scene::new(&["secrets/get"]);
    s.secret("ok", "readable-value");
    let (_, _) = s.rsa_key("nokey");
    let disabled = s.secret("off", "disabled-value");
    s.az.admin(
        json!({"op": "enable", "host": s.host, "collection": "secrets", "name": "off",
        "version": disabled, "enabled": false}),
    );
    let token = read(&s.id.token_file);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["objectName: nokey\nobjectType: key"],
            &[
                "object \"nokey\" (key/nokey)",
                &s.vault,
                "HTTP 403 Forbidden (AccessDenied)",
                "does not have keys get permission",
                "grant this identity get",
            ],
        ),
        (
            &["objectName: absent\nobjectType: secret"],
            &[
                "object \"absent\" (secret/absent)",
                "HTTP 404 SecretNotFound",
                "A secret with (name/id) absent was not found",
            ],
        ),
        (
            &["objectName: off\nobjectType: secret"],
            &[
                "HTTP 403 Forbidden (SecretDisabled)",
                "not allowed on a disabled secret",
            ],
        ),
    ];
    for (i, (objects, fragments)) in cases.iter().enumerate() {
        let mut objects = objects.to_vec();
        objects.insert(0, "objectName: ok\nobjectType: secret");
        let spc = s.write(&format!("refused-{i}.yaml"), &class(&s, "", &objects));
        let out = s.out(&format!("refused-{i}"));
        s.init(&spc, &out, &["--timeout", "5s"])
            .expect_code(1)
            .expect_stderr(fragments)
            .expect_no_leak(&["readable-value", &token]);
        assert_empty(&out);
    }
    // A token of another service account: Entra's AADSTS700213, without the token.
    let wrong = common::TokenReviewer::shared().mint(
        &common::SaClaims::new("default", "intruder").with_audiences(&[common::azure::AUDIENCE]),
    );
    std::fs::write(&s.id.token_file, &wrong).unwrap();
    let spc = s.write(
        "wrong.yaml",
        &class(&s, "", &["objectName: ok\nobjectType: secret"]),
    );
    let out = s.out("wrong");
    s.init(&spc, &out, &["--timeout", "5s"])
        .expect_code(1)
        .expect_stderr(&[
            "Entra ID token exchange",
            "invalid_request: AADSTS700213: No matching federated identity record found for presented assertion subject 'system:serviceaccount:default:intruder'",
            "federated identity credential",
        ])
        .expect_no_leak(&[&wrong]);
    assert_empty(&out);
    // A token for the wrong audience: AADSTS700212.
    let aud = common::TokenReviewer::shared().mint(&common::SaClaims::new("default", "app"));
    std::fs::write(&s.id.token_file, &aud).unwrap();
    s.init(&spc, &out, &["--timeout", "5s"])
        .expect_code(1)
        .expect_stderr(&["AADSTS700212"])
        .expect_no_leak(&[&aud]);
    assert_empty(&out);
}

/// Hostile answers: a nextLink or a redirect to another origin gets no token (nothing at all
/// reaches it), a huge body and a trickling one are cut off in bounded time and memory,
/// throttling is waited out; nothing is written on failure.
#[test]
fn hostile_answers_are_bounded_and_the_token_stays_home() {
    let s = Scene::new(&["secrets/get", "secrets/list"]);
    for i in 0..3 {
        s.az.admin(json!({"op": "secret", "host": s.host, "name": "hist", "value": format!("v{i}"), "created": 1000 + i}));
    }
    s.secret("plain", "plain-value");
    let evil_before = s.az.requests_to(common::azure::EVIL, "/").len();
    let history = s.write(
        "history.yaml",
        &class(
            &s,
            "",
            &["objectName: hist\nobjectType: secret\nobjectVersionHistory: 2"],
        ),
    );
    let plain = s.write(
        "plain.yaml",
        &class(&s, "", &["objectName: plain\nobjectType: secret"]),
    );
    let rule = |path: &str, rule: serde_json::Value| {
        s.az.admin(json!({"op": "behave"}));
        let mut r = rule;
        r["host"] = json!(s.host);
        r["path"] = json!(path);
        s.az.admin(json!({"op": "misbehave", "rule": r}));
    };
    // nextLink elsewhere.
    rule(
        "/secrets/hist/versions",
        json!({"action": "nextlink", "to": format!("https://{}/secrets/hist/versions?api-version=7.4&$skiptoken=1", common::azure::EVIL)}),
    );
    let out = s.out("nextlink");
    s.init(&history, &out, &["--timeout", "5s"])
        .expect_code(1)
        .expect_stderr(&[
            "ForeignNextLink",
            "evil.example.com",
            "the token is not sent there",
        ]);
    assert_empty(&out);
    // nextLink on the vault's host but another path (another object's list) is refused too.
    rule(
        "/secrets/hist/versions",
        json!({"action": "nextlink", "to": format!("https://{}:443/secrets/plain/versions?api-version=7.4", s.host)}),
    );
    s.init(&history, &out, &["--timeout", "5s"])
        .expect_code(1)
        .expect_stderr(&["ForeignNextLink"]);
    // A redirect.
    rule(
        "/secrets/plain",
        json!({"action": "redirect", "to": format!("https://{}/secrets/plain", common::azure::EVIL)}),
    );
    s.init(&plain, &out, &["--timeout", "5s"])
        .expect_code(1)
        .expect_stderr(&["HTTP 307 Redirect", "not followed"]);
    assert_empty(&out);
    assert_eq!(
        s.az.requests_to(common::azure::EVIL, "/").len(),
        evil_before,
        "nothing reached the other origin"
    );
    // 64 MiB of body: refused at 1 MiB, quickly.
    rule("/secrets/plain", json!({"action": "huge", "chunks": 1024}));
    let run = s.init(&plain, &out, &["--timeout", "5s"]);
    run.expect_code(1)
        .expect_stderr(&["larger than 1048576 bytes"]);
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
    assert_empty(&out);
    // One byte a second: init gives up at its timeout, not at the body's end.
    rule("/secrets/plain", json!({"action": "slow"}));
    let run = s.init(&plain, &out, &["--timeout", "3s"]);
    run.expect_code(1);
    assert!(run.elapsed < Duration::from_secs(8), "{:?}", run.elapsed);
    assert_empty(&out);
    // Throttled twice (429 with Retry-After), then answered: the read succeeds.
    s.az.admin(json!({"op": "behave"}));
    s.az.admin(json!({"op": "misbehave", "rule": {"host": s.host, "path": "/secrets/plain", "action": "throttle", "retry_after": 1, "count": 2}}));
    let before = s.vault_requests();
    s.init(&plain, &out, &["--timeout", "20s"]).expect_code(0);
    assert_eq!(file(&out, "plain"), "plain-value");
    assert_eq!(
        s.vault_requests() - before,
        3,
        "two throttled, one answered"
    );
    s.az.admin(json!({"op": "behave"}));
}

/// `objectVersionHistory`: enabled versions, newest first by creation time, from
/// `objectVersion` when given, as `ALIAS/0`, `ALIAS/1`, ...; up to N+1 files as the provider
/// writes them; the list followed over pages.
#[test]
fn version_history_is_laid_out_as_the_provider_does() {
    let s = Scene::new(&["secrets/get", "secrets/list", "keys/get", "keys/list"]);
    s.az.admin(
        json!({"op": "vault", "name": s.vault, "tenant": s.id.tenant, "authority": PUBLIC_LOGIN,
        "policies": {&s.id.client_id: ["secrets/get", "secrets/list"]}, "page_size": 2}),
    );
    // Created out of id order, one disabled.
    let created = [1003, 1001, 1005, 1002, 1004];
    let mut ids = Vec::new();
    for (i, t) in created.iter().enumerate() {
        let v = s.az.admin(json!({"op": "secret", "host": s.host, "name": "rotating", "value": format!("value-at-{t}"), "created": t}));
        ids.push((v["version"].as_str().unwrap().to_string(), *t, i));
    }
    let off = ids.iter().find(|(_, t, _)| *t == 1004).unwrap().0.clone();
    s.az.admin(json!({"op": "enable", "host": s.host, "collection": "secrets", "name": "rotating", "version": off, "enabled": false}));
    let spc = s.write("history.yaml", &class(&s, "", &[
        "objectName: rotating\nobjectType: secret\nobjectAlias: all\nobjectVersionHistory: 2",
        "objectName: rotating\nobjectType: secret\nobjectAlias: few\nobjectVersionHistory: 10",
    ]));
    let out = s.out("out");
    s.init(&spc, &out, &[]).expect_code(0);
    // Enabled, newest first: 1005, 1003, 1002, 1001; N=2 writes indexes 0..=2.
    for (i, t) in [1005, 1003, 1002].iter().enumerate() {
        assert_eq!(file(&out, &format!("all/{i}")), format!("value-at-{t}"));
    }
    assert!(!out.join("all/3").exists());
    for (i, t) in [1005, 1003, 1002, 1001].iter().enumerate() {
        assert_eq!(file(&out, &format!("few/{i}")), format!("value-at-{t}"));
    }
    assert!(
        !out.join("few/4").exists(),
        "fewer versions than asked: fewer files"
    );
    // From a given version on.
    let start = ids.iter().find(|(_, t, _)| *t == 1003).unwrap().0.clone();
    let spc = s.write(
        "from.yaml",
        &class(
            &s,
            "",
            &[&format!(
        "objectName: rotating\nobjectType: secret\nobjectVersion: {start}\nobjectVersionHistory: 2"
    )],
        ),
    );
    let out = s.out("from");
    s.init(&spc, &out, &[]).expect_code(0);
    let written: Vec<String> = (0..3)
        .map(|i| file(&out, &format!("rotating/{i}")))
        .collect();
    assert_eq!(written, ["value-at-1003", "value-at-1002", "value-at-1001"]);
    // Without list permission: Key Vault's 403 names it.
    s.az.admin(json!({"op": "policy", "host": s.host, "client_id": s.id.client_id, "permissions": ["secrets/get"]}));
    let out = s.out("denied");
    s.init(&spc, &out, &["--timeout", "5s"])
        .expect_code(1)
        .expect_stderr(&["does not have secrets list permission"]);
    assert_empty(&out);
}

fn as_refs<'a>(e: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    e.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Managed identity through IMDS (`useVMManagedIdentity`), the China cloud, and a custom
/// cloud from its environment file (`cloudEnvFileName`, or `AZURE_ENVIRONMENT_FILEPATH`).
#[test]
fn imds_and_other_clouds() {
    let az = Azure::shared();
    let dir = TestDir::new();
    let tenant = unique("tenant");
    let (a, b) = (unique("uami"), unique("uami"));
    for c in [&a, &b] {
        az.admin(json!({"op": "app", "client_id": c, "tenant": tenant}));
    }
    az.admin(json!({"op": "vm_identities", "user": [a, b]}));
    let vault = unique("kv");
    let host = az.vault(&vault, &tenant, PUBLIC_LOGIN, json!({&a: ["secrets/get"]}));
    az.admin(json!({"op": "secret", "host": host, "name": "s", "value": "from-imds"}));
    let ca = az.ca.display().to_string();
    let env = [("SSL_CERT_FILE", ca.as_str())];
    let spc = |params: &str, vault: &str, tenant: &str| {
        format!("apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: t\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: {vault}\n    tenantId: {tenant}\n{params}    objects: |\n      array:\n        - |\n          objectName: s\n          objectType: secret\n")
    };
    let run = |config: &Path, out: &Path, env: &[(&str, &str)]| {
        run_command(
            az.command(common::cli::bin()),
            &[
                "init",
                "--config",
                config.to_str().unwrap(),
                "--dir",
                out.to_str().unwrap(),
                "--timeout",
                "5s",
            ],
            env,
        )
    };
    let uami = common::cli::write(
        dir.path(),
        "uami.yaml",
        &spc(
            &format!("    useVMManagedIdentity: \"true\"\n    userAssignedIdentityID: {a}\n"),
            &vault,
            &tenant,
        ),
    );
    let out = dir.join("uami");
    std::fs::create_dir(&out).unwrap();
    run(&uami, &out, &env).expect_code(0);
    assert_eq!(read(out.join("s")), "from-imds");
    assert_eq!(az.exchanges(&a), 1);
    let imds = az.requests_to("169.254.169.254", "/metadata/identity/oauth2/token");
    let last = imds.last().unwrap();
    assert!(
        last["query"]
            .as_str()
            .unwrap()
            .contains(&format!("client_id={a}")),
        "{last}"
    );
    // Two identities on the node and none named: IMDS's own words.
    let system = common::cli::write(
        dir.path(),
        "system.yaml",
        &spc("    useVMManagedIdentity: \"true\"\n", &vault, &tenant),
    );
    let out = dir.join("system");
    std::fs::create_dir(&out).unwrap();
    run(&system, &out, &env)
        .expect_code(1)
        .expect_stderr(&["IMDS", "Multiple user assigned identities exist"]);
    assert_empty(&out);

    // China: its authority and its vault suffix; the public authority would not do.
    let id = az.workload(dir.path(), &tenant, "default", "app");
    let cn = unique("kv");
    let cn_host = az.vault(
        &cn,
        &tenant,
        common::azure::CHINA_LOGIN,
        json!({&id.client_id: ["secrets/get"]}),
    );
    assert!(cn_host.ends_with(".vault.azure.cn"));
    az.admin(json!({"op": "secret", "host": cn_host, "name": "s", "value": "from-china"}));
    let wi_env = |extra: &[(&'static str, String)]| {
        let mut e = vec![
            ("SSL_CERT_FILE", ca.clone()),
            ("AZURE_CLIENT_ID", id.client_id.clone()),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                id.token_file.display().to_string(),
            ),
        ];
        e.extend(extra.iter().cloned());
        e
    };
    let china = common::cli::write(
        dir.path(),
        "china.yaml",
        &spc("    cloudName: azurechinacloud\n", &cn, &tenant),
    );
    let out = dir.join("china");
    std::fs::create_dir(&out).unwrap();
    // AZURE_AUTHORITY_HOST does not move a named cloud's authority.
    let e = wi_env(&[(
        "AZURE_AUTHORITY_HOST",
        "https://login.microsoftonline.com/".into(),
    )]);
    run(&china, &out, &as_refs(&e)).expect_code(0);
    assert_eq!(read(out.join("s")), "from-china");
    assert_eq!(
        az.requests_to(
            common::azure::CHINA_LOGIN,
            &format!("/{tenant}/oauth2/v2.0/token")
        )
        .len(),
        1
    );

    // A custom cloud from its environment file, named by the class or by the environment.
    let st = unique("kv");
    let st_host = az.vault(
        &st,
        &tenant,
        common::azure::STACK_LOGIN,
        json!({&id.client_id: ["secrets/get"]}),
    );
    az.admin(json!({"op": "secret", "host": st_host, "name": "s", "value": "from-the-stack"}));
    let envfile = common::cli::write(dir.path(), "stack.json", &json!({
        "name": "AzureStackCloud", "managementPortalURL": "https://portal.stack.example/",
        "activeDirectoryEndpoint": format!("https://{}/", common::azure::STACK_LOGIN),
        "keyVaultEndpoint": "https://vault.stack.example/", "keyVaultDNSSuffix": common::azure::STACK_SUFFIX,
        "resourceManagerEndpoint": "https://management.stack.example/"}).to_string());
    let stack = common::cli::write(
        dir.path(),
        "stack.yaml",
        &spc(
            &format!(
                "    cloudName: AzureStackCloud\n    cloudEnvFileName: {}\n",
                envfile.display()
            ),
            &st,
            &tenant,
        ),
    );
    let out = dir.join("stack");
    std::fs::create_dir(&out).unwrap();
    run(&stack, &out, &as_refs(&wi_env(&[]))).expect_code(0);
    assert_eq!(read(out.join("s")), "from-the-stack");
    let by_env = common::cli::write(
        dir.path(),
        "stack-env.yaml",
        &spc("    cloudName: AzureStackCloud\n", &st, &tenant),
    );
    let out = dir.join("stack-env");
    std::fs::create_dir(&out).unwrap();
    run(
        &by_env,
        &out,
        &as_refs(&wi_env(&[(
            "AZURE_ENVIRONMENT_FILEPATH",
            envfile.display().to_string(),
        )])),
    )
    .expect_code(0);
    assert_eq!(read(out.join("s")), "from-the-stack");
}

/// `secretdrop check` prints the plan of an Azure class: vault, cloud, identity, requests and
/// every file with its object, never contacting anything.
#[test]
fn check_prints_the_plan_without_contacting_anything() {
    let dir = TestDir::new();
    let spc = common::cli::write(
        dir.path(),
        "spc.yaml",
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: t\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: kv-plan\n    tenantId: 72f988bf\n    clientID: 5c1d\n    cloudName: AzureChinaCloud\n    objects: |\n      array:\n        - |\n          objectName: db\n          objectType: secret\n          filePermission: \"0600\"\n        - |\n          objectName: web\n          objectType: cert\n          objectAlias: web.crt\n        - |\n          objectName: rot\n          objectType: secret\n          objectVersionHistory: 2\n",
    );
    let run = common::cli::secretdrop(&["check", "--config", spc.to_str().unwrap()], &[]);
    run.expect_code(0);
    let want = format!(
        "config: {} (valid)\n\
         azure: key vault https://kv-plan.vault.azure.cn/ in AzureChinaCloud\n\
         token: scope https://vault.azure.cn/.default from https://login.chinacloudapi.cn/\n\
         identity: workload identity, client 5c1d in tenant 72f988bf (the projected token of AZURE_FEDERATED_TOKEN_FILE or --token-path, audience api://AzureADTokenExchange)\n\
         requests per render: 2 GET, 1 version list plus one GET per version kept\n\
         files (5):\n  db 0600 <- secret/db\n  web.crt 0644 <- cert/web as certificate PEM\n  rot/0 .. rot/2 0644 <- secret/rot, newest 3 enabled versions\n",
        spc.display()
    );
    assert!(run.stdout.contains(&want), "{}", run.stdout);
}

/// A short-lived access token is replaced ahead of its expiry with the token file read afresh
/// (the kubelet rotates it): after the rotation only the new service-account token is
/// trusted, and reads go on without a gap.
#[test]
fn tokens_are_refreshed_ahead_of_expiry_with_the_rotated_token_file() {
    let az = Azure::shared();
    let dir = TestDir::new();
    let tenant = unique("tenant");
    let client = unique("client");
    let federated = |sa: &str| {
        json!([{"issuer": common::K8S_ISSUER, "subject": format!("system:serviceaccount:default:{sa}"),
            "audience": common::azure::AUDIENCE}])
    };
    az.admin(json!({"op": "app", "client_id": client, "tenant": tenant, "federated": federated("before"), "token_lifetime": 4}));
    let mint = |sa: &str| {
        common::TokenReviewer::shared()
            .mint(&common::SaClaims::new("default", sa).with_audiences(&[common::azure::AUDIENCE]))
    };
    let token_file = dir.join("token");
    std::fs::write(&token_file, mint("before")).unwrap();
    let vault = unique("kv");
    let host = az.vault(
        &vault,
        &tenant,
        PUBLIC_LOGIN,
        json!({&client: ["secrets/get"]}),
    );
    az.admin(json!({"op": "secret", "host": host, "name": "s", "value": "one"}));
    let s = Scene {
        az,
        dir,
        vault,
        host,
        id: Workload {
            tenant,
            client_id: client.clone(),
            token_file: token_file.clone(),
        },
    };
    let spc = s.write(
        "spc.yaml",
        &class(&s, "", &["objectName: s\nobjectType: secret"]),
    );
    let out = s.out("out");
    let mut sidecar = s.sidecar(&spc, &out, &["--poll-interval", "1s"]);
    sidecar.wait_ready(Duration::from_secs(20));
    // The kubelet rotates the file; Entra now trusts only the new token's subject.
    az.admin(json!({"op": "app", "client_id": client, "tenant": s.id.tenant, "federated": federated("after"), "token_lifetime": 4}));
    let rotated = mint("after");
    std::fs::write(&token_file, &rotated).unwrap();
    // Past the first token's life: reads only work with a token from the new file.
    std::thread::sleep(Duration::from_secs(5));
    az.admin(json!({"op": "secret", "host": s.host, "name": "s", "value": "two"}));
    assert!(
        sidecar.eventually(Duration::from_secs(10), || file(&out, "s") == "two"),
        "{}",
        sidecar.log_text()
    );
    assert!(az.exchanges(&client) >= 2);
    let log = sidecar.log_text();
    assert!(!log.contains(&rotated) && !log.contains("two"));
    sidecar.stop();
}
