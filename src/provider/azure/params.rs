//! `provider: azure`: the Azure Key Vault provider's SecretProviderClass parameters and
//! `objects` (docs/azure.md), verbatim, into an [`AzureSpec`].
//!
//! `objects` is a YAML string whose top level is `array:`, a list of strings, each itself
//! YAML for one object. String fields are trimmed and `null` is empty, as the provider reads
//! them; unknown parameters and object fields are errors here (the provider ignores them), so
//! a misspelt field is seen. Every error names the field (`spec.parameters.objects.array[1].
//! objectType`) and what is allowed; they are exit code 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::config::env::parse_bool;
use crate::config::error::ConfigError;
use crate::config::{names, param, yaml};

use super::cloud;
pub use super::spec::{
    AzureObject, AzureSpec, CloudChoice, Identity, ObjectEncoding, ObjectFormat, ObjectType,
    AZURE_DEFAULT_MODE,
};

const PARAMS: &[&str] = &[
    "keyvaultName",
    "tenantId",
    "tenantID",
    "clientID",
    "cloudName",
    "cloudEnvFileName",
    "useVMManagedIdentity",
    "userAssignedIdentityID",
    "usePodIdentity",
    "useAzureTokenProxy",
    "objects",
];

const FIELDS: &[&str] = &[
    "objectName",
    "objectType",
    "objectAlias",
    "objectVersion",
    "objectVersionHistory",
    "objectFormat",
    "objectEncoding",
    "filePermission",
];

/// The most versions one object may ask for (`objectVersionHistory`): each is a GET.
pub const MAX_HISTORY: u32 = 100;

/// The parameters of a `provider: azure` SecretProviderClass (`text` is the whole manifest,
/// to place YAML errors inside `objects` on its lines).
pub fn from_spc(
    file: &Path,
    text: &str,
    parameters: BTreeMap<String, Value>,
) -> Result<AzureSpec, ConfigError> {
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in parameters {
        let field = format!("spec.parameters.{key}");
        if key.starts_with("csi.storage.k8s.io/") {
            continue;
        }
        if !PARAMS.contains(&key.as_str()) {
            return Err(ConfigError::field(
                file,
                field,
                format!(
                    "unknown parameter for provider azure; allowed are {}",
                    PARAMS.join(", ")
                ),
            ));
        }
        match value {
            Value::String(s) => {
                params.insert(key, s.trim().to_string());
            }
            _ => {
                return Err(ConfigError::field(
                    file,
                    field,
                    "must be a string (Kubernetes stores SecretProviderClass parameters as \
                     strings): quote it",
                ))
            }
        }
    }
    let p = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let field = |k: &str| format!("spec.parameters.{k}");
    let err = |k: &str, m: String| ConfigError::field(file, field(k), m);

    let vault_name = p("keyvaultName").ok_or_else(|| {
        err(
            "keyvaultName",
            "missing: the name of the Key Vault (3-24 characters of letters, digits and -)".into(),
        )
    })?;
    if !(3..=24).contains(&vault_name.len())
        || !vault_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(err(
            "keyvaultName",
            format!("{vault_name:?} is not a Key Vault name: 3-24 characters of [-A-Za-z0-9]"),
        ));
    }
    // The provider reads tenantID first, then tenantId.
    let tenant_id = match p("tenantID").or(p("tenantId")) {
        None => None,
        Some(t) => Some(check_id(t).map_err(|m| {
            err(
                if p("tenantID").is_some() {
                    "tenantID"
                } else {
                    "tenantId"
                },
                m,
            )
        })?),
    };
    let flag = |k: &str| -> Result<bool, ConfigError> {
        match p(k) {
            None => Ok(false),
            Some(v) => parse_bool(v).ok_or_else(|| {
                err(
                    k,
                    format!(
                        "{v:?} is not a boolean: allowed are true, false, 1, 0, t, f, TRUE, FALSE"
                    ),
                )
            }),
        }
    };
    if flag("usePodIdentity")? {
        return Err(err(
            "usePodIdentity",
            "aad-pod-identity is retired and secretdrop does not speak to its node agent (NMI): \
             use Azure Workload Identity instead (clientID of a managed identity or app with a \
             federated credential for this service account; see docs/azure.md)"
                .into(),
        ));
    }
    if flag("useAzureTokenProxy")? {
        return Err(err(
            "useAzureTokenProxy",
            "the AKS identity-binding token proxy is not supported: use Azure Workload Identity \
             (clientID) or useVMManagedIdentity (see docs/azure.md)"
                .into(),
        ));
    }
    let client_id = p("clientID")
        .map(|c| check_id(c).map_err(|m| err("clientID", m)))
        .transpose()?;
    let user_assigned = p("userAssignedIdentityID")
        .map(|c| check_id(c).map_err(|m| err("userAssignedIdentityID", m)))
        .transpose()?;
    let identity = if flag("useVMManagedIdentity")? {
        if client_id.is_some() {
            return Err(err(
                "clientID",
                "set either clientID (workload identity) or useVMManagedIdentity (with \
                 userAssignedIdentityID), not both: one identity per class"
                    .into(),
            ));
        }
        Identity::VmManaged {
            client_id: user_assigned,
        }
    } else {
        if user_assigned.is_some() {
            return Err(err(
                "userAssignedIdentityID",
                "only applies with useVMManagedIdentity: \"true\"; for workload identity set \
                 clientID"
                    .into(),
            ));
        }
        Identity::Workload { client_id }
    };

    let env_file = p("cloudEnvFileName").map(PathBuf::from);
    let cloud = match p("cloudName") {
        None => CloudChoice::Named {
            cloud: cloud::public(),
            explicit: false,
        },
        Some(n) if n.eq_ignore_ascii_case(cloud::STACK) => CloudChoice::Stack {
            file: env_file.clone(),
        },
        Some(n) => CloudChoice::Named {
            cloud: cloud::named(n).ok_or_else(|| {
                err(
                    "cloudName",
                    format!(
                        "{n:?} is not a cloud: allowed are {}",
                        cloud::allowed_names()
                    ),
                )
            })?,
            explicit: true,
        },
    };
    if env_file.is_some() && !matches!(cloud, CloudChoice::Stack { .. }) {
        return Err(err(
            "cloudEnvFileName",
            format!("only applies with cloudName: {}", cloud::STACK),
        ));
    }

    let objects: Value =
        param::objects_param(file, text, params.get("objects").map(String::as_str))?;
    let objects = compile_objects(file, &objects)?;
    Ok(AzureSpec {
        vault_name: vault_name.to_string(),
        cloud,
        tenant_id,
        identity,
        objects,
    })
}

