//! Converting Secrets Store CSI volumes (docs/webhook.md, "Converting CSI volumes"): every
//! `csi: {driver: secrets-store.csi.k8s.io, volumeAttributes: {secretProviderClass: X}}`
//! volume becomes a Memory `emptyDir` of the same name, which secretdrop fills from X.
//!
//! [`classes`] is the side-effecting half: it reads each named SecretProviderClass through a
//! [`super::defaults::ClassSource`] (the Kubernetes API) and checks it as the sidecar will. In the webhook's
//! server the source answers from what the review has read ([`super::lookups`]); a class not
//! read yet is deferred, and [`classes`] goes on so that one pass names every class it needs. The rest is pure and
//! used by [`super::mutate`]: the class travels into the pod verbatim as the annotation
//! `csi.secretdrop.dev/<volume>` (read by the sidecar through the downward-API file, so the pod
//! needs no API access), and each class's `audience` gets its own projected token.
//!
//! Invariants: a pod with a CSI volume of this driver is either converted completely or
//! rejected with a message naming the volume and the class; volumeMounts are never touched;
//! a class whose Vault address the webhook does not allow is rejected like an annotation's.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::config::annotations::MAX_ANNOTATION_BYTES;
use crate::config::names::{audience_token_file, is_volume_name, CSI_PREFIX};
use crate::config::VaultEnv;
use crate::net::kube::KubeError;

use super::defaults::Defaults;

pub const DRIVER: &str = "secrets-store.csi.k8s.io";
/// Where the injected container mounts each converted volume, as `CSI_DIR/<volume>`.
pub const CSI_DIR: &str = "/mnt/secretdrop-csi";
/// More CSI volumes than this in one pod is refused: each costs one API call.
pub const MAX_VOLUMES: usize = 16;

/// All lookups of one pod together must end within this: the API server waits for the webhook
/// for its timeoutSeconds (5 in manifests/), and a pod with many volumes must not use it all.
pub const LOOKUP_BUDGET: Duration = Duration::from_secs(3);

/// One converted volume, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CsiVolume {
    /// The volume's name, kept.
    pub name: String,
    /// The SecretProviderClass manifest the sidecar reads, as JSON text.
    pub class: String,
    /// The class's `audience`: the token the volume logs in with.
    pub audience: Option<String>,
    /// The address the class sends the pod's token to (Vault's; `None` for a cloud store).
    pub address: Option<String>,
    /// What a cloud provider's volume needs in the injected container
    /// ([`crate::provider::pod`]); `None` for Vault.
    pub pod_use: Option<crate::provider::pod::Use>,
    /// Each file the volume will hold and its mode ([`super::synced`] shows some of them
    /// elsewhere with the same mode).
    pub modes: Vec<(String, u32)>,
}

impl CsiVolume {
    pub fn dir(&self) -> String {
        format!("{CSI_DIR}/{}", self.name)
    }
}

/// Whether `volume` is a CSI volume of the Secrets Store driver.
pub fn is_csi(volume: &Value) -> bool {
    volume.pointer("/csi/driver").and_then(Value::as_str) == Some(DRIVER)
}

