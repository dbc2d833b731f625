//! `provider: aws` through the webhook: a converted CSI volume whose SecretProviderClass says
//! `provider: aws`, and an annotation pod with `secretdrop.dev/provider: aws`, go through the
//! real webhook binary, which reads the pod's ServiceAccount for its IRSA role from a
//! Kubernetes API stand-in. The admitted pod is then run from its spec alone by the tests'
//! Kubelet stand-in, which mints the projected token for the audience the spec asks
//! (`sts.amazonaws.com`), and the files arrive from moto, whose STS refuses any other
//! audience. Refusals (no ServiceAccount, no role annotation, an AWS volume beside another,
//! Vault annotations on an AWS pod) and attacks (a junk role ARN, a region holding a host or a
//! path) reach `kubectl` with a reason.

mod common;

use std::time::Duration;

use common::cli::{read, Run};
use common::kubelet::{Kubelet, Running};
use common::moto::{call, Moto};
use common::webhook::{patched, ApiScene};
use common::{unique, Server, TestDir};
use serde_json::{json, Value};

const REGION: &str = "us-west-2";
const NAMESPACE: &str = "default";
const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// A secret and a parameter in moto, and a role that may read them: (secret, parameter, role).
fn resources(moto: &Moto, value: &str) -> (String, String, String) {
    let (secret, param) = (unique("hook-secret"), unique("hook-param"));
    moto.admin(json!([
        call(
            "secretsmanager",
            REGION,
            "create_secret",
            json!({"Name": secret, "SecretString": value})
        ),
        call(
            "ssm",
            REGION,
            "put_parameter",
            json!({"Name": param, "Value": format!("{value}-param"), "Type": "SecureString"})
        ),
    ]));
    (secret, param, moto.role(&unique("hook-reader"), true))
}

fn objects(secret: &str, param: &str) -> String {
    format!(
        "- {{objectName: {secret}, objectType: secretsmanager, objectAlias: db}}\n- {{objectName: {param}, objectType: ssmparameter, objectAlias: param}}\n"
    )
}

fn aws_class(name: &str, parameters: Value) -> Value {
    json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
           "metadata": {"name": name}, "spec": {"provider": "aws", "parameters": parameters}})
}

/// A Deployment's pod: one app container mounting the CSI volume `secrets`, as the AWS
/// provider's documentation writes it.
fn csi_pod(service_account: &str, class: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-5c8f7d9b6-", "labels": {"app": "web"}},
        "spec": {"serviceAccountName": service_account,
            "containers": [{"name": "app", "image": "nginx", "volumeMounts": [
                {"name": "secrets", "mountPath": "/mnt/secrets-store", "readOnly": true}]}],
            "volumes": [{"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io",
                "readOnly": true, "volumeAttributes": {"secretProviderClass": class}}}]}})
}

fn annotated_pod(service_account: &str, annotations: Value) -> Value {
    let mut a = json!({"secretdrop.dev/inject": "true", "secretdrop.dev/provider": "aws"});
    for (k, v) in annotations.as_object().unwrap() {
        a[k] = v.clone();
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "job-", "annotations": a},
        "spec": {"serviceAccountName": service_account,
            "containers": [{"name": "app", "image": "busybox"}]}})
}

/// The injected container's env as the Kubelet stand-in runs it: paths mapped to where its
/// mounts are on the host, plus the endpoint a cluster would not need (moto stands in for AWS).
fn host_env(kubelet: &Kubelet, container: &str, moto: &Moto) -> Vec<(String, String)> {
    let c = kubelet.container(container);
    let mut env: Vec<(String, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (k, v) = (e["name"].as_str().unwrap(), e["value"].as_str().unwrap());
            let v = match v.starts_with('/') {
                true => kubelet.host_path(&c, v).unwrap().display().to_string(),
                false => v.to_string(),
            };
            (k.to_string(), v)
        })
        .collect();
    env.push(("AWS_ENDPOINT_URL".into(), moto.endpoint()));
    env
}

