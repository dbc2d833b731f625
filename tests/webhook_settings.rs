//! Per-pod settings of injected pods, through the real `secretdrop webhook` and, where it
//! matters, the admitted pod run by the tests' Kubelet stand-in against OpenBao: the opt-in read
//! like Go's ParseBool from the label or the annotation; a private Vault CA (as text, as the
//! pod's ConfigMap, as the webhook's default ConfigMap); formats and templates in annotation
//! objects, `auth-path: auth/<jwt mount>` (the vault-k8s spelling) and the token audience;
//! resources and the readiness port with a readinessProbe that works; the review log a cluster
//! operator reads; and every new annotation attacked with hostile values, refused by the
//! webhook at admission and by the sidecar reading the downward-API file.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cli::{read, secretdrop};
use common::kubelet::{container, project_annotations, Cluster, ConfigMaps, Kubelet};
use common::resident::Resident;
use common::scenario::Pod;
use common::webhook::{kubectl_agrees, patched, refusal, Webhook};
use common::{
    free_port, pki, unique, Bao, SaClaims, Server, TestDir, TokenReviewer, DEFAULT_AUDIENCE,
};
use serde_json::{json, Value};

/// A pod with the opt-in label, `annotations` (the `secretdrop.dev/` prefix added to keys
/// without a slash) and `spec`.
fn pod(annotations: Value, spec: Value) -> Value {
    let mut a = serde_json::Map::new();
    for (k, v) in annotations.as_object().unwrap() {
        let key = if k.contains('/') {
            k.clone()
        } else {
            format!("secretdrop.dev/{k}")
        };
        a.insert(key, v.clone());
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": unique("pod"), "labels": {"secretdrop.dev/inject": "true"},
                        "annotations": a},
           "spec": spec})
}

fn spec_of(identity: &Pod) -> Value {
    json!({"serviceAccountName": identity.service_account,
           "containers": [{"name": "app", "image": "app", "ports": [{"containerPort": 8080}]}]})
}

fn webhook(dir: &Path, extra: &[&str]) -> (Webhook, std::path::PathBuf) {
    let (crt, key) = pki::self_signed(dir, "webhook");
    (Webhook::start(dir, &crt, &key, extra), crt)
}

/// The ParseBool table, for the label the webhook configuration selects on and for the
/// annotation: true values inject, false values leave the pod alone, anything else is refused
/// with a message naming where the value was, never silently ignored.
#[test]
fn inject_is_read_like_go_parse_bool_from_the_label_and_the_annotation() {
    let dir = TestDir::new();
    let (w, crt) = webhook(dir.path(), &["--vault-address", "http://vault.vault:8200"]);
    let base = || {
        json!({"metadata": {"name": "p", "annotations": {
                  "secretdrop.dev/role": "r",
                  "secretdrop.dev/objects": "- {objectName: a, secretPath: secret/data/a, secretKey: k}"}},
               "spec": {"containers": [{"name": "app", "image": "app"}]}})
    };
    let with = |place: &str, value: &str| {
        let mut p = base();
        let field = if place == "label" {
            "labels"
        } else {
            "annotations"
        };
        p["metadata"][field]["secretdrop.dev/inject"] = json!(value);
        p
    };
    let truths = ["1", "t", "T", "TRUE", "true", "True"];
    let falsehoods = ["0", "f", "F", "FALSE", "false", "False"];
    for place in ["label", "annotation"] {
        for v in truths {
            let p = with(place, v);
            let injected = patched(&p, &w.review(&crt, &p));
            container(&injected, "secretdrop");
        }
        for v in falsehoods {
            let r = w.review(&crt, &with(place, v));
            assert_eq!(r["allowed"], true, "{place} {v}");
            assert!(r.get("patch").is_none(), "{place} {v}: changed");
        }
        for v in [
            "yes",
            "on",
            "",
            "tRUE",
            " true",
            "true ",
            "2",
            "enabled",
            "\u{0}true",
        ] {
            let m = refusal(&w.review(&crt, &with(place, v)));
            assert!(
                m.contains(&format!("secretdrop.dev/inject ({place})"))
                    && m.contains("allowed are true, false"),
                "{place} {v:?}: {m}"
            );
        }
    }
    // Label and annotation must agree; agreeing spellings may differ.
    let mut p = with("label", "true");
    p["metadata"]["annotations"]["secretdrop.dev/inject"] = json!("False");
    assert!(refusal(&w.review(&crt, &p)).contains("make them agree"));
    p["metadata"]["annotations"]["secretdrop.dev/inject"] = json!("1");
    assert!(patched(&p, &w.review(&crt, &p))["spec"]["initContainers"].is_array());
    // A huge non-boolean value is refused with a short message.
    let big = "x".repeat(100_000);
    let m = refusal(&w.review(&crt, &with("annotation", &big)));
    assert!(m.len() < 400, "{}", m.len());
}

