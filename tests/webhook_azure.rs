//! `provider: azure` through the webhook: a Secrets Store CSI volume whose class says
//! `provider: azure` is converted like Vault and AWS ones, with no Azure flag. The real webhook
//! binary reads the class and the pod's ServiceAccount (its Azure Workload Identity
//! annotations) from a Kubernetes API stand-in; the admitted pod is laid out by the tests'
//! Kubelet stand-in, which mints the projected token for the audience the spec asks
//! (`api://AzureADTokenExchange`), and the injected container's command runs inside the Azure
//! stand-in's namespace, where Entra ID accepts that token and nothing else, and Key Vault
//! answers at its real host name.

mod common;

use common::azure::{Azure, AUDIENCE, PUBLIC_LOGIN};
use common::cli::run_command;
use common::kubelet::Kubelet;
use common::unique;
use common::webhook::{patched, ApiScene};
use serde_json::{json, Value};

const NAMESPACE: &str = "default";

fn azure_class(name: &str, parameters: Value) -> Value {
    json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
           "metadata": {"name": name}, "spec": {"provider": "azure", "parameters": parameters}})
}

/// The Azure provider's documented pod: one app container mounting the CSI volume, labelled
/// for Azure Workload Identity.
fn csi_pod(service_account: &str, class: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "busybox-", "labels": {"azure.workload.identity/use": "true"}},
        "spec": {"serviceAccountName": service_account,
            "containers": [{"name": "busybox", "image": "busybox", "volumeMounts": [
                {"name": "secrets-store01-inline", "mountPath": "/mnt/secrets-store", "readOnly": true}]}],
            "volumes": [{"name": "secrets-store01-inline", "csi": {"driver": "secrets-store.csi.k8s.io",
                "readOnly": true, "volumeAttributes": {"secretProviderClass": class}}}]}})
}

fn env_of(kubelet: &Kubelet, name: &str) -> Option<String> {
    kubelet.container("secretdrop")["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].as_str().unwrap().to_string())
}

#[test]
fn a_converted_azure_csi_volume_renders_with_workload_identity_from_the_admitted_spec() {
    let az = Azure::shared();
    let tenant = unique("tenant");
    let client = unique("client");
    az.admin(json!({"op": "app", "client_id": client, "tenant": tenant,
        "federated": [{"issuer": common::K8S_ISSUER,
            "subject": format!("system:serviceaccount:{NAMESPACE}:workload-sa"), "audience": AUDIENCE}]}));
    let vault = unique("kv");
    let host = az.vault(
        &vault,
        &tenant,
        PUBLIC_LOGIN,
        json!({&client: ["secrets/get"]}),
    );
    let value = unique("from-key-vault");
    az.admin(json!({"op": "secret", "host": host, "name": "secret1", "value": value}));

    let s = ApiScene::new(&[]);
    // The class names neither client nor tenant: the ServiceAccount's annotations give them.
    let objects = "array:\n  - |\n    objectName: secret1\n    objectType: secret\n";
    s.api.put(
        NAMESPACE,
        azure_class(
            "azure-kvname-wi",
            json!({"keyvaultName": vault, "objects": objects}),
        ),
    );
    s.api.put_service_account(
        NAMESPACE,
        "workload-sa",
        json!({
        "azure.workload.identity/client-id": client, "azure.workload.identity/tenant-id": tenant}),
    );
    let pod = csi_pod("workload-sa", "azure-kvname-wi");
    let injected = patched(&pod, &s.review(&pod));
    assert_eq!(
        injected["spec"]["containers"], pod["spec"]["containers"],
        "the app is untouched"
    );
    let volumes = injected["spec"]["volumes"].as_array().unwrap();
    assert!(
        volumes.iter().all(|v| v["name"] != "secretdrop-token"),
        "no Vault token: {volumes:?}"
    );
    let token =
        common::kubelet::named(&injected["spec"]["volumes"], "azure-identity-token").clone();
    assert_eq!(
        token["projected"]["sources"],
        json!([{"serviceAccountToken": {"path": "azure-identity-token", "expirationSeconds": 3600, "audience": AUDIENCE}}])
    );

    let kubelet = Kubelet::new(s.dir.path(), NAMESPACE, &injected);
    assert_eq!(
        env_of(&kubelet, "AZURE_CLIENT_ID").as_deref(),
        Some(client.as_str())
    );
    assert_eq!(
        env_of(&kubelet, "AZURE_TENANT_ID").as_deref(),
        Some(tenant.as_str())
    );
    assert_eq!(
        env_of(&kubelet, "AZURE_FEDERATED_TOKEN_FILE").as_deref(),
        Some("/var/run/secrets/azure/tokens/azure-identity-token")
    );
    assert_eq!(env_of(&kubelet, "VAULT_ADDR"), None);
    assert_eq!(
        env_of(&kubelet, "SSL_CERT_FILE"),
        None,
        "the image's CA bundle"
    );

    // The injected sidecar's command line, run once as init, in the stand-in's namespace with
    // the test CA in place of the image's bundle.
    let c = kubelet.container("secretdrop");
    let mut args = kubelet.args(&c, &c["args"]);
    args[0] = "init".into();
    let mut env = kubelet.env(&c);
    env.push(("SSL_CERT_FILE".into(), az.ca.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = run_command(az.command(common::cli::bin()), &args, &envs);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(kubelet.read("busybox", "/mnt/secrets-store/secret1"), value);
    assert!(!run.stderr.contains(&value));
    assert_eq!(az.exchanges(&client), 1);
}

#[test]
fn azure_volumes_share_the_workload_identity_token_volume_and_imds_classes_are_refused() {
    let s = ApiScene::new(&[]);
    let objects = "array:\n  - |\n    objectName: s\n    objectType: secret\n";
    s.api.put(
        NAMESPACE,
        azure_class(
            "wi",
            json!({"keyvaultName": "kv-one", "tenantId": "t", "clientID": "c", "objects": objects}),
        ),
    );
    s.api.put(
        NAMESPACE,
        azure_class(
            "imds",
            json!({"keyvaultName": "kv-one", "tenantId": "t",
        "useVMManagedIdentity": "true", "objects": objects}),
        ),
    );
    s.api.put_service_account(NAMESPACE, "plain", json!({}));
    // Azure Workload Identity's webhook admitted the pod first: its token volume is there.
    let mut pod = csi_pod("plain", "wi");
    pod["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "azure-identity-token",
        "projected": {"sources": [{"serviceAccountToken": {"path": "azure-identity-token",
            "expirationSeconds": 3600, "audience": AUDIENCE}}]}}));
    let injected = patched(&pod, &s.review(&pod));
    let named = injected["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["name"] == "azure-identity-token")
        .count();
    assert_eq!(named, 1, "one token volume");
    let c = common::kubelet::container(&injected, "secretdrop");
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"AZURE_FEDERATED_TOKEN_FILE") && !env.contains(&"AZURE_CLIENT_ID"),
        "{env:?}"
    );
    let m = s.refusal(&csi_pod("plain", "imds"));
    assert!(
        m.contains("useVMManagedIdentity is not converted") && m.contains("volume"),
        "{m}"
    );
}
