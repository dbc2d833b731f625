//! `secretdrop webhook` over real TLS: AdmissionReviews built from realistic pods get patches
//! that apply cleanly and are idempotent; invalid annotations are refused with a message; the
//! certificate is reloaded without a restart; and the injected container, run the way kubelet
//! would run it (its args, env and the downward-API annotations file), renders from OpenBao.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cli::read;
use common::kubelet::Kubelet;
use common::resident::Resident;
use common::scenario::Pod;
use common::webhook::{kubectl_agrees, patched, Webhook};
use common::{unique, Bao, Server, TestDir};
use serde_json::{json, Value};

fn annotations(extra: Value) -> Value {
    let mut a = json!({
        "secretdrop.dev/inject": "true",
        "secretdrop.dev/role": "mycsirole",
        "secretdrop.dev/objects": "- objectName: \"myUsername\"\n  secretPath: \"secret/data/app\"\n  secretKey: \"username\"\n- objectName: \"myPassword\"\n  secretPath: \"secret/data/app\"\n  secretKey: \"password\"\n",
    });
    for (k, v) in extra.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

/// Pods as users write them: the blog post's Deployment template, one with init containers and
/// volumes of its own, one behind a service mesh, one with strict security contexts.
fn fixtures() -> Vec<(&'static str, Value)> {
    vec![
        (
            "blog deployment",
            json!({
                "metadata": {"generateName": "webapp-7d4b9c-", "labels": {"app": "webapp"}, "annotations": annotations(json!({}))},
                "spec": {"serviceAccountName": "mycsiserviceaccount",
                         "containers": [{"name": "webapp", "image": "jweissig/app:0.0.1", "ports": [{"containerPort": 8080}]}]}
            }),
        ),
        (
            "init containers and volumes",
            json!({
                "metadata": {"name": "api", "annotations": annotations(json!({"secretdrop.dev/mount-path": "/etc/api/secrets"}))},
                "spec": {"initContainers": [{"name": "migrate", "image": "api", "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}],
                         "containers": [{"name": "api", "image": "api", "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}],
                         "volumes": [{"name": "cache", "emptyDir": {}}]}
            }),
        ),
        (
            "service mesh",
            json!({
                "metadata": {"name": "meshed", "annotations": annotations(json!({"secretdrop.dev/containers": "app"}))},
                "spec": {"initContainers": [{"name": "istio-init", "image": "istio/proxyv2"},
                                            {"name": "istio-proxy", "image": "istio/proxyv2", "restartPolicy": "Always"}],
                         "containers": [{"name": "app", "image": "app"}, {"name": "metrics", "image": "exporter"}]}
            }),
        ),
        (
            "strict security context",
            json!({
                "metadata": {"name": "locked", "annotations": annotations(json!({"secretdrop.dev/mode": "init"}))},
                "spec": {"securityContext": {"runAsNonRoot": true, "fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}},
                         "automountServiceAccountToken": false,
                         "containers": [{"name": "job", "image": "job", "securityContext": {"readOnlyRootFilesystem": true}}]}
            }),
        ),
    ]
}

#[test]
fn realistic_pods_get_patches_that_apply_and_injecting_twice_changes_nothing() {
    let dir = TestDir::new();
    let (crt, key) = common::pki::self_signed(dir.path(), "webhook");
    let w = Webhook::start(
        dir.path(),
        &crt,
        &key,
        &["--vault-address", "http://vault.vault:8200"],
    );
    for (name, mut pod) in fixtures() {
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        let response = w.review(&crt, &pod);
        let injected = patched(&pod, &response);
        kubectl_agrees(dir.path(), name, &pod, &response, &injected);
        let inits = injected["spec"]["initContainers"].as_array().unwrap();
        let ours = inits
            .iter()
            .find(|c| c["name"].as_str().unwrap().starts_with("secretdrop"))
            .unwrap();
        assert_eq!(ours["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            ours["securityContext"]["readOnlyRootFilesystem"], true,
            "{name}"
        );
        let volumes = injected["spec"]["volumes"].as_array().unwrap();
        let secrets = volumes
            .iter()
            .find(|v| v["name"] == "secretdrop-secrets")
            .unwrap();
        assert_eq!(secrets["emptyDir"]["medium"], "Memory", "{name}");
        // The pod's own volumes and containers survive.
        for c in pod["spec"]["containers"].as_array().unwrap() {
            assert!(
                injected["spec"]["containers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["name"] == c["name"]),
                "{name}"
            );
        }
        let again = w.review(&crt, &injected);
        assert_eq!(again["allowed"], true, "{name}");
        assert!(
            again.get("patch").is_none(),
            "{name}: injecting twice changed something"
        );
    }
    let (_, metrics) = w.call(&crt, "GET", "/metrics", None);
    assert!(
        metrics.contains("secretdrop_webhook_reviews_total{result=\"injected\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("secretdrop_webhook_latency_seconds_count 8"),
        "{metrics}"
    );
    assert_eq!(w.call(&crt, "GET", "/healthz", None).0, 200);
}

#[test]
fn invalid_annotations_are_refused_and_other_pods_pass_untouched() {
    let dir = TestDir::new();
    let (crt, key) = common::pki::self_signed(dir.path(), "webhook");
    let w = Webhook::start(
        dir.path(),
        &crt,
        &key,
        &[
            "--vault-address",
            "http://vault.vault:8200",
            "--allowed-vault-address",
            "http://vault.vault:8200",
        ],
    );
    let pod = |a: Value| json!({"metadata": {"name": "p", "annotations": a}, "spec": {"containers": [{"name": "app", "image": "x"}]}});
    for (extra, want) in [
        (
            json!({"secretdrop.dev/objects": "- objectName: [oops"}),
            "secretdrop.dev/objects",
        ),
        (
            json!({"secretdrop.dev/mode": "daemonset"}),
            "allowed are sidecar, init, init+sidecar",
        ),
        (
            json!({"secretdrop.dev/objects": "- {objectName: ../../etc/shadow, secretPath: a, secretKey: b}"}),
            "traverses",
        ),
        (
            json!({"secretdrop.dev/vault-address": "https://attacker.example"}),
            "is not allowed by this webhook",
        ),
    ] {
        let r = w.review(&crt, &pod(annotations(extra)));
        assert_eq!(r["allowed"], false, "{r}");
        let message = r["status"]["message"].as_str().unwrap();
        assert!(message.contains(want), "{message}");
    }
    let plain = w.review(&crt, &pod(json!({"team": "a"})));
    assert_eq!(plain["allowed"], true);
    assert!(plain.get("patch").is_none());
    let (status, body) = w.call(&crt, "POST", "/mutate", Some("{not json"));
    assert_eq!(status, 400, "{body}");
}

#[test]
fn a_new_certificate_is_picked_up_without_a_restart() {
    let dir = TestDir::new();
    let tls = dir.join("tls");
    std::fs::create_dir(&tls).unwrap();
    let (crt_a, key_a) = common::pki::self_signed(dir.path(), "first");
    let (crt_b, key_b) = common::pki::self_signed(dir.path(), "second");
    std::fs::copy(&crt_a, tls.join("tls.crt")).unwrap();
    std::fs::copy(&key_a, tls.join("tls.key")).unwrap();
    let w = Webhook::start(dir.path(), &tls.join("tls.crt"), &tls.join("tls.key"), &[]);
    assert_eq!(w.call(&crt_a, "GET", "/healthz", None).0, 200);

    // A half-written pair (new certificate, old key) is refused and the old pair keeps serving.
    std::fs::copy(&crt_b, tls.join("tls.crt")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        w.call(&crt_a, "GET", "/healthz", None).0,
        200,
        "{}",
        read(&w.log)
    );
    std::fs::copy(&key_b, tls.join("tls.key")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while w.call(&crt_b, "GET", "/healthz", None).0 != 200 {
        assert!(Instant::now() < deadline, "not reloaded:\n{}", read(&w.log));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_ne!(
        w.call(&crt_a, "GET", "/healthz", None).0,
        200,
        "the old certificate is gone"
    );
    assert!(read(&w.log).contains("reloaded the TLS certificate"));
}

/// A KV secret (`username=admin`, `password=PASSWORD`) at a fresh path, a pod identity allowed to
/// read it, and a webhook with a certificate in the pod's directory (naming OpenBao as its
/// default Vault address when `default_address`).
struct Scene {
    path: String,
    pod_identity: Pod,
    crt: std::path::PathBuf,
    webhook: Webhook,
}

impl Scene {
    fn new(prefix: &str, password: &str, default_address: bool) -> Scene {
        let bao = Bao::shared();
        let path = unique(prefix);
        let password = format!("password={password}");
        bao.cli(&[
            "kv",
            "put",
            &format!("secret/{path}"),
            "username=admin",
            &password,
        ]);
        let pod_identity = Pod::reading(bao, &path);
        let dir = pod_identity.dir.path();
        let (crt, key) = common::pki::self_signed(dir, "webhook");
        let addr = bao.addr();
        let args: &[&str] = if default_address {
            &["--vault-address", &addr]
        } else {
            &[]
        };
        let webhook = Webhook::start(dir, &crt, &key, args);
        Scene {
            path,
            pod_identity,
            crt,
            webhook,
        }
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn the_injected_container_renders_from_openbao_as_kubelet_would_run_it() {
    let Scene {
        path,
        pod_identity,
        crt,
        webhook: w,
    } = Scene::new("injected", "from-the-webhook", true);
    let dir = &pod_identity.dir;
    let objects = format!(
        "- {{objectName: password, secretPath: secret/data/{path}, secretKey: password}}\n"
    );
    let pod = json!({
        "metadata": {"name": "job", "annotations": {
            "secretdrop.dev/inject": "true", "secretdrop.dev/role": pod_identity.role,
            "secretdrop.dev/mode": "init", "secretdrop.dev/objects": objects}},
        "spec": {"serviceAccountName": pod_identity.service_account, "containers": [{"name": "job", "image": "job"}]}
    });
    let injected = patched(&pod, &w.review(&crt, &pod));
    let init = &injected["spec"]["initContainers"][0];
    assert_eq!(init["name"], "secretdrop-init");

    let kubelet = Kubelet::new(dir.path(), "default", &injected);
    kubelet
        .run("secretdrop-init")
        .expect_code(0)
        .expect_no_leak(&["from-the-webhook"]);
    // Kubelet made the state emptyDir 0777, which --state-dir refuses: secretdrop kept its
    // state in a subdirectory it created, 0700.
    let state = kubelet.volume("secretdrop-state");
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o7777
    };
    assert_eq!(mode(&state), 0o777);
    assert_eq!(mode(&state.join("state")), 0o700);
    assert!(state.join("state/state.json").is_file());

    // The app container mounts the same volume at its mount path.
    let app = &injected["spec"]["containers"][0];
    let mount = common::kubelet::named(&app["volumeMounts"], "secretdrop-secrets");
    assert_eq!(mount["mountPath"], "/mnt/secrets");
    assert_eq!(
        read(kubelet.host_path(app, "/mnt/secrets/password").unwrap()),
        "from-the-webhook"
    );
}

#[test]
fn the_injected_native_sidecar_renders_and_follows_annotation_edits() {
    let bao = Bao::shared();
    let Scene {
        path,
        pod_identity,
        crt,
        webhook: w,
    } = Scene::new("sidecar", "p", false);
    let dir = &pod_identity.dir;
    let object = |name: &str, key: &str| {
        format!("- {{objectName: {name}, secretPath: secret/data/{path}, secretKey: {key}}}\n")
    };
    let pod = json!({
        "metadata": {"name": "web", "annotations": {
            "secretdrop.dev/inject": "true", "secretdrop.dev/role": pod_identity.role,
            "secretdrop.dev/vault-address": bao.addr(),
            "secretdrop.dev/objects": object("password", "password")}},
        "spec": {"serviceAccountName": pod_identity.service_account, "containers": [{"name": "web", "image": "nginx"}]}
    });
    let mut injected = patched(&pod, &w.review(&crt, &pod));
    let sidecar = injected["spec"]["initContainers"][0].clone();
    assert_eq!(sidecar["restartPolicy"], "Always");

    let kubelet = Kubelet::new(dir.path(), "default", &injected);
    let args = kubelet.args(&sidecar, &sidecar["args"]);
    assert_eq!(&args[..2], ["sidecar", "--config"]);
    assert_eq!(args[3], "--dir");
    let mut r = Resident::start(
        Path::new(&args[2]),
        Path::new(&args[4]),
        &dir.join("sidecar.log"),
        &strs(&args[5..]),
    );
    r.wait_ready(Duration::from_secs(20));
    let app = kubelet.container("web");
    let file = |name: &str| {
        kubelet
            .host_path(&app, &format!("/mnt/secrets/{name}"))
            .unwrap()
    };
    assert_eq!(read(file("password")), "p");
    // The startupProbe the webhook wrote passes now.
    kubelet.probe("secretdrop").expect_code(0);

    // `kubectl annotate` adds an object; kubelet updates the downward-API file; it appears.
    injected["metadata"]["annotations"]["secretdrop.dev/objects"] = json!(format!(
        "{}{}",
        object("password", "password"),
        object("username", "username")
    ));
    kubelet.project(2, &injected);
    assert!(
        r.eventually(Duration::from_secs(5), || file("username").exists()),
        "the annotation edit did not reach the sidecar:\n{}",
        r.log_text()
    );
    assert_eq!(read(file("username")), "admin");
    let (code, _) = r.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn secretdrop_dev_env_runs_the_app_with_secrets_as_variables_as_kubelet_would() {
    let Scene {
        path,
        pod_identity,
        crt,
        webhook: w,
    } = Scene::new("env", "from-the-env", true);
    let dir = &pod_identity.dir;
    let objects = format!(
        "- {{objectName: username, secretPath: secret/data/{path}, secretKey: username}}\n\
         - {{objectName: password, secretPath: secret/data/{path}, secretKey: password}}\n"
    );
    // A shell-free app: printenv prints the two variables its command and args name.
    let pod = json!({
        "metadata": {"name": "app", "annotations": {
            "secretdrop.dev/inject": "true", "secretdrop.dev/role": pod_identity.role,
            "secretdrop.dev/mode": "init", "secretdrop.dev/objects": objects,
            "secretdrop.dev/mount-path": "/etc/app/secrets",
            "secretdrop.dev/env": "DB_USER=username,DB_PASSWORD=password"}},
        "spec": {"serviceAccountName": pod_identity.service_account,
                 "containers": [{"name": "app", "image": "app",
                                 "command": ["printenv", "DB_USER"], "args": ["DB_PASSWORD"]}]}
    });
    let response = w.review(&crt, &pod);
    let injected = patched(&pod, &response);
    kubectl_agrees_with_the_env_pod(dir.path(), &pod, &response, &injected);

    let kubelet = Kubelet::new(dir.path(), "default", &injected);
    // The init containers in order: the copy, then the render.
    let inits = injected["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(inits[0]["name"], "secretdrop-copy");
    // Kubelet made the emptyDir 0777: copy-self creates the subdirectory it installs into.
    kubelet.run("secretdrop-copy").expect_code(0);
    let bin_dir = kubelet.volume("secretdrop-bin").join("bin");
    assert_eq!(common::cli::mode_of(&bin_dir), 0o755);
    let copied = bin_dir.join("secretdrop");
    assert_eq!(common::cli::mode_of(&copied), 0o555);
    let render = inits[1]["name"].as_str().unwrap();
    kubelet.run(render).expect_code(0);

    // The app container: command then args, as the runtime joins them, with `$$` unescaped as
    // kubelet does.
    let app = &injected["spec"]["containers"][0];
    let mut argv = kubelet.args(app, &app["command"]);
    argv.extend(kubelet.args(app, &app["args"]));
    let argv: Vec<String> = argv.into_iter().map(|a| a.replace("$$", "$")).collect();
    assert_eq!(argv[0], copied.to_str().unwrap());
    let mut cmd = Command::new(&argv[0]);
    common::cli::scrub_env(&mut cmd);
    let out = cmd.args(&argv[1..]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "admin\nfrom-the-env\n"
    );
    assert!(!stderr.contains("from-the-env"), "{stderr}");

    // Without a command to wrap, the pod is refused with the reason and the fix.
    let mut bare = pod.clone();
    bare["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("command");
    let r = w.review(&crt, &bare);
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("has no command") && message.contains("set command"),
        "{message}"
    );
}

/// The env-wrapped pod passes the same kubectl and schema checks as every injected pod.
fn kubectl_agrees_with_the_env_pod(dir: &Path, pod: &Value, response: &Value, injected: &Value) {
    let mut pod = pod.clone();
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    let mut injected = injected.clone();
    injected["apiVersion"] = json!("v1");
    injected["kind"] = json!("Pod");
    kubectl_agrees(dir, "env pod", &pod, response, &injected);
}
