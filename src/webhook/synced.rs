//! Synced Secrets without a Kubernetes Secret (docs/webhook.md, "Synced Secrets"): in a pod
//! whose CSI volumes are converted, every reference to a Secret that one of its classes syncs
//! (`secretObjects[].secretName`) is served by secretdrop from the converted volume instead.
//!
//! * `env` / `envFrom`, in init and app containers: the container's process is started by
//!   `secretdrop exec` (the binary copied into a shared volume by `copy-self`), one `exec` per
//!   class volume it reads, nested, the last one with the templates and `--expand` that keep
//!   kubelet's `$(VAR)` meaning ([`super::env_refs`]); each restarts the app when its volume
//!   changes what the app sees. A container that does not mount a class's volume whole reads
//!   a view of it holding only the objects its variables need (`secretdrop-env-N`).
//! * A container without `command` gets its image's entrypoint and cmd from the registry
//!   ([`crate::net::registry`], read by the server outside the review slots like Kubernetes
//!   objects, with the pod's and its ServiceAccount's pull Secrets); one that cannot be read
//!   refuses the pod, naming the container and the fix.
//! * A `secret` volume of a synced Secret becomes a Memory `emptyDir` of the same name that
//!   the sidecar fills with the Secret's keys (or `items`' paths) and modes (`defaultMode`,
//!   `items[].mode`, 0644 without), from the class volume's files
//!   ([`crate::config::views`]); `kubernetes.io/tls` keys hold the certificates and the key
//!   cut from the object, as the CSI driver cuts them.
//!
//! Invariants: references to Secrets no class of the pod syncs are never touched; a pod
//! either has every synced reference served or is refused; containers with a command and
//! containers that read no synced Secret never wait on a registry; what was rewritten is
//! recorded in the pod's `synced.secretdrop.dev/rewritten` annotation (outside the
//! `secretdrop.dev/` keys the sidecar reads), which the review turns into the
//! response's warnings.

use serde_json::{json, Value};

use super::csi::CsiVolume;
use super::defaults::{Defaults, ImageQuery, BIN_COPY_DIR, BIN_DIR, BIN_VOLUME};
use super::env_refs::{self, Served, Split, SyncedSecret};
use crate::config::pod_settings::shorten;
use crate::exec::expand::literal;
use crate::net::kube::KubeError;
use crate::net::registry::{reference::parse_docker_config, Credential, Platform, Process};
use crate::volume::view::{Part, ViewFile};

/// Where a wrapped container mounts each converted volume it reads, as `SYNCED_DIR/<volume>`.
pub const SYNCED_DIR: &str = "/secretdrop-synced";
/// The annotation that records what was rewritten, one line each.
pub const NOTES_ANNOTATION: &str = "synced.secretdrop.dev/rewritten";
/// More pull Secrets than this (the pod's and its ServiceAccount's) are not read.
const MAX_PULL_SECRETS: usize = 8;

/// The containers to rewrite, decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// (field, container name, split, image process when it has no command).
    containers: Vec<(&'static str, String, Split, Option<Process>)>,
    /// Secret volumes shown from class volumes: (volume, class volume, files); a volume the
    /// pod does not have yet is added.
    views: Vec<(String, String, Vec<ViewFile>)>,
    /// (container, class volume, the volume it reads that class's objects from): the class
    /// volume itself when the container mounts it whole already, else a view holding only
    /// the objects its variables need.
    env_views: Vec<(String, String, String)>,
    size_limit: String,
    pub notes: Vec<String>,
}

impl Plan {
    /// Whether some container is started by `exec` (the pod then needs the copied binary).
    pub fn wraps(&self) -> bool {
        !self.containers.is_empty()
    }
}

