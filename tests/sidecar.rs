//! `secretdrop sidecar` against a real OpenBao: KV changes arrive within a poll interval and
//! unchanged polls write nothing; readers never see a mixed pair or a missing file; the token is
//! renewed and replaced without a gap; certificates are re-issued before they expire; the app
//! is notified by signal and HTTP (a notify URL's redirect is not followed); config changes
//! are picked up (ConfigMap-style swap, edits, SIGHUP) and a bad one is refused; SIGTERM exits
//! 0 within a second; --revoke-on-exit revokes.

mod common;

use common::Server;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cli::{current_version, read};
use common::hostile::{json_reply, redirect, Act, Proxy};
use common::resident::Resident;
use common::scenario::Pod;
use common::{unique, Bao};

/// A pod reading `secret/data/<path>` through a native config with the given objects.
struct Setup {
    bao: &'static Bao,
    pod: Pod,
    path: String,
}

impl Setup {
    fn new(initial: &[&str]) -> Setup {
        let bao = Bao::shared();
        let path = unique("sc");
        let mut args = vec!["kv", "put"];
        let full = format!("secret/{path}");
        args.push(&full);
        args.extend_from_slice(initial);
        bao.cli(&args);
        let pod = Pod::reading(bao, &path);
        Setup { bao, pod, path }
    }

    fn put(&self, kvs: &[&str]) {
        let full = format!("secret/{}", self.path);
        let mut args = vec!["kv", "put", full.as_str()];
        args.extend_from_slice(kvs);
        self.bao.cli(&args);
    }

    /// A native config with `username` and `password` files from the secret, plus `rest`.
    fn config(&self, rest: &str) -> String {
        self.pod.native(
            self.bao,
            &format!(
                "files:\n  mode: \"0644\"\nobjects:\n  - {{objectName: username, secretPath: secret/data/{p}, secretKey: username}}\n  - {{objectName: password, secretPath: secret/data/{p}, secretKey: password}}\n{rest}",
                p = self.path
            ),
        )
    }

    fn start(&self, config: &str, extra: &[&str]) -> Resident {
        self.pod.sidecar(config, extra)
    }

    fn start_file(&self, cfg: &Path, extra: &[&str]) -> Resident {
        self.pod.sidecar_file(cfg, extra)
    }
}

#[test]
fn kv_changes_arrive_within_a_poll_and_unchanged_polls_write_nothing() {
    let s = Setup::new(&["username=first", "password=one"]);
    let r = s.start(&s.config(""), &["--poll-interval", "1s"]);
    let out = s.pod.out();
    let v1 = current_version(&out);
    assert_eq!(read(out.join("password")), "one");

    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        current_version(&out),
        v1,
        "an unchanged secret must not be rewritten"
    );
    // The polls happened, and an answer equal to the one held cost no render at all.
    assert!(
        r.metric("secretdrop_reads_unchanged_total").unwrap_or(0.0) >= 2.0,
        "{}",
        r.get("/metrics").1
    );
    assert_eq!(
        r.metric("secretdrop_renders_total{result=\"unchanged\"}"),
        Some(0.0)
    );

    s.put(&["username=second", "password=two"]);
    let changed = Instant::now();
    assert!(
        r.eventually(Duration::from_millis(2000), || read(out.join("password"))
            == "two"),
        "the change did not arrive:\n{}",
        r.log_text()
    );
    // One poll interval (1s ±10%) plus the read and the commit.
    assert!(
        changed.elapsed() < Duration::from_millis(1800),
        "{:?}",
        changed.elapsed()
    );
    assert_eq!(read(out.join("username")), "second");
    assert_ne!(current_version(&out), v1);
    assert_eq!(
        r.metric("secretdrop_renders_total{result=\"written\"}"),
        Some(2.0)
    );
    assert_eq!(r.get("/readyz").0, 200);
    assert_eq!(r.get("/healthz").0, 200);
    assert!(
        !r.log_text().contains("two"),
        "a secret value reached the log"
    );
}

