//! `provider: azure` in a pod the webhook injects (docs/webhook.md, "Azure"): converted CSI
//! volumes whose class says `provider: azure`. The injected container gets what Azure
//! Workload Identity gives a labelled pod: a projected token with audience
//! `api://AzureADTokenExchange` at the path that webhook uses, `AZURE_FEDERATED_TOKEN_FILE`,
//! and `AZURE_CLIENT_ID` / `AZURE_TENANT_ID` from the ServiceAccount's
//! `azure.workload.identity/client-id` and `tenant-id` annotations when it has them (a class's
//! own `clientID` and `tenantId` come first, at run time). TLS trusts the image's CA bundle.
//!
//! The volume, its mount and its file are named as the Azure Workload Identity webhook names
//! them, so a pod labelled for it gets one token volume, not two. Classes that use the node's
//! managed identity (IMDS) are not converted: a pod reaching the node's identity is a choice
//! the cluster makes, not the webhook.
//!
//! Invariants: the ids from the ServiceAccount are checked before they go into the pod; the
//! Azure volumes of a pod agree on one way to get the token.

use serde_json::{json, Value};

use crate::net::kube::KubeError;
use crate::provider::cluster::{Cluster, LOOKUP_TIME};

use super::auth::TOKEN_AUDIENCE;
use super::spec::{AzureSpec, Identity};

/// The projected volume, directory and file Azure Workload Identity uses.
pub const AZURE_TOKEN_VOLUME: &str = "azure-identity-token";
pub const AZURE_TOKEN_DIR: &str = "/var/run/secrets/azure/tokens";
pub const AZURE_TOKEN_FILE: &str = "azure-identity-token";
/// The ServiceAccount annotations Azure Workload Identity reads.
pub const CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
pub const TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";

/// How an Azure volume gets its token, as its class says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AzureUse {
    pub vm_managed: bool,
}

impl AzureUse {
    pub fn of(spec: &AzureSpec) -> AzureUse {
        AzureUse {
            vm_managed: matches!(spec.identity, Identity::VmManaged { .. }),
        }
    }
}

/// What the injected container is given: the ids the ServiceAccount names, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureGrant {
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
}

/// The pod's workload identity: its ServiceAccount's annotations where the webhook can read
/// them. `Err` is the rejection message.
pub fn grant(
    pod: &Value,
    namespace: &str,
    cluster: &Cluster,
    using: AzureUse,
) -> Result<AzureGrant, String> {
    if using.vm_managed {
        return Err(
            "provider azure with useVMManagedIdentity is not converted: the node's managed \
             identity is reached through IMDS, which the webhook does not grant a pod; use \
             Azure Workload Identity (clientID) for this class"
                .into(),
        );
    }
    let sa = pod
        .pointer("/spec/serviceAccountName")
        .or_else(|| pod.pointer("/spec/serviceAccount"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let namespace = Some(namespace)
        .filter(|n| !n.is_empty())
        .or_else(|| pod.pointer("/metadata/namespace").and_then(Value::as_str))
        .unwrap_or("default");
    // Without API access, or without the annotations, the class's clientID and tenantId (or
    // the variables another webhook sets) are what the container has.
    let found = match cluster.service_accounts {
        None => return Ok(AzureGrant::default()),
        Some(lookup) => match lookup(namespace, sa, LOOKUP_TIME) {
            Ok(found) => found,
            // Not found, or not readable (the base manifests without the ServiceAccounts
            // component): as without API access.
            Err(KubeError::NotFound | KubeError::Denied { .. }) => return Ok(AzureGrant::default()),
            Err(e) => {
                return Err(format!(
                    "provider azure: cannot read ServiceAccount {namespace}/{sa} for its \
                     {CLIENT_ID_ANNOTATION} annotation: {e}"
                ))
            }
        },
    };
    let annotation = |name: &str| -> Result<Option<String>, String> {
        match found
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(name))
            .and_then(Value::as_str)
        {
            None => Ok(None),
            Some(v) if is_id(v) => Ok(Some(v.to_string())),
            Some(v) => Err(format!(
                "provider azure: ServiceAccount {namespace}/{sa}: {name}: {:?} is not an id (a GUID)",
                v.chars().take(80).collect::<String>()
            )),
        }
    };
    Ok(AzureGrant {
        client_id: annotation(CLIENT_ID_ANNOTATION)?,
        tenant_id: annotation(TENANT_ID_ANNOTATION)?,
    })
}

/// A GUID or a tenant's domain name: letters, digits, `-` and `.`.
fn is_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The projected token source: the exchange audience, an hour, as Azure Workload Identity.
pub fn token_source() -> Value {
    json!({"serviceAccountToken": {"path": AZURE_TOKEN_FILE, "expirationSeconds": 3600,
        "audience": TOKEN_AUDIENCE}})
}

/// The variables the Azure provider reads in the injected container.
pub fn env(g: &AzureGrant) -> Vec<(&'static str, String)> {
    let mut env = vec![(
        "AZURE_FEDERATED_TOKEN_FILE",
        format!("{AZURE_TOKEN_DIR}/{AZURE_TOKEN_FILE}"),
    )];
    if let Some(c) = &g.client_id {
        env.push(("AZURE_CLIENT_ID", c.clone()));
    }
    if let Some(t) = &g.tenant_id {
        env.push(("AZURE_TENANT_ID", t.clone()));
    }
    env
}
