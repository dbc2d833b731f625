//! `provider: azure`: what is written, as the Azure provider writes it (docs/azure.md, "What
//! is written"): certificates as PEM (keys, then the chain in order) or PFX, keys as PKIX PEM,
//! and version history, against the Azure stand-in, compared with what openssl writes.

mod common;
#[path = "azure/scene.rs"]
mod scene;

use std::path::Path;
use std::process::Command;

use common::azure::PUBLIC_LOGIN;
use scene::{assert_empty, chain, class, file, pkcs8, Chain, Scene};
use serde_json::json;

#[test]
fn certificates_are_written_as_the_provider_writes_them_pem_pfx_chain_keys() {
    let s = Scene::new(&["secrets/get", "keys/get", "certificates/get"]);
    let rsa = chain(s.dir.path(), "rsa", None);
    let ec = chain(s.dir.path(), "ec", Some("P-384"));
    let ec521 = chain(s.dir.path(), "ec521", Some("P-521"));
    // The PFX holds the chain in the order openssl writes it (leaf first, then the others as
    // given): given root first, so that reordering is needed.
    for (name, c, content_type) in [
        ("web-pfx", &rsa, "application/x-pkcs12"),
        ("web-pem", &rsa, "application/x-pem-file"),
        ("ec-pfx", &ec, "application/x-pkcs12"),
        ("ec521-pfx", &ec521, "application/x-pkcs12"),
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
        "objectName: ec521-pfx\n          objectType: secret",
        "objectName: ec521-pfx\n          objectType: key\n          objectAlias: ec521.pub",
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
    // EC (P-384, P-521): one PRIVATE KEY block, then the chain in order; the same key, in
    // Go's form (the inner ECPrivateKey with no curve parameters, the scalar padded to the
    // curve, the public key kept); the key as PKIX PEM.
    for (name, c, dir, size) in [
        ("ec-pfx", &ec, "ec", 48),
        ("ec521-pfx", &ec521, "ec521", 66),
    ] {
        let written = file(&out, name);
        assert!(
            written.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{written}"
        );
        assert!(written.ends_with(&chained(c)), "{written}");
        let key_only = written
            .split("-----END PRIVATE KEY-----\n")
            .next()
            .unwrap()
            .to_string()
            + "-----END PRIVATE KEY-----\n";
        let k = s.dir.join(format!("written-{name}.pem"));
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
            text_of(&s.dir.join(format!("{dir}/leaf.key"))),
            "the same EC key"
        );
        assert_eq!(inner_ec_key(&key_only), (size, false, true), "{name}");
        let public = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(s.dir.join(format!("{dir}/leaf.key")))
            .output()
            .unwrap();
        let pub_file = if name == "ec-pfx" {
            "ec.pub"
        } else {
            "ec521.pub"
        };
        assert_eq!(
            file(&out, pub_file),
            String::from_utf8(public.stdout).unwrap()
        );
    }
    assert_eq!(common::cli::mode_of(out.join("ec-pfx")) & 0o777, 0o600);
}