/// A tenant or client id: a GUID, or for tenants a domain (`contoso.onmicrosoft.com`) or
/// `adfs`; it goes into a URL path, so only letters, digits, `-` and `.`.
fn check_id(id: &str) -> Result<String, String> {
    if id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !id.starts_with('.')
    {
        Ok(id.to_string())
    } else {
        Err(format!(
            "{id:?} is not an id: a GUID (or for a tenant its domain name)"
        ))
    }
}

/// A scalar's text as the provider's YAML decoder gives a string field: trimmed, `null` empty.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.trim().to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn compile_objects(file: &Path, objects: &Value) -> Result<Vec<AzureObject>, ConfigError> {
    let at = "spec.parameters.objects";
    let Value::Mapping(top) = objects else {
        return Err(ConfigError::field(
            file,
            at,
            "must be YAML with a top-level `array:` holding one YAML string per object",
        ));
    };
    let mut list = None;
    for (k, v) in top {
        match k.as_str() {
            Some("array") => list = Some(v),
            _ => {
                return Err(ConfigError::field(
                    file,
                    format!("{at}.{}", text_of(k).unwrap_or_default()),
                    "unknown key: the objects string holds only `array:`",
                ))
            }
        }
    }
    let items = match list {
        Some(Value::Sequence(items)) if !items.is_empty() => items,
        _ => {
            return Err(ConfigError::field(
                file,
                format!("{at}.array"),
                "missing or empty: list at least one object (- |\\n  objectName: ...\\n  objectType: secret)",
            ))
        }
    };
    let mut out: Vec<AzureObject> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let label = format!("{at}.array[{i}]");
        let o = object(file, &label, item)?;
        for earlier in &out {
            let clash = earlier.file == o.file
                || o.file.starts_with(&format!("{}/", earlier.file))
                || earlier.file.starts_with(&format!("{}/", o.file));
            if clash {
                return Err(ConfigError::field(
                    file,
                    label,
                    format!(
                        "file {:?} collides with another object's file {:?}: give one of them an objectAlias",
                        o.file, earlier.file
                    ),
                ));
            }
        }
        out.push(o);
    }
    Ok(out)
}