fn env_of(kubelet: &Kubelet, container: &str, name: &str) -> Option<String> {
    kubelet.container(container)["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].as_str().unwrap().to_string())
}

/// Registers the token the Kubelet stand-in minted at `path` (inside `container`) with moto's
/// STS, as the cluster's OIDC provider would be registered with IAM; returns its content.
fn trust_minted(moto: &Moto, kubelet: &Kubelet, container: &str, path: &str) -> String {
    let c = kubelet.container(container);
    let token = read(kubelet.host_path(&c, path).unwrap());
    moto.trust_token(&token);
    token
}

/// Runs `container`'s `secretdrop` command line as the Kubelet stand-in maps it, with `env`
/// and `command` in place of the container's own (`init` for a sidecar's restart).
fn run_container(
    kubelet: &Kubelet,
    container: &str,
    command: &str,
    env: &[(String, String)],
) -> Run {
    let c = kubelet.container(container);
    let mut args = kubelet.args(&c, &c["args"]);
    args[0] = command.to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::cli::secretdrop(&args, &envs)
}

/// An annotation pod with `annotations` on ServiceAccount `service_account` (whose IRSA role is
/// `role`), admitted by a webhook with `--aws-region`: the scene and the injected pod.
fn admit_annotation_pod(
    service_account: &str,
    role: &str,
    annotations: Value,
) -> (ApiScene, Value) {
    let s = ApiScene::new(&["--aws-region", REGION]);
    s.api
        .put_service_account(NAMESPACE, service_account, json!({ROLE_ANNOTATION: role}));
    let pod = annotated_pod(service_account, annotations);
    let injected = patched(&pod, &s.review(&pod));
    (s, injected)
}

/// The injected `secretdrop` sidecar run by the Kubelet stand-in with `env`, once started.
fn start_sidecar(kubelet: &Kubelet, s: &ApiScene, env: &[(String, String)]) -> Running {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let sidecar = kubelet.start_with_env("secretdrop", &s.dir.join("sidecar.log"), &env);
    kubelet.wait_started("secretdrop", &sidecar, Duration::from_secs(30));
    sidecar
}

#[test]
fn a_converted_aws_csi_volume_renders_under_irsa_from_the_admitted_spec() {
    let moto = Moto::shared();
    let value = unique("csi-value");
    let (secret, param, role) = resources(moto, &value);
    let s = ApiScene::new(&[]);
    s.api.put(
        NAMESPACE,
        aws_class(
            "aws-app",
            json!({"region": REGION, "objects": objects(&secret, &param)}),
        ),
    );
    s.api
        .put_service_account(NAMESPACE, "app-sa", json!({ROLE_ANNOTATION: role}));

    let pod = csi_pod("app-sa", "aws-app");
    let injected = patched(&pod, &s.review(&pod));
    assert_eq!(
        injected["spec"]["containers"], pod["spec"]["containers"],
        "the app container is untouched"
    );
    assert_eq!(
        injected["spec"]["volumes"][0],
        json!({"name": "secrets", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    );
    // One token, for STS, where EKS puts it; no Vault address, no Vault token.
    let volumes = injected["spec"]["volumes"].as_array().unwrap();
    assert!(
        volumes.iter().all(|v| v["name"] != "secretdrop-token"),
        "an AWS-only pod has no Vault token: {volumes:?}"
    );
    let token_volume =
        common::kubelet::named(&injected["spec"]["volumes"], "secretdrop-aws-token").clone();
    assert_eq!(
        token_volume["projected"]["sources"],
        json!([{"serviceAccountToken": {"path": "token", "expirationSeconds": 86400, "audience": "sts.amazonaws.com"}}])
    );
    // The class and the ServiceAccount were read with the webhook's token, nothing else.
    assert_eq!(
        s.api.authorizations(),
        [
            format!("Bearer {}", s.api.token),
            format!("Bearer {}", s.api.token)
        ]
    );

    let kubelet = Kubelet::new(s.dir.path(), NAMESPACE, &injected);
    assert_eq!(
        env_of(&kubelet, "secretdrop", "AWS_ROLE_ARN").as_deref(),
        Some(role.as_str())
    );
    assert_eq!(env_of(&kubelet, "secretdrop", "VAULT_ADDR"), None);
    let token_path = env_of(&kubelet, "secretdrop", "AWS_WEB_IDENTITY_TOKEN_FILE").unwrap();
    assert_eq!(
        token_path,
        "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
    );
    trust_minted(moto, &kubelet, "secretdrop", &token_path);
    let env = host_env(&kubelet, "secretdrop", moto);
    let sidecar = start_sidecar(&kubelet, &s, &env);
    assert_eq!(kubelet.read("app", "/mnt/secrets-store/db"), value);
    assert_eq!(
        kubelet.read("app", "/mnt/secrets-store/param"),
        format!("{value}-param")
    );
    let log = read(&sidecar.log);
    assert!(!log.contains(&value), "no value in the log:\n{log}");
}

#[test]
fn an_annotation_aws_pod_renders_with_the_webhooks_region_and_sts_refuses_other_audiences() {
    let moto = Moto::shared();
    let value = unique("annotation-value");
    let (secret, param, role) = resources(moto, &value);
    // No region in the annotations: --aws-region, the cluster's, becomes AWS_REGION.
    let (s, injected) = admit_annotation_pod(
        "batch",
        &role,
        json!({"secretdrop.dev/mode": "init", "secretdrop.dev/mount-path": "/etc/secrets",
               "secretdrop.dev/objects": objects(&secret, &param)}),
    );
    let kubelet = Kubelet::new(s.dir.path(), NAMESPACE, &injected);
    assert_eq!(
        env_of(&kubelet, "secretdrop-init", "AWS_REGION").as_deref(),
        Some(REGION)
    );
    let token_path = env_of(&kubelet, "secretdrop-init", "AWS_WEB_IDENTITY_TOKEN_FILE").unwrap();
    let env = host_env(&kubelet, "secretdrop-init", moto);

    // STS checks the audience: a token of the pod's own service account for the Kubernetes
    // API (what a wrong projection would give) is refused even though it is trusted.
    let host_token = kubelet
        .host_path(&kubelet.container("secretdrop-init"), &token_path)
        .unwrap();
    let wrong = common::TokenReviewer::shared().mint(&common::SaClaims::new(NAMESPACE, "batch"));
    moto.trust_token(&wrong);
    let minted = read(&host_token);
    std::fs::write(&host_token, &wrong).unwrap();
    let refused = run_container(&kubelet, "secretdrop-init", "init", &env);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("Incorrect token audience"),
        "{}",
        refused.stderr
    );

    // The token kubelet minted for the spec's audience works.
    std::fs::write(&host_token, &minted).unwrap();
    moto.trust_token(&minted);
    let run = run_container(&kubelet, "secretdrop-init", "init", &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(kubelet.read("app", "/etc/secrets/db"), value);
    assert_eq!(
        kubelet.read("app", "/etc/secrets/param"),
        format!("{value}-param")
    );
}

#[test]
fn pods_that_cannot_get_credentials_or_disagree_on_them_are_refused_with_a_reason() {
    let s = ApiScene::new(&["--vault-address", "http://127.0.0.1:8200"]);
    let role = "arn:aws:iam::123456789012:role/app";
    let objects = "- {objectName: prod/db, objectType: secretsmanager}\n";
    s.api.put(
        NAMESPACE,
        aws_class("aws-app", json!({"region": REGION, "objects": objects})),
    );
    s.api
        .put_service_account(NAMESPACE, "with-role", json!({ROLE_ANNOTATION: role}));
    s.api
        .put_service_account(NAMESPACE, "no-role", json!({"team": "a"}));
    s.api.put(
        NAMESPACE,
        aws_class(
            "aws-pod-identity",
            json!({"region": REGION, "usePodIdentity": "true", "objects": objects}),
        ),
    );
    let with = |a: Value| annotated_pod("with-role", a);
    let base = json!({"secretdrop.dev/region": REGION, "secretdrop.dev/objects": objects});
    let plus = |extra: Value| {
        let mut a = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    };
    // IRSA in the annotations, Pod Identity in the class: one container, two identities.
    let mut mixed = csi_pod("with-role", "aws-pod-identity");
    mixed["metadata"]["annotations"] = json!({"secretdrop.dev/inject": "true",
        "secretdrop.dev/provider": "aws", "secretdrop.dev/region": REGION,
        "secretdrop.dev/objects": objects});
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            annotated_pod("ghost", base.clone()),
            vec!["ServiceAccount \"ghost\" not found in namespace \"default\""],
        ),
        (
            annotated_pod("no-role", base.clone()),
            vec!["ServiceAccount default/no-role has no eks.amazonaws.com/role-arn annotation"],
        ),
        (
            csi_pod("no-role", "aws-app"),
            vec!["volume", "no eks.amazonaws.com/role-arn annotation"],
        ),
        (
            mixed,
            vec![
                "the secretdrop.dev/objects volume and volume \"secrets\" get AWS credentials \
                 differently",
                "usePodIdentity",
            ],
        ),
        (
            with(plus(json!({"secretdrop.dev/role": "app"}))),
            vec![
                "secretdrop.dev/role: only applies to Vault",
                "provider: aws",
            ],
        ),
        (
            with(plus(
                json!({"secretdrop.dev/vault-address": "http://127.0.0.1:8200"}),
            )),
            vec!["secretdrop.dev/vault-address: only applies to Vault"],
        ),
        (
            with(plus(json!({"secretdrop.dev/ca-configmap": "vault-ca"}))),
            vec!["secretdrop.dev/ca-configmap: only applies to Vault"],
        ),
        (
            with(json!({"secretdrop.dev/objects": objects})),
            vec!["secretdrop.dev/region: missing, and this webhook has no --aws-region"],
        ),
    ];
    for (pod, want) in cases {
        let m = s.refusal(&pod);
        for w in want {
            assert!(m.contains(w), "{w:?} not in {m}");
        }
    }
    // Pod Identity needs no ServiceAccount: not even a GET.
    let before = s.api.requests();
    let pi = annotated_pod(
        "ghost",
        plus(json!({"secretdrop.dev/use-pod-identity": "true"})),
    );
    let injected = patched(&pi, &s.review(&pi));
    assert_eq!(s.api.requests(), before);
    let ours = injected["spec"]["initContainers"][0].clone();
    assert_eq!(
        ours["env"],
        json!([{"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://169.254.170.23/v1/credentials"},
               {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "value": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"},
               {"name": "SECRETDROP_ADMITTED", "value": "aws"}])
    );
    assert!(read(&s.webhook.log).contains("rejected"));
}

#[test]
fn junk_role_arns_and_regions_naming_hosts_or_paths_never_reach_the_pod() {
    let s = ApiScene::new(&[]);
    let objects = "- {objectName: prod/db, objectType: secretsmanager}\n";
    let junk = [
        "arn:aws:iam::123456789012:role/app\nAWS_ENDPOINT_URL=http://evil.example",
        "arn:aws:iam::123456789012:role/../../admin",
        "arn:aws:iam::123456789012:role/app http://evil.example",
        "arn:aws:iam::12345:role/app",
        "http://evil.example/arn:aws:iam::123456789012:role/app",
    ];
    for (i, arn) in junk.iter().enumerate() {
        let sa = format!("junk-{i}");
        s.api
            .put_service_account(NAMESPACE, &sa, json!({ROLE_ANNOTATION: arn}));
        let pod = annotated_pod(
            &sa,
            json!({"secretdrop.dev/region": REGION, "secretdrop.dev/objects": objects}),
        );
        let m = s.refusal(&pod);
        assert!(
            m.contains("eks.amazonaws.com/role-arn") && m.contains("is not an IAM role ARN"),
            "{arn:?}: {m}"
        );
        assert!(!m.contains('\n'), "the message is one line: {m:?}");
    }
    s.api.put_service_account(
        NAMESPACE,
        "ok",
        json!({ROLE_ANNOTATION: "arn:aws:iam::123456789012:role/app"}),
    );
    for region in [
        "evil.example.com",
        "us-west-2/../../x",
        "us-west-2.evil.example",
        "127.0.0.1:8080",
        "us-west-2@evil",
    ] {
        let pod = annotated_pod(
            "ok",
            json!({"secretdrop.dev/region": region, "secretdrop.dev/objects": objects}),
        );
        let m = s.refusal(&pod);
        assert!(
            m.contains("secretdrop.dev/region") && m.contains("is not an AWS region"),
            "{region:?}: {m}"
        );
        s.api.put(
            NAMESPACE,
            aws_class(
                "hostile",
                json!({"region": REGION, "failoverRegion": region, "objects": objects}),
            ),
        );
        let m = s.refusal(&csi_pod("ok", "hostile"));
        assert!(
            m.contains("spec.parameters.failoverRegion") && m.contains("is not an AWS region"),
            "{region:?}: {m}"
        );
    }
    // The webhook's own --aws-region is checked the same way.
    let dir = TestDir::new();
    let run = common::cli::secretdrop(
        &[
            "webhook",
            "--tls-cert",
            dir.join("x").to_str().unwrap(),
            "--tls-key",
            dir.join("y").to_str().unwrap(),
            "--aws-region",
            "evil.example.com",
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("is not an AWS region"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_pod_identity_class_renders_with_the_token_the_agent_accepts() {
    let moto = Moto::shared();
    let value = unique("pi-value");
    let (secret, param, role) = resources(moto, &value);
    let s = ApiScene::new(&[]);
    s.api.put(
        NAMESPACE,
        aws_class(
            "aws-pi",
            json!({"region": REGION, "usePodIdentity": "true", "objects": objects(&secret, &param)}),
        ),
    );
    // No ServiceAccount at all: Pod Identity needs none at admission.
    let pod = csi_pod("app-sa", "aws-pi");
    let injected = patched(&pod, &s.review(&pod));
    assert_eq!(s.api.requests(), 1, "the class GET only");
    let kubelet = Kubelet::new(s.dir.path(), NAMESPACE, &injected);
    assert_eq!(
        env_of(&kubelet, "secretdrop", "AWS_CONTAINER_CREDENTIALS_FULL_URI").as_deref(),
        Some("http://169.254.170.23/v1/credentials")
    );
    let token_path = env_of(
        &kubelet,
        "secretdrop",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    )
    .unwrap();
    assert_eq!(
        token_path,
        "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"
    );
    // The agent (link-local in EKS, loopback here) accepts exactly the token kubelet minted
    // for the spec's audience.
    let c = kubelet.container("secretdrop");
    let minted = kubelet.host_path(&c, &token_path).unwrap();
    let agent = common::moto::pod_identity_agent(
        moto.assume(&role),
        minted.clone(),
        Duration::from_secs(3600),
    );
    let mut env = host_env(&kubelet, "secretdrop", moto);
    for (k, v) in env.iter_mut() {
        if k == "AWS_CONTAINER_CREDENTIALS_FULL_URI" {
            *v = format!("{}/v1/credentials", agent.addr());
        }
    }
    let _sidecar = start_sidecar(&kubelet, &s, &env);
    assert_eq!(kubelet.read("app", "/mnt/secrets-store/db"), value);
    assert_eq!(agent.seen().len(), 1, "one credentials GET");
    assert!(common::moto::audience_is(
        &read(&minted),
        "pods.eks.amazonaws.com"
    ));
    assert!(!common::moto::audience_is(
        &common::TokenReviewer::shared().mint(&common::SaClaims::new(NAMESPACE, "app-sa")),
        "pods.eks.amazonaws.com"
    ));
}

/// An AWS pod carries no Vault pin of its own, so the webhook pins the provider: its
/// annotations edited into a Vault config (a reload of the running sidecar, or a restart)
/// send the pod's token nowhere, and its files stay.
#[test]
fn an_aws_pod_edited_into_a_vault_config_sends_its_token_nowhere() {
    let moto = Moto::shared();
    let value = unique("pinned-value");
    let (secret, param, role) = resources(moto, &value);
    let (s, injected) = admit_annotation_pod(
        "pinned",
        &role,
        json!({"secretdrop.dev/mount-path": "/etc/secrets",
               "secretdrop.dev/objects": objects(&secret, &param)}),
    );
    let kubelet = Kubelet::new(s.dir.path(), NAMESPACE, &injected);
    assert_eq!(
        env_of(&kubelet, "secretdrop", "SECRETDROP_ADMITTED").as_deref(),
        Some("aws")
    );
    let token_path = env_of(&kubelet, "secretdrop", "AWS_WEB_IDENTITY_TOKEN_FILE").unwrap();
    let token = trust_minted(moto, &kubelet, "secretdrop", &token_path);
    let env = host_env(&kubelet, "secretdrop", moto);
    let sidecar = start_sidecar(&kubelet, &s, &env);
    assert_eq!(kubelet.read("app", "/etc/secrets/db"), value);

    // The pod's author patches its annotations into a Vault pod of their own.
    let bystander = common::hostile::Proxy::bystander();
    let mut edited = injected.clone();
    let a = edited["metadata"]["annotations"].as_object_mut().unwrap();
    a.remove("secretdrop.dev/provider");
    a.insert("secretdrop.dev/role".into(), json!("app"));
    a.insert(
        "secretdrop.dev/vault-address".into(),
        json!(bystander.addr()),
    );
    a.insert(
        "secretdrop.dev/objects".into(),
        json!("- {objectName: db, secretPath: secret/data/app, secretKey: password}\n"),
    );
    kubelet.project(2, &edited);
    let log = &sidecar.log;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !read(log).contains("was not admitted") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(read(log).contains("was not admitted"), "{}", read(log));

    // A restart reads the edited annotations too: refused before anything is sent.
    let restarted = run_container(&kubelet, "secretdrop", "init", &env);
    restarted
        .expect_code(2)
        .expect_stderr(&["provider vault was not admitted", "admitted: aws"])
        .expect_no_leak(&[&token]);
    assert!(
        bystander.seen().is_empty(),
        "the pod's token reached an address nobody admitted: {:?}",
        bystander.seen()
    );
    assert_eq!(
        kubelet.read("app", "/etc/secrets/db"),
        value,
        "the files stay"
    );
    assert!(!read(log).contains(&token));
}

/// A pod with one Vault CSI volume (`from-vault`, its class naming `vault_addr`) and one AWS
/// CSI volume (`from-aws`), admitted with `annotations`, with what it reads: OpenBao's `secret/<path>`
/// (key `password`) and moto's secret and parameter.
struct MixedPod {
    s: ApiScene,
    injected: Value,
    identity: common::scenario::Pod,
    path: String,
    password: String,
    secret: String,
    value: String,
}

fn admit_mixed_pod(annotations: Value, vault_addr: &str) -> MixedPod {
    let moto = Moto::shared();
    let bao = common::Bao::shared();
    let value = unique("mixed-value");
    let (secret, param, role) = resources(moto, &value);
    let path = unique("mixed");
    let password = unique("vault-password");
    bao.cli(&[
        "kv",
        "put",
        &format!("secret/{path}"),
        &format!("password={password}"),
    ]);
    let identity = common::scenario::Pod::reading(bao, &path);
    let s = ApiScene::new(&[]);
    s.api.put(
        NAMESPACE,
        aws_class(
            "aws-app",
            json!({"region": REGION, "objects": objects(&secret, &param)}),
        ),
    );
    s.api.put(
        NAMESPACE,
        json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
               "metadata": {"name": "vault-app"}, "spec": {"provider": "vault", "parameters": {
                   "roleName": identity.role, "vaultAddress": vault_addr,
                   "objects": format!("- {{objectName: password, secretPath: secret/data/{path}, secretKey: password}}\n")}}}),
    );
    s.api.put_service_account(
        NAMESPACE,
        &identity.service_account,
        json!({ROLE_ANNOTATION: role}),
    );
    let csi = |class: &str| {
        json!({"driver": "secrets-store.csi.k8s.io", "readOnly": true,
        "volumeAttributes": {"secretProviderClass": class}})
    };
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "mixed-", "annotations": annotations},
        "spec": {"serviceAccountName": identity.service_account,
            "containers": [{"name": "app", "image": "app", "volumeMounts": [
                {"name": "from-aws", "mountPath": "/mnt/aws", "readOnly": true},
                {"name": "from-vault", "mountPath": "/mnt/vault", "readOnly": true}]}],
            "volumes": [{"name": "from-aws", "csi": csi("aws-app")},
                        {"name": "from-vault", "csi": csi("vault-app")}]}});
    let injected = patched(&pod, &s.review(&pod));
    MixedPod {
        s,
        injected,
        identity,
        path,
        password,
        secret,
        value,
    }
}

/// A pod with one Vault and one AWS CSI volume is converted to one secretdrop container that
/// serves both: its Vault token in the shared token volume, the STS token in a volume of its
/// own, one process, the files from OpenBao and from moto.
#[test]
fn a_pod_with_a_vault_and_an_aws_csi_volume_is_served_by_one_container() {
    let moto = Moto::shared();
    let m = admit_mixed_pod(
        json!({"secretdrop.dev/mode": "init"}),
        &common::Bao::shared().addr(),
    );
    let inits = m.injected["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(
        inits.len(),
        1,
        "one secretdrop container for both providers"
    );
    let kubelet = Kubelet::new(m.s.dir.path(), NAMESPACE, &m.injected);
    let admitted = env_of(&kubelet, "secretdrop-init", "SECRETDROP_ADMITTED").unwrap();
    assert!(
        admitted.starts_with("aws,vault:") && admitted.matches(',').count() == 1,
        "{admitted}"
    );
    assert!(env_of(&kubelet, "secretdrop-init", "VAULT_ADDR").is_some());
    let token_path = env_of(&kubelet, "secretdrop-init", "AWS_WEB_IDENTITY_TOKEN_FILE").unwrap();
    trust_minted(moto, &kubelet, "secretdrop-init", &token_path);
    let env = host_env(&kubelet, "secretdrop-init", moto);
    let run = run_container(&kubelet, "secretdrop-init", "init", &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.expect_no_leak(&[&m.value, &m.password]);
    assert_eq!(kubelet.read("app", "/mnt/aws/db"), m.value);
    assert_eq!(kubelet.read("app", "/mnt/vault/password"), m.password);
    assert!(
        run.stderr.contains("provider=\"aws\"") && run.stderr.contains("provider=\"vault\""),
        "{}",
        run.stderr
    );
}

/// Issue 18's acceptance through the webhook's CSI conversion, as `init+sidecar` mode runs it:
/// one init container and one sidecar container, each serving the Vault and the AWS volume.
/// The sidecar takes over what init obtained through the state directory the webhook gives
/// both (counted where it arrives: no second Vault login at OpenBao's door, no second
/// AssumeRoleWithWebIdentity at STS's), then follows a change in each store.
#[test]
fn init_and_sidecar_containers_serve_a_vault_and_an_aws_volume_and_hand_over_both_sessions() {
    use common::hostile::{Act, Proxy};
    let moto = Moto::shared();
    let bao = common::Bao::shared();
    let at_vault = Proxy::start("127.0.0.1", Some(bao.port()), |_| Act::Forward);
    let at_aws = Proxy::start("127.0.0.1", Some(moto.port()), |_| Act::ForwardKeepingHost);
    let count = |proxy: &Proxy, what: &str| {
        let seen = proxy.seen();
        let text = seen.iter().map(|s| {
            format!(
                "{} {}\n{}",
                s.method,
                s.path,
                String::from_utf8_lossy(&s.body)
            )
        });
        text.filter(|t| t.contains(what)).count()
    };
    let logins = || count(&at_vault, "/v1/auth/kubernetes/login");
    let exchanges = || count(&at_aws, "Action=AssumeRoleWithWebIdentity");
    let m = admit_mixed_pod(
        json!({"secretdrop.dev/mode": "init+sidecar"}),
        &at_vault.addr(),
    );

    let spec = &m.injected["spec"];
    let names = |list: &Value| -> Vec<String> {
        let all = list.as_array().into_iter().flatten();
        all.map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&spec["initContainers"]), ["secretdrop-init"]);
    assert_eq!(names(&spec["containers"]), ["app", "secretdrop"]);
    let kubelet = Kubelet::new(m.s.dir.path(), NAMESPACE, &m.injected);
    for c in ["secretdrop-init", "secretdrop"] {
        let args = kubelet.container(c)["args"].to_string();
        assert!(args.contains("--state-dir"), "{c}: {args}");
    }
    let token_path = env_of(&kubelet, "secretdrop-init", "AWS_WEB_IDENTITY_TOKEN_FILE").unwrap();
    let token = trust_minted(moto, &kubelet, "secretdrop-init", &token_path);
    let through_proxy = |container: &str| {
        let mut env = host_env(&kubelet, container, moto);
        env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
        env.push(("AWS_ENDPOINT_URL".into(), at_aws.addr()));
        env
    };

    let run = run_container(
        &kubelet,
        "secretdrop-init",
        "init",
        &through_proxy("secretdrop-init"),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(kubelet.read("app", "/mnt/aws/db"), m.value);
    assert_eq!(kubelet.read("app", "/mnt/vault/password"), m.password);
    assert_eq!(
        (logins(), exchanges()),
        (1, 1),
        "init logs in and exchanges once"
    );

    // A regular container: no startupProbe to wait for; its log says when it took over. It
    // polls every second, as a pod author may set in its env.
    let mut env = through_proxy("secretdrop");
    env.push(("SECRETDROP_POLL_INTERVAL".into(), "1s".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let sidecar = kubelet.start_with_env("secretdrop", &m.s.dir.join("sidecar.log"), &env);
    let adopted = || read(&sidecar.log).matches("adopted the recorded").count();
    let started = std::time::Instant::now();
    while adopted() < 2 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        adopted(),
        2,
        "both sessions adopted:\n{}",
        read(&sidecar.log)
    );
    assert_eq!(
        (logins(), exchanges()),
        (1, 1),
        "the sidecar logged in or exchanged again:\n{}",
        read(&sidecar.log)
    );

    // Each store changes; the sidecar follows both, still on init's sessions.
    let (password, value) = (unique("vault-password-2"), unique("mixed-value-2"));
    bao.cli(&[
        "kv",
        "put",
        &format!("secret/{}", m.path),
        &format!("password={password}"),
    ]);
    moto.admin(json!([call(
        "secretsmanager",
        REGION,
        "put_secret_value",
        json!({"SecretId": m.secret, "SecretString": value})
    )]));
    let both = || {
        std::fs::read_to_string(
            kubelet
                .host_path(&kubelet.container("app"), "/mnt/aws/db")
                .unwrap(),
        )
        .is_ok_and(|v| v == value)
            && std::fs::read_to_string(
                kubelet
                    .host_path(&kubelet.container("app"), "/mnt/vault/password")
                    .unwrap(),
            )
            .is_ok_and(|v| v == password)
    };
    let started = std::time::Instant::now();
    while !both() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(both(), "a change did not arrive:\n{}", read(&sidecar.log));
    assert_eq!((logins(), exchanges()), (1, 1));
    let log = read(&sidecar.log);
    for secret in [
        &token,
        &m.identity.token,
        &m.value,
        &m.password,
        &value,
        &password,
    ] {
        assert!(
            !log.contains(secret.as_str()),
            "the sidecar's log holds a secret"
        );
        assert!(
            !run.stderr.contains(secret.as_str()),
            "init's output holds a secret"
        );
    }
}
