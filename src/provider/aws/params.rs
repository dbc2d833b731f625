//! `provider: aws`: the AWS provider's SecretProviderClass parameters and object descriptors
//! (docs/aws.md), verbatim, into an [`AwsSpec`].
//!
//! Descriptor keys match case-insensitively (the provider decodes them with Go's JSON rules,
//! and its own test fixture writes `Path:` and `ObjectAlias:`); unknown keys are errors here,
//! where the provider ignores them. Validation, duplicate and alias rules are the provider's,
//! plus secretdrop's own file-name checks (no `..`, no collisions). Invariants of an
//! `AwsSpec`: a region is known; every file name is valid and unique; every jmesPath parses;
//! ARNs name the region they are used in.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value;

use crate::config::env::{parse_bool, VaultEnv};
use crate::config::error::ConfigError;
use crate::config::names;
use crate::config::{param, yaml};

use super::descriptors;
use super::spec::join;
pub use super::spec::ANNOTATIONS;
pub use super::spec::{
    AddressType, AwsObject, AwsSpec, FileDefaults, JmesEntry, ObjectRef, Service,
};

const PARAMS: &[&str] = &[
    "region",
    "failoverRegion",
    "pathTranslation",
    "usePodIdentity",
    "preferredAddressType",
    "objects",
];

/// The parameters of a `provider: aws` SecretProviderClass (`text` is the whole manifest, to
/// place YAML errors inside `objects` on its lines).
pub fn from_spc(
    file: &Path,
    text: &str,
    parameters: BTreeMap<String, Value>,
    env: &VaultEnv,
) -> Result<AwsSpec, ConfigError> {
    let mut params = BTreeMap::new();
    for (key, value) in parameters {
        let field = format!("spec.parameters.{key}");
        if key.starts_with("csi.storage.k8s.io/") {
            continue;
        }
        if !PARAMS.contains(&key.as_str()) {
            let allowed: Vec<String> = PARAMS.iter().map(|p| p.to_string()).collect();
            return Err(crate::config::param::unknown_parameter(
                file,
                text,
                &key,
                &allowed,
                " for provider aws",
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
        param::objects_param(file, text, params.get("objects").map(String::as_str))?;
    let p = |k: &str| params.get(k).map(String::as_str);
    compile(
        file,
        "spec.parameters",
        &p,
        &objects,
        FileDefaults::CSI,
        env,
    )
}

/// The `aws:` section of a native config (`provider: aws`): the same names, YAML types allowed
/// (`usePodIdentity: true`), `objects` a list or a string.
pub fn from_native(
    file: &Path,
    section: &Value,
    defaults: FileDefaults,
    env: &VaultEnv,
) -> Result<AwsSpec, ConfigError> {
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
                Value::String(s) => {
                    yaml::from_str(s).map_err(|e| ConfigError::field(file, field, e.to_string()))?
                }
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
    compile(file, "aws", &p, &objects, defaults, env)
}

/// The pod annotations of an annotation pod with `secretdrop.dev/provider: aws`
/// (docs/webhook.md, "AWS"): the SecretProviderClass parameters under kebab-case names, and
/// `objects` holding the same descriptors. `a` holds the annotations without their prefix.
pub fn from_annotations(
    file: &Path,
    a: &BTreeMap<String, String>,
    env: &VaultEnv,
) -> Result<AwsSpec, ConfigError> {
    let at = names::PREFIX;
    let text = a.get("objects").ok_or_else(|| {
        ConfigError::field(
            file,
            join(at, "objects"),
            "missing: a YAML list of objects, as in the AWS provider's SecretProviderClass",
        )
    })?;
    let objects: Value = yaml::from_str(text).map_err(|e| {
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
    compile(file, at, &p, &objects, FileDefaults::CSI, env)
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
    defaults: FileDefaults,
    env: &VaultEnv,
) -> Result<AwsSpec, ConfigError> {
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
    let ctx = descriptors::Ctx {
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
    descriptors::check_duplicates(file, at, &out, list)?;
    let aws = AwsSpec {
        region,
        failover_region,
        use_pod_identity,
        preferred_address_type,
        objects: out,
    };
    Ok(aws)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

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
