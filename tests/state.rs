//! `--state-dir` against a real OpenBao and a real PostgreSQL: a restarted sidecar, or the
//! sidecar after the init container, adopts the recorded token and database lease instead of
//! logging in and minting again; a corrupt state or a revoked token means a fresh login with
//! working credentials; a replaced database user is dropped after `--revoke-replaced-after`,
//! never before; the state is refused inside `--dir` or on disk, or in a directory another uid
//! owns or can write; a state directory swapped for a link to `--dir` while the sidecar runs
//! never receives the token (the sidecar keeps the directory it opened). The last test measures
//! Vault requests and PostgreSQL users over ten forced restarts, without and with the state.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cli::{current_version, read, secretdrop, write};
use common::postgres::{MintCounter, Postgres};
use common::resident::Resident;
use common::scenario::Pod;
use common::{request_count, unique, Bao, Server, TestDir};

/// Live tokens on the server (root's included): a login adds one.
fn accessors(bao: &impl Server) -> usize {
    let out = bao.cli(&["list", "-format=json", "auth/token/accessors"]);
    serde_json::from_str::<Vec<String>>(&out)
        .expect("accessor list")
        .len()
}

fn state_dir(pod: &Pod) -> PathBuf {
    pod.dir.join("state")
}

/// The token recorded in the state file, to look for it in logs.
fn recorded_token(pod: &Pod) -> String {
    let text = read(state_dir(pod).join("state.json"));
    let v: serde_json::Value = serde_json::from_str(&text).expect("state JSON");
    v["token"]["token"].as_str().expect("token").to_string()
}

fn pair(dir: &Path) -> (String, String) {
    (read(dir.join("username")), read(dir.join("password")))
}

/// SIGKILL, as the OOM killer or a node under pressure would: nothing is cleaned up.
fn kill(r: Resident) {
    r.signal(libc::SIGKILL);
    drop(r);
}

fn sidecar(pod: &Pod, config: &Path, extra: &[&str]) -> Resident {
    let sd = state_dir(pod);
    let mut args = vec!["--state-dir", sd.to_str().unwrap(), "--log-level", "debug"];
    args.extend_from_slice(extra);
    pod.sidecar_file(config, &args)
}

#[test]
fn a_sigkilled_sidecar_adopts_its_token_lease_and_files() {
    let (bao, pg) = (Bao::start_new(), Postgres::shared());
    let db = MintCounter::new(&bao, pg, "15s", "10m");
    let pod = Pod::with_policy(&bao, &db.policy());
    let config = write(
        pod.dir.path(),
        "config.yaml",
        &pod.native(&bao, &db.objects()),
    );

    let first = sidecar(&pod, &config, &[]);
    let (user, password) = pair(&pod.out());
    let version = current_version(&pod.out());
    let tokens = accessors(&bao);
    let token = recorded_token(&pod);
    let first_log = first.log_text();
    kill(first);

    let second = sidecar(&pod, &config, &[]);
    let log = second.log_text();
    assert!(log.contains("adopted the recorded token"), "{log}");
    assert_eq!(accessors(&bao), tokens, "a new token was created:\n{log}");
    assert_eq!(
        db.minted(pg),
        1,
        "a second database user was minted:\n{log}"
    );
    assert_eq!(pair(&pod.out()), (user.clone(), password.clone()));
    assert_eq!(
        current_version(&pod.out()),
        version,
        "a new version was written"
    );
    assert_eq!(second.metric("secretdrop_logins_total"), Some(0.0));
    // The adopted lease is renewed, not re-minted, and the user keeps working.
    assert!(
        second.eventually(Duration::from_secs(20), || second
            .log_text()
            .contains("renewed lease")),
        "the adopted lease was not renewed:\n{}",
        second.log_text()
    );
    pg.try_login(&user, &password)
        .expect("the adopted user works");
    assert_eq!(db.minted(pg), 1);
    for l in [first_log, second.log_text()] {
        assert!(!l.contains(&token), "the token reached the log");
        assert!(!l.contains(&password), "a password reached the log");
    }
}

