//! Per-pod settings ([`crate::config::pod_settings`]) turned into the injected container: its
//! resources, the Vault CA ConfigMap it mounts, the projected token's audience, and the
//! metrics/readiness port with its readinessProbe. Also the checks only the webhook can make,
//! because they need the rest of the pod spec (docs/webhook.md, "Annotations").

use serde_json::{json, Value};

use super::defaults::{Defaults, Mode};
use crate::config::names::PREFIX;
use crate::config::pod_settings::{ConfigMapKey, PodSettings};

/// The ConfigMap volume with the Vault CA, and where the injected containers see it.
pub const CA_VOLUME: &str = "secretdrop-ca";
pub const CA_DIR: &str = "/etc/secretdrop-ca";
/// The file name of the CA inside [`CA_DIR`], whatever the ConfigMap key.
pub const CA_FILE: &str = "ca.crt";
/// Name of the metrics/readiness port of the injected container.
pub const PORT_NAME: &str = "secretdrop";

/// The CA ConfigMap to mount: the pod's, else the webhook's default, unless the pod gives
/// its CA as text (`ca-cert`), which then replaces both.
pub fn ca_configmap<'a>(s: &'a PodSettings, d: &'a Defaults) -> Option<&'a ConfigMapKey> {
    if s.ca_pem.is_some() {
        return None;
    }
    s.ca_configmap.as_ref().or(d.ca_configmap.as_ref())
}

/// The audience of the projected token: the pod's `token-audience`, else `--token-audience`.
pub fn token_audience<'a>(s: &'a PodSettings, d: &'a Defaults) -> Option<&'a str> {
    s.token_audience.as_deref().or(d.token_audience.as_deref())
}

/// The volumes the settings add to the pod.
pub fn volumes(s: &PodSettings, d: &Defaults) -> Vec<Value> {
    ca_configmap(s, d)
        .map(|cm| {
            json!({"name": CA_VOLUME, "configMap": {"name": cm.name,
                "items": [{"key": cm.key, "path": CA_FILE}]}})
        })
        .into_iter()
        .collect()
}

/// Applies the settings to an injected container running `secretdrop <command>`.
pub fn dress(c: &mut Value, command: &str, s: &PodSettings, d: &Defaults) {
    c["resources"] = s.resources.to_json();
    if ca_configmap(s, d).is_some() {
        if let Some(mounts) = c["volumeMounts"].as_array_mut() {
            mounts.push(json!({"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": true}));
        }
        if let Some(env) = c["env"].as_array_mut() {
            env.push(json!({"name": "VAULT_CACERT", "value": format!("{CA_DIR}/{CA_FILE}")}));
        }
    }
    if let (Some(port), "sidecar") = (s.metrics_port, command) {
        if let Some(args) = c["args"].as_array_mut() {
            args.extend([json!("--listen"), json!(format!(":{port}"))]);
        }
        c["ports"] = json!([{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}]);
        c["readinessProbe"] = json!({
            "httpGet": {"path": "/readyz", "port": port},
            "periodSeconds": 10,
            "failureThreshold": 3
        });
    }
}

