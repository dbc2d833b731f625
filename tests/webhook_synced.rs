//! Synced Secrets (`secretObjects`) served without a Kubernetes Secret (issue 22, docs/
//! webhook.md "Synced Secrets"): the webhook reads the classes from the Kubernetes API
//! stand-in, an image's entrypoint from a real registry (Debian's docker-registry over TLS,
//! Basic auth from the ServiceAccount's pull Secret), and the admitted pod runs from its spec:
//! the copy and the native sidecar through the kubelet stand-in, the app as kubelet would
//! start it (its env built and `$(VAR)` expanded from the spec alone), a real program that
//! writes what it sees into a file. No Secret is ever written or read but the pull Secret.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::kube_api::KubeApi;
use common::kubelet::Kubelet;
use common::registry::TestRegistry;
use common::scenario::Pod;
use common::webhook::{patched, validates, Webhook};
use common::{spawn_tied_to_process, unique, Bao, Server, TestDir};
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vault");
/// What the app does, as its image's entrypoint (or its command): one line per start with
/// every variable it was asked about and its arguments, appended to $OUT; then it stays.
const APP: &str = r#"for v in $VARS; do eval "printf '%s=%s\n' $v \"\${$v-<unset>}\""; done >> "$OUT"; printf 'args=%s\n---\n' "$*" >> "$OUT"; exec sleep 300"#;

struct Scene {
    dir: TestDir,
    api: KubeApi,
    webhook: Webhook,
    registry: TestRegistry,
    identity: Pod,
    prefix: String,
}

fn fixture(name: &str, s: &Scene, bao: &Bao) -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap();
    let text = text
        .replace("VAULT_ADDR", &bao.addr())
        .replace("ROLE_NAME", &s.identity.role)
        .replace("KV_PREFIX", &s.prefix)
        .replace("SERVICE_ACCOUNT", &s.identity.service_account)
        .replace(
            "IMAGE",
            &format!("{}/nginxinc/nginx-unprivileged:latest", s.registry.host()),
        );
    text.split("\n---\n")
        .map(|doc| serde_yaml::from_str(doc).unwrap())
        .collect()
}

/// OpenBao with the driver's three KV secrets under a prefix of the test's own; a registry
/// that wants Basic auth, holding the app image; the API serving the ServiceAccount (with
/// its pull Secret) and that Secret; the webhook trusting the registry's CA.
fn scene(tag: &str) -> Scene {
    let bao = Bao::shared();
    let prefix = unique(tag);
    for (n, key, value) in [
        (1, "bar1", "hello-sync1"),
        (2, "bar2", "hello-sync2"),
        (3, "bar3", "aGVsbG8tc3luYzM="),
    ] {
        bao.cli(&[
            "kv",
            "put",
            &format!("secret/{prefix}/kv-sync{n}"),
            &format!("{key}={value}"),
        ]);
    }
    let identity = Pod::with_policy(
        bao,
        &format!("path \"secret/data/{prefix}/*\" {{ capabilities = [\"read\"] }}\n"),
    );
    let dir = TestDir::new();
    let api = KubeApi::start(dir.path());
    let registry = TestRegistry::start(&dir.join("registry"), Some(("puller", "pull-pw")));
    registry.push_image(
        "nginxinc/nginx-unprivileged",
        "latest",
        Some(&["/bin/sh", "-c", APP, "app"]),
        Some(&["nginx", "-g", "daemon off; $(NOT_EXPANDED)"]),
        ("linux", "amd64"),
    );
    let config = json!({"auths": {registry.host(): {"username": "puller", "password": "pull-pw"}}});
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(config.to_string());
    api.put_secret(
        "default",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": encoded}}),
    );
    api.put_service_account_object(
        "default",
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": identity.service_account}, "imagePullSecrets": [{"name": "regcred"}]}),
    );
    let kubeconfig = api.kubeconfig(dir.path(), &api.token, true);
    let (crt, key) = common::pki::self_signed(dir.path(), "webhook");
    let ca = registry.ca.clone();
    let webhook = Webhook::start_with(
        dir.path(),
        &crt,
        &key,
        &["--kubeconfig", kubeconfig.to_str().unwrap()],
        |cmd| {
            cmd.env("SSL_CERT_FILE", &ca);
        },
    );
    Scene {
        dir,
        api,
        webhook,
        registry,
        identity,
        prefix,
    }
}