#[test]
fn init_then_sidecar_log_in_once_and_mint_once() {
    let (bao, pg) = (Bao::start_new(), Postgres::shared());
    let db = MintCounter::new(&bao, pg, "1m", "10m");
    let pod = Pod::with_policy(&bao, &db.policy());
    let config = write(
        pod.dir.path(),
        "config.yaml",
        &pod.native(&bao, &db.objects()),
    );
    let before = accessors(&bao);
    let sd = state_dir(&pod);

    let init = pod.init_file(&config, &pod.out(), &["--state-dir", sd.to_str().unwrap()]);
    init.expect_code(0);
    let version = current_version(&pod.out());
    let r = sidecar(&pod, &config, &[]);

    assert_eq!(accessors(&bao), before + 1, "one login:\n{}", r.log_text());
    assert_eq!(db.minted(pg), 1, "one database user:\n{}", r.log_text());
    assert_eq!(current_version(&pod.out()), version);
    assert_eq!(r.metric("secretdrop_logins_total"), Some(0.0));
    let (u, p) = pair(&pod.out());
    pg.try_login(&u, &p).expect("the credentials work");
    init.expect_no_leak(&[&recorded_token(&pod), &p]);

    // init again (a pod sandbox restart re-runs init containers): nothing new either.
    drop(r);
    pod.init_file(&config, &pod.out(), &["--state-dir", sd.to_str().unwrap()])
        .expect_code(0)
        .expect_stderr(&["unchanged"]);
    assert_eq!(accessors(&bao), before + 1);
    assert_eq!(db.minted(pg), 1);
}

#[test]
fn a_corrupt_state_or_a_revoked_token_means_a_fresh_login_with_working_credentials() {
    let (bao, pg) = (Bao::shared(), Postgres::shared());
    let db = MintCounter::new(bao, pg, "1m", "10m");
    let pod = Pod::with_policy(bao, &db.policy());
    let config = write(
        pod.dir.path(),
        "config.yaml",
        &pod.native(bao, &db.objects()),
    );
    let file = state_dir(&pod).join("state.json");
    kill(sidecar(&pod, &config, &[]));

    std::fs::write(
        &file,
        "{\"format\": \"secretdrop.dev/state/v1\", \"token\": ",
    )
    .unwrap();
    let r = sidecar(&pod, &config, &[]);
    let log = r.log_text();
    assert!(
        log.contains("ignoring the recorded state") && log.contains("corrupt"),
        "{log}"
    );
    assert_eq!(r.metric("secretdrop_logins_total"), Some(1.0));
    let (u, p) = pair(&pod.out());
    pg.try_login(&u, &p)
        .expect("the credentials work after a corrupt state");
    kill(r);

    let token = recorded_token(&pod);
    bao.cli(&["token", "revoke", &token]);
    let r = sidecar(&pod, &config, &[]);
    let log = r.log_text();
    assert!(log.contains("the recorded token does not work"), "{log}");
    assert_eq!(r.metric("secretdrop_logins_total"), Some(1.0));
    // The revoked token's lease died with it: the files hold new, working credentials.
    let (u2, p2) = pair(&pod.out());
    assert_ne!(u2, u);
    pg.try_login(&u2, &p2)
        .expect("the credentials work after a revoked token");
    assert!(!log.contains(&token), "the token reached the log");
    assert_ne!(recorded_token(&pod), token);
}