/// What the settings ask of the pod: a resident process for sidecar-only settings, a shared
/// process namespace to signal a process, a port nobody else in the pod declares.
pub fn check(pod: &Value, s: &PodSettings, mode: Mode) -> Result<(), String> {
    if mode == Mode::Init {
        let resident = [
            ("poll-interval", s.poll_interval.is_some()),
            ("notify-signal", s.notify.signal.is_some()),
            ("notify-url", s.notify.url.is_some()),
            ("metrics-port", s.metrics_port.is_some()),
        ];
        if let Some((name, _)) = resident.iter().find(|(_, set)| *set) {
            return Err(format!(
                "{PREFIX}{name}: only a sidecar uses it, and {PREFIX}mode init runs none: use \
                 mode sidecar or init+sidecar, or remove it"
            ));
        }
    }
    if s.notify.process.is_some()
        && pod.pointer("/spec/shareProcessNamespace") != Some(&json!(true))
    {
        return Err(format!(
            "{PREFIX}notify-process: secretdrop can only see the app's processes when the pod \
             sets spec.shareProcessNamespace: true (and signal them when the app runs as uid \
             65532); set it, or use {PREFIX}notify-url"
        ));
    }
    if let Some(port) = s.metrics_port {
        for field in ["initContainers", "containers"] {
            for c in pod["spec"][field].as_array().map_or(&[][..], Vec::as_slice) {
                let taken = c["ports"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["containerPort"] == json!(port)));
                if taken {
                    return Err(format!(
                        "{PREFIX}metrics-port: container {:?} already declares port {port}; \
                         containers of a pod share one network, choose another port",
                        c["name"].as_str().unwrap_or("")
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::mutate::{mutate, Decision, CONTAINER, INIT_CONTAINER};

    fn injected(extra: Value, defaults: &Defaults) -> Value {
        let mut a = json!({"secretdrop.dev/inject": "true", "secretdrop.dev/role": "r",
            "secretdrop.dev/objects": "- {objectName: a, secretPath: secret/data/a, secretKey: k}"});
        for (k, v) in extra.as_object().unwrap() {
            a[format!("secretdrop.dev/{k}")] = v.clone();
        }
        let pod = json!({"metadata": {"name": "p", "annotations": a},
                         "spec": {"containers": [{"name": "app", "image": "app"}]}});
        match mutate(&pod, defaults) {
            Decision::Inject { pod, .. } => pod,
            other => panic!("{other:?}"),
        }
    }

    fn find<'a>(pod: &'a Value, name: &str) -> &'a Value {
        ["initContainers", "containers"]
            .iter()
            .filter_map(|f| pod["spec"][f].as_array())
            .flatten()
            .find(|c| c["name"] == name)
            .unwrap()
    }

    fn defaults() -> Defaults {
        Defaults {
            vault_address: Some("https://vault:8200".into()),
            ..Defaults::default()
        }
    }

    #[test]
    fn without_settings_the_container_is_as_before() {
        let pod = injected(json!({}), &defaults());
        let c = find(&pod, CONTAINER);
        assert_eq!(
            c["resources"],
            json!({"requests": {"cpu": "5m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}})
        );
        assert!(c.get("readinessProbe").is_none() && c.get("ports").is_none());
        assert!(!c["env"].to_string().contains("VAULT_CACERT"));
    }

    #[test]
    fn only_the_resident_container_listens_and_gets_a_readiness_probe() {
        let pod = injected(
            json!({"mode": "init+sidecar", "metrics-port": "9102"}),
            &defaults(),
        );
        let init = find(&pod, INIT_CONTAINER);
        assert!(!init["args"].to_string().contains("--listen"));
        assert!(init.get("readinessProbe").is_none());
        let sidecar = find(&pod, CONTAINER);
        assert!(sidecar["args"]
            .to_string()
            .contains("\"--listen\",\":9102\""));
        assert_eq!(sidecar["readinessProbe"]["httpGet"]["port"], 9102);
    }

    #[test]
    fn the_default_ca_configmap_yields_to_the_pods_own_ca() {
        let d = Defaults {
            ca_configmap: Some(ConfigMapKey::parse("cluster-ca").unwrap()),
            token_audience: Some("vault".into()),
            ..defaults()
        };
        let pod = injected(json!({}), &d);
        let volume = crate::webhook::named(&pod["spec"]["volumes"], CA_VOLUME);
        assert_eq!(volume["configMap"]["name"], "cluster-ca");
        assert_eq!(volume["configMap"]["items"][0]["key"], "ca.crt");
        assert!(find(&pod, CONTAINER)["env"]
            .to_string()
            .contains("/etc/secretdrop-ca/ca.crt"));
        let pod = injected(
            json!({"ca-configmap": "mine/root.pem", "token-audience": "other"}),
            &d,
        );
        assert!(pod["spec"]["volumes"].to_string().contains("\"mine\""));
        assert!(pod["spec"]["volumes"]
            .to_string()
            .contains("\"audience\":\"other\""));
    }
}