impl Scene {
    fn review(&self, pod: &Value) -> Value {
        self.webhook.review(&self.webhook.ca, pod)
    }
}

fn pod_of(deployment: &Value) -> Value {
    let template = &deployment["spec"]["template"];
    let mut metadata = template["metadata"].clone();
    metadata["generateName"] = json!("nginx-deployment-5c8f7d9b6-");
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]})
}

/// Starts the app container `name` as kubelet and the runtime would: its env from the spec
/// (plain values with `$(VAR)` expanded in order; a Secret or ConfigMap reference answered
/// from `objects`, as if it existed; a reference to a synced Secret is a failure, since none
/// exists), then command and args expanded with it, paths through the container's mounts.
fn start_app(
    kubelet: &Kubelet,
    name: &str,
    objects: &[(&str, &str)],
    extra: &[(&str, &str)],
    log: &Path,
) -> Child {
    use secretdrop::exec::expand::expand;
    let c = kubelet.container(name);
    let mut env: Vec<(String, String)> = Vec::new();
    let get = |env: &Vec<(String, String)>, n: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_bytes().to_vec())
    };
    let object = |what: &str| {
        objects
            .iter()
            .find(|(k, _)| *k == what)
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| {
                panic!("kubelet: {what} does not exist (CreateContainerConfigError)")
            })
    };
    for e in c["envFrom"].as_array().into_iter().flatten() {
        let source = e
            .pointer("/configMapRef/name")
            .or(e.pointer("/secretRef/name"))
            .unwrap()
            .as_str()
            .unwrap();
        let prefix = e["prefix"].as_str().unwrap_or("");
        for pair in object(source).split(',') {
            let (k, v) = pair.split_once('=').unwrap();
            env.push((format!("{prefix}{k}"), v.to_string()));
        }
    }
    for e in c["env"].as_array().into_iter().flatten() {
        let n = e["name"].as_str().unwrap().to_string();
        let v = match e.pointer("/valueFrom/secretKeyRef") {
            Some(r) => object(&format!(
                "{}/{}",
                r["name"].as_str().unwrap(),
                r["key"].as_str().unwrap()
            )),
            None => String::from_utf8(expand(e["value"].as_str().unwrap_or(""), &|r| get(&env, r)))
                .unwrap(),
        };
        env.push((n, v));
    }
    let expanded = |field: &str| -> Vec<Value> {
        c[field]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                json!(String::from_utf8(expand(a.as_str().unwrap(), &|r| get(&env, r))).unwrap())
            })
            .collect()
    };
    let mut argv = kubelet.args(&c, &json!(expanded("command")));
    argv.extend(kubelet.args(&c, &json!(expanded("args"))));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(extra.iter().copied())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
    spawn_tied_to_process(cmd).expect("start the app")
}

