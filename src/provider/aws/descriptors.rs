//! The AWS provider's object descriptors (docs/aws.md): each `objects` entry of a
//! SecretProviderClass read as the provider reads it (keys matched case-insensitively, like
//! Go's `encoding/json`), checked (ARNs against the region, versions and labels, jmesPath
//! entries, file permissions), and the provider's duplicate and alias rules applied across
//! them, plus secretdrop's own: every file name valid and unique.

use std::collections::HashMap;
use std::path::Path;

use serde_yaml::Value;

use crate::config::error::ConfigError;
use crate::config::names::validate_name;

use super::jmespath::Expr;
use super::spec::{join, AwsObject, FileDefaults, JmesEntry, ObjectRef, Service};

pub(super) struct Ctx<'a> {
    pub(super) file: &'a Path,
    pub(super) region: &'a str,
    pub(super) failover_region: Option<&'a str>,
    pub(super) translate: Option<char>,
    pub(super) defaults: FileDefaults,
}

const OBJECT_KEYS: &[&str] = &[
    "objectName",
    "objectType",
    "objectAlias",
    "objectVersion",
    "objectVersionLabel",
    "filePermission",
    "jmesPath",
    "failoverObject",
];
const JMES_KEYS: &[&str] = &["path", "objectAlias", "filePermission"];
const FAILOVER_KEYS: &[&str] = &["objectName", "objectVersion", "objectVersionLabel"];

/// A mapping's entries under their canonical names, matched case-insensitively like Go's
/// `encoding/json`; a key given twice (in any case) or an unknown key is an error.
fn fields<'v>(
    file: &Path,
    label: &str,
    v: &'v Value,
    allowed: &[&'static str],
) -> Result<HashMap<&'static str, &'v Value>, ConfigError> {
    let Value::Mapping(m) = v else {
        return Err(ConfigError::field(
            file,
            label,
            format!("must be a mapping with {}", allowed.join(", ")),
        ));
    };
    let mut out = HashMap::new();
    for (k, val) in m {
        let key = k.as_str().unwrap_or_default();
        let Some(name) = allowed.iter().find(|a| a.eq_ignore_ascii_case(key)) else {
            return Err(ConfigError::field(
                file,
                format!("{label}.{key}"),
                format!(
                    "unknown field; allowed are {} (in any case)",
                    allowed.join(", ")
                ),
            ));
        };
        if out.insert(*name, val).is_some() {
            return Err(ConfigError::field(
                file,
                format!("{label}.{key}"),
                format!("{name} is given twice (keys match case-insensitively)"),
            ));
        }
    }
    Ok(out)
}

/// A string field; absent and empty are both `None`, as in the provider.
fn string(
    file: &Path,
    label: &str,
    f: &HashMap<&'static str, &Value>,
    name: &str,
) -> Result<Option<String>, ConfigError> {
    match f.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ConfigError::field(
            file,
            format!("{label}.{name}"),
            "must be a string: quote it",
        )),
    }
}

/// `filePermission`: exactly four octal digits, as a string (`"0600"`).
fn parse_permission(
    file: &Path,
    field: &str,
    v: Option<String>,
    default: u32,
) -> Result<u32, ConfigError> {
    let Some(s) = v else { return Ok(default) };
    let ok = s.len() == 4 && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) && s.starts_with('0');
    if !ok {
        return Err(ConfigError::field(
            file,
            field,
            format!("{s:?} is not a file permission: expected 4 octal digits from \"0000\" to \"0777\", e.g. \"0600\""),
        ));
    }
    u32::from_str_radix(&s, 8).map_err(|_| ConfigError::field(file, field, "not octal"))
}

/// What an ARN says: its service and region.
struct Arn<'a> {
    service: &'a str,
    region: &'a str,
}

/// `arn:partition:service:region:account:resource` (the resource may hold more colons).
fn parse_arn(s: &str) -> Option<Arn<'_>> {
    let mut parts = s.splitn(6, ':');
    let (arn, _partition, service, region, _account, _resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (arn == "arn").then_some(Arn { service, region })
}

