//! `provider: gcp` in a pod the webhook injects (docs/gcp.md, "Through the webhook"): converted
//! CSI volumes whose class says `provider: gcp`. The injected container authenticates as the
//! pod's own containers do, as Google's libraries would in them:
//!
//! - a container of the pod sets `GOOGLE_APPLICATION_CREDENTIALS` (Workload Identity
//!   Federation, GKE fleets): the injected container gets the same variable and the same
//!   mounts of that container's volumes that hold the file and the projected token (the mounts
//!   whose path holds the file, and those of projected volumes with a service-account token);
//! - otherwise, the metadata server (GKE Workload Identity answers for the pod); a
//!   `GCE_METADATA_HOST` a container sets is passed on.
//!
//! Invariants: only literal values are copied (a variable from a Secret or a field is refused,
//! not guessed); containers that disagree on the file or the metadata host are refused; mounts
//! are copied read-only and only of volumes the pod already has; no volume is added.

use serde_json::{json, Value};

/// How the injected container gets Google credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcpGrant {
    /// The metadata server, at `host` when a container moves it.
    Metadata { host: Option<String> },
    /// The credentials file of the pod's containers and the mounts that hold it and its token.
    Federation {
        credentials: String,
        mounts: Vec<Value>,
    },
}

/// The literal value of `name` in a container's env; Err when set otherwise.
fn literal(c: &Value, name: &str) -> Result<Option<String>, String> {
    let Some(env) = c["env"].as_array() else {
        return Ok(None);
    };
    match env.iter().find(|e| e["name"] == name) {
        None => Ok(None),
        Some(e) => match e["value"].as_str() {
            Some(v) if !v.is_empty() => Ok(Some(v.to_string())),
            _ => Err(format!(
                "provider gcp: container {:?} sets {name} other than as a literal value; the \
                 webhook copies only literal values into its container",
                c["name"].as_str().unwrap_or("?")
            )),
        },
    }
}

/// Every container of the pod (init containers too), with the name of each.
fn containers(pod: &Value) -> Vec<&Value> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod["spec"][k].as_array())
        .flatten()
        .collect()
}

