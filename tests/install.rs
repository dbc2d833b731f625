//! The README's install path, run as written: its shell blocks (the overlay of step 2, the
//! self-signed component of step 4) run with bash in a copy of the repository's `manifests/` and
//! `scripts/`, and `kubectl apply -k` is replaced by `kubectl kustomize`, which renders the same
//! objects. What comes out must run the user's image with the user's Vault address, get its TLS
//! where the webhook mounts it, and, with another namespace, name no `secretdrop-system`
//! anywhere (namespace fields, the webhook's Service, the ClusterRoleBindings, the certificate's
//! DNS names, the CA to inject).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::kustomize::{documents, find, kustomize, root, run, validate};
use common::TestDir;
use serde_json::Value;

/// The README's fenced `sh` block that starts with `first_line`.
fn readme_block(first_line: &str) -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find(&format!("```sh\n{first_line}"))
        .unwrap_or_else(|| panic!("README.md has no sh block starting with {first_line:?}"))
        + "```sh\n".len();
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_string()
}

/// A copy of the repository's manifests and scripts, as a checkout has them.
fn checkout(dir: &TestDir) -> PathBuf {
    let at = dir.join("repo");
    std::fs::create_dir_all(&at).unwrap();
    for d in ["manifests", "scripts"] {
        run(
            Command::new("cp").arg("-r").arg(root().join(d)).arg(&at),
            None,
        );
    }
    // The git-ignored default output of self-signed-bundle.sh, if a developer made one.
    let _ = std::fs::remove_dir_all(at.join("manifests/self-signed"));
    at
}

/// Runs a README block in `repo`, with `kubectl apply -k` rendering instead of applying.
fn sh(repo: &Path, script: &str, env: &[(&str, &str)]) -> String {
    let script = script.replace("kubectl apply -k", "kubectl kustomize");
    run(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(repo)
            .envs(env.iter().copied()),
        None,
    )
}

fn webhook_container(docs: &[Value]) -> &Value {
    &find(docs, "Deployment", "secretdrop-webhook")["spec"]["template"]["spec"]["containers"][0]
}

fn env<'a>(container: &'a Value, name: &str) -> &'a str {
    common::kubelet::named(&container["env"], name)["value"]
        .as_str()
        .unwrap()
}

/// The overlay of step 2: the user's image, injected too; the Vault address by its variables,
/// with no flag in `args` to win over them; cert-manager's TLS.
fn check_step_2(docs: &[Value]) {
    let c = webhook_container(docs);
    let image = "registry.example.com/platform/secretdrop:0.1.0";
    assert_eq!(c["image"], image);
    assert_eq!(env(c, "SECRETDROP_IMAGE"), image);
    assert_eq!(
        env(c, "SECRETDROP_VAULT_ADDRESS"),
        "https://vault.example.com:8200"
    );
    assert_eq!(
        env(c, "SECRETDROP_ALLOWED_VAULT_ADDRESS"),
        "https://vault.example.com:8200"
    );
    let args = c["args"].to_string();
    assert!(!args.contains("vault-address"), "{args}");
}

#[test]
fn the_readme_overlay_renders_with_kubectl_kustomize() {
    let dir = TestDir::new();
    let repo = checkout(&dir);
    sh(&repo, &readme_block("mkdir my-secretdrop"), &[]);
    // Step 4 with cert-manager, as the README gives it.
    let apply = readme_block("kubectl apply -k my-secretdrop");
    assert_eq!(apply.trim(), "kubectl apply -k my-secretdrop");
    let yaml = sh(&repo, &apply, &[]);
    let report = validate(&yaml);
    assert!(report.contains("passed"), "{report}");
    let docs = documents(&yaml);
    check_step_2(&docs);
    let hook = find(&docs, "MutatingWebhookConfiguration", "secretdrop");
    assert_eq!(
        hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "secretdrop-system/secretdrop-ca"
    );
    assert!(docs.iter().any(|d| d["kind"] == "Certificate"));
}

