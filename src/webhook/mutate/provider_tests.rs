//! The webhook's injection of cloud providers' volumes (docs/webhook.md, "AWS"), tested
//! through [`super::mutate_in`].

use super::*;
use crate::net::kube::KubeError;
use crate::provider::aws::credentials::{POD_IDENTITY_IPV4, POD_IDENTITY_IPV6};
use crate::provider::aws::pod::{
    AwsUse, AWS_TOKEN_VOLUME, IRSA_AUDIENCE, IRSA_DIR, POD_IDENTITY_DIR, POD_IDENTITY_FILE,
    ROLE_ANNOTATION,
};

const OBJECTS: &str = "- {objectName: prod/db, objectType: secretsmanager}\n";

fn defaults(sa: Result<Value, KubeError>) -> Defaults {
    Defaults {
        service_accounts: ClassSource::new(move |ns, name, _| {
            assert_eq!((ns, name), ("team", "app"));
            sa.clone()
        }),
        ..Defaults::default()
    }
}

fn pod(extra: Value) -> Value {
    let mut a = json!({"secretdrop.dev/inject": "true", "secretdrop.dev/provider": "aws",
        "secretdrop.dev/region": "eu-west-1", "secretdrop.dev/objects": OBJECTS});
    for (k, v) in extra.as_object().unwrap() {
        a[k] = v.clone();
    }
    json!({"metadata": {"annotations": a}, "spec": {"serviceAccountName": "app",
        "containers": [{"name": "app", "image": "nginx"}]}})
}

fn sa(annotations: Value) -> Result<Value, KubeError> {
    Ok(json!({"metadata": {"name": "app", "annotations": annotations}}))
}

fn injected(d: &Defaults, p: &Value) -> Value {
    match mutate_in(p, "team", d, &[]) {
        Decision::Inject { pod, .. } => pod,
        other => panic!("{other:?}"),
    }
}

fn ours(pod: &Value) -> Value {
    crate::webhook::named(&pod["spec"]["initContainers"], CONTAINER).clone()
}