/// One value the containers agree on (or none sets).
fn agreed<'p>(pod: &'p Value, name: &str) -> Result<Option<(String, &'p Value)>, String> {
    let mut found: Option<(String, &'p Value)> = None;
    for c in containers(pod) {
        if let Some(v) = literal(c, name)? {
            match &found {
                Some((w, other)) if *w != v => {
                    return Err(format!(
                        "provider gcp: containers {:?} and {:?} set {name} differently; the \
                         injected container has one Google identity",
                        other["name"].as_str().unwrap_or("?"),
                        c["name"].as_str().unwrap_or("?")
                    ))
                }
                Some(_) => {}
                None => found = Some((v, c)),
            }
        }
    }
    Ok(found)
}

/// The pod's Google identity, as its containers' variables and mounts say.
pub fn identity(pod: &Value) -> Result<GcpGrant, String> {
    let Some((credentials, holder)) = agreed(pod, "GOOGLE_APPLICATION_CREDENTIALS")? else {
        let host = agreed(pod, "GCE_METADATA_HOST")?.map(|(h, _)| h);
        return Ok(GcpGrant::Metadata { host });
    };
    let volumes = pod["spec"]["volumes"].as_array();
    let is_token_volume = |name: &Value| {
        volumes.into_iter().flatten().any(|v| {
            v["name"] == *name
                && v["projected"]["sources"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s.get("serviceAccountToken").is_some()))
        })
    };
    let holds_file = |path: &str| {
        let p = path.trim_end_matches('/');
        credentials == p || credentials.starts_with(&format!("{p}/"))
    };
    let mounts: Vec<Value> = holder["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["mountPath"].as_str().is_some_and(holds_file) || is_token_volume(&m["name"]))
        .map(|m| {
            let mut copy =
                json!({"name": m["name"], "mountPath": m["mountPath"], "readOnly": true});
            if let Some(sub) = m.get("subPath") {
                copy["subPath"] = sub.clone();
            }
            copy
        })
        .collect();
    if !mounts
        .iter()
        .any(|m| m["mountPath"].as_str().is_some_and(holds_file))
    {
        return Err(format!(
            "provider gcp: GOOGLE_APPLICATION_CREDENTIALS is {credentials:?}, but container {:?} \
             mounts no volume holding it; mount the credentials file (and the projected token \
             it names) in that container",
            holder["name"].as_str().unwrap_or("?")
        ));
    }
    Ok(GcpGrant::Federation {
        credentials,
        mounts,
    })
}

/// The variables the injected container gets.
pub fn env(g: &GcpGrant) -> Vec<(&'static str, String)> {
    match g {
        GcpGrant::Metadata { host: None } => Vec::new(),
        GcpGrant::Metadata { host: Some(h) } => vec![("GCE_METADATA_HOST", h.clone())],
        GcpGrant::Federation { credentials, .. } => {
            vec![("GOOGLE_APPLICATION_CREDENTIALS", credentials.clone())]
        }
    }
}

/// The injected container's mounts of the pod's volumes.
pub fn mounts(g: &GcpGrant) -> Vec<Value> {
    match g {
        GcpGrant::Metadata { .. } => Vec::new(),
        GcpGrant::Federation { mounts, .. } => mounts.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(app: Value, volumes: Value) -> Value {
        json!({"spec": {"containers": [app], "volumes": volumes}})
    }

    #[test]
    fn federation_copies_the_variable_and_the_mounts_that_hold_file_and_token() {
        let app = json!({"name": "app",
            "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/run/secrets/tokens/gcp-ksa/google-application-credentials.json"}],
            "volumeMounts": [
                {"name": "gcp-ksa", "mountPath": "/var/run/secrets/tokens/gcp-ksa"},
                {"name": "data", "mountPath": "/data"},
                {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]});
        let volumes = json!([
            {"name": "gcp-ksa", "projected": {"sources": [
                {"serviceAccountToken": {"audience": "p.svc.id.goog", "path": "token"}},
                {"configMap": {"name": "default-creds"}}]}},
            {"name": "data", "emptyDir": {}}]);
        let g = identity(&pod(app, volumes)).unwrap();
        assert_eq!(
            mounts(&g),
            vec![
                json!({"name": "gcp-ksa", "mountPath": "/var/run/secrets/tokens/gcp-ksa", "readOnly": true})
            ]
        );
        assert_eq!(env(&g)[0].0, "GOOGLE_APPLICATION_CREDENTIALS");
    }

    #[test]
    fn the_metadata_server_needs_nothing_and_disagreement_is_refused() {
        let g = identity(&pod(json!({"name": "app"}), json!([]))).unwrap();
        assert_eq!(g, GcpGrant::Metadata { host: None });
        assert!(env(&g).is_empty() && mounts(&g).is_empty());
        let two = json!({"spec": {"containers": [
            {"name": "a", "env": [{"name": "GCE_METADATA_HOST", "value": "h1"}]},
            {"name": "b", "env": [{"name": "GCE_METADATA_HOST", "value": "h2"}]}]}});
        assert!(identity(&two).unwrap_err().contains("differently"));
        let from_secret = json!({"spec": {"containers": [{"name": "a", "env": [
            {"name": "GOOGLE_APPLICATION_CREDENTIALS", "valueFrom": {"secretKeyRef": {"name": "k", "key": "k"}}}]}]}});
        assert!(identity(&from_secret).unwrap_err().contains("literal"));
        let unmounted = json!({"spec": {"containers": [{"name": "a", "env": [
            {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/creds/c.json"}]}]}});
        assert!(identity(&unmounted)
            .unwrap_err()
            .contains("mounts no volume holding it"));
    }
}