/// Waits until the app's file has `n` starts recorded; the records.
fn starts(out: &Path, n: usize, app: &Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        let records: Vec<String> = text
            .split("---\n")
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect();
        if records.len() >= n {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{n} starts not recorded: {text}\napp: {}",
            std::fs::read_to_string(app.with_extension("err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The copy and the native sidecar, run; the sidecar's handle.
fn run_ours(kubelet: &Kubelet, dir: &Path) -> common::kubelet::Running {
    kubelet.run("secretdrop-copy").expect_code(0);
    let sidecar = kubelet.start("secretdrop", &dir.join("sidecar.log"));
    kubelet.wait_started("secretdrop", &sidecar, Duration::from_secs(20));
    sidecar
}

fn out_file(dir: &Path) -> PathBuf {
    dir.join(unique("app-out"))
}

#[test]
fn the_drivers_kv_sync_deployment_is_served_without_a_secret_and_restarted_on_rotation() {
    let bao = Bao::shared();
    let s = scene("kv-sync");
    for class in fixture("vault-kv-sync-secretproviderclass.yaml", &s, bao) {
        s.api.put("default", class);
    }
    let deployment = fixture("nginx-kv-env-var.yaml", &s, bao).remove(0);
    let mut pod = pod_of(&deployment);
    // The per-pod settings apply to the converted pod: the sidecar polls every second.
    pod["metadata"]["annotations"] = json!({"secretdrop.dev/poll-interval": "1s"});

    let cold = Instant::now();
    let response = s.review(&pod);
    let cold = cold.elapsed();
    let injected = patched(&pod, &response);
    validates("synced", &injected);
    let warnings: Vec<&str> = response["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("env SECRET_USERNAME: secretKeyRef kvsecret/username")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("no command; image") && w.contains("linux/amd64")),
        "{warnings:?}"
    );

    // The same pod again: the registry's tag is unchanged, one HEAD.
    let before = s.registry.requests("nginxinc/nginx-unprivileged");
    let warm = Instant::now();
    let again = s.review(&pod);
    let warm = warm.elapsed();
    assert_eq!(again["patch"], response["patch"]);
    let after = s.registry.requests("nginxinc/nginx-unprivileged");
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert!(after.last().unwrap().starts_with("HEAD "), "{after:?}");
    // For docs/benchmarks.md: warm reviews, and the same pod with a command (no registry).
    let median = |pod: &Value| {
        let mut times: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                s.review(pod);
                t.elapsed()
            })
            .collect();
        times.sort();
        times[2]
    };
    let warm_median = median(&pod);
    let mut with_command = pod.clone();
    with_command["spec"]["containers"][0]["command"] = json!(["/app"]);
    let no_registry = median(&with_command);
    eprintln!(
        "review of the kv-sync pod: cold (registry read) {cold:?}, warm {warm:?} (median of 5: \
         {warm_median:?}); with a command, no registry: median {no_registry:?}"
    );

    // No Secret was written, and none read but the pull Secret.
    let seen = s.api.seen();
    assert!(seen.iter().all(|r| r.starts_with("GET ")), "{seen:?}");
    let secrets: Vec<&String> = seen.iter().filter(|r| r.contains("/secrets/")).collect();
    assert!(
        secrets.iter().all(|r| r.ends_with("/secrets/regcred")),
        "{seen:?}"
    );

    let kubelet = Kubelet::new(s.identity.dir.path(), "default", &injected);
    let _sidecar = run_ours(&kubelet, s.dir.path());
    // The driver's files are there as before.
    assert_eq!(
        kubelet.read("nginx", "/mnt/secrets-store/secret-1"),
        "hello-sync1"
    );
    assert_eq!(
        kubelet.read("nginx", "/mnt/secrets-store/secret-3"),
        "hello-sync3"
    );

    let out = out_file(s.dir.path());
    let log = s.dir.join("app.log");
    let out_s = out.to_str().unwrap();
    let mut app = start_app(
        &kubelet,
        "nginx",
        &[],
        &[("OUT", out_s), ("VARS", "SECRET_USERNAME")],
        &log,
    );
    let first = starts(&out, 1, &log);
    assert_eq!(
        first[0], "SECRET_USERNAME=hello-sync2\nargs=nginx -g daemon off; $(NOT_EXPANDED)\n",
        "the image's cmd, never expanded"
    );

    // Rotation: the app is restarted with the new value.
    bao.cli(&[
        "kv",
        "put",
        &format!("secret/{}/kv-sync2", s.prefix),
        "bar2=rotated-sync2",
    ]);
    let both = starts(&out, 2, &log);
    assert_eq!(
        both[1],
        "SECRET_USERNAME=rotated-sync2\nargs=nginx -g daemon off; $(NOT_EXPANDED)\n"
    );
    let _ = app.kill();
    let _ = app.wait();
    let logged = std::fs::read_to_string(log.with_extension("err")).unwrap();
    assert!(
        !logged.contains("hello-sync2") && !logged.contains("rotated-sync2"),
        "{logged}"
    );
}

#[test]
fn envfrom_prefixes_order_and_expansion_are_kubelets() {
    let bao = Bao::shared();
    let s = scene("envfrom");
    for class in fixture("vault-kv-sync-secretproviderclass.yaml", &s, bao) {
        s.api.put("default", class);
    }
    let script = APP;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "envfrom"},
        "spec": {"serviceAccountName": s.identity.service_account,
            "containers": [{"name": "app", "image": "never-pulled.example/app:1",
                "command": ["/bin/sh", "-c", script, "app"],
                "args": ["user=$(DB_username)", "literal=$$(DB_username)", "kept=$(FROM_CM)", "none=$(NOPE)"],
                "envFrom": [{"configMapRef": {"name": "cm"}},
                            {"secretRef": {"name": "kvsecret"}, "prefix": "DB_"}],
                "env": [{"name": "DB_pwd", "value": "plain wins"},
                        {"name": "URL", "value": "db://$(DB_username):$(DB_username_b64)@$(FROM_CM)/$$(DB_username)"},
                        {"name": "OTHER", "valueFrom": {"secretKeyRef": {"name": "unrelated", "key": "k"}}}]}],
            "volumes": [{"name": "secrets-store", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true,
                         "volumeAttributes": {"secretProviderClass": "vault-kv-sync"}}}]}});
    let response = s.review(&pod);
    let injected = patched(&pod, &response);
    validates("synced", &injected);
    assert!(s.registry.requests("app").is_empty());
    let c = &injected["spec"]["containers"][0];
    assert_eq!(
        c["env"].as_array().unwrap().len(),
        2,
        "the plain value and the unrelated Secret stay: {c}"
    );
    assert_eq!(c["envFrom"], json!([{"configMapRef": {"name": "cm"}}]));

    let kubelet = Kubelet::new(s.identity.dir.path(), "default", &injected);
    let _sidecar = run_ours(&kubelet, s.dir.path());
    // The container mounted no volume of the class: it sees only the objects its variables
    // read (not secret-1, whose variable DB_pwd a plain value overrides).
    let mut seen: Vec<String> = std::fs::read_dir(kubelet.volume("secretdrop-env-0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".."))
        .collect();
    seen.sort();
    assert_eq!(seen, ["secret-2", "secret-3"]);
    let out = out_file(s.dir.path());
    let log = s.dir.join("app.log");
    let vars = "DB_pwd DB_username DB_username_b64 URL OTHER FROM_CM";
    let mut app = start_app(
        &kubelet,
        "app",
        &[("cm", "FROM_CM=cm-value"), ("unrelated/k", "kubelet-value")],
        &[("OUT", out.to_str().unwrap()), ("VARS", vars)],
        &log,
    );
    let got = starts(&out, 1, &log);
    assert_eq!(
        got[0],
        "DB_pwd=plain wins\nDB_username=hello-sync2\nDB_username_b64=hello-sync3\n\
         URL=db://hello-sync2:hello-sync3@cm-value/$(DB_username)\nOTHER=kubelet-value\nFROM_CM=cm-value\n\
         args=user=hello-sync2 literal=$(DB_username) kept=cm-value none=$(NOPE)\n"
    );
    let _ = app.kill();
    let _ = app.wait();
}

#[test]
fn the_drivers_multiple_classes_pod_reads_one_secret_of_each() {
    let bao = Bao::shared();
    let s = scene("multiple");
    for class in fixture("vault-kv-sync-multiple-secretproviderclass.yaml", &s, bao) {
        s.api.put("default", class);
    }
    let pod = fixture("nginx-kv-multiple-volumes.yaml", &s, bao).remove(0);
    let response = s.review(&pod);
    let injected = patched(&pod, &response);
    validates("synced", &injected);
    let command: Vec<&str> = injected["spec"]["containers"][0]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        command.iter().filter(|a| **a == "exec").count(),
        2,
        "one exec per class volume: {command:?}"
    );

    let kubelet = Kubelet::new(s.identity.dir.path(), "default", &injected);
    let _sidecar = run_ours(&kubelet, s.dir.path());
    assert_eq!(
        kubelet.read("nginx", "/mnt/secrets-store-1/secret-1"),
        "hello-sync1"
    );
    let out = out_file(s.dir.path());
    let log = s.dir.join("app.log");
    let mut app = start_app(
        &kubelet,
        "nginx",
        &[],
        &[
            ("OUT", out.to_str().unwrap()),
            ("VARS", "SECRET_1_USERNAME SECRET_2_PWD"),
        ],
        &log,
    );
    let got = starts(&out, 1, &log);
    assert!(
        got[0].starts_with("SECRET_1_USERNAME=hello-sync1\nSECRET_2_PWD=hello-sync2\n"),
        "{}",
        got[0]
    );
    let _ = app.kill();
    let _ = app.wait();
}

