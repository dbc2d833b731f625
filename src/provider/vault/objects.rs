//! Vault's `objects` schema, shared by the SecretProviderClass, the native config and the pod
//! annotations, compiled into
//! [`ObjectSpec`]s plus the deduplicated list of [`Read`]s.
//!
//! Field names and meanings are the vault-csi-provider's (`objectName`, `secretPath`,
//! `secretKey`, `method`, `secretArgs`, `encoding`, `filePermission`); the native config adds
//! `owner`, `group`, `format`, `keys` and `template`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::config::error::ConfigError;
use crate::config::names::validate_name;
use crate::config::param::{parse_mode, FileDefaults};

use super::spec::{Encoding, Format, ObjectSpec, Output, Read};

/// One entry of `objects`, as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectEntry {
    pub object_name: Option<String>,
    pub secret_path: Option<String>,
    pub secret_key: Option<String>,
    pub method: Option<String>,
    pub secret_args: Option<serde_yaml::Value>,
    pub encoding: Option<String>,
    pub file_permission: Option<serde_yaml::Value>,
    // Native-config extensions.
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub format: Option<String>,
    pub keys: Option<Vec<String>>,
    pub template: Option<String>,
}

/// Which source the objects came from: SecretProviderClass objects may not use extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    SecretProviderClass,
    Native,
    /// `secretdrop.dev/objects`: the native fields except `owner` and `group` (the injected
    /// container runs as uid 65532 without CAP_CHOWN, so it cannot give a file to anyone else).
    Annotations,
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH"];

/// Compiles object entries; `field` is how the list is named in messages (e.g. `parameters.objects`).
pub fn compile(
    file: &Path,
    field: &str,
    entries: &[ObjectEntry],
    defaults: FileDefaults,
    dialect: Dialect,
) -> Result<(Vec<Read>, Vec<ObjectSpec>), ConfigError> {
    if entries.is_empty() {
        return Err(ConfigError::field(
            file,
            field,
            "no objects: list at least one object with objectName and secretPath",
        ));
    }
    let mut reads: Vec<Read> = Vec::new();
    let mut read_index: HashMap<Read, usize> = HashMap::new();
    let mut objects = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let label = match &entry.object_name {
            Some(name) => format!("{field}[{i}] (objectName {name:?})"),
            None => format!("{field}[{i}]"),
        };
        let err = |sub: &str, msg: String| ConfigError::field(file, format!("{label}.{sub}"), msg);
        let object = compile_entry(entry, defaults, dialect, &err)?;
        let read = read_of(entry, &err)?;
        let next = reads.len();
        let idx = *read_index.entry(read.clone()).or_insert(next);
        if idx == next {
            reads.push(read);
        }
        objects.push(ObjectSpec {
            read: idx,
            ..object
        });
    }
    check_collisions(file, field, &objects)?;
    Ok((reads, objects))
}

type ErrFn<'a> = dyn Fn(&str, String) -> ConfigError + 'a;

fn compile_entry(
    entry: &ObjectEntry,
    defaults: FileDefaults,
    dialect: Dialect,
    err: &ErrFn<'_>,
) -> Result<ObjectSpec, ConfigError> {
    let name = entry.object_name.as_deref().ok_or_else(|| {
        err(
            "objectName",
            "missing: every object needs a file name".into(),
        )
    })?;
    validate_name(name).map_err(|m| err("objectName", m))?;

    if dialect == Dialect::SecretProviderClass {
        let extensions = [
            ("owner", entry.owner.is_some()),
            ("group", entry.group.is_some()),
            ("format", entry.format.is_some()),
            ("keys", entry.keys.is_some()),
            ("template", entry.template.is_some()),
        ];
        if let Some((f, _)) = extensions.iter().find(|(_, set)| *set) {
            return Err(err(
                f,
                "not a SecretProviderClass field (allowed: objectName, secretPath, secretKey, \
                 method, secretArgs, encoding, filePermission); use a secretdrop Config \
                 (apiVersion secretdrop.dev/v1alpha1, kind Config) for owner, group, format, \
                 keys and template"
                    .into(),
            ));
        }
    }

    if dialect == Dialect::Annotations {
        if let Some(f) = [("owner", entry.owner), ("group", entry.group)]
            .iter()
            .find_map(|(f, v)| v.map(|_| *f))
        {
            return Err(err(
                f,
                "not available to injected pods: the injected container runs as uid 65532 \
                 with all capabilities dropped, so it cannot chown files. Set the pod's \
                 securityContext.fsGroup (kubelet gives the volume that group) or \
                 filePermission instead"
                    .into(),
            ));
        }
    }

    let output = output_of(entry, err)?;
    let mode = match &entry.file_permission {
        None => defaults.mode,
        Some(v) => parse_mode(v).map_err(|m| err("filePermission", m))?,
    };
    Ok(ObjectSpec {
        name: name.to_string(),
        read: 0,
        output,
        mode,
        owner: entry.owner.or(defaults.owner),
        group: entry.group.or(defaults.group),
    })
}