#[test]
fn the_readme_overlay_without_cert_manager_composes_with_the_self_signed_component() {
    let dir = TestDir::new();
    let repo = checkout(&dir);
    sh(&repo, &readme_block("mkdir my-secretdrop"), &[]);
    let yaml = sh(
        &repo,
        &readme_block("scripts/self-signed-bundle.sh my-secretdrop/self-signed"),
        &[],
    );
    let report = validate(&yaml);
    assert!(report.contains("passed"), "{report}");
    let docs = documents(&yaml);
    check_step_2(&docs);
    assert!(
        !docs.iter().any(|d| d["kind"] == "Certificate"),
        "no cert-manager"
    );
    let secret = find(&docs, "Secret", "secretdrop-webhook-tls");
    assert_eq!(secret["metadata"]["namespace"], "secretdrop-system");
    let ca = std::fs::read(repo.join("my-secretdrop/self-signed/ca.crt")).unwrap();
    use base64::Engine;
    for h in find(&docs, "MutatingWebhookConfiguration", "secretdrop")["webhooks"]
        .as_array()
        .unwrap()
    {
        let bundle = base64::engine::general_purpose::STANDARD
            .decode(h["clientConfig"]["caBundle"].as_str().unwrap())
            .unwrap();
        assert_eq!(bundle, ca, "{}", h["name"]);
    }
}

/// Every place that names the namespace, in a rendering for `ns`.
fn check_namespace(yaml: &str, ns: &str) -> Vec<Value> {
    assert!(
        !yaml.contains("secretdrop-system"),
        "secretdrop-system left behind:\n{yaml}"
    );
    let docs = documents(yaml);
    for d in &docs {
        let kind = d["kind"].as_str().unwrap();
        let cluster_wide = [
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "PriorityClass",
            "MutatingWebhookConfiguration",
        ];
        if !cluster_wide.contains(&kind) {
            assert_eq!(d["metadata"]["namespace"], ns, "{kind}");
        }
    }
    find(&docs, "Namespace", ns);
    for binding in docs.iter().filter(|d| d["kind"] == "ClusterRoleBinding") {
        assert_eq!(binding["subjects"][0]["namespace"], ns, "{binding}");
    }
    for h in find(&docs, "MutatingWebhookConfiguration", "secretdrop")["webhooks"]
        .as_array()
        .unwrap()
    {
        assert_eq!(h["clientConfig"]["service"]["namespace"], ns);
        let excluded = h["namespaceSelector"]["matchExpressions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == "kubernetes.io/metadata.name")
            .unwrap()["values"]
            .clone();
        assert!(
            excluded.as_array().unwrap().contains(&Value::from(ns)),
            "{excluded}"
        );
    }
    docs
}

/// Another namespace in the README's overlay, with cert-manager: every field that names it
/// follows, and the serving certificate is for the Service's name in it.
#[test]
fn another_namespace_leaves_no_secretdrop_system_behind_with_cert_manager() {
    let dir = TestDir::new();
    let repo = checkout(&dir);
    let step_2 = readme_block("mkdir my-secretdrop")
        .replace("namespace: secretdrop-system", "namespace: team-secrets");
    assert!(step_2.contains("namespace: team-secrets"));
    sh(&repo, &step_2, &[]);
    // With the ServiceAccounts component, whose binding must follow too.
    std::fs::OpenOptions::new()
        .append(true)
        .open(repo.join("my-secretdrop/kustomization.yaml"))
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(b"components: [../manifests/components/service-accounts]\n")
        })
        .unwrap();
    let yaml = kustomize(&repo.join("my-secretdrop"));
    let docs = check_namespace(&yaml, "team-secrets");
    check_step_2(&docs);
    assert_eq!(
        docs.iter()
            .filter(|d| d["kind"] == "ClusterRoleBinding")
            .count(),
        2
    );
    let hook = find(&docs, "MutatingWebhookConfiguration", "secretdrop");
    assert_eq!(
        hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "team-secrets/secretdrop-ca"
    );
    let cert = find(&docs, "Certificate", "secretdrop-webhook");
    assert_eq!(
        cert["spec"]["dnsNames"],
        serde_json::json!([
            "secretdrop-webhook.team-secrets.svc",
            "secretdrop-webhook.team-secrets.svc.cluster.local"
        ])
    );
}

