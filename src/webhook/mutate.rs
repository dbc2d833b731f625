//! The injection itself: a pure function from (pod, webhook defaults) to a decision — leave the
//! pod alone, reject it with a message the user sees in `kubectl`, or return the mutated pod.
//! The JSON Patch is computed from the two pods by [`super::patch::diff`].
//!
//! Invariants: pods without `secretdrop.dev/inject: "true"` are never changed; a pod already
//! injected is left alone (idempotent); the injected container reads its configuration from the
//! pod's own annotations through a downward-API file, so no secret or config is copied into the
//! pod spec; it runs non-root, read-only, with all capabilities dropped.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::{json, Value};

use crate::config::annotations::{self, PREFIX};
use crate::config::VaultEnv;

pub const CONTAINER: &str = "secretdrop";
pub const INIT_CONTAINER: &str = "secretdrop-init";
pub const SECRETS_VOLUME: &str = "secretdrop-secrets";
pub const PODINFO_VOLUME: &str = "secretdrop-podinfo";
pub const TOKEN_VOLUME: &str = "secretdrop-token";
/// Where the injected container sees the files, the annotations and its token.
pub const DIR: &str = "/mnt/secretdrop";
pub const PODINFO_DIR: &str = "/etc/secretdrop";
pub const TOKEN_DIR: &str = "/var/run/secrets/secretdrop";
pub const DEFAULT_MOUNT_PATH: &str = "/mnt/secrets";
const NONROOT: u32 = 65532;

/// Settings of the webhook that shape every injection.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub image: String,
    pub vault_address: Option<String>,
    /// When non-empty, `vault-address` must be one of these.
    pub allowed_vault_addresses: Vec<String>,
    /// Audience of the projected service-account token, if the Vault role checks one.
    pub token_audience: Option<String>,
    pub size_limit: String,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            image: concat!("secretdrop:", env!("CARGO_PKG_VERSION")).into(),
            vault_address: None,
            allowed_vault_addresses: vec![],
            token_audience: None,
            size_limit: "1Mi".into(),
        }
    }
}

/// How the secrets get into the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One native sidecar (`restartPolicy: Always`) with a startupProbe.
    Sidecar,
    /// One init container (Jobs, CronJobs).
    Init,
    /// An init container plus a regular sidecar container (clusters without native sidecars).
    InitAndSidecar,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s {
            "sidecar" => Some(Mode::Sidecar),
            "init" => Some(Mode::Init),
            "init+sidecar" => Some(Mode::InitAndSidecar),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Mode::Sidecar => "sidecar",
            Mode::Init => "init",
            Mode::InitAndSidecar => "init+sidecar",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not opted in, or already injected: no patch.
    Skip(&'static str),
    /// Invalid annotations: the pod is refused with this message.
    Reject(String),
    /// The injected pod.
    Inject { pod: Value, mode: Mode },
}

/// Decides what to do with a pod.
pub fn mutate(pod: &Value, defaults: &Defaults) -> Decision {
    let annotations: BTreeMap<String, String> = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    if !opted_in(
        annotations
            .get(&format!("{PREFIX}inject"))
            .map(String::as_str),
    ) {
        return Decision::Skip("not opted in");
    }
    if annotations
        .get(&format!("{PREFIX}status"))
        .map(String::as_str)
        == Some("injected")
        || has_container(pod, "/spec/initContainers", CONTAINER)
        || has_container(pod, "/spec/initContainers", INIT_CONTAINER)
    {
        return Decision::Skip("already injected");
    }
    if let Err(message) = check_shape(pod) {
        return Decision::Reject(message);
    }
    match plan(pod, &annotations, defaults) {
        Ok(p) => Decision::Inject {
            pod: inject(pod, &p, defaults),
            mode: p.mode,
        },
        Err(message) => Decision::Reject(message),
    }
}

/// The parts of the pod that injection edits must have the types Kubernetes gives them. The
/// API server only sends typed pods, but anything that reaches the port can send a `spec` that
/// is a number or a container that is a list; those are refused, never edited.
fn check_shape(pod: &Value) -> Result<(), String> {
    let spec = match pod.get("spec") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(spec)) => spec,
        Some(_) => return Err("spec is not an object".into()),
    };
    objects(spec.get("volumes"), "spec.volumes")?;
    for field in ["initContainers", "containers"] {
        let what = format!("spec.{field}");
        for (i, c) in objects(spec.get(field), &what)?.iter().enumerate() {
            objects(c.get("volumeMounts"), &format!("{what}[{i}].volumeMounts"))?;
        }
    }
    Ok(())
}

