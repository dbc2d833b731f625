//! Vault being away, and the disk filling up: init waits out a sealed Vault and succeeds once
//! it is unsealed; a full tmpfs leaves the previous version intact with no half-written
//! directory; namespaces and 404s reach the right place and say so; nothing leaks even with
//! trace logging.

mod common;

use common::Server;
use std::process::Command;
use std::time::Duration;

use common::cli::{init, init_args, read, tree, write};
use common::scenario::Pod;
use common::{unique, Bao, TestDir};

#[test]
fn init_waits_for_a_sealed_vault_and_renders_once_it_is_unsealed() {
    let bao = Bao::start_new();
    bao.cli(&["kv", "put", "secret/app", "password=after-unseal"]);
    let pod = Pod::with_policy(
        &bao,
        "path \"secret/data/app\" { capabilities = [\"read\"] }\n",
    );
    let spc = pod.spc(
        &bao,
        "- {objectName: password, secretPath: secret/data/app, secretKey: password}",
    );
    let log = read(bao.log_path());
    let unseal_key = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("Unseal Key: "))
        .expect("dev server prints its unseal key")
        .trim()
        .to_string();
    bao.cli(&["operator", "seal"]);

    let cfg = write(pod.dir.path(), "spc.yaml", &spc);
    let out = pod.out();
    let child = {
        let mut cmd = Command::new(common::cli::bin());
        cmd.args(init_args(&cfg, &out, Some(&pod.token_path)))
            .args(["--timeout", "60s"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !out.join("password").exists(),
        "nothing before Vault is back"
    );
    bao.cli(&["operator", "unseal", &unseal_key]);
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(
        stderr.contains("sealed"),
        "the wait was logged with its cause:\n{stderr}"
    );
    assert!(
        stderr.lines().count() < 15,
        "backoff, not an error storm:\n{stderr}"
    );
    assert!(!stderr.contains(&unseal_key) && !stderr.contains(&pod.token));
    assert_eq!(read(out.join("password")), "after-unseal");
}

#[test]
fn a_full_tmpfs_keeps_the_previous_version_and_leaves_no_half_written_dir() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "mounting a small tmpfs needs root (CI runs as root)"
    );
    let bao = Bao::shared();
    let path = unique("big");
    bao.cli(&["kv", "put", &format!("secret/{path}"), "small=tiny"]);
    let pod = Pod::reading(bao, &path);
    let mnt = TestDir::new();
    let out = mnt.join("secrets");
    std::fs::create_dir(&out).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(out.clone());

    let objects =
        format!("- {{objectName: value, secretPath: secret/data/{path}, secretKey: small}}");
    let cfg = write(pod.dir.path(), "spc.yaml", &pod.spc(bao, &objects));
    pod.init_file(&cfg, &out, &[]).expect_code(0);
    let before = tree(&out);

    // 40 keys of 4 KiB: the new version cannot fit beside the old one in 64 KiB.
    let big = "x".repeat(4096);
    let mut args = vec![
        "kv".to_string(),
        "put".into(),
        format!("secret/{path}"),
        "small=tiny".into(),
    ];
    args.extend((0..40).map(|i| format!("k{i}={big}")));
    bao.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut objects = objects.clone();
    for i in 0..40 {
        objects.push_str(&format!(
            "\n- {{objectName: k{i}, secretPath: secret/data/{path}, secretKey: k{i}}}"
        ));
    }
    let cfg = write(pod.dir.path(), "spc-big.yaml", &pod.spc(bao, &objects));
    pod.init_file(&cfg, &out, &[])
        .expect_code(1)
        .expect_stderr(&["No space left on device", &out.display().to_string()])
        .expect_no_leak(&[&big]);
    assert_eq!(
        tree(&out),
        before,
        "previous version intact, nothing half-written left"
    );
}

#[test]
fn namespaces_are_sent_and_a_missing_path_is_a_clear_404() {
    let bao = Bao::shared();
    let ns = unique("ns");
    bao.cli(&["namespace", "create", &ns]);
    bao.cli(&[
        "secrets",
        "enable",
        &format!("-namespace={ns}"),
        "-path=secret",
        "kv-v2",
    ]);
    bao.cli(&[
        "kv",
        "put",
        &format!("-namespace={ns}"),
        "secret/app",
        "password=inside-the-namespace",
    ]);
    bao.cli_stdin(
        &[
            "policy",
            "write",
            &format!("-namespace={ns}"),
            "reader",
            "-",
        ],
        "path \"secret/data/*\" { capabilities = [\"read\"] }\n",
    );
    let token = bao.cli(&[
        "token",
        "create",
        &format!("-namespace={ns}"),
        "-policy=reader",
        "-field=token",
    ]);
    let dir = TestDir::new();
    let token_file = write(dir.path(), "token", token.trim());
    let config = |object_path: &str| {
        format!(
            "apiVersion: secretdrop.dev/v1alpha1\nkind: Config\nvault:\n  address: {}\n  namespace: {ns}\nauth:\n  method: token\n  tokenFile: {}\nobjects:\n  - {{objectName: password, secretPath: {object_path}, secretKey: password}}\n",
            bao.addr(),
            token_file.display()
        )
    };
    let out = dir.join("out");
    let cfg = write(dir.path(), "ns.yaml", &config("secret/data/app"));
    init(&cfg, &out, None, &[]).expect_code(0);
    assert_eq!(read(out.join("password")), "inside-the-namespace");

    let cfg = write(dir.path(), "missing.yaml", &config("secret/data/nope"));
    init(&cfg, &out, None, &[]).expect_code(1).expect_stderr(&[
        "secret/data/nope",
        "404",
        "nothing at this path",
    ]);
}

#[test]
fn trace_logging_shows_no_secret_or_token() {
    let bao = Bao::shared();
    let path = unique("trace");
    let secret = "trace-level-s3cret";
    bao.cli(&[
        "kv",
        "put",
        &format!("secret/{path}"),
        &format!("password={secret}"),
    ]);
    let pod = Pod::reading(bao, &path);
    let objects =
        format!("- {{objectName: password, secretPath: secret/data/{path}, secretKey: password}}");
    let run = pod.init(&pod.spc(bao, &objects), &["--log-level", "trace"]);
    run.expect_code(0).expect_no_leak(&[secret, &pod.token]);
    assert!(run.stderr.contains("rendered"), "{}", run.stderr);
}
