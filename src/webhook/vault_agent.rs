//! Pods annotated for the Vault Agent Injector, converted to secretdrop
//! (docs/migrate-from-vault-agent.md). Reached only through `/convert-vault-agent`, which the
//! shipped MutatingWebhookConfiguration calls for namespaces labelled
//! `secretdrop.dev/convert-vault-agent: "true"`; pods reaching `/mutate` are never converted.
//!
//! The pod keeps its annotations: the injected secretdrop reads them from the downward-API
//! file, as it reads its own (`secretdrop.dev/vault-agent` names the prefix), so the files are
//! decided in one place ([`crate::provider::vault::agent`]), here only checked. What the
//! webhook decides is where things go: the secrets directory and the others at the paths the
//! injector would mount them, in the containers it would mount them in, and the uid and gid
//! the agent ran as, so file owners and modes are what the app saw before.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::config::env::VaultEnv;
use crate::provider::vault::agent;
pub use crate::provider::vault::agent::agent_bool;

use super::defaults::Defaults;

/// The injector's uid and gid for the agent (its default security context).
pub const AGENT_UID: u64 = 100;
pub const AGENT_GID: u64 = 1000;

/// What the conversion adds beside an ordinary injection.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentPlan {
    pub prefix: &'static str,
    /// Other secrets directories: (volume name, path in the app containers).
    pub custom: Vec<(String, String)>,
    /// `tls-secret`: mounted at `/vault/tls`, where the injector mounts it.
    pub tls_secret: Option<String>,
    pub revoke_on_shutdown: bool,
    /// The uid and gid the injected containers run as.
    pub run_as: (u64, u64),
}

/// Where the injector mounts `tls-secret` in the agent container.
pub const TLS_DIR: &str = "/vault/tls";

/// The annotations of `pod` by key.
pub fn annotations_of(pod: &Value) -> BTreeMap<String, String> {
    pod.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// What the injector's annotations of a pod ask for.
#[derive(Debug, Clone, PartialEq)]
pub enum Asks {
    /// An agent, with the annotations under this prefix.
    Agent(&'static str),
    /// Nothing: the pod is admitted unchanged, for this reason.
    Nothing(&'static str),
    /// `agent-inject` is not a boolean: the pod is refused with this message.
    Invalid(String),
}

/// Whether the pod asks the injector for an agent, and which prefix it uses.
pub fn asks(all: &BTreeMap<String, String>) -> Asks {
    let Some(prefix) = agent::prefix_of(all) else {
        return Asks::Nothing("not annotated for the Vault Agent Injector");
    };
    let inject = &all[&format!("{prefix}agent-inject")];
    match agent::agent_bool(inject) {
        None => Asks::Invalid(format!(
            "{prefix}agent-inject: {:?} is not a boolean: allowed are true, false, 1, 0, t, f",
            inject.chars().take(64).collect::<String>()
        )),
        Some(false) => Asks::Nothing("agent-inject is false"),
        Some(true) => {
            let status = all.get(&format!("{prefix}agent-inject-status"));
            if status.map(String::as_str) == Some("injected") {
                return Asks::Nothing("already injected");
            }
            Asks::Agent(prefix)
        }
    }
}

/// The injector's annotations checked as the injected secretdrop will read them (templates
/// parsed, reads found with the variables the container will have), and what the webhook must
/// add for them.
pub fn plan(
    pod: &Value,
    namespace: &str,
    all: &BTreeMap<String, String>,
    prefix: &'static str,
    defaults: &Defaults,
) -> Result<(agent::AgentPod, AgentPlan), String> {
    let env = VaultEnv {
        addr: defaults.vault_address.clone(),
        ..Default::default()
    };
    let ns = namespace.to_string();
    let parsed = agent::parse(
        Path::new("pod annotations"),
        all,
        prefix,
        &env,
        &|name| match name {
            "NAMESPACE" => ns.clone(),
            _ => String::new(),
        },
    )
    .map_err(|e| strip_file(&e.to_string()))?;
    if !defaults.allowed_vault_addresses.is_empty()
        && !crate::provider::vault::client::is_allowed(
            &defaults.allowed_vault_addresses,
            &parsed.address,
        )
    {
        return Err(format!(
            "{prefix}service: {} is not allowed by this webhook; allowed are {}",
            parsed.address,
            defaults.allowed_vault_addresses.join(", ")
        ));
    }
    let names: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(wanted) = &parsed.containers {
        if let Some(missing) = wanted.iter().find(|w| !names.contains(w)) {
            return Err(format!(
                "{prefix}agent-inject-containers: the pod has no container {:?}; its containers \
                 are {}",
                missing.chars().take(64).collect::<String>(),
                crate::error::first_few(&names, 10)
            ));
        }
    }
    let custom = parsed
        .custom_paths
        .iter()
        .enumerate()
        .map(|(i, p)| (crate::config::volumes::agent_volume(i), p.clone()))
        .collect();
    let run_as = run_as(pod, all, prefix)?;
    Ok((
        parsed.clone(),
        AgentPlan {
            prefix,
            custom,
            tls_secret: parsed.tls_secret,
            revoke_on_shutdown: parsed.revoke_on_shutdown,
            run_as,
        },
    ))
}

/// The uid and gid the agent ran as: `agent-run-as-user` / `-group`, or the first app
/// container's with `agent-run-as-same-user`, else the injector's 100 and 1000. Root is
/// refused: secretdrop never runs as root.
fn run_as(pod: &Value, all: &BTreeMap<String, String>, prefix: &str) -> Result<(u64, u64), String> {
    let get = |k: &str| all.get(&format!("{prefix}{k}"));
    let number = |k: &str, default: u64| -> Result<u64, String> {
        match get(k) {
            None => Ok(default),
            Some(v) => v.trim().parse::<u64>().map_err(|_| {
                format!(
                    "{prefix}{k}: {:?} is not a user or group id",
                    v.chars().take(64).collect::<String>()
                )
            }),
        }
    };
    let mut uid = number("agent-run-as-user", AGENT_UID)?;
    let gid = number("agent-run-as-group", AGENT_GID)?;
    if get("agent-run-as-same-user")
        .and_then(|v| agent::agent_bool(v))
        .unwrap_or(false)
    {
        let first = pod.pointer("/spec/containers/0/securityContext/runAsUser");
        let pod_wide = pod.pointer("/spec/securityContext/runAsUser");
        uid = first.or(pod_wide).and_then(Value::as_u64).ok_or_else(|| {
            format!("{prefix}agent-run-as-same-user: the first container has no runAsUser to copy")
        })?;
    }
    if uid == 0 {
        return Err(format!(
            "{prefix}agent-run-as-user: secretdrop does not run as root (uid 0); give the \
             files' owner another uid"
        ));
    }
    Ok((uid, gid))
}

fn strip_file(message: &str) -> String {
    message
        .strip_prefix("pod annotations: ")
        .unwrap_or(message)
        .to_string()
}
