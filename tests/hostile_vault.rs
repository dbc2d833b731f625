//! Hostile answers from "Vault", and hostile config: each test performs the attack for real
//! against a tampering proxy in front of the real OpenBao (common::hostile) and proves what
//! secretdrop does not do: send the token or JWT to another origin, hold a huge answer in
//! memory, crash on an absurd lease, leave the mount through an encoded `..`, keep the JWT in
//! memory after login, or follow an edited annotation to an address nobody admitted.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cli::{bin, read, write};
use common::hostile::{json_reply, redirect, sample_peak_rss_kib, Act, Proxy};
use common::resident::Resident;
use common::scenario::{spc_text, Pod};
use common::{free_port, unique, Bao, Server};

/// A pod allowed to read one fresh KV secret `secret/<name>` holding `password=<value>`.
fn pod_with_secret(bao: &Bao, value: &str) -> (Pod, String) {
    let name = unique("hostile");
    bao.cli(&[
        "kv",
        "put",
        &format!("secret/{name}"),
        &format!("password={value}"),
    ]);
    let pod = Pod::reading(bao, &name);
    (pod, name)
}

fn objects(path: &str) -> String {
    format!("- {{objectName: password, secretPath: \"{path}\", secretKey: password}}")
}

fn no_files(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

/// A proxy in front of OpenBao that answers every secret read with `answer(path)` and forwards
/// everything else (the login included).
fn answering_reads(bao: &Bao, answer: impl Fn(&str) -> Act + Send + Sync + 'static) -> Proxy {
    Proxy::start("127.0.0.1", Some(bao.port()), move |req| {
        if req.path.starts_with("/v1/secret/") {
            answer(&req.path)
        } else {
            Act::Forward
        }
    })
}

/// `init` of `pod` reading `secret/data/<name>` through `mitm`, giving up after `timeout`.
fn init_through(pod: &Pod, mitm: &Proxy, name: &str, timeout: &str) -> common::cli::Run {
    pod.init(
        &spc_text(
            &mitm.addr(),
            &pod.role,
            &objects(&format!("secret/data/{name}")),
        ),
        &["--timeout", timeout],
    )
}

#[test]
fn a_read_redirected_to_another_origin_never_carries_the_token() {
    let bao = Bao::shared();
    let (pod, name) = pod_with_secret(bao, "real-secret");
    let bystander = Proxy::bystander();
    let elsewhere = bystander.addr();
    let mitm = answering_reads(bao, move |path| {
        Act::Reply(redirect(307, &format!("{elsewhere}{path}")))
    });
    let run = init_through(&pod, &mitm, &name, "3s");
    // Same scheme, another host: what a standby answers during an election, so it is retried
    // (an outage) until it persists or the deadline comes; never followed.
    run.expect_code(1)
        .expect_stderr(&[
            &mitm.addr(),
            &bystander.addr(),
            "not followed",
            "gave up after",
        ])
        .expect_no_leak(&[&pod.token]);
    assert!(
        bystander.seen().is_empty(),
        "the other origin was contacted: {:?}",
        bystander
            .seen()
            .iter()
            .map(|s| s.text())
            .collect::<Vec<_>>()
    );
    assert!(no_files(&pod.out()), "nothing rendered from a redirect");
    // The login went through the proxy and worked: the redirect was the only refusal, asked
    // again and again.
    let seen = mitm.seen();
    assert!(seen.iter().any(|s| s.path.contains("/login")));
    let reads = seen
        .iter()
        .filter(|s| s.path.starts_with("/v1/secret/"))
        .count();
    assert!(reads >= 3, "{reads} attempts: the redirect was not retried");
}

#[test]
fn a_login_over_https_redirected_to_http_never_carries_the_jwt() {
    let bao = Bao::shared();
    let (pod, name) = pod_with_secret(bao, "unused");
    let (cert, key) = common::pki::self_signed(pod.dir.path(), "mitm");
    let bystander = Proxy::bystander();
    let elsewhere = bystander.addr();
    let mitm = Proxy::start_tls("127.0.0.1", &cert, &key, move |req| {
        Act::Reply(redirect(307, &format!("{elsewhere}{}", req.path)))
    });
    let spc = spc_text(
        &mitm.addr(),
        &pod.role,
        &objects(&format!("secret/data/{name}")),
    )
    .replace(
        "    objects: |",
        &format!("    vaultCACertPath: {}\n    objects: |", cert.display()),
    );
    let run = pod.init(&spc, &["--timeout", "10s"]);
    run.expect_code(1)
        .expect_stderr(&["https://127.0.0.1", "http://127.0.0.2", "login"])
        .expect_no_leak(&[&pod.token]);
    assert_eq!(mitm.seen().len(), 1, "one login attempt, over TLS");
    assert!(
        bystander.seen().is_empty(),
        "the JWT went to the plain-http origin: {:?}",
        bystander
            .seen()
            .iter()
            .map(|s| s.text())
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_same_origin_redirect_is_followed_once_and_a_chain_is_refused() {
    let bao = Bao::shared();
    let (pod, name) = pod_with_secret(bao, "moved-secret");
    let real = format!("/v1/secret/data/{name}");
    let real_for_rule = real.clone();
    let mitm = Proxy::start("127.0.0.1", Some(bao.port()), move |req| {
        match req.path.as_str() {
            "/v1/secret/data/moved" => Act::Reply(redirect(307, &real_for_rule)),
            "/v1/secret/data/hop1" => Act::Reply(redirect(307, "/v1/secret/data/hop2")),
            "/v1/secret/data/hop2" => Act::Reply(redirect(307, &real_for_rule)),
            _ => Act::Forward,
        }
    });
    pod.init(
        &spc_text(&mitm.addr(), &pod.role, &objects("secret/data/moved")),
        &[],
    )
    .expect_code(0);
    assert_eq!(read(pod.out().join("password")), "moved-secret");
    let followed = mitm.seen().iter().filter(|s| s.path == real).count();
    assert_eq!(followed, 1, "the same-origin redirect was followed once");

    let other = pod.dir.join("chain");
    let cfg = write(
        pod.dir.path(),
        "chain.yaml",
        &spc_text(&mitm.addr(), &pod.role, &objects("secret/data/hop1")),
    );
    pod.init_file(&cfg, &other, &["--timeout", "5s"])
        .expect_code(1)
        .expect_stderr(&["/v1/secret/data/hop2", "redirected"]);
    assert!(no_files(&other));
}

/// Runs init with a peak-RSS sampler; (exit code, stderr, peak VmHWM in KiB).
fn init_sampled(pod: &Pod, config: &str, extra: &[&str]) -> (i32, String, Option<u64>) {
    let cfg = write(pod.dir.path(), &format!("{}.yaml", unique("cfg")), config);
    let child = Command::new(bin())
        .args(common::cli::init_args(
            &cfg,
            &pod.out(),
            Some(&pod.token_path),
        ))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start init");
    let sampler = sample_peak_rss_kib(child.id());
    let out = child.wait_with_output().expect("init output");
    let peak = sampler.join().expect("sampler");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        peak,
    )
}

#[test]
fn a_huge_answer_is_refused_without_holding_it() {
    let bao = Bao::shared();
    let (pod, name) = pod_with_secret(bao, "unused");
    let mitm = Proxy::start("127.0.0.1", Some(bao.port()), move |req| {
        match req.path.as_str() {
            p if p.ends_with("/streamed") => Act::Flood {
                total: 256 << 20,
                announce: false,
            },
            p if p.ends_with("/announced") => Act::Flood {
                total: 256 << 20,
                announce: true,
            },
            p if p.ends_with("/two-mib") => Act::Flood {
                total: 2 << 20,
                announce: false,
            },
            _ => Act::Forward,
        }
    });
    let _ = name;
    let config = |path: &str| spc_text(&mitm.addr(), &pod.role, &objects(path));

    // 256 MiB without a Content-Length: read in chunks and dropped at the limit.
    let (code, stderr, peak) = init_sampled(&pod, &config("secret/data/streamed"), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("larger than 1048576 bytes"), "{stderr}");
    let peak = peak.expect("the sampler saw init while it read");
    eprintln!("peak RSS of init refusing a 256 MiB answer: {peak} KiB");
    assert!(
        peak < 32 * 1024,
        "peak RSS {peak} KiB: the injected container's limit is 32Mi"
    );
    assert!(no_files(&pod.out()));

    // 256 MiB announced: refused before reading the body.
    let started = Instant::now();
    let (code, stderr, _) = init_sampled(&pod, &config("secret/data/announced"), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("larger than 1048576 bytes"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The limit is the operator's to raise.
    let (code, stderr, _) = init_sampled(
        &pod,
        &config("secret/data/two-mib"),
        &["--max-response-size", "4Mi"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::metadata(pod.out().join("password")).unwrap().len(),
        2 << 20
    );
    let (code, stderr, _) = init_sampled(
        &pod,
        &config("secret/data/two-mib"),
        &["--max-response-size", "lots"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--max-response-size"), "{stderr}");
}

fn absurd_auth_lease(v: &mut serde_json::Value) {
    v["auth"]["lease_duration"] = serde_json::json!(u64::MAX);
}

fn absurd_secret_lease(v: &mut serde_json::Value) {
    v["lease_id"] = serde_json::json!("secret/fake/lease-1");
    v["lease_duration"] = serde_json::json!(u64::MAX);
    v["renewable"] = serde_json::json!(true);
}

#[test]
fn absurd_lease_durations_do_not_crash_the_sidecar() {
    let bao = Bao::shared();
    let (pod, name) = pod_with_secret(bao, "long-lived");
    let mitm = Proxy::start("127.0.0.1", Some(bao.port()), move |req| {
        if req.path.ends_with("/login") {
            Act::Rewrite(absurd_auth_lease)
        } else if req.path.starts_with("/v1/secret/") {
            Act::Rewrite(absurd_secret_lease)
        } else {
            Act::Forward
        }
    });
    let mut sidecar = pod.sidecar(
        &spc_text(
            &mitm.addr(),
            &pod.role,
            &objects(&format!("secret/data/{name}")),
        ),
        &[],
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(read(pod.out().join("password")), "long-lived");
    assert_eq!(sidecar.get("/readyz").0, 200, "{}", sidecar.log_text());
    let year = 366.0 * 24.0 * 3600.0;
    let token = sidecar
        .metric("secretdrop_token_expiry_seconds")
        .expect("token expiry gauge");
    assert!(
        token > year - 60.0 && token <= year,
        "clamped to a year: {token}"
    );
    let (code, _) = sidecar.stop();
    assert_eq!(code, Some(0), "{}", sidecar.log_text());
}

#[test]
fn an_encoded_dot_dot_path_never_leaves_the_mount() {
    let bao = Bao::shared();
    let (pod, _) = pod_with_secret(bao, "unused");
    let mitm = Proxy::start("127.0.0.1", Some(bao.port()), |_| Act::Forward);
    for path in [
        "secret/%2e%2e/%2e%2e/sys/health",
        "secret/.%2E/.%2e/sys/health",
        "secret\\\\..\\\\..\\\\sys\\\\health",
    ] {
        pod.init(&spc_text(&mitm.addr(), &pod.role, &objects(path)), &[])
            .expect_code(2)
            .expect_stderr(&["secretPath"]);
    }
    assert!(
        mitm.seen().is_empty(),
        "refused before any request: {:?}",
        mitm.seen()
            .iter()
            .map(|s| s.path.clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn the_jwt_is_not_left_in_memory_after_login() {
    let bao = Bao::shared();
    // The secret value stays in memory by design (the sidecar compares new answers with it):
    // finding it proves the scan reads the heap, so finding no JWT means something.
    let canary = unique("memory-canary-value");
    let (pod, name) = pod_with_secret(bao, &canary);
    let sidecar = pod.sidecar(&pod.spc(bao, &objects(&format!("secret/data/{name}"))), &[]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        count_in_memory(sidecar.pid(), canary.as_bytes()) > 0,
        "the scan did not find the secret value it must find"
    );
    let signature = pod.token.rsplit('.').next().unwrap().to_string();
    assert!(signature.len() > 100);
    let copies = count_in_memory(sidecar.pid(), signature.as_bytes());
    assert_eq!(
        copies, 0,
        "the JWT's signature is still in the sidecar's memory after login"
    );
}

/// Occurrences of `needle` in the writable memory of `pid` (needs ptrace rights: root or our child).
fn count_in_memory(pid: i32, needle: &[u8]) -> usize {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open mem");
    let mut found = 0;
    for line in maps.lines() {
        let mut cols = line.split_whitespace();
        let (Some(range), Some(perms)) = (cols.next(), cols.next()) else {
            continue;
        };
        if !perms.starts_with("rw") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut buf = vec![0u8; (end - start) as usize];
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue; // guard pages and vsyscall areas cannot be read
        }
        found += buf.windows(needle.len()).filter(|w| *w == needle).count();
    }
    found
}

#[test]
fn an_edited_vault_address_annotation_is_refused_by_the_pinned_sidecar() {
    let bao = Bao::shared();
    let (pod, name) = pod_with_secret(bao, "pinned");
    let bystander = Proxy::bystander();
    let objects_annotation =
        format!("- {{objectName: password, secretPath: secret/data/{name}, secretKey: password}}");
    let annotations = |addr: &str| {
        format!(
            "secretdrop.dev/inject=\"true\"\nsecretdrop.dev/role=\"{}\"\nsecretdrop.dev/vault-address=\"{addr}\"\nsecretdrop.dev/objects={:?}\n",
            pod.role, objects_annotation
        )
    };
    let cfg_dir = pod.dir.join("podinfo");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let cfg = write(&cfg_dir, "annotations", &annotations(&bao.addr()));
    let listen = format!("127.0.0.1:{}", free_port());
    let pinned = bao.addr();
    let mut sidecar = Resident::start(
        &cfg,
        &pod.out(),
        &pod.dir.join("sidecar.log"),
        &[
            "--token-path",
            pod.token_path.to_str().unwrap(),
            "--listen",
            &listen,
            "--allowed-vault-address",
            &pinned,
        ],
    );
    sidecar.wait_ready(Duration::from_secs(20));
    assert_eq!(read(pod.out().join("password")), "pinned");

    // The pod author edits the annotation; kubelet updates the file.
    write(&cfg_dir, "annotations", &annotations(&bystander.addr()));
    assert!(
        sidecar.eventually(Duration::from_secs(10), || sidecar
            .log_text()
            .contains("is not allowed here")),
        "{}",
        sidecar.log_text()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        bystander.seen().is_empty(),
        "the JWT went to the new address"
    );
    assert_eq!(read(pod.out().join("password")), "pinned");
    assert_eq!(sidecar.get("/readyz").0, 200);

    // init refuses the same file outright, as a configuration error.
    pod.init_file(
        &cfg,
        &pod.dir.join("init-out"),
        &["--allowed-vault-address", &pinned],
    )
    .expect_code(2)
    .expect_stderr(&["not allowed", &bystander.addr()]);
    assert!(bystander.seen().is_empty());
}

#[test]
fn hostile_config_text_is_refused_quickly_and_precisely() {
    let bao = Bao::shared();
    let (pod, name) = pod_with_secret(bao, "unused");
    let good = pod.spc(bao, &objects(&format!("secret/data/{name}")));

    // A duplicated key is an error at the repeated key's line and column, not last-wins.
    let dup = good.replace("    roleName:", "    roleName: someone-else\n    roleName:");
    let lines: Vec<&str> = dup.lines().collect();
    let second = 1 + lines
        .iter()
        .rposition(|l| l.starts_with("    roleName:"))
        .unwrap();
    pod.init(&dup, &[]).expect_code(2).expect_stderr(&[
        "duplicate entry with key \"roleName\"",
        "spec.parameters",
        &format!(":{second}:5:"),
    ]);

    // Names that lie in a terminal.
    for bad in ["pass\\nword", "evil\\u202Etxt.sh", "tab\\there"] {
        let spc = pod.spc(
            bao,
            &format!(
                "- {{objectName: \"{bad}\", secretPath: secret/data/{name}, secretKey: password}}"
            ),
        );
        pod.init(&spc, &[])
            .expect_code(2)
            .expect_stderr(&["objectName", "control"]);
    }

    // 100 000 levels of flow nesting in secretArgs: refused at once, not after half a minute.
    let deep = format!(
        "- {{objectName: a, secretPath: secret/data/{name}, secretArgs: {}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let run = pod.init(&pod.spc(bao, &deep), &[]);
    run.expect_code(2)
        .expect_stderr(&["nesting deeper than 128"]);
    assert!(run.elapsed < Duration::from_secs(1), "{:?}", run.elapsed);

    // A duplicated annotation in a downward-API file.
    let file = format!(
        "secretdrop.dev/role=\"{0}\"\nsecretdrop.dev/role=\"other\"\nsecretdrop.dev/vault-address=\"{1}\"\nsecretdrop.dev/objects=\"- {{objectName: a, secretPath: secret/data/x, secretKey: k}}\"\n",
        pod.role,
        bao.addr()
    );
    let cfg = write(pod.dir.path(), "annotations", &file);
    pod.init_file(&cfg, &pod.out(), &[])
        .expect_code(2)
        .expect_stderr(&["appears twice", ":2:"]);
}

#[test]
fn a_bad_base64_value_is_reported_without_a_byte_of_it() {
    let bao = Bao::shared();
    let name = unique("b64");
    let value = "c2VjcmV0%mV0c2VjcmV0";
    bao.cli(&[
        "kv",
        "put",
        &format!("secret/{name}"),
        &format!("blob={value}"),
    ]);
    let pod = Pod::reading(bao, &name);
    let spc = pod.spc(
        bao,
        &format!("- {{objectName: blob, secretPath: secret/data/{name}, secretKey: blob, encoding: base64}}"),
    );
    let run = pod.init(&spc, &[]);
    run.expect_code(1)
        .expect_stderr(&["not valid base64"])
        .expect_no_leak(&[value, "offset", "symbol"]);
}

#[test]
fn the_hostile_proxy_itself_forwards_faithfully() {
    // Guards the guards: through the proxy with no tampering, everything works, so the
    // refusals above come from the attacks and not from a broken proxy.
    let bao = Bao::shared();
    let (pod, name) = pod_with_secret(bao, "through-the-proxy");
    let mitm = Proxy::start("127.0.0.1", Some(bao.port()), |_| Act::Forward);
    pod.init(
        &spc_text(
            &mitm.addr(),
            &pod.role,
            &objects(&format!("secret/data/{name}")),
        ),
        &[],
    )
    .expect_code(0);
    assert_eq!(read(pod.out().join("password")), "through-the-proxy");
    assert!(
        mitm.seen().len() >= 2,
        "login and read went through the proxy"
    );
    let reply = json_reply(200, &serde_json::json!({"ok": true}));
    assert!(String::from_utf8_lossy(&reply).contains("Content-Length: 11"));
}

/// Whatever answers on Vault's address writes into our log lines and the user's terminal
/// through its error text: terminal escapes, BEL, CR (a forged log line) and a megabyte of
/// text arrive escaped and capped, never verbatim.
#[test]
fn error_text_from_vault_reaches_logs_escaped_and_capped() {
    let bao = Bao::shared();
    let (pod, name) = pod_with_secret(bao, "real-secret");
    let hostile = format!(
        "\u{1b}]0;owned\u{7}\u{1b}[2J\r2026-01-01T00:00:00Z  INFO forged line\n\u{202e}{}",
        "x".repeat(50_000)
    );
    let mitm = answering_reads(bao, move |_| {
        Act::Reply(json_reply(403, &serde_json::json!({"errors": [hostile]})))
    });
    let run = init_through(&pod, &mitm, &name, "5s");
    run.expect_code(1).expect_no_leak(&[&pod.token]);
    for raw in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
        assert!(
            !run.stderr.contains(raw),
            "{raw:?} reached the terminal: {:?}",
            run.stderr
        );
    }
    assert!(
        !run.stderr.contains("\n2026-01-01T00:00:00Z"),
        "a forged line"
    );
    assert!(
        run.stderr.contains("\\u{1b}]0;owned\\u{7}"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.len() < 4_000,
        "{} bytes of error text",
        run.stderr.len()
    );
    assert!(run.stderr.contains("characters in all"), "{}", run.stderr);
}