/// The Secrets the classes sync; two classes syncing one name are refused.
pub fn secrets(csi: &[CsiVolume]) -> Result<Vec<SyncedSecret>, String> {
    let mut out: Vec<SyncedSecret> = Vec::new();
    for v in csi {
        let class: Value = serde_json::from_str(&v.class).unwrap_or(Value::Null);
        let class_name = class
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let objects = class
            .pointer("/spec/secretObjects")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        for o in objects {
            let Some(name) = o["secretName"].as_str().filter(|n| !n.is_empty()) else {
                continue;
            };
            if let Some(other) = out.iter().find(|s| s.name == name && s.volume != v.name) {
                if other.class != class_name {
                    return Err(format!(
                        "the SecretProviderClasses {:?} (volume {:?}) and {class_name:?} (volume \
                         {:?}) both sync a Secret named {name:?}; with the CSI driver the last \
                         writer would win. Give one of them another secretName",
                        other.class, other.volume, v.name
                    ));
                }
                continue;
            }
            let data = o["data"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .filter_map(|d| {
                    Some((
                        d["key"].as_str()?.to_string(),
                        d["objectName"].as_str()?.to_string(),
                    ))
                })
                .collect();
            out.push(SyncedSecret {
                name: name.to_string(),
                volume: v.name.clone(),
                class: class_name.clone(),
                kind: o["type"].as_str().unwrap_or("Opaque").to_string(),
                data,
            });
        }
    }
    Ok(out)
}

/// What the pod's synced references need; `Ok(None)` when it has none. `Err` is the refusal
/// (or, while a pull Secret or an image is not read yet, a decision the server never sends).
pub fn plan(
    pod: &Value,
    namespace: &str,
    defaults: &Defaults,
    csi: &[CsiVolume],
) -> Result<Option<Plan>, String> {
    let synced = secrets(csi)?;
    if synced.is_empty() {
        return Ok(None);
    }
    let mut notes = Vec::new();
    let mut views = secret_volumes(pod, &synced, &mut notes)?;
    let mut containers = Vec::new();
    for field in ["initContainers", "containers"] {
        for c in pod["spec"][field].as_array().map_or(&[][..], Vec::as_slice) {
            if let Some(split) = env_refs::split(c, &synced)? {
                let name = c["name"].as_str().unwrap_or("").to_string();
                notes.extend(split.notes.iter().map(|n| format!("container {name}: {n}")));
                containers.push((field, name, split, None));
            }
        }
    }
    if containers.is_empty() && views.is_empty() {
        return Ok(None);
    }
    // Images only for containers without a command, all asked for in one round.
    let without: Vec<usize> = containers
        .iter()
        .enumerate()
        .filter(|(_, (field, name, _, _))| !has_command(named(pod, field, name)))
        .map(|(i, _)| i)
        .collect();
    if !without.is_empty() {
        let Some(lookup) = defaults.images.lookup() else {
            let (_, name, _, _) = &containers[without[0]];
            return Err(no_command(name, "this webhook reads no image registry"));
        };
        let (credentials, unread) = pull_credentials(pod, namespace, defaults)?;
        let platform = platform(pod, &defaults.image_platform);
        let mut deferred = false;
        let mut failed: Option<String> = None;
        for i in without {
            let (field, name, _, _) = &containers[i];
            let image = named(pod, field, name)["image"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let query = ImageQuery {
                image: image.clone(),
                platform: platform.clone(),
                credentials: credentials.clone(),
            };
            match lookup(&query) {
                Ok(p) => {
                    if p.entrypoint.is_empty()
                        && p.cmd.is_empty()
                        && !has_args(named(pod, field, name))
                    {
                        failed.get_or_insert(no_command(
                            name,
                            &format!("image {image} has neither an entrypoint nor a cmd"),
                        ));
                    }
                    notes.push(format!(
                        "container {name}: no command; image {image} ({}) runs {}",
                        platform.name(),
                        shorten(&[p.entrypoint.clone(), p.cmd.clone()].concat().join(" "))
                    ));
                    containers[i].3 = Some(p);
                }
                Err(None) => deferred = true,
                Err(Some(why)) => {
                    // What could not be read may be why the registry refused.
                    let why = match unread.is_empty() {
                        true => why,
                        false => format!("{why} ({})", unread.join("; ")),
                    };
                    failed.get_or_insert(no_command(name, &why));
                }
            }
        }
        if let Some(m) = failed {
            return Err(m);
        }
        if deferred {
            return Err("the pod's images are not read yet".into());
        }
    }
    let env_views = env_views(pod, csi, &containers, &mut views, &mut notes)?;
    Ok(Some(Plan {
        containers,
        views,
        env_views,
        size_limit: defaults.size_limit.clone(),
        notes,
    }))
}

/// Prefix of the views that give a wrapped container only the objects its variables need.
const ENV_VIEW: &str = "secretdrop-env-";

/// Where each wrapped container reads each class's objects: the class volume when the
/// container mounts it whole already (it sees every object anyway), else a view of that
/// volume with only the objects its variables read, in their modes. A container that read
/// one variable from a synced Secret never sees the class's other objects.
fn env_views(
    pod: &Value,
    csi: &[CsiVolume],
    containers: &[(&'static str, String, Split, Option<Process>)],
    views: &mut Vec<(String, String, Vec<ViewFile>)>,
    notes: &mut Vec<String>,
) -> Result<Vec<(String, String, String)>, String> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    let mut n = 0;
    for (field, name, split, _) in containers {
        let c = named(pod, field, name);
        for volume in class_volumes(split) {
            let whole = c["volumeMounts"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .any(|m| {
                    m["name"] == volume
                        && m.get("subPath").is_none()
                        && m.get("subPathExpr").is_none()
                });
            if whole {
                out.push((name.clone(), volume.to_string(), volume.to_string()));
                continue;
            }
            let view = loop {
                let v = format!("{ENV_VIEW}{n}");
                n += 1;
                let taken = pod["spec"]["volumes"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["name"] == v.as_str()));
                if !taken {
                    break v;
                }
            };
            let modes = csi
                .iter()
                .find(|c| c.name == volume)
                .map_or(&[][..], |c| c.modes.as_slice());
            let mut files: Vec<ViewFile> = Vec::new();
            for (_, s) in &split.served {
                if let Served::Object { volume: v, object } = s {
                    if v == volume && !files.iter().any(|f| &f.object == object) {
                        let mode = modes
                            .iter()
                            .find(|(o, _)| o == object)
                            .map_or(0o644, |(_, m)| *m);
                        files.push(ViewFile {
                            object: object.clone(),
                            path: object.clone(),
                            mode,
                            part: Part::All,
                        });
                    }
                }
            }
            notes.push(format!(
                "container {name}: reads {} of volume {volume} through volume {view} (only those objects)",
                files.iter().map(|f| f.object.as_str()).collect::<Vec<_>>().join(", ")
            ));
            views.push((view.clone(), volume.to_string(), files));
            out.push((name.clone(), volume.to_string(), view));
        }
    }
    Ok(out)
}

/// The class volumes a split reads objects from, in order of first use.
fn class_volumes(split: &Split) -> Vec<&str> {
    let mut volumes: Vec<&str> = Vec::new();
    for (_, s) in &split.served {
        if let Served::Object { volume, .. } = s {
            if !volumes.contains(&volume.as_str()) {
                volumes.push(volume);
            }
        }
    }
    volumes
}

fn no_command(container: &str, why: &str) -> String {
    format!(
        "container {:?} reads a synced Secret and has no command, so secretdrop must start its \
         image's entrypoint under `secretdrop exec`, and cannot read it: {why}. Set command \
         (and args) to what the image runs, e.g. command: [\"/app/server\"]",
        shorten(container)
    )
}

/// The `secret` volumes of synced Secrets, as views of their class volumes: the keys (or
/// `items`) and modes a Secret volume would have had.
fn secret_volumes(
    pod: &Value,
    synced: &[SyncedSecret],
    notes: &mut Vec<String>,
) -> Result<Vec<(String, String, Vec<ViewFile>)>, String> {
    let mut out = Vec::new();
    for v in pod["spec"]["volumes"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
    {
        let Some(name) = v.pointer("/secret/secretName").and_then(Value::as_str) else {
            continue;
        };
        let Some(s) = synced.iter().find(|s| s.name == name) else {
            continue;
        };
        let volume = v["name"].as_str().unwrap_or("");
        let at = |m: String| format!("volume {:?} (secret {name:?}): {m}", shorten(volume));
        let mode_of = |m: &Value| -> Result<Option<u32>, String> {
            match m {
                Value::Null => Ok(None),
                m => m
                    .as_u64()
                    .filter(|m| *m <= 0o777)
                    .map(|m| Some(m as u32))
                    .ok_or_else(|| at("a mode must be between 0 and 0777 (511)".into())),
            }
        };
        let default = mode_of(&v["secret"]["defaultMode"])?.unwrap_or(0o644);
        let part = |key: &str| match (s.kind.as_str(), key) {
            ("kubernetes.io/tls", "tls.crt") => Part::Certificates,
            ("kubernetes.io/tls", "tls.key") => Part::PrivateKey,
            _ => Part::All,
        };
        let mut files = Vec::new();
        match v["secret"]["items"].as_array().filter(|i| !i.is_empty()) {
            None => {
                for (key, object) in &s.data {
                    files.push(ViewFile {
                        object: object.clone(),
                        path: key.clone(),
                        mode: default,
                        part: part(key),
                    });
                }
            }
            Some(items) => {
                for item in items {
                    let key = item["key"].as_str().unwrap_or("");
                    let path = item["path"].as_str().unwrap_or(key);
                    crate::config::names::validate_name(path)
                        .map_err(|m| at(format!("items path {m}")))?;
                    let Some(object) = s.data.iter().find(|(k, _)| k == key).map(|(_, o)| o) else {
                        if v["secret"]["optional"] == true {
                            continue;
                        }
                        let keys: Vec<String> = s.data.iter().map(|(k, _)| k.clone()).collect();
                        return Err(at(format!(
                            "items names key {key:?}, which the class {:?} does not sync (its keys \
                             are {}): kubelet would never mount it. Fix the key, or add it to the \
                             class's secretObjects",
                            s.class,
                            crate::error::first_few(&keys, 10)
                        )));
                    };
                    let mode = mode_of(&item["mode"])?.unwrap_or(default);
                    files.push(ViewFile {
                        object: object.clone(),
                        path: path.to_string(),
                        mode,
                        part: part(key),
                    });
                }
            }
        }
        notes.push(format!(
            "volume {volume}: secret {name} served from volume {} ({} files, keys and modes as the Secret volume)",
            s.volume,
            files.len()
        ));
        out.push((volume.to_string(), s.volume.clone(), files));
    }
    Ok(out)
}

fn named<'a>(pod: &'a Value, field: &str, name: &str) -> &'a Value {
    pod["spec"][field]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn has_command(c: &Value) -> bool {
    c["command"].as_array().is_some_and(|a| !a.is_empty())
}

fn has_args(c: &Value) -> bool {
    c["args"].as_array().is_some_and(|a| !a.is_empty())
}

/// The platform an image index is resolved to: the pod's nodeSelector
/// (`kubernetes.io/os`, `kubernetes.io/arch`) where it names them, else `default`.
fn platform(pod: &Value, default: &Platform) -> Platform {
    let sel = |k: &str| {
        pod.pointer("/spec/nodeSelector")
            .and_then(|s| s.get(k))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty() && v.len() <= 32)
            .map(str::to_string)
    };
    match (sel("kubernetes.io/os"), sel("kubernetes.io/arch")) {
        (None, None) => default.clone(),
        (os, arch) => Platform {
            os: os.unwrap_or_else(|| default.os.clone()),
            architecture: arch.clone().unwrap_or_else(|| default.architecture.clone()),
            variant: arch.map_or(default.variant.clone(), |_| None),
        },
    }
}

/// The credentials of the pod's and its ServiceAccount's image pull Secrets, as kubelet
/// gathers them, and what could not be read. A Secret or ServiceAccount that cannot be read
/// is skipped (kubelet pulls without it too); a registry's refusal then names it.
fn pull_credentials(
    pod: &Value,
    namespace: &str,
    defaults: &Defaults,
) -> Result<(Vec<Credential>, Vec<String>), String> {
    let namespace = Some(namespace)
        .filter(|n| !n.is_empty())
        .or_else(|| pod.pointer("/metadata/namespace").and_then(Value::as_str))
        .unwrap_or("default");
    let names_in = |v: &Value| -> Vec<String> {
        v.as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect()
    };
    let mut names = names_in(&pod["spec"]["imagePullSecrets"]);
    let mut deferred = false;
    let account = pod
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    let time = crate::provider::pod::LOOKUP_TIME;
    let mut unread = Vec::new();
    let why = |e: KubeError| match e {
        KubeError::Denied { .. } => format!("{e}; the manifests allow it with their components"),
        e => e.to_string(),
    };
    if let Some(sa) = defaults.service_accounts.lookup() {
        match sa(namespace, account, time) {
            Ok(found) => names.extend(names_in(&found["imagePullSecrets"])),
            Err(KubeError::Deferred) => deferred = true,
            Err(e) => unread.push(format!(
                "the webhook could not read ServiceAccount {namespace}/{account} for its \
                 imagePullSecrets: {} (service-accounts)",
                why(e)
            )),
        }
    }
    names.dedup();
    let mut out = Vec::new();
    if let Some(secrets) = defaults.secrets.lookup() {
        for name in names.iter().take(MAX_PULL_SECRETS) {
            match secrets(namespace, name, time) {
                Ok(found) => out.extend(docker_credentials(&found)),
                Err(KubeError::Deferred) => deferred = true,
                // Kubelet pulls without a pull Secret that does not exist, too.
                Err(KubeError::NotFound) => {}
                Err(e) => unread.push(format!(
                    "the webhook could not read pull Secret {namespace}/{name}: {} (pull-secrets)",
                    why(e)
                )),
            }
        }
    }
    match deferred {
        true => Err("the pod's pull Secrets are not read yet".into()),
        false => Ok((out, unread)),
    }
}

/// The credentials of one pull Secret; a Secret of another type, or malformed, gives none.
fn docker_credentials(secret: &Value) -> Vec<Credential> {
    use base64::Engine;
    let (key, legacy) = match secret["type"].as_str() {
        Some("kubernetes.io/dockerconfigjson") => (".dockerconfigjson", false),
        Some("kubernetes.io/dockercfg") => (".dockercfg", true),
        _ => return Vec::new(),
    };
    let Some(encoded) = secret["data"][key].as_str() else {
        return Vec::new();
    };
    let Ok(json) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return Vec::new();
    };
    let json = zeroize::Zeroizing::new(json);
    parse_docker_config(&json, legacy).unwrap_or_default()
}

/// Rewrites the planned containers of `pod` (injected already: the copy container and
/// [`BIN_VOLUME`] exist) and records the notes.
pub fn apply(pod: &mut Value, plan: &Plan) {
    for (field, name, split, process) in &plan.containers {
        let Some(list) = pod["spec"][*field].as_array_mut() else {
            continue;
        };
        let source = |volume: &str| {
            plan.env_views
                .iter()
                .find(|(c, v, _)| c == name && v == volume)
                .map_or(volume.to_string(), |(_, _, view)| view.clone())
        };
        if let Some(c) = list.iter_mut().find(|c| c["name"] == name.as_str()) {
            wrap(c, split, process.as_ref(), &source);
        }
    }
    for (volume, from, files) in &plan.views {
        let empty =
            json!({"name": volume, "emptyDir": {"medium": "Memory", "sizeLimit": plan.size_limit}});
        if let Some(list) = pod["spec"]["volumes"].as_array_mut() {
            match list.iter_mut().find(|v| v["name"] == volume.as_str()) {
                Some(v) => *v = empty,
                None => list.push(empty),
            }
        }
        let dir = format!("{}/{volume}", super::csi::CSI_DIR);
        for field in ["initContainers", "containers"] {
            for c in pod["spec"][field].as_array_mut().into_iter().flatten() {
                if c["name"] != super::defaults::CONTAINER
                    && c["name"] != super::defaults::INIT_CONTAINER
                {
                    continue;
                }
                if let Some(mounts) = c["volumeMounts"].as_array_mut() {
                    mounts.push(json!({"name": volume, "mountPath": dir}));
                }
                if let Some(args) = c["args"].as_array_mut() {
                    args.extend([json!("--volume"), json!(format!("{volume}={dir}"))]);
                }
                if let Some(cmd) = c
                    .pointer_mut("/startupProbe/exec/command")
                    .and_then(Value::as_array_mut)
                {
                    cmd.extend([json!("--dir"), json!(dir)]);
                }
            }
        }
        let annotations = &mut pod["metadata"]["annotations"];
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations[format!("{}{volume}", crate::config::views::VIEW_PREFIX)] =
            json!(crate::config::views::annotation(from, files));
    }
    let annotations = &mut pod["metadata"]["annotations"];
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[NOTES_ANNOTATION] = json!(plan.notes.join("\n"));
}

/// The container started by `exec` (one per volume it reads, nested), its env without what
/// exec serves, the volumes mounted read-only.
fn wrap(c: &mut Value, split: &Split, process: Option<&Process>, source: &dyn Fn(&str) -> String) {
    let volumes = class_volumes(split);
    let templates: Vec<(&String, &String)> = split
        .served
        .iter()
        .filter_map(|(n, s)| match s {
            Served::Template(t) => Some((n, t)),
            _ => None,
        })
        .collect();
    let mut ours: Vec<String> = Vec::new();
    for (i, volume) in volumes.iter().enumerate() {
        ours.extend([
            format!("{BIN_COPY_DIR}/{}", crate::exec::BINARY_NAME),
            "exec".into(),
            "--dir".into(),
            format!("{SYNCED_DIR}/{}", source(volume)),
            "--restart-on-change".into(),
        ]);
        for (n, s) in &split.served {
            if let Served::Object { volume: v, object } = s {
                if v == volume {
                    ours.extend(["--env".into(), format!("{n}={object}")]);
                }
            }
        }
        if i + 1 == volumes.len() {
            for (n, t) in &templates {
                ours.extend(["--env-template".into(), format!("{n}={t}")]);
            }
            if split.expand {
                ours.push("--expand".into());
            }
        }
        ours.push("--".into());
    }
    // What kubelet would expand stays kubelet's, unless exec expands it (then kubelet must
    // pass it through); an image's entrypoint and cmd are never expanded by anyone.
    let own = |s: &str| match split.expand {
        true => literal(s),
        false => s.to_string(),
    };
    let image = |s: &str| match split.expand {
        true => literal(&literal(s)),
        false => literal(s),
    };
    let texts = |v: &Value| -> Vec<String> {
        v.as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let (mut command, args): (Vec<String>, Option<Vec<String>>) = match (has_command(c), process) {
        (true, _) => (
            texts(&c["command"]).iter().map(|s| own(s)).collect(),
            has_args(c).then(|| texts(&c["args"]).iter().map(|s| own(s)).collect()),
        ),
        (false, p) => {
            let p = p.cloned().unwrap_or(Process {
                entrypoint: Vec::new(),
                cmd: Vec::new(),
                digest: String::new(),
            });
            let args = match has_args(c) {
                true => texts(&c["args"]).iter().map(|s| own(s)).collect(),
                false => p.cmd.iter().map(|s| image(s)).collect(),
            };
            (p.entrypoint.iter().map(|s| image(s)).collect(), Some(args))
        }
    };
    let mut full: Vec<String> = ours.iter().map(|s| literal(s)).collect();
    full.append(&mut command);
    c["command"] = json!(full);
    match args {
        Some(a) if !a.is_empty() => c["args"] = json!(a),
        _ => {
            if let Some(o) = c.as_object_mut() {
                o.remove("args");
            }
        }
    }
    let set = |c: &mut Value, key: &str, v: &[Value]| match v.is_empty() {
        true => {
            if let Some(o) = c.as_object_mut() {
                o.remove(key);
            }
        }
        false => c[key] = json!(v),
    };
    set(c, "env", &split.env);
    set(c, "envFrom", &split.env_from);
    let mut mounts: Vec<Value> = c["volumeMounts"].as_array().cloned().unwrap_or_default();
    for v in volumes.iter().map(|v| source(v)) {
        mounts.push(json!({"name": v, "mountPath": format!("{SYNCED_DIR}/{v}"), "readOnly": true}));
    }
    if !mounts.iter().any(|m| m["name"] == BIN_VOLUME) {
        mounts.push(json!({"name": BIN_VOLUME, "mountPath": BIN_DIR, "readOnly": true}));
    }
    c["volumeMounts"] = json!(mounts);
}

#[cfg(test)]
mod tests;
