//! The oracle for converted Vault Agent pods: the real `bao agent`, configured as the Vault
//! Agent Injector configures its init container (`exit_after_auth`, kubernetes auto-auth with
//! the pod's token, one `template` stanza per secret), rendering against the same OpenBao.
//! What it writes is what secretdrop must write, byte for byte and mode for mode.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::{bao_bin, Bao};

/// One template stanza as the injector generates it.
pub struct Stanza {
    /// Where the file goes, relative to the agent's secrets directory.
    pub file: String,
    pub contents: String,
    pub perms: Option<String>,
    pub error_on_missing_key: bool,
    pub delims: Option<(String, String)>,
}

/// What `bao agent` did.
pub struct Rendered {
    pub ok: bool,
    pub log: String,
    pub dir: PathBuf,
}

impl Rendered {
    /// The bytes and mode of `file`.
    pub fn file(&self, file: &str) -> (Vec<u8>, u32) {
        let p = self.dir.join(file);
        let bytes = std::fs::read(&p)
            .unwrap_or_else(|e| panic!("bao agent wrote no {file}: {e}\n{}", self.log));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        (bytes, mode)
    }
}

/// Runs `bao agent` once (as the injector's init container) with kubernetes auth at `mount`
/// as `role`, the JWT in `jwt`, and `env` added to its environment (what the agent container
/// had: NAMESPACE, POD_IP, HOST_IP).
pub fn render(
    bao: &Bao,
    work: &Path,
    mount: &str,
    role: &str,
    jwt: &Path,
    stanzas: &[Stanza],
    env: &[(&str, &str)],
) -> Rendered {
    let dir = work.join("agent-out");
    std::fs::create_dir_all(&dir).unwrap();
    let templates: Vec<Value> = stanzas
        .iter()
        .map(|s| {
            let mut t = json!({
                "destination": dir.join(&s.file),
                "contents": s.contents,
                "error_on_missing_key": s.error_on_missing_key,
            });
            if let Some(p) = &s.perms {
                t["perms"] = json!(p);
            }
            if let Some((l, r)) = &s.delims {
                t["left_delimiter"] = json!(l);
                t["right_delimiter"] = json!(r);
            }
            t
        })
        .collect();
    let config = json!({
        "auto_auth": {"method": [{"type": "kubernetes", "mount_path": format!("auth/{mount}"),
                                 "config": {"role": role, "token_path": jwt}}]},
        "exit_after_auth": true,
        "pid_file": work.join("agent.pid"),
        "vault": {"address": bao.addr()},
        "template_config": {"exit_on_retry_failure": true},
        "template": templates,
    });
    let file = work.join("agent.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let mut cmd = Command::new(bao_bin());
    cmd.arg("agent")
        .arg(format!("-config={}", file.display()))
        .env_remove("VAULT_ADDR")
        .env_remove("BAO_ADDR")
        .env_remove("VAULT_TOKEN")
        .env_remove("BAO_TOKEN")
        .envs(env.iter().copied());
    let out = run_bounded(cmd, Duration::from_secs(60));
    Rendered {
        ok: out.0,
        log: out.1,
        dir,
    }
}

/// Runs `cmd` to completion within `limit`, killing it past that: (success, output).
fn run_bounded(mut cmd: Command, limit: Duration) -> (bool, String) {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = super::spawn_tied_to_process(cmd).expect("start bao agent");
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let o = child.wait_with_output().unwrap();
            let log = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            return (status.success(), log);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            return (
                false,
                format!(
                    "bao agent did not finish in {limit:?}\n{}",
                    String::from_utf8_lossy(&o.stderr)
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