/// A list of objects, absent or null meaning empty; `what` names it in the message.
fn objects<'a>(v: Option<&'a Value>, what: &str) -> Result<&'a [Value], String> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => match items.iter().position(|i| !i.is_object()) {
            Some(i) => Err(format!("{what}[{i}] is not an object")),
            None => Ok(items),
        },
        Some(_) => Err(format!("{what} is not a list")),
    }
}

/// Whether the value of `secretdrop.dev/inject` asks for injection.
pub fn opted_in(inject: Option<&str>) -> bool {
    inject == Some("true")
}

/// What the annotations ask for, validated.
struct Plan {
    mode: Mode,
    mount_path: String,
    containers: Option<Vec<String>>,
    address: String,
}

fn plan(pod: &Value, all: &BTreeMap<String, String>, defaults: &Defaults) -> Result<Plan, String> {
    let file = Path::new("pod annotations");
    let ours = annotations::ours(file, all).map_err(|e| strip_file(&e.to_string()))?;
    let env = VaultEnv {
        addr: defaults.vault_address.clone(),
        ..Default::default()
    };
    let spec = annotations::spec_from(file, &ours, &env).map_err(|e| strip_file(&e.to_string()))?;
    let address = spec.vault.address;
    let allowed = crate::vault::ClientPolicy {
        allowed_addresses: defaults.allowed_vault_addresses.clone(),
        ..Default::default()
    };
    if allowed.check_address(&address).is_err() {
        return Err(format!(
            "{PREFIX}vault-address: {address} is not allowed by this webhook; allowed are {}",
            defaults.allowed_vault_addresses.join(", ")
        ));
    }
    let mode = match ours.get("mode") {
        None => Mode::Sidecar,
        Some(m) => Mode::parse(m).ok_or_else(|| {
            format!("{PREFIX}mode: {m:?} is not a mode: allowed are sidecar, init, init+sidecar")
        })?,
    };
    let mount_path = ours
        .get("mount-path")
        .cloned()
        .unwrap_or_else(|| DEFAULT_MOUNT_PATH.to_string());
    if !mount_path.starts_with('/') || mount_path.split('/').any(|p| p == "..") || mount_path == "/"
    {
        return Err(format!("{PREFIX}mount-path: {mount_path:?} must be an absolute path without '..', e.g. /mnt/secrets"));
    }
    let names: Vec<String> = container_names(pod, "/spec/containers");
    let containers = match ours.get("containers") {
        None => None,
        Some(list) => {
            let wanted: Vec<String> = list
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            // A set, not a scan per name: both lists come from the pod's author.
            let known: HashSet<&str> = names.iter().map(String::as_str).collect();
            if let Some(missing) = wanted.iter().find(|w| !known.contains(w.as_str())) {
                return Err(format!(
                    "{PREFIX}containers: the pod has no container {missing:?}; its containers are {}",
                    some_of(&names)
                ));
            }
            Some(wanted)
        }
    };
    Ok(Plan {
        mode,
        mount_path,
        containers,
        address,
    })
}

/// The first few names and how many there are: a message stays readable for any pod.
fn some_of(names: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(", ... ({} in all)", names.len()));
    }
    text
}

/// Messages name the annotation, not the pseudo-file "pod annotations: ".
fn strip_file(message: &str) -> String {
    message
        .strip_prefix("pod annotations: ")
        .unwrap_or(message)
        .to_string()
}