#[test]
fn the_replaced_user_is_dropped_after_the_grace_period_and_never_before() {
    let (bao, pg) = (Bao::shared(), Postgres::shared());
    let db = MintCounter::new(bao, pg, "1m", "1h");
    let kv = unique("state-kv");
    bao.cli(&["kv", "put", &format!("secret/{kv}"), "greeting=before"]);
    // Vault's default policy allows renewing leases, not revoking them: the sidecar ends the
    // replaced lease by renewing it to one second.
    let policy = format!(
        "{}path \"secret/data/{kv}\" {{ capabilities = [\"read\"] }}\n",
        db.policy()
    );
    let pod = Pod::with_policy(bao, &policy);
    let rest = format!(
        "{}  - {{objectName: greeting, secretPath: secret/data/{kv}, secretKey: greeting}}\n",
        db.objects()
    );
    let config = write(pod.dir.path(), "config.yaml", &pod.native(bao, &rest));
    let grace = Duration::from_secs(4);
    let flags = ["--poll-interval", "1s", "--revoke-replaced-after", "4s"];
    kill(sidecar(&pod, &config, &flags));
    let r = sidecar(&pod, &config, &flags);
    assert!(r.log_text().contains("adopted the recorded token"));
    let (old_user, old_password) = pair(&pod.out());

    // A new render needs every value and the state keeps none: the adopted database read is
    // fetched again, and its old user becomes a replaced lease.
    bao.cli(&["kv", "put", &format!("secret/{kv}"), "greeting=after"]);
    assert!(
        r.eventually(Duration::from_secs(10), || read(pod.out().join("greeting"))
            == "after"),
        "{}",
        r.log_text()
    );
    let committed = Instant::now();
    let (new_user, new_password) = pair(&pod.out());
    assert_ne!(new_user, old_user);
    pg.try_login(&new_user, &new_password)
        .expect("new user works");
    while committed.elapsed() < grace - Duration::from_millis(300) {
        pg.try_login(&old_user, &old_password).unwrap_or_else(|e| {
            panic!(
                "the replaced user failed {:?} after the commit, before the grace: {e}\n{}",
                committed.elapsed(),
                r.log_text()
            )
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    let gone = r.eventually(Duration::from_secs(10), || {
        !pg.role_names(&old_user).contains(&old_user)
    });
    assert!(
        gone,
        "the replaced user is still in PostgreSQL:\n{}",
        r.log_text()
    );
    assert!(pg.try_login(&old_user, &old_password).is_err());
    assert!(r.log_text().contains("replaced lease"), "{}", r.log_text());
    assert_eq!(
        r.metric("secretdrop_replaced_leases_revoked_total"),
        Some(1.0)
    );
    assert_eq!(db.minted(pg), 2);
}

/// A class in `dir` whose Vault never answers: for the checks made before anything is sent.
fn unreachable_class(dir: &TestDir) -> PathBuf {
    write(
        dir.path(),
        "spc.yaml",
        &common::scenario::spc_text(
            "http://127.0.0.1:1",
            "r",
            "- {objectName: a, secretPath: secret/data/a, secretKey: a}",
        ),
    )
}

/// `secretdrop <command>` of `config` into `out` with `--state-dir state`.
fn with_state_dir(command: &str, config: &Path, out: &Path, state: &Path) -> common::cli::Run {
    secretdrop(
        &[
            command,
            "--config",
            config.to_str().unwrap(),
            "--dir",
            out.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[],
    )
}

#[test]
fn a_state_dir_inside_the_secrets_dir_or_on_disk_is_refused() {
    let dir = TestDir::new();
    let config = unreachable_class(&dir);
    let out = dir.join("out");
    let disk = TestDir::on_disk();
    for command in ["init", "sidecar"] {
        for (state, why) in [
            (out.join("state"), "inside --dir"),
            (out.clone(), "inside --dir"),
            (disk.join("state"), "not on tmpfs or ramfs"),
        ] {
            let run = with_state_dir(command, &config, &out, &state);
            run.expect_code(2).expect_stderr(&[why]);
        }
    }
    assert!(
        !out.join("state").exists(),
        "nothing was created inside --dir"
    );
}

/// Every regular file under `dir`, reached without following a link (the secrets directory
/// holds one link per file and `..data`; the versions are real directories).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// The attack: once the sidecar runs, another user of the pod renames the state directory
/// away and puts a link to the secrets directory in its place; the next save would then write
/// the token where the app reads. The sidecar keeps writing to the directory it checked at
/// start, and no file of the secrets directory ever holds the token.
#[test]
fn a_state_dir_swapped_for_a_link_to_the_secrets_dir_never_puts_the_token_there() {
    let bao = Bao::shared();
    let kv = unique("state-swap");
    bao.cli(&["kv", "put", &format!("secret/{kv}"), "greeting=before"]);
    let pod = Pod::reading(bao, &kv);
    let config = write(
        pod.dir.path(),
        "config.yaml",
        &pod.spc(
            bao,
            &format!(
                "- {{objectName: greeting, secretPath: secret/data/{kv}, secretKey: greeting}}"
            ),
        ),
    );
    let r = sidecar(&pod, &config, &["--poll-interval", "1s"]);
    let token = recorded_token(&pod);
    let (sd, moved) = (state_dir(&pod), pod.dir.join("state.moved"));
    std::fs::rename(&sd, &moved).unwrap();
    std::os::unix::fs::symlink(pod.out(), &sd).unwrap();

    // A KV change commits a new version, which the state records: a save.
    bao.cli(&["kv", "put", &format!("secret/{kv}"), "greeting=after"]);
    assert!(
        r.eventually(Duration::from_secs(10), || read(pod.out().join("greeting"))
            == "after"),
        "{}",
        r.log_text()
    );
    let version = current_version(&pod.out());
    let recorded_in = |dir: &Path| {
        std::fs::read_to_string(dir.join("state.json")).is_ok_and(|s| s.contains(&version))
    };
    r.eventually(Duration::from_secs(5), || {
        recorded_in(&moved) || pod.out().join("state.json").exists()
    });
    assert!(
        !pod.out().join("state.json").exists(),
        "the state, token included, was written into the secrets directory"
    );
    for f in files_under(&pod.out()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&token),
            "{} holds the token",
            f.display()
        );
    }
    assert!(
        recorded_in(&moved),
        "the new version was not recorded in the directory opened at start:\n{}",
        r.log_text()
    );
    assert!(r.log_text().contains("rendered"), "{}", r.log_text());
    assert!(!r.log_text().contains(&token), "the token reached the log");

    // A restart finds the link where the directory was and refuses it, naming it (the link
    // resolves inside --dir; one to anywhere else is refused as a symlink).
    drop(r);
    pod.init_file(&config, &pod.out(), &["--state-dir", sd.to_str().unwrap()])
        .expect_code(2)
        .expect_stderr(&[sd.to_str().unwrap(), "inside --dir"]);
}

/// A state directory that another uid owns, or that a group or every user may write (sticky
/// or not), is refused at start: exit 2, naming the path, the owner, the mode and what is
/// accepted. Kubelet's emptyDir (0777, root's) is one; a subdirectory secretdrop creates in
/// it is accepted.
#[test]
fn a_state_dir_another_uid_owns_or_can_write_is_refused() {
    let dir = TestDir::new();
    let config = unreachable_class(&dir);
    let out = dir.join("out");
    let state = dir.join("state");
    std::fs::create_dir(&state).unwrap();
    let set = |mode: u32, owner: Option<u32>| {
        std::os::unix::fs::chown(&state, owner.or(Some(0)), None).unwrap();
        std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap();
    };
    assert_eq!(unsafe { libc::geteuid() }, 0, "the tests run as root");
    let cases: [(u32, Option<u32>, &str); 4] = [
        (
            0o777,
            None,
            "is writable by every user (mode 0777, owner uid 0)",
        ),
        (
            0o1777,
            None,
            "is writable by every user (mode 1777, owner uid 0) (sticky",
        ),
        (
            0o770,
            None,
            "is writable by its group (mode 0770, owner uid 0)",
        ),
        (0o700, Some(65534), "belongs to uid 65534 (mode 0700)"),
    ];
    for command in ["init", "sidecar"] {
        for (mode, owner, why) in cases {
            set(mode, owner);
            let run = with_state_dir(command, &config, &out, &state);
            run.expect_code(2).expect_stderr(&[
                &format!("--state-dir {} {why}", state.display()),
                "owned by uid 0 that no group or other user can write",
                "secretdrop creates it, mode 0700",
            ]);
            assert_eq!(
                std::fs::read_dir(&state).unwrap().count(),
                0,
                "nothing was written into it"
            );
        }
    }
    // The webhook's way: the emptyDir stays 0777 and secretdrop makes its own directory in
    // it (this run fails later, at Vault, which is not there).
    set(0o777, None);
    let sub = state.join("state");
    let run = secretdrop(
        &[
            "init",
            "--config",
            config.to_str().unwrap(),
            "--dir",
            out.to_str().unwrap(),
            "--state-dir",
            sub.to_str().unwrap(),
            "--timeout",
            "1s",
        ],
        &[],
    );
    run.expect_code(1);
    let meta = std::fs::metadata(&sub).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
        0o700
    );
}

/// Ten forced restarts (SIGKILL, start, first render) of one sidecar, without and with
/// `--state-dir`: Vault requests (OpenBao's own counter on a private server) and PostgreSQL
/// users minted. The figures are printed for docs/state.md.
#[test]
fn ten_forced_restarts_cost_one_login_and_one_user_with_the_state() {
    let pg = Postgres::shared();
    let mut figures = Vec::new();
    for with_state in [false, true] {
        let bao = Bao::start_new();
        let db = MintCounter::new(&bao, pg, "1m", "1h");
        let pod = Pod::with_policy(&bao, &db.policy());
        let config = write(
            pod.dir.path(),
            "config.yaml",
            &pod.native(&bao, &db.objects()),
        );
        let sd = state_dir(&pod);
        let extra: Vec<&str> = if with_state {
            vec!["--state-dir", sd.to_str().unwrap()]
        } else {
            vec![]
        };
        // The first start is the pod's; the ten after it are the restarts measured.
        kill(pod.sidecar_file(&config, &extra));
        let (minted, tokens) = (db.minted(pg), accessors(&bao));
        let requests = request_count(&bao);
        for _ in 0..10 {
            kill(pod.sidecar_file(&config, &extra));
        }
        let end = request_count(&bao);
        // Minus what reading the counter costs, measured the same way.
        let own = request_count(&bao) - end;
        let requests = end - requests - own;
        let minted = db.minted(pg) - minted;
        let tokens = accessors(&bao) - tokens;
        eprintln!(
            "10 forced restarts, {}: {requests} Vault requests, {minted} PostgreSQL users minted, {tokens} new tokens",
            if with_state { "with --state-dir" } else { "without --state-dir" }
        );
        figures.push((requests, minted, tokens));
    }
    let (before, after) = (figures[0], figures[1]);
    assert_eq!(before.1, 10, "without the state every restart mints");
    assert_eq!(after.1, 0, "with the state no restart mints");
    assert_eq!(after.2, 0, "with the state no restart logs in");
    assert!(after.0 < before.0, "{after:?} vs {before:?}");
}
