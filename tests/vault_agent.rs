//! Zero-edit migration from the Vault Agent Injector (docs/migrate-from-vault-agent.md): a pod
//! annotated for the injector goes through the webhook's `/convert-vault-agent`, the tests'
//! kubelet runs the admitted spec, and every file the app reads is compared, bytes and mode,
//! with what the real `bao agent` writes for the same annotations against the same OpenBao.
//! Refusals are checked by their text.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::agent_oracle::{self, Stanza};
use common::cli::write;
use common::kubelet::Kubelet;
use common::webhook::{patched, refusal, validates, ApiScene};
use common::{enable_kubernetes_auth, unique, Bao, SaClaims, Server, TokenReviewer};
use serde_json::{json, Value};

const P: &str = "vault.hashicorp.com/";

/// OpenBao with a kubernetes auth mount, a KV v1 mount and KV v2 secrets under unique names, a
/// role for service account `sa` in `default` that may read them.
struct Setup {
    mount: String,
    role: String,
    sa: String,
    kv1: String,
    kv2: String,
}

fn setup() -> Setup {
    let bao = Bao::shared();
    let mount = unique("k8s");
    enable_kubernetes_auth(bao, &mount);
    let kv1 = unique("kv1");
    bao.cli(&["secrets", "enable", "-path", &kv1, "-version=1", "kv"]);
    let kv2 = unique("app");
    let role = unique("role");
    let sa = unique("sa");
    let policy = format!(
        "path \"{kv1}/*\" {{ capabilities = [\"read\"] }}\n\
         path \"secret/data/{kv2}/*\" {{ capabilities = [\"read\"] }}\n\
         path \"sys/internal/ui/mounts/*\" {{ capabilities = [\"read\"] }}\n"
    );
    bao.cli_stdin(&["policy", "write", &role, "-"], &policy);
    bao.cli(&[
        "write",
        &format!("auth/{mount}/role/{role}"),
        &format!("bound_service_account_names={sa}"),
        "bound_service_account_namespaces=default",
        &format!("policies={role}"),
        "ttl=20m",
    ]);
    // Values of every JSON type, and strings Go prints in its own ways.
    let typed = json!({
        "username": "admin", "password": "p4ss w0rd\twith\ttabs\nand a newline",
        "url": "postgres://u:p@h/db?a=1&b=<2>", "big": 12345678901234567890u64, "ratio": 1.50,
        "count": 1000, "enabled": true, "none": null, "empty": "",
        "allowed": ["a", "b", 3], "features": {"beta": true, "limit": 10},
        "unicode": "gr\u{fc}\u{df}e \u{2603}", "api-key": "dash-key-value",
        "cert_b64": "aGVsbG8Kd29ybGQ=", "hosts": "a.example, b.example ,c.example"
    });
    let put = |path: &str, data: &Value| {
        let (status, body) = common::http(
            "POST",
            bao.port(),
            &format!("/v1/{path}"),
            &[("X-Vault-Token", bao.root_token())],
            &data.to_string(),
        )
        .unwrap();
        assert!((200..300).contains(&status), "{path}: {status} {body}");
    };
    put(&format!("{kv1}/app"), &typed);
    // A secret naming another: templates read the second from the first's answer.
    put(
        &format!("{kv1}/pointer"),
        &json!({"target": format!("secret/data/{kv2}/config")}),
    );
    put(
        &format!("secret/data/{kv2}/config"),
        &json!({ "data": typed }),
    );
    put(
        &format!("secret/data/{kv2}/default"),
        &json!({"data": {"db": "ns-db-password"}}),
    );
    Setup {
        mount,
        role,
        sa,
        kv1,
        kv2,
    }
}

/// One injector secret: its name, path, template, and the per-secret annotations.
struct Secret<'a> {
    name: &'a str,
    path: &'a str,
    template: Option<String>,
    extra: Vec<(String, String)>,
    /// Where the injector writes it, relative to the secrets directory.
    file: String,
}