#[test]
fn an_unreachable_or_silent_registry_refuses_the_pod_naming_the_container_and_the_fix() {
    let bao = Bao::shared();
    let s = scene("unreachable");
    for class in fixture("vault-kv-sync-secretproviderclass.yaml", &s, bao) {
        s.api.put("default", class);
    }
    let deployment = fixture("nginx-kv-env-var.yaml", &s, bao).remove(0);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for image in [
        format!("localhost:{}/app:v1", common::free_port()),
        format!("localhost:{}/app:v1", silent.local_addr().unwrap().port()),
        format!(
            "{}/nginxinc/nginx-unprivileged:no-such-tag",
            s.registry.host()
        ),
    ] {
        let mut pod = pod_of(&deployment);
        pod["spec"]["containers"][0]["image"] = json!(image);
        let started = Instant::now();
        let response = s.review(&pod);
        let took = started.elapsed();
        assert_eq!(response["allowed"], false, "{response}");
        let m = response["status"]["message"].as_str().unwrap();
        assert!(
            m.contains("container \"nginx\"") && m.contains("Set command"),
            "{m}"
        );
        assert!(took < Duration::from_secs(4), "{image}: {took:?}");
    }
    drop(silent);
    // With a command it never waits on the registry.
    let mut pod = pod_of(&deployment);
    pod["spec"]["containers"][0]["image"] =
        json!(format!("localhost:{}/app:v1", common::free_port()));
    pod["spec"]["containers"][0]["command"] = json!(["/app"]);
    assert_eq!(s.review(&pod)["allowed"], true);
}

