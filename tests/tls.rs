//! TLS to Vault: the right CA file or directory verifies, a wrong CA fails at once (no retry
//! storm) with an error that says what to fix, the TLS server name replaces the address host
//! for verification, skip-verify is an explicit opt-in, and `https://` against a plain-HTTP
//! Vault says so.

mod common;

use common::Server;
use std::time::Duration;

use common::cli::{read, tree};
use common::scenario::Pod;
use common::{Bao, TestDir};

struct Tls {
    bao: Bao,
    pod: Pod,
    objects: String,
}

fn setup() -> Tls {
    let bao = Bao::start_tls();
    bao.cli(&["kv", "put", "secret/app", "password=tls-secret-value"]);
    let pod = Pod::with_policy(
        &bao,
        "path \"secret/data/app\" { capabilities = [\"read\"] }\n",
    );
    let objects =
        "- {objectName: password, secretPath: secret/data/app, secretKey: password}".to_string();
    Tls { bao, pod, objects }
}

impl Tls {
    fn spc(&self, address: &str, params: &str) -> String {
        common::scenario::spc_text(address, &self.pod.role, &self.objects)
            .replace("    objects: |", &format!("{params}    objects: |"))
    }
}

#[test]
fn tls_ca_file_directory_server_name_and_skip_verify() {
    let t = setup();
    let ca = t.bao.ca_cert_path();
    let addr = t.bao.addr();
    let ca_dir = TestDir::new();
    std::fs::copy(&ca, ca_dir.join("vault-ca.pem")).unwrap();

    let cases = [
        (
            "ca file",
            addr.clone(),
            format!("    vaultCACertPath: {}\n", ca.display()),
        ),
        (
            "ca directory",
            addr.clone(),
            format!("    vaultCADirectory: {}\n", ca_dir.path().display()),
        ),
        (
            "server name",
            addr.clone(),
            format!(
                "    vaultCACertPath: {}\n    vaultTLSServerName: localhost\n",
                ca.display()
            ),
        ),
        (
            "skip verify",
            addr.clone(),
            "    vaultSkipTLSVerify: \"true\"\n".to_string(),
        ),
    ];
    for (name, address, params) in cases {
        let out = t.pod.dir.join(name.replace(' ', "-"));
        let cfg = common::cli::write(
            t.pod.dir.path(),
            &format!("{}.yaml", name.replace(' ', "-")),
            &t.spc(&address, &params),
        );
        t.pod.init_file(&cfg, &out, &[]).expect_code(0);
        assert_eq!(read(out.join("password")), "tls-secret-value", "{name}");
    }
}

#[test]
fn a_wrong_ca_or_server_name_fails_at_once_and_changes_nothing() {
    let t = setup();
    let good = t.spc(
        &t.bao.addr(),
        &format!("    vaultCACertPath: {}\n", t.bao.ca_cert_path().display()),
    );
    t.pod.init(&good, &[]).expect_code(0);
    let before = tree(&t.pod.out());

    // Another server's CA: a well-formed certificate that did not sign this server.
    let other = Bao::start_tls();
    let wrong_ca = t.spc(
        &t.bao.addr(),
        &format!("    vaultCACertPath: {}\n", other.ca_cert_path().display()),
    );
    let run = t.pod.init(&wrong_ca, &["--timeout", "20s"]);
    run.expect_code(1)
        .expect_stderr(&["certificate", "login to", "CA certificate"]);
    assert!(
        run.elapsed < Duration::from_secs(5),
        "a certificate error must not be retried: {:?}",
        run.elapsed
    );

    let wrong_name = t.spc(
        &t.bao.addr(),
        &format!(
            "    vaultCACertPath: {}\n    vaultTLSServerName: vault.example.com\n",
            t.bao.ca_cert_path().display()
        ),
    );
    t.pod
        .init(&wrong_name, &["--timeout", "20s"])
        .expect_code(1)
        .expect_stderr(&["certificate"]);

    // No CA configured: the system roots do not know a dev CA either.
    let no_ca = t.spc(&t.bao.addr(), "");
    t.pod
        .init(&no_ca, &["--timeout", "20s"])
        .expect_code(1)
        .expect_stderr(&["certificate"]);

    // A CA file that is not PEM is a configuration error.
    let junk = common::cli::write(t.pod.dir.path(), "junk.pem", "not a certificate");
    let bad_file = t.spc(
        &t.bao.addr(),
        &format!("    vaultCACertPath: {}\n", junk.display()),
    );
    t.pod
        .init(&bad_file, &[])
        .expect_code(2)
        .expect_stderr(&["junk.pem", "no PEM certificate"]);

    assert_eq!(tree(&t.pod.out()), before);
}

