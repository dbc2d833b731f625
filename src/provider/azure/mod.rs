//! The Azure Key Vault provider (docs/azure.md): secrets, keys and certificates of one vault,
//! with the access token Azure Workload Identity (or the node's managed identity) gives a pod.
//!
//! One file per concern: [`params`] reads the SecretProviderClass into a [`spec::AzureSpec`],
//! [`cloud`] knows the clouds' endpoints, [`auth`] obtains and refreshes the token,
//! [`keyvault`] is the bounded REST client, [`fetch`] turns a spec into versions,
//! [`render`] writes them as the provider does with [`pem`], [`der`] and [`pkcs12`], and
//! [`session`] is the state machine the engine drives.

pub mod auth;
pub mod cloud;
pub mod der;
pub mod fetch;
pub mod keyvault;
pub mod params;
pub mod pem;
pub mod pkcs12;
pub mod pod;
pub mod render;
pub mod session;
pub mod spec;

use crate::provider::FileSpec;
use spec::{describe, AzureSpec, CloudChoice, Identity};

/// Every file: each object's own, or its versions' directory.
pub fn files(spec: &AzureSpec) -> Vec<FileSpec> {
    spec.objects
        .iter()
        .flat_map(|o| {
            o.file_names().into_iter().map(|name| FileSpec {
                name,
                mode: o.mode,
                owner: None,
                group: None,
            })
        })
        .collect()
}

/// Volumes of the same vault, reached with the same identity, share one token.
pub fn shares_session(a: &AzureSpec, b: &AzureSpec) -> bool {
    a.vault_name == b.vault_name
        && a.cloud == b.cloud
        && a.tenant_id == b.tenant_id
        && a.identity == b.identity
}

/// One spec fetching every member's objects; file names prefixed with the member's index.
pub fn merge(specs: Vec<AzureSpec>) -> AzureSpec {
    let mut merged = AzureSpec {
        objects: Vec::new(),
        ..specs[0].clone()
    };
    for (member, spec) in specs.into_iter().enumerate() {
        for mut o in spec.objects {
            o.file = crate::provider::member_prefix(member, &o.file);
            merged.objects.push(o);
        }
    }
    merged
}

/// The webhook's pin: the provider and the cloud (which decides where the pod's token goes).
pub fn pin(spec: &AzureSpec) -> String {
    match &spec.cloud {
        CloudChoice::Named { cloud, explicit } => {
            format!("azure:{}{}", cloud.name, if *explicit { "" } else { "?" })
        }
        CloudChoice::Stack { file } => format!(
            "azure:stack:{}",
            file.as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_default()
        ),
    }
}

/// `secretdrop check` for an Azure spec: vault, cloud, identity, and each file with the object
/// it comes from (no values).
pub fn plan(source: &std::path::Path, spec: &AzureSpec) -> String {
    let mut s = format!("config: {} (valid)\n", source.display());
    match &spec.cloud {
        CloudChoice::Named { cloud, explicit } => {
            s.push_str(&format!(
                "azure: key vault https://{}.{}/ in {}\n",
                spec.vault_name, cloud.dns_suffix, cloud.name
            ));
            let authority = if *explicit {
                cloud.authority.clone()
            } else {
                format!("AZURE_AUTHORITY_HOST, else {}", cloud.authority)
            };
            s.push_str(&format!(
                "token: scope {} from {authority}\n",
                cloud.scope()
            ));
        }
        CloudChoice::Stack { file } => {
            s.push_str(&format!(
                "azure: key vault {} in an Azure Stack cloud described by {}\n",
                spec.vault_name,
                file.as_ref()
                    .map(|f| f.display().to_string())
                    .unwrap_or_else(|| "AZURE_ENVIRONMENT_FILEPATH".into())
            ));
        }
    }
    let tenant = spec
        .tenant_id
        .clone()
        .unwrap_or_else(|| "AZURE_TENANT_ID".into());
    s.push_str(&match &spec.identity {
        Identity::Workload { client_id } => format!(
            "identity: workload identity, client {} in tenant {tenant} (the projected token of \
             AZURE_FEDERATED_TOKEN_FILE or --token-path, audience {})\n",
            client_id.as_deref().unwrap_or("AZURE_CLIENT_ID"),
            auth::TOKEN_AUDIENCE
        ),
        Identity::VmManaged { client_id: Some(c) } => {
            format!("identity: user-assigned managed identity {c} through IMDS\n")
        }
        Identity::VmManaged { client_id: None } => {
            "identity: the node's system-assigned managed identity through IMDS\n".into()
        }
    });
    let gets: usize = spec.objects.iter().filter(|o| o.history.is_none()).count();
    let lists = spec.objects.len() - gets;
    s.push_str(&format!(
        "requests per render: {gets} GET{}",
        if lists > 0 {
            format!(
                ", {lists} version list{} plus one GET per version kept",
                if lists == 1 { "" } else { "s" }
            )
        } else {
            String::new()
        }
    ));
    s.push('\n');
    let files = files(spec);
    s.push_str(&format!("files ({}):\n", files.len()));
    for o in &spec.objects {
        let what = match (o.kind, o.format) {
            (spec::ObjectType::Key, _) => " as public key PEM",
            (spec::ObjectType::Cert, _) => " as certificate PEM",
            (_, spec::ObjectFormat::Pfx) => " (pfx when certificate-backed)",
            _ => "",
        };
        match o.history {
            None => s.push_str(&format!(
                "  {} {:04o} <- {}{what}\n",
                o.file,
                o.mode,
                describe(o)
            )),
            Some(n) => s.push_str(&format!(
                "  {}/0 .. {}/{n} {:04o} <- {}{what}, newest {} enabled versions\n",
                o.file,
                o.file,
                o.mode,
                describe(o),
                n + 1
            )),
        }
    }
    s
}
