//! The injection itself: a pure function from (pod, webhook defaults) to a decision — leave the
//! pod alone, reject it with a message the user sees in `kubectl`, or return the mutated pod.
//! The JSON Patch is computed from the two pods by [`super::patch::diff`].
//!
//! Invariants: pods that did not opt in (`secretdrop.dev/inject` true as a label or annotation,
//! read like Go's ParseBool; any other value is a rejection) are never changed; a pod already
//! injected is left alone (idempotent); the injected container reads its configuration from the
//! pod's own annotations through a downward-API file, so no secret or config is copied into the
//! pod spec; it runs non-root, read-only, with all capabilities dropped.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::{json, Value};

use super::settings;
use crate::config::annotations::{self, PREFIX};
use crate::config::pod_settings::{self, shorten, PodSettings};
use crate::config::VaultEnv;

use super::csi::{self, CsiVolume};
use super::vault_agent::{self, AgentPlan};
use crate::provider::pod::{webhook_message, Cluster, Grant, ServiceAccounts, Use};

pub use super::defaults::*;

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
    mutate_with(pod, defaults, &[])
}

/// [`mutate`] for a pod whose CSI volumes' classes were read ([`super::csi::classes`]): those
/// volumes are converted, and a pod that has some is injected even without the opt-in.
pub fn mutate_with(pod: &Value, defaults: &Defaults, csi: &[CsiVolume]) -> Decision {
    mutate_in(pod, "", defaults, csi)
}

/// [`mutate_with`] for a pod of `namespace` (the AdmissionReview's; empty: the pod's own), the
/// namespace whose ServiceAccount an IRSA pod's role is read from.
pub fn mutate_in(pod: &Value, namespace: &str, defaults: &Defaults, csi: &[CsiVolume]) -> Decision {
    mutate_synced(pod, namespace, defaults, csi, None)
}