fn secret<'a>(name: &'a str, path: &'a str, template: Option<String>) -> Secret<'a> {
    Secret {
        name,
        path,
        template,
        extra: vec![],
        file: name.to_lowercase(),
    }
}

/// The pod a Deployment creates, annotated for the injector.
fn pod(s: &Setup, secrets: &[Secret], more: &[(&str, &str)]) -> Value {
    let mut a = BTreeMap::new();
    a.insert(format!("{P}agent-inject"), "true".to_string());
    a.insert(format!("{P}role"), s.role.clone());
    a.insert(format!("{P}auth-path"), format!("auth/{}", s.mount));
    for sec in secrets {
        if !sec.path.is_empty() {
            a.insert(
                format!("{P}agent-inject-secret-{}", sec.name),
                sec.path.to_string(),
            );
        }
        if let Some(t) = &sec.template {
            a.insert(format!("{P}agent-inject-template-{}", sec.name), t.clone());
        }
        for (k, v) in &sec.extra {
            a.insert(format!("{P}{k}"), v.clone());
        }
    }
    for (k, v) in more {
        a.insert(format!("{P}{k}"), v.to_string());
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "app-7d4b9c-", "namespace": "default", "annotations": a},
        "spec": {
            "serviceAccountName": s.sa,
            "containers": [{"name": "app", "image": "example/app:1",
                            "command": ["/app"], "securityContext": {"runAsUser": 100}}]
        }
    })
}

/// The injector's template stanza for `sec`, for the oracle: its default template when the
/// pod gives none.
fn stanza(sec: &Secret, default_json: bool) -> Stanza {
    let contents = sec.template.clone().unwrap_or_else(|| match default_json {
        false => format!(
            "{{{{ with secret \"{}\" }}}}{{{{ range $k, $v := .Data }}}}{{{{ $k }}}}: {{{{ $v }}}}\n{{{{ end }}}}{{{{ end }}}}",
            sec.path
        ),
        true => format!("{{{{ with secret \"{}\" }}}}{{{{ .Data | toJSON }}}}\n{{{{ end }}}}", sec.path),
    });
    let get = |k: &str| {
        sec.extra
            .iter()
            .find(|(key, _)| key == &format!("{k}-{}", sec.name))
            .map(|(_, v)| v.clone())
    };
    Stanza {
        file: sec.file.clone(),
        contents,
        perms: get("agent-inject-perms"),
        error_on_missing_key: get("error-on-missing-key").is_some_and(|v| v == "true"),
        delims: None,
    }
}

/// A webhook that converts agent pods, with OpenBao as its default Vault.
fn scene() -> ApiScene {
    let bao = Bao::shared();
    ApiScene::new(&["--vault-address", &bao.addr()])
}

/// Admits `pod` through `/convert-vault-agent`.
fn admit(scene: &ApiScene, pod: &Value) -> Value {
    scene
        .webhook
        .review_at(&scene.webhook.ca, "/convert-vault-agent", pod)
}

/// Runs the converted pod's secretdrop (its native sidecar until started, or its init
/// container) and returns the kubelet, so the test reads what the app container sees.
fn run_pod(scene: &ApiScene, injected: &Value) -> Kubelet {
    let kubelet = Kubelet::new(scene.dir.path(), "default", injected);
    let inits = injected["spec"]["initContainers"].as_array().unwrap();
    let ours = inits
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("secretdrop"))
        .expect("an injected container");
    let name = ours["name"].as_str().unwrap();
    if ours["restartPolicy"] == "Always" {
        let running = kubelet.start(name, &scene.dir.join("sidecar.log"));
        kubelet.wait_started(name, &running, Duration::from_secs(30));
        std::mem::forget(running);
    } else {
        kubelet.run(name).expect_code(0);
    }
    kubelet
}

