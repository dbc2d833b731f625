//! moto server (PyPI `moto[server]`) with SigV4 signatures and IAM policies enforced, for the
//! AWS provider's tests; see tests/moto/server.py for the three ways it differs from
//! `moto_server`. One server per test process ([`Moto::shared`]); tests isolate themselves
//! with [`super::unique`] names, so they may run in parallel.
//!
//! Setup goes through boto3 as moto's admin user (tests/moto/admin.py): an AWS SDK that signs
//! on its own, so secretdrop's SigV4 is never checked against itself.

use serde_json::{json, Value};

use super::hostile::{json_reply, Act, Proxy};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

pub const ACCOUNT: &str = "123456789012";

pub struct Moto {
    port: u16,
    access_key: String,
    secret_key: String,
    trusted: PathBuf,
    pub log: PathBuf,
    _child: Child,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/moto")
        .join(name)
}

impl Moto {
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();
        super::once_or_fail(&MOTO, Moto::start)
    }

    fn start() -> Moto {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = super::free_port();
            let log = super::harness_dir().join(format!("moto-{port}.log"));
            let trusted = super::harness_dir().join(format!("moto-{port}-trusted-tokens"));
            std::fs::create_dir_all(&trusted).expect("trusted tokens dir");
            let mut cmd = Command::new("python3");
            cmd.arg(script("server.py"))
                .arg(port.to_string())
                .arg(&trusted)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).expect("moto log"));
            for (k, _) in std::env::vars() {
                if k.starts_with("AWS_") {
                    cmd.env_remove(k);
                }
            }
            let mut child = super::spawn_tied_to_process(cmd)
                .unwrap_or_else(|e| panic!("cannot start moto (pip install 'moto[server]'): {e}"));
            let mut line = String::new();
            let stdout = child.stdout.take().expect("moto stdout");
            let read = BufReader::new(stdout).read_line(&mut line);
            match (read, serde_json::from_str::<Value>(&line)) {
                (Ok(n), Ok(keys)) if n > 0 => {
                    return Moto {
                        port,
                        access_key: keys["access_key"].as_str().unwrap_or_default().into(),
                        secret_key: keys["secret_key"].as_str().unwrap_or_default().into(),
                        trusted,
                        log,
                        _child: child,
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!("port {port}: see {}", log.display()));
                }
            }
        }
        panic!("moto never became ready:\n{}", failures.join("\n"));
    }

    /// `http://127.0.0.1:PORT`: every service's endpoint (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs boto3 calls as the admin: `[{"service", "region", "op", "args"}]` → their results.
    pub fn admin(&self, calls: Value) -> Vec<Value> {
        let mut child = Command::new("python3")
            .arg(script("admin.py"))
            .args([&self.endpoint(), &self.access_key, &self.secret_key])
            .env_remove("AWS_ENDPOINT_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run admin.py");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(calls.to_string().as_bytes())
            .expect("write calls");
        let out = child.wait_with_output().expect("admin.py");
        assert!(
            out.status.success(),
            "admin calls failed: {}\n{}",
            calls,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("admin.py JSON")
    }

    /// Makes moto's STS accept `token` as a web identity (as an OIDC provider would).
    pub fn trust_token(&self, token: &str) {
        let name = super::unique("token");
        std::fs::write(self.trusted.join(name), token).expect("trust token");
    }

    /// A role that may read Secrets Manager and SSM (`read: true`) or nothing; its ARN.
    pub fn role(&self, name: &str, read: bool) -> String {
        // IRSA's OIDC provider, and (standing in for the EKS Pod Identity service, which
        // assumes the role for the agent) the admin user.
        let trust = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Federated": "oidc"}, "Action": "sts:AssumeRoleWithWebIdentity"},
            {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/admin")}, "Action": "sts:AssumeRole"}]});
        let mut calls = vec![call(
            "iam",
            "us-east-1",
            "create_role",
            json!({"RoleName": name, "AssumeRolePolicyDocument": trust.to_string()}),
        )];
        if read {
            let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue", "ssm:GetParameters"], "Resource": "*"}]});
            calls.push(call("iam", "us-east-1", "put_role_policy",
                json!({"RoleName": name, "PolicyName": "read", "PolicyDocument": policy.to_string()})));
        }
        self.admin(Value::Array(calls));
        format!("arn:aws:iam::{ACCOUNT}:role/{name}")
    }

    /// Temporary keys of `role_arn` (what the Pod Identity agent hands out).
    pub fn assume(&self, role_arn: &str) -> Value {
        let r = self.admin(json!([call(
            "sts",
            "us-east-1",
            "assume_role",
            json!({"RoleArn": role_arn, "RoleSessionName": "pod-identity"})
        )]));
        r[0]["Credentials"].clone()
    }
}

/// One admin call.
pub fn call(service: &str, region: &str, op: &str, args: Value) -> Value {
    json!({"service": service, "region": region, "op": op, "args": args})
}

/// The EKS Pod Identity agent's credentials endpoint: answers a GET whose `Authorization` is
/// the token the agent currently expects (`expected` file, rotated by the test like kubelet
/// rotates the projected token) with the role's temporary keys; anything else gets a 401.
pub fn pod_identity_agent(
    keys: Value,
    expected: PathBuf,
    expires_in: std::time::Duration,
) -> Proxy {
    Proxy::start("127.0.0.1", None, move |seen| {
        let want = std::fs::read_to_string(&expected).unwrap_or_default();
        let presented = seen.header("Authorization").unwrap_or("");
        if seen.method != "GET"
            || presented != want.trim()
            || want.trim().is_empty()
            || !audience_is(presented, "pods.eks.amazonaws.com")
        {
            return Act::Reply(json_reply(401, &json!({"message": "invalid token"})));
        }
        let expiration = std::time::SystemTime::now() + expires_in;
        let secs = expiration
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Act::Reply(json_reply(
            200,
            &json!({
                "AccessKeyId": keys["AccessKeyId"], "SecretAccessKey": keys["SecretAccessKey"],
                "Token": keys["SessionToken"], "AccountId": ACCOUNT,
                "Expiration": iso8601(secs),
            }),
        ))
    })
}

fn iso8601(secs: u64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Whether a JWT's `aud` holds `audience`, as the EKS Auth API checks the Pod Identity token
/// (and STS the IRSA one); a token that is not a JWT (the tests' opaque ones) passes.
pub fn audience_is(token: &str, audience: &str) -> bool {
    use base64::Engine;
    let parts: Vec<&str> = token.split('.').collect();
    let claims: Option<Value> = (parts.len() == 3)
        .then(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .ok()
        })
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok());
    match claims.as_ref().and_then(|c| c.get("aud")) {
        None => claims.is_none(),
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(a)) => a.iter().any(|a| a == audience),
        Some(_) => false,
    }
}

/// Environment of a pod using IRSA against `moto`.
pub fn irsa_env(moto: &Moto, role_arn: &str, token_file: &Path) -> Vec<(String, String)> {
    vec![
        ("AWS_ROLE_ARN".into(), role_arn.into()),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
            token_file.display().to_string(),
        ),
        ("AWS_ENDPOINT_URL".into(), moto.endpoint()),
    ]
}
