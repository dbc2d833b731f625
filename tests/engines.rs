//! What gets written for each kind of secret: KV v1 and v2 (with pinned versions), PKI
//! issuance, encodings, file formats, templates, modes and owners, and the other auth methods.

mod common;

use common::Server;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use base64::Engine;
use common::cli::{assert_layout, init, mode_of, read, write};
use common::scenario::Pod;
use common::{unique, Bao};

#[test]
fn kv_v1_and_v2_with_pinned_versions() {
    let bao = Bao::shared();
    let kv1 = unique("kv1");
    bao.cli(&["secrets", "enable", &format!("-path={kv1}"), "kv"]);
    bao.cli(&["write", &format!("{kv1}/db"), "user=v1user", "port=5432"]);
    let app = unique("app");
    bao.cli(&["kv", "put", &format!("secret/{app}"), "token=first"]);
    bao.cli(&["kv", "put", &format!("secret/{app}"), "token=second"]);
    let pod = Pod::with_policy(
        bao,
        &format!("path \"{kv1}/*\" {{ capabilities = [\"read\"] }}\npath \"secret/data/{app}\" {{ capabilities = [\"read\"] }}\n"),
    );
    let objects = format!(
        r#"- {{objectName: user, secretPath: "{kv1}/db", secretKey: user}}
- {{objectName: port, secretPath: "/v1/{kv1}/db", secretKey: port}}
- {{objectName: latest, secretPath: "secret/data/{app}", secretKey: token}}
- {{objectName: first, secretPath: "secret/data/{app}?version=1", secretKey: token}}
- {{objectName: whole.json, secretPath: "secret/data/{app}"}}"#
    );
    pod.init(&pod.spc(bao, &objects), &[])
        .expect_code(0)
        .expect_no_leak(&["second", "first", &pod.token]);
    let out = pod.out();
    assert_layout(&out, &["first", "latest", "port", "user", "whole.json"]);
    assert_eq!(read(out.join("user")), "v1user");
    assert_eq!(read(out.join("port")), "5432");
    assert_eq!(read(out.join("latest")), "second");
    assert_eq!(read(out.join("first")), "first");
    let whole: serde_json::Value = serde_json::from_str(&read(out.join("whole.json"))).unwrap();
    assert_eq!(whole["data"]["data"]["token"], "second");
    assert_eq!(whole["data"]["metadata"]["version"], 2);
    assert!(read(out.join("whole.json")).starts_with("{\"request_id\":"));
}