fn object(file: &Path, label: &str, item: &Value) -> Result<AzureObject, ConfigError> {
    let err = |f: &str, m: String| ConfigError::field(file, format!("{label}.{f}"), m);
    let doc: Value =
        match item {
            Value::String(s) => yaml::from_str(s).map_err(|e| {
                let mut c = ConfigError::yaml(file, &e);
                c.field = Some(label.to_string());
                if let (Some(l), Some(col)) = (c.line.take(), c.column.take()) {
                    c.message = format!(
                        "{} (at line {l} column {col} of the object's string)",
                        c.message
                    );
                }
                c
            })?,
            _ => return Err(ConfigError::field(
                file,
                label,
                "must be a YAML string (- |\\n  objectName: ...), as the Azure provider reads it",
            )),
        };
    let Value::Mapping(map) = doc else {
        return Err(ConfigError::field(
            file,
            label,
            "must hold a mapping: objectName, objectType, ...",
        ));
    };
    let mut fields: BTreeMap<&str, String> = BTreeMap::new();
    let mut history_value = None;
    for (k, v) in &map {
        let key = k.as_str().unwrap_or_default();
        let Some(known) = FIELDS.iter().find(|f| **f == key) else {
            return Err(ConfigError::field(
                file,
                format!("{label}.{}", text_of(k).unwrap_or_default()),
                format!("unknown field; allowed are {}", FIELDS.join(", ")),
            ));
        };
        if *known == "objectVersionHistory" {
            history_value = Some(v.clone());
            continue;
        }
        let text = text_of(v).ok_or_else(|| err(known, "must be a string".into()))?;
        fields.insert(known, text);
    }
    let get = |k: &str| fields.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let name = get("objectName")
        .ok_or_else(|| {
            err(
                "objectName",
                "missing: the Key Vault name of the object".into(),
            )
        })?
        .to_string();
    if name.len() > 127 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(err(
            "objectName",
            format!("{name:?} is not a Key Vault object name: 1-127 characters of [-A-Za-z0-9]"),
        ));
    }
    let kind = match get("objectType") {
        Some("secret") => ObjectType::Secret,
        Some("key") => ObjectType::Key,
        Some("cert") => ObjectType::Cert,
        other => {
            return Err(err(
                "objectType",
                format!(
                    "{:?} is not an object type: allowed are secret, key, cert (lowercase)",
                    other.unwrap_or("")
                ),
            ))
        }
    };
    let version = get("objectVersion").map(str::to_string);
    if let Some(v) = &version {
        if v.len() > 64 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(err(
                "objectVersion",
                format!("{v:?} is not a version id (32 hex digits), nor latest"),
            ));
        }
    }
    // "latest" is the current version, as the provider treats it.
    let version = version.filter(|v| !v.eq_ignore_ascii_case("latest"));
    let format = match get("objectFormat").map(str::to_ascii_lowercase).as_deref() {
        None | Some("pem") => ObjectFormat::Pem,
        Some("pfx") if kind == ObjectType::Secret => ObjectFormat::Pfx,
        Some("pfx") => {
            return Err(err(
                "objectFormat",
                format!(
                    "pfx only applies to objectType: secret (a certificate read as its secret); this object is a {}",
                    kind.name()
                ),
            ))
        }
        Some(other) => {
            return Err(err(
                "objectFormat",
                format!("{other:?} is not a format: allowed are pem, pfx"),
            ))
        }
    };
    let encoding = match get("objectEncoding")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("utf-8") => ObjectEncoding::Utf8,
        Some(e @ ("base64" | "hex")) if kind != ObjectType::Secret => {
            return Err(err(
                "objectEncoding",
                format!(
                    "{e} only applies to objectType: secret; this object is a {}",
                    kind.name()
                ),
            ))
        }
        Some("base64") => ObjectEncoding::Base64,
        Some("hex") => ObjectEncoding::Hex,
        Some(other) => {
            return Err(err(
                "objectEncoding",
                format!("{other:?} is not an encoding: allowed are utf-8, base64, hex"),
            ))
        }
    };
    let file_name = get("objectAlias").unwrap_or(&name).to_string();
    let file_field = if get("objectAlias").is_some() {
        "objectAlias"
    } else {
        "objectName"
    };
    // The provider refuses `..` anywhere in the name, not only as a path element.
    if file_name.contains("..") {
        return Err(err(
            file_field,
            format!("{file_name:?} contains \"..\"; the file name must stay inside the volume"),
        ));
    }
    names::validate_name(&file_name).map_err(|m| err(file_field, m))?;
    let mode = match get("filePermission") {
        None => AZURE_DEFAULT_MODE,
        Some(p) => {
            let digits = p.strip_prefix("0o").unwrap_or(p);
            match u32::from_str_radix(digits, 8) {
                Ok(m) if m <= 0o777 && !digits.is_empty() => m,
                _ => {
                    return Err(err(
                        "filePermission",
                        format!(
                        "{p:?} is not a file mode: an octal string like \"0644\" (at most 0777)"
                    ),
                    ))
                }
            }
        }
    };
    let history = match history_value {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(h) if (0..=1).contains(&h) => None,
            Some(h) if h > 1 && h <= MAX_HISTORY as i64 => Some(h as u32),
            _ => {
                return Err(err(
                    "objectVersionHistory",
                    format!("{n} is not a version count: an integer from 0 to {MAX_HISTORY} (0 and 1: the current version only)"),
                ))
            }
        },
        Some(_) => {
            return Err(err(
                "objectVersionHistory",
                format!("must be an integer from 0 to {MAX_HISTORY}"),
            ))
        }
    };
    Ok(AzureObject {
        name,
        kind,
        version,
        file: file_name,
        format,
        encoding,
        history,
        mode,
    })
}

#[cfg(test)]
mod tests;
