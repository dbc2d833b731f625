//! The Kubernetes manifests, checked offline: every kustomization builds with `kubectl
//! kustomize` and validates against the Kubernetes schemas (`kubernetes-validate --strict`);
//! the webhook is deployed the safe way (failurePolicy Fail only for pods that opted in by label
//! or namespace label, never for itself or system namespaces; no side effects, short timeout, a
//! PriorityClass, 2 replicas and a PDB, hardened containers); cert-manager issues a CA chain
//! whose CA is the caBundle; the self-signed bundle script produces a chain that verifies and
//! lands in both entries; and the pods the webhook produces
//! from the examples validate too, with the patch applying through `kubectl patch --local`.

mod common;

use std::process::Command;

use base64::Engine;
use common::kustomize::{documents, find, kustomize, overlay, root, run, validate};
use common::TestDir;
use secretdrop::webhook::{mutate, patch};
use serde_json::{json, Value};

#[test]
fn every_kustomization_builds_and_validates() {
    for overlay in ["base", "cert-manager", "examples"] {
        let yaml = kustomize(&root().join("manifests").join(overlay));
        let report = validate(&yaml);
        assert!(report.contains("passed"), "{overlay}: {report}");
    }
}

/// The NetworkPolicy: it selects the webhook's pods, lets in only the container's webhook port,
/// and lets out only DNS and the Kubernetes API.
#[test]
fn the_webhook_may_only_be_called_on_its_port_and_only_call_dns_and_the_api() {
    let docs = documents(&kustomize(&root().join("manifests/base")));
    let policy = find(&docs, "NetworkPolicy", "secretdrop-webhook");
    let deployment = find(&docs, "Deployment", "secretdrop-webhook");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(selects(&policy["spec"]["podSelector"], labels));
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    let port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        .clone();
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{"ports": [{"protocol": "TCP", "port": port}]}]),
        "only the webhook port, from anywhere (the API server's address is the cluster's)"
    );
    let egress = policy["spec"]["egress"].as_array().unwrap();
    let mut ports: Vec<(String, u64)> = egress
        .iter()
        .inspect(|rule| assert!(rule.get("to").is_none(), "by port: {rule}"))
        .flat_map(|rule| rule["ports"].as_array().unwrap().clone())
        .map(|p| {
            (
                p["protocol"].as_str().unwrap().to_string(),
                p["port"].as_u64().unwrap(),
            )
        })
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        [
            ("TCP".to_string(), 53),
            ("TCP".to_string(), 443),
            ("TCP".to_string(), 6443),
            ("UDP".to_string(), 53)
        ]
    );
    assert_eq!(policy["metadata"]["namespace"], "secretdrop-system");
}

