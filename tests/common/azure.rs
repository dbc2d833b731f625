//! The Azure stand-in (tests/azure/standin.py: Entra ID's token endpoint, Key Vault's data
//! plane, IMDS) in a network and mount namespace of its own, where the real host names resolve
//! to 127.0.0.1 through a bind-mounted hosts file and the stand-in serves TLS on 443 with a
//! certificate of a test CA ([`Azure::ca`], given to secretdrop as `SSL_CERT_FILE`). Programs
//! run inside that namespace through [`Azure::command`] (`nsenter`). One stand-in per test
//! process ([`Azure::shared`]); tests isolate themselves with [`super::unique`] vault names,
//! tenants and clients.
//!
//! Service-account tokens are minted by the kube stand-in's key ([`super::TokenReviewer`]),
//! whose public key the stand-in's Entra trusts for the issuer [`super::K8S_ISSUER`], as a
//! cluster's OIDC discovery would publish it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::{SaClaims, TokenReviewer, K8S_ISSUER};

pub const AUDIENCE: &str = "api://AzureADTokenExchange";
pub const PUBLIC_LOGIN: &str = "login.microsoftonline.com";
pub const CHINA_LOGIN: &str = "login.chinacloudapi.cn";
pub const GOV_LOGIN: &str = "login.microsoftonline.us";
/// A custom (Azure Stack or air-gapped) cloud's authority and vault suffix.
pub const STACK_LOGIN: &str = "login.stack.example";
pub const STACK_SUFFIX: &str = "vault.stack.example";
/// A host that only records what reaches it: where hostile answers point.
pub const EVIL: &str = "evil.example.com";

pub struct Azure {
    pid: u32,
    hosts: PathBuf,
    /// The same names mapped to [`Azure::relayed`], for [`Azure::mounted_command`].
    relayed_hosts: PathBuf,
    /// A loopback address of the host whose port 443 reaches the stand-in's TLS server.
    pub relayed: std::net::Ipv4Addr,
    /// The test CA (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`).
    pub ca: PathBuf,
    sock: PathBuf,
    pub log: PathBuf,
    _child: Child,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/azure")
        .join(name)
}

/// An identity a pod can use: the app's client id and tenant, and a projected token file.
pub struct Workload {
    pub tenant: String,
    pub client_id: String,
    pub token_file: PathBuf,
}

