//! `provider: aws`: the AWS provider's SecretProviderClass parameters and object descriptors
//! (docs/aws.md), verbatim, into an [`AwsSpec`].
//!
//! Descriptor keys match case-insensitively (the provider decodes them with Go's JSON rules,
//! and its own test fixture writes `Path:` and `ObjectAlias:`); unknown keys are errors here,
//! where the provider ignores them. Validation, duplicate and alias rules are the provider's,
//! plus secretdrop's own file-name checks (no `..`, no collisions). Invariants of an
//! `AwsSpec`: a region is known; every file name is valid and unique; every jmesPath parses;
//! ARNs name the region they are used in.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_yaml::Value;

use crate::config::env::parse_bool;
use crate::config::objects::validate_name;
use crate::config::{self, ConfigError, SidecarSettings, Spec, VaultEnv};
use crate::provider::aws::jmespath::Expr;

/// The provider's default file mode.
pub const AWS_DEFAULT_MODE: u32 = 0o644;

/// Everything an AWS render needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsSpec {
    pub region: String,
    pub failover_region: Option<String>,
    /// Credentials from the EKS Pod Identity agent instead of IRSA.
    pub use_pod_identity: bool,
    pub preferred_address_type: AddressType,
    pub objects: Vec<AwsObject>,
}

/// `preferredAddressType`: which Pod Identity agent address the provider prefers. In a pod the
/// agent's address comes from `AWS_CONTAINER_CREDENTIALS_FULL_URI`, so this only chooses the
/// default when that variable is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressType {
    Auto,
    Ipv4,
    Ipv6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    SecretsManager,
    Ssm,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::SecretsManager => "secretsmanager",
            Service::Ssm => "ssmparameter",
        }
    }
}

/// Which object to ask one region for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// A name or an ARN, as written.
    pub name: String,
    /// Secrets Manager VersionId (SSM: `name:version`).
    pub version_id: Option<String>,
    /// Secrets Manager VersionStage (SSM: `name:label`).
    pub version_stage: Option<String>,
}

impl ObjectRef {
    /// The name SSM's GetParameters is asked for: `name`, `name:version` or `name:label`.
    pub fn ssm_name(&self) -> String {
        match (&self.version_id, &self.version_stage) {
            (Some(v), _) => format!("{}:{v}", self.name),
            (None, Some(l)) => format!("{}:{l}", self.name),
            (None, None) => self.name.clone(),
        }
    }
}

/// One object: a file with the whole value, plus one file per jmesPath entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsObject {
    pub service: Service,
    pub primary: ObjectRef,
    /// Asked in the failover region; `None` means `primary` there too.
    pub failover: Option<ObjectRef>,
    pub file: String,
    pub mode: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub jmes: Vec<JmesEntry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JmesEntry {
    pub path: String,
    pub expr: Expr,
    pub file: String,
    pub mode: u32,
}

const PARAMS: &[&str] = &[
    "region",
    "failoverRegion",
    "pathTranslation",
    "usePodIdentity",
    "preferredAddressType",
    "objects",
];

/// File defaults of the source: the SPC's 0644, or a native config's `files:`.
#[derive(Debug, Clone, Copy)]
pub struct AwsDefaults {
    pub mode: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

impl AwsDefaults {
    /// The provider's own: 0644, no owner or group.
    pub const PROVIDER: AwsDefaults = AwsDefaults {
        mode: AWS_DEFAULT_MODE,
        owner: None,
        group: None,
    };
}

/// The parameters of a `provider: aws` SecretProviderClass (`text` is the whole manifest, to
/// place YAML errors inside `objects` on its lines).
pub fn from_spc(
    file: &Path,
    text: &str,
    parameters: BTreeMap<String, Value>,
    env: &VaultEnv,
) -> Result<Spec, ConfigError> {
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
                    "unknown parameter for provider aws; allowed are {}",
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
                     strings): quote it",
                ))
            }
        }
    }
    let objects: Value =
        config::spc::objects_param(file, text, params.get("objects").map(String::as_str))?;
    let p = |k: &str| params.get(k).map(String::as_str);
    compile(
        file,
        "spec.parameters",
        &p,
        &objects,
        AwsDefaults::PROVIDER,
        SidecarSettings::default(),
        env,
    )
}

