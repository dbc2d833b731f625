//! Azure clouds (docs/azure.md, "Clouds"): the Entra ID authority, the Key Vault resource (the
//! token's audience) and the vault DNS suffix of each named cloud, and Azure Stack / custom
//! clouds read from a JSON environment file.
//!
//! Invariants: every endpoint is an https URL without query or fragment; authorities end with
//! `/` (the token URL is `{authority}{tenant}/oauth2/v2.0/token`); the DNS suffix is a host
//! name. An environment file is bounded in size and every error names the file and field.

use std::path::Path;

/// One cloud's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud {
    pub name: String,
    /// `activeDirectoryEndpoint`, ending with `/`.
    pub authority: String,
    /// `keyVaultEndpoint`: the token's resource, as the cloud spells it (`https://vault.azure.net/`).
    pub resource: String,
    /// `keyVaultDNSSuffix`: vaults are `https://NAME.SUFFIX/`.
    pub dns_suffix: String,
}

impl Cloud {
    /// The resource without its trailing `/` (what IMDS is asked for).
    pub fn resource_id(&self) -> &str {
        self.resource.trim_end_matches('/')
    }

    /// The OAuth scope asked of Entra ID: the resource plus `/.default`.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.resource_id())
    }
}

/// The public cloud's authority, the default of `AZURE_AUTHORITY_HOST`.
pub const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com/";

/// The environment files this cloud name needs (`AzureStackCloud`).
pub const STACK: &str = "AzureStackCloud";

const NAMED: &[(&[&str], &str, &str, &str)] = &[
    (
        &["AzurePublicCloud", "AzureCloud"],
        PUBLIC_AUTHORITY,
        "https://vault.azure.net/",
        "vault.azure.net",
    ),
    (
        &["AzureChinaCloud"],
        "https://login.chinacloudapi.cn/",
        "https://vault.azure.cn/",
        "vault.azure.cn",
    ),
    (
        &["AzureUSGovernmentCloud", "AzureUSGovernment"],
        "https://login.microsoftonline.us/",
        "https://vault.usgovcloudapi.net/",
        "vault.usgovcloudapi.net",
    ),
];

/// The cloud names a class may use, for messages.
pub fn allowed_names() -> String {
    let mut names: Vec<&str> = NAMED.iter().flat_map(|(n, ..)| n.iter().copied()).collect();
    names.push(STACK);
    names.join(", ")
}

/// A named cloud (case-insensitive), `None` for an unknown name or `AzureStackCloud`.
pub fn named(name: &str) -> Option<Cloud> {
    NAMED
        .iter()
        .find(|(names, ..)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .map(|(names, authority, resource, suffix)| Cloud {
            name: names[0].to_string(),
            authority: authority.to_string(),
            resource: resource.to_string(),
            dns_suffix: suffix.to_string(),
        })
}

pub fn public() -> Cloud {
    named("AzurePublicCloud").expect("the public cloud is in the table")
}

/// Environment files larger than this are refused unread (a real one is about 2 KiB).
const MAX_ENV_FILE: u64 = 64 * 1024;

/// An Azure Stack / custom cloud from its environment file (go-autorest's `Environment` JSON:
/// `name`, `activeDirectoryEndpoint`, `keyVaultEndpoint`, `keyVaultDNSSuffix`; other fields
/// are ignored). `what` names where the path came from, for messages.
pub fn from_file(path: &Path, what: &str) -> Result<Cloud, String> {
    use std::io::Read as _;
    let shown = format!("the Azure environment file {} ({what})", path.display());
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut bytes = Vec::new();
    f.take(MAX_ENV_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_ENV_FILE {
        return Err(format!("{shown} is larger than {MAX_ENV_FILE} bytes"));
    }
    let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{shown} is not JSON (line {} column {})",
            e.line(),
            e.column()
        )
    })?;
    let field = |name: &str| -> Result<String, String> {
        match doc.get(name) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            _ => Err(format!("{shown}: field {name} is missing or not a string")),
        }
    };
    let name = field("name")?;
    let authority = https_endpoint(&field("activeDirectoryEndpoint")?)
        .map_err(|e| format!("{shown}: activeDirectoryEndpoint {e}"))?;
    let resource = https_endpoint(&field("keyVaultEndpoint")?)
        .map_err(|e| format!("{shown}: keyVaultEndpoint {e}"))?;
    let dns_suffix = field("keyVaultDNSSuffix")?
        .trim_start_matches('.')
        .to_string();
    if !is_host_name(&dns_suffix) {
        return Err(format!(
            "{shown}: keyVaultDNSSuffix {dns_suffix:?} is not a DNS name (e.g. vault.local.azurestack.external)"
        ));
    }
    Ok(Cloud {
        name,
        authority: with_slash(&authority),
        resource,
        dns_suffix,
    })
}

/// `text` as an https URL with a host and no query or fragment, as given.
pub fn https_endpoint(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|_| format!("{text:?} is not a URL"))?;
    if url.scheme() != "https" || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "{text:?} is not an https URL (tokens are only sent over TLS)"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!("{text:?} must have no query, fragment or user"));
    }
    Ok(text.to_string())
}

/// The authority with one trailing `/`.
pub fn with_slash(authority: &str) -> String {
    format!("{}/", authority.trim_end_matches('/'))
}

/// Lowercase-insensitive DNS name: labels of letters, digits and dashes.
pub fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_case_insensitively_and_aliases_resolve() {
        assert_eq!(named("azurecloud").unwrap(), public());
        assert_eq!(
            named("AZUREUSGOVERNMENT").unwrap().dns_suffix,
            "vault.usgovcloudapi.net"
        );
        assert_eq!(
            named("AzureChinaCloud").unwrap().scope(),
            "https://vault.azure.cn/.default"
        );
        assert!(named("AzureStackCloud").is_none());
        assert!(named("AzureGermanCloud").is_none());
    }

    #[test]
    fn environment_files_are_checked_field_by_field() {
        let dir = std::env::temp_dir().join(format!("azure-cloud-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("env.json");
        std::fs::write(&f, r#"{"name": "AzureStackCloud", "activeDirectoryEndpoint": "https://login.stack.example", "keyVaultEndpoint": "https://vault.stack.example/", "keyVaultDNSSuffix": "vault.stack.example", "resourceManagerEndpoint": "https://management.stack.example/"}"#).unwrap();
        let c = from_file(&f, "cloudEnvFileName").unwrap();
        assert_eq!(c.authority, "https://login.stack.example/");
        assert_eq!(c.scope(), "https://vault.stack.example/.default");
        std::fs::write(&f, r#"{"name": "x", "activeDirectoryEndpoint": "http://login.stack.example/", "keyVaultEndpoint": "https://v/", "keyVaultDNSSuffix": "v"}"#).unwrap();
        let e = from_file(&f, "cloudEnvFileName").unwrap_err();
        assert!(
            e.contains("activeDirectoryEndpoint") && e.contains("https"),
            "{e}"
        );
        std::fs::write(&f, r#"{"name": "x", "activeDirectoryEndpoint": "https://l/", "keyVaultEndpoint": "https://v/", "keyVaultDNSSuffix": "v/../x"}"#).unwrap();
        assert!(from_file(&f, "x")
            .unwrap_err()
            .contains("keyVaultDNSSuffix"));
        std::fs::write(&f, r#"{"name": "x"}"#).unwrap();
        assert!(from_file(&f, "x")
            .unwrap_err()
            .contains("activeDirectoryEndpoint is missing"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