/// Every stanza's file, as the app container reads it at `dir`, equals bao agent's: bytes and
/// mode.
fn same_as_agent(kubelet: &Kubelet, dir: &str, agent: &agent_oracle::Rendered, stanzas: &[Stanza]) {
    assert!(agent.ok, "bao agent failed:\n{}", agent.log);
    let app = kubelet.container("app");
    for st in stanzas {
        let (want, want_mode) = agent.file(&st.file);
        let path = kubelet
            .host_path(&app, &format!("{dir}/{}", st.file))
            .unwrap();
        let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", st.file));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{}: bytes differ from bao agent's",
            st.file
        );
        assert_eq!(got, want, "{}", st.file);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            mode, want_mode,
            "{}: mode {mode:o}, bao agent {want_mode:o}",
            st.file
        );
    }
}

fn jwt_for(s: &Setup, dir: &Path) -> std::path::PathBuf {
    let token = TokenReviewer::shared().mint(&SaClaims::new("default", &s.sa));
    write(dir, "agent-jwt", &token)
}

/// What `bao agent` writes for `stanzas`, logged in as the pod would be, with the `NAMESPACE`
/// the injector gives its container.
fn oracle(s: &Setup, sc: &ApiScene, stanzas: &[Stanza]) -> agent_oracle::Rendered {
    agent_oracle::render(
        Bao::shared(),
        sc.dir.path(),
        &s.mount,
        &s.role,
        &jwt_for(s, sc.dir.path()),
        stanzas,
        &[("NAMESPACE", "default")],
    )
}

fn stanzas_of(secrets: &[Secret], default_json: bool) -> Vec<Stanza> {
    secrets.iter().map(|x| stanza(x, default_json)).collect()
}

/// `pod` admitted through `/convert-vault-agent` (valid by the schema) and run.
fn converted(sc: &ApiScene, pod: &Value) -> (Value, Kubelet) {
    let injected = patched(pod, &admit(sc, pod));
    validates("converted", &injected);
    let kubelet = run_pod(sc, &injected);
    (injected, kubelet)
}

#[test]
fn default_map_and_json_templates_match_bao_agent_on_kv_v1_and_v2() {
    let s = setup();
    let sc = scene();
    let kv1 = format!("{}/app", s.kv1);
    let kv2 = format!("secret/data/{}/config", s.kv2);
    let kv2_short = format!("secret/{}/config", s.kv2);
    let mut secrets = vec![
        secret("kv1-map", &kv1, None),
        secret("kv2-map", &kv2, None),
        secret("kv2-short", &kv2_short, None),
    ];
    secrets[0]
        .extra
        .push(("agent-inject-perms-kv1-map".into(), "0400".into()));
    let p = pod(&s, &secrets, &[]);
    let (_, kubelet) = converted(&sc, &p);
    let stanzas = stanzas_of(&secrets, false);
    let agent = oracle(&s, &sc, &stanzas);
    same_as_agent(&kubelet, "/vault/secrets", &agent, &stanzas);

    // The json default template, on a second pod.
    let secrets = vec![
        secret("kv1-json", &kv1, None),
        secret("kv2-json", &kv2, None),
    ];
    let p = pod(&s, &secrets, &[("agent-inject-default-template", "json")]);
    let sc2 = scene();
    let (_, kubelet) = converted(&sc2, &p);
    let stanzas = stanzas_of(&secrets, true);
    let agent = oracle(&s, &sc2, &stanzas);
    same_as_agent(&kubelet, "/vault/secrets", &agent, &stanzas);
}

