//! Benchmark (not a test): `secretdrop webhook` admission latency at fixed request rates over
//! TLS on loopback, its CPU per request, and its RSS.
//!
//! Open loop: requests are scheduled at the rate whatever the answers do, and latency is also
//! measured from the scheduled time (no coordinated omission). The review is the blog post's
//! pod, opted in, so every request runs the full validation, mutation and patch.
//!
//! RATES (requests/s, comma-separated; default 500) are run one after the other against one
//! webhook for RATE_SECONDS each (default 10). For each: latency from send and from schedule, the
//! webhook's CPU (utime + stime from /proc) per request, and the load generator's (this
//! process, one thread) — both share the machine's cores. With several rates it also prints
//! the capacity: the highest rate whose p99 from schedule is under 10 ms. RSS is VmRSS/VmHWM
//! from /proc/PID/status of the webhook (its own memory image; nothing of this process's).
//! Writes target/bench/webhook.json. Run with scripts/bench-webhook.sh (it builds the static
//! release binary; SECRETDROP_BIN picks another).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::cli::bin;
use common::{free_port, TestDir};
use secretdrop::config::TlsSettings;

const CONNECTIONS: usize = 16;
/// The capacity criterion: p99 latency from the scheduled time.
const P99_LIMIT_MS: f64 = 10.0;