/// [`mutate_in`] with the pod's references to synced Secrets served
/// ([`super::synced::plan`]).
pub fn mutate_synced(
    pod: &Value,
    namespace: &str,
    defaults: &Defaults,
    csi: &[CsiVolume],
    synced: Option<super::synced::Plan>,
) -> Decision {
    let annotations: BTreeMap<String, String> = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let label = pod
        .pointer("/metadata/labels")
        .and_then(|l| l.get(format!("{PREFIX}inject")))
        .and_then(Value::as_str);
    let annotation = annotations
        .get(&format!("{PREFIX}inject"))
        .map(String::as_str);
    let asked = match opted_in(annotation, label) {
        Ok(asked) => asked,
        Err(message) => return Decision::Reject(message),
    };
    if !asked && csi.is_empty() {
        // A pod injected for its CSI volumes alone has neither left when it comes back.
        let injected = annotations
            .get(&format!("{PREFIX}status"))
            .map(String::as_str);
        return Decision::Skip(match injected == Some("injected") {
            true => "already injected",
            false => "not opted in",
        });
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
    let planned = match asked {
        true => plan(pod, &annotations, defaults),
        false => csi_only_plan(pod, &annotations, defaults, csi),
    };
    let planned = planned.and_then(|p| {
        let p = Plan {
            csi: csi.to_vec(),
            synced,
            ..p
        };
        with_grants(pod, namespace, defaults, p)
    });
    let planned = planned.and_then(|mut p| {
        p.admitted = admitted(&annotations, &p, defaults)?;
        Ok(p)
    });
    match planned {
        Ok(p) => Decision::Inject {
            pod: inject(pod, &p, defaults),
            mode: p.mode,
        },
        Err(message) => Decision::Reject(message),
    }
}

/// A pod of a namespace labelled `secretdrop.dev/convert-vault-agent` (the webhook's
/// `/convert-vault-agent`): its Vault Agent Injector annotations served by secretdrop
/// (docs/migrate-from-vault-agent.md).
pub fn convert_agent(pod: &Value, namespace: &str, defaults: &Defaults) -> Decision {
    let all = vault_agent::annotations_of(pod);
    let prefix = match vault_agent::asks(&all) {
        vault_agent::Asks::Agent(prefix) => prefix,
        vault_agent::Asks::Nothing(why) => return Decision::Skip(why),
        vault_agent::Asks::Invalid(message) => return Decision::Reject(message),
    };
    if all.get(&format!("{PREFIX}status")).map(String::as_str) == Some("injected")
        || has_container(pod, "/spec/initContainers", CONTAINER)
        || has_container(pod, "/spec/initContainers", INIT_CONTAINER)
    {
        if all.contains_key(&format!("{PREFIX}vault-agent")) {
            return Decision::Skip("already injected");
        }
        // Injected by another entry (its CSI volumes converted): its agent annotations
        // would be lost without a word.
        return Decision::Reject(format!(
            "{prefix}agent-inject: secretdrop already serves this pod's Secrets Store CSI \
             volumes (namespace labelled secretdrop.dev/convert-csi too); one pod cannot have \
             both converted: move its secrets to one of them"
        ));
    }
    if let Err(message) = check_shape(pod) {
        return Decision::Reject(message);
    }
    // The injector's `agent-share-process-namespace`: the pod shares one, so the app can be
    // signalled (the injector's `agent-inject-command` relied on it, so does a mapped one).
    let shared;
    let pod = match all
        .get(&format!("{prefix}agent-share-process-namespace"))
        .map(|v| vault_agent::agent_bool(v))
    {
        None | Some(Some(false)) => pod,
        Some(Some(true)) => {
            let mut p = pod.clone();
            p["spec"]["shareProcessNamespace"] = json!(true);
            shared = p;
            &shared
        }
        Some(None) => {
            return Decision::Reject(format!(
                "{prefix}agent-share-process-namespace: not a boolean: allowed are true, false, 1, 0, t, f"
            ))
        }
    };
    match agent_plan(pod, namespace, &all, prefix, defaults) {
        Ok(p) => Decision::Inject {
            pod: inject(pod, &p, defaults),
            mode: p.mode,
        },
        Err(message) => Decision::Reject(message),
    }
}

fn agent_plan(
    pod: &Value,
    namespace: &str,
    all: &BTreeMap<String, String>,
    prefix: &'static str,
    defaults: &Defaults,
) -> Result<Plan, String> {
    let (parsed, extras) = vault_agent::plan(pod, namespace, all, prefix, defaults)?;
    let file = Path::new("pod annotations");
    let ours = annotations::ours(file, all).map_err(|e| strip_file(&e.to_string()))?;
    if let Some(k) = [
        "role",
        "objects",
        "provider",
        "env",
        "env-file",
        "mount-path",
        "containers",
    ]
    .iter()
    .find(|k| ours.contains_key(**k))
    {
        return Err(format!(
            "{PREFIX}{k}: a pod converted from the Vault Agent Injector takes its secrets, \
             paths and containers from the injector's annotations ({prefix}*)"
        ));
    }
    let mut pod_settings =
        pod_settings::parse(file, &ours).map_err(|e| strip_file(&e.to_string()))?;
    pod_settings.notify =
        crate::config::volumes::agent_notify(file, &pod_settings.notify, parsed.notify.as_ref())
            .map_err(|e| strip_file(&e.to_string()))?;
    let mode = match (ours.get("mode"), parsed.init_only) {
        (Some(m), _) => mode_of(Some(m))?,
        (None, true) => Mode::Init,
        (None, false) => Mode::Sidecar,
    };
    settings::check(pod, &pod_settings, mode).map_err(|m| match parsed.notify {
        Some(_) => format!(
            "{prefix}agent-inject-command (secretdrop sends the notification it stands for): \
             {m}; with the injector, {prefix}agent-share-process-namespace: \"true\" does that"
        ),
        None => m,
    })?;
    let mut p = Plan {
        mode,
        mount_path: parsed.volume_path.clone(),
        containers: parsed.containers.clone(),
        address: parsed.address.clone(),
        env: None,
        settings: pod_settings,
        objects: true,
        csi: Vec::new(),
        objects_use: None,
        grants: Vec::new(),
        admitted: String::new(),
        agent: Some(extras),
        synced: None,
    };
    let mut seen = all.clone();
    seen.insert(format!("{PREFIX}vault-agent"), prefix.to_string());
    p.admitted = admitted(&seen, &p, defaults)?;
    Ok(p)
}

/// The pins of what this pod is admitted to talk to (`--admitted`, see
/// [`crate::provider::ProviderSpec::pin`]): the volumes the injected container will read,
/// found the way it will find them, from the annotations it will see (the pod's, plus each
/// converted class) and the Vault variables it will have. Set in every injected container, so
/// an annotation edited after admission (a reload, a restart) cannot send the pod's token to a
/// provider, an address or a TLS trust the cluster never admitted.
fn admitted(
    annotations: &BTreeMap<String, String>,
    plan: &Plan,
    defaults: &Defaults,
) -> Result<String, String> {
    let mut seen = annotations.clone();
    for c in &plan.csi {
        seen.insert(
            format!("{}{}", crate::config::names::CSI_PREFIX, c.name),
            c.class.clone(),
        );
    }
    // Only the Vault address comes from the container's environment, as the container
    // computes it (`engine::check_admitted`).
    let env = VaultEnv {
        addr: Some(plan.address.clone()).filter(|a| !a.is_empty() && has_vault(plan)),
        aws_region: defaults.aws_region.clone(),
        ..Default::default()
    };
    let sources =
        crate::config::volumes::sources_of_annotations(Path::new("pod annotations"), &seen, &env)
            .map_err(|e| strip_file(&e.to_string()))?;
    let mut pins: Vec<String> = sources.iter().map(|s| s.spec.provider.pin()).collect();
    pins.sort();
    pins.dedup();
    Ok(pins.join(","))
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

/// Whether the pod asks for injection: `secretdrop.dev/inject` as a label (what the webhook
/// configuration selects on) or as an annotation, each parsed like Go's `strconv.ParseBool`.
/// A value that is not a boolean, or a label and an annotation that disagree, is an error:
/// the pod is rejected rather than silently left without its secrets.
pub fn opted_in(annotation: Option<&str>, label: Option<&str>) -> Result<bool, String> {
    let parse = |what: &str, v: Option<&str>| {
        v.map(pod_settings::parse_inject)
            .transpose()
            .map_err(|m| format!("{PREFIX}inject ({what}): {m}"))
    };
    match (parse("annotation", annotation)?, parse("label", label)?) {
        (Some(a), Some(l)) if a != l => Err(format!(
            "{PREFIX}inject: the label says {l} and the annotation says {a}; make them agree"
        )),
        (a, l) => Ok(a.or(l).unwrap_or(false)),
    }
}

/// The volumes of a cloud provider (annotation objects, converted classes) get their
/// credentials resolved once per provider ([`crate::provider::pod`]). They may sit beside
/// Vault volumes and other providers' volumes, all served by one secretdrop process, but the
/// volumes of one provider must agree on how they get credentials: the injected container has
/// one environment per provider.
fn with_grants(
    pod: &Value,
    namespace: &str,
    defaults: &Defaults,
    mut p: Plan,
) -> Result<Plan, String> {
    let mut uses: Vec<(String, Use)> = Vec::new();
    if let Some(u) = p.objects_use {
        uses.push((format!("the {PREFIX}objects volume"), u));
    }
    uses.extend(
        p.csi
            .iter()
            .filter_map(|c| c.pod_use.map(|u| (format!("volume {:?}", c.name), u))),
    );
    let cluster = Cluster {
        service_accounts: defaults.service_accounts.lookup().map(|l| {
            let l: ServiceAccounts = l.as_ref();
            l
        }),
        aws_region: defaults.aws_region.as_deref(),
    };
    let mut done: Vec<&str> = Vec::new();
    for (first, using) in &uses {
        if done.contains(&using.provider()) {
            continue;
        }
        done.push(using.provider());
        let same = |u: &Use| u.provider() == using.provider();
        if let Some((other, _)) = uses.iter().find(|(_, u)| same(u) && u != using) {
            return Err(format!("{first} and {other} {}", using.disagreement()));
        }
        // A converted volume is named, as its other refusals are.
        let at = match p.csi.iter().find(|c| c.pod_use.as_ref().is_some_and(same)) {
            Some(c) if !p.objects_use.as_ref().is_some_and(same) => {
                format!("volume {:?} ({}): ", c.name, csi::DRIVER)
            }
            _ => String::new(),
        };
        p.grants.push(
            using
                .resolve(pod, namespace, &cluster)
                .map_err(|m| at + &m)?,
        );
    }
    Ok(p)
}

/// Whether the pod has Vault volumes (annotation objects or converted classes): the injected
/// container then has the shared token volume, the Vault address and the CA. Without, it has
/// only what its providers' grants give it.
fn has_vault(p: &Plan) -> bool {
    (p.objects && p.objects_use.is_none()) || p.csi.iter().any(|c| c.pod_use.is_none())
}

/// What the annotations ask for, validated.
struct Plan {
    mode: Mode,
    mount_path: String,
    containers: Option<Vec<String>>,
    address: String,
    /// `secretdrop.dev/env` / `env-file`: the `exec` flags to wrap app containers with.
    env: Option<Vec<String>>,
    /// CA, audience, resources, port: what [`settings`] adds to the injected containers.
    settings: PodSettings,
    /// Whether the annotations describe objects of their own (the `secretdrop-secrets` volume).
    objects: bool,
    /// Converted CSI volumes.
    csi: Vec<CsiVolume>,
    /// A cloud provider's annotation objects (`secretdrop.dev/provider`): how they get
    /// credentials.
    objects_use: Option<Use>,
    /// Each cloud provider's credentials, resolved ([`with_grants`]).
    grants: Vec<Grant>,
    /// `--admitted` of the injected containers (see [`admitted`]).
    admitted: String,
    /// A pod converted from the Vault Agent Injector ([`convert_agent`]).
    agent: Option<AgentPlan>,
    /// Containers that read synced Secrets, rewritten after injection ([`super::synced`]).
    synced: Option<super::synced::Plan>,
}

/// A pod injected only for its CSI volumes: no volume of our own, a native sidecar unless
/// `secretdrop.dev/mode` says otherwise.
fn csi_only_plan(
    pod: &Value,
    all: &BTreeMap<String, String>,
    defaults: &Defaults,
    csi: &[CsiVolume],
) -> Result<Plan, String> {
    let mode = mode_of(all.get(&format!("{PREFIX}mode")))?;
    // Per-pod settings (resources, CA, port...) apply to a pod injected for its CSI volumes too.
    let file = Path::new("pod annotations");
    let ours = annotations::ours(file, all).map_err(|e| strip_file(&e.to_string()))?;
    let pod_settings = pod_settings::parse(file, &ours).map_err(|e| strip_file(&e.to_string()))?;
    settings::check(pod, &pod_settings, mode)?;
    let address = defaults
        .vault_address
        .clone()
        .or_else(|| csi.iter().find_map(|c| c.address.clone()))
        .unwrap_or_default();
    Ok(Plan {
        mode,
        mount_path: DEFAULT_MOUNT_PATH.to_string(),
        containers: None,
        address,
        env: None,
        settings: pod_settings,
        objects: false,
        csi: Vec::new(),
        objects_use: None,
        grants: Vec::new(),
        admitted: String::new(),
        agent: None,
        synced: None,
    })
}

fn plan(pod: &Value, all: &BTreeMap<String, String>, defaults: &Defaults) -> Result<Plan, String> {
    let file = Path::new("pod annotations");
    let ours = annotations::ours(file, all).map_err(|e| strip_file(&e.to_string()))?;
    let env = VaultEnv {
        addr: defaults.vault_address.clone(),
        aws_region: defaults.aws_region.clone(),
        ..Default::default()
    };
    let spec = annotations::spec_from(file, &ours, &env)
        .map_err(|e| webhook_message(strip_file(&e.to_string())))?;
    let pod_settings = pod_settings::parse(file, &ours).map_err(|e| strip_file(&e.to_string()))?;
    let env = env_flags(&ours, &spec)?;
    let address = spec.provider.address().unwrap_or_default().to_string();
    // A cloud store has no address to allow (docs/webhook.md, "Providers").
    if spec.provider.address().is_some()
        && !defaults.allowed_vault_addresses.is_empty()
        && !crate::provider::vault::client::is_allowed(&defaults.allowed_vault_addresses, &address)
    {
        return Err(format!(
            "{PREFIX}vault-address: {address} is not allowed by this webhook; allowed are {}",
            defaults.allowed_vault_addresses.join(", ")
        ));
    }
    let mode = mode_of(ours.get("mode"))?;
    let mount_path = ours
        .get("mount-path")
        .cloned()
        .unwrap_or_else(|| DEFAULT_MOUNT_PATH.to_string());
    if !mount_path.starts_with('/') || mount_path.split('/').any(|p| p == "..") || mount_path == "/"
    {
        return Err(format!(
            "{PREFIX}mount-path: {:?} must be an absolute path without '..', e.g. /mnt/secrets",
            shorten(&mount_path)
        ));
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
                    "{PREFIX}containers: the pod has no container {:?}; its containers are {}",
                    shorten(missing),
                    some_of(&names)
                ));
            }
            Some(wanted)
        }
    };
    if env.is_some() {
        check_commands(pod, containers.as_deref())?;
    }
    settings::check(pod, &pod_settings, mode)?;
    Ok(Plan {
        mode,
        mount_path,
        containers,
        address,
        env,
        settings: pod_settings,
        objects: true,
        csi: Vec::new(),
        objects_use: spec.provider.pod_use(),
        grants: Vec::new(),
        admitted: String::new(),
        agent: None,
        synced: None,
    })
}