#[test]
fn pki_certificate_and_key_come_from_one_issuance() {
    let bao = Bao::shared();
    let pki = common::vault_pki(bao, "pki");
    let pod = Pod::with_policy(
        bao,
        &format!("path \"{pki}/issue/web\" {{ capabilities = [\"create\", \"update\"] }}\n"),
    );
    let objects = format!(
        r#"- {{objectName: tls.crt, secretPath: "{pki}/issue/web", method: POST, secretArgs: {{common_name: app.example.com}}, secretKey: certificate}}
- {{objectName: tls.key, secretPath: "{pki}/issue/web", method: POST, secretArgs: {{common_name: app.example.com}}, secretKey: private_key, filePermission: 0600}}
- {{objectName: ca.crt, secretPath: "{pki}/issue/web", method: POST, secretArgs: {{common_name: app.example.com}}, secretKey: issuing_ca}}"#
    );
    pod.init(&pod.spc(bao, &objects), &[]).expect_code(0);
    let out = pod.out();
    assert_eq!(mode_of(out.join("tls.key")), 0o600);
    assert_eq!(mode_of(out.join("tls.crt")), 0o644);
    let pubkey_of = |args: &[&str]| {
        let o = Command::new("openssl").args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    let crt = out.join("tls.crt");
    let key = out.join("tls.key");
    assert_eq!(
        pubkey_of(&["x509", "-noout", "-pubkey", "-in", crt.to_str().unwrap()]),
        pubkey_of(&["pkey", "-pubout", "-in", key.to_str().unwrap()]),
        "certificate and key are from different issuances"
    );
    let subject = String::from_utf8(pubkey_of(&[
        "x509",
        "-noout",
        "-subject",
        "-in",
        crt.to_str().unwrap(),
    ]))
    .unwrap();
    assert!(subject.contains("app.example.com"), "{subject}");
    assert!(read(out.join("ca.crt")).starts_with("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn encodings_write_the_decoded_bytes() {
    let bao = Bao::shared();
    let path = unique("bin");
    let raw: Vec<u8> = (0u8..=255).rev().collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    bao.cli(&[
        "kv",
        "put",
        &format!("secret/{path}"),
        &format!("keystore={b64}"),
        &format!("hexkey={hex}"),
        "n=42",
    ]);
    let pod = Pod::reading(bao, &path);
    let objects = format!(
        r#"- {{objectName: keystore.p12, secretPath: "secret/data/{path}", secretKey: keystore, encoding: BASE64}}
- {{objectName: key.bin, secretPath: "secret/data/{path}", secretKey: hexkey, encoding: hex}}
- {{objectName: as-stored, secretPath: "secret/data/{path}", secretKey: keystore, encoding: utf-8}}"#
    );
    pod.init(&pod.spc(bao, &objects), &[]).expect_code(0);
    assert_eq!(std::fs::read(pod.out().join("keystore.p12")).unwrap(), raw);
    assert_eq!(std::fs::read(pod.out().join("key.bin")).unwrap(), raw);
    assert_eq!(read(pod.out().join("as-stored")), b64);
}

#[test]
fn native_formats_templates_modes_and_owner() {
    let bao = Bao::shared();
    let path = unique("db");
    bao.cli(&[
        "kv",
        "put",
        &format!("secret/{path}"),
        "username=app",
        "password=s3 cr'et$",
        "port=5432",
    ]);
    let pod = Pod::reading(bao, &path);
    let rest = format!(
        r#"files:
  mode: "0640"
  owner: 1234
  group: 5678
objects:
  - objectName: db.json
    secretPath: secret/data/{path}
    format: json
    keys: [username, password]
  - objectName: db.env
    secretPath: secret/data/{path}
    format: dotenv
  - objectName: db.yaml
    secretPath: secret/data/{path}
    format: yaml
    keys: [password]
  - objectName: db.properties
    secretPath: secret/data/{path}
    format: properties
    keys: [username]
  - objectName: conf/pgpass
    secretPath: secret/data/{path}
    template: "db:{{{{ data.port }}}}:app:{{{{ data.username }}}}:{{{{ data.password }}}}\n"
    filePermission: 0600
    owner: 999
"#
    );
    pod.init(&pod.native(bao, &rest), &[])
        .expect_code(0)
        .expect_no_leak(&["s3 cr'et$"]);
    let out = pod.out();
    assert_layout(
        &out,
        &["conf", "db.env", "db.json", "db.properties", "db.yaml"],
    );
    let json: serde_json::Value = serde_json::from_str(&read(out.join("db.json"))).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"username": "app", "password": "s3 cr'et$"})
    );
    assert_eq!(
        read(out.join("db.env")),
        "password=\"s3 cr'et\\$\"\nport=5432\nusername=app\n"
    );
    // What a shell makes of the dotenv file is the secret itself.
    let sourced = Command::new("sh")
        .arg("-c")
        .arg(format!(
            ". {} && printf %s \"$password\"",
            out.join("db.env").display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&sourced.stdout), "s3 cr'et$");
    assert_eq!(read(out.join("db.yaml")), "password: s3 cr'et$\n");
    assert_eq!(read(out.join("db.properties")), "username=app\n");
    assert_eq!(read(out.join("conf/pgpass")), "db:5432:app:app:s3 cr'et$\n");
    assert_eq!(mode_of(out.join("db.json")), 0o640);
    assert_eq!(mode_of(out.join("conf/pgpass")), 0o600);
    let am_root = unsafe { libc::geteuid() } == 0;
    if am_root {
        let meta = std::fs::metadata(out.join("db.env")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
        let meta = std::fs::metadata(out.join("conf/pgpass")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (999, 5678));
    }

    // A template that names a key the secret lacks fails, naming the object; nothing changes.
    let before = common::cli::tree(&out);
    let broken = rest.replace("data.password", "data.passwd");
    pod.init(&pod.native(bao, &broken), &[])
        .expect_code(1)
        .expect_stderr(&["conf/pgpass", "undefined"])
        .expect_no_leak(&["s3 cr'et$"]);
    assert_eq!(common::cli::tree(&out), before);
}

#[test]
fn approle_and_token_auth() {
    let bao = Bao::shared();
    let path = unique("ar");
    bao.cli(&["kv", "put", &format!("secret/{path}"), "k=approle-value"]);
    let policy = unique("policy");
    bao.cli_stdin(
        &["policy", "write", &policy, "-"],
        &format!("path \"secret/data/{path}\" {{ capabilities = [\"read\"] }}\n"),
    );
    let mount = unique("approle");
    bao.cli(&["auth", "enable", &format!("-path={mount}"), "approle"]);
    bao.cli(&[
        "write",
        &format!("auth/{mount}/role/app"),
        &format!("token_policies={policy}"),
    ]);
    let role_id = bao.cli(&[
        "read",
        "-field=role_id",
        &format!("auth/{mount}/role/app/role-id"),
    ]);
    let secret_id = bao.cli(&[
        "write",
        "-f",
        "-field=secret_id",
        &format!("auth/{mount}/role/app/secret-id"),
    ]);
    let token = bao.cli(&[
        "token",
        "create",
        "-field=token",
        &format!("-policy={policy}"),
    ]);

    let dir = common::TestDir::new();
    let role_id_file = write(dir.path(), "role_id", role_id.trim());
    let secret_id_file = write(dir.path(), "secret_id", &format!("{}\n", secret_id.trim()));
    let token_file = write(dir.path(), "vault-token", token.trim());
    let objects =
        format!("objects:\n  - {{objectName: k, secretPath: secret/data/{path}, secretKey: k}}\n");
    let header = format!(
        "apiVersion: secretdrop.dev/v1alpha1\nkind: Config\nvault:\n  address: {}\n",
        bao.addr()
    );
    let approle = format!(
        "{header}auth:\n  method: approle\n  mountPath: {mount}\n  roleIdFile: {}\n  secretIdFile: {}\n{objects}",
        role_id_file.display(),
        secret_id_file.display()
    );
    let with_token = format!(
        "{header}auth:\n  method: token\n  tokenFile: {}\n{objects}",
        token_file.display()
    );
    for (name, config) in [("approle", approle), ("token", with_token)] {
        let cfg = write(dir.path(), &format!("{name}.yaml"), &config);
        let out = dir.join(name);
        init(&cfg, &out, None, &[]).expect_code(0).expect_no_leak(&[
            "approle-value",
            secret_id.trim(),
            token.trim(),
        ]);
        assert_eq!(read(out.join("k")), "approle-value", "{name}");
    }
}

#[test]
fn five_hundred_objects_over_fifty_paths_cost_one_read_per_path() {
    // A private server, so its request counter sees only this test.
    let bao = Bao::start_new();
    let mut objects = String::new();
    for p in 0..50 {
        let kvs: Vec<String> = (0..10).map(|k| format!("k{k}=v{p}-{k}")).collect();
        let mut args = vec!["kv".to_string(), "put".into(), format!("secret/many/p{p}")];
        args.extend(kvs);
        bao.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
        for k in 0..10 {
            objects.push_str(&format!(
                "- {{objectName: p{p}-k{k}, secretPath: secret/data/many/p{p}, secretKey: k{k}}}\n"
            ));
        }
    }
    let pod = Pod::with_policy(
        &bao,
        "path \"secret/data/many/*\" { capabilities = [\"read\"] }\n",
    );
    let before = common::request_count(&bao);
    pod.init(&pod.spc(&bao, &objects), &[]).expect_code(0);
    let after = common::request_count(&bao);
    assert_eq!(read(pod.out().join("p49-k9")), "v49-9");
    assert_eq!(
        std::fs::read_dir(pod.out().join("..data")).unwrap().count(),
        500
    );
    // One login and fifty reads; the metrics read itself may count once.
    let requests = after - before;
    assert!(
        (51..=52).contains(&requests),
        "{requests} requests for 500 objects over 50 paths"
    );
}
