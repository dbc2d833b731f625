//! `provider: gcp`: the GCP provider's SecretProviderClass parameters (docs/gcp.md), verbatim,
//! into a [`GcpSpec`].
//!
//! Entry keys match exactly, as the provider's YAML decoder does; unknown keys and parameters
//! are errors here, where the provider ignores them. Resource names are matched whole (the
//! provider anchors only their end) and their parts checked before they go into a URL; paths
//! follow the CSI driver's rules (`..` refused when the class is read, exit 2, rather than at
//! the first mount); two entries writing one file are refused (the driver would write one of
//! them).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_yaml::Value;

use crate::config::error::ConfigError;
use crate::config::names::validate_name;
use crate::config::param;

pub use super::spec::{AuthParam, Extract, GcpSecret, GcpSpec, Resource, Store, GCP_DEFAULT_MODE};

const PARAMS: &[&str] = &["secrets", "auth"];
/// Why a native config or pod annotations cannot name `provider: gcp`.
pub const ONLY_SPC: &str = "provider gcp is read from a SecretProviderClass only (docs/gcp.md): \
                            put the class in a ConfigMap and pass it with --config";
const KEYS: &[&str] = &[
    "resourceName",
    "fileName",
    "path",
    "mode",
    "extractJSONKey",
    "extractYAMLKey",
];
/// A location's longest name, as the provider allows.
const MAX_LOCATION: usize = 30;
/// Longest project, secret or version part (secret ids are at most 255 characters).
const MAX_PART: usize = 255;

/// The parameters of a `provider: gcp` SecretProviderClass (`text` is the whole manifest, to
/// place YAML errors inside `secrets` on its lines).
pub fn from_spc(
    file: &Path,
    text: &str,
    parameters: BTreeMap<String, Value>,
) -> Result<GcpSpec, ConfigError> {
    let mut params = BTreeMap::new();
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
                    "unknown parameter for provider gcp; allowed are {} (a key file from \
                     nodePublishSecretRef does not apply: secretdrop uses the pod's own \
                     credentials)",
                    PARAMS.join(", ")
                ),
            ));
        }
        match value {
            Value::String(s) => {
                params.insert(key, s);
            }
            _ => {
                return Err(ConfigError::field(
                    file,
                    field,
                    "must be a string (Kubernetes stores SecretProviderClass parameters as \
                     strings): quote it, or for secrets use a block scalar (secrets: |)",
                ))
            }
        }
    }
    let auth = match params.get("auth").map(String::as_str) {
        None | Some("") | Some("pod-adc") => AuthParam::PodAdc,
        Some("provider-adc") => AuthParam::ProviderAdc,
        Some(other) => {
            return Err(ConfigError::field(
                file,
                "spec.parameters.auth",
                format!(
                    "unknown auth configuration: {other:?}; allowed are pod-adc (the default) \
                     and provider-adc (both mean the pod's own credentials here)"
                ),
            ))
        }
    };
    let Some(secrets_text) = params.get("secrets") else {
        return Err(ConfigError::field(
            file,
            "spec.parameters.secrets",
            "missing required 'secrets' attribute: a YAML list of {resourceName, fileName or path}",
        ));
    };
    let list: Value = param::yaml_param(file, text, "secrets", secrets_text)?;
    let list = match list {
        Value::Sequence(l) if !l.is_empty() => l,
        Value::Sequence(_) | Value::Null => {
            return Err(ConfigError::field(
                file,
                "spec.parameters.secrets",
                "no secrets: list at least one {resourceName, fileName or path}",
            ))
        }
        _ => {
            return Err(ConfigError::field(
                file,
                "spec.parameters.secrets",
                "must be a YAML list (- resourceName: ...)",
            ))
        }
    };
    let mut secrets = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let label = format!("spec.parameters.secrets[{i}]");
        secrets.push(entry_of(file, &label, entry, secrets_text)?);
    }
    check_files(file, &secrets)?;
    Ok(GcpSpec { auth, secrets })
}