/// utime + stime of a process (`self` or a pid), in ms.
fn cpu_ms(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Fields 14 and 15 of stat; `after` starts at field 3.
    (f[11] + f[12]) * 1000.0 / ticks_per_second()
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

struct Run {
    rate: u32,
    /// (from schedule, from send)
    latencies: Vec<(Duration, Duration)>,
    webhook_cpu_ms: f64,
    generator_cpu_ms: f64,
}

fn main() {
    let dir = TestDir::new();
    let (crt, key) = common::pki::self_signed(dir.path(), "bench");
    let port = free_port();
    let mut webhook = Command::new(bin())
        .args([
            "webhook",
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--vault-address",
            "https://vault.vault.svc:8200",
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "bench", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
            "namespace": "default",
            "object": {"metadata": {"generateName": "webapp-", "annotations": {
                "secretdrop.dev/inject": "true", "secretdrop.dev/role": "mycsirole",
                "secretdrop.dev/objects": "- objectName: \"myUsername\"\n  secretPath: \"secret/data/app\"\n  secretKey: \"username\"\n- objectName: \"myPassword\"\n  secretPath: \"secret/data/app\"\n  secretKey: \"password\"\n"}},
              "spec": {"serviceAccountName": "mycsiserviceaccount", "containers": [{"name": "webapp", "image": "jweissig/app:0.0.1"}]}}}
    })
    .to_string();

    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = secretdrop::provider::vault::tls::client_config(&TlsSettings {
        ca_cert: Some(crt.clone()),
        ..Default::default()
    })
    .unwrap();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/mutate");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rates: Vec<u32> = std::env::var("RATES")
        .unwrap_or_else(|_| "500".into())
        .split(',')
        .map(|r| {
            r.trim()
                .parse()
                .expect("RATES: requests/s, comma-separated")
        })
        .collect();
    let seconds: u32 = std::env::var("RATE_SECONDS")
        .ok()
        .map_or(10, |s| s.parse().expect("RATE_SECONDS: a whole number"));
    let pid = webhook.id().to_string();
    let runs: Vec<Run> = runtime.block_on(async move {
        // Warm the connections.
        for _ in 0..CONNECTIONS {
            let _ = client
                .post(&url)
                .body(review.clone())
                .send()
                .await
                .unwrap()
                .bytes()
                .await;
        }
        let mut runs = Vec::new();
        for rate in rates {
            let total = (rate * seconds) as usize;
            let (webhook0, generator0) = (cpu_ms(&pid), cpu_ms("self"));
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let start = tokio::time::Instant::now() + Duration::from_millis(50);
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..CONNECTIONS {
                let (client, url, review, next) =
                    (client.clone(), url.clone(), review.clone(), next.clone());
                tasks.spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= total {
                            return mine;
                        }
                        let due = start + Duration::from_micros(i as u64 * 1_000_000 / rate as u64);
                        tokio::time::sleep_until(due).await;
                        let sent = tokio::time::Instant::now();
                        let resp = client.post(&url).body(review.clone()).send().await.unwrap();
                        assert!(resp.status().is_success());
                        let body = resp.bytes().await.unwrap();
                        assert!(body.len() > 100);
                        let done = tokio::time::Instant::now();
                        mine.push((done - due, done - sent));
                    }
                });
            }
            let mut all = Vec::with_capacity(total);
            while let Some(r) = tasks.join_next().await {
                all.extend(r.unwrap());
            }
            runs.push(Run {
                rate,
                latencies: all,
                webhook_cpu_ms: cpu_ms(&pid) - webhook0,
                generator_cpu_ms: cpu_ms("self") - generator0,
            });
            // Let the kernel's and the webhook's queues drain between rates.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        runs
    });
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", webhook.id())).unwrap_or_default();
    let rss = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    let (rss_now, rss_peak) = (rss("VmRSS:"), rss("VmHWM:"));
    let _ = webhook.kill();
    let _ = webhook.wait();

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(root.join("target/bench")).unwrap();
    println!(
        "secretdrop webhook ({}) over TLS on loopback, {seconds} s a rate, {CONNECTIONS} keep-alive connections; load generator: this process, one thread, same cores",
        bin().display()
    );
    let mut reports = Vec::new();
    let mut capacity = None;
    for run in &runs {
        let sorted = |f: fn(&(Duration, Duration)) -> Duration| {
            let mut v: Vec<f64> = run
                .latencies
                .iter()
                .map(|l| f(l).as_secs_f64() * 1000.0)
                .collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v
        };
        let (scheduled, ms) = (sorted(|l| l.0), sorted(|l| l.1));
        let pct = |v: &[f64], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
        let n = ms.len() as f64;
        let webhook_us = run.webhook_cpu_ms * 1000.0 / n;
        let generator_us = run.generator_cpu_ms * 1000.0 / n;
        println!(
            "{:>5} req/s: from send p50 {:.3} p99 {:.3} max {:.3} ms; from schedule p50 {:.3} p99 {:.3} ms; CPU per request: webhook {webhook_us:.0} us, generator {generator_us:.0} us",
            run.rate,
            pct(&ms, 0.5),
            pct(&ms, 0.99),
            ms[ms.len() - 1],
            pct(&scheduled, 0.5),
            pct(&scheduled, 0.99),
        );
        if pct(&scheduled, 0.99) < P99_LIMIT_MS {
            capacity = capacity.max(Some(run.rate));
        }
        reports.push(serde_json::json!({"rate": run.rate, "seconds": seconds, "requests": ms.len(),
            "p50_ms": pct(&ms, 0.5), "p90_ms": pct(&ms, 0.9), "p99_ms": pct(&ms, 0.99), "max_ms": ms[ms.len() - 1],
            "scheduled_p50_ms": pct(&scheduled, 0.5), "scheduled_p99_ms": pct(&scheduled, 0.99),
            "webhook_cpu_us_per_request": webhook_us, "generator_cpu_us_per_request": generator_us}));
    }
    if runs.len() > 1 {
        match capacity {
            Some(c) => println!("capacity: {c} req/s with p99 from schedule < {P99_LIMIT_MS} ms (highest of the rates tried)"),
            None => println!("capacity: no rate tried had p99 from schedule < {P99_LIMIT_MS} ms"),
        }
    }
    println!(
        "webhook RSS {rss_now:.1} MiB (VmRSS; VmHWM {rss_peak:.1} MiB, /proc/PID/status)   target: RSS <= 10 MiB"
    );
    let report = serde_json::json!({"binary": bin(), "connections": CONNECTIONS, "runs": reports,
        "capacity_p99_under_10ms": capacity,
        "rss_mib": rss_now, "peak_rss_mib": rss_peak, "rss_method": "VmRSS and VmHWM of the webhook from /proc/PID/status"});
    std::fs::write(
        root.join("target/bench/webhook.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
}