/// Runs openssl, panicking with its stderr on failure.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_client_certificate_is_presented_when_configured() {
    // A CA, a server certificate for 127.0.0.1 and a client certificate, and a listener that
    // requires client certificates signed by that CA.
    let pki = TestDir::new();
    let d = pki.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ],
    );
    for name in ["server", "client"] {
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
    }
    std::fs::write(
        d.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    // Extensions make the client certificate X.509 v3; rustls refuses v1 certificates.
    std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            "-days",
            "2",
            "-extfile",
            "client.ext",
        ],
    );
    let port = common::free_port();
    let hcl = format!(
        "listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_cert_file = \"{0}/server.pem\"\n  tls_key_file = \"{0}/server.key\"\n  tls_require_and_verify_client_cert = true\n  tls_client_ca_file = \"{0}/ca.pem\"\n}}\n",
        d.display()
    );
    let config = common::cli::write(d, "mtls.hcl", &hcl);
    let bao = Bao::start_with_config(&config);
    bao.cli(&["kv", "put", "secret/app", "password=mutual-tls"]);
    let pod = Pod::with_policy(
        &bao,
        "path \"secret/data/app\" { capabilities = [\"read\"] }\n",
    );
    let objects = "- {objectName: password, secretPath: secret/data/app, secretKey: password}";
    let addr = format!("https://127.0.0.1:{port}");
    let ca = format!("    vaultCACertPath: {}/ca.pem\n", d.display());
    let with_cert = format!(
        "{ca}    vaultTLSClientCertPath: {0}/client.pem\n    vaultTLSClientKeyPath: {0}/client.key\n",
        d.display()
    );
    let spc = |params: &str| {
        common::scenario::spc_text(&addr, &pod.role, objects)
            .replace("    objects: |", &format!("{params}    objects: |"))
    };
    pod.init(&spc(&with_cert), &[]).expect_code(0);
    assert_eq!(read(pod.out().join("password")), "mutual-tls");

    // Without the certificate the server ends the handshake: reported at once, not retried.
    let run = pod.init(&spc(&ca), &["--timeout", "20s"]);
    run.expect_code(1)
        .expect_stderr(&["alert", "client certificate"]);
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
    assert_eq!(read(pod.out().join("password")), "mutual-tls");

    // Only one half of the pair is a configuration error.
    let half = format!(
        "{ca}    vaultTLSClientCertPath: {}/client.pem\n",
        d.display()
    );
    pod.init(&spc(&half), &[])
        .expect_code(2)
        .expect_stderr(&["must be set together"]);
}

/// `https://` for a Vault that serves plain HTTP (a dev server): the error says to use
/// `http://`, and nothing is written.
#[test]
fn https_against_a_plain_http_vault_hints_at_http() {
    let bao = Bao::shared();
    let path = common::unique("plain");
    bao.cli(&[
        "kv",
        "put",
        &format!("secret/{path}"),
        "password=plain-secret-value",
    ]);
    let pod = Pod::with_policy(
        bao,
        &format!("path \"secret/data/{path}\" {{ capabilities = [\"read\"] }}\n"),
    );
    let objects =
        format!("- {{objectName: password, secretPath: secret/data/{path}, secretKey: password}}");
    let objects = objects.as_str();
    let http = bao.addr();
    assert!(http.starts_with("http://"), "{http}");
    let https = http.replacen("http://", "https://", 1);
    let spc = common::scenario::spc_text(&https, &pod.role, objects);
    pod.init(&spc, &["--timeout", "1s"])
        .expect_code(1)
        .expect_stderr(&[
            "did not answer in TLS",
            "its address starts with http://, not https://",
        ]);
    assert!(!pod.out().join("password").exists());
    // The same class with http:// renders.
    let spc = common::scenario::spc_text(&http, &pod.role, objects);
    pod.init(&spc, &[]).expect_code(0);
    assert_eq!(read(pod.out().join("password")), "plain-secret-value");
}