/// One entry of `secrets`.
fn entry_of(file: &Path, label: &str, v: &Value, text: &str) -> Result<GcpSecret, ConfigError> {
    let Value::Mapping(map) = v else {
        return Err(ConfigError::field(
            file,
            label,
            "must be a mapping: {resourceName: projects/P/secrets/S/versions/V, path: FILE}",
        ));
    };
    let mut fields: HashMap<&str, &Value> = HashMap::new();
    for (k, v) in map {
        let Some(key) = k.as_str().filter(|k| KEYS.contains(k)) else {
            return Err(ConfigError::field(
                file,
                format!("{label}.{}", k.as_str().unwrap_or("?")),
                format!(
                    "unknown key (keys match exactly); allowed are {}",
                    KEYS.join(", ")
                ),
            ));
        };
        fields.insert(key, v);
    }
    let string = |key: &str| -> Result<Option<String>, ConfigError> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(ConfigError::field(
                file,
                format!("{label}.{key}"),
                "must be a string",
            )),
        }
    };
    let name = string("resourceName")?.ok_or_else(|| {
        ConfigError::field(
            file,
            format!("{label}.resourceName"),
            "missing: the secret version, projects/P/secrets/S/versions/V or \
             projects/P/locations/L/secrets/S/versions/V",
        )
    })?;
    let resource = resource(&name)
        .map_err(|m| ConfigError::field(file, format!("{label}.resourceName"), m))?;
    let (field, path) = match (string("path")?, string("fileName")?) {
        (Some(p), _) => ("path", p),
        (None, Some(f)) => ("fileName", f),
        (None, None) => {
            return Err(ConfigError::field(
                file,
                label,
                "neither path nor fileName: which file does this secret go to?",
            ))
        }
    };
    check_path(&path).map_err(|m| ConfigError::field(file, format!("{label}.{field}"), m))?;
    let mode = match fields.get("mode") {
        None | Some(Value::Null) => GCP_DEFAULT_MODE,
        Some(v) => {
            mode_of(v, text).map_err(|m| ConfigError::field(file, format!("{label}.mode"), m))?
        }
    };
    let extract = match (string("extractJSONKey")?, string("extractYAMLKey")?) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::field(
                file,
                label,
                "both extractJSONKey and extractYAMLKey are set: choose one",
            ))
        }
        (Some(k), None) => Extract::Json(k),
        (None, Some(k)) => Extract::Yaml(k),
        (None, None) => Extract::Whole,
    };
    Ok(GcpSecret {
        resource,
        file: path,
        mode,
        extract,
    })
}

/// A resource name, matched whole: a Secret Manager version (global or regional) or a Parameter
/// Manager version (`locations/global` or a region).
pub fn resource(name: &str) -> Result<Resource, String> {
    let forms = "allowed are projects/P/secrets/S/versions/V, \
                 projects/P/locations/L/secrets/S/versions/V (V: latest, a number or an alias) \
                 and projects/P/locations/L/parameters/X/versions/V (L: global or a region)";
    let parts: Vec<&str> = name.split('/').collect();
    let (store, project, location, secret, version) = match parts.as_slice() {
        ["projects", p, "secrets", s, "versions", v] => (Store::SecretManager, *p, None, *s, *v),
        ["projects", p, "locations", l, "secrets", s, "versions", v] => {
            (Store::SecretManager, *p, Some(*l), *s, *v)
        }
        ["projects", p, "locations", l, "parameters", x, "versions", v] => {
            (Store::ParameterManager, *p, Some(*l), *x, *v)
        }
        _ => return Err(format!("{name:?}: unknown resource type; {forms}")),
    };
    let what_id = match store {
        Store::SecretManager => "secret",
        Store::ParameterManager => "parameter",
    };
    for (what, part) in [
        ("project", project),
        (what_id, secret),
        ("version", version),
    ] {
        let ok = !part.is_empty()
            && part.len() <= MAX_PART
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && part != "."
            && part != "..";
        if !ok {
            return Err(format!(
                "{name:?}: the {what} {part:?} is not a Secret Manager id (letters, digits, \
                 '-', '_' and '.')"
            ));
        }
    }
    if let Some(l) = location {
        let ok = !l.is_empty()
            && l.len() <= MAX_LOCATION
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-');
        if !ok {
            return Err(format!(
                "{name:?}: the location {l:?} is not a Google Cloud location (lowercase letters, \
                 digits and '-', at most {MAX_LOCATION} characters, e.g. us-central1)"
            ));
        }
        if l == "global" && store == Store::SecretManager {
            return Err(format!(
                "{name:?}: a global secret is named without a location: \
                 projects/{project}/secrets/{secret}/versions/{version}"
            ));
        }
    }
    Ok(Resource {
        name: name.to_string(),
        store,
        // A global parameter is named with `locations/global` and read at the global endpoint.
        location: location.filter(|l| *l != "global").map(str::to_string),
    })
}

/// The CSI driver's path rules, with its message for `..`, then secretdrop's own.
fn check_path(path: &str) -> Result<(), String> {
    if path.split('/').any(|e| e == "..") {
        return Err(format!("invalid path: must not contain '..': {path}"));
    }
    validate_name(path)
}

