use super::*;
use crate::net::registry::Process;
use crate::webhook::defaults::{ClassSource, ImageSource};
use crate::webhook::review;
use std::sync::{Arc, Mutex};

const OBJECTS: &str = "- {objectName: secret-1, secretPath: secret/data/kv-sync1, secretKey: bar1}\n\
                       - {objectName: secret-2, secretPath: secret/data/kv-sync2, secretKey: bar2}\n";

fn class() -> Value {
    json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
           "metadata": {"name": "vault-kv-sync"},
           "spec": {"provider": "vault",
                    "secretObjects": [{"secretName": "kvsecret", "type": "Opaque",
                                       "data": [{"objectName": "secret-1", "key": "pwd"},
                                                {"objectName": "secret-2", "key": "username"}]}],
                    "parameters": {"roleName": "kv-role", "objects": OBJECTS}}})
}

/// Defaults whose API answers the class, a ServiceAccount with a pull Secret, and that
/// Secret; images answer `image` and count the queries.
fn defaults(image: Result<Process, Option<String>>) -> (Defaults, Arc<Mutex<Vec<ImageQuery>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    use base64::Engine;
    let config = base64::engine::general_purpose::STANDARD
        .encode(br#"{"auths": {"reg.example": {"username": "u", "password": "p"}}}"#);
    let d = Defaults {
        vault_address: Some("http://vault:8200".into()),
        classes: ClassSource::new(|_, _, _| Ok(class())),
        service_accounts: ClassSource::new(|_, _, _| {
            Ok(json!({"imagePullSecrets": [{"name": "pull"}]}))
        }),
        secrets: ClassSource::new(move |_, name, _| {
            assert_eq!(name, "pull");
            Ok(
                json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": config}}),
            )
        }),
        images: ImageSource::new(move |q| {
            seen.lock().unwrap().push(q.clone());
            image.clone()
        }),
        ..Defaults::default()
    };
    (d, asked)
}

fn pod(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "test"},
           "spec": {"containers": containers, "volumes": [
               {"name": "secret-volume", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true,
                "volumeAttributes": {"secretProviderClass": "vault-kv-sync"}}}]}})
}

fn review_of(p: &Value, d: &Defaults) -> (Value, Option<Value>) {
    let r = json!({"request": {"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE",
                               "namespace": "test", "object": p}});
    let (answer, _) = review::answer(&r, d).unwrap();
    let response = answer["response"].clone();
    let injected = response["patch"].as_str().map(|patch| {
        use base64::Engine;
        let ops = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let ops: Vec<Value> = serde_json::from_slice(&ops).unwrap();
        crate::webhook::patch::apply(p, &ops).unwrap()
    });
    (response, injected)
}

