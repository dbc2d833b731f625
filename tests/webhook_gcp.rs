//! `provider: gcp` through the webhook: a CSI volume whose SecretProviderClass says
//! `provider: gcp` goes through the real webhook binary (the class read from a Kubernetes API
//! stand-in); the admitted pod is then run from its spec alone by the tests' Kubelet stand-in,
//! its injected container inside the Google stand-in's network namespace, where the metadata
//! server answers for the pod as GKE Workload Identity does, or STS trusts the pod's projected
//! token as Workload Identity Federation does (the pod's credentials file and token mounted where
//! its app container has them).

mod common;

use std::process::Command;

use common::gcp::{may_unshare, Google, PROJECT_ID};
use common::kubelet::{Cluster, Kubelet};
use common::webhook::{patched, ApiScene};
use serde_json::{json, Value};

const NAMESPACE: &str = "default";

fn gcp_class(name: &str, secrets: &str) -> Value {
    json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
           "metadata": {"name": name}, "spec": {"provider": "gcp", "parameters": {"secrets": secrets}}})
}

/// A pod as the GCP provider's documentation writes one: an app container mounting the CSI
/// volume `secrets`.
fn csi_pod(class: &str, app: Value) -> Value {
    let mut container = json!({"name": "app", "image": "nginx", "volumeMounts": [
        {"name": "secrets", "mountPath": "/var/secrets", "readOnly": true}]});
    if let Value::Object(extra) = app {
        container.as_object_mut().unwrap().extend(extra);
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-", "labels": {"app": "web"}},
        "spec": {"serviceAccountName": "app-sa", "containers": [container],
            "volumes": [{"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io",
                "readOnly": true, "volumeAttributes": {"secretProviderClass": class}}}]}})
}

#[test]
fn a_converted_gcp_csi_volume_renders_with_the_pods_metadata_identity() {
    if let Err(why) = may_unshare() {
        eprintln!("SKIPPED: network namespaces are not permitted here ({why})");
        return;
    }
    let s = ApiScene::new(&[]);
    let g = Google::start(&s.dir.join("google"));
    let reader = format!("pod@{PROJECT_ID}.iam.gserviceaccount.com");
    g.metadata_identity(&reader);
    g.add_version(None, "hooked", b"from-the-webhook");
    g.grant_secret(None, "hooked", &format!("serviceAccount:{reader}"));
    s.api.put(
        NAMESPACE,
        gcp_class(
            "gcp-app",
            &format!("- resourceName: projects/{PROJECT_ID}/secrets/hooked/versions/latest\n  path: db/password\n  mode: 0400\n"),
        ),
    );
    let pod = csi_pod("gcp-app", json!({}));
    let injected = patched(&pod, &s.review(&pod));
    assert_eq!(
        injected["spec"]["containers"], pod["spec"]["containers"],
        "the app container is untouched"
    );
    // GKE Workload Identity needs no token in the pod: none is projected, and nothing of
    // Vault's is there.
    let volumes = injected["spec"]["volumes"].to_string();
    assert!(!volumes.contains("serviceAccountToken"), "{volumes}");
    let kubelet = Kubelet::new(s.dir.path(), NAMESPACE, &injected);
    let c = kubelet.container("secretdrop");
    let env = kubelet.env(&c);
    assert!(
        !env.iter()
            .any(|(k, _)| k.starts_with("VAULT_") || k.starts_with("GOOGLE_")),
        "{env:?}"
    );
    // The injected container's command line, run once as `init` where the pod's network is.
    let mut args = kubelet.args(&c, &c["args"]);
    args[0] = "init".into();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = g.run(Command::new(common::cli::bin()), &args, &env);
    r.expect_code(0);
    assert_eq!(
        kubelet.read("app", "/var/secrets/db/password"),
        "from-the-webhook"
    );
    assert_eq!(g.count("metadata_token"), 1);
    assert!(!r.stderr.contains("from-the-webhook"));
    for t in g.tokens() {
        assert!(!r.stderr.contains(&t));
    }
}