#[test]
fn the_webhook_is_deployed_the_safe_way() {
    let docs = documents(&kustomize(&root().join("manifests/base")));
    let config = find(&docs, "MutatingWebhookConfiguration", "secretdrop");
    let hooks = config["webhooks"].as_array().unwrap();
    let names: Vec<&str> = hooks.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "inject.secretdrop.dev",
            "convert-csi.secretdrop.dev",
            "convert-vault-agent.secretdrop.dev"
        ]
    );
    let deployment = find(&docs, "Deployment", "secretdrop-webhook");
    let own_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for hook in hooks {
        let name = hook["name"].as_str().unwrap();
        assert_eq!(hook["failurePolicy"], "Fail", "{name}");
        assert_eq!(hook["sideEffects"], "None", "{name}");
        assert!(hook["timeoutSeconds"].as_u64().unwrap() <= 10, "{name}");
        assert_eq!(hook["rules"][0]["operations"], json!(["CREATE"]), "{name}");
        assert_eq!(hook["rules"][0]["resources"], json!(["pods"]), "{name}");
        let path = match name {
            "convert-vault-agent.secretdrop.dev" => "/convert-vault-agent",
            _ => "/mutate",
        };
        assert_eq!(hook["clientConfig"]["service"]["path"], path, "{name}");
        let namespaces = expressions(&hook["namespaceSelector"]);
        let excluded = namespaces
            .iter()
            .find(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
            .unwrap_or_else(|| panic!("{name}: no excluded namespaces"))["values"]
            .to_string();
        for ns in ["kube-system", "kube-public", "secretdrop-system"] {
            assert!(
                excluded.contains(ns),
                "{name}: {ns} is not excluded: {excluded}"
            );
        }
        // The webhook's own pods carry the label both objectSelectors skip.
        let skip = expressions(&hook["objectSelector"])
            .into_iter()
            .find(|e| e["key"] == "secretdrop.dev/webhook" && e["operator"] == "NotIn")
            .unwrap_or_else(|| panic!("{name}: its own pods are not skipped"));
        assert_eq!(
            own_labels[skip["key"].as_str().unwrap()],
            skip["values"][0],
            "{name}"
        );
        assert!(
            own_labels.get("secretdrop.dev/inject").is_none(),
            "the webhook's pods never opt in"
        );
    }
    // Opt-in is a label, so only pods that asked are ever sent (and failing closed is right
    // for them). The selectors are evaluated as the API server does, for pods and namespaces
    // with and without the labels: (pod's inject label, namespace labelled for conversion) ->
    // which entry sends the pod.
    let sent_by = |inject: Option<&str>, label: Option<&str>| -> Vec<&str> {
        let mut pod = json!({});
        if let Some(v) = inject {
            pod["secretdrop.dev/inject"] = json!(v);
        }
        let mut ns = json!({"kubernetes.io/metadata.name": "team"});
        if let Some(label) = label {
            ns[label] = json!("true");
        }
        hooks
            .iter()
            .filter(|h| {
                selects(&h["namespaceSelector"], &ns) && selects(&h["objectSelector"], &pod)
            })
            .map(|h| h["name"].as_str().unwrap())
            .collect()
    };
    let inject = ["inject.secretdrop.dev"];
    let (csi, agent) = (
        "secretdrop.dev/convert-csi",
        "secretdrop.dev/convert-vault-agent",
    );
    for label in [None, Some(csi), Some(agent)] {
        // True values and values that are not booleans (rejected by the webhook) go to the
        // first entry, once; false values opt out, even of conversion.
        for v in ["true", "1", "True", "yes", ""] {
            assert_eq!(sent_by(Some(v), label), inject, "{v:?} {label:?}");
        }
        for v in ["false", "0", "f", "F", "FALSE", "False"] {
            assert!(sent_by(Some(v), label).is_empty(), "{v:?} {label:?}");
        }
    }
    // No label: sent only from a namespace labelled for a conversion, by its entry alone.
    assert!(
        sent_by(None, None).is_empty(),
        "a pod that did not opt in is sent"
    );
    assert_eq!(sent_by(None, Some(csi)), ["convert-csi.secretdrop.dev"]);
    assert_eq!(
        sent_by(None, Some(agent)),
        ["convert-vault-agent.secretdrop.dev"]
    );
    // Never the webhook's own pods, nor system namespaces, whatever their labels.
    let mut own = own_labels.clone();
    own["secretdrop.dev/inject"] = json!("true");
    for h in hooks {
        assert!(!selects(&h["objectSelector"], &own), "{}", h["name"]);
        let system = json!({"kubernetes.io/metadata.name": "kube-system",
            "secretdrop.dev/convert-csi": "true", "secretdrop.dev/convert-vault-agent": "true"});
        assert!(!selects(&h["namespaceSelector"], &system), "{}", h["name"]);
    }

    assert_eq!(deployment["spec"]["replicas"], 2);
    // One replica per schedulable node, strictly (both on one node go down with it); across
    // zones a preference, so one-zone clusters still schedule both.
    let spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        .as_array()
        .unwrap();
    let by_key = |key: &str| {
        spread
            .iter()
            .find(|c| c["topologyKey"] == key)
            .unwrap_or_else(|| panic!("no spread over {key}"))
    };
    let node = by_key("kubernetes.io/hostname");
    assert_eq!(node["whenUnsatisfiable"], "DoNotSchedule");
    assert_eq!(
        node["nodeTaintsPolicy"], "Honor",
        "cordoned nodes do not count"
    );
    assert_eq!(
        by_key("topology.kubernetes.io/zone")["whenUnsatisfiable"],
        "ScheduleAnyway"
    );
    for c in spread {
        assert_eq!(c["maxSkew"], 1);
        assert!(selects(
            &c["labelSelector"],
            &deployment["spec"]["template"]["metadata"]["labels"]
        ));
    }
    let pod = &deployment["spec"]["template"]["spec"];
    let class = pod["priorityClassName"].as_str().unwrap();
    let priority = find(&docs, "PriorityClass", class);
    assert!(priority["value"].as_i64().unwrap() > 0);
    assert!(
        priority["value"].as_i64().unwrap() < 1_000_000_000,
        "user classes stay below system-*"
    );
    assert_eq!(priority["globalDefault"], false);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(c.get("readinessProbe").is_some() && c.get("livenessProbe").is_some());
    assert_eq!(
        find(&docs, "PodDisruptionBudget", "secretdrop-webhook")["spec"]["minAvailable"],
        1
    );
    let ns = find(&docs, "Namespace", "secretdrop-system");
    assert_eq!(ns["metadata"]["labels"]["secretdrop.dev/webhook"], "skip");
}

