//! The blog-post scenario, verbatim: the Vault commands and the SecretProviderClass of the
//! well-known "externalise Kubernetes secrets to Vault with the CSI driver" walkthrough, with
//! `secretdrop init` in place of the CSI driver, and the same files in the pod.

mod common;

use common::cli::{assert_layout, current_version, mode_of, read, secretdrop, write};
use common::{enable_jwt_auth, enable_kubernetes_auth, Bao, SaClaims, TestDir, TokenReviewer};

/// The blog post's Vault setup, with `vault` spelled `bao`.
fn blog_post_vault_setup(bao: &Bao, auth_mount: &str) {
    bao.cli(&[
        "kv",
        "put",
        "secret/app",
        "username=admin",
        "password=p4ssw0rd",
    ]);
    bao.cli_stdin(
        &["policy", "write", "mycsipolicy", "-"],
        "path \"secret/data/app\" { capabilities = [\"read\"] }\n",
    );
    let mut role = vec![
        format!("auth/{auth_mount}/role/mycsirole"),
        "bound_service_account_names=mycsiserviceaccount".into(),
        "bound_service_account_namespaces=default".into(),
        "policies=mycsipolicy".into(),
        "ttl=20m".into(),
    ];
    if auth_mount == "jwt" {
        // The jwt method binds the same identity through the token's claims.
        role = vec![
            format!("auth/{auth_mount}/role/mycsirole"),
            "role_type=jwt".into(),
            "user_claim=sub".into(),
            "bound_audiences=https://kubernetes.default.svc.cluster.local".into(),
            "bound_subject=system:serviceaccount:default:mycsiserviceaccount".into(),
            "policies=mycsipolicy".into(),
            "ttl=20m".into(),
        ];
    }
    let args: Vec<&str> = std::iter::once("write")
        .chain(role.iter().map(String::as_str))
        .collect();
    bao.cli(&args);
}

/// The SecretProviderClass from the post; only the port of `vaultAddress` differs.
fn blog_post_spc(bao: &Bao, extra_parameters: &str) -> String {
    format!(
        r#"apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: mycsispc
spec:
  provider: vault
  parameters:
    roleName: mycsirole
    vaultAddress: {addr}{extra_parameters}
    objects: |
      - objectName: "myUsername"
        secretPath: "secret/data/app"
        secretKey: "username"
      - objectName: "myPassword"
        secretPath: "secret/data/app"
        secretKey: "password"
"#,
        addr = bao.addr()
    )
}

#[test]
fn blog_post_with_kubernetes_auth() {
    let bao = Bao::shared();
    enable_kubernetes_auth(bao, "kubernetes");
    blog_post_vault_setup(bao, "kubernetes");
    let reviewer = TokenReviewer::shared();
    let reviews_before = reviewer.reviews();

    let pod = TestDir::new();
    let token = reviewer.mint(&SaClaims::new("default", "mycsiserviceaccount"));
    let token_path = write(pod.path(), "token", &token);
    let spc = write(pod.path(), "spc.yaml", &blog_post_spc(bao, ""));
    let mnt = pod.join("mnt/csi");

    let run = secretdrop(
        &[
            "init",
            "--config",
            spc.to_str().unwrap(),
            "--dir",
            mnt.to_str().unwrap(),
            "--token-path",
            token_path.to_str().unwrap(),
        ],
        &[],
    );
    run.expect_code(0).expect_no_leak(&["p4ssw0rd", &token]);

    assert_layout(&mnt, &["myPassword", "myUsername"]);
    assert_eq!(read(mnt.join("myPassword")), "p4ssw0rd");
    assert_eq!(read(mnt.join("myUsername")), "admin");
    // The CSI driver's fixed default mode.
    assert_eq!(mode_of(mnt.join("myPassword")), 0o644);
    assert!(
        reviewer.reviews() > reviews_before,
        "OpenBao never asked the TokenReview stand-in"
    );
}

#[test]
fn blog_post_with_jwt_auth_validated_by_openbao() {
    let bao = Bao::shared();
    enable_jwt_auth(bao, "jwt");
    blog_post_vault_setup(bao, "jwt");

    let pod = TestDir::new();
    let claims = SaClaims::new("default", "mycsiserviceaccount")
        .with_audiences(&["https://kubernetes.default.svc.cluster.local"]);
    let token = TokenReviewer::shared().mint(&claims);
    let token_path = write(pod.path(), "token", &token);
    let spc = write(
        pod.path(),
        "spc.yaml",
        &blog_post_spc(bao, "\n    vaultAuthMountPath: jwt"),
    );
    let mnt = pod.join("csi");

    secretdrop(
        &[
            "init",
            "--config",
            spc.to_str().unwrap(),
            "--dir",
            mnt.to_str().unwrap(),
            "--token-path",
            token_path.to_str().unwrap(),
        ],
        &[],
    )
    .expect_code(0)
    .expect_no_leak(&["p4ssw0rd", &token]);
    assert_layout(&mnt, &["myPassword", "myUsername"]);
    assert_eq!(read(mnt.join("myPassword")), "p4ssw0rd");

    // A token signed by another key is refused by OpenBao itself, and nothing changes on disk.
    let version = current_version(&mnt);
    let forged = TokenReviewer::shared().mint_with_foreign_key(&claims);
    write(pod.path(), "token", &forged);
    secretdrop(
        &[
            "init",
            "--config",
            spc.to_str().unwrap(),
            "--dir",
            mnt.to_str().unwrap(),
            "--token-path",
            token_path.to_str().unwrap(),
            "--timeout",
            "5s",
        ],
        &[],
    )
    .expect_code(1)
    .expect_stderr(&["login to", "auth/jwt", "mycsirole"])
    .expect_no_leak(&[&forged, "p4ssw0rd"]);
    assert_eq!(current_version(&mnt), version);
}

#[test]
fn init_reads_the_token_path_and_dir_from_the_environment() {
    let bao = Bao::shared();
    enable_kubernetes_auth(bao, "kubernetes");
    blog_post_vault_setup(bao, "kubernetes");
    let pod = TestDir::new();
    let token = TokenReviewer::shared().mint(&SaClaims::new("default", "mycsiserviceaccount"));
    let token_path = write(pod.path(), "token", &token);
    let spc = write(pod.path(), "spc.yaml", &blog_post_spc(bao, ""));
    let mnt = pod.join("env");
    secretdrop(
        &["init"],
        &[
            ("SECRETDROP_CONFIG", spc.to_str().unwrap()),
            ("SECRETDROP_DIR", mnt.to_str().unwrap()),
            ("SECRETDROP_TOKEN_PATH", token_path.to_str().unwrap()),
        ],
    )
    .expect_code(0);
    assert_eq!(read(mnt.join("myUsername")), "admin");
}