#[test]
fn real_world_templates_match_bao_agent() {
    let s = setup();
    let sc = scene();
    let kv2 = format!("secret/data/{}/config", s.kv2);
    let kv1 = format!("{}/app", s.kv1);
    let t = |body: &str| {
        Some(
            body.replace("KV1ptr", &format!("{}/pointer", s.kv1))
                .replace("KV2", &kv2)
                .replace("KV1", &kv1)
                .replace("APP", &s.kv2),
        )
    };
    let secrets = vec![
        secret("pg", "", t("{{- with secret \"KV2\" -}}\npostgresql://{{ .Data.data.username }}:{{ .Data.data.password | urlquery }}@db:5432/app?sslmode=require\n{{- end }}\n")),
        secret("dotenv", "", t("{{ with secret \"KV2\" }}{{ range $k, $v := .Data.data }}export {{ $k }}=\"{{ $v }}\"\n{{ end }}{{ end }}")),
        secret("config.json", "", t("{{ with secret \"KV2\" }}{{ .Data.data | toJSONPretty }}{{ end }}\n")),
        secret("props", "", t("{{ with secret \"KV1\" -}}\ndb.user={{ .Data.username }}\ndb.url={{ .Data.url }}\nfeatures={{ .Data.features }}\nallowed={{ .Data.allowed }}\nbig={{ .Data.big }} ratio={{ .Data.ratio }} count={{ .Data.count }}\nnone={{ .Data.none }} missing={{ .Data.missing }}\n{{- end }}\n")),
        secret("nested", "", t("{{ with secret \"KV2\" }}{{ if .Data.data.enabled }}on{{ else }}off{{ end }} {{ with .Data.metadata }}v{{ .version }}{{ end }}{{ end }}\n")),
        secret("printf", "", t("{{ with secret \"KV1\" }}{{ printf \"%-10s|%5d|%q|%v\" .Data.username 42 .Data.unicode .Data.enabled }}{{ end }}")),
        secret("dashed", "", t("{{ with secret \"KV1\" }}{{ index .Data \"api-key\" }}{{ end }}")),
        secret("hosts", "", t("{{ with secret \"KV1\" }}{{ range $i, $h := .Data.hosts | split \",\" }}{{ $i }}={{ $h | trimSpace }};{{ end }} {{ .Data.hosts | split \",\" | join \"/\" }}{{ end }}")),
        secret("decoded", "", t("{{ with secret \"KV1\" }}{{ .Data.cert_b64 | base64Decode }}{{ end }}")),
        secret("by-namespace", "", t("{{ with secret (printf \"secret/data/APP/%s\" (env \"NAMESPACE\")) }}{{ .Data.data.db }}{{ end }}")),
        secret("chained", "", t("{{ with secret \"KV1ptr\" }}{{ with secret .Data.target }}{{ .Data.data.username }}@{{ .Data.metadata.version }}{{ end }}{{ end }}")),
        secret("contains", "", t("{{ with secret \"KV1\" }}{{ if .Data.hosts | contains \"b.example\" }}yes{{ end }}{{ .Data.username | toUpper }}{{ end }}")),
    ];
    let p = pod(&s, &secrets, &[]);
    let (_, kubelet) = converted(&sc, &p);
    let stanzas = stanzas_of(&secrets, false);
    let agent = oracle(&s, &sc, &stanzas);
    same_as_agent(&kubelet, "/vault/secrets", &agent, &stanzas);
}

