//! Zero-edit migration from the Secrets Store CSI driver: the webhook reads each CSI volume's
//! SecretProviderClass from a Kubernetes API stand-in (TLS, bearer token, RBAC-like 403,
//! Status objects), converts the volume, and the admitted pod, run from its spec alone by the
//! tests' kubelet stand-in, gets its files from a real OpenBao. Several classes and annotation
//! objects are served by one process. Refusals reach `kubectl`; a hostile API server gets no
//! token elsewhere and cannot stall the webhook.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cli::read;
use common::kube_api::{Behaviour, Elsewhere};
use common::kubelet::Kubelet;
use common::scenario::Pod;
use common::webhook::{patched, refusal, validates, ApiScene};
use common::{blog, enable_kubernetes_auth, unique, Bao, Server};
use serde_json::{json, Value};

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap()
}

/// The pod a Deployment's ReplicaSet creates from its template.
fn pod_of(deployment: &Value) -> Value {
    let template = &deployment["spec"]["template"];
    let mut metadata = template["metadata"].clone();
    metadata["generateName"] = json!(format!(
        "{}-5c8f7d9b6-",
        deployment["metadata"]["name"].as_str().unwrap()
    ));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]})
}

#[test]
fn the_blog_posts_deployment_applies_unchanged_and_its_app_reads_the_password() {
    let bao = Bao::shared();
    enable_kubernetes_auth(bao, "kubernetes");
    blog::vault_setup(bao, "kubernetes");
    let s = ApiScene::new(&[]);
    s.api.put("default", yaml(&blog::spc(bao, "")));

    let deployment = yaml(blog::DEPLOYMENT);
    let pod = pod_of(&deployment);
    let injected = patched(&pod, &s.review(&pod));

    validates("converted", &injected);
    // The app container is byte for byte what the Deployment says; the volume keeps its name.
    assert_eq!(injected["spec"]["containers"], pod["spec"]["containers"]);
    let volume = &injected["spec"]["volumes"][0];
    assert_eq!(
        volume,
        &json!({"name": "secrets-store-inline", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    );
    assert!(
        injected["metadata"]["annotations"]["csi.secretdrop.dev/secrets-store-inline"]
            .as_str()
            .unwrap()
            .contains("mycsirole"),
        "the class travels inside the pod"
    );
    // Only the webhook's token reached the API, once.
    assert_eq!(s.api.authorizations(), [format!("Bearer {}", s.api.token)]);

    // Kubelet runs the pod from its spec: the native sidecar first, the app once it started.
    let kubelet = Kubelet::new(s.dir.path(), "default", &injected);
    assert_ne!(
        kubelet.probe("secretdrop").code,
        0,
        "not ready before it ran"
    );
    let sidecar = kubelet.start("secretdrop", &s.dir.join("sidecar.log"));
    kubelet.wait_started("secretdrop", &sidecar, Duration::from_secs(20));
    let app = kubelet.container("app");
    let password = kubelet.host_path(&app, "/mnt/csi/myPassword").unwrap();
    assert_eq!(read(&password), "p4ssw0rd");
    assert_eq!(
        std::fs::read_link(&password).unwrap(),
        Path::new("..data/myPassword"),
        "through ..data, as the CSI driver lays it out"
    );
    assert_eq!(kubelet.read("app", "/mnt/csi/myUsername"), "admin");
    let log = read(&sidecar.log);
    assert!(!log.contains("p4ssw0rd") && !s.log().contains(&s.api.token));
}

/// A KV secret `username=u-TAG`, `password=p-TAG` at a fresh path, and a pod identity that
/// may read it.
fn user_and_password(bao: &Bao, tag: &str) -> (String, Pod) {
    let path = unique(tag);
    bao.cli(&[
        "kv",
        "put",
        &format!("secret/{path}"),
        &format!("username=u-{tag}"),
        &format!("password=p-{tag}"),
    ]);
    let identity = Pod::reading(bao, &path);
    (path, identity)
}

/// Two classes (one login between them) and the pod's own annotation objects.
fn two_classes_and_annotations(
    s: &ApiScene,
    bao: &Bao,
    identity: &Pod,
    path: &str,
    mode: &str,
) -> Value {
    let class = |name: &str, object: &str, key: &str| {
        yaml(&format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: {name}\nspec:\n  provider: vault\n  parameters:\n    roleName: {}\n    vaultAddress: {}\n    objects: |\n      - {{objectName: {object}, secretPath: secret/data/{path}, secretKey: {key}}}\n",
            identity.role,
            bao.addr()
        ))
    };
    s.api.put("default", class("class-a", "user", "username"));
    s.api.put("default", class("class-b", "pass", "password"));
    let csi = |class: &str| json!({"driver": "secrets-store.csi.k8s.io", "readOnly": true, "volumeAttributes": {"secretProviderClass": class}});
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "two-", "annotations": {
            "secretdrop.dev/inject": "true", "secretdrop.dev/role": identity.role,
            "secretdrop.dev/vault-address": bao.addr(), "secretdrop.dev/mode": mode,
            "secretdrop.dev/objects": format!("- {{objectName: annotated, secretPath: secret/data/{path}, secretKey: password}}\n")}},
        "spec": {"serviceAccountName": identity.service_account, "containers": [{"name": "app", "image": "app",
            "volumeMounts": [{"name": "a", "mountPath": "/etc/a", "readOnly": true},
                             {"name": "b", "mountPath": "/etc/b", "readOnly": true}]}],
                 "volumes": [{"name": "a", "csi": csi("class-a")}, {"name": "b", "csi": csi("class-b")}]}
    });
    patched(&pod, &s.review(&pod))
}