fn output_of(entry: &ObjectEntry, err: &ErrFn<'_>) -> Result<Output, ConfigError> {
    let chosen: Vec<&str> = [
        ("secretKey", entry.secret_key.is_some()),
        ("format", entry.format.is_some()),
        ("template", entry.template.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(n, _)| *n)
    .collect();
    if chosen.len() > 1 {
        return Err(err(
            chosen[1],
            format!(
                "cannot be combined with {}: choose one of secretKey, format, template",
                chosen[0]
            ),
        ));
    }
    if entry.encoding.is_some() && entry.secret_key.is_none() {
        return Err(err(
            "encoding",
            "only applies together with secretKey (it decodes that one value)".into(),
        ));
    }
    if entry.keys.is_some() && entry.format.is_none() {
        return Err(err("keys", "only applies together with format".into()));
    }
    if let Some(key) = &entry.secret_key {
        if key.is_empty() {
            return Err(err(
                "secretKey",
                "must not be empty; omit it to write the whole response".into(),
            ));
        }
        let encoding = match entry
            .encoding
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("") | Some("utf-8") | Some("utf8") => Encoding::Utf8,
            Some("base64") => Encoding::Base64,
            Some("hex") => Encoding::Hex,
            Some(other) => {
                return Err(err(
                    "encoding",
                    format!("unknown encoding {other:?}: allowed are utf-8, base64, hex"),
                ))
            }
        };
        return Ok(Output::Key {
            key: key.clone(),
            encoding,
        });
    }
    if let Some(f) = &entry.format {
        let format = Format::parse(f).ok_or_else(|| {
            err(
                "format",
                format!("unknown format {f:?}: allowed are {}", Format::NAMES),
            )
        })?;
        if let Some(keys) = &entry.keys {
            if keys.is_empty() {
                return Err(err(
                    "keys",
                    "must list at least one key, or be omitted for all keys".into(),
                ));
            }
            if let Some(dup) = first_duplicate(keys) {
                return Err(err("keys", format!("key {dup:?} is listed twice")));
            }
        }
        return Ok(Output::Format {
            format,
            keys: entry.keys.clone(),
        });
    }
    if let Some(t) = &entry.template {
        super::render::check_template(t).map_err(|m| err("template", m))?;
        return Ok(Output::Template(t.clone()));
    }
    Ok(Output::WholeResponse)
}

fn first_duplicate(items: &[String]) -> Option<&str> {
    let mut seen = BTreeSet::new();
    items
        .iter()
        .find(|k| !seen.insert(k.as_str()))
        .map(String::as_str)
}

fn read_of(entry: &ObjectEntry, err: &ErrFn<'_>) -> Result<Read, ConfigError> {
    let raw = entry
        .secret_path
        .as_deref()
        .ok_or_else(|| err("secretPath", "missing: e.g. secret/data/app".into()))?;
    let path = normalize_secret_path(raw).map_err(|m| err("secretPath", m))?;
    let method = entry
        .method
        .as_deref()
        .unwrap_or("GET")
        .to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        return Err(err(
            "method",
            format!(
                "unsupported method {method:?}: allowed are {}",
                METHODS.join(", ")
            ),
        ));
    }
    let body = match &entry.secret_args {
        None => None,
        Some(v @ serde_yaml::Value::Mapping(_)) => Some(
            serde_json::to_value(v)
                .and_then(|j| serde_json::to_string(&j))
                .map_err(|e| err("secretArgs", format!("cannot be sent as JSON: {e}")))?,
        ),
        Some(_) => {
            return Err(err(
                "secretArgs",
                "must be a mapping of request parameters, e.g. {common_name: app.example.com}"
                    .into(),
            ))
        }
    };
    Ok(Read {
        path,
        method,
        body,
        template: false,
    })
}

/// The CSI provider's `ensureV1Prefix`: `a/b`, `/a/b` and `v1/a/b` all mean `/v1/a/b`.
pub fn normalize_secret_path(raw: &str) -> Result<String, String> {
    let p = raw.trim();
    let p = p.strip_prefix('/').unwrap_or(p);
    let p = p.strip_prefix("v1/").unwrap_or(p);
    let (route, _query) = p.split_once('?').unwrap_or((p, ""));
    if route.trim_matches('/').is_empty() {
        return Err(format!(
            "{raw:?} is not a secret path: expected e.g. secret/data/app"
        ));
    }
    if p.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    {
        return Err(format!(
            "{raw:?} contains whitespace, control characters or '#': not a Vault API path"
        ));
    }
    // URL parsers treat `%2e%2e` as `..` and `\` as `/`: judge the path the way the server will.
    if route.contains('\\') {
        return Err(format!(
            "{raw:?} contains a backslash: not a Vault API path"
        ));
    }
    let decoded = percent_decode(route)
        .ok_or_else(|| format!("{raw:?} has a malformed or non-UTF-8 percent escape"))?;
    if decoded.chars().any(|c| c.is_control()) {
        return Err(format!(
            "{raw:?} encodes control characters: not a Vault API path"
        ));
    }
    if decoded
        .split(['/', '\\'])
        .any(|seg| seg == ".." || seg == ".")
    {
        return Err(format!(
            "{raw:?} contains a '..' or '.' segment (also when percent-encoded): it would leave \
             the secret's mount"
        ));
    }
    Ok(p.to_string())
}