impl Azure {
    pub fn shared() -> &'static Azure {
        static AZURE: OnceLock<Result<Azure, String>> = OnceLock::new();
        super::once_or_fail(&AZURE, Azure::start)
    }

    fn start() -> Azure {
        let dir = super::harness_dir().join(super::unique("azure"));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = super::pki::ca(&dir, "azure-test-ca");
        let (crt, key) = super::pki::server_cert(
            &dir,
            "azure",
            &[
                PUBLIC_LOGIN,
                CHINA_LOGIN,
                GOV_LOGIN,
                STACK_LOGIN,
                "*.vault.azure.net",
                "*.vault.azure.cn",
                "*.vault.usgovcloudapi.net",
                &format!("*.{STACK_SUFFIX}"),
                EVIL,
            ],
            &ca,
        );
        let hosts = dir.join("hosts");
        let names = [PUBLIC_LOGIN, CHINA_LOGIN, GOV_LOGIN, STACK_LOGIN, EVIL].join(" ");
        std::fs::write(&hosts, format!("127.0.0.1 localhost\n127.0.0.1 {names}\n")).unwrap();
        // One address of 127/8 per test process (all of it is loopback on Linux).
        let pid = std::process::id();
        let relayed =
            std::net::Ipv4Addr::new(127, 100 + (pid % 100) as u8, (pid / 100 % 250) as u8, 7);
        let relayed_hosts = dir.join("hosts-relayed");
        std::fs::write(
            &relayed_hosts,
            format!("127.0.0.1 localhost\n{relayed} {names}\n"),
        )
        .unwrap();
        let relay_sock = dir.join("relay.sock");
        let sock = dir.join("admin.sock");
        let log = dir.join("standin.log");
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                "set -e; ip link set lo up; ip addr add 169.254.169.254/32 dev lo; \
                 mount --bind \"$0\" /etc/hosts; exec python3 \"$@\"",
            )
            .arg(&hosts)
            .arg(script("standin.py"))
            .arg(&crt)
            .arg(&key)
            .arg(&sock)
            .arg(&relay_sock)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = super::spawn_tied_to_process(cmd).expect("start the Azure stand-in");
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        assert!(
            matches!(read, Ok(n) if n > 0) && line.trim() == "ready",
            "the Azure stand-in did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        relay(relayed, relay_sock);
        let azure = Azure {
            pid: child.id(),
            hosts,
            relayed_hosts,
            relayed,
            ca: ca.0,
            sock,
            log,
            _child: child,
        };
        let public_key = std::fs::read_to_string(TokenReviewer::shared().public_key_pem_path())
            .expect("the service-account signing key");
        azure.admin(json!({"op": "issuer", "issuer": K8S_ISSUER, "public_key": public_key}));
        azure
    }

    /// One admin request; panics on the stand-in's error.
    pub fn admin(&self, cmd: Value) -> Value {
        let mut s = UnixStream::connect(&self.sock).expect("the stand-in's admin socket");
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).expect("admin answer");
        assert!(v.get("error").is_none(), "admin {cmd}: {v}");
        v
    }

    /// `program` run inside the stand-in's namespaces (it sees the real host names there).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pid.to_string(), "-n", "-m", "--"])
            .arg(program);
        c
    }

    /// `program` run in a mount namespace of its own where the hosts file maps the real host
    /// names to [`Azure::relayed`], in the host's network namespace: a process that must also
    /// reach servers on the host's loopback (another provider's, in the contract suite) and
    /// answer there (`--listen`), and still meets the stand-in at the real names on 443.
    pub fn mounted_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
            .arg(&self.relayed_hosts)
            .arg(program);
        c
    }

    /// Makes `host` resolve to the stand-in (the hosts files are appended to in place, which
    /// the bind mounts show).
    pub fn add_host(&self, host: &str) {
        for (file, addr) in [
            (&self.hosts, "127.0.0.1".to_string()),
            (&self.relayed_hosts, self.relayed.to_string()),
        ] {
            let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
            writeln!(f, "{addr} {host}").unwrap();
        }
    }

    /// A vault `name` of `tenant` in the cloud of `authority`, with `policies` (client id →
    /// permissions like `secrets/get`); its host name.
    pub fn vault(&self, name: &str, tenant: &str, authority: &str, policies: Value) -> String {
        let v = self.admin(json!({"op": "vault", "name": name, "tenant": tenant,
            "authority": authority, "policies": policies}));
        let host = v["host"].as_str().unwrap().to_string();
        self.add_host(&host);
        host
    }

    /// An app in `tenant` whose federated credential trusts the service account `ns/sa`, and a
    /// token file for it with the exchange audience, written into `dir`.
    pub fn workload(&self, dir: &Path, tenant: &str, ns: &str, sa: &str) -> Workload {
        let client_id = super::unique("client");
        self.admin(json!({"op": "app", "client_id": client_id, "tenant": tenant,
            "federated": [{"issuer": K8S_ISSUER, "subject": format!("system:serviceaccount:{ns}:{sa}"),
                "audience": AUDIENCE}]}));
        let token =
            TokenReviewer::shared().mint(&SaClaims::new(ns, sa).with_audiences(&[AUDIENCE]));
        let token_file = dir.join(format!("{client_id}.token"));
        std::fs::write(&token_file, token).unwrap();
        Workload {
            tenant: tenant.to_string(),
            client_id,
            token_file,
        }
    }

    /// Every request the stand-in received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.admin(json!({"op": "requests"}))["requests"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Requests to `host` (paths starting with `prefix`).
    pub fn requests_to(&self, host: &str, prefix: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["host"] == host && r["path"].as_str().unwrap_or("").starts_with(prefix))
            .collect()
    }

    /// Token exchanges made for `client_id` (Entra and IMDS).
    pub fn exchanges(&self, client_id: &str) -> u64 {
        self.admin(json!({"op": "exchanges"}))["exchanges"][client_id]
            .as_u64()
            .unwrap_or(0)
    }
}

/// Relays connections to `addr`:443 on the host to the stand-in's Unix socket `sock`, which
/// takes them on to its TLS server: TLS stays end to end, the relay only moves bytes.
fn relay(addr: std::net::Ipv4Addr, sock: PathBuf) {
    let listener = std::net::TcpListener::bind((addr, 443))
        .unwrap_or_else(|e| panic!("bind {addr}:443 for the Azure relay: {e}"));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let Ok(up) = UnixStream::connect(&sock) else {
                continue;
            };
            let (Ok(mut c2), Ok(mut u2)) = (conn.try_clone(), up.try_clone()) else {
                continue;
            };
            let (mut conn, mut up) = (conn, up);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut conn, &mut up);
                let _ = up.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut u2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
}