/// Reads and checks the class of every CSI volume of `pod`; `Err` is the rejection message.
pub fn classes(
    pod: &Value,
    namespace: &str,
    defaults: &Defaults,
) -> Result<Vec<CsiVolume>, String> {
    let volumes = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let csi: Vec<&Value> = volumes.iter().filter(|v| is_csi(v)).collect();
    if csi.is_empty() {
        return Ok(Vec::new());
    }
    if csi.len() > MAX_VOLUMES {
        return Err(format!(
            "the pod has {} {DRIVER} volumes; secretdrop converts at most {MAX_VOLUMES}",
            csi.len()
        ));
    }
    let namespace = Some(namespace)
        .filter(|n| !n.is_empty())
        .or_else(|| pod.pointer("/metadata/namespace").and_then(Value::as_str))
        .unwrap_or("default");
    // The classes travel as annotations: all of a pod's annotations must fit the API server's
    // limit, or the pod would be refused after admission with a less helpful message. Checked
    // as each class is added, so a pod of many large classes never holds more than one past it.
    let existing: usize = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map_or(0, |m| {
            m.iter()
                .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                .sum()
        });
    let mut added = 0;
    let mut fits = |c: &CsiVolume| {
        added += CSI_PREFIX.len() + c.name.len() + c.class.len();
        match existing + added > MAX_ANNOTATION_BYTES {
            true => Err(format!(
                "the SecretProviderClasses of this pod take at least {added} bytes as \
                 annotations, and with its own {existing} bytes that exceeds the \
                 {MAX_ANNOTATION_BYTES} bytes Kubernetes allows for a pod's annotations"
            )),
            false => Ok(()),
        }
    };
    let mut out: Vec<CsiVolume> = Vec::new();
    let mut classes_read: Vec<String> = Vec::new();
    // Classes not read yet (see `super::lookups`): the others are still asked for, so that
    // one round names every class the pod needs.
    let mut deferred = false;
    let started = Instant::now();
    for v in csi {
        let name = v["name"].as_str().unwrap_or("");
        if !is_volume_name(name) {
            return Err(format!(
                "volume {name:?}: not a valid volume name (lowercase letters, digits and '-', at \
                 most 63)"
            ));
        }
        let at = |m: String| format!("volume {name:?} ({DRIVER}): {m}");
        if v.pointer("/csi/nodePublishSecretRef").is_some() {
            return Err(at(
                "nodePublishSecretRef cannot be honoured: secretdrop has no node driver to hand \
                 the Secret to, and its provider would use it for credentials. Remove \
                 nodePublishSecretRef and let the pod log in with its service account, or keep \
                 this namespace on the Secrets Store CSI driver"
                    .into(),
            ));
        }
        let class = v
            .pointer("/csi/volumeAttributes/secretProviderClass")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| at("volumeAttributes.secretProviderClass is missing".into()))?;
        let Some(lookup) = defaults.classes.lookup() else {
            return Err(at(format!(
                "cannot read SecretProviderClass {class:?}: this webhook has no Kubernetes API \
                 access (run it in a cluster or give it --kubeconfig)"
            )));
        };
        let left = LOOKUP_BUDGET.saturating_sub(started.elapsed());
        // Two volumes of one class cost one GET.
        let cached = out
            .iter()
            .zip(&classes_read)
            .find(|(_, c)| c.as_str() == class)
            .map(|(v, _): (&CsiVolume, _)| v.clone());
        if let Some(mut same) = cached {
            same.name = name.to_string();
            fits(&same)?;
            out.push(same);
            classes_read.push(class.to_string());
            continue;
        }
        if left.is_zero() {
            return Err(at(format!(
                "cannot read SecretProviderClass {namespace}/{class}: the Kubernetes API used \
                 up the {} this webhook allows for one pod",
                crate::logging::Dur(LOOKUP_BUDGET)
            )));
        }
        let found = match lookup(namespace, class, left) {
            Ok(found) => found,
            Err(KubeError::Deferred) => {
                deferred = true;
                continue;
            }
            // The CSI driver's own wording, so runbooks that grep for it keep working.
            Err(KubeError::NotFound) => {
                return Err(at(format!(
                    "SecretProviderClass {class:?} not found in namespace {namespace:?} \
                     (secretproviderclasses.secrets-store.csi.x-k8s.io \"{class}\" not found)"
                )))
            }
            Err(e) => {
                return Err(at(format!(
                    "cannot read SecretProviderClass {namespace}/{class}: {e}"
                )))
            }
        };
        let checked = check(name, namespace, class, &found, defaults).map_err(at)?;
        drop(found);
        fits(&checked)?;
        out.push(checked);
        classes_read.push(class.to_string());
    }
    if deferred {
        return Err("the pod's SecretProviderClasses are not read yet".into());
    }
    Ok(out)
}

/// The class as the sidecar will read it, checked with the sidecar's own parser.
fn check(
    volume: &str,
    namespace: &str,
    class: &str,
    found: &Value,
    defaults: &Defaults,
) -> Result<CsiVolume, String> {
    let spec = found
        .get("spec")
        .filter(|s| s.is_object())
        .ok_or_else(|| format!("SecretProviderClass {namespace}/{class} has no spec"))?;
    // Verbatim: the parameters stay exactly as written, whichever provider reads them.
    let manifest = json!({
        "apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClass",
        "metadata": {"name": class, "namespace": namespace},
        "spec": spec,
    });
    let text = manifest.to_string();
    drop(manifest);
    let file = format!("SecretProviderClass {namespace}/{class}");
    // It could never travel in the pod: refused before the sidecar's parser spends on it.
    if text.len() > MAX_ANNOTATION_BYTES {
        return Err(format!(
            "{file} takes {} bytes as an annotation, more than the {MAX_ANNOTATION_BYTES} bytes \
             Kubernetes allows for all of a pod's annotations",
            text.len()
        ));
    }
    let env = VaultEnv {
        addr: defaults.vault_address.clone(),
        aws_region: defaults.aws_region.clone(),
        ..Default::default()
    };
    let parsed = crate::config::parse(Path::new(&file), &text, &env)
        .map_err(|e| crate::provider::pod::webhook_message(e.to_string()))?;
    let address = parsed.provider.address().map(str::to_string);
    if let Some(address) = &address {
        if !defaults.allowed_vault_addresses.is_empty()
            && !crate::provider::vault::client::is_allowed(
                &defaults.allowed_vault_addresses,
                address,
            )
        {
            return Err(format!(
                "{file}: Vault address {address} is not allowed by this webhook; allowed are {}",
                defaults.allowed_vault_addresses.join(", ")
            ));
        }
    }
    Ok(CsiVolume {
        name: volume.to_string(),
        audience: parsed.provider.token_audience().map(str::to_string),
        pod_use: parsed.provider.pod_use(),
        modes: parsed
            .provider
            .files()
            .into_iter()
            .map(|f| (f.name, f.mode))
            .collect(),
        address,
        class: text,
    })
}