/// The `aws:` section of a native config (`provider: aws`): the same names, YAML types allowed
/// (`usePodIdentity: true`), `objects` a list or a string.
pub fn from_native(
    file: &Path,
    section: &Value,
    defaults: AwsDefaults,
    sidecar: SidecarSettings,
    env: &VaultEnv,
) -> Result<Spec, ConfigError> {
    let Value::Mapping(map) = section else {
        return Err(ConfigError::field(
            file,
            "aws",
            "missing or not a mapping: e.g. {region: eu-west-1, objects: [...]}",
        ));
    };
    let mut scalars: BTreeMap<String, String> = BTreeMap::new();
    let mut objects = None;
    for (k, v) in map {
        let key = k.as_str().unwrap_or_default();
        let field = format!("aws.{key}");
        if !PARAMS.contains(&key) {
            return Err(ConfigError::field(
                file,
                field,
                format!("unknown field; allowed are {}", PARAMS.join(", ")),
            ));
        }
        if key == "objects" {
            objects = Some(match v {
                Value::String(s) => config::yaml::from_str(s)
                    .map_err(|e| ConfigError::field(file, field, e.to_string()))?,
                other => other.clone(),
            });
            continue;
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(ConfigError::field(
                    file,
                    field,
                    "must be a string (or true/false for usePodIdentity)",
                ))
            }
        };
        scalars.insert(key.to_string(), text);
    }
    let objects = objects.ok_or_else(|| {
        ConfigError::field(file, "aws.objects", "missing: the list of objects to write")
    })?;
    let p = |k: &str| scalars.get(k).map(String::as_str);
    compile(file, "aws", &p, &objects, defaults, sidecar, env)
}

/// The pod annotations of an annotation pod with `secretdrop.dev/provider: aws`
/// (docs/webhook.md, "AWS"): the SecretProviderClass parameters under kebab-case names, and
/// `objects` holding the same descriptors. `a` holds the annotations without their prefix.
pub fn from_annotations(
    file: &Path,
    a: &BTreeMap<String, String>,
    sidecar: SidecarSettings,
    env: &VaultEnv,
) -> Result<Spec, ConfigError> {
    let at = config::annotations::PREFIX;
    let text = a.get("objects").ok_or_else(|| {
        ConfigError::field(
            file,
            join(at, "objects"),
            "missing: a YAML list of objects, as in the AWS provider's SecretProviderClass",
        )
    })?;
    let objects: Value = config::yaml::from_str(text).map_err(|e| {
        let mut err = ConfigError::yaml(file, &e);
        err.field = Some(join(at, "objects"));
        if let (Some(l), Some(c)) = (err.line.take(), err.column.take()) {
            err.message = format!("{} (at line {l} column {c} of the annotation)", err.message);
        }
        err
    })?;
    let p = |k: &str| {
        a.get(
            ANNOTATIONS
                .iter()
                .find(|(n, _)| *n == k)
                .map_or(k, |(_, an)| an),
        )
        .map(String::as_str)
    };
    compile(file, at, &p, &objects, AwsDefaults::PROVIDER, sidecar, env)
}

/// SecretProviderClass parameter → pod annotation name (without `secretdrop.dev/`).
pub const ANNOTATIONS: &[(&str, &str)] = &[
    ("region", "region"),
    ("failoverRegion", "failover-region"),
    ("pathTranslation", "path-translation"),
    ("usePodIdentity", "use-pod-identity"),
    ("preferredAddressType", "preferred-address-type"),
    ("objects", "objects"),
];