#[test]
fn two_classes_and_annotation_objects_are_served_by_one_sidecar_with_one_login() {
    let bao = Bao::shared();
    let (path, identity) = user_and_password(bao, "two");
    let s = ApiScene::new(&[]);
    let injected = two_classes_and_annotations(&s, bao, &identity, &path, "sidecar");
    validates("converted", &injected);
    let inits = injected["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(inits.len(), 1, "one secretdrop container for three volumes");

    let kubelet = Kubelet::new(identity.dir.path(), "default", &injected);
    // `check` on the annotations file the container reads shows one plan per volume.
    let ours = kubelet.container("secretdrop");
    let annotations = kubelet
        .host_path(&ours, "/etc/secretdrop/annotations")
        .unwrap();
    let plan = common::cli::secretdrop(&["check", "--config", annotations.to_str().unwrap()], &[]);
    plan.expect_code(0);
    for want in [
        "volume --dir",
        "volume a (--volume a=DIR)",
        "volume b (--volume b=DIR)",
    ] {
        assert!(plan.stdout.contains(want), "{want}: {}", plan.stdout);
    }
    let probe = kubelet.probe("secretdrop");
    assert_eq!(probe.code, 1, "{}", probe.stderr);
    let sidecar = kubelet.start("secretdrop", &identity.dir.join("sidecar.log"));
    kubelet.wait_started("secretdrop", &sidecar, Duration::from_secs(20));
    assert_eq!(kubelet.read("app", "/etc/a/user"), "u-two");
    assert_eq!(kubelet.read("app", "/etc/b/pass"), "p-two");
    assert_eq!(kubelet.read("app", "/mnt/secrets/annotated"), "p-two");
    // Each volume has its own ..data; each holds only its own files.
    for (vol, only) in [("a", "user"), ("b", "pass")] {
        let names: Vec<String> = std::fs::read_dir(kubelet.volume(vol))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".."))
            .collect();
        assert_eq!(names, [only], "volume {vol}");
    }
    let log = read(&sidecar.log);
    assert_eq!(
        log.matches("logged in to Vault").count(),
        1,
        "one login for one Vault address and role:\n{log}"
    );
    assert_eq!(log.matches("sidecar starting").count(), 1, "{log}");
    assert!(!log.contains("p-two") && !log.contains("u-two"));
}