/// `secretdrop.dev/env` (`NAME=object,...`) and `secretdrop.dev/env-file` (`object,...`) as
/// `exec` flags, checked as `exec` checks them and against the pod's objects, so a typo is a
/// rejected pod rather than an app container that exits with code 2.
fn env_flags(
    ours: &BTreeMap<String, String>,
    spec: &crate::config::Spec,
) -> Result<Option<Vec<String>>, String> {
    let list = |key: &str| -> Vec<String> {
        ours.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (vars, files) = (list("env"), list("env-file"));
    if !ours.contains_key("env") && !ours.contains_key("env-file") {
        return Ok(None);
    }
    let request = crate::exec::Request::parse(&vars, &files)
        .map_err(|e| format!("{PREFIX}env / {PREFIX}env-file: {e}"))?;
    let files = spec.provider.files();
    let known: HashSet<&str> = files.iter().map(|o| o.name.as_str()).collect();
    if let Some(missing) = request.objects().into_iter().find(|o| !known.contains(o)) {
        let names: Vec<String> = files.iter().map(|o| o.name.clone()).collect();
        return Err(format!(
            "{PREFIX}env / {PREFIX}env-file: no object {missing:?} in {PREFIX}objects; its \
             objects are {}",
            some_of(&names)
        ));
    }
    let mut flags = Vec::new();
    for v in &request.vars {
        flags.extend(["--env".to_string(), format!("{}={}", v.name, v.object)]);
    }
    for f in &request.files {
        flags.extend(["--env-file".to_string(), f.clone()]);
    }
    Ok(Some(flags))
}

/// Every container to wrap has an explicit `command`: the webhook never reads image
/// registries, so it cannot know an image's entrypoint to put after `exec --`.
fn check_commands(pod: &Value, selected: Option<&[String]>) -> Result<(), String> {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for c in containers {
        let name = c["name"].as_str().unwrap_or("");
        if selected.is_some_and(|s| !s.iter().any(|n| n == name)) {
            continue;
        }
        let ok = c["command"]
            .as_array()
            .is_some_and(|cmd| !cmd.is_empty() && cmd.iter().all(Value::is_string));
        if !ok {
            return Err(format!(
                "{PREFIX}env: container {:?} has no command. secretdrop runs it as \
                 `secretdrop exec ... -- <command> <args>`, and for {PREFIX}env the webhook \
                 does not read the image's entrypoint from its registry: set command (and args) \
                 to what the image runs, e.g. command: [\"/app/server\"], or leave it out of \
                 {PREFIX}containers",
                shorten(name)
            ));
        }
    }
    Ok(())
}

/// The first few names and how many there are: a message stays readable for any pod.
/// The first few of `names`, each cut like a quoted value: a message stays short for any pod.
fn some_of(names: &[String]) -> String {
    let short: Vec<String> = names.iter().map(|n| shorten(n)).collect();
    crate::error::first_few(&short, 10)
}

/// `secretdrop.dev/mode`: sidecar when absent.
fn mode_of(value: Option<&String>) -> Result<Mode, String> {
    match value {
        None => Ok(Mode::Sidecar),
        Some(m) => Mode::parse(m).ok_or_else(|| {
            format!(
                "{PREFIX}mode: {:?} is not a mode: allowed are sidecar, init, init+sidecar",
                shorten(m)
            )
        }),
    }
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
    csi::replace_volumes(&mut volumes, &plan.csi, &defaults.size_limit);
    if plan.objects {
        volumes.push(json!({"name": SECRETS_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": defaults.size_limit}}));
    }
    volumes.push(json!({"name": PODINFO_VOLUME, "downwardAPI": {"items": [
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
    ]}}));
    let mut token = json!({"path": "token", "expirationSeconds": 3600});
    // A converted agent pod logs in with the audience its role took from the pod's own token
    // (the API server's), unless its annotations name one.
    let audience = match plan.agent {
        Some(_) => plan.settings.token_audience.as_deref(),
        None => settings::token_audience(&plan.settings, defaults),
    };
    if let Some(aud) = audience {
        token["audience"] = json!(aud);
    }
    if has_vault(plan) {
        volumes.extend(settings::volumes(&plan.settings, defaults));
        let sources = csi::token_sources(token, &plan.csi);
        volumes.push(json!({"name": TOKEN_VOLUME, "projected": {"sources": sources}}));
    }
    // Each cloud provider's token in a volume of its own, where it needs one.
    for g in &plan.grants {
        // Another webhook (Azure Workload Identity's) may have added the same volume already.
        for v in g.volumes() {
            if !volumes.iter().any(|have| have["name"] == v["name"]) {
                volumes.push(v);
            }
        }
    }
    volumes
        .push(json!({"name": STATE_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}));
    if plan.env.is_some() || plan.synced.as_ref().is_some_and(|s| s.wraps()) {
        volumes.push(
            json!({"name": BIN_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}),
        );
    }
    if let Some(a) = &plan.agent {
        for (name, _) in &a.custom {
            volumes.push(json!({"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": defaults.size_limit}}));
        }
        if let Some(secret) = &a.tls_secret {
            volumes.push(json!({"name": AGENT_TLS_VOLUME, "secret": {"secretName": secret}}));
        }
    }
    spec["volumes"] = Value::Array(volumes);

    let app_mount = json!({"name": SECRETS_VOLUME, "mountPath": plan.mount_path, "readOnly": true});
    let mut inits = take_array(spec, "initContainers");
    // Service-mesh init containers and native sidecars that lead the list keep going first, so
    // Vault is reachable when secretdrop starts; everything after starts after the first render.
    let at = inits.iter().take_while(|c| runs_before_us(c)).count();
    let mut ours = Vec::new();
    if plan.env.is_some() || plan.synced.as_ref().is_some_and(|s| s.wraps()) {
        ours.push(copy_container(plan, defaults));
    }
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
    let custom_mounts: Vec<Value> = plan
        .agent
        .iter()
        .flat_map(|a| &a.custom)
        .map(|(name, path)| json!({"name": name, "mountPath": path, "readOnly": true}))
        .collect();
    for c in inits.iter_mut().skip(at).filter(|_| plan.objects) {
        add_mount(c, &app_mount);
        for m in &custom_mounts {
            add_mount(c, m);
        }
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
        if selected && plan.objects {
            add_mount(c, &app_mount);
            for m in &custom_mounts {
                add_mount(c, m);
            }
            if let Some(flags) = &plan.env {
                wrap_command(c, &plan.mount_path, flags);
            }
        }
    }
    if plan.mode == Mode::InitAndSidecar {
        let mut sidecar = sidecar_container(CONTAINER, "sidecar", plan, defaults, false);
        sidecar.as_object_mut().map(|o| o.remove("restartPolicy"));
        containers.push(sidecar);
    }
    spec["containers"] = Value::Array(containers);

    if let Some(synced) = &plan.synced {
        super::synced::apply(&mut pod, synced);
    }
    let annotations = &mut pod["metadata"]["annotations"];
    csi::annotate(annotations, &plan.csi);
    annotations[format!("{PREFIX}status")] = json!("injected");
    if let Some(a) = &plan.agent {
        annotations[format!("{PREFIX}vault-agent")] = json!(a.prefix);
        // The injector, if it still runs after us, leaves the pod alone.
        annotations[format!("{}agent-inject-status", a.prefix)] = json!("injected");
    }
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

/// The init container that puts the secretdrop binary into the shared [`BIN_VOLUME`], at
/// [`BIN_COPY_DIR`] (distroless images have no `cp`). Same image and restrictions as ours,
/// nothing else mounted, no environment.
fn copy_container(plan: &Plan, defaults: &Defaults) -> Value {
    let mut c = sidecar_container(COPY_CONTAINER, "copy-self", plan, defaults, false);
    c["args"] = json!(["copy-self", "--dir", BIN_COPY_DIR]);
    c["volumeMounts"] = json!([{"name": BIN_VOLUME, "mountPath": BIN_DIR}]);
    if let Some(o) = c.as_object_mut() {
        o.remove("env");
    }
    c
}

/// `command` becomes `/secretdrop-bin/bin/secretdrop exec --dir MOUNT FLAGS... -- command...`;
/// `args` stay as they are, after it. Kubelet expands `$(VAR)` in `command`, so `$` in what
/// we add is doubled; the original command keeps its own meaning.
fn wrap_command(container: &mut Value, mount_path: &str, flags: &[String]) {
    let mut command: Vec<Value> = [
        format!("{BIN_COPY_DIR}/{}", crate::exec::BINARY_NAME),
        "exec".into(),
        "--dir".into(),
        mount_path.to_string(),
    ]
    .into_iter()
    .chain(flags.iter().cloned())
    .chain(["--".to_string()])
    .map(|a| Value::String(a.replace('$', "$$")))
    .collect();
    command.extend(take_array(container, "command"));
    container["command"] = Value::Array(command);
    add_mount(
        container,
        &json!({"name": BIN_VOLUME, "mountPath": BIN_DIR, "readOnly": true}),
    );
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
                 "--token-path", format!("{TOKEN_DIR}/token"), "--state-dir", STATE_DIR],
        // Pinned: the annotations file is re-read by the running sidecar, and an edited
        // vault-address must not send the pod's token to an address nobody admitted.
        "env": [{"name": "VAULT_ADDR", "value": plan.address},
                {"name": "SECRETDROP_ALLOWED_VAULT_ADDRESS", "value": plan.address},
                {"name": "SECRETDROP_ADMITTED", "value": plan.admitted}],
        "volumeMounts": [
            {"name": SECRETS_VOLUME, "mountPath": DIR},
            {"name": PODINFO_VOLUME, "mountPath": PODINFO_DIR, "readOnly": true},
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": true},
            {"name": STATE_VOLUME, "mountPath": STATE_MOUNT}
        ],
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": NONROOT,
            "runAsGroup": NONROOT,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        }
    });
    settings::dress(&mut c, command, &plan.settings, defaults);
    if let Some(a) = &plan.agent {
        dress_agent(&mut c, a);
    }
    if native {
        c["restartPolicy"] = json!("Always");
        c["startupProbe"] = json!({
            "exec": {"command": ["/secretdrop", "probe", "--dir", DIR]},
            "periodSeconds": 1,
            "failureThreshold": 300
        });
    }
    if !plan.csi.is_empty() {
        with_csi(&mut c, plan);
    }
    dress_grants(&mut c, plan);
    c
}