fn container_names(pod: &Value, pointer: &str) -> Vec<String> {
    pod.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn has_container(pod: &Value, pointer: &str, name: &str) -> bool {
    container_names(pod, pointer).iter().any(|n| n == name)
}

fn inject(pod: &Value, plan: &Plan, defaults: &Defaults) -> Value {
    let mut pod = pod.clone();
    let spec = &mut pod["spec"];
    let mut volumes = take_array(spec, "volumes");
    volumes.push(json!({"name": SECRETS_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": defaults.size_limit}}));
    volumes.push(json!({"name": PODINFO_VOLUME, "downwardAPI": {"items": [
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
    ]}}));
    let mut token = json!({"path": "token", "expirationSeconds": 3600});
    if let Some(aud) = &defaults.token_audience {
        token["audience"] = json!(aud);
    }
    volumes.push(
        json!({"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}}),
    );
    spec["volumes"] = Value::Array(volumes);

    let app_mount = json!({"name": SECRETS_VOLUME, "mountPath": plan.mount_path, "readOnly": true});
    let mut inits = take_array(spec, "initContainers");
    // Service-mesh init containers and native sidecars that lead the list keep going first, so
    // Vault is reachable when secretdrop starts; everything after starts after the first render.
    let at = inits.iter().take_while(|c| runs_before_us(c)).count();
    let mut ours = Vec::new();
    match plan.mode {
        Mode::Sidecar => ours.push(sidecar_container(
            CONTAINER, "sidecar", plan, defaults, true,
        )),
        Mode::Init => ours.push(sidecar_container(
            INIT_CONTAINER,
            "init",
            plan,
            defaults,
            false,
        )),
        Mode::InitAndSidecar => ours.push(sidecar_container(
            INIT_CONTAINER,
            "init",
            plan,
            defaults,
            false,
        )),
    }
    for c in inits.iter_mut().skip(at) {
        add_mount(c, &app_mount);
    }
    let tail = inits.split_off(at);
    inits.extend(ours);
    inits.extend(tail);
    spec["initContainers"] = Value::Array(inits);

    let mut containers = take_array(spec, "containers");
    let wanted: Option<HashSet<&str>> = plan
        .containers
        .as_ref()
        .map(|list| list.iter().map(String::as_str).collect());
    for c in containers.iter_mut() {
        let selected = match &wanted {
            None => true,
            Some(set) => c["name"].as_str().is_some_and(|n| set.contains(n)),
        };
        if selected {
            add_mount(c, &app_mount);
        }
    }
    if plan.mode == Mode::InitAndSidecar {
        let mut sidecar = sidecar_container(CONTAINER, "sidecar", plan, defaults, false);
        sidecar.as_object_mut().map(|o| o.remove("restartPolicy"));
        containers.push(sidecar);
    }
    spec["containers"] = Value::Array(containers);

    let annotations = &mut pod["metadata"]["annotations"];
    annotations[format!("{PREFIX}status")] = json!("injected");
    pod
}

fn runs_before_us(c: &Value) -> bool {
    let name = c["name"].as_str().unwrap_or("");
    c["restartPolicy"] == "Always"
        || ["istio", "linkerd", "proxy-init"]
            .iter()
            .any(|m| name.contains(m))
}

fn take_array(v: &mut Value, key: &str) -> Vec<Value> {
    match v.get_mut(key).map(Value::take) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

fn add_mount(container: &mut Value, mount: &Value) {
    let mut mounts = take_array(container, "volumeMounts");
    if !mounts.iter().any(|m| m["mountPath"] == mount["mountPath"]) {
        mounts.push(mount.clone());
    }
    container["volumeMounts"] = Value::Array(mounts);
}

/// The injected container: `secretdrop <command>` reading the annotations file.
fn sidecar_container(
    name: &str,
    command: &str,
    plan: &Plan,
    defaults: &Defaults,
    native: bool,
) -> Value {
    let mut c = json!({
        "name": name,
        "image": defaults.image,
        "imagePullPolicy": "IfNotPresent",
        "args": [command, "--config", format!("{PODINFO_DIR}/annotations"), "--dir", DIR,
                 "--token-path", format!("{TOKEN_DIR}/token")],
        // Pinned: the annotations file is re-read by the running sidecar, and an edited
        // vault-address must not send the pod's token to an address nobody admitted.
        "env": [{"name": "VAULT_ADDR", "value": plan.address},
                {"name": "SECRETDROP_ALLOWED_VAULT_ADDRESS", "value": plan.address}],
        "volumeMounts": [
            {"name": SECRETS_VOLUME, "mountPath": DIR},
            {"name": PODINFO_VOLUME, "mountPath": PODINFO_DIR, "readOnly": true},
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": true}
        ],
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": NONROOT,
            "runAsGroup": NONROOT,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        },
        "resources": {"requests": {"cpu": "5m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}}
    });
    if native {
        c["restartPolicy"] = json!("Always");
        c["startupProbe"] = json!({
            "exec": {"command": ["/secretdrop", "probe", "--dir", DIR]},
            "periodSeconds": 1,
            "failureThreshold": 300
        });
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::patch;

    fn pod(annotations: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
            "spec": {
                "serviceAccountName": "mycsiserviceaccount",
                "initContainers": [{"name": "istio-init", "image": "istio/proxyv2"}, {"name": "migrate", "image": "app"}],
                "containers": [{"name": "app", "image": "nginx"}, {"name": "logger", "image": "busybox"}]
            }
        })
    }

    fn opted_in() -> Value {
        json!({
            "secretdrop.dev/inject": "true",
            "secretdrop.dev/role": "mycsirole",
            "secretdrop.dev/objects": "- {objectName: myPassword, secretPath: secret/data/app, secretKey: password}\n",
        })
    }

    fn defaults() -> Defaults {
        Defaults {
            vault_address: Some("http://vault.vault:8200".into()),
            ..Defaults::default()
        }
    }

    #[test]
    fn pods_without_the_opt_in_are_left_alone() {
        assert_eq!(
            mutate(&pod(json!({})), &defaults()),
            Decision::Skip("not opted in")
        );
        let mut a = opted_in();
        a["secretdrop.dev/inject"] = json!("false");
        assert_eq!(mutate(&pod(a), &defaults()), Decision::Skip("not opted in"));
    }

    #[test]
    fn sidecar_mode_injects_a_native_sidecar_after_the_mesh_and_before_other_init_containers() {
        let Decision::Inject { pod: out, mode } = mutate(&pod(opted_in()), &defaults()) else {
            panic!()
        };
        assert_eq!(mode, Mode::Sidecar);
        let inits: Vec<&str> = out["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(inits, ["istio-init", "secretdrop", "migrate"]);
        let ours = &out["spec"]["initContainers"][1];
        assert_eq!(ours["restartPolicy"], "Always");
        assert_eq!(ours["startupProbe"]["exec"]["command"][1], "probe");
        assert_eq!(ours["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(ours["env"][0]["value"], "http://vault.vault:8200");
        // Later init containers and every app container see the files read-only.
        for c in [
            &out["spec"]["initContainers"][2],
            &out["spec"]["containers"][0],
            &out["spec"]["containers"][1],
        ] {
            assert!(c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"] == "/mnt/secrets" && m["readOnly"] == true));
        }
        assert!(
            out["spec"]["initContainers"][0]
                .get("volumeMounts")
                .is_none(),
            "the mesh init container is untouched"
        );
        assert_eq!(
            out["metadata"]["annotations"]["secretdrop.dev/status"],
            "injected"
        );
        // Injecting the injected pod changes nothing.
        assert_eq!(
            mutate(&out, &defaults()),
            Decision::Skip("already injected")
        );
        // The patch turns the original into the injected pod.
        let ops = patch::diff(&pod(opted_in()), &out);
        assert_eq!(patch::apply(&pod(opted_in()), &ops).unwrap(), out);
    }

    #[test]
    fn init_mode_and_selected_containers() {
        let mut a = opted_in();
        a["secretdrop.dev/mode"] = json!("init");
        a["secretdrop.dev/containers"] = json!("app");
        a["secretdrop.dev/mount-path"] = json!("/vault/secrets");
        let Decision::Inject { pod: out, .. } = mutate(&pod(a), &defaults()) else {
            panic!()
        };
        let ours = &out["spec"]["initContainers"][1];
        assert_eq!(ours["name"], "secretdrop-init");
        assert_eq!(ours["args"][0], "init");
        assert!(ours.get("restartPolicy").is_none());
        assert!(out["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == "/vault/secrets");
        assert!(
            out["spec"]["containers"][1].get("volumeMounts").is_none(),
            "logger was not selected"
        );
    }

    #[test]
    fn init_plus_sidecar_adds_a_regular_sidecar_container() {
        let mut a = opted_in();
        a["secretdrop.dev/mode"] = json!("init+sidecar");
        let Decision::Inject { pod: out, .. } = mutate(&pod(a), &defaults()) else {
            panic!()
        };
        let last = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["name"], "secretdrop");
        assert_eq!(last["args"][0], "sidecar");
        assert!(last.get("restartPolicy").is_none());
    }

    #[test]
    fn invalid_annotations_reject_the_pod_with_a_clear_message() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "secretdrop.dev/mode",
                json!("daemon"),
                "allowed are sidecar, init, init+sidecar",
            ),
            (
                "secretdrop.dev/objects",
                json!("- objectName: [unclosed"),
                "secretdrop.dev/objects",
            ),
            (
                "secretdrop.dev/objects",
                json!("- {objectName: ../x, secretPath: s, secretKey: k}"),
                "traverses",
            ),
            (
                "secretdrop.dev/vault-address",
                json!("http://evil.example:8200"),
                "not allowed by this webhook",
            ),
            (
                "secretdrop.dev/containers",
                json!("app,nope"),
                "no container \"nope\"",
            ),
            ("secretdrop.dev/rolle", json!("x"), "unknown annotation"),
            (
                "secretdrop.dev/mount-path",
                json!("relative"),
                "absolute path",
            ),
        ];
        let d = Defaults {
            allowed_vault_addresses: vec!["http://vault.vault:8200".into()],
            ..defaults()
        };
        for (key, value, want) in cases {
            let mut a = opted_in();
            a[key] = value;
            match mutate(&pod(a), &d) {
                Decision::Reject(m) => assert!(m.contains(want), "{key}: {m}"),
                other => panic!("{key}: {other:?}"),
            }
        }
        let mut a = opted_in();
        a.as_object_mut().unwrap().remove("secretdrop.dev/role");
        assert!(
            matches!(mutate(&pod(a), &d), Decision::Reject(m) if m.contains("secretdrop.dev/role"))
        );
    }

    #[test]
    fn a_spec_of_the_wrong_shape_is_rejected_not_edited() {
        for (spec, want) in [
            (json!(5), "spec is not an object"),
            (
                json!({"containers": [5]}),
                "spec.containers[0] is not an object",
            ),
            (
                json!({"initContainers": [[]]}),
                "spec.initContainers[0] is not an object",
            ),
            (json!({"volumes": "x"}), "spec.volumes is not a list"),
            (
                json!({"containers": [{"name": "a", "volumeMounts": {}}]}),
                "spec.containers[0].volumeMounts is not a list",
            ),
        ] {
            let mut p = pod(opted_in());
            p["spec"] = spec;
            match mutate(&p, &defaults()) {
                Decision::Reject(m) => assert_eq!(m, want),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn container_selection_is_linear_in_the_number_of_containers() {
        // 30 000 containers, every one named in the annotation (as many as fit in the API
        // server's 256 KiB of annotations): nested scans took minutes.
        let n = 30_000;
        let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let mut a = opted_in();
        a["secretdrop.dev/containers"] = json!(names.join(","));
        let mut p = pod(a);
        p["spec"]["containers"] = names.iter().map(|c| json!({"name": c})).collect();
        let started = std::time::Instant::now();
        let Decision::Inject { pod: out, .. } = mutate(&p, &defaults()) else {
            panic!()
        };
        let took = started.elapsed();
        let mounted = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["volumeMounts"][0]["name"] == SECRETS_VOLUME)
            .count();
        assert_eq!(mounted, n);
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");

        // A name missing from 30 000: the message names it and stays short.
        p["metadata"]["annotations"]["secretdrop.dev/containers"] =
            json!(format!("{},nope", names.join(",")));
        let Decision::Reject(m) = mutate(&p, &defaults()) else {
            panic!()
        };
        assert!(
            m.contains("no container \"nope\"") && m.contains(&format!("({n} in all)")),
            "{m}"
        );
        assert!(m.len() < 300, "{m}");
    }
}