#[test]
fn init_mode_fills_every_volume_and_exits() {
    let bao = Bao::shared();
    let (path, identity) = user_and_password(bao, "init");
    let s = ApiScene::new(&[]);
    let injected = two_classes_and_annotations(&s, bao, &identity, &path, "init");
    let kubelet = Kubelet::new(identity.dir.path(), "default", &injected);
    kubelet
        .run("secretdrop-init")
        .expect_code(0)
        .expect_no_leak(&["p-init", "u-init"]);
    assert_eq!(kubelet.read("app", "/etc/a/user"), "u-init");
    assert_eq!(kubelet.read("app", "/etc/b/pass"), "p-init");
    assert_eq!(kubelet.read("app", "/mnt/secrets/annotated"), "p-init");
}

#[test]
fn missing_classes_node_publish_secrets_and_other_providers_are_refused_with_a_reason() {
    let s = ApiScene::new(&["--vault-address", "http://127.0.0.1:8200"]);
    s.api.put(
        "default",
        json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
               "metadata": {"name": "akeyless-kv"},
               "spec": {"provider": "akeyless", "parameters": {"akeylessGatewayURL": "https://gw", "objects": "- {}"}}}),
    );
    let pod = |csi: Value| {
        json!({"metadata": {"generateName": "web-"}, "spec": {
            "containers": [{"name": "app", "image": "app", "volumeMounts": [{"name": "secrets", "mountPath": "/mnt/secrets-store"}]}],
            "volumes": [{"name": "secrets", "csi": csi}]}})
    };
    let cases = [
        (
            json!({"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": "nope"}}),
            vec![
                "volume \"secrets\"",
                "SecretProviderClass \"nope\" not found in namespace \"default\"",
            ],
        ),
        (
            json!({"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": "akeyless-kv"},
                   "nodePublishSecretRef": {"name": "secrets-store-creds"}}),
            vec!["nodePublishSecretRef cannot be honoured", "no node driver"],
        ),
        (
            json!({"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": "akeyless-kv"}}),
            vec![
                "SecretProviderClass default/akeyless-kv",
                "\"akeyless\" is not supported",
            ],
        ),
    ];
    for (csi, want) in cases {
        let m = refusal(&s.review(&pod(csi)));
        for w in want {
            assert!(m.contains(w), "{w:?} not in {m}");
        }
    }
    // Volumes of other CSI drivers are not ours: the pod is allowed unchanged, nothing asked.
    let before = s.api.requests();
    let other = s.review(&pod(json!({"driver": "ebs.csi.aws.com"})));
    assert_eq!(other["allowed"], true);
    assert!(other.get("patch").is_none());
    assert_eq!(s.api.requests(), before);
}

#[test]
fn the_api_servers_401_and_403_are_refusals_that_say_so() {
    let spc = json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
                     "metadata": {"name": "c"}, "spec": {"provider": "vault", "parameters": {}}});
    let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "app", "image": "app"}],
        "volumes": [{"name": "v", "csi": {"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": "c"}}}]}});
    let stranger = ApiScene::with_token(|_| "not-a-token-the-api-knows".into(), &[]);
    stranger.api.put("default", spc.clone());
    let m = refusal(&stranger.review(&pod));
    assert!(m.contains("HTTP 401") && m.contains("Unauthorized"), "{m}");
    assert!(!m.contains("not-a-token-the-api-knows"));

    let nobody = ApiScene::with_token(|api| api.unprivileged_token.clone(), &[]);
    nobody.api.put("default", spc);
    let m = refusal(&nobody.review(&pod));
    assert!(
        m.contains("HTTP 403") && m.contains("cannot get resource \"secretproviderclasses\""),
        "{m}"
    );
    assert!(!m.contains(&nobody.api.unprivileged_token));
    assert!(!nobody.log().contains(&nobody.api.unprivileged_token));
}

