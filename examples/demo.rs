//! The README's first command: the CSI walkthrough scenario (docs/architecture.md) end to end on
//! this machine.
//!
//! Starts an OpenBao dev server and the TokenReview stand-in (the test harness's, which
//! verifies token signatures like the kube-apiserver), runs the Vault-side setup of
//! docs/vault-setup.md and prints it, writes the SecretProviderClass and a projected-style
//! service-account token, runs `secretdrop init`, shows the result the way a pod would see it
//! (modes inside `..data/` included), then runs `secretdrop sidecar` and changes the secret in
//! Vault to show a rotation. scripts/demo.sh removes everything it wrote, also on Ctrl-C.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cli::{bin, current_version, init, init_args, ls, read, scrub_env, write};
use common::{blog, enable_kubernetes_auth, Bao, SaClaims, Server, TokenReviewer};

fn say(cmd: &str) {
    println!("\n$ {cmd}");
}

fn main() {
    let base = Path::new("/dev/shm/secretdrop-demo");
    let _ = std::fs::remove_dir_all(base);
    std::fs::create_dir_all(base).expect("create /dev/shm/secretdrop-demo");

    let bao = Bao::start_new();
    println!(
        "OpenBao dev server at {} (log: {})",
        bao.addr(),
        bao.log_path().display()
    );
    enable_kubernetes_auth(&bao, "kubernetes");
    say("bao auth enable kubernetes");
    say(&format!(
        "bao write auth/kubernetes/config kubernetes_host={} \\\n    kubernetes_ca_cert=@ca.crt token_reviewer_jwt=<reviewer token> disable_local_ca_jwt=true",
        TokenReviewer::shared().addr()
    ));
    println!(
        "(kubernetes_host is the test harness's TokenReview stand-in: it verifies each token's"
    );
    println!(" signature, expiry and audience like the kube-apiserver; see docs/vault-setup.md)");

    say("bao kv put secret/app username=\"admin\" password=\"p4ssw0rd\"");
    say(&format!(
        "bao policy write mycsipolicy - <<EOF\n{}EOF",
        blog::POLICY
    ));
    say("bao write auth/kubernetes/role/mycsirole bound_service_account_names=mycsiserviceaccount \\\n    bound_service_account_namespaces=default policies=mycsipolicy ttl=20m");
    blog::vault_setup(&bao, "kubernetes");

    let spc = blog::spc(&bao, "");
    let spc_path = write(base, "spc.yaml", &spc);
    say(&format!("cat {}", spc_path.display()));
    print!("{spc}");

    let token = TokenReviewer::shared().mint(&SaClaims::new("default", "mycsiserviceaccount"));
    let token_path = write(base, "token", &token);
    println!(
        "\n(service-account token for default/mycsiserviceaccount, as kubelet projects it: {})",
        token_path.display()
    );

    let mnt = base.join("mnt/csi");
    let args = init_args(&spc_path, &mnt, Some(&token_path));
    say(&format!("secretdrop {}", args.join(" ")));
    let run = init(&spc_path, &mnt, Some(&token_path), &[]);
    eprint!("{}", run.stderr);
    println!("exit code {} in {} ms", run.code, run.elapsed.as_millis());
    if run.code != 0 {
        std::process::exit(run.code);
    }

    say(&format!("ls -la {}", mnt.display()));
    print!("{}", ls(&mnt));
    say(&format!("ls -l {}/..data/", mnt.display()));
    print!("{}", ls_l(&mnt.join("..data/")));
    say(&format!("cat {}/myPassword", mnt.display()));
    println!("{}", read(mnt.join("myPassword")));
    let fs = Command::new("df")
        .args(["-h", "--output=fstype,target"])
        .arg(&mnt)
        .output()
        .expect("df");
    say(&format!("df --output=fstype,target {}", mnt.display()));
    print!("{}", String::from_utf8_lossy(&fs.stdout));

    rotation(&bao, &spc_path, &mnt, &token_path);
}

fn ls_l(dir: &Path) -> String {
    let out = Command::new("ls").arg("-l").arg(dir).output().expect("ls");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The resident mode: a sidecar on the same directory, the secret changed in Vault, the file
/// changed on disk at the next poll.
fn rotation(bao: &Bao, spc: &Path, mnt: &Path, token: &Path) {
    let before = current_version(mnt);
    let args = [
        "sidecar",
        "--config",
        &spc.display().to_string(),
        "--dir",
        &mnt.display().to_string(),
        "--token-path",
        &token.display().to_string(),
        "--poll-interval",
        "2s",
    ]
    .map(|s| s.to_string());
    say(&format!("secretdrop {} &", args.join(" ")));
    let mut cmd = Command::new(bin());
    scrub_env(&mut cmd);
    cmd.args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // Dies with the demo, however the demo dies (Ctrl-C in scripts/demo.sh).
    let mut sidecar = common::spawn_tied_to_process(cmd).expect("start secretdrop sidecar");
    std::thread::sleep(Duration::from_millis(500));
    say("bao kv put secret/app username=\"admin\" password=\"n3w-p4ssw0rd\"");
    bao.cli(&[
        "kv",
        "put",
        "secret/app",
        "username=admin",
        "password=n3w-p4ssw0rd",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while current_version(mnt) == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    say(&format!(
        "readlink {}/..data   # was {before}",
        mnt.display()
    ));
    println!("{}", current_version(mnt));
    say(&format!("cat {}/myPassword", mnt.display()));
    println!("{}", read(mnt.join("myPassword")));
    // SIGTERM: the sidecar stops within a second; the files stay.
    // SAFETY: kill(2) on the pid of a child we spawned and have not waited for yet.
    unsafe { libc::kill(sidecar.id() as i32, libc::SIGTERM) };
    let _ = sidecar.wait();
}