fn service_of(name: &str) -> Option<Service> {
    match name {
        "secretsmanager" => Some(Service::SecretsManager),
        "ssmparameter" | "ssm" => Some(Service::Ssm),
        _ => None,
    }
}

impl Ctx<'_> {
    /// The provider's validateObjectName: ARN format and region, objectType known and agreeing.
    fn service(
        &self,
        label: &str,
        field: &str,
        name: &str,
        object_type: Option<&str>,
        region: &str,
    ) -> Result<Service, ConfigError> {
        let err = |f: &str, m: String| ConfigError::field(self.file, format!("{label}.{f}"), m);
        let arn = if name.starts_with("arn:") {
            let a = parse_arn(name).ok_or_else(|| {
                err(
                    field,
                    format!(
                        "{name:?} is not an ARN: expected arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE"
                    ),
                )
            })?;
            if a.region != region {
                return Err(err(
                    field,
                    format!(
                        "the ARN names region {:?}; it must match region {region}",
                        a.region
                    ),
                ));
            }
            Some(a)
        } else {
            None
        };
        match (object_type, &arn) {
            (None, None) => Err(err(
                "objectType",
                format!("missing: objectName {name:?} is not an ARN, so objectType must say secretsmanager or ssmparameter"),
            )),
            (None, Some(a)) => service_of(a.service).ok_or_else(|| {
                err(field, format!("the ARN's service {:?} is not supported: allowed are secretsmanager, ssm", a.service))
            }),
            (Some(t), _) => {
                let s = service_of(t).filter(|_| t != "ssm").ok_or_else(|| {
                    err("objectType", format!("{t:?} is not an object type: allowed are secretsmanager, ssmparameter"))
                })?;
                if let Some(a) = &arn {
                    if service_of(a.service) != Some(s) {
                        return Err(err(
                            "objectType",
                            format!("{t:?} does not match the ARN's service {:?}", a.service),
                        ));
                    }
                }
                Ok(s)
            }
        }
    }

    /// GetFileName: the alias or the name, `/` translated (or a leading `/` stripped), then the
    /// provider's `../` check and secretdrop's own name rules.
    fn file_name(&self, label: &str, field: &str, name: &str) -> Result<String, ConfigError> {
        let out = match self.translate {
            Some(c) => name.replace('/', &c.to_string()),
            None => name.trim_start_matches('/').to_string(),
        };
        let bad_path =
            out.contains("/../") || out.starts_with("../") || out.ends_with("/..") || out == "..";
        if bad_path {
            return Err(ConfigError::field(
                self.file,
                format!("{label}.{field}"),
                format!("{name:?}: the path can not contain ../"),
            ));
        }
        validate_name(&out).map_err(|m| {
            ConfigError::field(
                self.file,
                format!("{label}.{field}"),
                format!("the file name {out:?} is refused: {m}"),
            )
        })?;
        Ok(out)
    }

    pub(super) fn object(&self, label: &str, v: &Value) -> Result<AwsObject, ConfigError> {
        let file = self.file;
        let f = fields(file, label, v, OBJECT_KEYS)?;
        let s = |n: &str| string(file, label, &f, n);
        let name = s("objectName")?.ok_or_else(|| {
            ConfigError::field(
                file,
                format!("{label}.objectName"),
                "missing: the secret's name or ARN",
            )
        })?;
        let label = &format!("{label} (objectName {name:?})");
        let object_type = s("objectType")?;
        let service = self.service(
            label,
            "objectName",
            &name,
            object_type.as_deref(),
            self.region,
        )?;
        let primary = ObjectRef {
            name: name.clone(),
            version_id: s("objectVersion")?,
            version_stage: s("objectVersionLabel")?,
        };
        if service == Service::Ssm
            && primary.version_id.is_some()
            && primary.version_stage.is_some()
        {
            return Err(ConfigError::field(
                file,
                format!("{label}.objectVersionLabel"),
                "SSM parameters can not specify both objectVersion and objectVersionLabel",
            ));
        }
        let alias = s("objectAlias")?;
        let file_name = self.file_name(
            label,
            if alias.is_some() {
                "objectAlias"
            } else {
                "objectName"
            },
            alias.as_deref().unwrap_or(&name),
        )?;
        let mode = parse_permission(
            file,
            &format!("{label}.filePermission"),
            s("filePermission")?,
            self.defaults.mode,
        )?;
        let mut jmes = Vec::new();
        match f.get("jmesPath") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(entries)) => {
                for (j, e) in entries.iter().enumerate() {
                    let jl = format!("{label}.jmesPath[{j}]");
                    let jf = fields(file, &jl, e, JMES_KEYS)?;
                    let path = string(file, &jl, &jf, "path")?.ok_or_else(|| {
                        ConfigError::field(
                            file,
                            format!("{jl}.path"),
                            "missing: path must be specified for a jmesPath entry",
                        )
                    })?;
                    let alias = string(file, &jl, &jf, "objectAlias")?.ok_or_else(|| {
                        ConfigError::field(
                            file,
                            format!("{jl}.objectAlias"),
                            "missing: objectAlias must be specified for a jmesPath entry",
                        )
                    })?;
                    let expr = Expr::parse(&path)
                        .map_err(|m| ConfigError::field(file, format!("{jl}.path"), m))?;
                    let jmode = parse_permission(
                        file,
                        &format!("{jl}.filePermission"),
                        string(file, &jl, &jf, "filePermission")?,
                        mode,
                    )?;
                    jmes.push(JmesEntry {
                        file: self.file_name(&jl, "objectAlias", &alias)?,
                        path,
                        expr,
                        mode: jmode,
                    });
                }
            }
            Some(_) => {
                return Err(ConfigError::field(
                    file,
                    format!("{label}.jmesPath"),
                    "must be a list of {path, objectAlias}",
                ))
            }
        }
        let failover = match f.get("failoverObject") {
            None | Some(Value::Null) => None,
            Some(fo) => {
                let fl = format!("{label}.failoverObject");
                let ff = fields(file, &fl, fo, FAILOVER_KEYS)?;
                let fs = |n: &str| string(file, &fl, &ff, n);
                match fs("objectName")? {
                    None => None,
                    Some(fname) => {
                        if alias.is_none() {
                            return Err(ConfigError::field(
                                file,
                                format!("{label}.objectAlias"),
                                "missing: objects with a failoverObject need an objectAlias (the file name)",
                            ));
                        }
                        let Some(fregion) = self.failover_region else {
                            return Err(ConfigError::field(
                                file,
                                fl,
                                "allowed only when failoverRegion is set",
                            ));
                        };
                        let fservice = self.service(
                            &fl,
                            "objectName",
                            &fname,
                            object_type.as_deref(),
                            fregion,
                        )?;
                        if fservice != service && object_type.is_none() {
                            return Err(ConfigError::field(
                                file,
                                format!("{fl}.objectName"),
                                "names another service than objectName",
                            ));
                        }
                        let r = ObjectRef {
                            name: fname,
                            version_id: fs("objectVersion")?,
                            version_stage: fs("objectVersionLabel")?,
                        };
                        if service == Service::Ssm
                            && r.version_id.is_some()
                            && r.version_stage.is_some()
                        {
                            return Err(ConfigError::field(
                                file,
                                format!("{fl}.objectVersionLabel"),
                                "SSM parameters can not specify both objectVersion and objectVersionLabel",
                            ));
                        }
                        if r.version_id != primary.version_id {
                            return Err(ConfigError::field(
                                file,
                                format!("{fl}.objectVersion"),
                                "object versions must match between primary and failover regions",
                            ));
                        }
                        Some(r)
                    }
                }
            }
        };
        Ok(AwsObject {
            service,
            primary,
            failover,
            file: file_name,
            mode,
            owner: self.defaults.owner,
            group: self.defaults.group,
            jmes,
        })
    }
}