#[test]
fn a_hostile_api_server_gets_no_token_elsewhere_and_cannot_stall_the_webhook() {
    let s = ApiScene::new(&[]);
    let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "app", "image": "app"}],
        "volumes": [{"name": "v", "csi": {"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": "c"}}}]}});

    // A redirect to another origin is not followed: nothing connects there.
    let elsewhere = Elsewhere::start();
    s.api.behave(Behaviour::RedirectTo(format!(
        "http://127.0.0.1:{}/steal",
        elsewhere.port
    )));
    let m = refusal(&s.review(&pod));
    assert!(m.contains("redirect") && m.contains("not followed"), "{m}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(elsewhere.connections(), 0, "{}", elsewhere.received());

    // An endless body: the webhook stops at its limit and answers.
    s.api.behave(Behaviour::EndlessBody);
    let started = Instant::now();
    let m = refusal(&s.review(&pod));
    assert!(m.contains("larger than 1048576 bytes"), "{m}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // A body that trickles: the webhook gives up at its time limit, well inside the API
    // server's timeoutSeconds.
    s.api.behave(Behaviour::Trickle);
    let started = Instant::now();
    let m = refusal(&s.review(&pod));
    assert!(m.contains("did not answer within 3.0s"), "{m}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(5),
        "{took:?}"
    );

    let log = s.log();
    assert!(!log.contains(&s.api.token), "the token is never logged");
    // Every request carried the token, and only to the configured server.
    assert!(s
        .api
        .authorizations()
        .iter()
        .all(|a| a == &format!("Bearer {}", s.api.token)));
}

#[test]
fn a_class_with_an_audience_logs_in_with_its_own_projected_token() {
    let bao = Bao::shared();
    let (path, identity) = user_and_password(bao, "aud");
    // A second role for the same service account that only takes tokens for "vault-csi":
    // OpenBao asks the TokenReview stand-in, which checks the token's audience.
    let policy = unique("aud-policy");
    bao.cli_stdin(
        &["policy", "write", &policy, "-"],
        &format!("path \"secret/data/{path}\" {{ capabilities = [\"read\"] }}\n"),
    );
    let aud_role = unique("aud-role");
    bao.cli(&[
        "write",
        &format!("auth/kubernetes/role/{aud_role}"),
        &format!("bound_service_account_names={}", identity.service_account),
        "bound_service_account_namespaces=default",
        "audience=vault-csi",
        &format!("policies={policy}"),
        "ttl=20m",
    ]);
    let s = ApiScene::new(&[]);
    let class = |name: &str, role: &str, extra: &str, object: &str, key: &str| {
        yaml(&format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: {name}\nspec:\n  provider: vault\n  parameters:\n    roleName: {role}\n    vaultAddress: {}{extra}\n    objects: |\n      - {{objectName: {object}, secretPath: secret/data/{path}, secretKey: {key}}}\n",
            bao.addr()
        ))
    };
    s.api.put(
        "default",
        class("plain", &identity.role, "", "user", "username"),
    );
    s.api.put(
        "default",
        class(
            "aud",
            &aud_role,
            "\n    audience: vault-csi",
            "pass",
            "password",
        ),
    );
    let csi = |class: &str| json!({"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": class}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "aud-"},
        "spec": {"serviceAccountName": identity.service_account,
                 "containers": [{"name": "app", "image": "app", "volumeMounts": [
                     {"name": "plain", "mountPath": "/etc/plain"}, {"name": "aud", "mountPath": "/etc/aud"}]}],
                 "volumes": [{"name": "plain", "csi": csi("plain")}, {"name": "aud", "csi": csi("aud")}]}});
    let injected = patched(&pod, &s.review(&pod));
    validates("converted", &injected);
    let kubelet = Kubelet::new(identity.dir.path(), "default", &injected);
    let sidecar = kubelet.start("secretdrop", &identity.dir.join("sidecar.log"));
    kubelet.wait_started("secretdrop", &sidecar, Duration::from_secs(20));
    assert_eq!(kubelet.read("app", "/etc/plain/user"), "u-aud");
    assert_eq!(kubelet.read("app", "/etc/aud/pass"), "p-aud");
    let log = read(&sidecar.log);
    assert_eq!(
        log.matches("logged in to Vault").count(),
        2,
        "two roles and two tokens: two logins, in one process:\n{log}"
    );
}