#[test]
fn files_paths_perms_and_a_job_that_finishes() {
    let s = setup();
    let sc = scene();
    let kv1 = format!("{}/app", s.kv1);
    let mut a = secret("Creds", &kv1, None);
    a.extra.push((
        "agent-inject-file-Creds".into(),
        "conf/app/creds.txt".into(),
    ));
    a.extra
        .push(("agent-inject-perms-Creds".into(), "0440".into()));
    a.file = "conf/app/creds.txt".into();
    let mut b = secret("KeepCase", &kv1, None);
    b.extra
        .push(("preserve-secret-case-KeepCase".into(), "true".into()));
    b.file = "KeepCase".into();
    let mut c = secret("other", &kv1, None);
    c.extra
        .push(("secret-volume-path-other".into(), "/etc/other".into()));
    let secrets = [a, b, c];
    let p = pod(
        &s,
        &secrets,
        &[
            ("agent-pre-populate-only", "true"),
            ("agent-inject-token", "true"),
        ],
    );
    let injected = patched(&p, &admit(&sc, &p));
    validates("converted job", &injected);
    // A Job's pod: one init container, no sidecar, so the pod completes.
    let inits = injected["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(inits.len(), 1, "{inits:?}");
    assert!(inits[0].get("restartPolicy").is_none());
    assert_eq!(injected["spec"]["containers"].as_array().unwrap().len(), 1);
    let app = &injected["spec"]["containers"][0];
    let mounts: Vec<&str> = app["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(mounts, ["/vault/secrets", "/etc/other"]);
    // The agent's uid and gid: files are owned as they were.
    assert_eq!(inits[0]["securityContext"]["runAsUser"], 100);
    assert_eq!(inits[0]["securityContext"]["runAsGroup"], 1000);

    let kubelet = run_pod(&sc, &injected);
    let stanzas = stanzas_of(&secrets, false);
    let agent = oracle(&s, &sc, &stanzas);
    same_as_agent(&kubelet, "/vault/secrets", &agent, &stanzas[..2]);
    // The token, as the injector's sink writes it: bare, mode 0640, and one Vault accepts.
    let token = kubelet
        .host_path(&kubelet.container("app"), "/vault/secrets/token")
        .unwrap();
    assert_eq!(
        std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let token = std::fs::read_to_string(&token).unwrap();
    assert!(
        !token.ends_with('\n') && token.len() > 20,
        "{}",
        token.len()
    );
    let (status, _) = common::http(
        "GET",
        Bao::shared().port(),
        "/v1/auth/token/lookup-self",
        &[("X-Vault-Token", &token)],
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "the token file holds a live token");
    // The third lives in its own directory.
    let other = kubelet
        .host_path(&kubelet.container("app"), "/etc/other/other")
        .unwrap();
    assert_eq!(std::fs::read(&other).unwrap(), agent.file("other").0);
}

#[test]
fn refusals_name_the_annotation_and_the_reason() {
    let s = setup();
    let sc = scene();
    let kv1 = format!("{}/app", s.kv1);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![(
                "agent-inject-template-x",
                "{{ with secret \"a\" }}{{ nosuchfn . }}{{ end }}",
            )],
            "agent-inject-template-x",
        ),
        (
            vec![(
                "agent-inject-template-x",
                "{{ with secret \"a\" }}{{ .Data \"",
            )],
            "does not parse",
        ),
        (vec![("agent-configmap", "my-config")], "agent-configmap"),
        (
            vec![("agent-inject-command-x", "/app/reload.sh")],
            "notify-signal",
        ),
        (
            vec![("agent-inject-command-x", "kill -HUP $(pidof app)")],
            "shareProcessNamespace",
        ),
        (
            vec![
                ("agent-inject-command-x", "pkill -HUP app"),
                ("agent-inject-command-y", "pkill -USR1 app"),
            ],
            "one notification",
        ),
        (
            vec![("agent-inject-file-x", "../../etc/passwd")],
            "leaves the secrets directory",
        ),
        (vec![("agent-inject-perms-x", "rwx")], "octal"),
        (
            vec![(
                "agent-inject-template-x",
                "{{ with secret \"a\" }}{{ timestamp }}{{ end }}",
            )],
            "timestamp",
        ),
        (vec![("agent-run-as-user", "0")], "root"),
        (
            vec![("agent-inject-containers", "nope")],
            "no container \"nope\"",
        ),
    ];
    for (extra, says) in cases {
        let mut p = pod(&s, &[secret("x", &kv1, None)], &[]);
        for (k, v) in &extra {
            p["metadata"]["annotations"][format!("{P}{k}")] = json!(v);
        }
        let message = refusal(&admit(&sc, &p));
        assert!(message.contains(says), "{extra:?}: {message}");
        assert!(
            message.contains(P),
            "{extra:?}: names the annotation: {message}"
        );
    }
    // Pods that are not the injector's, or already injected, are left alone; so is an
    // injector pod sent to /mutate (another entry of the configuration).
    let plain = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                       "spec": {"containers": [{"name": "a", "image": "i"}]}});
    assert!(admit(&sc, &plain).get("patch").is_none());
    let mut done = pod(&s, &[secret("x", &kv1, None)], &[]);
    done["metadata"]["annotations"][format!("{P}agent-inject-status")] = json!("injected");
    assert!(admit(&sc, &done).get("patch").is_none());
    let p = pod(&s, &[secret("x", &kv1, None)], &[]);
    assert!(
        sc.review(&p).get("patch").is_none(),
        "converted through /mutate"
    );
    // What secretdrop ignores is said where kubectl prints it.
    let p = pod(
        &s,
        &[secret("x", &kv1, None)],
        &[("agent-limits-cpu", "500m"), ("agent-cache-enable", "true")],
    );
    let warnings = admit(&sc, &p)["warnings"].to_string();
    assert!(
        warnings.contains("vault.hashicorp.com/agent-limits-cpu")
            && warnings.contains("vault.hashicorp.com/agent-cache-enable"),
        "{warnings}"
    );
}