#[test]
fn a_federated_pods_credentials_reach_the_injected_container_and_junk_is_refused() {
    let s = ApiScene::new(&[]);
    s.api.put(
        NAMESPACE,
        gcp_class(
            "gcp-app",
            &format!(
                "- resourceName: projects/{PROJECT_ID}/secrets/s/versions/latest\n  path: s\n"
            ),
        ),
    );
    let creds = "/var/run/secrets/tokens/gcp-ksa/google-application-credentials.json";
    let mut pod = csi_pod(
        "gcp-app",
        json!({"env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": creds}]}),
    );
    pod["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "gcp-ksa", "mountPath": "/var/run/secrets/tokens/gcp-ksa"}));
    pod["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "gcp-ksa",
        "projected": {"sources": [
            {"serviceAccountToken": {"audience": "secretdrop-test.svc.id.goog", "path": "token"}},
            {"configMap": {"name": "gcp-creds"}}]}}));
    let injected = patched(&pod, &s.review(&pod));
    let ours = common::kubelet::named(&injected["spec"]["initContainers"], "secretdrop").clone();
    assert!(ours["env"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": creds})));
    assert!(ours["volumeMounts"].as_array().unwrap().contains(
        &json!({"name": "gcp-ksa", "mountPath": "/var/run/secrets/tokens/gcp-ksa", "readOnly": true})
    ));
    // A credentials path taken from a Secret is not guessed at: refused with the reason.
    let mut junk = csi_pod(
        "gcp-app",
        json!({"env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS",
        "valueFrom": {"secretKeyRef": {"name": "x", "key": "y"}}}]}),
    );
    junk["metadata"]["generateName"] = json!("junk-");
    let m = s.refusal(&junk);
    assert!(
        m.contains("other than as a literal value") && m.contains("\"secrets\""),
        "{m}"
    );
}

/// Where the federated pod mounts its projected token, as the credentials file names it.
const TOKEN_DIR: &str = "/var/run/secrets/tokens/gcp-ksa";

#[test]
fn a_converted_gcp_csi_volume_renders_with_the_pods_federated_credentials() {
    if let Err(why) = may_unshare() {
        eprintln!("SKIPPED: network namespaces are not permitted here ({why})");
        return;
    }
    let s = ApiScene::new(&[]);
    let g = Google::start(&s.dir.join("google"));
    let p = g.admin(json!({"op": "provider", "pool": "pool", "provider": "k8s"}));
    let sub = "system:serviceaccount:default:app-sa";
    let principal = format!("principal://iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/pool/subject/{sub}", common::gcp::PROJECT_NUMBER);
    g.add_version(None, "federated", b"via-federation");
    g.grant_secret(None, "federated", &principal);
    s.api.put(
        NAMESPACE,
        gcp_class(
            "gcp-app",
            &format!("- resourceName: projects/{PROJECT_ID}/secrets/federated/versions/latest\n  path: value\n"),
        ),
    );
    // The pod as a federated cluster runs it: the credentials file from a ConfigMap, the
    // projected token for the pool provider's audience.
    let audience = p["default_allowed"].as_str().unwrap();
    let mut pod = csi_pod(
        "gcp-app",
        json!({"env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/etc/gcp/credentials.json"}]}),
    );
    let mounts = pod["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap();
    mounts.push(json!({"name": "gcp-creds", "mountPath": "/etc/gcp", "readOnly": true}));
    mounts.push(json!({"name": "gcp-ksa", "mountPath": TOKEN_DIR, "readOnly": true}));
    let volumes = pod["spec"]["volumes"].as_array_mut().unwrap();
    volumes.push(json!({"name": "gcp-creds", "configMap": {"name": "gcp-creds"}}));
    volumes.push(json!({"name": "gcp-ksa", "projected": {"sources": [
        {"serviceAccountToken": {"audience": audience, "path": "token"}}]}}));
    let injected = patched(&pod, &s.review(&pod));

    let credentials = json!({
        "type": "external_account",
        "audience": p["audience"],
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": format!("{TOKEN_DIR}/token")},
    })
    .to_string();
    let token = g.admin(json!({"op": "mint", "sub": sub, "aud": [audience]}))["token"]
        .as_str()
        .unwrap()
        .to_string();
    let cluster = Cluster {
        config_maps: [(
            "gcp-creds",
            [("credentials.json", credentials.as_str())].into(),
        )]
        .into(),
        token: Some(&token),
    };
    let kubelet = Kubelet::with(s.dir.path(), NAMESPACE, &injected, &cluster);
    // The credentials file names the token by its path in the pod: in the namespace secretdrop
    // runs in, that path is the token volume (a tmpfs over /run first, so nothing is created
    // outside the namespace).
    let mut mount = g.wrapper(std::path::Path::new("/bin/sh"));
    mount.args([
        "-c",
        &format!("set -e; mount -t tmpfs -o size=64k tmpfs /run; mkdir -p /run{}; mount --bind \"$0\" {TOKEN_DIR}", TOKEN_DIR.trim_start_matches("/var/run")),
    ]);
    mount.arg(kubelet.volume("gcp-ksa"));
    let out = mount.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let c = kubelet.container("secretdrop");
    let env = kubelet.env(&c);
    let mut args = kubelet.args(&c, &c["args"]);
    args[0] = "init".into();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = g.run(Command::new(common::cli::bin()), &args, &env);
    r.expect_code(0);
    assert_eq!(kubelet.read("app", "/var/secrets/value"), "via-federation");
    assert_eq!(g.count("sts"), 1);
    assert!(!r.stderr.contains(&token) && !r.stderr.contains("via-federation"));
}