#[test]
fn one_volume_that_cannot_render_keeps_the_pod_unready_while_the_other_is_served() {
    let bao = Bao::shared();
    let (path, identity) = user_and_password(bao, "half");
    let s = ApiScene::new(&[]);
    let class = |name: &str, role: &str| {
        yaml(&format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: {name}\nspec:\n  provider: vault\n  parameters:\n    roleName: {role}\n    vaultAddress: {}\n    objects: |\n      - {{objectName: user, secretPath: secret/data/{path}, secretKey: username}}\n",
            bao.addr()
        ))
    };
    s.api.put("default", class("good", &identity.role));
    // A role that does not exist: its login fails, whatever the token. It sorts after "good",
    // so it is the second login of the process.
    s.api
        .put("default", class("z-broken", &unique("no-such-role")));
    let csi = |class: &str| json!({"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": class}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "half-"},
        "spec": {"serviceAccountName": identity.service_account,
                 "containers": [{"name": "app", "image": "app", "volumeMounts": [
                     {"name": "good", "mountPath": "/etc/good"}, {"name": "z-broken", "mountPath": "/etc/z-broken"}]}],
                 "volumes": [{"name": "good", "csi": csi("good")}, {"name": "z-broken", "csi": csi("z-broken")}]}});
    let injected = patched(&pod, &s.review(&pod));
    let kubelet = Kubelet::new(identity.dir.path(), "default", &injected);
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let sidecar = kubelet.start_with_env(
        "secretdrop",
        &identity.dir.join("sidecar.log"),
        &[("SECRETDROP_LISTEN", &listen)],
    );
    let app = kubelet.container("app");
    let good = kubelet.host_path(&app, "/etc/good/user").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !good.exists() {
        assert!(Instant::now() < deadline, "{}", read(&sidecar.log));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(read(&good), "u-half");
    // The served volume does not make the pod ready: the startupProbe and /readyz wait for both.
    let probe = kubelet.probe("secretdrop");
    assert_eq!(probe.code, 1, "{}", probe.stderr);
    assert!(
        probe.stderr.contains("volumes/z-broken"),
        "{}",
        probe.stderr
    );
    let (code, body) = common::http("GET", port, "/readyz", &[], "").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(&format!("secret/data/{path}")), "{body}");
    let (code, _) = common::http("GET", port, "/healthz", &[], "").unwrap();
    assert_eq!(code, 200);
}

