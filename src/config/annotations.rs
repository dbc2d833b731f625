//! Pod annotations as a config source (docs/webhook.md): the file kubelet writes for a
//! downward-API volume item with `fieldRef: metadata.annotations`, one `key="value"` line per
//! annotation, values quoted the way Go's `strconv.Quote` does.
//!
//! Only `secretdrop.dev/` annotations are read; others (the pod has many) are ignored. Unknown
//! `secretdrop.dev/` keys are errors, so a typo in an annotation is reported, not silently lost.

use std::collections::BTreeMap;
use std::path::Path;

use super::env::VaultEnv;
use super::pod_settings;
use super::{ConfigError, ProviderSpec, SidecarSettings, Spec};

pub use super::names::PREFIX;

/// The annotations every pod may carry, without the prefix; the providers add their own
/// ([`ProviderSpec::owns_annotation`]) and the pod settings theirs ([`pod_settings::NAMES`]).
pub const KNOWN: &[&str] = &[
    "inject",
    "provider",
    "objects",
    "mount-path",
    "mode",
    "containers",
    "status",
    "vault-agent",
];

/// True when `text` looks like a downward-API annotations file rather than YAML.
pub fn looks_like_annotations(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| {
            l.split_once("=\"").is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "./-_".contains(c))
            })
        })
}

/// Parses the file into `key → value` for every line; a malformed line is an error with its
/// line number.
pub fn parse_file(file: &Path, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |m: &str| ConfigError::new(file, format!("annotations line: {m}")).at(i + 1, 1);
        let (key, quoted) = line
            .split_once('=')
            .ok_or_else(|| bad("expected key=\"value\""))?;
        let value = go_unquote(quoted).ok_or_else(|| bad("the value is not a Go-quoted string"))?;
        if out.insert(key.to_string(), value).is_some() {
            return Err(bad(&format!(
                "{key:?} appears twice; each annotation may be given once"
            )));
        }
    }
    Ok(out)
}

/// Compiles the `secretdrop.dev/` annotations into a Spec.
pub fn parse(file: &Path, text: &str, env: &VaultEnv) -> Result<Spec, ConfigError> {
    let all = parse_file(file, text)?;
    spec_from(file, &ours(file, &all)?, env)
}

/// The `secretdrop.dev/` annotations without the prefix; unknown ones are errors.
pub fn ours(
    file: &Path,
    all: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (k, v) in all {
        let Some(name) = k.strip_prefix(PREFIX) else {
            continue;
        };
        if !KNOWN.contains(&name)
            && !pod_settings::NAMES.contains(&name)
            && !ProviderSpec::owns_annotation(name)
        {
            let mut names: Vec<&str> = KNOWN
                .iter()
                .chain(pod_settings::NAMES)
                .copied()
                .chain(ProviderSpec::annotations())
                .collect();
            names.sort_unstable();
            names.dedup();
            let allowed: Vec<String> = names.iter().map(|n| format!("{PREFIX}{n}")).collect();
            return Err(ConfigError::field(
                file,
                k.as_str(),
                format!("unknown annotation; allowed are {}", allowed.join(", ")),
            ));
        }
        out.insert(name.to_string(), v.clone());
    }
    // A mutating webhook sees the pod before the API server validates its annotations' size,
    // so the API server's own limit is applied here, before anything is parsed.
    let total: usize = out
        .iter()
        .map(|(k, v)| PREFIX.len() + k.len() + v.len())
        .sum();
    if total > MAX_ANNOTATION_BYTES {
        return Err(ConfigError::new(
            file,
            format!(
                "the {PREFIX}* annotations hold {total} bytes; Kubernetes allows {MAX_ANNOTATION_BYTES} \
                 bytes for all annotations of a pod"
            ),
        ));
    }
    Ok(out)
}

/// The API server's limit on all annotations of an object together (256 KiB).
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

/// The Spec the annotations describe (also used by the webhook to validate a pod).
pub fn spec_from(
    file: &Path,
    a: &BTreeMap<String, String>,
    env: &VaultEnv,
) -> Result<Spec, ConfigError> {
    let settings = pod_settings::parse(file, a)?;
    let provider = ProviderSpec::from_annotations(file, a, &settings, env)?;
    Ok(Spec {
        source: file.to_path_buf(),
        provider,
        sidecar: SidecarSettings {
            poll_interval: settings.poll_interval,
            notify: settings.notify,
        },
    })
}

/// Go's `strconv.Unquote` for double-quoted strings.
pub fn go_unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Option<u32> {
            let digits: String = chars.by_ref().take(n).collect();
            // from_str_radix would take a leading '+'; Go's unquote takes hex digits only.
            (digits.len() == n && digits.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(&digits, 16).ok())
                .flatten()
        };
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            'x' => out.push(char::from_u32(hex(&mut chars, 2)?)?),
            'u' => out.push(char::from_u32(hex(&mut chars, 4)?)?),
            'U' => out.push(char::from_u32(hex(&mut chars, 8)?)?),
            d @ '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                if rest.len() != 2 || !rest.chars().all(|c| ('0'..='7').contains(&c)) {
                    return None;
                }
                out.push(char::from_u32(
                    u32::from_str_radix(&format!("{d}{rest}"), 8).ok()?,
                )?);
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Auth;

    const FILE: &str = r#"kubectl.kubernetes.io/restartedAt="2026-11-27T10:00:00Z"