/// Whether a label selector (matchLabels and matchExpressions) selects an object with `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let by_labels = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    by_labels
        && expressions(selector).iter().all(|e| {
            let key = e["key"].as_str().unwrap();
            let values: Vec<&str> = e["values"]
                .as_array()
                .map(|v| v.iter().map(|x| x.as_str().unwrap()).collect())
                .unwrap_or_default();
            match e["operator"].as_str().unwrap() {
                "In" => label(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                other => panic!("operator {other}"),
            }
        })
}

fn expressions(selector: &Value) -> Vec<Value> {
    selector["matchExpressions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// cert-manager issues a CA of our own (self-signed Issuer -> CA Certificate -> CA Issuer ->
/// serving Certificate) and the cainjector puts that CA, not the serving certificate, into the
/// webhook configuration: renewing the serving certificate leaves the caBundle as it is.
#[test]
fn the_cert_manager_overlay_issues_a_ca_chain_and_injects_the_ca() {
    let docs = documents(&kustomize(&root().join("manifests/cert-manager")));
    let config = find(&docs, "MutatingWebhookConfiguration", "secretdrop");
    let from = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        .as_str()
        .unwrap();
    let (ns, ca_name) = from.split_once('/').unwrap();
    assert_eq!(ns, "secretdrop-system");
    let issuer_of = |cert: &Value| {
        let r = &cert["spec"]["issuerRef"];
        assert_eq!(r["kind"], "Issuer", "{cert}");
        find(&docs, "Issuer", r["name"].as_str().unwrap()).clone()
    };
    // The injected CA: a CA certificate from a self-signed issuer, keeping its key on renewal.
    let ca = find(&docs, "Certificate", ca_name);
    assert_eq!(ca["spec"]["isCA"], true);
    assert!(issuer_of(ca)["spec"].get("selfSigned").is_some());
    assert_eq!(ca["spec"]["privateKey"]["rotationPolicy"], "Never");
    // The CA issuer signs with that CA's secret.
    let serving = find(&docs, "Certificate", "secretdrop-webhook");
    let ca_issuer = issuer_of(serving);
    assert_eq!(
        ca_issuer["spec"]["ca"]["secretName"],
        ca["spec"]["secretName"]
    );
    assert_ne!(serving["spec"]["isCA"], true);
    assert_ne!(serving["metadata"]["name"], ca["metadata"]["name"]);
    // The serving certificate is the one the webhook mounts, for the Service's names.
    let deployment = find(&docs, "Deployment", "secretdrop-webhook");
    let volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v.get("secret").is_some())
        .unwrap();
    assert_eq!(
        volume["secret"]["secretName"],
        serving["spec"]["secretName"]
    );
    let dns = serving["spec"]["dnsNames"].to_string();
    assert!(
        dns.contains("secretdrop-webhook.secretdrop-system.svc"),
        "{dns}"
    );
    // Each entry of the configuration gets the caBundle (the annotation covers them all).
    assert_eq!(config["webhooks"].as_array().unwrap().len(), 3);
    // The serving certificate renews far more often than the CA it hangs off.
    let hours = |c: &Value| {
        c["spec"]["duration"]
            .as_str()
            .unwrap()
            .trim_end_matches('h')
            .parse::<u64>()
            .unwrap()
    };
    assert!(hours(ca) >= 10 * hours(serving));
}

#[test]
fn one_images_entry_in_an_overlay_sets_the_webhook_image_and_the_injected_image() {
    // What `kustomize edit set image secretdrop=REGISTRY/secretdrop:TAG` writes in an overlay.
    let dir = TestDir::new();
    let overlay = overlay(&dir, "overlay", "resources: [../manifests/cert-manager]\nimages:\n  - name: secretdrop\n    newName: registry.example/team/secretdrop\n    newTag: 9.9.9\n");
    let docs = documents(&kustomize(&overlay));
    let c = &find(&docs, "Deployment", "secretdrop-webhook")["spec"]["template"]["spec"]
        ["containers"][0];
    assert_eq!(c["image"], "registry.example/team/secretdrop:9.9.9");
    let injected = common::kubelet::named(&c["env"], "SECRETDROP_IMAGE");
    assert_eq!(injected["value"], "registry.example/team/secretdrop:9.9.9");
    // Unedited, the manifests and the webhook's own default name the same image.
    let base = documents(&kustomize(&root().join("manifests/base")));
    let c = &find(&base, "Deployment", "secretdrop-webhook")["spec"]["template"]["spec"]
        ["containers"][0];
    assert_eq!(c["image"], mutate::Defaults::default().image);
}

/// The component `scripts/self-signed-bundle.sh` writes, in an overlay of the base with the
/// user's image: the chain verifies, the CA lands in both entries, the Secret is where the
/// webhook mounts it, and the overlay's image stays the webhook's.
#[test]
fn the_self_signed_bundle_verifies_and_lands_in_the_webhook_configuration() {
    let dir = TestDir::new();
    let overlay = overlay(
        &dir,
        "mine",
        "resources: [../manifests/base]\ncomponents: [self-signed]\nimages:\n  - name: secretdrop\n    newName: registry.example/team/secretdrop\n",
    );
    let out = overlay.join("self-signed");
    run(
        Command::new(root().join("scripts/self-signed-bundle.sh")).arg(&out),
        None,
    );
    let yaml = kustomize(&overlay);
    let report = validate(&yaml);
    assert!(report.contains("passed"), "{report}");
    let docs = documents(&yaml);
    let hook = find(&docs, "MutatingWebhookConfiguration", "secretdrop");
    let hooks = hook["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 3);
    for h in hooks {
        let ca = base64::engine::general_purpose::STANDARD
            .decode(h["clientConfig"]["caBundle"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            ca,
            std::fs::read(out.join("ca.crt")).unwrap(),
            "{}",
            h["name"]
        );
    }
    let secret = find(&docs, "Secret", "secretdrop-webhook-tls");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["metadata"]["namespace"], "secretdrop-system");
    let c = &find(&docs, "Deployment", "secretdrop-webhook")["spec"]["template"]["spec"]
        ["containers"][0];
    assert_eq!(c["image"], "registry.example/team/secretdrop:0.1.0");
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
    // The key is not world-readable and stays out of git wherever the component is written.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    assert_eq!(
        std::fs::read_to_string(out.join(".gitignore")).unwrap(),
        "*\n"
    );
}

/// Pointed at the user's overlay itself, the script refuses and leaves the overlay as it was:
/// it never replaces a kustomization it did not write. Its own it replaces (a rotation).
#[test]
fn the_self_signed_bundle_never_overwrites_a_kustomization() {
    let dir = TestDir::new();
    let mine = "resources: [../manifests/base]\n";
    let overlay = overlay(&dir, "mine", mine);
    let out = Command::new(root().join("scripts/self-signed-bundle.sh"))
        .arg(&overlay)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kustomization.yaml is not one this script wrote")
            && err.contains("components:"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(overlay.join("kustomization.yaml")).unwrap(),
        mine
    );
    assert!(!overlay.join("tls.key").exists());
    // Run twice into its own directory: the second run rotates the certificate.
    let component = overlay.join("self-signed");
    let script = root().join("scripts/self-signed-bundle.sh");
    run(Command::new(&script).arg(&component), None);
    let first = std::fs::read(component.join("ca.crt")).unwrap();
    run(Command::new(&script).arg(&component), None);
    assert_ne!(std::fs::read(component.join("ca.crt")).unwrap(), first);
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
                         "metadata": {"name": d["metadata"]["name"], "labels": template["metadata"]["labels"],
                                      "annotations": template["metadata"]["annotations"]},
                         "spec": template["spec"]});
        // Only pods the webhook configuration sends are looked at: those with the label.
        if template["metadata"]["labels"]["secretdrop.dev/inject"].is_null() {
            continue;
        }
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