/// `%XX` escapes decoded; `None` for a malformed escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Two objects may not write the same file, nor may one be a directory prefix of another.
fn check_collisions(file: &Path, field: &str, objects: &[ObjectSpec]) -> Result<(), ConfigError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, o) in objects.iter().enumerate() {
        if let Some(first) = seen.insert(o.name.as_str(), i) {
            return Err(ConfigError::field(
                file,
                format!("{field}[{i}].objectName"),
                format!(
                    "{:?} is used twice (also by {field}[{first}]); object names must be unique",
                    o.name
                ),
            ));
        }
    }
    for (i, o) in objects.iter().enumerate() {
        let mut prefix = o.name.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if let Some(&j) = seen.get(parent) {
                return Err(ConfigError::field(
                    file,
                    format!("{field}[{i}].objectName"),
                    format!(
                        "{:?} needs a directory {parent:?}, but {field}[{j}] writes a file there",
                        o.name
                    ),
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

    fn yaml(s: &str) -> serde_yaml::Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn modes_follow_yaml_octal_and_go_numbers() {
        assert_eq!(parse_mode(&yaml("0600")), Ok(0o600));
        assert_eq!(parse_mode(&yaml("'0440'")), Ok(0o440));
        assert_eq!(parse_mode(&yaml("0o640")), Ok(0o640));
        assert_eq!(parse_mode(&yaml("420")), Ok(0o644));
        assert!(parse_mode(&yaml("644")).unwrap_err().contains("decimal"));
        assert!(parse_mode(&yaml("0999")).is_err());
        assert!(parse_mode(&yaml("01777")).is_err());
    }

    #[test]
    fn names_that_escape_or_shadow_the_volume_are_rejected() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "..data",
            "..x/y",
            "a//b",
            "./a",
            "a/",
            "pass\nword",
            "a\rb",
            "evil\u{202E}txt.sh",
            "x\u{2066}y",
            "nul\0",
            "tab\tname",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in ["password", "tls/ca.crt", "a..b", "x/..y", ".hidden"] {
            assert_eq!(validate_name(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn secret_paths_get_the_csi_v1_normalisation() {
        assert_eq!(
            normalize_secret_path("secret/data/app").unwrap(),
            "secret/data/app"
        );
        assert_eq!(
            normalize_secret_path("/v1/secret/data/app?version=2").unwrap(),
            "secret/data/app?version=2"
        );
        assert!(normalize_secret_path("").is_err());
        assert!(normalize_secret_path("secret/../sys").is_err());
        for sneaky in [
            "secret/%2e%2e/%2e%2e/sys/health",
            "secret/%2E%2e/sys",
            "secret/.%2e/sys",
            "secret/%2e/data",
            "secret\\..\\sys",
            "secret/%zz",
            "secret/%0a",
        ] {
            assert!(normalize_secret_path(sneaky).is_err(), "{sneaky}");
        }
        assert!(normalize_secret_path("secret/data/a%20b").is_ok());
    }

    fn entry(name: &str, path: &str) -> ObjectEntry {
        ObjectEntry {
            object_name: Some(name.into()),
            secret_path: Some(path.into()),
            secret_key: Some("k".into()),
            ..Default::default()
        }
    }

    const DEFAULTS: FileDefaults = FileDefaults {
        mode: 0o644,
        owner: None,
        group: None,
    };

    #[test]
    fn identical_reads_are_planned_once() {
        let entries = vec![
            entry("a", "secret/data/app"),
            entry("b", "/v1/secret/data/app"),
            entry("c", "secret/data/other"),
        ];
        let (reads, objects) = compile(
            Path::new("f"),
            "objects",
            &entries,
            DEFAULTS,
            Dialect::Native,
        )
        .unwrap();
        assert_eq!(reads.len(), 2);
        assert_eq!(
            objects.iter().map(|o| o.read).collect::<Vec<_>>(),
            vec![0, 0, 1]
        );
    }

    #[test]
    fn duplicate_and_prefix_names_collide() {
        let e = compile(
            Path::new("f"),
            "objects",
            &[entry("a", "p"), entry("a", "q")],
            DEFAULTS,
            Dialect::Native,
        )
        .unwrap_err();
        assert!(e.to_string().contains("used twice"), "{e}");
        let e = compile(
            Path::new("f"),
            "objects",
            &[entry("a", "p"), entry("a/b", "q")],
            DEFAULTS,
            Dialect::Native,
        )
        .unwrap_err();
        assert!(e.to_string().contains("writes a file there"), "{e}");
    }

    #[test]
    fn extensions_are_refused_in_a_secret_provider_class() {
        let mut e = entry("a", "p");
        e.owner = Some(1000);
        let err = compile(
            Path::new("spc.yaml"),
            "parameters.objects",
            &[e],
            DEFAULTS,
            Dialect::SecretProviderClass,
        )
        .unwrap_err();
        assert_eq!(
            err.field.as_deref(),
            Some("parameters.objects[0] (objectName \"a\").owner")
        );
    }
}