/// `mode`: a YAML integer as the provider's decoder reads one: decimal (`256`), octal with a
/// leading `0` or `0o` (`0400`), hex `0x`; a quoted string is refused, as there.
fn mode_of(v: &Value, text: &str) -> Result<u32, String> {
    let allowed = "a YAML integer, octal with a leading 0 (0400) or decimal (256), at most 0777";
    let n: i64 = match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{n} is not an integer; {allowed}"))?,
        Value::String(s) => {
            if is_quoted_mode(text, s) {
                return Err(format!("{s:?} is a quoted string; {allowed}"));
            }
            let digits = s.strip_prefix('+').unwrap_or(s);
            let octal = digits
                .strip_prefix('0')
                .map(|d| d.strip_prefix('o').unwrap_or(d))
                .filter(|d| !d.is_empty() && d.bytes().all(|b| (b'0'..=b'7').contains(&b)));
            match octal.and_then(|d| i64::from_str_radix(d, 8).ok()) {
                Some(n) => n,
                None => return Err(format!("{s:?} is not an integer; {allowed}")),
            }
        }
        _ => return Err(format!("not an integer; {allowed}")),
    };
    if !(0..=0o777).contains(&n) {
        return Err(format!("{n} (0{n:o}) is out of range; {allowed}"));
    }
    Ok(n as u32)
}

/// Whether `secrets` writes `mode:` with `value` in quotes somewhere: YAML gives a plain `0400`
/// and a quoted `"0400"` as the same string, the provider's decoder does not.
fn is_quoted_mode(text: &str, value: &str) -> bool {
    let mut rest = text;
    while let Some(at) = rest.find("mode") {
        let after = rest[at + 4..].trim_start_matches(['"', '\'']).trim_start();
        if let Some(v) = after.strip_prefix(':') {
            let v = v.trim_start();
            for q in ['"', '\''] {
                if v.starts_with(q)
                    && v[1..].starts_with(value)
                    && v[1 + value.len()..].starts_with(q)
                {
                    return true;
                }
            }
        }
        rest = &rest[at + 4..];
    }
    false
}