/// The name of parameter `name` under `at`: `spec.parameters.region`, `aws.region`, or for
/// annotations (`at` is the prefix `secretdrop.dev/`) `secretdrop.dev/failover-region`.
fn join(at: &str, name: &str) -> String {
    match at.strip_suffix('/') {
        Some(_) => {
            let an = ANNOTATIONS
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(name, |(_, a)| a);
            format!("{at}{an}")
        }
        None => format!("{at}.{name}"),
    }
}

fn spec_of(file: &Path, aws: AwsSpec, sidecar: SidecarSettings) -> Spec {
    Spec {
        source: file.to_path_buf(),
        sidecar,
        provider: crate::provider::ProviderSpec::Aws(aws),
    }
}

/// An AWS region name: lowercase letters, digits and dashes (`us-west-2`, `us-gov-east-1`).
pub fn check_region(file: &Path, field: &str, r: &str) -> Result<String, ConfigError> {
    let ok = !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !r.starts_with('-')
        && !r.ends_with('-');
    if ok {
        Ok(r.to_string())
    } else {
        Err(ConfigError::field(
            file,
            field,
            format!("{r:?} is not an AWS region: expected e.g. us-west-2"),
        ))
    }
}

/// The one reading of the parameters, whichever source spells them: `param` looks one up by
/// its SecretProviderClass name, `at` names where they stand in messages.
fn compile<'a>(
    file: &Path,
    at: &str,
    param: &dyn Fn(&str) -> Option<&'a str>,
    objects: &Value,
    defaults: AwsDefaults,
    sidecar: SidecarSettings,
    env: &VaultEnv,
) -> Result<Spec, ConfigError> {
    let field = |name: &str| join(at, name);
    let region = match param("region").filter(|r| !r.is_empty()) {
        Some(r) => check_region(file, &field("region"), r)?,
        None => match &env.aws_region {
            Some(r) => check_region(file, "AWS_REGION", r)?,
            None => {
                return Err(ConfigError::field(
                    file,
                    field("region"),
                    "missing, and neither AWS_REGION nor AWS_DEFAULT_REGION is set: which \
                     region holds the secrets? e.g. us-west-2",
                ))
            }
        },
    };
    let failover_region = match param("failoverRegion").filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => {
            let r = check_region(file, &field("failoverRegion"), r)?;
            if r == region {
                return Err(ConfigError::field(
                    file,
                    field("failoverRegion"),
                    format!("{r:?} is the primary region too: a failover region must differ from region"),
                ));
            }
            Some(r)
        }
    };
    // The provider: empty means "_", "False" (any case) turns translation off, else one character.
    let translate: Option<char> = match param("pathTranslation") {
        None | Some("") => Some('_'),
        Some(t) if t.eq_ignore_ascii_case("false") => None,
        Some(t) if t.len() == 1 => t.chars().next(),
        Some(t) => {
            return Err(ConfigError::field(
                file,
                field("pathTranslation"),
                format!("{t:?}: pathTranslation must be either 'False' or a single character"),
            ))
        }
    };
    let use_pod_identity = match param("usePodIdentity") {
        None | Some("") => false,
        Some(v) => parse_bool(v).ok_or_else(|| {
            ConfigError::field(
                file,
                field("usePodIdentity"),
                format!("{v:?} is not a boolean: allowed are true, false, 1, 0"),
            )
        })?,
    };
    let address_type = param("preferredAddressType");
    let preferred_address_type = match address_type.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("auto") => AddressType::Auto,
        Some("ipv4") => AddressType::Ipv4,
        Some("ipv6") => AddressType::Ipv6,
        Some(_) => {
            return Err(ConfigError::field(
                file,
                field("preferredAddressType"),
                format!(
                    "{:?} is not an address type: allowed are ipv4, ipv6, auto",
                    address_type.unwrap_or_default()
                ),
            ))
        }
    };
    if preferred_address_type != AddressType::Auto && !use_pod_identity {
        return Err(ConfigError::field(
            file,
            field("preferredAddressType"),
            "only applies with usePodIdentity: \"true\" (it picks the Pod Identity agent's address)",
        ));
    }
    let list = match objects {
        Value::Sequence(l) => l,
        Value::Null => &Vec::new(),
        _ => {
            return Err(ConfigError::field(
                file,
                field("objects"),
                "must be a YAML list of objects (- objectName: ...)",
            ))
        }
    };
    if list.is_empty() {
        return Err(ConfigError::field(
            file,
            field("objects"),
            "no objects: list at least one object with objectName and objectType",
        ));
    }
    let ctx = Ctx {
        file,
        region: &region,
        failover_region: failover_region.as_deref(),
        translate,
        defaults,
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let label = format!("{}[{i}]", join(at, "objects"));
        out.push(ctx.object(&label, v)?);
    }
    check_duplicates(file, at, &out, list)?;
    let aws = AwsSpec {
        region,
        failover_region,
        use_pod_identity,
        preferred_address_type,
        objects: out,
    };
    Ok(spec_of(file, aws, sidecar))
}

