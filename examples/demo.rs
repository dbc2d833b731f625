//! The README's first command: the blog-post scenario end to end on this machine.
//!
//! Starts an OpenBao dev server and the TokenReview stand-in (the test harness's, which
//! verifies token signatures like the kube-apiserver), runs the post's Vault commands, writes
//! its SecretProviderClass and a projected-style service-account token, runs
//! `secretdrop init`, and shows the result the way a pod would see it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;

use common::cli::{init, init_args, ls, read, write};
use common::{blog, enable_kubernetes_auth, Bao, SaClaims, TokenReviewer};

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
    println!(
        "kubernetes auth -> TokenReview stand-in at {}",
        TokenReviewer::shared().addr()
    );

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
    say(&format!("cat {}/myPassword", mnt.display()));
    println!("{}", read(mnt.join("myPassword")));
    let fs = Command::new("df")
        .args(["-h", "--output=fstype,target"])
        .arg(&mnt)
        .output()
        .expect("df");
    say(&format!("df --output=fstype,target {}", mnt.display()));
    print!("{}", String::from_utf8_lossy(&fs.stdout));
}