/// Every file once, and none inside another.
fn check_files(file: &Path, secrets: &[GcpSecret]) -> Result<(), ConfigError> {
    let mut files: HashMap<&str, usize> = HashMap::new();
    for (i, s) in secrets.iter().enumerate() {
        if let Some(prev) = files.insert(s.file.as_str(), i) {
            return Err(ConfigError::field(
                file,
                format!("spec.parameters.secrets[{i}]"),
                format!(
                    "writes the file {:?}, which secrets[{prev}] writes too; paths must be unique",
                    s.file
                ),
            ));
        }
    }
    for (name, i) in &files {
        let mut prefix = *name;
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if let Some(other) = files.get(parent) {
                return Err(ConfigError::field(
                    file,
                    format!("spec.parameters.secrets[{i}]"),
                    format!("{name:?} needs a directory {parent:?}, but secrets[{other}] writes a file there"),
                ));
            }
            prefix = parent;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, VaultEnv};

    fn spc(params: &str, secrets: &str) -> String {
        let secrets: String = secrets.lines().map(|l| format!("      {l}\n")).collect();
        format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: x\nspec:\n  provider: gcp\n  parameters:\n{params}    secrets: |\n{secrets}"
        )
    }

    fn parse(params: &str, secrets: &str) -> Result<GcpSpec, ConfigError> {
        let text = spc(params, secrets);
        config::parse(Path::new("spc.yaml"), &text, &VaultEnv::default()).map(|s| {
            match s.provider {
                crate::provider::ProviderSpec::Gcp(g) => g,
                other => panic!("{other:?}"),
            }
        })
    }

    fn err(params: &str, secrets: &str) -> String {
        parse(params, secrets).unwrap_err().to_string()
    }

    const G: &str = "projects/p1/secrets/s/versions/latest";

    #[test]
    fn modes_are_yaml_integers_octal_or_decimal() {
        for (written, mode) in [
            ("0400", 0o400),
            ("256", 0o400),
            ("0o600", 0o600),
            ("0", 0),
            ("0777", 0o777),
            ("420", 0o644),
        ] {
            let g = parse(
                "",
                &format!("- resourceName: {G}\n  path: a\n  mode: {written}\n"),
            )
            .unwrap();
            assert_eq!(g.secrets[0].mode, mode, "{written}");
        }
        let g = parse("", &format!("- resourceName: {G}\n  fileName: a\n")).unwrap();
        assert_eq!(g.secrets[0].mode, 0o644);
        for bad in [
            "\"0400\"",
            "'0400'",
            "\"-rw-------\"",
            "0999",
            "512",
            "-1",
            "0.5",
            "[1]",
        ] {
            let e = err(
                "",
                &format!("- resourceName: {G}\n  path: a\n  mode: {bad}\n"),
            );
            assert!(e.contains("secrets[0].mode"), "{bad}: {e}");
        }
    }

    #[test]
    fn resource_names_are_matched_whole_and_checked() {
        let g = parse(
            "",
            "- resourceName: projects/p1/locations/us-central1/secrets/s/versions/3\n  path: r\n",
        )
        .unwrap();
        assert_eq!(
            g.secrets[0].resource.access_url(),
            "https://secretmanager.us-central1.rep.googleapis.com/v1/projects/p1/locations/us-central1/secrets/s/versions/3:access"
        );
        for (bad, says) in [
            ("x/projects/p/secrets/s/versions/1", "unknown resource type"),
            ("projects/p/secrets/s", "unknown resource type"),
            (
                "projects/p/locations/global/parameters/x",
                "unknown resource type",
            ),
            (
                "projects/p/locations/evil.com/secrets/s/versions/1",
                "location",
            ),
            (
                "projects/p/locations/a-very-long-location-name-over-30/secrets/s/versions/1",
                "location",
            ),
            (
                "projects/p/locations/global/secrets/s/versions/1",
                "without a location",
            ),
            (
                "projects/p/secrets/s?x=1/versions/1",
                "not a Secret Manager id",
            ),
            (
                "projects/p/secrets/s/versions/1%2F",
                "not a Secret Manager id",
            ),
            (
                "projects/p/secrets/../versions/1",
                "not a Secret Manager id",
            ),
        ] {
            let e = err("", &format!("- resourceName: {bad}\n  path: a\n"));
            assert!(e.contains(says) && e.contains("resourceName"), "{bad}: {e}");
        }
    }

    #[test]
    fn parameter_versions_are_read_at_parameter_manager() {
        let g = parse(
            "",
            "- resourceName: projects/p1/locations/global/parameters/cfg/versions/v1\n  path: g\n- resourceName: projects/p1/locations/europe-west1/parameters/cfg/versions/v1\n  path: r\n",
        )
        .unwrap();
        assert_eq!(
            g.secrets[0].resource.access_url(),
            "https://parametermanager.googleapis.com/v1/projects/p1/locations/global/parameters/cfg/versions/v1:render"
        );
        assert_eq!(
            g.secrets[1].resource.host(),
            "parametermanager.europe-west1.rep.googleapis.com"
        );
    }

    #[test]
    fn paths_extract_keys_auth_and_parameters() {
        let e = err(
            "",
            &format!("- resourceName: {G}\n  path: my/invalid/../path/x\n"),
        );
        assert!(
            e.contains("invalid path: must not contain '..': my/invalid/../path/x"),
            "{e}"
        );
        for bad in ["/abs", "..data", "a//b"] {
            let e = err("", &format!("- resourceName: {G}\n  path: \"{bad}\"\n"));
            assert!(e.contains("secrets[0].path"), "{bad}: {e}");
        }
        let g = parse(
            "",
            &format!("- resourceName: {G}\n  path: my/nested/x\n  fileName: ignored\n"),
        )
        .unwrap();
        assert_eq!(g.secrets[0].file, "my/nested/x");
        let e = err(
            "",
            &format!("- resourceName: {G}\n  path: a\n- resourceName: {G}\n  fileName: a\n"),
        );
        assert!(e.contains("paths must be unique"), "{e}");
        let e = err(
            "",
            &format!("- resourceName: {G}\n  path: a\n- resourceName: {G}\n  fileName: a/b\n"),
        );
        assert!(e.contains("needs a directory"), "{e}");
        let e = err(
            "",
            &format!("- resourceName: {G}\n  path: a\n  extractJSONKey: k\n  extractYAMLKey: k\n"),
        );
        assert!(e.contains("choose one"), "{e}");
        let e = err(
            "",
            &format!("- resourceName: {G}\n  path: a\n  ExtractJSONKey: k\n"),
        );
        assert!(
            e.contains("unknown key") && e.contains("extractJSONKey"),
            "{e}"
        );
        let e = err(
            "    auth: node-publish\n",
            &format!("- resourceName: {G}\n  path: a\n"),
        );
        assert!(
            e.contains("unknown auth configuration: \"node-publish\""),
            "{e}"
        );
        let g = parse(
            "    auth: provider-adc\n",
            &format!("- resourceName: {G}\n  path: a\n  extractYAMLKey: k\n"),
        )
        .unwrap();
        assert_eq!(g.auth, AuthParam::ProviderAdc);
        assert_eq!(g.secrets[0].extract, Extract::Yaml("k".into()));
        let e = err(
            "    region: x\n",
            &format!("- resourceName: {G}\n  path: a\n"),
        );
        assert!(e.contains("unknown parameter for provider gcp"), "{e}");
        let e = err("", "");
        assert!(e.contains("no secrets"), "{e}");
        let text = "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: x}\nspec:\n  provider: gcp\n  parameters:\n    auth: pod-adc\n";
        let e = config::parse(Path::new("spc.yaml"), text, &VaultEnv::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("missing required 'secrets' attribute"),
            "{e}"
        );
        let e = err("", &format!("- resourceName: {G}\n"));
        assert!(e.contains("neither path nor fileName"), "{e}");
    }
}