fn app(extra: Value) -> Value {
    let mut c = json!({"name": "nginx", "image": "reg.example/nginx:1",
        "env": [{"name": "SECRET_USERNAME", "valueFrom": {"secretKeyRef": {"name": "kvsecret", "key": "username"}}},
                {"name": "OTHER", "valueFrom": {"secretKeyRef": {"name": "unrelated", "key": "k"}}}]});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[test]
fn a_container_with_a_command_is_wrapped_without_a_registry() {
    let (d, asked) = defaults(Err(Some("must not be asked".into())));
    let p = pod(json!([app(
        json!({"command": ["/app", "$(SECRET_USERNAME)"], "args": ["$$HOME"]})
    )]));
    let (response, injected) = review_of(&p, &d);
    let out = injected.unwrap_or_else(|| panic!("{response}"));
    assert!(
        asked.lock().unwrap().is_empty(),
        "no registry for a container with a command"
    );
    let c = crate::webhook::named(&out["spec"]["containers"], "nginx");
    assert_eq!(
        c["command"],
        json!([
            "/secretdrop-bin/bin/secretdrop",
            "exec",
            "--dir",
            "/secretdrop-synced/secretdrop-env-0",
            "--restart-on-change",
            "--env",
            "SECRET_USERNAME=secret-2",
            "--expand",
            "--",
            "/app",
            "$$(SECRET_USERNAME)"
        ])
    );
    assert_eq!(
        c["args"],
        json!(["$$$$HOME"]),
        "kubelet passes it to exec, which makes it $HOME"
    );
    assert_eq!(
        c["env"],
        json!([{"name": "OTHER", "valueFrom": {"secretKeyRef": {"name": "unrelated", "key": "k"}}}])
    );
    let warnings = response["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("env SECRET_USERNAME: secretKeyRef kvsecret/username")),
        "{warnings:?}"
    );
    // It mounted no volume of the class: it reads a view holding only what its variable needs.
    let view = out["metadata"]["annotations"]["secret.secretdrop.dev/secretdrop-env-0"]
        .as_str()
        .unwrap();
    let view: Value = serde_json::from_str(view).unwrap();
    assert_eq!(
        view,
        json!({"from": "secret-volume", "files": [{"object": "secret-2", "path": "secret-2", "mode": 0o644}]})
    );
    assert_eq!(
        crate::webhook::named(&out["spec"]["volumes"], "secretdrop-env-0"),
        &json!({"name": "secretdrop-env-0", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    );
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(mounts, ["secretdrop-env-0", "secretdrop-bin"]);
    let inits: Vec<&str> = out["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(inits, ["secretdrop-copy", "secretdrop"]);
}

#[test]
fn a_container_without_a_command_runs_its_images_entrypoint() {
    let process = Process {
        entrypoint: vec!["/docker-entrypoint.sh".into()],
        cmd: vec!["nginx".into(), "-g".into(), "daemon off; $x".into()],
        digest: "sha256:0".into(),
    };
    let (d, asked) = defaults(Ok(process));
    let p = pod(json!([app(json!({}))]));
    let (response, injected) = review_of(&p, &d);
    let out = injected.unwrap_or_else(|| panic!("{response}"));
    let q = asked.lock().unwrap()[0].clone();
    assert_eq!(q.image, "reg.example/nginx:1");
    assert_eq!(q.platform, Platform::default());
    assert_eq!(q.credentials.len(), 1, "the ServiceAccount's pull Secret");
    assert_eq!(q.credentials[0].registry, "reg.example");
    let c = crate::webhook::named(&out["spec"]["containers"], "nginx");
    let cmd: Vec<&str> = c["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(cmd.last(), Some(&"/docker-entrypoint.sh"));
    assert!(!cmd.contains(&"--expand"));
    assert_eq!(
        c["args"],
        json!(["nginx", "-g", "daemon off; $$x"]),
        "the image's cmd, never expanded"
    );
}

#[test]
fn refusals_name_the_container_and_the_fix() {
    let (d, _) = defaults(Err(Some(
        "registry reg.example: HTTP 404: no such manifest".into(),
    )));
    let (response, _) = review_of(&pod(json!([app(json!({}))])), &d);
    let m = response["status"]["message"].as_str().unwrap();
    assert!(
        m.contains("container \"nginx\"") && m.contains("HTTP 404") && m.contains("Set command"),
        "{m}"
    );

    let (d, _) = defaults(Err(None));
    let (response, injected) = review_of(&pod(json!([app(json!({}))])), &d);
    assert!(
        injected.is_none() && response["allowed"] == false,
        "an image not read yet is never admitted"
    );

    let (d, _) = defaults(Err(Some("x".into())));
    let mut p = pod(json!([app(json!({"command": ["/app"]}))]));
    p["spec"]["volumes"].as_array_mut().unwrap().push(
        json!({"name": "kv", "secret": {"secretName": "kvsecret", "items": [{"key": "nope", "path": "x"}]}}),
    );
    let (response, _) = review_of(&p, &d);
    let m = response["status"]["message"].as_str().unwrap();
    assert!(
        m.contains("volume \"kv\"") && m.contains("\"nope\"") && m.contains("pwd, username"),
        "{m}"
    );
}

#[test]
fn a_secret_volume_of_a_synced_secret_becomes_a_view_with_its_keys_and_modes() {
    let (d, asked) = defaults(Err(Some("must not be asked".into())));
    let mut p = pod(
        json!([{"name": "app", "image": "x", "volumeMounts": [{"name": "kv", "mountPath": "/etc/kv"}]}]),
    );
    p["spec"]["volumes"].as_array_mut().unwrap().push(json!({"name": "kv", "secret": {
        "secretName": "kvsecret", "defaultMode": 0o440,
        "items": [{"key": "pwd", "path": "db/password", "mode": 0o400}, {"key": "username", "path": "user"}]}}));
    let (response, injected) = review_of(&p, &d);
    let out = injected.unwrap_or_else(|| panic!("{response}"));
    assert!(asked.lock().unwrap().is_empty());
    assert_eq!(
        crate::webhook::named(&out["spec"]["volumes"], "kv"),
        &json!({"name": "kv", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    );
    let view = out["metadata"]["annotations"]["secret.secretdrop.dev/kv"]
        .as_str()
        .unwrap();
    let view: Value = serde_json::from_str(view).unwrap();
    assert_eq!(
        view,
        json!({"from": "secret-volume", "files": [
        {"object": "secret-1", "path": "db/password", "mode": 0o400},
        {"object": "secret-2", "path": "user", "mode": 0o440}]})
    );
    let ours = crate::webhook::named(&out["spec"]["initContainers"], "secretdrop");
    let args: Vec<&str> = ours["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--volume", "kv=/mnt/secretdrop-csi/kv"]),
        "{args:?}"
    );
    assert_eq!(
        out["spec"]["containers"][0], p["spec"]["containers"][0],
        "the app is untouched"
    );
    assert!(
        !out["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "secretdrop-copy"),
        "no exec, no copy"
    );
}

#[test]
fn an_unreadable_pull_secret_is_named_when_the_registry_refuses() {
    let (mut d, _) = defaults(Err(Some(
        "registry reg.example: HTTP 401 for the manifest".into(),
    )));
    d.secrets = ClassSource::new(|_, _, _| {
        Err(KubeError::Denied {
            status: 403,
            message: "secrets \"pull\" is forbidden".into(),
        })
    });
    let (response, _) = review_of(&pod(json!([app(json!({}))])), &d);
    let m = response["status"]["message"].as_str().unwrap();
    assert!(
        m.contains("HTTP 401")
            && m.contains("could not read pull Secret test/pull")
            && m.contains("(pull-secrets)"),
        "{m}"
    );
}

#[test]
fn a_pod_reading_only_unrelated_secrets_is_converted_as_before() {
    let (d, asked) = defaults(Err(Some("must not be asked".into())));
    let c = json!({"name": "app", "image": "x", "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "unrelated", "key": "k"}}}]});
    let (response, injected) = review_of(&pod(json!([c.clone()])), &d);
    let out = injected.unwrap_or_else(|| panic!("{response}"));
    assert_eq!(out["spec"]["containers"][0], c);
    assert!(response.get("warnings").is_none());
    assert!(asked.lock().unwrap().is_empty());
}
