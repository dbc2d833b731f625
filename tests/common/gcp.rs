//! Google in a box: tests/gcp/standin.py (Secret Manager global and regional, STS,
//! iamCredentials, the metadata server) in a network namespace of its own (`unshare -nm`),
//! where a bind-mounted hosts file maps Google's real host names to 127.0.0.1 and the metadata
//! server's to 169.254.169.254 (added to `lo`). secretdrop runs in the same namespaces
//! ([`Google::enter`]) and reaches the real names with `SSL_CERT_FILE` naming the stand-in's CA:
//! no endpoint override exists in the product. Administration goes over a Unix socket in the
//! test's directory, which the namespaces share.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use serde_json::{json, Value};

use super::cli::{bin, scrub_env, Run};

pub const PROJECT_ID: &str = "secretdrop-test";
pub const PROJECT_NUMBER: &str = "123456789012";
pub const LOCATION: &str = "us-central1";
/// The extra port the metadata server listens on, for `GCE_METADATA_HOST`.
pub const METADATA_PORT: u16 = 8080;

/// Whether this process may make network and mount namespaces (root).
pub fn may_unshare() -> Result<(), String> {
    let out = Command::new("unshare")
        .args(["-n", "-m", "true"])
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

pub struct Google {
    child: Child,
    /// Answering at this loopback address of the test's network namespace, or (`None`) in a
    /// network namespace of its own.
    loopback: Option<String>,
    /// The administration socket (short: a Unix socket path has at most 107 bytes).
    admin: PathBuf,
    pub dir: PathBuf,
    /// The CA that signed the stand-in's certificate (for `SSL_CERT_FILE`).
    pub ca: PathBuf,
    pub log: PathBuf,
}

const IN_NAMESPACE: &str = r#"set -e
ip link set lo up
ip addr add 169.254.169.254/32 dev lo
mount --bind "$0/hosts" /etc/hosts
exec python3 "$@""#;

/// Only a mount namespace: the hosts file, the network of the test process.
const IN_MOUNT_NAMESPACE: &str = r#"set -e
mount --bind "$0/hosts" /etc/hosts
exec python3 "$@""#;

impl Google {
    /// A fresh stand-in with its state in `dir` (created), in a network namespace of its own.
    pub fn start(dir: &Path) -> Google {
        Google::start_at(dir, None)
    }

    /// A stand-in answering at `ip:443` (a loopback address of its own) in the test process's
    /// network namespace, with no metadata server; only its mount namespace (the hosts file)
    /// is its own. For runs whose other ports the test must reach (a sidecar's `--listen`).
    pub fn start_on_loopback(dir: &Path) -> Google {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ip = format!(
            "127.{}.{}.{}",
            1 + std::process::id() % 200,
            1 + n % 250,
            1 + n / 250 % 250
        );
        Google::start_at(dir, Some(ip))
    }

    fn start_at(dir: &Path, loopback: Option<String>) -> Google {
        std::fs::create_dir_all(dir).unwrap();
        let at = loopback.as_deref().unwrap_or("127.0.0.1");
        let mut hosts =
            String::from("127.0.0.1 localhost\n169.254.169.254 metadata.google.internal\n");
        for h in [
            "secretmanager.googleapis.com",
            "sts.googleapis.com",
            "iamcredentials.googleapis.com",
            "cloudresourcemanager.googleapis.com",
            "oauth2.googleapis.com",
            "attacker.example",
            "secretmanager.us-central1.rep.googleapis.com",
            "secretmanager.europe-west1.rep.googleapis.com",
            "secretmanager.us-east1.rep.googleapis.com",
            "parametermanager.googleapis.com",
            "parametermanager.us-central1.rep.googleapis.com",
            "parametermanager.europe-west1.rep.googleapis.com",
            "parametermanager.us-east1.rep.googleapis.com",
        ] {
            hosts.push_str(&format!("{at} {h}\n"));
        }
        std::fs::write(dir.join("hosts"), hosts).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gcp/standin.py");
        let log = dir.join("standin.log");
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let admin = std::env::temp_dir().join(format!(
            "sdg-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut cmd = Command::new("unshare");
        match &loopback {
            None => cmd.args([
                "-n",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                IN_NAMESPACE,
            ]),
            Some(ip) => cmd.env("STANDIN_BIND", ip).args([
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                IN_MOUNT_NAMESPACE,
            ]),
        };
        cmd.arg(dir)
            .arg(&script)
            .arg(dir)
            .arg(&admin)
            .arg(METADATA_PORT.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = super::spawn_tied_to_process(cmd).expect("start the Google stand-in");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        assert_eq!(
            line.trim(),
            "ready",
            "the Google stand-in did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Google {
            child,
            loopback,
            admin,
            ca: dir.join("ca.pem"),
            dir: dir.to_path_buf(),
            log,
        }
    }

    /// One administration command; panics on an error answer.
    pub fn admin(&self, cmd: Value) -> Value {
        let mut s = UnixStream::connect(&self.admin).expect("admin socket");
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).expect("admin answer");
        assert!(v.get("error").is_none(), "{cmd}: {v}");
        v
    }

    /// Adds a version to a secret (created on first use); returns its number.
    pub fn add_version(&self, location: Option<&str>, secret: &str, data: &[u8]) -> u64 {
        let data = base64::engine::general_purpose::STANDARD.encode(data);
        self.admin(
            json!({"op": "add_version", "location": location, "secret": secret, "data": data}),
        )["version"]
            .as_u64()
            .unwrap()
    }

    /// Adds version `version` to a parameter (`location`: `global` or a region).
    pub fn add_parameter_version(
        &self,
        location: &str,
        parameter: &str,
        version: &str,
        data: &str,
    ) {
        let data = base64::engine::general_purpose::STANDARD.encode(data);
        self.admin(json!({"op": "add_parameter_version", "location": location,
            "parameter": parameter, "version": version, "data": data}));
    }

    /// roles/parametermanager.parameterAccessor on the project.
    pub fn grant_project_parameters(&self, member: &str) {
        self.admin(json!({"op": "grant_project_parameters", "member": member}));
    }

    pub fn grant_secret(&self, location: Option<&str>, secret: &str, member: &str) {
        self.admin(
            json!({"op": "grant_secret", "location": location, "secret": secret, "member": member}),
        );
    }

    pub fn grant_project(&self, member: &str) {
        self.admin(json!({"op": "grant_project", "member": member}));
    }

    /// How many requests of `what` arrived (`access`, `sts`, `iam`, `metadata_token`, ...).
    pub fn count(&self, what: &str) -> u64 {
        self.admin(json!({"op": "counts"}))[what]
            .as_u64()
            .unwrap_or(0)
    }

    pub fn misbehave(&self, target: &str, how: Value) {
        let mut cmd = json!({"op": "misbehave", "target": target});
        if let Value::Object(m) = how {
            cmd.as_object_mut().unwrap().extend(m);
        }
        self.admin(cmd);
    }

    /// Every access token the stand-in issued (for leak checks).
    pub fn tokens(&self) -> Vec<String> {
        self.admin(json!({"op": "tokens"}))["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    }

    /// Makes the next commands run in the stand-in's network (unless it is on a loopback
    /// address of ours) and mount namespaces.
    pub fn enter(&self, cmd: &mut Command) {
        let pid = self.child.id();
        let net = match self.loopback {
            None => Some(std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap()),
            Some(_) => None,
        };
        let mnt = std::fs::File::open(format!("/proc/{pid}/ns/mnt")).unwrap();
        // SAFETY: setns is async-signal-safe; the files stay open (owned by the closure) until
        // exec, which closes them (O_CLOEXEC).
        unsafe {
            cmd.pre_exec(move || {
                use std::os::fd::AsRawFd;
                if let Some(net) = &net {
                    if libc::setns(net.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::setns(mnt.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// `nsenter` into the stand-in's namespaces, then `program`: a command line that can be
    /// copied (a `pre_exec` hook cannot).
    pub fn wrapper(&self, program: &Path) -> Command {
        let pid = self.child.id();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{pid}/ns/mnt"));
        if self.loopback.is_none() {
            cmd.arg(format!("--net=/proc/{pid}/ns/net"));
        }
        cmd.arg("--").arg(program);
        cmd
    }

    /// secretdrop run inside, with `SSL_CERT_FILE` the stand-in's CA, plus `env`.
    pub fn secretdrop(&self, args: &[&str], env: &[(String, String)]) -> Run {
        self.run(Command::new(bin()), args, env)
    }

    pub fn run(&self, mut cmd: Command, args: &[&str], env: &[(String, String)]) -> Run {
        scrub_env(&mut cmd);
        for (k, _) in std::env::vars() {
            if k.starts_with("GOOGLE_") || k.starts_with("GCE_") || k == "SSL_CERT_FILE" {
                cmd.env_remove(k);
            }
        }
        cmd.env("SSL_CERT_FILE", &self.ca);
        self.enter(&mut cmd);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        super::cli::run_command(cmd, args, &env)
    }

    /// A Workload Identity Federation setup: a pool provider, a projected token for
    /// `system:serviceaccount:NS:KSA` in `dir/token`, and an external_account file
    /// impersonating `service_account` (when given) in `dir/credentials.json`. Returns the
    /// environment a pod has, the token and the federated principal.
    pub fn federation(&self, dir: &Path, ksa: &str, service_account: Option<&str>) -> Federation {
        let p = self.admin(json!({"op": "provider", "pool": "pool", "provider": "k8s"}));
        let audience = p["audience"].as_str().unwrap().to_string();
        let sub = format!("system:serviceaccount:default:{ksa}");
        let token = self.admin(json!({"op": "mint", "sub": sub, "aud": [p["default_allowed"]]}))
            ["token"]
            .as_str()
            .unwrap()
            .to_string();
        let token_file = dir.join("token");
        std::fs::write(&token_file, &token).unwrap();
        let mut creds = json!({
            "type": "external_account",
            "audience": audience,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": {"file": token_file, "format": {"type": "text"}},
            "universe_domain": "googleapis.com",
        });
        if let Some(sa) = service_account {
            creds["service_account_impersonation_url"] = json!(format!(
                "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{sa}:generateAccessToken"
            ));
        }
        let file = dir.join("credentials.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&creds).unwrap()).unwrap();
        Federation {
            env: vec![(
                "GOOGLE_APPLICATION_CREDENTIALS".into(),
                file.display().to_string(),
            )],
            token,
            token_file,
            principal: format!(
                "principal://iam.googleapis.com/projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/pool/subject/{sub}"
            ),
            file,
        }
    }

    /// The metadata server answering for `service_account`.
    pub fn metadata_identity(&self, service_account: &str) {
        self.admin(json!({"op": "metadata_identity", "identity": format!("serviceAccount:{service_account}")}));
    }
}

impl Drop for Google {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.admin);
    }
}

pub struct Federation {
    pub env: Vec<(String, String)>,
    pub token: String,
    pub token_file: PathBuf,
    pub principal: String,
    pub file: PathBuf,
}
