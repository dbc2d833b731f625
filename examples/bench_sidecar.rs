//! Benchmark (not a test): `secretdrop sidecar` against resident `bao agent`, same secrets, same
//! OpenBao, same run.
//!
//! 1. A simulated pod hour at 60× speed, one tool at a time, on a private OpenBao: KV polled
//!    every 5 s (5 min), database credentials with 6 s / 18 s TTLs (6 / 18 min) from a real
//!    PostgreSQL, a token with a 20 s TTL (20 min). Counts the requests OpenBao handled
//!    (`vault_core_handle_request_count` + logins), and reports CPU time and RSS.
//! 2. Idle: both tools side by side with only a KV secret (5 min poll) and a 20 min token; CPU
//!    time and context switches over a 60 s window, and steady-state RSS.
//!
//! RSS is VmRSS from /proc/PID/status of the running tool: the resident pages of its own memory
//! image (exec replaced the spawner's), unlike a peak read from wait4 (see examples/bench.rs).
//!
//! Writes target/bench/sidecar.json and images/bench-sidecar.svg. Run with
//! scripts/bench-sidecar.sh (it builds the static release binary this measures).

#[path = "../tests/common/mod.rs"]
mod common;

use common::Server;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cli::{bin, write};
use common::postgres::{enable_database_engine, unique_role, Postgres};
use common::scenario::Pod;
use common::{bao_bin, Bao};

const SPEEDUP_WINDOW: Duration = Duration::from_secs(60);
const IDLE_WINDOW: Duration = Duration::from_secs(60);

/// CPU time (ms), RSS (KiB) and context switches of a running process.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cpu_ms: u64,
    rss_kib: u64,
    switches: u64,
}

fn usage(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    // SAFETY: sysconf is always safe to call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut switches = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            switches +=
                field(&s, "voluntary_ctxt_switches:") + field(&s, "nonvoluntary_ctxt_switches:");
        }
    }
    Usage {
        cpu_ms: ticks * 1000 / hz,
        rss_kib: field(&status, "VmRSS:"),
        switches,
    }
}

struct Secrets {
    kv: bool,
    db: Option<String>,
}

fn sidecar_config(addr: &str, role: &str, secrets: &Secrets) -> String {
    let mut s = format!(
        "apiVersion: secretdrop.dev/v1alpha1\nkind: Config\nvault:\n  address: {addr}\nauth:\n  method: kubernetes\n  role: {role}\nobjects:\n"
    );
    if secrets.kv {
        s.push_str(
            "  - {objectName: app-username, secretPath: secret/data/app, secretKey: username}\n",
        );
        s.push_str(
            "  - {objectName: app-password, secretPath: secret/data/app, secretKey: password}\n",
        );
    }
    if let Some(creds) = &secrets.db {
        s.push_str(&format!(
            "  - {{objectName: db-username, secretPath: {creds}, secretKey: username}}\n"
        ));
        s.push_str(&format!(
            "  - {{objectName: db-password, secretPath: {creds}, secretKey: password}}\n"
        ));
    }
    s
}

fn agent_config(
    addr: &str,
    role: &str,
    token: &Path,
    out: &Path,
    secrets: &Secrets,
    poll: &str,
) -> String {
    let mut s = format!(
        "vault {{\n  address = \"{addr}\"\n}}\nauto_auth {{\n  method \"kubernetes\" {{\n    mount_path = \"auth/kubernetes\"\n    config = {{\n      role = \"{role}\"\n      token_path = \"{}\"\n    }}\n  }}\n}}\ntemplate_config {{\n  static_secret_render_interval = \"{poll}\"\n}}\n",
        token.display()
    );
    let mut template = |name: &str, path: &str, expr: &str| {
        s.push_str(&format!(
            "template {{\n  destination = \"{}/{name}\"\n  contents = \"{{{{ with secret \\\"{path}\\\" }}}}{{{{ {expr} }}}}{{{{ end }}}}\"\n}}\n",
            out.display()
        ));
    };
    if secrets.kv {
        template("app-username", "secret/data/app", ".Data.data.username");
        template("app-password", "secret/data/app", ".Data.data.password");
    }
    if let Some(creds) = &secrets.db {
        template("db-username", creds, ".Data.username");
        template("db-password", creds, ".Data.password");
    }
    s
}

fn scrub(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("VAULT_") || k.starts_with("BAO_") || k.starts_with("SECRETDROP_") {
            cmd.env_remove(k);
        }
    }
}

struct Tools {
    pod: Pod,
}