/// The provider's duplicate rules (a repeated objectName needs an alias or a version label
/// that tells it apart; aliases, jmesPath ones included, are unique), then secretdrop's: every
/// file name once, and no file where another needs a directory.
pub(super) fn check_duplicates(
    file: &Path,
    at: &str,
    objects: &[AwsObject],
    raw: &[Value],
) -> Result<(), ConfigError> {
    let alias_of = |i: usize| -> Option<String> {
        let Value::Mapping(m) = &raw[i] else {
            return None;
        };
        m.iter()
            .find(|(k, _)| {
                k.as_str()
                    .is_some_and(|k| k.eq_ignore_ascii_case("objectAlias"))
            })
            .and_then(|(_, v)| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut seen_names: HashMap<&str, (Option<String>, Option<&str>)> = HashMap::new();
    let mut seen_aliases: HashMap<String, usize> = HashMap::new();
    for (i, o) in objects.iter().enumerate() {
        let field = format!(
            "{}[{i}] (objectName {:?})",
            join(at, "objects"),
            o.primary.name
        );
        let alias = alias_of(i);
        let label = o.primary.version_stage.as_deref();
        if let Some((fa, fl)) = seen_names.get(o.primary.name.as_str()) {
            let problem = match (&alias, fa, label, fl) {
                (Some(a), Some(b), None, None) if a == b => {
                    Some(format!("duplicate object alias {a}, and no version label"))
                }
                (None, None, Some(a), Some(b)) if a == *b => {
                    Some(format!("no object alias, and duplicate version label {a}"))
                }
                (Some(a), Some(b), Some(l), Some(m)) if a == b && l == *m => Some(format!(
                    "duplicate object alias {a}, and duplicate version label {l}"
                )),
                (None, None, None, None) => Some("no object alias, and no version label".into()),
                _ => None,
            };
            if let Some(p) = problem {
                return Err(ConfigError::field(
                    file,
                    field,
                    format!("duplicate object name {:?}, {p}: give each an objectAlias or objectVersionLabel that tells them apart", o.primary.name),
                ));
            }
        }
        seen_names.insert(&o.primary.name, (alias.clone(), label));
        if let Some(a) = alias {
            if let Some(j) = seen_aliases.insert(a.clone(), i) {
                return Err(ConfigError::field(
                    file,
                    format!("{field}.objectAlias"),
                    format!("duplicate object alias {a:?} (also in objects[{j}])"),
                ));
            }
        }
        for (k, j) in o.jmes.iter().enumerate() {
            let a = raw_jmes_alias(&raw[i], k).unwrap_or_else(|| j.file.clone());
            if let Some(prev) = seen_aliases.insert(a.clone(), i) {
                return Err(ConfigError::field(
                    file,
                    format!("{field}.jmesPath[{k}].objectAlias"),
                    format!("duplicate object alias {a:?} (also in objects[{prev}]) in jmesPath entry {:?}", j.path),
                ));
            }
        }
    }
    // Files: every final name once, and none inside another.
    let mut files: HashMap<&str, String> = HashMap::new();
    for (i, o) in objects.iter().enumerate() {
        let mut all = vec![(o.file.as_str(), format!("{}[{i}]", join(at, "objects")))];
        all.extend(o.jmes.iter().enumerate().map(|(k, j)| {
            (
                j.file.as_str(),
                format!("{}[{i}].jmesPath[{k}]", join(at, "objects")),
            )
        }));
        for (name, where_) in all {
            if let Some(prev) = files.insert(name, where_.clone()) {
                return Err(ConfigError::field(
                    file,
                    where_,
                    format!("writes the file {name:?}, which {prev} writes too; file names must be unique"),
                ));
            }
        }
    }
    for (name, where_) in &files {
        let mut prefix = *name;
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if let Some(other) = files.get(parent) {
                return Err(ConfigError::field(
                    file,
                    where_.clone(),
                    format!(
                        "{name:?} needs a directory {parent:?}, but {other} writes a file there"
                    ),
                ));
            }
            prefix = parent;
        }
    }
    Ok(())
}

fn raw_jmes_alias(raw: &Value, k: usize) -> Option<String> {
    let Value::Mapping(m) = raw else { return None };
    let (_, list) = m.iter().find(|(key, _)| {
        key.as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("jmesPath"))
    })?;
    let Value::Mapping(e) = list.as_sequence()?.get(k)? else {
        return None;
    };
    e.iter()
        .find(|(key, _)| {
            key.as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("objectAlias"))
        })
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string)
}