/// A Vault behind a private CA: given as PEM text in `ca-cert` (with `tls-server-name`), as a
/// ConfigMap the pod names, or as the webhook's default ConfigMap; each admitted pod renders
/// when the Kubelet stand-in runs it from its spec, and a ConfigMap with another CA fails the
/// TLS handshake at once.
#[test]
fn a_pod_with_a_private_vault_ca_renders_through_the_injected_container() {
    let bao = Bao::start_tls();
    bao.cli(&["kv", "put", "secret/app", "password=behind-a-private-ca"]);
    let id = Pod::reading(&bao, "app");
    let pem = read(bao.ca_cert_path());
    let (w, crt) = webhook(
        id.dir.path(),
        &[
            "--vault-address",
            &bao.addr(),
            "--ca-configmap",
            "cluster-vault-ca",
        ],
    );
    let base = json!({"role": id.role, "mode": "init",
        "objects": "- {objectName: password, secretPath: secret/data/app, secretKey: password}\n"});
    let admit = |extra: Value| {
        let mut a = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        let p = pod(a, spec_of(&id));
        let response = w.review(&crt, &p);
        let injected = patched(&p, &response);
        kubectl_agrees(id.dir.path(), &unique("ca"), &p, &response, &injected);
        injected
    };
    let run = |case: &str, injected: &Value, maps: &[(&str, &str, &str)]| {
        let mut config_maps = ConfigMaps::new();
        for (name, key, text) in maps {
            config_maps.entry(name).or_default().insert(key, text);
        }
        let cluster = Cluster {
            config_maps,
            token: None,
        };
        let k = Kubelet::with(&id.dir.join(case), "default", injected, &cluster);
        let run = k.run("secretdrop-init");
        let password = k.host_path(container(injected, "app"), "/mnt/secrets/password");
        (password.unwrap(), run)
    };
    let volumes = |p: &Value| -> Vec<String> {
        p["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };

    // As text: no ConfigMap is mounted, not even the webhook's default.
    let inline = admit(json!({"ca-cert": pem, "tls-server-name": "localhost"}));
    assert!(!volumes(&inline).contains(&"secretdrop-ca".to_string()));
    let (password, r) = run("inline", &inline, &[]);
    r.expect_code(0).expect_no_leak(&["behind-a-private-ca"]);
    assert_eq!(read(&password), "behind-a-private-ca");

    // The pod's ConfigMap, a key of its choice.
    let named = admit(json!({"ca-configmap": "team-vault-ca/bundle.pem"}));
    let ca = container(&named, "secretdrop-init");
    assert!(ca["volumeMounts"]
        .to_string()
        .contains("/etc/secretdrop-ca"));
    let (password, r) = run("named", &named, &[("team-vault-ca", "bundle.pem", &pem)]);
    r.expect_code(0);
    assert_eq!(read(&password), "behind-a-private-ca");

    // Neither: the webhook's default ConfigMap, key ca.crt.
    let default = admit(json!({}));
    let (password, r) = run("default", &default, &[("cluster-vault-ca", "ca.crt", &pem)]);
    r.expect_code(0);
    assert_eq!(read(&password), "behind-a-private-ca");

    // The default ConfigMap holding another CA: the handshake fails, nothing is written.
    let other = read(&crt);
    let (password, r) = run("wrong", &default, &[("cluster-vault-ca", "ca.crt", &other)]);
    r.expect_code(1).expect_stderr(&["certificate"]);
    assert!(!password.exists());
}

/// `format` (dotenv, json with keys) and `template` in `secretdrop.dev/objects`; `auth-path:
/// auth/JWT-MOUNT` (the vault-k8s spelling) logs in to the jwt mount at
/// `auth/JWT-MOUNT/login`, not `auth/auth/...`; the `token-audience` reaches the projected
/// token and the sidecar's check of its token.
#[test]
fn annotation_objects_take_formats_and_templates_and_auth_path_takes_the_vault_k8s_spelling() {
    let bao = Bao::shared();
    let path = unique("formats");
    bao.cli(&[
        "kv",
        "put",
        &format!("secret/{path}"),
        "username=admin",
        "password=s3cr3t",
    ]);
    let id = Pod::reading(bao, &path);
    // A jwt mount that validates the pod's token offline, with a role for the same identity.
    let jwt = unique("jwt");
    common::enable_jwt_auth(bao, &jwt);
    let policy = unique("policy");
    bao.cli_stdin(
        &["policy", "write", &policy, "-"],
        &format!("path \"secret/data/{path}\" {{ capabilities = [\"read\"] }}\n"),
    );
    bao.cli(&[
        "write",
        &format!("auth/{jwt}/role/{}", id.role),
        "role_type=jwt",
        "user_claim=sub",
        &format!("bound_audiences={DEFAULT_AUDIENCE}"),
        &format!(
            "bound_subject=system:serviceaccount:default:{}",
            id.service_account
        ),
        &format!("policies={policy}"),
        "ttl=20m",
    ]);
    let (w, crt) = webhook(id.dir.path(), &["--vault-address", &bao.addr()]);
    let objects = format!(
        "- {{objectName: app.env, secretPath: secret/data/{path}, format: dotenv}}\n\
         - {{objectName: db.json, secretPath: secret/data/{path}, format: json, keys: [password]}}\n\
         - objectName: dsn\n  secretPath: secret/data/{path}\n  template: \"postgres://{{{{ data.username }}}}:{{{{ data.password }}}}@db/app\"\n"
    );
    let admit = |audience: &str| {
        let p = pod(
            json!({"role": id.role, "mode": "init", "objects": objects,
                   "auth-path": format!("auth/{jwt}"), "token-audience": audience}),
            spec_of(&id),
        );
        let response = w.review(&crt, &p);
        let injected = patched(&p, &response);
        kubectl_agrees(id.dir.path(), &unique("formats"), &p, &response, &injected);
        injected
    };
    let injected = admit(DEFAULT_AUDIENCE);
    let token = common::kubelet::named(&injected["spec"]["volumes"], "secretdrop-token");
    assert_eq!(
        token["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        DEFAULT_AUDIENCE
    );
    let k = Kubelet::new(&id.dir.join("formats"), "default", &injected);
    k.run("secretdrop-init")
        .expect_code(0)
        .expect_no_leak(&["s3cr3t"]);
    let app = k.container("app");
    let file =
        |k: &Kubelet, name: &str| k.host_path(&app, &format!("/mnt/secrets/{name}")).unwrap();
    assert_eq!(
        read(file(&k, "app.env")),
        "password=s3cr3t\nusername=admin\n"
    );
    let json: Value = serde_json::from_str(&read(file(&k, "db.json"))).unwrap();
    assert_eq!(json, json!({"password": "s3cr3t"}));
    assert_eq!(read(file(&k, "dsn")), "postgres://admin:s3cr3t@db/app");

    // An audience the token does not carry (the pod's token, minted for the default
    // audience): the sidecar refuses before sending it to Vault.
    let other = admit("vault");
    let cluster = Cluster {
        token: Some(&id.token),
        ..Cluster::default()
    };
    let k = Kubelet::with(&id.dir.join("audience"), "default", &other, &cluster);
    let r = k.run("secretdrop-init");
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("\"vault\""), "{}", r.stderr);
    assert!(!file(&k, "dsn").exists());
}

/// `vault-namespace`: the injected container logs in and reads inside that OpenBao namespace
/// (its own kubernetes mount, role and KV mount); the same pod without the annotation finds no
/// such role at the root.
#[test]
fn the_vault_namespace_annotation_logs_in_and_reads_inside_the_namespace() {
    let bao = Bao::shared();
    let ns = unique("ns");
    bao.cli(&["namespace", "create", &ns]);
    let in_ns = format!("-namespace={ns}");
    bao.cli(&["secrets", "enable", &in_ns, "-path=secret", "kv-v2"]);
    bao.cli(&["auth", "enable", &in_ns, "kubernetes"]);
    let tr = TokenReviewer::shared();
    bao.cli(&[
        "write",
        &in_ns,
        "auth/kubernetes/config",
        &format!("kubernetes_host={}", tr.addr()),
        &format!("token_reviewer_jwt={}", tr.reviewer_jwt()),
        "disable_local_ca_jwt=true",
        &format!("kubernetes_ca_cert=@{}", tr.ca_cert_pem_path().display()),
    ]);
    bao.cli_stdin(
        &["policy", "write", &in_ns, "reader", "-"],
        "path \"secret/data/app\" { capabilities = [\"read\"] }\n",
    );
    let (role, sa) = (unique("role"), unique("sa"));
    bao.cli(&[
        "write",
        &in_ns,
        &format!("auth/kubernetes/role/{role}"),
        &format!("bound_service_account_names={sa}"),
        "bound_service_account_namespaces=default",
        "policies=reader",
        "ttl=20m",
    ]);
    bao.cli(&["kv", "put", &in_ns, "secret/app", "password=in-a-namespace"]);
    let token = tr.mint(&SaClaims::new("default", &sa));

    let dir = TestDir::new();
    let (w, crt) = webhook(dir.path(), &["--vault-address", &bao.addr()]);
    let spec = json!({"serviceAccountName": sa, "containers": [{"name": "app", "image": "app"}]});
    let annotations = json!({"role": role, "mode": "init", "vault-namespace": ns,
        "objects": "- {objectName: password, secretPath: secret/data/app, secretKey: password}\n"});
    let p = pod(annotations.clone(), spec.clone());
    let injected = patched(&p, &w.review(&crt, &p));
    let cluster = Cluster {
        token: Some(&token),
        ..Cluster::default()
    };
    let password = |k: &Kubelet| {
        k.host_path(&k.container("app"), "/mnt/secrets/password")
            .unwrap()
    };
    let k = Kubelet::with(&dir.join("namespaced"), "default", &injected, &cluster);
    k.run("secretdrop-init")
        .expect_code(0)
        .expect_no_leak(&["in-a-namespace"]);
    assert_eq!(read(password(&k)), "in-a-namespace");

    let mut root = annotations;
    root.as_object_mut().unwrap().remove("vault-namespace");
    let p = pod(root, spec);
    let injected = patched(&p, &w.review(&crt, &p));
    let k = Kubelet::with(&dir.join("root"), "default", &injected, &cluster);
    let r = k.run("secretdrop-init");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!password(&k).exists());
    assert!(!r.stderr.contains("Vault namespace"), "{}", r.stderr);

    // A login refused inside a namespace says which one: a wrong namespace looks like any
    // other refusal otherwise.
    let mut elsewhere = p.clone();
    elsewhere["metadata"]["annotations"]["secretdrop.dev/vault-namespace"] = json!(ns);
    elsewhere["metadata"]["annotations"]["secretdrop.dev/role"] = json!(unique("no-such-role"));
    let injected = patched(&elsewhere, &w.review(&crt, &elsewhere));
    let k = Kubelet::with(&dir.join("wrong-role"), "default", &injected, &cluster);
    let r = k.run("secretdrop-init");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("(Vault namespace {ns})")),
        "{}",
        r.stderr
    );
}

