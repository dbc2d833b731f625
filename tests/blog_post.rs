//! The blog-post scenario (the CSI walkthrough of docs/architecture.md), verbatim: the Vault commands and the SecretProviderClass of the
//! well-known "externalise Kubernetes secrets to Vault with the CSI driver" walkthrough, with
//! `secretdrop init` in place of the CSI driver, and the same files in the pod.

mod common;

use common::cli::{assert_layout, current_version, init, mode_of, read, secretdrop, write};
use common::{
    blog, enable_jwt_auth, enable_kubernetes_auth, Bao, SaClaims, TestDir, TokenReviewer,
};

#[test]
fn blog_post_with_kubernetes_auth() {
    let bao = Bao::shared();
    enable_kubernetes_auth(bao, "kubernetes");
    blog::vault_setup(bao, "kubernetes");
    let reviewer = TokenReviewer::shared();
    let reviews_before = reviewer.reviews();

    let pod = TestDir::new();
    let token = reviewer.mint(&SaClaims::new("default", "mycsiserviceaccount"));
    let token_path = write(pod.path(), "token", &token);
    let spc = write(pod.path(), "spc.yaml", &blog::spc(bao, ""));
    let mnt = pod.join("mnt/csi");

    init(&spc, &mnt, Some(&token_path), &[])
        .expect_code(0)
        .expect_no_leak(&["p4ssw0rd", &token]);

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
    blog::vault_setup(bao, "jwt");

    let pod = TestDir::new();
    let claims = SaClaims::new("default", "mycsiserviceaccount")
        .with_audiences(&["https://kubernetes.default.svc.cluster.local"]);
    let token = TokenReviewer::shared().mint(&claims);
    let token_path = write(pod.path(), "token", &token);
    let spc = write(
        pod.path(),
        "spc.yaml",
        &blog::spc(bao, "\n    vaultAuthMountPath: jwt"),
    );
    let mnt = pod.join("csi");

    init(&spc, &mnt, Some(&token_path), &[])
        .expect_code(0)
        .expect_no_leak(&["p4ssw0rd", &token]);
    assert_layout(&mnt, &["myPassword", "myUsername"]);
    assert_eq!(read(mnt.join("myPassword")), "p4ssw0rd");

    // A token signed by another key is refused by OpenBao itself, and nothing changes on disk.
    let version = current_version(&mnt);
    let forged = TokenReviewer::shared().mint_with_foreign_key(&claims);
    write(pod.path(), "token", &forged);
    init(&spc, &mnt, Some(&token_path), &["--timeout", "5s"])
        .expect_code(1)
        .expect_stderr(&["login to", "auth/jwt", "mycsirole"])
        .expect_no_leak(&[&forged, "p4ssw0rd"]);
    assert_eq!(current_version(&mnt), version);
}

#[test]
fn init_reads_the_token_path_and_dir_from_the_environment() {
    let bao = Bao::shared();
    enable_kubernetes_auth(bao, "kubernetes");
    blog::vault_setup(bao, "kubernetes");
    let pod = TestDir::new();
    let token = TokenReviewer::shared().mint(&SaClaims::new("default", "mycsiserviceaccount"));
    let token_path = write(pod.path(), "token", &token);
    let spc = write(pod.path(), "spc.yaml", &blog::spc(bao, ""));
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