#[test]
fn a_curl_command_becomes_a_post_to_the_app_after_each_new_version() {
    let s = setup();
    let sc = scene();
    let (port, posts) = common::start_hook();
    let kv1 = format!("{}/app", s.kv1);
    let mut x = secret(
        "x",
        &kv1,
        Some("{{ with secret \"KV1\" }}{{ .Data.username }}{{ end }}".replace("KV1", &kv1)),
    );
    x.extra.push((
        "agent-inject-command-x".into(),
        format!("sh -c 'curl -s -X POST http://127.0.0.1:{port}/-/reload'"),
    ));
    let p = pod(
        &s,
        &[x],
        &[("template-static-secret-render-interval", "1s")],
    );
    let (_, kubelet) = converted(&sc, &p);
    let file = kubelet
        .host_path(&kubelet.container("app"), "/vault/secrets/x")
        .unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "admin");
    let bao = Bao::shared();
    bao.cli(&["kv", "put", &kv1, "username=root"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while posts.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no POST after the change"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "root");
    assert!(
        posts.lock().unwrap()[0].contains("version"),
        "{:?}",
        posts.lock().unwrap()
    );
}

#[test]
fn one_login_and_one_issuance_per_pod_across_templates() {
    let s = setup();
    let bao = Bao::shared();
    let pki = common::vault_pki(bao, "pki");
    let policy =
        format!("path \"{pki}/issue/web\" {{ capabilities = [\"create\", \"update\"] }}\n");
    bao.cli_stdin(
        &["policy", "write", &format!("{}-pki", s.role), "-"],
        &policy,
    );
    bao.cli(&[
        "write",
        &format!("auth/{}/role/{}", s.mount, s.role),
        &format!("bound_service_account_names={}", s.sa),
        "bound_service_account_namespaces=default",
        &format!("policies={},{}-pki", s.role, s.role),
        "ttl=20m",
    ]);
    let issue = format!("\"{pki}/issue/web\" \"common_name=app.example.com\" \"ttl=1h\"");
    let secrets = [
        secret(
            "tls.crt",
            "",
            Some(format!(
                "{{{{ with secret {issue} }}}}{{{{ .Data.certificate }}}}{{{{ end }}}}"
            )),
        ),
        secret(
            "tls.key",
            "",
            Some(format!(
                "{{{{ with secret {issue} }}}}{{{{ .Data.private_key }}}}{{{{ end }}}}"
            )),
        ),
        secret(
            "bundle.pem",
            "",
            Some(format!(
                "{{{{ with pkiCert {issue} }}}}{{{{ .Cert }}}}{{{{ .CA }}}}{{{{ end }}}}"
            )),
        ),
    ];
    let sc = scene();
    let p = pod(&s, &secrets, &[]);
    let (_, kubelet) = converted(&sc, &p);
    let app = kubelet.container("app");
    let path = |f: &str| {
        kubelet
            .host_path(&app, &format!("/vault/secrets/{f}"))
            .unwrap()
    };
    let openssl = |args: &[&str]| {
        let o = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    let (crt, key, bundle) = (path("tls.crt"), path("tls.key"), path("bundle.pem"));
    assert_eq!(
        openssl(&["x509", "-noout", "-pubkey", "-in", crt.to_str().unwrap()]),
        openssl(&["pkey", "-pubout", "-in", key.to_str().unwrap()]),
        "certificate and key are from different issuances"
    );
    // pkiCert and secret with the same path and arguments are one request too.
    assert_eq!(
        openssl(&["x509", "-noout", "-serial", "-in", crt.to_str().unwrap()]),
        openssl(&["x509", "-noout", "-serial", "-in", bundle.to_str().unwrap()]),
    );
    let log = std::fs::read_to_string(sc.dir.join("sidecar.log")).unwrap();
    assert_eq!(log.matches("logged in to Vault").count(), 1, "{log}");
}

#[test]
fn a_missing_key_with_error_on_missing_key_fails_the_init_container_like_the_agent() {
    let s = setup();
    let sc = scene();
    let kv1 = format!("{}/app", s.kv1);
    let mut ok = secret("ok", &kv1, None);
    ok.extra
        .push(("agent-inject-perms-ok".into(), "0600".into()));
    let mut bad = secret(
        "bad",
        "",
        Some(format!(
            "{{{{ with secret \"{kv1}\" }}}}{{{{ .Data.no_such_key }}}}{{{{ end }}}}"
        )),
    );
    bad.extra
        .push(("error-on-missing-key-bad".into(), "true".into()));
    let secrets = [ok, bad];
    let p = pod(&s, &secrets, &[("agent-pre-populate-only", "true")]);
    let injected = patched(&p, &admit(&sc, &p));
    let kubelet = Kubelet::new(sc.dir.path(), "default", &injected);
    let run = kubelet.run("secretdrop-init");
    assert_ne!(run.code, 0, "the init container succeeded");
    assert!(run.stderr.contains("no_such_key"), "{}", run.stderr);
    // Nothing partial: no version of the directory at all.
    let dir = kubelet
        .host_path(&kubelet.container("app"), "/vault/secrets")
        .unwrap();
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "files were written"
    );
    let stanzas = stanzas_of(&secrets, false);
    let agent = oracle(&s, &sc, &stanzas);
    assert!(
        !agent.ok,
        "bao agent rendered it: the test's premise is wrong"
    );
    // And without error-on-missing-key both print <no value>.
    let mut lax = secrets;
    lax[1].extra.clear();
    let p = pod(&s, &lax, &[]);
    let sc2 = scene();
    let (_, kubelet) = converted(&sc2, &p);
    let stanzas = stanzas_of(&lax, false);
    let agent = oracle(&s, &sc2, &stanzas);
    same_as_agent(&kubelet, "/vault/secrets", &agent, &stanzas);
}

#[test]
fn the_webhook_spends_little_on_templates_built_to_burn_it() {
    let s = setup();
    let sc = scene();
    let kv1 = format!("{}/app", s.kv1);
    // Nested loops of a hundred million each, before and after the secret, in the most secrets
    // a pod may have.
    let burn =
        "{{ range $i := loop 0 100000000 }}{{ range $j := loop 0 100000000 }}x{{ end }}{{ end }}";
    let secrets: Vec<Secret> = (0..256)
        .map(|_| {
            secret(
                "",
                "",
                Some(format!(
                    "{burn}{{{{ with secret \"{kv1}\" }}}}{burn}{{{{ end }}}}"
                )),
            )
        })
        .collect();
    let names: Vec<String> = (0..256).map(|i| format!("t{i}")).collect();
    let secrets: Vec<Secret> = secrets
        .into_iter()
        .zip(&names)
        .map(|(mut x, n)| {
            x.name = n;
            x.file = n.clone();
            x
        })
        .collect();
    let p = pod(&s, &secrets, &[]);
    let started = std::time::Instant::now();
    let message = refusal(&admit(&sc, &p));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(message.contains("agent-inject-template-t"), "{message}");
    assert!(message.contains("steps"), "{message}");
}