/// Reads `username` and `password` as one version: `..data` is read before and after, and a
/// read that straddles a swap is retried (the protocol for any AtomicWriter volume).
fn read_pair(dir: &Path) -> Result<Option<(String, String)>, String> {
    let before = std::fs::read_link(dir.join("..data")).map_err(|e| format!("..data: {e}"))?;
    let u = std::fs::read_to_string(dir.join("username")).map_err(|e| format!("username: {e}"))?;
    let p = std::fs::read_to_string(dir.join("password")).map_err(|e| format!("password: {e}"))?;
    let after = std::fs::read_link(dir.join("..data")).map_err(|e| format!("..data: {e}"))?;
    Ok((before == after).then_some((u, p)))
}

#[test]
fn a_reader_never_sees_a_mixed_pair_or_a_missing_file() {
    let s = Setup::new(&["username=user-0", "password=pass-0"]);
    let r = s.start(&s.config(""), &["--poll-interval", "1s"]);
    let out = s.pod.out();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (out, stop) = (out.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut reads, mut retries, mut versions) =
                (0usize, 0usize, std::collections::BTreeSet::new());
            let mut problems = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match read_pair(&out) {
                    Ok(Some((u, p))) => {
                        reads += 1;
                        let (nu, np) =
                            (u.trim_start_matches("user-"), p.trim_start_matches("pass-"));
                        if nu != np {
                            problems.push(format!("mixed pair {u} / {p}"));
                        }
                        versions.insert(nu.to_string());
                    }
                    Ok(None) => retries += 1,
                    Err(e) => problems.push(e),
                }
            }
            (reads, retries, versions.len(), problems)
        })
    };
    for n in 1..=8 {
        s.put(&[&format!("username=user-{n}"), &format!("password=pass-{n}")]);
        std::thread::sleep(Duration::from_millis(1100));
    }
    stop.store(true, Ordering::Relaxed);
    let (reads, retries, versions, problems) = reader.join().unwrap();
    assert!(
        problems.is_empty(),
        "{} problems, first: {:?}",
        problems.len(),
        problems.first()
    );
    assert!(reads > 1000, "only {reads} reads");
    assert!(
        versions >= 6,
        "saw only {versions} versions ({retries} retried reads):\n{}",
        r.log_text()
    );
}

#[test]
fn sigterm_and_sigint_exit_0_within_a_second_and_files_stay() {
    let s = Setup::new(&["username=u", "password=p"]);
    for _ in 0..2 {
        let mut r = s.start(&s.config(""), &[]);
        let (code, took) = r.stop();
        assert_eq!(code, Some(0), "{}", r.log_text());
        assert!(took < Duration::from_secs(1), "took {took:?}");
        assert_eq!(read(s.pod.out().join("password")), "p");
    }
    let r = s.start(&s.config(""), &[]);
    r.signal(libc::SIGINT);
    assert!(r.eventually(Duration::from_secs(1), || r.log_text().contains("SIGINT")));
    drop(r);
}