/// The base reads SecretProviderClasses only; ServiceAccounts (IRSA pods) come with the optional
/// component, its own ClusterRole bound to the same ServiceAccount.
#[test]
fn the_webhook_may_only_get_secret_provider_classes_and_service_accounts_are_optional() {
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
    let subjects = json!([{"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": "secretdrop-system"}]);
    assert_eq!(binding["subjects"], subjects);
    // In-cluster config needs the standard token files in the webhook's own pods only.
    assert_eq!(pod["automountServiceAccountToken"], true);
    let sa = find(&docs, "ServiceAccount", "secretdrop-webhook");
    assert_eq!(sa["automountServiceAccountToken"], false);

    let dir = TestDir::new();
    let overlay = overlay(
        &dir,
        "manifests/irsa",
        "resources: [../cert-manager]\ncomponents: [../components/service-accounts]\n",
    );
    let yaml = kustomize(&overlay);
    let report = validate(&yaml);
    assert!(report.contains("passed"), "{report}");
    let docs = documents(&yaml);
    let role = find(&docs, "ClusterRole", "secretdrop-webhook-service-accounts");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"]}])
    );
    let binding = find(
        &docs,
        "ClusterRoleBinding",
        "secretdrop-webhook-service-accounts",
    );
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"], subjects);
    // The base's role is unchanged beside it.
    assert_eq!(
        find(&docs, "ClusterRole", "secretdrop-webhook")["rules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn reading_pull_secrets_is_an_optional_component_beside_service_accounts() {
    let base = documents(&kustomize(&root().join("manifests/base")));
    assert!(
        !base
            .iter()
            .any(|d| d["kind"] == "ClusterRole" && d["rules"].to_string().contains("\"secrets\"")),
        "the base reads no Secret"
    );
    let dir = TestDir::new();
    let overlay = overlay(
        &dir,
        "manifests/pull-secrets",
        "resources: [../cert-manager]
components: [../components/service-accounts, ../components/pull-secrets]
",
    );
    let yaml = kustomize(&overlay);
    let report = validate(&yaml);
    assert!(report.contains("passed"), "{report}");
    let docs = documents(&yaml);
    let role = find(&docs, "ClusterRole", "secretdrop-webhook-pull-secrets");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])
    );
    let binding = find(
        &docs,
        "ClusterRoleBinding",
        "secretdrop-webhook-pull-secrets",
    );
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], "secretdrop-webhook");
    find(&docs, "ClusterRole", "secretdrop-webhook-service-accounts");
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
    let overlay = overlay(
        &dir,
        "manifests/no-driver",
        "resources: [../base]\ncomponents: [../components/secretproviderclass-crd]\n",
    );
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