/// The injected container of a converted agent pod: the other secrets directories, the TLS
/// Secret where the injector mounted it, the agent's uid and gid (so files have the owner
/// they had), and the variables the agent's container had for templates' `env`.
fn dress_agent(c: &mut Value, a: &AgentPlan) {
    if let Some(args) = c["args"].as_array_mut() {
        for (name, _) in &a.custom {
            args.extend([
                json!("--volume"),
                json!(format!("{name}={AGENT_CUSTOM_DIR}/{name}")),
            ]);
        }
        if a.revoke_on_shutdown {
            args.push(json!("--revoke-on-exit"));
        }
    }
    if let Some(mounts) = c["volumeMounts"].as_array_mut() {
        for (name, _) in &a.custom {
            mounts.push(json!({"name": name, "mountPath": format!("{AGENT_CUSTOM_DIR}/{name}")}));
        }
        if a.tls_secret.is_some() {
            mounts.push(
                json!({"name": AGENT_TLS_VOLUME, "mountPath": vault_agent::TLS_DIR, "readOnly": true}),
            );
        }
    }
    if let Some(env) = c["env"].as_array_mut() {
        for (name, field) in [
            ("NAMESPACE", "metadata.namespace"),
            ("HOST_IP", "status.hostIP"),
            ("POD_IP", "status.podIP"),
        ] {
            env.push(json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": field}}}));
        }
    }
    c["securityContext"]["runAsUser"] = json!(a.run_as.0);
    c["securityContext"]["runAsGroup"] = json!(a.run_as.1);
}

/// The injected container with its providers' grants: each token mounted where the provider
/// expects it, and its variables. A pod without Vault volumes loses Vault's dressing (the
/// shared token, `--token-path`, the address, the CA); what it was admitted to
/// (`SECRETDROP_ADMITTED`) is kept either way, last.
fn dress_grants(c: &mut Value, plan: &Plan) {
    if plan.grants.is_empty() {
        return;
    }
    let vault = has_vault(plan);
    if let Some(mounts) = c["volumeMounts"].as_array_mut() {
        if !vault {
            mounts.retain(|m| m["name"] != TOKEN_VOLUME && m["name"] != settings::CA_VOLUME);
        }
        for g in &plan.grants {
            mounts.extend(g.mounts());
        }
    }
    if !vault {
        if let Some(args) = c["args"].as_array_mut() {
            if let Some(i) = args.iter().position(|a| a == "--token-path") {
                args.drain(i..(i + 2).min(args.len()));
            }
        }
    }
    let granted = plan
        .grants
        .iter()
        .flat_map(Grant::env)
        .map(|(name, value)| json!({"name": name, "value": value}));
    let kept: Vec<Value> = c["env"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|v| vault || v["name"] == "SECRETDROP_ADMITTED")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    c["env"] = Value::Array(match vault {
        true => kept.into_iter().chain(granted).collect(),
        false => granted.chain(kept).collect(),
    });
}

/// The injected container of a pod with converted CSI volumes: those volumes too, every
/// class's Vault address pinned, and `--dir` only when the annotations have objects.
fn with_csi(c: &mut Value, plan: &Plan) {
    let first = (!plan.address.is_empty()).then_some(plan.address.as_str());
    let pinned = csi::addresses(first, &plan.csi).join(",");
    if let Some(env) = c["env"].as_array_mut() {
        for e in env.iter_mut() {
            if e["name"] == "SECRETDROP_ALLOWED_VAULT_ADDRESS" {
                e["value"] = json!(pinned);
            }
        }
    }
    if !plan.objects {
        if let Some(args) = c["args"].as_array_mut() {
            if let Some(i) = args.iter().position(|a| a == "--dir") {
                args.drain(i..i + 2);
            }
        }
        if let Some(mounts) = c["volumeMounts"].as_array_mut() {
            mounts.retain(|m| m["name"] != SECRETS_VOLUME);
        }
        if let Some(cmd) = c.pointer_mut("/startupProbe/exec/command") {
            *cmd = json!(["/secretdrop", "probe"]);
        }
    }
    csi::extend_container(c, &plan.csi);
}

#[cfg(test)]
mod provider_tests;
#[cfg(test)]
mod tests;
