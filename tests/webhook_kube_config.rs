//! How the real `secretdrop webhook` reaches the Kubernetes API to read SecretProviderClasses
//! (src/kube.rs), beyond the bearer-token kubeconfig tests/webhook_csi.rs uses: a kubeconfig
//! with a client certificate (files, and inline `-data`), against an API stand-in that
//! requires one, where a certificate it did not issue is refused and another user's is 403;
//! and the in-cluster configuration, the webhook run in a private mount namespace with a tmpfs
//! over the service-account directory, as a pod sees it.

mod common;

use std::path::Path;
use std::process::Command;

use common::cli::read;
use common::kube_api::KubeApi;
use common::webhook::{patched, refusal, Webhook};
use common::{pki, TestDir};
use serde_json::{json, Value};

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A class the conversion accepts, stored in the API as `default/mycsispc`.
fn put_class(api: &KubeApi) {
    api.put(
        "default",
        json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
               "metadata": {"name": "mycsispc"},
               "spec": {"provider": "vault", "parameters": {
                   "roleName": "mycsirole", "vaultAddress": "http://127.0.0.1:8200",
                   "objects": "- objectName: myPassword\n  secretPath: secret/data/app\n  secretKey: password\n"}}}),
    );
}

/// A pod with one Secrets Store CSI volume of the class `mycsispc`.
fn csi_pod() -> Value {
    json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
        "containers": [{"name": "app", "image": "app",
                        "volumeMounts": [{"name": "secrets", "mountPath": "/mnt/csi"}]}],
        "volumes": [{"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io",
                     "volumeAttributes": {"secretProviderClass": "mycsispc"}}}]}})
}