#[test]
fn irsa_gets_the_role_of_the_service_account_and_an_sts_token() {
    let arn = "arn:aws:iam::111122223333:role/app";
    let out = injected(
        &defaults(sa(json!({ROLE_ANNOTATION: arn}))),
        &pod(json!({})),
    );
    let c = ours(&out);
    assert_eq!(
        c["env"],
        json!([{"name": "AWS_ROLE_ARN", "value": arn},
               {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": format!("{IRSA_DIR}/token")},
               {"name": "SECRETDROP_ADMITTED", "value": "aws"}])
    );
    assert!(c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == AWS_TOKEN_VOLUME && m["mountPath"] == IRSA_DIR));
    // An AWS-only pod has no Vault token at all.
    assert!(!c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == TOKEN_VOLUME));
    assert!(out["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["name"] != TOKEN_VOLUME));
    assert!(!c["args"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "--token-path"));
    let token = crate::webhook::named(&out["spec"]["volumes"], AWS_TOKEN_VOLUME);
    assert_eq!(
        token["projected"]["sources"],
        json!([{"serviceAccountToken": {"path": "token", "expirationSeconds": 86400, "audience": IRSA_AUDIENCE}}])
    );
}

#[test]
fn pod_identity_needs_no_service_account() {
    let d = defaults(Err(KubeError::Failed("must not be called".into())));
    let out = injected(&d, &pod(json!({"secretdrop.dev/use-pod-identity": "true"})));
    let env = &ours(&out)["env"];
    assert_eq!(env[0]["value"], POD_IDENTITY_IPV4);
    assert_eq!(
        env[1]["value"],
        format!("{POD_IDENTITY_DIR}/{POD_IDENTITY_FILE}")
    );
    let out = injected(
        &d,
        &pod(
            json!({"secretdrop.dev/use-pod-identity": "true", "secretdrop.dev/preferred-address-type": "ipv6"}),
        ),
    );
    assert_eq!(ours(&out)["env"][0]["value"], POD_IDENTITY_IPV6);
}

#[test]
fn refusals_say_why() {
    let arn = json!({ROLE_ANNOTATION: "arn:aws:iam::111122223333:role/app"});
    let cases: Vec<(Defaults, Value, &str)> = vec![
        (
            defaults(Err(KubeError::NotFound)),
            json!({}),
            "ServiceAccount \"app\" not found in namespace \"team\"",
        ),
        (
            defaults(sa(json!({}))),
            json!({}),
            "has no eks.amazonaws.com/role-arn annotation",
        ),
        (
            defaults(sa(
                json!({ROLE_ANNOTATION: "arn:aws:iam::1:role/x\nEVIL=1"}),
            )),
            json!({}),
            "is not an IAM role ARN",
        ),
        (Defaults::default(), json!({}), "no Kubernetes API access"),
        (
            defaults(sa(arn.clone())),
            json!({"secretdrop.dev/role": "r"}),
            "secretdrop.dev/role: only applies to Vault",
        ),
        (
            defaults(sa(arn.clone())),
            json!({"secretdrop.dev/vault-address": "http://v:8200"}),
            "secretdrop.dev/vault-address: only applies to Vault",
        ),
        (
            defaults(sa(arn.clone())),
            json!({"secretdrop.dev/region": "evil.example.com/x"}),
            "secretdrop.dev/region: \"evil.example.com/x\" is not an AWS region",
        ),
        (
            defaults(sa(arn.clone())),
            json!({"secretdrop.dev/provider": "conjur"}),
            "secretdrop.dev/provider: \"conjur\" is not a provider",
        ),
        (
            defaults(sa(arn.clone())),
            json!({"secretdrop.dev/provider": "gcp"}),
            "secretdrop.dev/provider: provider gcp is read from a SecretProviderClass only",
        ),
        (
            defaults(sa(arn.clone())),
            json!({"secretdrop.dev/objects": "- {objectName: x}\n"}),
            "secretdrop.dev/objects[0]",
        ),
    ];
    for (d, extra, want) in cases {
        match mutate_in(&pod(extra), "team", &d, &[]) {
            Decision::Reject(m) => assert!(m.contains(want), "{want}: {m}"),
            other => panic!("{want}: {other:?}"),
        }
    }
    // AWS parameters on a Vault pod are refused too.
    let p = json!({"metadata": {"annotations": {"secretdrop.dev/inject": "true",
        "secretdrop.dev/role": "r", "secretdrop.dev/vault-address": "http://v:8200",
        "secretdrop.dev/objects": "- {objectName: a, secretPath: secret/data/a, secretKey: k}\n",
        "secretdrop.dev/region": "eu-west-1"}}, "spec": {"containers": [{"name": "app"}]}});
    match mutate_in(&p, "team", &Defaults::default(), &[]) {
        Decision::Reject(m) => assert!(
            m.contains("secretdrop.dev/region: only applies with secretdrop.dev/provider: aws"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn aws_volumes_that_get_credentials_differently_are_refused() {
    let arn = json!({ROLE_ANNOTATION: "arn:aws:iam::111122223333:role/app"});
    let csi = CsiVolume {
        name: "pod-identity".into(),
        class: "{}".into(),
        audience: None,
        address: None,
        modes: Vec::new(),
        pod_use: Some(Use::Aws(AwsUse {
            pod_identity: true,
            ipv6: false,
        })),
    };
    match mutate_in(&pod(json!({})), "team", &defaults(sa(arn)), &[csi]) {
        Decision::Reject(m) => assert!(
            m.contains("get AWS credentials differently") && m.contains("volume \"pod-identity\""),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_fuzz_seeds_reach_the_aws_injection() {
    use crate::webhook::review::{answer, Outcome};
    let d = crate::fuzz_entry::admission_defaults();
    for (seed, mode) in [
        ("aws-annotations.json", "init"),
        ("aws-csi-pod-identity.json", "sidecar"),
    ] {
        let path = format!("{}/fuzz/seeds/admission/{seed}", env!("CARGO_MANIFEST_DIR"));
        let review: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let (_, outcome) = answer(&review, &d).unwrap();
        assert_eq!(outcome, Outcome::Injected(mode), "{seed}");
    }
}

/// A pod with one converted `provider: gcp` CSI volume, its app container as given.
fn gcp_pod(app: Value, volumes: Value) -> Decision {
    let csi = CsiVolume {
        name: "gcp-secrets".into(),
        class: "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\n\
                metadata: {name: g}\nspec:\n  provider: gcp\n  parameters:\n    secrets: |\n      \
                - {resourceName: projects/p/secrets/s/versions/latest, path: s}\n"
            .into(),
        audience: None,
        address: None,
        modes: Vec::new(),
        pod_use: Some(Use::Gcp),
    };
    // Not opted in by annotation: injected for its CSI volume alone.
    let p = json!({"metadata": {"name": "app"},
        "spec": {"containers": [app], "volumes": volumes}});
    mutate_in(&p, "team", &Defaults::default(), &[csi])
}

fn injected_pod(d: Decision) -> Value {
    match d {
        Decision::Inject { pod, .. } => pod,
        other => panic!("{other:?}"),
    }
}

#[test]
fn gcp_volumes_use_the_metadata_server_with_nothing_of_vaults() {
    let pod = injected_pod(gcp_pod(json!({"name": "app", "image": "nginx"}), json!([])));
    let c = ours(&pod);
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        !env.iter()
            .any(|e| e.starts_with("VAULT_") || e.starts_with("GOOGLE_")),
        "{env:?}"
    );
    assert!(env.contains(&"SECRETDROP_ADMITTED"), "{env:?}");
    let mounts = c["volumeMounts"].to_string();
    assert!(!mounts.contains(TOKEN_VOLUME), "{mounts}");
    assert!(
        !c["args"].to_string().contains("--token-path"),
        "{}",
        c["args"]
    );
    let volumes = pod["spec"]["volumes"].to_string();
    assert!(
        !volumes.contains("serviceAccountToken"),
        "no token is projected: {volumes}"
    );
}

#[test]
fn gcp_volumes_under_federation_get_the_apps_credentials_file_and_token_mount() {
    let creds = "/var/run/secrets/tokens/gcp-ksa/google-application-credentials.json";
    let app = json!({"name": "app", "image": "nginx",
        "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": creds}],
        "volumeMounts": [{"name": "gcp-ksa", "mountPath": "/var/run/secrets/tokens/gcp-ksa"}]});
    let volumes = json!([{"name": "gcp-ksa", "projected": {"sources": [
        {"serviceAccountToken": {"audience": "p.svc.id.goog", "path": "token"}},
        {"configMap": {"name": "creds"}}]}}]);
    let pod = injected_pod(gcp_pod(app, volumes));
    let c = ours(&pod);
    assert!(c["env"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": creds})));
    assert!(c["volumeMounts"].as_array().unwrap().contains(
        &json!({"name": "gcp-ksa", "mountPath": "/var/run/secrets/tokens/gcp-ksa", "readOnly": true})
    ));
    let unmounted = json!({"name": "app",
        "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/nowhere/c.json"}]});
    match gcp_pod(unmounted, json!([])) {
        Decision::Reject(m) => assert!(
            m.contains("mounts no volume holding it") && m.contains("volume \"gcp-secrets\""),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}