/// Resources and the metrics/readiness port land on the injected sidecar; run as kubelet
/// would, it serves the readinessProbe the webhook wrote, which answers 200 once the files are
/// rendered; the poll interval and notify URL from the annotations are the ones it uses.
#[test]
fn resources_and_the_readiness_port_reach_the_sidecar_and_its_probe_works() {
    let bao = Bao::shared();
    let path = unique("ready");
    bao.cli(&["kv", "put", &format!("secret/{path}"), "password=ready"]);
    let id = Pod::reading(bao, &path);
    let (w, crt) = webhook(id.dir.path(), &["--vault-address", &bao.addr()]);
    let port = free_port();
    let (hook, bodies) = common::start_hook();
    let p = pod(
        json!({"role": id.role,
               "objects": format!("- {{objectName: password, secretPath: secret/data/{path}, secretKey: password}}\n"),
               "cpu-request": "10m", "cpu-limit": "200m", "memory-request": "16Mi",
               "memory-limit": "48Mi", "metrics-port": port.to_string(), "poll-interval": "2s",
               "notify-url": format!("http://127.0.0.1:{hook}/reload")}),
        spec_of(&id),
    );
    let response = w.review(&crt, &p);
    let injected = patched(&p, &response);
    kubectl_agrees(id.dir.path(), "ready", &p, &response, &injected);
    let sidecar = container(&injected, "secretdrop");
    assert_eq!(
        sidecar["resources"],
        json!({"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "200m", "memory": "48Mi"}})
    );
    assert_eq!(sidecar["ports"][0]["containerPort"], port);
    let probe = &sidecar["readinessProbe"]["httpGet"];
    assert_eq!(probe["port"], port);

    let k = Kubelet::new(&id.dir.join("kubelet"), "default", &injected);
    let args = k.args(sidecar, &sidecar["args"]);
    assert_eq!(&args[..2], ["sidecar", "--config"]);
    let env = k.env(sidecar);
    let password = k
        .host_path(container(&injected, "app"), "/mnt/secrets/password")
        .unwrap();
    let rest: Vec<&str> = args[5..].iter().map(String::as_str).collect();
    let mut r = Resident::start_with(
        Path::new(&args[2]),
        Path::new(&args[4]),
        &id.dir.join("sidecar.log"),
        &rest,
        |cmd| {
            cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        },
    );
    r.wait_ready(Duration::from_secs(20));
    // The readinessProbe, as kubelet sends it (the pod's IP is loopback here).
    let (status, body) = common::http("GET", port, probe["path"].as_str().unwrap(), &[], "")
        .expect("the readiness port answers");
    assert_eq!((status, body.trim()), (200, "ready"));
    // The poll interval from the annotation is what the sidecar uses: an edit in Vault shows
    // up within it, and the app hears of it at the annotation's URL.
    bao.cli(&["kv", "put", &format!("secret/{path}"), "password=polled"]);
    let notified = || !bodies.lock().unwrap().is_empty();
    assert!(
        r.eventually(Duration::from_secs(8), || read(&password) == "polled"
            && notified()),
        "{}",
        r.log_text()
    );
    let body = bodies.lock().unwrap()[0].clone();
    assert!(body.starts_with("{\"version\":\"..20"), "{body}");
    let (code, _) = r.stop();
    assert_eq!(code, Some(0));
}

/// Each review is one line with the namespace, the pod's generateName (a Deployment's pods have
/// no name yet), its owner, the outcome and, for a rejection, the reason; no Rust Debug text.
#[test]
fn each_review_logs_namespace_pod_owner_outcome_and_reason() {
    let dir = TestDir::new();
    let (w, crt) = webhook(
        dir.path(),
        &[
            "--vault-address",
            "http://vault.vault:8200",
            "--log-format",
            "json",
        ],
    );
    let owned = |annotations: Value| {
        let mut p = pod(
            annotations,
            json!({"containers": [{"name": "app", "image": "app"}]}),
        );
        let meta = p["metadata"].as_object_mut().unwrap();
        meta.remove("name");
        meta.insert("generateName".into(), json!("webapp-7d4b9c-"));
        meta.insert(
            "ownerReferences".into(),
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "webapp-7d4b9c",
                    "uid": "6f1e", "controller": true}]),
        );
        p
    };
    let objects = "- {objectName: a, secretPath: secret/data/a, secretKey: k}";
    w.review(&crt, &owned(json!({"role": "r", "objects": objects})));
    w.review(
        &crt,
        &owned(json!({"role": "r", "objects": objects, "mode": "daemon"})),
    );
    let mut skipped = owned(json!({}));
    skipped["metadata"]["labels"]["secretdrop.dev/inject"] = json!("false");
    w.review(&crt, &skipped);

    let log = read(&w.log);
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "admission review")
        .collect();
    assert_eq!(lines.len(), 3, "{log}");
    for l in &lines {
        assert_eq!(l["namespace"], "default", "{l}");
        assert_eq!(l["pod"], "webapp-7d4b9c-", "{l}");
        assert_eq!(l["owner"], "ReplicaSet/webapp-7d4b9c", "{l}");
    }
    assert_eq!(
        (&lines[0]["outcome"], &lines[0]["mode"]),
        (&json!("injected"), &json!("sidecar"))
    );
    assert_eq!(lines[1]["outcome"], "rejected");
    let reason = lines[1]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("secretdrop.dev/mode: \"daemon\" is not a mode"),
        "{reason}"
    );
    assert_eq!(
        (&lines[2]["outcome"], &lines[2]["reason"]),
        (&json!("skipped"), &json!("not opted in"))
    );
    for debug in ["Injected(", "Skipped(", "Rejected", "Some(", "None", "\\\""] {
        let fields: String = lines
            .iter()
            .map(|l| format!("{} {} {}", l["outcome"], l["mode"], l["owner"]))
            .collect();
        assert!(!fields.contains(debug), "Debug text {debug:?} in {fields}");
    }

    // The text format: the same fields as quoted key="value" pairs; a newline in a name (any
    // client of the port can send one) is escaped, never a forged line.
    std::fs::create_dir(dir.join("text")).unwrap();
    let (w, crt) = webhook(
        &dir.join("text"),
        &["--vault-address", "http://vault.vault:8200"],
    );
    w.review(
        &crt,
        &owned(json!({"role": "r", "objects": objects, "mode": "daemon"})),
    );
    let mut forged = owned(json!({"role": "r", "objects": objects}));
    forged["metadata"]["generateName"] =
        json!("web-\n2026-11-28T00:00:00Z  INFO admission review outcome=\"injected\"");
    w.review(&crt, &forged);
    let text = read(&w.log);
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("admission review"))
            .count(),
        2,
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains("admission review"))
        .unwrap_or_else(|| panic!("{text}"));
    for want in [
        "namespace=\"default\"",
        "pod=\"webapp-7d4b9c-\"",
        "owner=\"ReplicaSet/webapp-7d4b9c\"",
        "outcome=\"rejected\"",
        "reason=\"secretdrop.dev/mode: \\\"daemon\\\" is not a mode",
    ] {
        assert!(line.contains(want), "{want} not in {line}");
    }
    assert!(!line.contains("Rejected"), "{line}");
}

