//! Benchmark (not a test): `secretdrop init` against `bao agent` (exit_after_auth, equivalent
//! templates) on the same OpenBao dev server in the same run, for the blog-post case (2 objects
//! on one path) and for 500 objects over 50 paths. Reports median time-to-files and peak RSS
//! of each (its own, through the launcher scripts/peak-rss.c), and their ratios; writes target/bench/init.json and images/bench-init.svg.
//!
//! Run with scripts/bench.sh (it builds the static release binary this measures).

#[path = "../tests/common/mod.rs"]
mod common;

use common::Server;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cli::{bin, init_args, write};
use common::scenario::Pod;
use common::{bao_bin, Bao};

/// One measured process: wall time from fork to reaping, and its own peak RSS, both as the
/// static launcher scripts/peak-rss.c reports them (see `launcher`).
struct Sample {
    wall: Duration,
    max_rss_kib: i64,
}

/// The launcher scripts/bench.sh builds (`musl-gcc -static -Os`), from PEAK_RSS_BIN. The
/// kernel folds the pre-exec image of a spawned process into its peak RSS; that image is a copy
/// of the spawner's, so a command spawned from this benchmark would report this process's
/// size. Spawned through the launcher, that image is the launcher's (~0.1 MiB).
fn launcher() -> PathBuf {
    let path = PathBuf::from(
        std::env::var_os("PEAK_RSS_BIN")
            .expect("PEAK_RSS_BIN: run this through scripts/bench.sh, which builds it"),
    );
    assert!(
        path.is_file(),
        "PEAK_RSS_BIN {} is not a file",
        path.display()
    );
    path
}

/// The launcher's report: maxrss_kib=N user_us=N sys_us=N wall_us=N.
fn report_field(report: &str, name: &str) -> i64 {
    report
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("launcher report {report:?} has no {name}"))
}

fn measure(cmd: Command) -> Sample {
    let report_path = std::env::temp_dir().join(format!("peak-rss-{}", std::process::id()));
    let mut through = Command::new(launcher());
    through
        .arg(&report_path)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => through.env(k, v),
            None => through.env_remove(k),
        };
    }
    let out = through
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn the launcher");
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report = std::fs::read_to_string(&report_path).expect("launcher report");
    let _ = std::fs::remove_file(&report_path);
    Sample {
        wall: Duration::from_micros(report_field(&report, "wall_us") as u64),
        max_rss_kib: report_field(&report, "maxrss_kib"),
    }
}

/// Peak RSS (KiB) of `cmd` spawned straight from this process, from wait4: the figure the
/// launcher exists to avoid, shown once next to it as the control.
fn direct_peak_kib(mut cmd: Command) -> i64 {
    // Reaped by wait4 below, which also reports the peak RSS that `Child::wait` does not.
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("spawn");
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: wait4 on our own child; rusage is a plain out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4");
    usage.ru_maxrss
}

/// The control: /bin/true spawned from this process while it holds 64 MiB, directly (wait4
/// reads this process's size) and through the launcher (must read ~1 MiB, /bin/true's own).
fn control() -> (f64, f64) {
    let fat = vec![1u8; 64 << 20];
    let direct = direct_peak_kib(Command::new("/bin/true")) as f64 / 1024.0;
    let launched = measure(Command::new("/bin/true")).max_rss_kib as f64 / 1024.0;
    std::hint::black_box(&fat);
    assert!(
        launched < 4.0,
        "the launcher reports {launched:.1} MiB for /bin/true: it does not isolate the child"
    );
    (direct, launched)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Case {
    name: &'static str,
    /// (objectName, path, key)
    objects: Vec<(String, String, String)>,
    runs: usize,
    /// secretdrop reads a converted Vault Agent pod's annotations (the same templates as the
    /// agent's) instead of a SecretProviderClass.
    agent_pod: bool,
}

/// A converted injector pod's downward-API annotations file with the agent's templates.
fn agent_annotations(addr: &str, role: &str, objects: &[(String, String, String)]) -> String {
    let mut s = format!(
        "secretdrop.dev/vault-agent=\"vault.hashicorp.com/\"\nvault.hashicorp.com/agent-inject=\"true\"\nvault.hashicorp.com/role=\"{role}\"\nvault.hashicorp.com/service=\"{addr}\"\nvault.hashicorp.com/preserve-secret-case=\"true\"\n"
    );
    for (name, path, key) in objects {
        s.push_str(&format!(
            "vault.hashicorp.com/agent-inject-template-{name}=\"{{{{ with secret \\\"{path}\\\" }}}}{{{{ .Data.data.{key} }}}}{{{{ end }}}}\"\n"
        ));
    }
    s
}

struct Result {
    case: &'static str,
    tool: &'static str,
    wall_ms: f64,
    rss_mib: f64,
}

fn spc(addr: &str, role: &str, objects: &[(String, String, String)]) -> String {
    let mut s = format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: bench\nspec:\n  provider: vault\n  parameters:\n    roleName: {role}\n    vaultAddress: {addr}\n    objects: |\n"
    );
    for (name, path, key) in objects {
        s.push_str(&format!(
            "      - {{objectName: \"{name}\", secretPath: \"{path}\", secretKey: \"{key}\"}}\n"
        ));
    }
    s
}