/// The pod's volumes with every converted one replaced, in place and under its name.
pub fn replace_volumes(volumes: &mut [Value], csi: &[CsiVolume], size_limit: &str) {
    for v in volumes.iter_mut() {
        if csi.iter().any(|c| v["name"] == c.name.as_str()) && is_csi(v) {
            *v = json!({"name": v["name"], "emptyDir": {"medium": "Memory", "sizeLimit": size_limit}});
        }
    }
}

/// The projected token sources: the default token, then one per distinct class audience.
pub fn token_sources(default: Value, csi: &[CsiVolume]) -> Vec<Value> {
    let mut sources = vec![json!({"serviceAccountToken": default})];
    let mut seen: Vec<&str> = Vec::new();
    for aud in csi.iter().filter_map(|c| c.audience.as_deref()) {
        if !seen.contains(&aud) {
            seen.push(aud);
            sources.push(json!({"serviceAccountToken": {
                "path": audience_token_file(aud), "expirationSeconds": 3600, "audience": aud
            }}));
        }
    }
    sources
}

/// The converted volumes' annotations: `csi.secretdrop.dev/<volume>` = the class.
pub fn annotate(annotations: &mut Value, csi: &[CsiVolume]) {
    if !annotations.is_object() {
        *annotations = json!({});
    }
    for c in csi {
        annotations[format!("{CSI_PREFIX}{}", c.name)] = json!(c.class);
    }
}

/// Adds the converted volumes to an injected container: mounted at `CSI_DIR/<volume>`,
/// named to the command with `--volume`, waited for by the startupProbe.
pub fn extend_container(c: &mut Value, csi: &[CsiVolume]) {
    for v in csi {
        if let Some(mounts) = c["volumeMounts"].as_array_mut() {
            mounts.push(json!({"name": v.name, "mountPath": v.dir()}));
        }
        if let Some(args) = c["args"].as_array_mut() {
            args.push(json!("--volume"));
            args.push(json!(format!("{}={}", v.name, v.dir())));
        }
        if let Some(probe) = c.pointer_mut("/startupProbe/exec/command") {
            if let Some(cmd) = probe.as_array_mut() {
                cmd.push(json!("--dir"));
                cmd.push(json!(v.dir()));
            }
        }
    }
}