/// Hostile values of every new annotation: refused at admission with a message naming the
/// annotation and what is allowed, and refused again (exit 2, nothing written) by secretdrop
/// reading the downward-API file, which is what a value edited after admission meets.
#[test]
fn every_new_annotation_refuses_hostile_values_at_admission_and_in_the_sidecar() {
    let dir = TestDir::new();
    let (w, crt) = webhook(dir.path(), &["--vault-address", "http://vault.vault:8200"]);
    let base = json!({"role": "r",
        "objects": "- {objectName: a, secretPath: secret/data/a, secretKey: k}"});
    let garbage_pem =
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    let huge_pem = format!("{}{}", read(&crt), "# padding\n".repeat(70 * 1024 / 10));
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"ca-cert": huge_pem}),
            "ca-cert",
            "at most 65536 bytes",
        ),
        (json!({"ca-cert": "hello"}), "ca-cert", "not PEM"),
        (
            json!({"ca-cert": garbage_pem}),
            "ca-cert",
            "not a usable X.509",
        ),
        (
            json!({"ca-configmap": "../etc"}),
            "ca-configmap",
            "not a ConfigMap name",
        ),
        (
            json!({"ca-configmap": "ok/../../x"}),
            "ca-configmap",
            "not a ConfigMap key",
        ),
        (
            json!({"ca-cert": read(&crt), "ca-configmap": "x"}),
            "ca-configmap",
            "not both",
        ),
        (
            json!({"vault-namespace": "team/../../sys"}),
            "vault-namespace",
            "not a Vault namespace",
        ),
        (
            json!({"tls-server-name": "vault example"}),
            "tls-server-name",
            "not a DNS name",
        ),
        (
            json!({"token-audience": "a b"}),
            "token-audience",
            "not a token audience",
        ),
        (
            json!({"cpu-request": "1e999"}),
            "cpu-request",
            "not a CPU quantity",
        ),
        (
            json!({"cpu-limit": "lots"}),
            "cpu-limit",
            "not a CPU quantity",
        ),
        (json!({"memory-limit": "128m"}), "memory-limit", "write Mi"),
        (
            json!({"memory-request": "-1Gi"}),
            "memory-request",
            "not a memory quantity",
        ),
        (
            json!({"memory-request": "1Gi", "memory-limit": "64Mi"}),
            "memory-request",
            "must not exceed",
        ),
        (json!({"metrics-port": "80"}), "metrics-port", "1024-65535"),
        (
            json!({"metrics-port": "70000"}),
            "metrics-port",
            "1024-65535",
        ),
        (
            json!({"metrics-port": "9090; rm -rf /"}),
            "metrics-port",
            "1024-65535",
        ),
        (
            json!({"metrics-port": "8080"}),
            "metrics-port",
            "already declares port 8080",
        ),
        (
            json!({"notify-url": "http://169.254.169.254/latest/meta-data"}),
            "notify-url",
            "must be http://127.0.0.1",
        ),
        (
            json!({"notify-url": "http://127.0.0.1@evil.example/"}),
            "notify-url",
            "must be http://127.0.0.1",
        ),
        (
            json!({"notify-signal": "KILL", "notify-process": "app"}),
            "notify-signal",
            "allowed are",
        ),
        (
            json!({"notify-signal": "HUP"}),
            "notify-signal",
            "needs secretdrop.dev/notify-process",
        ),
        (
            json!({"notify-signal": "HUP", "notify-process": "app"}),
            "notify-process",
            "shareProcessNamespace",
        ),
        (
            json!({"notify-process": "../../bin/sh", "notify-signal": "HUP"}),
            "notify-process",
            "not a process name",
        ),
        (
            json!({"poll-interval": "0s"}),
            "poll-interval",
            "minimum of 1s",
        ),
        (
            json!({"poll-interval": "5s", "mode": "init"}),
            "poll-interval",
            "mode init runs none",
        ),
        (
            json!({"objects": "- {objectName: a, secretPath: s, secretKey: k, owner: 0}"}),
            "objects",
            "fsGroup",
        ),
        (
            json!({"objects": "- {objectName: a, secretPath: s, format: xml}"}),
            "objects",
            "allowed are json, dotenv",
        ),
        (
            json!({"auth-path": "auth/../sys"}),
            "auth-path",
            "not an auth mount path",
        ),
    ];
    for (extra, annotation, want) in &cases {
        let mut a = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        let p = pod(
            a,
            json!({"containers": [{"name": "app", "image": "app", "ports": [{"containerPort": 8080}]}]}),
        );
        let m = refusal(&w.review(&crt, &p));
        assert!(
            m.contains(&format!("secretdrop.dev/{annotation}")) && m.contains(want),
            "{annotation}: {m}"
        );
        assert!(m.len() < 1000, "{annotation}: a {} byte message", m.len());

        // The sidecar's reading of the same annotations (the downward-API file), for the
        // values that do not depend on the rest of the pod spec or the mode.
        let pod_level = [
            "already declares",
            "shareProcessNamespace",
            "mode init runs none",
        ];
        if pod_level.iter().any(|p| want.contains(p)) {
            continue;
        }
        let case = dir.join(unique("file"));
        project_annotations(&case, 1, &p);
        let out = case.join("out");
        let annotations_file = case.join("annotations");
        let r = secretdrop(
            &[
                "init",
                "--config",
                annotations_file.to_str().unwrap(),
                "--dir",
                out.to_str().unwrap(),
            ],
            &[("VAULT_ADDR", "http://127.0.0.1:9")],
        );
        r.expect_code(2)
            .expect_stderr(&[&format!("secretdrop.dev/{annotation}")]);
        assert!(!out.exists(), "{annotation}: output written");
    }
    // A 100 KB value of every setting: refused with a short message naming the annotation.
    let long = "x".repeat(100_000);
    for name in secretdrop::config::pod_settings::NAMES {
        let mut a = base.clone();
        a[name] = json!(long);
        let p = pod(a, json!({"containers": [{"name": "app", "image": "app"}]}));
        let m = refusal(&w.review(&crt, &p));
        assert!(
            m.contains(&format!("secretdrop.dev/{name}")),
            "{name}: {m:.300}"
        );
        assert!(m.len() < 400, "{name}: a {} byte message", m.len());
    }
    let rejected = cases.len() + secretdrop::config::pod_settings::NAMES.len();
    // Nothing above was admitted.
    let (_, metrics) = w.call(&crt, "GET", "/metrics", None);
    assert!(
        metrics.contains(&format!(
            "secretdrop_webhook_reviews_total{{result=\"rejected\"}} {rejected}"
        )),
        "{metrics}"
    );
}