struct Ctx<'a> {
    file: &'a Path,
    region: &'a str,
    failover_region: Option<&'a str>,
    translate: Option<char>,
    defaults: AwsDefaults,
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

    fn object(&self, label: &str, v: &Value) -> Result<AwsObject, ConfigError> {
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
fn check_duplicates(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spc(params: &str, objects: &str) -> String {
        let objects: String = objects.lines().map(|l| format!("      {l}\n")).collect();
        format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: x\nspec:\n  provider: aws\n  parameters:\n{params}    objects: |\n{objects}"
        )
    }

    fn parse(params: &str, objects: &str) -> Result<AwsSpec, ConfigError> {
        let text = spc(params, objects);
        config::parse(Path::new("spc.yaml"), &text, &VaultEnv::default())
            .map(|s| s.aws().cloned().expect("an aws spec"))
    }

    fn err(params: &str, objects: &str) -> String {
        parse(params, objects).unwrap_err().to_string()
    }

    const R: &str = "    region: us-west-2\n";

    #[test]
    fn names_aliases_translation_and_modes() {
        let a = parse(
            R,
            "- objectName: /app/db/password\n  objectType: ssmparameter\n  filePermission: \"0600\"\n- objectName: MySecret\n  objectType: secretsmanager\n  objectAlias: my/alias\n",
        )
        .unwrap();
        assert_eq!(a.objects[0].file, "_app_db_password");
        assert_eq!(a.objects[0].mode, 0o600);
        assert_eq!(a.objects[0].service, Service::Ssm);
        assert_eq!(a.objects[1].file, "my_alias");
        assert_eq!(a.objects[1].mode, 0o644);
        let off = parse(
            "    region: us-west-2\n    pathTranslation: \"False\"\n",
            "- objectName: /app/db/password\n  objectType: ssmparameter\n",
        )
        .unwrap();
        assert_eq!(off.objects[0].file, "app/db/password");
        let e = err(
            "    region: us-west-2\n    pathTranslation: \"False\"\n",
            "- objectName: /app/../etc/passwd\n  objectType: ssmparameter\n",
        );
        assert!(e.contains("can not contain ../"), "{e}");
        let e = err(
            "    region: us-west-2\n    pathTranslation: \"--\"\n",
            "- objectName: a\n  objectType: ssmparameter\n",
        );
        assert!(e.contains("single character"), "{e}");
    }

    #[test]
    fn keys_match_case_insensitively_but_not_twice_and_not_unknown() {
        let a = parse(
            R,
            "- ObjectName: j\n  OBJECTTYPE: secretsmanager\n  jmesPath:\n    - Path: a.b[0]\n      ObjectAlias: x\n      filepermission: \"0400\"\n",
        )
        .unwrap();
        assert_eq!(a.objects[0].jmes[0].file, "x");
        assert_eq!(a.objects[0].jmes[0].mode, 0o400);
        let e = err(
            R,
            "- objectName: a\n  objectname: b\n  objectType: ssmparameter\n",
        );
        assert!(e.contains("given twice"), "{e}");
        let e = err(
            R,
            "- objectName: a\n  objectType: ssmparameter\n  secretPath: x\n",
        );
        assert!(
            e.contains("unknown field") && e.contains("objectVersionLabel"),
            "{e}"
        );
    }

    #[test]
    fn arns_imply_and_must_agree_with_the_type_and_region() {
        let a = parse(
            R,
            "- objectName: arn:aws:secretsmanager:us-west-2:123456789012:secret:s\n",
        )
        .unwrap();
        assert_eq!(a.objects[0].service, Service::SecretsManager);
        assert_eq!(
            a.objects[0].file,
            "arn:aws:secretsmanager:us-west-2:123456789012:secret:s"
        );
        let e = err(
            R,
            "- objectName: arn:aws:secretsmanager:eu-west-1:1:secret:s\n",
        );
        assert!(e.contains("must match region us-west-2"), "{e}");
        let e = err(
            R,
            "- objectName: arn:aws:ssm:us-west-2:1:parameter/p\n  objectType: secretsmanager\n",
        );
        assert!(e.contains("does not match"), "{e}");
        let e = err(R, "- objectName: arn:aws:s3:us-west-2:1:b\n");
        assert!(e.contains("not supported"), "{e}");
        let e = err(R, "- objectName: plain\n");
        assert!(e.contains("objectType: missing"), "{e}");
        let e = err(R, "- objectName: p\n  objectType: ssm\n");
        assert!(
            e.contains("allowed are secretsmanager, ssmparameter"),
            "{e}"
        );
        let e = err(R, "- objectName: arn:aws:secretsmanager\n");
        assert!(e.contains("not an ARN"), "{e}");
    }

    #[test]
    fn versions_failover_and_permissions() {
        let e = err(R, "- objectName: p\n  objectType: ssmparameter\n  objectVersion: \"1\"\n  objectVersionLabel: l\n");
        assert!(
            e.contains("both objectVersion and objectVersionLabel"),
            "{e}"
        );
        let a = parse(
            R,
            "- objectName: p\n  objectType: ssmparameter\n  objectVersionLabel: l\n",
        )
        .unwrap();
        assert_eq!(a.objects[0].primary.ssm_name(), "p:l");
        let fo = "- objectName: s\n  objectType: secretsmanager\n  objectAlias: a\n  failoverObject:\n    objectName: s2\n";
        let e = err(R, fo);
        assert!(e.contains("failoverRegion"), "{e}");
        let a = parse("    region: us-west-2\n    failoverRegion: us-east-2\n", fo).unwrap();
        assert_eq!(a.objects[0].failover.as_ref().unwrap().name, "s2");
        let e = err(
            "    region: us-west-2\n    failoverRegion: us-east-2\n",
            &fo.replace("  objectAlias: a\n", ""),
        );
        assert!(e.contains("need an objectAlias"), "{e}");
        let e = err(
            "    region: us-west-2\n    failoverRegion: us-east-2\n",
            &format!("{fo}    objectVersion: v\n"),
        );
        assert!(e.contains("must match between primary and failover"), "{e}");
        let e = err("    region: us-west-2\n    failoverRegion: us-west-2\n", fo);
        assert!(e.contains("must differ"), "{e}");
        for bad in ["\"644\"", "\"0800\"", "\"1644\"", "420", "\"00644\""] {
            let r = parse(
                R,
                &format!("- objectName: p\n  objectType: ssmparameter\n  filePermission: {bad}\n"),
            );
            let e = match r {
                Ok(a) => panic!("{bad}: {a:?}"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains("filePermission"), "{bad}: {e}");
        }
    }

    #[test]
    fn duplicates_follow_the_providers_four_cases() {
        let two = |a: &str, b: &str| {
            format!("- objectName: s\n  objectType: secretsmanager\n{a}- objectName: s\n  objectType: secretsmanager\n{b}")
        };
        assert!(err(R, &two("", "")).contains("no object alias, and no version label"));
        assert!(err(
            R,
            &two("  objectVersionLabel: L\n", "  objectVersionLabel: L\n")
        )
        .contains("duplicate version label L"));
        assert!(parse(
            R,
            &two(
                "  objectVersionLabel: AWSCURRENT\n",
                "  objectVersionLabel: AWSPREVIOUS\n  objectAlias: prev\n"
            )
        )
        .is_ok());
        assert!(parse(R, &two("  objectAlias: a\n", "  objectAlias: b\n")).is_ok());
        assert!(err(R, &two("  objectAlias: a\n", "  objectAlias: a\n"))
            .contains("duplicate object alias a"));
        // Two labels without aliases pass the provider's rules but write one file twice.
        let e = err(
            R,
            &two("  objectVersionLabel: A\n", "  objectVersionLabel: B\n"),
        );
        assert!(e.contains("file names must be unique"), "{e}");
        let e = err(R, "- objectName: s\n  objectType: secretsmanager\n  jmesPath:\n    - path: a\n      objectAlias: s\n");
        assert!(e.contains("unique"), "{e}");
        let e = err(R, "- objectName: s\n  objectType: secretsmanager\n  jmesPath:\n    - path: a | b\n      objectAlias: x\n");
        assert!(e.contains("not supported"), "{e}");
    }

    #[test]
    fn region_falls_back_to_the_environment_and_parameters_are_checked() {
        let text = spc("", "- objectName: p\n  objectType: ssmparameter\n");
        let e = config::parse(Path::new("spc.yaml"), &text, &VaultEnv::default()).unwrap_err();
        assert!(e.to_string().contains("AWS_REGION"), "{e}");
        let env = VaultEnv::from_lookup(|k| {
            (k == "AWS_DEFAULT_REGION").then(|| "eu-central-1".to_string())
        });
        let s = config::parse(Path::new("spc.yaml"), &text, &env).unwrap();
        assert_eq!(s.aws().unwrap().region, "eu-central-1");
        let e = err(
            "    region: us-west-2\n    roleName: x\n",
            "- objectName: p\n  objectType: ssmparameter\n",
        );
        assert!(e.contains("unknown parameter for provider aws"), "{e}");
        let e = err(
            "    region: us-west-2\n    usePodIdentity: \"yes\"\n",
            "- objectName: p\n  objectType: ssmparameter\n",
        );
        assert!(e.contains("not a boolean"), "{e}");
        let e = err(
            "    region: us-west-2\n    usePodIdentity: \"true\"\n    preferredAddressType: ipv5\n",
            "- objectName: p\n  objectType: ssmparameter\n",
        );
        assert!(e.contains("ipv4, ipv6, auto"), "{e}");
    }

    #[test]
    fn the_native_form() {
        let text = "apiVersion: secretdrop.dev/v1alpha1\nkind: Config\nprovider: aws\nfiles:\n  mode: \"0440\"\n  group: 2000\naws:\n  region: us-west-2\n  usePodIdentity: true\n  objects:\n    - objectName: p\n      objectType: ssmparameter\n";
        let s = config::parse(Path::new("c.yaml"), text, &VaultEnv::default()).unwrap();
        let a = s.aws().unwrap().clone();
        assert!(a.use_pod_identity);
        assert_eq!((a.objects[0].mode, a.objects[0].group), (0o440, Some(2000)));
        let bad = text.replace(
            "provider: aws\n",
            "provider: aws\nauth:\n  method: token\n  tokenFile: /t\n",
        );
        let e = config::parse(Path::new("c.yaml"), &bad, &VaultEnv::default()).unwrap_err();
        assert!(
            e.to_string().contains("does not apply with provider: aws"),
            "{e}"
        );
    }
}