/// Every Vault address the pod may log in to: `first`, then the classes', each once.
pub fn addresses(first: Option<&str>, csi: &[CsiVolume]) -> Vec<String> {
    let mut out: Vec<String> = first.map(str::to_string).into_iter().collect();
    for a in csi.iter().filter_map(|c| c.address.as_ref()) {
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::defaults::ClassSource;
    use std::sync::Arc;

    fn source(found: Result<Value, KubeError>) -> Defaults {
        Defaults {
            vault_address: Some("http://vault.vault:8200".into()),
            classes: ClassSource::new(move |_, _, _| found.clone()),
            ..Defaults::default()
        }
    }

    fn pod(csi: Value) -> Value {
        json!({"metadata": {"namespace": "default"}, "spec": {"volumes": [
            {"name": "config", "configMap": {"name": "c"}},
            {"name": "secrets-store-inline", "csi": csi}
        ]}})
    }

    fn class(params: Value) -> Value {
        json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
               "metadata": {"name": "mycsispc", "resourceVersion": "1"},
               "spec": {"provider": "vault", "parameters": params}})
    }

    const OBJECTS: &str =
        "- {objectName: myPassword, secretPath: secret/data/app, secretKey: password}\n";

    #[test]
    fn a_class_is_carried_verbatim_with_its_audience() {
        let d = source(Ok(class(
            json!({"roleName": "r", "audience": "vault", "objects": OBJECTS}),
        )));
        let p = pod(
            json!({"driver": DRIVER, "readOnly": true, "volumeAttributes": {"secretProviderClass": "mycsispc"}}),
        );
        let got = classes(&p, "", &d).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "secrets-store-inline");
        assert_eq!(got[0].audience.as_deref(), Some("vault"));
        assert_eq!(got[0].address.as_deref(), Some("http://vault.vault:8200"));
        let carried: Value = serde_json::from_str(&got[0].class).unwrap();
        assert_eq!(carried["spec"]["parameters"]["objects"], OBJECTS);
        assert!(carried["metadata"].get("resourceVersion").is_none());
    }

    #[test]
    fn refusals_say_why() {
        let ok = json!({"driver": DRIVER, "volumeAttributes": {"secretProviderClass": "mycsispc"}});
        let cases: Vec<(Value, Defaults, &str)> = vec![
            (
                ok.clone(),
                source(Err(KubeError::NotFound)),
                "SecretProviderClass \"mycsispc\" not found in namespace \"default\"",
            ),
            (
                json!({"driver": DRIVER, "nodePublishSecretRef": {"name": "creds"}, "volumeAttributes": {"secretProviderClass": "mycsispc"}}),
                source(Ok(class(json!({})))),
                "nodePublishSecretRef cannot be honoured",
            ),
            (
                ok.clone(),
                source(Ok(
                    json!({"spec": {"provider": "conjur", "parameters": {}}}),
                )),
                "\"conjur\" is not supported",
            ),
            (ok.clone(), Defaults::default(), "no Kubernetes API access"),
            (
                json!({"driver": DRIVER}),
                source(Ok(class(json!({})))),
                "secretProviderClass is missing",
            ),
            (
                ok.clone(),
                source(Err(KubeError::Denied {
                    status: 403,
                    message: "forbidden: cannot get".into(),
                })),
                "HTTP 403",
            ),
        ];
        for (csi, d, want) in cases {
            let m = classes(&pod(csi), "default", &d).unwrap_err();
            assert!(
                m.contains(want) && m.contains("secrets-store-inline"),
                "{want}: {m}"
            );
        }
        let mut d = source(Ok(class(
            json!({"roleName": "r", "vaultAddress": "http://evil:8200", "objects": OBJECTS}),
        )));
        d.allowed_vault_addresses = vec!["http://vault.vault:8200".into()];
        let m = classes(&pod(ok), "default", &d).unwrap_err();
        assert!(m.contains("not allowed by this webhook"), "{m}");
    }

    #[test]
    fn classes_too_large_for_the_pods_annotations_are_refused() {
        let of = |kib: usize| {
            let big = format!("{OBJECTS}# {}\n", "x".repeat(kib * 1024));
            source(Ok(class(json!({"roleName": "r", "objects": big}))))
        };
        // One class too large to travel: refused before it is parsed.
        let p =
            pod(json!({"driver": DRIVER, "volumeAttributes": {"secretProviderClass": "mycsispc"}}));
        let m = classes(&p, "default", &of(300)).unwrap_err();
        assert!(
            m.contains("more than the 262144 bytes Kubernetes allows"),
            "{m}"
        );
        // Two that fit alone and not together, each named by a volume.
        let vol = |name: &str, class: &str| json!({"name": name, "csi": {"driver": DRIVER, "volumeAttributes": {"secretProviderClass": class}}});
        let two = json!({"spec": {"volumes": [vol("a", "one"), vol("b", "two")]}});
        let m = classes(&two, "default", &of(150)).unwrap_err();
        assert!(m.contains("exceeds the 262144 bytes"), "{m}");
    }

    #[test]
    fn one_class_is_read_once_and_all_reads_share_one_time_budget() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let d = Defaults {
            vault_address: Some("http://vault.vault:8200".into()),
            classes: ClassSource::new(move |_, _, within| {
                counted.fetch_add(1, Ordering::SeqCst);
                // A slow API server: each GET takes 1.2 s, or all the time it is given.
                std::thread::sleep(within.min(Duration::from_millis(1200)));
                Ok(class(json!({"roleName": "r", "objects": OBJECTS})))
            }),
            ..Defaults::default()
        };
        let vol = |name: &str, class: &str| json!({"name": name, "csi": {"driver": DRIVER, "volumeAttributes": {"secretProviderClass": class}}});
        let two = json!({"spec": {"volumes": [vol("a", "same"), vol("b", "same")]}});
        let got = classes(&two, "default", &d).unwrap();
        assert_eq!((got[0].name.as_str(), got[1].name.as_str()), ("a", "b"));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one GET for one class");
        let four = json!({"spec": {"volumes": [vol("a", "c1"), vol("b", "c2"), vol("c", "c3"), vol("d", "c4")]}});
        let started = Instant::now();
        let m = classes(&four, "default", &d).unwrap_err();
        assert!(m.contains("used up the 3s"), "{m}");
        assert!(
            started.elapsed() < LOOKUP_BUDGET + Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn other_volumes_are_not_looked_up() {
        let d = source(Err(KubeError::Failed("must not be called".into())));
        let p =
            json!({"spec": {"volumes": [{"name": "x", "csi": {"driver": "other.csi.k8s.io"}}]}});
        assert_eq!(classes(&p, "default", &d).unwrap(), vec![]);
    }

    #[test]
    fn the_converted_pod_keeps_its_mounts_and_waits_for_every_volume() {
        use super::super::mutate::{mutate_with, Decision, CONTAINER, SECRETS_VOLUME};
        let d = source(Ok(class(json!({"roleName": "r", "objects": OBJECTS}))));
        let mut p = pod(
            json!({"driver": DRIVER, "readOnly": true, "volumeAttributes": {"secretProviderClass": "mycsispc"}}),
        );
        p["spec"]["containers"] = json!([{"name": "app", "image": "nginx", "volumeMounts": [
            {"name": "secrets-store-inline", "mountPath": "/mnt/secrets-store", "readOnly": true}]}]);
        let csi = classes(&p, "default", &d).unwrap();
        let Decision::Inject { pod: out, .. } = mutate_with(&p, &d, &csi) else {
            panic!()
        };
        assert_eq!(
            out["spec"]["containers"], p["spec"]["containers"],
            "mounts untouched"
        );
        let vols = out["spec"]["volumes"].as_array().unwrap();
        assert_eq!(
            vols[1],
            json!({"name": "secrets-store-inline", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
        );
        assert!(
            !vols.iter().any(|v| v["name"] == SECRETS_VOLUME),
            "no objects of its own"
        );
        let ours = crate::webhook::named(&out["spec"]["initContainers"], CONTAINER);
        let args: Vec<&str> = ours["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(!args.contains(&"--dir"));
        assert!(args.windows(2).any(|w| w
            == [
                "--volume",
                "secrets-store-inline=/mnt/secretdrop-csi/secrets-store-inline"
            ]));
        assert_eq!(
            ours["startupProbe"]["exec"]["command"],
            json!([
                "/secretdrop",
                "probe",
                "--dir",
                "/mnt/secretdrop-csi/secrets-store-inline"
            ])
        );
        let carried = &out["metadata"]["annotations"]["csi.secretdrop.dev/secrets-store-inline"];
        assert_eq!(carried.as_str(), Some(csi[0].class.as_str()));
        assert!(
            matches!(mutate_with(&out, &d, &[]), Decision::Skip(_)),
            "idempotent"
        );
    }

    #[test]
    fn annotations_and_two_classes_with_two_audiences() {
        use super::super::mutate::{mutate_with, Decision, CONTAINER};
        let d = source(Ok(class(
            json!({"roleName": "r", "audience": "a1", "objects": OBJECTS}),
        )));
        let mut p =
            pod(json!({"driver": DRIVER, "volumeAttributes": {"secretProviderClass": "one"}}));
        p["spec"]["volumes"][0] = json!({"name": "second", "csi": {"driver": DRIVER, "volumeAttributes": {"secretProviderClass": "two"}}});
        p["metadata"]["annotations"] = json!({"secretdrop.dev/inject": "true", "secretdrop.dev/role": "r", "secretdrop.dev/objects": OBJECTS});
        p["spec"]["containers"] = json!([{"name": "app", "image": "nginx"}]);
        let mut csi = classes(&p, "default", &d).unwrap();
        csi[1].audience = Some("a2".into());
        let Decision::Inject { pod: out, .. } = mutate_with(&p, &d, &csi) else {
            panic!()
        };
        let token = crate::webhook::named(&out["spec"]["volumes"], "secretdrop-token");
        let paths: Vec<&str> = token["projected"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["serviceAccountToken"]["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "token",
                audience_token_file("a1").as_str(),
                audience_token_file("a2").as_str()
            ]
        );
        let ours = crate::webhook::named(&out["spec"]["initContainers"], CONTAINER);
        let probe: Vec<&str> = ours["startupProbe"]["exec"]["command"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            probe,
            [
                "/secretdrop",
                "probe",
                "--dir",
                "/mnt/secretdrop",
                "--dir",
                "/mnt/secretdrop-csi/second",
                "--dir",
                "/mnt/secretdrop-csi/secrets-store-inline"
            ]
        );
    }
}