/// Of a PKCS#8 EC key (PEM): the scalar's length, and whether the inner ECPrivateKey holds
/// curve parameters (`[0]`) and a public key (`[1]`).
fn inner_ec_key(pem: &str) -> (usize, bool, bool) {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    // (tag, content) of the element at `at`, and where the next one starts.
    let tlv = |d: &[u8], at: usize| -> (u8, std::ops::Range<usize>) {
        let (mut len, mut head) = (d[at + 1] as usize, 2);
        if len & 0x80 != 0 {
            let n = len & 0x7f;
            len = d[at + 2..at + 2 + n]
                .iter()
                .fold(0, |a, b| (a << 8) | *b as usize);
            head += n;
        }
        (d[at], at + head..at + head + len)
    };
    let (_, outer) = tlv(&der, 0);
    let (_, version) = tlv(&der, outer.start);
    let (_, alg) = tlv(&der, version.end);
    let (tag, key) = tlv(&der, alg.end);
    assert_eq!(tag, 0x04, "the private key OCTET STRING");
    let inner = &der[key];
    let (_, seq) = tlv(inner, 0);
    let (_, v) = tlv(inner, seq.start);
    let (_, scalar) = tlv(inner, v.end);
    let mut at = scalar.end;
    let (mut params, mut public) = (false, false);
    while at < seq.end {
        let (tag, c) = tlv(inner, at);
        params |= tag == 0xa0;
        public |= tag == 0xa1;
        at = c.end;
    }
    (scalar.len(), params, public)
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

/// PFX files Key Vault would not make are refused before anything is decrypted, in bounded
/// time, with the reason and without key material: a password, a tampered file (the MAC no
/// longer verifies), an absurd iteration count, another cipher. Nothing is written.
#[test]
fn foreign_and_hostile_pfx_files_are_refused_with_the_reason() {
    let s = Scene::new(&["secrets/get"]);
    let c = chain(s.dir.path(), "pfx", None);
    let dir = s.dir.join("pfx");
    let pfx = |name: &str, extra: &[&str]| -> Vec<u8> {
        let out = dir.join(format!("{name}.pfx"));
        let mut args = vec![
            "pkcs12", "-export", "-inkey", "leaf.key", "-in", "leaf.crt", "-out",
        ];
        let out_s = out.display().to_string();
        args.push(&out_s);
        args.extend(extra);
        let o = Command::new("openssl")
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(out).unwrap()
    };
    let legacy = [
        "-keypbe",
        "PBE-SHA1-3DES",
        "-certpbe",
        "PBE-SHA1-3DES",
        "-macalg",
        "sha1",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> { [&legacy[..], extra].concat() };
    let mut tampered = pfx("tampered", &with(&["-passout", "pass:", "-iter", "2000"]));
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "password",
            pfx("password", &with(&["-passout", "pass:hunter2"])),
            "the PFX has a password",
        ),
        ("tampered", tampered, "MAC does not verify"),
        (
            "iterations",
            pfx("iter", &with(&["-passout", "pass:", "-iter", "5000000"])),
            "iterations",
        ),
        (
            "aes",
            pfx("aes", &["-passout", "pass:"]),
            "MAC is not SHA-1",
        ),
    ];
    use base64::Engine;
    let key_body: String = c.key.lines().filter(|l| !l.starts_with("-----")).collect();
    for (name, bytes, reason) in cases {
        s.az.admin(
            json!({"op": "secret", "host": s.host, "name": name, "cert": true,
            "contentType": "application/x-pkcs12",
            "value": base64::engine::general_purpose::STANDARD.encode(&bytes)}),
        );
        let spc = s.write(
            &format!("{name}.yaml"),
            &class(
                &s,
                "",
                &[&format!("objectName: {name}\nobjectType: secret")],
            ),
        );
        let out = s.out(name);
        let run = s.init(&spc, &out, &["--timeout", "5s"]);
        run.expect_code(1)
            .expect_stderr(&[
                &format!("from secret/{name} version"),
                "the certificate's PFX",
                reason,
            ])
            .expect_no_leak(&[&key_body[..64]]);
        assert!(
            run.elapsed < std::time::Duration::from_secs(5),
            "{name}: {:?}",
            run.elapsed
        );
        assert_empty(&out);
    }
    // The same PFX as Key Vault makes it opens (the stand-in's own), and with objectFormat
    // pfx any of them is written unopened.
    let spc = s.write(
        "raw.yaml",
        &class(
            &s,
            "",
            &["objectName: aes\nobjectType: secret\nobjectFormat: pfx\nobjectEncoding: base64"],
        ),
    );
    let out = s.out("raw");
    s.init(&spc, &out, &[]).expect_code(0);
    assert!(std::fs::read(out.join("aes")).unwrap().len() > 1000);
}