/// The same without cert-manager: the self-signed component made with `NAMESPACE=`.
#[test]
fn another_namespace_leaves_no_secretdrop_system_behind_with_the_self_signed_component() {
    let dir = TestDir::new();
    let repo = checkout(&dir);
    let step_2 = readme_block("mkdir my-secretdrop")
        .replace("namespace: secretdrop-system", "namespace: team-secrets");
    sh(&repo, &step_2, &[]);
    let yaml = sh(
        &repo,
        &readme_block("scripts/self-signed-bundle.sh my-secretdrop/self-signed"),
        &[("NAMESPACE", "team-secrets")],
    );
    let docs = check_namespace(&yaml, "team-secrets");
    check_step_2(&docs);
    find(&docs, "Secret", "secretdrop-webhook-tls");
    let san = run(
        Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(repo.join("my-secretdrop/self-signed/tls.crt")),
        None,
    );
    assert!(
        san.contains("DNS:secretdrop-webhook.team-secrets.svc,")
            && san.contains("DNS:secretdrop-webhook.team-secrets.svc.cluster.local"),
        "{san}"
    );
}

/// The transformer changes nothing when the namespace is the base's own.
#[test]
fn following_the_namespace_is_a_no_op_without_a_namespace() {
    let dir = TestDir::new();
    let overlay = common::kustomize::overlay(
        &dir,
        "mine",
        "resources: [../manifests/cert-manager]\ntransformers: [../manifests/follow-namespace]\n",
    );
    assert_eq!(
        kustomize(&overlay),
        kustomize(&root().join("manifests/cert-manager"))
    );
}

/// The webhook run with the variables of the README's overlay (as the Deployment gives them):
/// a pod that names no Vault gets the overlay's address, a pod naming another is refused.
#[test]
fn the_overlays_vault_address_variables_reach_the_webhook() {
    let dir = TestDir::new();
    let repo = checkout(&dir);
    sh(&repo, &readme_block("mkdir my-secretdrop"), &[]);
    let docs = documents(&kustomize(&repo.join("my-secretdrop")));
    let c = webhook_container(&docs);
    let vars: Vec<(String, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"].as_str().unwrap().contains("VAULT_ADDRESS"))
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            (name, e["value"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(vars.len(), 2, "{vars:?}");
    let (crt, key) = common::pki::self_signed(dir.path(), "webhook");
    let webhook = common::webhook::Webhook::start_with(dir.path(), &crt, &key, &[], |cmd| {
        cmd.envs(vars.iter().map(|(k, v)| (k, v)));
    });
    let pod = |annotations: Value| {
        serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "app", "labels": {"secretdrop.dev/inject": "true"},
                         "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "app"}]}})
    };
    let objects = "- {objectName: a, secretPath: secret/data/a, secretKey: k}";
    let plain =
        pod(serde_json::json!({"secretdrop.dev/role": "r", "secretdrop.dev/objects": objects}));
    let injected = common::webhook::patched(&plain, &webhook.review(&crt, &plain));
    let sidecar = injected["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["image"] == "secretdrop:0.1.0")
        .unwrap();
    assert_eq!(env(sidecar, "VAULT_ADDR"), "https://vault.example.com:8200");
    let elsewhere = pod(
        serde_json::json!({"secretdrop.dev/role": "r", "secretdrop.dev/objects": objects,
                                           "secretdrop.dev/vault-address": "https://vault.other.example:8200"}),
    );
    let refused = common::webhook::refusal(&webhook.review(&crt, &elsewhere));
    assert!(
        refused.contains("https://vault.example.com:8200"),
        "{refused}"
    );
}