impl Tools {
    fn start_sidecar(&self, bao: &Bao, name: &str, secrets: &Secrets, poll: &str) -> Child {
        let cfg = write(
            self.pod.dir.path(),
            &format!("{name}.yaml"),
            &sidecar_config(&bao.addr(), &self.pod.role, secrets),
        );
        let out = self.pod.dir.join(name);
        let mut cmd = Command::new(bin());
        scrub(&mut cmd);
        cmd.args([
            "sidecar",
            "--config",
            cfg.to_str().unwrap(),
            "--dir",
            out.to_str().unwrap(),
        ])
        .args([
            "--token-path",
            self.pod.token_path.to_str().unwrap(),
            "--poll-interval",
            poll,
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd.spawn().expect("start secretdrop sidecar")
    }

    fn start_agent(&self, bao: &Bao, name: &str, secrets: &Secrets, poll: &str) -> Child {
        let out = self.pod.dir.join(name);
        std::fs::create_dir_all(&out).unwrap();
        let hcl = agent_config(
            &bao.addr(),
            &self.pod.role,
            &self.pod.token_path,
            &out,
            secrets,
            poll,
        );
        let cfg = write(self.pod.dir.path(), &format!("{name}.hcl"), &hcl);
        let mut cmd = Command::new(bao_bin());
        scrub(&mut cmd);
        cmd.args([
            "agent",
            "-log-level=warn",
            &format!("-config={}", cfg.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd.spawn().expect("start bao agent")
    }
}

fn wait_for_files(dir: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let count = std::fs::read_dir(dir)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| !e.file_name().to_string_lossy().starts_with(".."))
                })
                .count()
            })
            .unwrap_or(0);
        if count >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} never held {n} files", dir.display());
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

#[derive(Debug)]
struct Busy {
    tool: &'static str,
    requests: u64,
    cpu_ms: u64,
    rss_kib: u64,
}

