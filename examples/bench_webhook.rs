//! Benchmark (not a test): `secretdrop webhook` admission latency at a fixed 500 requests/s over
//! TLS on loopback, and its RSS.
//!
//! Requests are scheduled every 2 ms whatever the answers do, and latency is measured from the
//! scheduled time (no coordinated omission). The review is the blog post's pod, opted in, so
//! every request runs the full validation, mutation and patch. Writes target/bench/webhook.json.
//! Run with scripts/bench-webhook.sh (it builds the static release binary this measures).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::cli::bin;
use common::{free_port, TestDir};
use secretdrop::config::TlsSettings;

const RATE: u32 = 500;
const SECONDS: u32 = 10;
const CONNECTIONS: usize = 16;

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
    let tls = secretdrop::vault::tls::client_config(&TlsSettings {
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
    let total = (RATE * SECONDS) as usize;
    let latencies = runtime.block_on(async move {
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
                    let due = start + Duration::from_micros(i as u64 * 1_000_000 / RATE as u64);
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
        all
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

    // From the scheduled time (includes the load generator's own timer lag) and from the send.
    let sorted = |f: fn(&(Duration, Duration)) -> Duration| {
        let mut v: Vec<f64> = latencies
            .iter()
            .map(|l| f(l).as_secs_f64() * 1000.0)
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    };
    let scheduled = sorted(|l| l.0);
    let ms = sorted(|l| l.1);
    let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    let spct = |p: f64| scheduled[((scheduled.len() as f64 * p) as usize).min(scheduled.len() - 1)];
    println!("secretdrop webhook over TLS on loopback, {RATE} requests/s for {SECONDS} s ({} requests, {CONNECTIONS} keep-alive connections)", ms.len());
    println!(
        "latency from send      p50 {:.3} ms   p90 {:.3} ms   p99 {:.3} ms   max {:.3} ms",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        ms[ms.len() - 1]
    );
    println!(
        "latency from schedule  p50 {:.3} ms   p90 {:.3} ms   p99 {:.3} ms   (adds the load generator's timer lag)",
        spct(0.5),
        spct(0.9),
        spct(0.99)
    );
    println!(
        "webhook RSS {rss_now:.1} MiB (peak {rss_peak:.1} MiB)   target: p99 < 2 ms, RSS <= 10 MiB"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(root.join("target/bench")).unwrap();
    let report = serde_json::json!({"rate": RATE, "seconds": SECONDS, "requests": ms.len(),
        "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99), "max_ms": ms[ms.len() - 1],
        "scheduled_p50_ms": spct(0.5), "scheduled_p99_ms": spct(0.99),
        "rss_mib": rss_now, "peak_rss_mib": rss_peak});
    std::fs::write(
        root.join("target/bench/webhook.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
}