/// The pod came back converted: its CSI volume is now a memory emptyDir under the same name,
/// and the class it was converted from travels in the pod.
fn assert_converted(response: &Value) {
    let pod = csi_pod();
    let injected = patched(&pod, response);
    assert_eq!(
        injected["spec"]["volumes"][0],
        json!({"name": "secrets", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    );
    assert!(
        injected["metadata"]["annotations"]["csi.secretdrop.dev/secrets"]
            .as_str()
            .unwrap()
            .contains("mycsirole"),
        "{injected}"
    );
}

/// A webhook in `dir` reading the API through `kubeconfig`.
fn webhook_with(dir: &Path, kubeconfig: &Path) -> (Webhook, std::path::PathBuf) {
    let (crt, key) = pki::self_signed(dir, "webhook");
    let args = ["--kubeconfig", kubeconfig.to_str().unwrap()];
    (Webhook::start(dir, &crt, &key, &args), crt)
}

#[test]
fn a_kubeconfig_with_a_client_certificate_authenticates_and_a_foreign_certificate_is_refused() {
    let dir = TestDir::new();
    let api = KubeApi::start_requiring_client_certs(dir.path());
    put_class(&api);
    let certs = api.client_certs.as_ref().unwrap();

    // The webhook's certificate, as files and inline: converted, and no token was sent.
    for inline in [false, true] {
        let case = dir.join(if inline { "inline" } else { "files" });
        std::fs::create_dir(&case).unwrap();
        let (w, crt) = webhook_with(
            &case,
            &api.kubeconfig_with_cert(&case, &certs.webhook, inline),
        );
        let before = api.requests();
        assert_converted(&w.review(&crt, &csi_pod()));
        assert_eq!(api.requests(), before + 1);
    }
    assert!(
        api.authorizations().is_empty(),
        "{:?}",
        api.authorizations()
    );

    // Another user's certificate from the same CA: authenticated, not allowed.
    let nobody = dir.join("nobody");
    std::fs::create_dir(&nobody).unwrap();
    let (w, crt) = webhook_with(
        &nobody,
        &api.kubeconfig_with_cert(&nobody, &certs.unprivileged, false),
    );
    let m = refusal(&w.review(&crt, &csi_pod()));
    assert!(m.contains("HTTP 403") && m.contains("forbidden"), "{m}");

    // A certificate the API's client CA did not issue, naming the webhook's user all the same:
    // the handshake fails, no request reaches the API, and the pod is refused saying so.
    let forger = dir.join("forger");
    std::fs::create_dir(&forger).unwrap();
    let own_ca = pki::ca(&forger, "forged-ca");
    let forged = pki::client_cert(
        &forger,
        "forged",
        "system:serviceaccount:secretdrop:webhook",
        &own_ca,
    );
    let (w, crt) = webhook_with(&forger, &api.kubeconfig_with_cert(&forger, &forged, false));
    let before = api.requests();
    let m = refusal(&w.review(&crt, &csi_pod()));
    assert!(m.contains("cannot reach the Kubernetes API"), "{m}");
    assert_eq!(api.requests(), before, "a request got through: {m}");
    // So is a client with a valid token but no certificate at all.
    let token_only = dir.join("token-only");
    std::fs::create_dir(&token_only).unwrap();
    let (w, crt) = webhook_with(&token_only, &api.kubeconfig(&token_only, &api.token, false));
    let m = refusal(&w.review(&crt, &csi_pod()));
    assert!(m.contains("cannot reach the Kubernetes API"), "{m}");
    assert_eq!(api.requests(), before);
    assert!(!read(&w.log).contains(&api.token));
}

/// Whether this process may make a private mount namespace (root, or the capability).
fn may_unshare() -> Result<(), String> {
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

/// What kubelet gives a pod: in the webhook's own mount namespace, a tmpfs at the
/// service-account directory holding the files copied from `src` (the machine's own /run is
/// covered by a private tmpfs first when that directory does not exist, so nothing is created
/// outside the namespace); then the webhook is exec'd.
const IN_A_POD: &str = r#"set -e
d=/var/run/secrets/kubernetes.io/serviceaccount
if [ ! -d "$d" ]; then
    mount -t tmpfs -o mode=0755,size=64k tmpfs "$(readlink -f /var/run)"
    mkdir -p "$d"
fi
mount -t tmpfs -o mode=0755,size=64k tmpfs "$d"
cp "$0/token" "$0/ca.crt" "$0/namespace" "$d/"
exec "$@""#;

#[test]
fn in_cluster_the_webhook_reads_its_service_account_and_converts_a_csi_volume() {
    if let Err(why) = may_unshare() {
        eprintln!("skipped: a private mount namespace is not permitted here ({why})");
        return;
    }
    let host_has_one = Path::new(SA_DIR).exists();
    let dir = TestDir::new();
    let api = KubeApi::start(dir.path());
    put_class(&api);
    let sa = dir.join("serviceaccount");
    std::fs::create_dir(&sa).unwrap();
    std::fs::write(sa.join("token"), format!("{}\n", api.token)).unwrap();
    std::fs::copy(&api.ca, sa.join("ca.crt")).unwrap();
    std::fs::write(sa.join("namespace"), "secretdrop").unwrap();

    let (crt, key) = pki::self_signed(dir.path(), "webhook");
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        IN_A_POD,
        sa.to_str().unwrap(),
    ];
    let port = api.port.to_string();
    let w = Webhook::start_program(
        &common::cli::bin(),
        dir.path(),
        &crt,
        &key,
        &[],
        &wrapper,
        |cmd| {
            cmd.env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
                .env("KUBERNETES_SERVICE_PORT", &port);
        },
    );
    let log = read(&w.log);
    assert!(
        log.contains("reading SecretProviderClasses from the Kubernetes API")
            && log.contains(&format!("https://127.0.0.1:{port}")),
        "{log}"
    );
    assert_converted(&w.review(&crt, &csi_pod()));
    assert_eq!(api.authorizations(), [format!("Bearer {}", api.token)]);

    // The token is the file's at each request (projected tokens rotate): replaced, inside the
    // webhook's namespace, by one the API does not know, the next pod is refused with 401...
    // (An absolute symlink under /proc/PID/root resolves in our namespace: /var/run is taken
    // apart here.)
    let var_run = std::fs::canonicalize("/var/run").unwrap();
    let in_pod = Path::new(SA_DIR).strip_prefix("/var/run").unwrap();
    let token = Path::new(&format!("/proc/{}/root", w.pid()))
        .join(var_run.strip_prefix("/").unwrap())
        .join(in_pod)
        .join("token");
    std::fs::write(&token, "rotated-but-unknown").unwrap();
    let m = refusal(&w.review(&crt, &csi_pod()));
    assert!(m.contains("HTTP 401"), "{m}");
    assert!(!m.contains("rotated-but-unknown") && !read(&w.log).contains("rotated-but-unknown"));
    // ...and converted again once the known one is back.
    std::fs::write(&token, &api.token).unwrap();
    assert_converted(&w.review(&crt, &csi_pod()));
    assert!(
        !read(&w.log).contains(&api.token),
        "the token is never logged"
    );
    // None of it is visible outside the webhook's namespace.
    assert_eq!(Path::new(SA_DIR).exists(), host_has_one);
}