fn main() {
    let bao = Bao::start_new();
    let pg = Postgres::shared();
    bao.cli(&[
        "kv",
        "put",
        "secret/app",
        "username=admin",
        "password=p4ssw0rd",
    ]);
    let db_role = unique_role("bench");
    enable_database_engine(&bao, "database", pg, &db_role, "6s", "18s");
    let creds = format!("database/creds/{db_role}");
    let pod = Pod::with_policy(
        &bao,
        &format!("path \"secret/data/app\" {{ capabilities = [\"read\"] }}\npath \"{creds}\" {{ capabilities = [\"read\"] }}\n"),
    );
    let role_path = format!("auth/kubernetes/role/{}", pod.role);
    bao.cli(&["write", &role_path, "token_ttl=20s", "token_max_ttl=2m"]);
    let tools = Tools { pod };
    println!(
        "secretdrop: {}\nbao:        {}\nOpenBao {} (private), PostgreSQL on port {}\n",
        bin().display(),
        bao_bin().display(),
        bao.addr(),
        pg.port()
    );

    // 1. A pod hour at 60x: each tool alone, so OpenBao's counter is its alone.
    println!("simulated pod hour (60 s at 60x: KV poll 5 s, DB creds 6 s/18 s, token 20 s), one tool at a time...");
    let full = Secrets {
        kv: true,
        db: Some(creds.clone()),
    };
    let mut busy = Vec::new();
    for tool in ["secretdrop sidecar", "bao agent"] {
        let name = if tool.starts_with("secretdrop") {
            "busy-sd"
        } else {
            "busy-agent"
        };
        let before = common::request_count(&bao);
        let child = if tool.starts_with("secretdrop") {
            tools.start_sidecar(&bao, name, &full, "5s")
        } else {
            tools.start_agent(&bao, name, &full, "5s")
        };
        wait_for_files(&tools.pod.dir.join(name), 4);
        std::thread::sleep(SPEEDUP_WINDOW);
        let u = usage(child.id());
        stop(child);
        // Subtract the metrics reads themselves (one before, one after).
        let requests = common::request_count(&bao)
            .saturating_sub(before)
            .saturating_sub(2);
        busy.push(Busy {
            tool,
            requests,
            cpu_ms: u.cpu_ms,
            rss_kib: u.rss_kib,
        });
    }

    // 2. Idle, side by side.
    println!(
        "idle window ({} s, KV only, default 5 min poll, 20 min token), both tools side by side...",
        IDLE_WINDOW.as_secs()
    );
    bao.cli(&["write", &role_path, "token_ttl=20m", "token_max_ttl=24h"]);
    let kv = Secrets { kv: true, db: None };
    let sd = tools.start_sidecar(&bao, "idle-sd", &kv, "5m");
    let agent = tools.start_agent(&bao, "idle-agent", &kv, "5m");
    wait_for_files(&tools.pod.dir.join("idle-sd"), 2);
    wait_for_files(&tools.pod.dir.join("idle-agent"), 2);
    std::thread::sleep(Duration::from_secs(5));
    let (sd0, ag0) = (usage(sd.id()), usage(agent.id()));
    std::thread::sleep(IDLE_WINDOW);
    let (sd1, ag1) = (usage(sd.id()), usage(agent.id()));
    stop(sd);
    stop(agent);

    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "\n{:<22} {:>10} {:>12} {:>10}",
        "pod hour at 60x", "requests", "CPU (ms)", "RSS (MiB)"
    );
    for b in &busy {
        println!(
            "{:<22} {:>10} {:>12} {:>10.1}",
            b.tool,
            b.requests,
            b.cpu_ms,
            mib(b.rss_kib)
        );
    }
    println!(
        "\n{:<22} {:>12} {:>12} {:>10}",
        "idle 60 s", "CPU (ms)", "wake-ups", "RSS (MiB)"
    );
    let idle = [("secretdrop sidecar", sd0, sd1), ("bao agent", ag0, ag1)];
    for (tool, a, b) in &idle {
        println!(
            "{:<22} {:>12} {:>12} {:>10.1}",
            tool,
            b.cpu_ms - a.cpu_ms,
            b.switches - a.switches,
            mib(b.rss_kib)
        );
    }
    let (sdb, agb) = (&busy[0], &busy[1]);
    println!(
        "\nratios: requests {} vs {} ({:.2}x fewer), steady RSS {:.1}x smaller, idle CPU {} ms vs {} ms",
        sdb.requests,
        agb.requests,
        agb.requests as f64 / sdb.requests.max(1) as f64,
        mib(ag1.rss_kib) / mib(sd1.rss_kib).max(0.001),
        sd1.cpu_ms - sd0.cpu_ms,
        ag1.cpu_ms - ag0.cpu_ms
    );

    let report = serde_json::json!({
        "pod_hour_60x": busy.iter().map(|b| serde_json::json!({"tool": b.tool, "requests": b.requests, "cpu_ms": b.cpu_ms, "rss_mib": mib(b.rss_kib)})).collect::<Vec<_>>(),
        "idle_60s": idle.iter().map(|(t, a, b)| serde_json::json!({"tool": t, "cpu_ms": b.cpu_ms - a.cpu_ms, "context_switches": b.switches - a.switches, "rss_mib": mib(b.rss_kib)})).collect::<Vec<_>>(),
    });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(root.join("target/bench")).unwrap();
    std::fs::write(
        root.join("target/bench/sidecar.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    let bars = [
        (
            "requests / pod hour",
            sdb.requests as f64,
            agb.requests as f64,
            "",
        ),
        (
            "steady RSS (MiB; VmRSS of the running process, /proc/PID/status)",
            mib(sd1.rss_kib),
            mib(ag1.rss_kib),
            " MiB",
        ),
        (
            "idle CPU per minute (ms)",
            (sd1.cpu_ms - sd0.cpu_ms) as f64,
            (ag1.cpu_ms - ag0.cpu_ms) as f64,
            " ms",
        ),
    ];
    std::fs::write(root.join("images/bench-sidecar.svg"), svg(&bars)).unwrap();
    println!("wrote target/bench/sidecar.json and images/bench-sidecar.svg");
}

/// One panel per figure, secretdrop against bao agent.
fn svg(bars: &[(&str, f64, f64, &str)]) -> String {
    let height = 60 + bars.len() * 80;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"760\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"760\" height=\"{height}\" fill=\"white\"/>\n<text x=\"380\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">secretdrop sidecar vs bao agent, same secrets, same OpenBao</text>\n"
    );
    for (i, (title, sd, agent, unit)) in bars.iter().enumerate() {
        let y0 = 55.0 + i as f64 * 80.0;
        let max = sd.max(*agent).max(1e-9);
        s.push_str(&format!(
            "<text x=\"10\" y=\"{y0}\" font-weight=\"bold\">{title}</text>\n"
        ));
        for (j, (tool, v, color)) in [
            ("secretdrop sidecar", sd, "#2b8a3e"),
            ("bao agent", agent, "#868e96"),
        ]
        .iter()
        .enumerate()
        {
            let y = y0 + 10.0 + j as f64 * 26.0;
            let w = 420.0 * **v / max;
            s.push_str(&format!(
                "<text x=\"10\" y=\"{:.0}\">{tool}</text>\n<rect x=\"160\" y=\"{y:.0}\" width=\"{w:.1}\" height=\"18\" fill=\"{color}\"/>\n<text x=\"{:.1}\" y=\"{:.0}\">{:.1}{unit}</text>\n",
                y + 13.0,
                165.0 + w,
                y + 13.0,
                v
            ));
        }
    }
    s.push_str("</svg>\n");
    s
}