#[test]
fn secret_volumes_of_synced_secrets_get_their_keys_and_modes_and_tls_is_cut_like_the_driver() {
    let bao = Bao::shared();
    let s = scene("volume");
    for class in fixture("vault-kv-sync-secretproviderclass.yaml", &s, bao) {
        s.api.put("default", class);
    }
    let bundle = "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n\
                  -----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n\
                  -----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n";
    bao.cli(&[
        "kv",
        "put",
        &format!("secret/{}/tls", s.prefix),
        &format!("bundle={bundle}"),
    ]);
    s.api.put("default", serde_yaml::from_str(&format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: tls-sync\nspec:\n  provider: vault\n  secretObjects:\n  - secretName: ingress-tls\n    type: kubernetes.io/tls\n    data:\n    - {{objectName: bundle, key: tls.crt}}\n    - {{objectName: bundle, key: tls.key}}\n  parameters:\n    roleName: {}\n    vaultAddress: {}\n    objects: |\n      - {{objectName: bundle, secretPath: secret/data/{}/tls, secretKey: bundle}}\n",
        s.identity.role, bao.addr(), s.prefix
    )).unwrap());
    let csi = |class: &str| json!({"driver": "secrets-store.csi.k8s.io", "readOnly": true, "volumeAttributes": {"secretProviderClass": class}});
    let unrelated = json!({"name": "other", "secret": {"secretName": "unrelated"}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "volumes"},
        "spec": {"serviceAccountName": s.identity.service_account,
            "containers": [{"name": "app", "image": "x", "command": ["/app"], "volumeMounts": [
                {"name": "kv", "mountPath": "/etc/kv", "readOnly": true},
                {"name": "tls", "mountPath": "/etc/tls", "readOnly": true},
                {"name": "other", "mountPath": "/etc/other", "readOnly": true}]}],
            "volumes": [
                {"name": "store", "csi": csi("vault-kv-sync")},
                {"name": "tls-store", "csi": csi("tls-sync")},
                {"name": "kv", "secret": {"secretName": "kvsecret", "defaultMode": 0o440,
                    "items": [{"key": "pwd", "path": "db/password", "mode": 0o400}, {"key": "username_b64", "path": "user"}]}},
                {"name": "tls", "secret": {"secretName": "ingress-tls"}},
                unrelated.clone()]}});
    let response = s.review(&pod);
    let injected = patched(&pod, &response);
    validates("synced volumes", &injected);
    assert_eq!(
        common::kubelet::named(&injected["spec"]["volumes"], "other"),
        &unrelated,
        "untouched"
    );
    assert_eq!(
        injected["spec"]["containers"][0], pod["spec"]["containers"][0],
        "no env, no exec"
    );
    let warnings = response["warnings"].to_string();
    assert!(
        warnings.contains("volume kv: secret kvsecret served from volume store (2 files"),
        "{warnings}"
    );

    let kubelet = Kubelet::new(s.identity.dir.path(), "default", &injected);
    // `check` on the annotations file the container reads says what each view holds.
    let ours = kubelet.container("secretdrop");
    let annotations = kubelet
        .host_path(&ours, "/etc/secretdrop/annotations")
        .unwrap();
    let plan = common::cli::secretdrop(&["check", "--config", annotations.to_str().unwrap()], &[]);
    plan.expect_code(0);
    for want in [
        "volume kv (--volume kv=DIR): the synced Secret's files, from volume store",
        "  db/password <- secret-1, mode 0400",
        "  user <- secret-3, mode 0440",
        "  tls.key <- bundle (its private key), mode 0644",
        "rewritten by the webhook for synced Secrets:",
    ] {
        assert!(plan.stdout.contains(want), "{want}: {}", plan.stdout);
    }
    let sidecar = kubelet.start("secretdrop", &s.dir.join("sidecar.log"));
    kubelet.wait_started("secretdrop", &sidecar, Duration::from_secs(20));
    let app = kubelet.container("app");
    let path = |p: &str| kubelet.host_path(&app, p).unwrap();
    assert_eq!(kubelet.read("app", "/etc/kv/db/password"), "hello-sync1");
    assert_eq!(kubelet.read("app", "/etc/kv/user"), "hello-sync3");
    assert_eq!(
        common::cli::mode_of(std::fs::canonicalize(path("/etc/kv/db/password")).unwrap()),
        0o400
    );
    assert_eq!(
        common::cli::mode_of(std::fs::canonicalize(path("/etc/kv/user")).unwrap()),
        0o440
    );
    let names: Vec<String> = std::fs::read_dir(kubelet.volume("kv"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".."))
        .collect();
    assert_eq!(names.len(), 2, "only the items: {names:?}");
    assert_eq!(
        kubelet.read("app", "/etc/tls/tls.key"),
        "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n"
    );
    assert_eq!(
        kubelet.read("app", "/etc/tls/tls.crt"),
        "-----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"
    );
    assert_eq!(
        common::cli::mode_of(std::fs::canonicalize(path("/etc/tls/tls.key")).unwrap()),
        0o644
    );
    assert!(
        s.api
            .seen()
            .iter()
            .all(|r| r.starts_with("GET ") && !r.contains("/secrets/")),
        "{:?}",
        s.api.seen()
    );
}
