//! Throwaway TLS material for servers the tests start (the webhook, the Kubernetes API
//! stand-in) and for the clients they must recognise.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A self-signed end-entity certificate for 127.0.0.1 (`CA:FALSE`, which rustls clients
/// require of a leaf), written as `dir/NAME.crt` and `dir/NAME.key`; it is its own trust anchor.
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    self_signed_with(
        dir,
        name,
        &[
            "subjectAltName=IP:127.0.0.1",
            "basicConstraints=critical,CA:FALSE",
        ],
    )
}

/// A CA certificate and key (`CA:TRUE`), written as `dir/NAME.crt` and `dir/NAME.key`: the
/// issuer of client certificates a server trusts.
pub fn ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    self_signed_with(
        dir,
        name,
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign",
        ],
    )
}

fn self_signed_with(dir: &Path, name: &str, extensions: &[&str]) -> (PathBuf, PathBuf) {
    let (crt, key) = files(dir, name);
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        &format!("/CN={name}"),
    ]);
    with_new_key(&mut cmd, &key);
    cmd.arg("-out").arg(&crt);
    for e in extensions {
        cmd.args(["-addext", e]);
    }
    openssl(&mut cmd);
    (crt, key)
}

/// A client certificate for the user `cn` issued by the CA `issuer` (from [`ca`]), written
/// as `dir/NAME.crt` and `dir/NAME.key`.
pub fn client_cert(
    dir: &Path,
    name: &str,
    cn: &str,
    issuer: &(PathBuf, PathBuf),
) -> (PathBuf, PathBuf) {
    let (crt, key) = files(dir, name);
    let (csr, ext) = (
        dir.join(format!("{name}.csr")),
        dir.join(format!("{name}.ext")),
    );
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let mut req = Command::new("openssl");
    req.args(["req", "-new", "-subj", &format!("/CN={cn}")]);
    with_new_key(&mut req, &key);
    openssl(req.arg("-out").arg(&csr));
    let mut sign = Command::new("openssl");
    sign.args(["x509", "-req", "-days", "1", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&issuer.0)
        .arg("-CAkey")
        .arg(&issuer.1)
        .args(["-CAcreateserial", "-extfile"])
        .arg(&ext)
        .arg("-out")
        .arg(&crt);
    openssl(&mut sign);
    (crt, key)
}

/// A TLS server certificate for the DNS names `hosts` issued by the CA `issuer` (from [`ca`]),
/// written as `dir/NAME.crt` and `dir/NAME.key`: what a stand-in at real host names serves.
pub fn server_cert(
    dir: &Path,
    name: &str,
    hosts: &[&str],
    issuer: &(PathBuf, PathBuf),
) -> (PathBuf, PathBuf) {
    let (crt, key) = files(dir, name);
    let (csr, ext) = (
        dir.join(format!("{name}.csr")),
        dir.join(format!("{name}.ext")),
    );
    let sans: Vec<String> = hosts.iter().map(|h| format!("DNS:{h}")).collect();
    std::fs::write(
        &ext,
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName={}\n",
            sans.join(",")
        ),
    )
    .unwrap();
    let mut req = Command::new("openssl");
    req.args(["req", "-new", "-subj", &format!("/CN={}", hosts[0])]);
    with_new_key(&mut req, &key);
    openssl(req.arg("-out").arg(&csr));
    let mut sign = Command::new("openssl");
    sign.args(["x509", "-req", "-days", "1", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&issuer.0)
        .arg("-CAkey")
        .arg(&issuer.1)
        .args(["-CAcreateserial", "-extfile"])
        .arg(&ext)
        .arg("-out")
        .arg(&crt);
    openssl(&mut sign);
    (crt, key)
}

fn files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    )
}

/// A fresh P-256 key, unencrypted, written to `key`.
fn with_new_key(cmd: &mut Command, key: &Path) {
    cmd.args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-keyout"])
        .arg(key);
}

fn openssl(cmd: &mut Command) {
    let out = cmd.output().expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
