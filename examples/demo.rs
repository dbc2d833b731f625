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

use common::cli::{ls, read, secretdrop, write};
use common::{enable_kubernetes_auth, Bao, SaClaims, TokenReviewer};

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
    bao.cli(&[
        "kv",
        "put",
        "secret/app",
        "username=admin",
        "password=p4ssw0rd",
    ]);
    let policy = "path \"secret/data/app\" { capabilities = [\"read\"] }\n";
    say(&format!(
        "bao policy write mycsipolicy - <<EOF\n{policy}EOF"
    ));
    bao.cli_stdin(&["policy", "write", "mycsipolicy", "-"], policy);
    say("bao write auth/kubernetes/role/mycsirole bound_service_account_names=mycsiserviceaccount \\\n    bound_service_account_namespaces=default policies=mycsipolicy ttl=20m");
    bao.cli(&[
        "write",
        "auth/kubernetes/role/mycsirole",
        "bound_service_account_names=mycsiserviceaccount",
        "bound_service_account_namespaces=default",
        "policies=mycsipolicy",
        "ttl=20m",
    ]);

    let spc = format!(
        r#"apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: mycsispc
spec:
  provider: vault
  parameters:
    roleName: mycsirole
    vaultAddress: {}
    objects: |
      - objectName: "myUsername"
        secretPath: "secret/data/app"
        secretKey: "username"
      - objectName: "myPassword"
        secretPath: "secret/data/app"
        secretKey: "password"
"#,
        bao.addr()
    );
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
    let args = [
        "init",
        "--config",
        spc_path.to_str().unwrap(),
        "--dir",
        mnt.to_str().unwrap(),
        "--token-path",
        token_path.to_str().unwrap(),
    ];
    say(&format!("secretdrop {}", args.join(" ")));
    let run = secretdrop(&args, &[]);
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