secretdrop.dev/inject="true"
secretdrop.dev/objects="- objectName: \"myPassword\"\n  secretPath: \"secret/data/app\"\n  secretKey: \"password\"\n"
secretdrop.dev/role="mycsirole"
secretdrop.dev/vault-address="http://vault.vault:8200"
"#;

    #[test]
    fn the_downward_api_file_compiles_to_a_spec() {
        assert!(looks_like_annotations(FILE));
        assert!(!looks_like_annotations("apiVersion: v1\nkind: Config\n"));
        let spec = parse(
            Path::new("/etc/podinfo/annotations"),
            FILE,
            &VaultEnv::default(),
        )
        .unwrap();
        assert_eq!(
            spec.vault().unwrap().vault.address,
            "http://vault.vault:8200"
        );
        assert_eq!(spec.vault().unwrap().objects[0].name, "myPassword");
        assert!(
            matches!(&spec.vault().unwrap().auth, Auth::Kubernetes(l) if l.role == "mycsirole" && l.mount == "kubernetes")
        );
    }

    #[test]
    fn per_pod_settings_reach_the_spec_the_sidecar_runs() {
        let text = format!(
            "{FILE}secretdrop.dev/auth-path=\"/auth/jwt/\"\nsecretdrop.dev/vault-namespace=\"team-a/apps\"\n\
             secretdrop.dev/tls-server-name=\"vault.internal\"\nsecretdrop.dev/token-audience=\"vault\"\n\
             secretdrop.dev/poll-interval=\"45s\"\nsecretdrop.dev/notify-url=\"http://127.0.0.1:8080/r\"\n\
             secretdrop.dev/notify-signal=\"SIGHUP\"\nsecretdrop.dev/notify-process=\"nginx\"\n"
        );
        let env = VaultEnv {
            namespace: Some("from-env".into()),
            ..VaultEnv::default()
        };
        let spec = parse(Path::new("a"), &text, &env).unwrap();
        let Auth::Kubernetes(login) = &spec.vault().unwrap().auth else {
            panic!()
        };
        assert_eq!(login.mount, "jwt", "auth/jwt is the jwt mount");
        assert_eq!(login.audience.as_deref(), Some("vault"));
        assert_eq!(
            spec.vault().unwrap().vault.namespace.as_deref(),
            Some("team-a/apps")
        );
        assert_eq!(
            spec.vault().unwrap().vault.tls.server_name.as_deref(),
            Some("vault.internal")
        );
        assert_eq!(
            spec.sidecar.poll_interval,
            Some(std::time::Duration::from_secs(45))
        );
        assert_eq!(spec.sidecar.notify.signal, Some(libc::SIGHUP));
        assert_eq!(spec.sidecar.notify.process.as_deref(), Some("nginx"));
        assert_eq!(
            spec.sidecar.notify.url.as_deref(),
            Some("http://127.0.0.1:8080/r")
        );
        // A mount literally called auth stays itself.
        let plain = format!("{FILE}secretdrop.dev/auth-path=\"auth\"\n");
        let spec = parse(Path::new("a"), &plain, &env).unwrap();
        assert!(matches!(&spec.vault().unwrap().auth, Auth::Kubernetes(l) if l.mount == "auth"));
        assert_eq!(
            spec.vault().unwrap().vault.namespace.as_deref(),
            Some("from-env")
        );
    }

    #[test]
    fn unknown_secretdrop_annotations_are_errors_others_are_ignored() {
        let text = format!("{FILE}secretdrop.dev/rolee=\"x\"\n");
        let e = parse(Path::new("a"), &text, &VaultEnv::default()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("secretdrop.dev/rolee"));
    }

    #[test]
    fn oversized_and_duplicated_annotations_are_refused_before_parsing() {
        let big = format!(
            "{FILE}secretdrop.dev/containers=\"{}\"\n",
            "a,".repeat(150_000)
        );
        let e = parse(Path::new("a"), &big, &VaultEnv::default()).unwrap_err();
        assert!(e.message.contains("Kubernetes allows 262144 bytes"), "{e}");
        let twice = format!("{FILE}secretdrop.dev/role=\"other\"\n");
        let e = parse(Path::new("a"), &twice, &VaultEnv::default()).unwrap_err();
        assert!(e.message.contains("appears twice"), "{e}");
    }

    #[test]
    fn go_quoting_round_trips() {
        assert_eq!(
            go_unquote(r#""a\"b\\c\n\t\u00e9\x41""#).as_deref(),
            Some("a\"b\\c\n\t\u{e9}A")
        );
        assert_eq!(go_unquote(r#""\101""#).as_deref(), Some("A"));
        assert_eq!(go_unquote("no quotes"), None);
        assert_eq!(go_unquote(r#""\q""#), None);
        assert_eq!(go_unquote(r#""\x+1""#), None);
        assert_eq!(go_unquote(r#""\u+041""#), None);
        assert_eq!(go_unquote(r#""\18""#), None);
    }
}
