//! Proves tests/common/mod.rs works: real logins against the shared OpenBao dev server through
//! the TokenReview stand-in (kubernetes auth) and offline (jwt auth), plus the negative cases.
mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const NS: &str = "default";
const SA: &str = "mycsiserviceaccount";

/// Secret + read policy for it; returns the policy name.
fn seed_secret(bao: &Bao) -> String {
    bao.cli(&[
        "kv",
        "put",
        "secret/app",
        "username=admin",
        "password=p4ssw0rd",
    ]);
    let policy = unique("app-read");
    bao.cli_stdin(
        &["policy", "write", &policy, "-"],
        "path \"secret/data/app\" { capabilities = [\"read\"] }\n",
    );
    policy
}

/// Logs in and returns the client token, or the stderr of the failed login.
fn login(bao: &Bao, mount: &str, role: &str, jwt: &str) -> Result<String, String> {
    let out = bao.try_cli(&[
        "write",
        "-format=json",
        &format!("auth/{mount}/login"),
        &format!("role={role}"),
        &format!("jwt={jwt}"),
    ]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("login JSON");
    Ok(v["auth"]["client_token"]
        .as_str()
        .expect("client_token")
        .to_string())
}

fn assert_denied(result: Result<String, String>, code: &str, what: &str) {
    let err = result.expect_err(&format!("{what}: login unexpectedly succeeded"));
    eprintln!("--- {what} ---\n{}", err.trim());
    assert!(
        err.contains(&format!("Code: {code}")),
        "{what}: expected HTTP {code}, got:\n{err}"
    );
}

fn read_password(bao: &Bao, token: &str) -> String {
    bao.cli_as(token, &["kv", "get", "-field=password", "secret/app"])
}

#[test]
fn kubernetes_auth_end_to_end() {
    let bao = Bao::shared();
    let tr = TokenReviewer::shared();
    let policy = seed_secret(bao);
    let mount = unique("k8s");
    enable_kubernetes_auth(bao, &mount);
    enable_kubernetes_auth(bao, &mount); // idempotent
    let role = unique("csi");
    bao.cli(&[
        "write",
        &format!("auth/{mount}/role/{role}"),
        &format!("bound_service_account_names={SA}"),
        &format!("bound_service_account_namespaces={NS}"),
        &format!("policies={policy}"),
        "ttl=10m",
    ]);

    let before = tr.reviews();
    let token = login(bao, &mount, &role, &tr.mint(&SaClaims::new(NS, SA))).expect("valid login");
    assert_eq!(read_password(bao, &token).trim(), "p4ssw0rd");
    assert!(
        tr.reviews() > before,
        "OpenBao never consulted the TokenReview stand-in"
    );

    let before = tr.reviews();
    assert_denied(
        login(
            bao,
            &mount,
            &role,
            &tr.mint_with_foreign_key(&SaClaims::new(NS, SA)),
        ),
        "403",
        "k8s foreign key",
    );
    assert!(
        tr.reviews() > before,
        "the signature check must come from the stand-in"
    );
    // OpenBao checks exp itself before calling TokenReview ("token is expired").
    assert_denied(
        login(
            bao,
            &mount,
            &role,
            &tr.mint(&SaClaims::new(NS, SA).with_expires_in(-3600)),
        ),
        "403",
        "k8s expired",
    );
    assert_denied(
        login(bao, &mount, &role, &tr.mint(&SaClaims::new(NS, "intruder"))),
        "403",
        "k8s wrong service account",
    );
    assert_denied(
        login(
            bao,
            &mount,
            "no-such-role",
            &tr.mint(&SaClaims::new(NS, SA)),
        ),
        "400",
        "k8s unknown role",
    );

    let aud_role = unique("csi-aud");
    bao.cli(&[
        "write",
        &format!("auth/{mount}/role/{aud_role}"),
        &format!("bound_service_account_names={SA}"),
        &format!("bound_service_account_namespaces={NS}"),
        &format!("policies={policy}"),
        "audience=vault",
    ]);
    assert_denied(
        login(
            bao,
            &mount,
            &aud_role,
            &tr.mint(&SaClaims::new(NS, SA).with_audiences(&["other"])),
        ),
        "403",
        "k8s audience mismatch",
    );
    let token = login(
        bao,
        &mount,
        &aud_role,
        &tr.mint(&SaClaims::new(NS, SA).with_audiences(&["vault"])),
    )
    .expect("aud=vault login");
    assert_eq!(read_password(bao, &token).trim(), "p4ssw0rd");
}

#[test]
fn jwt_auth_end_to_end() {
    let bao = Bao::shared();
    let tr = TokenReviewer::shared();
    let policy = seed_secret(bao);
    let mount = unique("jwt");
    enable_jwt_auth(bao, &mount);
    enable_jwt_auth(bao, &mount);
    let role = unique("csi");
    bao.cli(&[
        "write",
        &format!("auth/{mount}/role/{role}"),
        "role_type=jwt",
        "bound_audiences=vault",
        "user_claim=sub",
        &format!("bound_subject=system:serviceaccount:{NS}:{SA}"),
        &format!("policies={policy}"),
        "ttl=10m",
    ]);

    let ok = SaClaims::new(NS, SA).with_audiences(&["vault"]);
    let token = login(bao, &mount, &role, &tr.mint(&ok)).expect("valid jwt login");
    assert_eq!(read_password(bao, &token).trim(), "p4ssw0rd");

    assert_denied(
        login(bao, &mount, &role, &tr.mint_with_foreign_key(&ok)),
        "400",
        "jwt foreign key",
    );
    assert_denied(
        login(
            bao,
            &mount,
            &role,
            &tr.mint(&ok.clone().with_expires_in(-3600)),
        ),
        "400",
        "jwt expired",
    );
    assert_denied(
        login(
            bao,
            &mount,
            &role,
            &tr.mint(&ok.clone().with_audiences(&["other"])),
        ),
        "400",
        "jwt audience mismatch",
    );
    assert_denied(
        login(
            bao,
            &mount,
            &role,
            &tr.mint(&SaClaims::new(NS, "intruder").with_audiences(&["vault"])),
        ),
        "400",
        "jwt wrong subject",
    );
    assert_denied(
        login(bao, &mount, "no-such-role", &tr.mint(&ok)),
        "400",
        "jwt unknown role",
    );
}

#[test]
fn token_review_stand_in_speaks_the_api() {
    let tr = TokenReviewer::shared();
    let path = "/apis/authentication.k8s.io/v1/tokenreviews";
    let body = |token: &str, aud: &str| {
        format!(
            r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{token}","audiences":[{aud}]}}}}"#
        )
    };
    let bearer = format!("Bearer {}", tr.reviewer_jwt());
    let auth = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let post = |headers: &[(&str, &str)], b: &str| {
        http("POST", tr.port(), path, headers, b).expect("POST tokenreview")
    };

    let (code, _) = post(&[], &body("x", ""));
    assert_eq!(code, 401, "missing bearer");
    let (code, _) = post(&[("Authorization", "Bearer nope")], &body("x", ""));
    assert_eq!(code, 401, "wrong bearer");
    assert_eq!(post(&auth, "{not json").0, 400);
    assert_eq!(post(&auth, "{}").0, 400);
    assert_eq!(http("GET", tr.port(), "/api", &[], "").expect("GET").0, 404);
    // Hostile bytes get a 400 (or a closed socket), never a dead server.
    for raw in [
        &b"\xff\xfe\x00garbage\r\n\r\n"[..],
        b"POST /apis/authentication.k8s.io/v1/tokenreviews HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n{",
        b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", tr.port())).unwrap();
        s.write_all(raw).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        assert!(resp.is_empty() || resp.starts_with("HTTP/1.1 400"), "{resp}");
    }

    let (code, resp) = post(
        &auth,
        &body(
            &tr.mint(&SaClaims::new(NS, SA).with_audiences(&["vault"])),
            r#""vault""#,
        ),
    );
    assert_eq!(code, 201);
    let v: Value = serde_json::from_str(&resp).expect("review JSON");
    let st = &v["status"];
    assert_eq!(st["authenticated"], true, "{resp}");
    assert_eq!(
        st["user"]["username"],
        format!("system:serviceaccount:{NS}:{SA}")
    );
    assert_eq!(
        st["user"]["groups"][1],
        format!("system:serviceaccounts:{NS}")
    );
    assert_eq!(st["audiences"][0], "vault");
    let extra = &st["user"]["extra"];
    assert_eq!(
        extra["authentication.kubernetes.io/pod-name"][0],
        format!("{SA}-7d4b9c-x2k8p")
    );
    let cred = extra["authentication.kubernetes.io/credential-id"][0]
        .as_str()
        .unwrap();
    assert!(cred.starts_with("JTI=") && !cred.contains('"'), "{cred}");

    for (token, aud, why) in [
        (
            tr.mint_with_foreign_key(&SaClaims::new(NS, SA)),
            "",
            "verification error",
        ),
        (
            tr.mint(&SaClaims::new(NS, SA).with_expires_in(-10)),
            "",
            "expired",
        ),
        (
            tr.mint(&SaClaims::new(NS, SA)),
            r#""vault""#,
            "is invalid for the target audiences",
        ),
        ("garbage".to_string(), "", "not a compact JWS"),
    ] {
        let (code, resp) = post(&auth, &body(&token, aud));
        let v: Value = serde_json::from_str(&resp).expect("review JSON");
        assert_eq!(
            (code, &v["status"]["authenticated"]),
            (201, &Value::Bool(false)),
            "{why}: {resp}"
        );
        assert!(
            v["status"]["error"]
                .as_str()
                .unwrap_or_default()
                .contains(why),
            "{why}: {resp}"
        );
    }
}

#[test]
fn private_server_and_test_dirs() {
    let bao = Bao::start_new();
    assert_ne!(bao.port(), Bao::shared().port());
    assert!(bao
        .cli(&["kv", "put", "secret/x", "k=v"])
        .contains("version"));
    let pid = bao.pid();
    drop(bao);
    assert!(!alive(pid), "dropped server still running");

    let (shm, disk) = (TestDir::new(), TestDir::on_disk());
    assert!(shm.path().starts_with("/dev/shm") && is_tmpfs(shm.path()));
    assert!(!is_tmpfs(disk.path()));
    assert!(shm
        .path()
        .to_string_lossy()
        .contains("private_server_and_test_dirs"));
    std::fs::write(shm.join("f"), "x").unwrap();
    let p = shm.path().to_path_buf();
    drop(shm);
    assert!(!p.exists());
    assert_ne!(unique("a"), unique("a"));
}

/// Child half of `server_dies_with_test_process`: runs only when re-executed by it.
#[test]
fn pdeathsig_child() {
    let Ok(pidfile) = std::env::var("HARNESS_PDEATHSIG_PIDFILE") else {
        return;
    };
    // Start the server from a short-lived thread: its exit must NOT take the server down.
    let pid = std::thread::spawn(|| Bao::shared().pid()).join().unwrap();
    std::fs::write(pidfile, pid.to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

/// Running, as opposed to gone or a zombie (a killed child of a live process lingers as one).
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    state.is_some_and(|s| s != 'Z' && s != 'X')
}

#[test]
fn server_dies_with_test_process() {
    let dir = TestDir::new();
    let pidfile = dir.join("pid");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["pdeathsig_child", "--exact", "--test-threads=1"])
        .env("HARNESS_PDEATHSIG_PIDFILE", &pidfile)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let bao_pid: u32 = loop {
        let pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse() {
            break pid;
        }
        assert!(Instant::now() < deadline, "child test never started bao");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(bao_pid), "bao died when its spawning thread exited");
    child.kill().unwrap(); // SIGKILL: no destructors, no atexit
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(bao_pid) {
        assert!(
            Instant::now() < deadline,
            "bao {bao_pid} outlived its test process"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