fn agent_hcl(
    addr: &str,
    role: &str,
    token: &Path,
    out: &Path,
    objects: &[(String, String, String)],
) -> String {
    let mut s = format!(
        "exit_after_auth = true\nvault {{\n  address = \"{addr}\"\n}}\nauto_auth {{\n  method \"kubernetes\" {{\n    mount_path = \"auth/kubernetes\"\n    config = {{\n      role = \"{role}\"\n      token_path = \"{}\"\n    }}\n  }}\n}}\n",
        token.display()
    );
    for (name, path, key) in objects {
        s.push_str(&format!(
            "template {{\n  destination = \"{}/{name}\"\n  contents = \"{{{{ with secret \\\"{path}\\\" }}}}{{{{ .Data.data.{key} }}}}{{{{ end }}}}\"\n}}\n",
            out.display()
        ));
    }
    s
}

fn main() {
    let bao = Bao::start_new();
    bao.cli(&[
        "kv",
        "put",
        "secret/app",
        "username=admin",
        "password=p4ssw0rd",
    ]);
    for p in 0..50 {
        let mut args: Vec<String> = vec!["kv".into(), "put".into(), format!("secret/many/p{p}")];
        args.extend((0..10).map(|k| format!("k{k}=value-{p}-{k}")));
        bao.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let pod = Pod::with_policy(
        &bao,
        "path \"secret/data/*\" { capabilities = [\"read\"] }\n",
    );
    let (work, token_path) = (&pod.dir, &pod.token_path);

    let blog = vec![
        (
            "myUsername".to_string(),
            "secret/data/app".to_string(),
            "username".to_string(),
        ),
        (
            "myPassword".to_string(),
            "secret/data/app".to_string(),
            "password".to_string(),
        ),
    ];
    let many: Vec<_> = (0..50)
        .flat_map(|p| {
            (0..10).map(move |k| {
                (
                    format!("p{p}-k{k}"),
                    format!("secret/data/many/p{p}"),
                    format!("k{k}"),
                )
            })
        })
        .collect();
    let cases = [
        Case {
            name: "blog post: 2 objects, 1 path",
            objects: blog.clone(),
            runs: 21,
            agent_pod: false,
        },
        Case {
            name: "500 objects, 50 paths",
            objects: many,
            runs: 7,
            agent_pod: false,
        },
        Case {
            name: "converted agent pod: 2 Go templates",
            objects: blog,
            runs: 21,
            agent_pod: true,
        },
    ];

    let sd = bin();
    let sd_size = std::fs::metadata(&sd).map(|m| m.len()).unwrap_or(0);
    let bao_size = std::fs::metadata(bao_bin()).map(|m| m.len()).unwrap_or(0);
    println!(
        "secretdrop: {} ({:.2} MiB)",
        sd.display(),
        sd_size as f64 / 1048576.0
    );
    println!(
        "bao:        {} ({:.1} MiB)",
        bao_bin().display(),
        bao_size as f64 / 1048576.0
    );
    println!(
        "OpenBao dev server {} on this machine; medians over the runs shown",
        bao.addr()
    );
    let (direct, launched) = control();
    println!(
        "peak RSS: each command's own, through the static launcher scripts/peak-rss.c; control: /bin/true spawned from this 64 MiB process reads {direct:.1} MiB by wait4 directly, {launched:.1} MiB through the launcher\n"
    );

    let mut results = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        let cfg = match case.agent_pod {
            false => write(
                work.path(),
                "spc.yaml",
                &spc(&bao.addr(), &pod.role, &case.objects),
            ),
            true => write(
                work.path(),
                "annotations",
                &agent_annotations(&bao.addr(), &pod.role, &case.objects),
            ),
        };
        let mut sd_samples = Vec::new();
        let mut agent_samples = Vec::new();
        for i in 0..case.runs {
            // Alternate the tools so both see the same server state and machine load.
            let out: PathBuf = work.join(format!("sd-{ci}-{i}"));
            let mut cmd = Command::new(&sd);
            cmd.args(init_args(&cfg, &out, Some(token_path)))
                .args(["--log-level", "warn"]);
            sd_samples.push(measure(cmd));
            assert_eq!(
                std::fs::read_dir(out.join("..data")).unwrap().count(),
                case.objects.len()
            );

            let out = work.join(format!("agent-{ci}-{i}"));
            std::fs::create_dir_all(&out).unwrap();
            let hcl = write(
                work.path(),
                "agent.hcl",
                &agent_hcl(&bao.addr(), &pod.role, token_path, &out, &case.objects),
            );
            let mut cmd = Command::new(bao_bin());
            cmd.args([
                "agent",
                "-log-level=warn",
                &format!("-config={}", hcl.display()),
            ]);
            for (k, _) in std::env::vars() {
                if k.starts_with("VAULT_") || k.starts_with("BAO_") {
                    cmd.env_remove(k);
                }
            }
            agent_samples.push(measure(cmd));
            assert_eq!(
                std::fs::read_dir(&out).unwrap().count(),
                case.objects.len(),
                "bao agent wrote every file"
            );
        }
        for (tool, samples) in [
            ("secretdrop init", sd_samples),
            ("bao agent", agent_samples),
        ] {
            results.push(Result {
                case: case.name,
                tool,
                wall_ms: median(
                    samples
                        .iter()
                        .map(|s| s.wall.as_secs_f64() * 1000.0)
                        .collect(),
                ),
                rss_mib: median(
                    samples
                        .iter()
                        .map(|s| s.max_rss_kib as f64 / 1024.0)
                        .collect(),
                ),
            });
        }
    }

    println!(
        "{:<32} {:<16} {:>12} {:>14}",
        "case", "tool", "wall (ms)", "peak RSS (MiB)"
    );
    for r in &results {
        println!(
            "{:<32} {:<16} {:>12.1} {:>14.1}",
            r.case, r.tool, r.wall_ms, r.rss_mib
        );
    }
    println!();
    let mut json_cases = Vec::new();
    for pair in results.chunks(2) {
        let (sd, agent) = (&pair[0], &pair[1]);
        let speed = agent.wall_ms / sd.wall_ms;
        let mem = agent.rss_mib / sd.rss_mib;
        println!(
            "{:<32} secretdrop is {speed:.1}x faster and uses {mem:.1}x less peak memory",
            sd.case
        );
        json_cases.push(serde_json::json!({
            "case": sd.case,
            "secretdrop": {"wall_ms": sd.wall_ms, "peak_rss_mib": sd.rss_mib},
            "bao_agent": {"wall_ms": agent.wall_ms, "peak_rss_mib": agent.rss_mib},
            "speedup": speed, "memory_ratio": mem,
        }));
    }
    println!(
        "binary size: secretdrop {:.2} MiB, bao {:.1} MiB ({:.0}x)",
        sd_size as f64 / 1048576.0,
        bao_size as f64 / 1048576.0,
        bao_size as f64 / sd_size.max(1) as f64
    );

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let report = serde_json::json!({
        "cases": json_cases,
        "binary_bytes": {"secretdrop": sd_size, "bao": bao_size},
        "peak_rss_method": "wait4 ru_maxrss of the command forked from the static launcher scripts/peak-rss.c",
        "control_bin_true_mib": {"direct_from_64_mib_parent": direct, "through_launcher": launched},
    });
    std::fs::create_dir_all(root.join("target/bench")).unwrap();
    std::fs::write(
        root.join("target/bench/init.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    std::fs::write(root.join("images/bench-init.svg"), svg(&results)).unwrap();
    println!("\nwrote target/bench/init.json and images/bench-init.svg");
}

/// Two grouped horizontal bar charts (wall time, peak RSS), plain SVG.
fn svg(results: &[Result]) -> String {
    // Each panel has a row per result; the picture grows with the cases.
    let panel = 30.0 + results.len() as f64 * 26.0;
    let height = 60.0 + 2.0 * panel;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"760\" height=\"{height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"760\" height=\"{height:.0}\" fill=\"white\"/>\n<text x=\"380\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">secretdrop init vs bao agent (exit_after_auth), same OpenBao, same run</text>\n",
    );
    type Panel = (&'static str, fn(&Result) -> f64, &'static str);
    let panels: [Panel; 2] = [
        ("time to files (ms, median)", |r| r.wall_ms, "ms"),
        (
            "peak RSS (MiB, median; the command's own: wait4 through a 40 KB static launcher)",
            |r| r.rss_mib,
            "MiB",
        ),
    ];
    for (pi, (title, value, unit)) in panels.iter().enumerate() {
        let y0 = 50.0 + pi as f64 * panel;
        s.push_str(&format!(
            "<text x=\"10\" y=\"{y0}\" font-weight=\"bold\">{title}</text>\n"
        ));
        let max = results.iter().map(value).fold(0.0, f64::max).max(1e-9);
        for (i, r) in results.iter().enumerate() {
            let y = y0 + 10.0 + i as f64 * 26.0;
            let w = 380.0 * value(r) / max;
            let color = if r.tool.starts_with("secretdrop") {
                "#2b8a3e"
            } else {
                "#868e96"
            };
            s.push_str(&format!(
                "<text x=\"10\" y=\"{:.0}\">{} — {}</text>\n<rect x=\"300\" y=\"{:.0}\" width=\"{w:.1}\" height=\"18\" fill=\"{color}\"/>\n<text x=\"{:.1}\" y=\"{:.0}\">{:.1} {unit}</text>\n",
                y + 13.0, r.case, r.tool, y, 300.0 + w + 5.0, y + 13.0, value(r)
            ));
        }
    }
    s.push_str("</svg>\n");
    s
}