/// A copy of `sh` under a unique name that appends a line to `log` for each signal it gets.
fn start_app(dir: &Path, name: &str, log: &Path) -> std::process::Child {
    let exe = dir.join(name);
    std::fs::copy("/bin/sh", &exe).unwrap();
    let script = format!(
        "trap 'echo HUP >> {0}' HUP; trap 'echo USR1 >> {0}' USR1; echo $$ > {1}; while :; do sleep 0.05; done",
        log.display(),
        dir.join(format!("{name}.pid")).display()
    );
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("-c").arg(script);
    common::process::default_signals(&mut cmd);
    let child = cmd.spawn().unwrap();
    let pid_file = dir.join(format!("{name}.pid"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pid_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn app_said(log: &Path, what: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.contains(what))
}

#[test]
fn the_app_is_notified_by_signal_and_http_after_a_new_version_only() {
    let s = Setup::new(&["username=u", "password=before"]);
    let app_log = s.pod.dir.join("app.log");
    let name = format!("sdapp{}", std::process::id() % 100000);
    let mut app = start_app(s.pod.dir.path(), &name, &app_log);
    let (port, bodies) = common::start_hook();
    let notify = format!(
        "sidecar:\n  notify:\n    signal: SIGUSR1\n    process: {name}\n    url: http://127.0.0.1:{port}/reload\n"
    );
    let r = s.start(&s.config(&notify), &["--poll-interval", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !app_log.exists(),
        "the first render is not a change to announce"
    );

    s.put(&["username=u", "password=after"]);
    assert!(
        r.eventually(Duration::from_secs(4), || app_said(&app_log, "USR1")
            && !bodies.lock().unwrap().is_empty()),
        "not notified:\n{}",
        r.log_text()
    );
    let version = current_version(&s.pod.out());
    assert_eq!(
        bodies.lock().unwrap()[0],
        format!("{{\"version\":\"{version}\"}}")
    );
    drop(r);

    // The flags override the file: SIGHUP to the pid in a pid file.
    let pid_file = s.pod.dir.join(format!("{name}.pid"));
    let r = s.start(
        &s.config(&notify),
        &[
            "--poll-interval",
            "1s",
            "--notify-signal",
            "HUP",
            "--notify-pidfile",
            pid_file.to_str().unwrap(),
        ],
    );
    s.put(&["username=u", "password=again"]);
    assert!(
        r.eventually(Duration::from_secs(4), || app_said(&app_log, "HUP")),
        "no SIGHUP:\n{}",
        r.log_text()
    );
    let _ = app.kill();
    let _ = app.wait();
}

/// A notify URL on loopback that answers 307 to another address: the sidecar does not follow
/// it (the bystander on 127.0.0.2 receives nothing), logs the failure with the status and where
/// it pointed, and counts it. Before: the POST was re-sent to the bystander and counted as a
/// success.
#[test]
fn a_notify_url_redirecting_elsewhere_is_not_followed_and_counts_as_failed() {
    let s = Setup::new(&["username=u", "password=before"]);
    let bystander = Proxy::start("127.0.0.2", None, |_| {
        Act::Reply(json_reply(200, &serde_json::json!({})))
    });
    let elsewhere = format!("{}/steal", bystander.addr());
    let location = elsewhere.clone();
    let app = Proxy::start("127.0.0.1", None, move |_| {
        Act::Reply(redirect(307, &location))
    });
    let notify = format!("sidecar:\n  notify:\n    url: {}/reload\n", app.addr());
    let r = s.start(&s.config(&notify), &["--poll-interval", "1s"]);
    s.put(&["username=u", "password=after"]);
    let told = || {
        let log = r.log_text();
        log.contains("could not notify the app") || log.contains("notified the app")
    };
    assert!(
        r.eventually(Duration::from_secs(5), told),
        "no notification:\n{}",
        r.log_text()
    );
    assert!(
        bystander.seen().is_empty(),
        "the redirect was followed: {:?}\n{}",
        bystander.seen(),
        r.log_text()
    );
    let seen = app.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/reload")
    );
    let log = r.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("could not notify the app"))
        .unwrap_or_default();
    eprintln!("{line}");
    assert!(
        line.contains("307") && line.contains(&elsewhere) && line.contains("not followed"),
        "{line}"
    );
    assert_eq!(
        r.metric("secretdrop_notifications_failed_total"),
        Some(1.0),
        "{log}"
    );
}

/// Lays out `dir` the way kubelet projects a ConfigMap: `config.yaml -> ..data/config.yaml`.
fn project_config(dir: &Path, generation: u32, text: &str) -> PathBuf {
    common::kubelet::project_file(dir, generation, "config.yaml", text)
}

#[test]
fn config_changes_are_applied_and_a_bad_config_is_refused() {
    let s = Setup::new(&["username=u", "password=p", "extra=e"]);
    let cm = s.pod.dir.join("configmap");
    std::fs::create_dir_all(&cm).unwrap();
    let cfg = project_config(&cm, 1, &s.config(""));
    let r = s.start_file(&cfg, &[]);
    let out = s.pod.out();
    assert!(!out.join("extra").exists());

    // A ConfigMap update: the new object appears without a restart.
    let with_extra = s.config(&format!(
        "  - {{objectName: extra, secretPath: secret/data/{}, secretKey: extra}}\n",
        s.path
    ));
    project_config(&cm, 2, &with_extra);
    assert!(
        r.eventually(Duration::from_secs(5), || out.join("extra").exists()),
        "reload did not happen:\n{}",
        r.log_text()
    );
    assert_eq!(read(out.join("extra")), "e");

    // A broken config is reported and the running one keeps going.
    let version = current_version(&out);
    project_config(
        &cm,
        3,
        "apiVersion: secretdrop.dev/v1alpha1\nkind: Config\nbogus: true\n",
    );
    assert!(r.eventually(Duration::from_secs(5), || r
        .log_text()
        .contains("the new config is invalid")));
    assert!(
        r.log_text().contains("unknown field `bogus`"),
        "{}",
        r.log_text()
    );
    assert_eq!(current_version(&out), version);
    assert_eq!(r.get("/readyz").0, 200);
    assert!(
        r.metric("secretdrop_failures_total{cause=\"config\"}")
            .unwrap_or(0.0)
            >= 1.0
    );

    // SIGHUP reloads too: back to two objects, `extra` disappears.
    project_config(&cm, 4, &s.config(""));
    r.signal(libc::SIGHUP);
    assert!(
        r.eventually(Duration::from_secs(5), || !out.join("extra").exists()),
        "{}",
        r.log_text()
    );
    assert_eq!(read(out.join("password")), "p");
}

#[test]
fn a_short_lived_token_is_renewed_then_replaced_without_a_gap() {
    let bao = Bao::shared();
    let path = unique("tok");
    bao.cli(&[
        "kv",
        "put",
        &format!("secret/{path}"),
        "username=u",
        "password=p",
    ]);
    let pod = Pod::reading(bao, &path);
    // The role hands out tokens of 6s, renewable up to 13s: short enough to renew and replace
    // several times in one test, long enough that a renewal delayed by a loaded machine (a
    // second or two) still reaches Vault before the token expires.
    bao.cli(&[
        "write",
        &format!("auth/kubernetes/role/{}", pod.role),
        "token_ttl=6s",
        "token_max_ttl=13s",
    ]);
    let s = Setup { bao, pod, path };
    let r = s.start(&s.config(""), &["--poll-interval", "1s"]);
    let out = s.pod.out();
    let started = Instant::now();
    let mut gaps = 0;
    while started.elapsed() < Duration::from_secs(28) {
        if std::fs::read_to_string(out.join("password"))
            .ok()
            .as_deref()
            != Some("p")
        {
            gaps += 1;
        }
        if r.get("/readyz").0 != 200 {
            gaps += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(gaps, 0, "{}", r.log_text());
    let logins = r.metric("secretdrop_logins_total").unwrap();
    let renewals = r.metric("secretdrop_token_renewals_total").unwrap();
    assert!(
        logins >= 2.0,
        "{logins} logins in 28s with a 13s max TTL:\n{}",
        r.log_text()
    );
    assert!(renewals >= 2.0, "{renewals} renewals:\n{}", r.log_text());
    // About one login per max TTL, not one per request.
    assert!(logins <= 4.0, "{logins} logins:\n{}", r.log_text());
    assert_eq!(
        r.metric("secretdrop_failures_total{cause=\"denied\"}"),
        None,
        "{}",
        r.log_text()
    );
}

#[test]
fn certificates_are_reissued_before_they_expire() {
    let bao = Bao::shared();
    let pki = unique("pki");
    bao.cli(&["secrets", "enable", &format!("-path={pki}"), "pki"]);
    bao.cli(&[
        "write",
        &format!("{pki}/root/generate/internal"),
        "common_name=example.com",
        "ttl=1h",
    ]);
    bao.cli(&[
        "write",
        &format!("{pki}/roles/web"),
        "allowed_domains=example.com",
        "allow_subdomains=true",
        "ttl=6s",
        "max_ttl=6s",
    ]);
    let pod = Pod::with_policy(
        bao,
        &format!("path \"{pki}/issue/web\" {{ capabilities = [\"update\"] }}\n"),
    );
    let rest = format!(
        "objects:\n  - {{objectName: tls.crt, secretPath: {pki}/issue/web, method: POST, secretArgs: {{common_name: a.example.com}}, secretKey: certificate, filePermission: \"0644\"}}\n  - {{objectName: tls.key, secretPath: {pki}/issue/web, method: POST, secretArgs: {{common_name: a.example.com}}, secretKey: private_key}}\n"
    );
    let r = pod.sidecar(&pod.native(bao, &rest), &["--poll-interval", "1h"]);
    let first = read(pod.out().join("tls.crt"));
    let issued = Instant::now();
    assert!(
        r.eventually(Duration::from_secs(6), || read(pod.out().join("tls.crt"))
            != first),
        "not re-issued:\n{}",
        r.log_text()
    );
    // At about two thirds of 6s, well before expiry.
    let took = issued.elapsed();
    assert!(
        took > Duration::from_secs(3) && took < Duration::from_millis(5500),
        "{took:?}"
    );
}

#[test]
fn revoke_on_exit_revokes_the_token() {
    let bao = Bao::start_new();
    bao.cli(&["kv", "put", "secret/app", "username=u", "password=p"]);
    let pod = Pod::with_policy(
        &bao,
        "path \"secret/data/app\" { capabilities = [\"read\"] }\n",
    );
    let accessors = || {
        bao.cli(&["list", "-format=json", "auth/token/accessors"])
            .matches('"')
            .count()
            / 2
    };
    let before = accessors();
    let rest =
        "objects:\n  - {objectName: password, secretPath: secret/data/app, secretKey: password}\n";
    let mut r = pod.sidecar(&pod.native(&bao, rest), &["--revoke-on-exit"]);
    assert_eq!(accessors(), before + 1, "one login");
    let (code, took) = r.stop();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(
        accessors(),
        before,
        "the token was revoked:\n{}",
        r.log_text()
    );
    assert_eq!(read(pod.out().join("password")), "p", "files stay");
}

#[test]
fn probe_fails_until_a_render_exists() {
    let dir = common::TestDir::new();
    let out = common::cli::secretdrop(
        &["probe", "--dir", dir.join("nothing").to_str().unwrap()],
        &[],
    );
    out.expect_code(1).expect_stderr(&["no complete render"]);
}

#[test]
fn a_full_volume_keeps_the_previous_version_and_recovers() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "mounting a small tmpfs needs root (CI runs as root)"
    );
    let s = Setup::new(&["username=u", "password=small"]);
    let out = s.pod.out();
    std::fs::create_dir_all(&out).unwrap();
    // An emptyDir with `sizeLimit`: a 64 KiB tmpfs.
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(out.clone());
    let r = s.start(&s.config(""), &["--poll-interval", "1s"]);
    let before = common::cli::tree(&out);

    let big = "x".repeat(80 * 1024);
    s.put(&["username=u", &format!("password={big}")]);
    assert!(
        r.eventually(Duration::from_secs(5), || r
            .metric("secretdrop_failures_total{cause=\"volume\"}")
            .is_some()),
        "{}",
        r.log_text()
    );
    assert_eq!(
        common::cli::tree(&out),
        before,
        "the previous version is intact, nothing half-written"
    );
    assert!(
        r.log_text().contains("No space left on device"),
        "{}",
        r.log_text()
    );
    assert!(
        !r.log_text().contains(&big[..64]),
        "a secret value reached the log"
    );

    s.put(&["username=u", "password=fits"]);
    assert!(
        r.eventually(Duration::from_secs(8), || read(out.join("password"))
            == "fits"),
        "did not recover:\n{}",
        r.log_text()
    );
}