/// What the webhook admitted is what the pod may talk to: an edited class (the
/// `csi.secretdrop.dev/<volume>` annotation travels in the pod, and a pod author may patch it)
/// that keeps the pinned address but loosens its TLS (skip-verify, its own CA, another server
/// name), or names another address or provider, is refused before anything is sent, at a
/// restart and at a reload; the admitted one still renders.
#[test]
fn an_edited_class_cannot_loosen_the_trust_the_webhook_admitted() {
    let bao = Bao::shared();
    let (path, identity) = user_and_password(bao, "pin");
    let s = ApiScene::new(&[]);
    let injected = two_classes_and_annotations(&s, bao, &identity, &path, "init");
    let admitted = common::kubelet::named(
        &injected["spec"]["initContainers"][0]["env"],
        "SECRETDROP_ADMITTED",
    )["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(admitted.starts_with("vault:"), "{admitted}");
    assert!(
        !admitted.contains(','),
        "one Vault trust for all three volumes: {admitted}"
    );
    let kubelet = Kubelet::new(identity.dir.path(), "default", &injected);
    kubelet.run("secretdrop-init").expect_code(0);

    let bystander = common::hostile::Proxy::bystander();
    let class = injected["metadata"]["annotations"]["csi.secretdrop.dev/a"]
        .as_str()
        .unwrap()
        .to_string();
    type Edit<'a> = Box<dyn Fn(&mut Value) + 'a>;
    let edits: [(&str, Edit); 4] = [
        (
            "skip-verify",
            Box::new(|c| c["spec"]["parameters"]["vaultSkipTLSVerify"] = json!("true")),
        ),
        (
            "server name",
            Box::new(|c| c["spec"]["parameters"]["vaultTLSServerName"] = json!("evil.example")),
        ),
        (
            "another address",
            Box::new(|c| c["spec"]["parameters"]["vaultAddress"] = json!(bystander.addr())),
        ),
        (
            "another provider",
            Box::new(|c| {
                c["spec"]["provider"] = json!("aws");
                c["spec"]["parameters"] = json!({"region": "us-west-2", "objects": "- {objectName: x, objectType: secretsmanager}\n"});
            }),
        ),
    ];
    for (generation, (what, edit)) in edits.iter().enumerate() {
        let mut c: Value = serde_json::from_str(&class).unwrap();
        edit(&mut c);
        let mut pod = injected.clone();
        pod["metadata"]["annotations"]["csi.secretdrop.dev/a"] = json!(c.to_string());
        kubelet.project(generation as u32 + 2, &pod);
        let run = kubelet.run("secretdrop-init");
        run.expect_code(2);
        assert!(
            run.stderr.contains("not the ones the webhook admitted")
                || run.stderr.contains("was not admitted")
                || run.stderr.contains("is not allowed here"),
            "{what}: {}",
            run.stderr
        );
    }
    assert!(
        bystander.seen().is_empty(),
        "the token reached another address: {:?}",
        bystander.seen()
    );
    assert_eq!(
        kubelet.read("app", "/etc/a/user"),
        "u-pin",
        "the admitted files stay"
    );
}

/// The webhook's own bound: every review is answered within 4 s of its request (the API server
/// waits `timeoutSeconds`, 5 in manifests/). The rest is scheduling slack on a busy machine.
const ANSWERED_WITHIN: Duration = Duration::from_millis(4_500);

/// Reads of the Kubernetes API run outside the two review slots. While the GETs of 6 classes
/// hang (an API server, or a class, that never answers), an unrelated opted-in pod and a pod
/// whose class answers are injected at once, and each pod waiting for a hung class is refused
/// within the deadline, naming its class and the time it was given. With 20 hung, more than
/// the 16 GETs the webhook has in flight at most, the unrelated pod is still injected at once,
/// and the 4 reviews that waited for a GET are refused within the deadline too, saying so.
/// Before: each hung GET held a review slot for 3 s and every review queued for the slots
/// behind it: with 4 hung GETs the unrelated pod was answered after 6.0 s, with 6 after 9.1 s,
/// past the API server's 5 s (with `failurePolicy: Fail` the pod is refused then).
#[test]
fn an_api_server_that_never_answers_delays_only_the_reviews_that_wait_for_it() {
    const IN_FLIGHT: usize = secretdrop::webhook::lookups::LOOKUPS_AT_ONCE;
    let s = ApiScene::new(&["--vault-address", "http://vault.vault:8200"]);
    const OBJECTS: &str = "- {objectName: a, secretPath: secret/data/app, secretKey: k}\n";
    s.api.put(
        "default",
        json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
               "metadata": {"name": "fine"},
               "spec": {"provider": "vault", "parameters": {"roleName": "r", "objects": OBJECTS}}}),
    );
    s.api.behave(Behaviour::Hang("slow-".into()));
    let csi_pod = |name: &str, class: &str| {
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": {
            "containers": [{"name": "app", "image": "app"}],
            "volumes": [{"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io",
                "volumeAttributes": {"secretProviderClass": class}}}]}})
    };
    let unrelated = json!({"metadata": {"name": "unrelated", "namespace": "default", "annotations": {
        "secretdrop.dev/inject": "true", "secretdrop.dev/role": "r", "secretdrop.dev/objects": OBJECTS}},
        "spec": {"containers": [{"name": "app", "image": "app"}]}});
    // Each review on its own connection, timed from before it connects to its answer.
    let timed = |pod: &Value| {
        let started = Instant::now();
        let (status, body) = s
            .webhook
            .post(common::webhook::review_of(pod).to_string().as_bytes())
            .expect("an answer");
        assert_eq!(status, 200, "{}", s.log());
        let answer: Value = serde_json::from_slice(&body).unwrap();
        (started.elapsed(), answer["response"].clone())
    };
    // `slow` reviews of hung classes, then (once their GETs hang) the unrelated pod and, with
    // `fine`, the pod of the class that answers: how long those took.
    let wave = |slow: usize, fine: bool| -> Vec<Duration> {
        std::thread::scope(|scope| {
            let waiting: Vec<_> = (0..slow)
                .map(|i| {
                    let pod = csi_pod(&format!("slow-{i}"), &format!("slow-{i}"));
                    scope.spawn(move || timed(&pod))
                })
                .collect();
            let until = Instant::now() + Duration::from_secs(2);
            while s.api.hanging() < slow.min(IN_FLIGHT) {
                assert!(Instant::now() < until, "{} GETs hang", s.api.hanging());
                std::thread::sleep(Duration::from_millis(10));
            }
            let (took, response) = timed(&unrelated);
            let injected = patched(&unrelated, &response);
            assert_eq!(injected["spec"]["initContainers"][0]["name"], "secretdrop");
            let mut quick = vec![took];
            if fine {
                let (took, response) = timed(&csi_pod("fine", "fine"));
                let converted = patched(&csi_pod("fine", "fine"), &response);
                assert_eq!(
                    converted["spec"]["volumes"][0]["emptyDir"]["medium"], "Memory",
                    "{converted}"
                );
                quick.push(took);
            }
            let refused: Vec<(Duration, String)> = waiting
                .into_iter()
                .map(|t| t.join().unwrap())
                .map(|(took, response)| (took, refusal(&response)))
                .collect();
            let slowest = refused.iter().map(|r| r.0).max().unwrap_or_default();
            let not_sent = refused.iter().find(|r| r.1.contains("not sent"));
            eprintln!(
                "{slow} reviews waiting for classes that never answer: the unrelated pod (and the \
                 pod of a class that answers) answered in {quick:?}; the waiting ones refused \
                 within {slowest:?}, e.g. {:?}{}",
                refused[0].1,
                not_sent.map_or(String::new(), |r| format!(" and {:?}", r.1))
            );
            // Each GET gets its 3 s; beyond the GETs in flight, a review waits for one, and gets
            // what is left of its time, or none.
            let why = match slow <= IN_FLIGHT {
                true => &["did not answer within 3.0s"][..],
                false => &["did not answer within", "not sent"][..],
            };
            for (i, (took, m)) in refused.iter().enumerate() {
                assert!(
                    m.contains(&format!("SecretProviderClass default/slow-{i}:"))
                        && why.iter().any(|w| m.contains(w)),
                    "{m}"
                );
                assert!(*took < ANSWERED_WITHIN, "slow-{i}: {took:?}");
            }
            quick
        })
    };
    for took in wave(6, true) {
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    // The held GETs were given up: the webhook closed them.
    let closed = |s: &ApiScene| {
        let until = Instant::now() + Duration::from_secs(2);
        while s.api.hanging() > 0 {
            assert!(
                Instant::now() < until,
                "{} GETs still open",
                s.api.hanging()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    closed(&s);
    let took = wave(IN_FLIGHT + 4, false)[0];
    assert!(took < Duration::from_secs(1), "{took:?}");
    closed(&s);
}
