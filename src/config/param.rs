//! The `objects` parameter every provider's SecretProviderClass holds: a YAML string inside
//! the manifest, parsed bounded, its errors placed on the manifest's own lines.

use std::path::Path;

use super::error::ConfigError;
use super::yaml;

/// The `objects` parameter (a YAML string), parsed; `text` is the whole manifest, to place
/// errors on its lines. Every provider's SecretProviderClass holds its objects so.
pub fn objects_param<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
    objects: Option<&str>,
) -> Result<T, ConfigError> {
    let objects = objects.ok_or_else(|| {
        ConfigError::field(
            file,
            "spec.parameters.objects",
            "missing: the list of objects to write",
        )
    })?;
    yaml_param(file, text, "objects", objects)
}

/// The YAML string `value` of parameter `name` (the GCP provider's `secrets`, everyone
/// else's `objects`), parsed; errors placed on the manifest's lines as for `objects`.
pub fn yaml_param<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
    name: &str,
    value: &str,
) -> Result<T, ConfigError> {
    yaml::from_str(value).map_err(|e| objects_yaml_error(file, text, name, value, &e))
}

/// Maps a parse error inside the `objects` string back to a line of the manifest when the string
/// is a block scalar whose first line can be found in the file.
fn objects_yaml_error(
    file: &Path,
    whole: &str,
    name: &str,
    objects: &str,
    err: &serde_yaml::Error,
) -> ConfigError {
    let mut e = ConfigError::yaml(file, err);
    e.field = Some(format!("spec.parameters.{name}"));
    let (Some(line), Some(col)) = (e.line, e.column) else {
        return e;
    };
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    // (0-based line in the manifest, extra indentation) of the string's first non-blank line.
    let start = objects
        .lines()
        .enumerate()
        .find(|(_, l)| !l.trim().is_empty())
        .and_then(|(inner, first)| {
            let key_line = whole
                .lines()
                .position(|l| l.trim_start().starts_with(&format!("{name}:")))?;
            let (outer, l) = whole
                .lines()
                .enumerate()
                .skip(key_line + 1)
                .find(|(_, l)| l.trim() == first.trim())?;
            Some((
                outer.checked_sub(inner)?,
                indent_of(l).checked_sub(indent_of(first))?,
            ))
        });
    match start {
        Some((start_line, indent)) => e.at(start_line + line, col + indent),
        None => {
            e.message = format!(
                "{} (at line {line} column {col} of the {name} string)",
                e.message
            );
            e.line = None;
            e.column = None;
            e
        }
    }
}

/// An unknown key of `spec.parameters`: placed at its line in the manifest `text` when it can be
/// found there, with the allowed name it most likely meant, then all of them. `provider` (e.g.
/// " for provider aws") follows "unknown parameter".
pub fn unknown_parameter(
    file: &Path,
    text: &str,
    key: &str,
    allowed: &[String],
    provider: &str,
) -> ConfigError {
    let guess = closest(key, allowed)
        .map(|g| format!("did you mean {g}? "))
        .unwrap_or_default();
    let e = ConfigError::field(
        file,
        format!("spec.parameters.{key}"),
        format!(
            "unknown parameter{provider}; {guess}allowed are {}",
            allowed.join(", ")
        ),
    );
    match parameter_position(text, key) {
        Some((line, column)) => e.at(line, column),
        None => e,
    }
}

/// Line and column (1-based) of `key:` among the entries of the first `parameters:` mapping of
/// the manifest; plain or quoted keys. `None` when the text spells it otherwise (flow style).
fn parameter_position(text: &str, key: &str) -> Option<(usize, usize)> {
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with("parameters:"))?;
    let outer = indent_of(lines[start]);
    let spellings = [
        format!("{key}:"),
        format!("\"{key}\":"),
        format!("'{key}':"),
    ];
    lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .take_while(|(_, l)| indent_of(l) > outer)
        .find(|(_, l)| {
            spellings
                .iter()
                .any(|s| l.trim_start().starts_with(s.as_str()))
        })
        .map(|(i, l)| (i + 1, indent_of(l) + 1))
}

/// The allowed name closest to `key` (case aside, at most a third of its letters off), if any.
fn closest<'a>(key: &str, allowed: &'a [String]) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    allowed
        .iter()
        .map(|a| (edit_distance(&key, &a.to_ascii_lowercase()), a))
        .filter(|(d, a)| *d <= (a.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a.as_str())
}

/// Levenshtein distance over bytes; parameter names are short ASCII.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let replace = prev[j] + usize::from(ca != cb);
            row.push(replace.min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

/// File attributes applied where an object does not set its own, whatever the provider: the
/// CSI driver's 0644 for a SecretProviderClass and annotations, a native config's `files:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDefaults {
    pub mode: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

/// The CSI driver's fixed default file mode (its `permission`); `filePermission` overrides it.
pub const CSI_DEFAULT_MODE: u32 = 0o644;

impl FileDefaults {
    /// What the CSI driver and its providers give a file: 0644, no owner or group.
    pub const CSI: FileDefaults = FileDefaults {
        mode: CSI_DEFAULT_MODE,
        owner: None,
        group: None,
    };
}

/// Parses `filePermission`: a YAML octal string (`0600`, `"0640"`, `0o600`) or a number holding
/// the mode bits (Go's `os.FileMode`, e.g. 420 for 0644, as JSON tools write it).
pub fn parse_mode(v: &serde_yaml::Value) -> Result<u32, String> {
    let allowed = "expected an octal mode from 0000 to 0777, e.g. 0600 or 0440";
    let mode = match v {
        serde_yaml::Value::String(s) => {
            let digits = s.strip_prefix("0o").unwrap_or(s);
            u32::from_str_radix(digits, 8).map_err(|_| format!("{s:?} is not a mode: {allowed}"))?
        }
        serde_yaml::Value::Number(n) => match n.as_u64() {
            Some(n) if n <= 0o777 => n as u32,
            _ => {
                return Err(format!(
                    "{n} is not a mode: {allowed} (a number without a leading 0 is decimal)"
                ))
            }
        },
        other => return Err(format!("{other:?} is not a mode: {allowed}")),
    };
    if mode > 0o777 {
        return Err(format!("{mode:o} is not a mode: {allowed}"));
    }
    Ok(mode)
}

/// The longest poll interval accepted.
pub const MAX_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// A poll interval (`sidecar.pollInterval`, `--poll-interval`, the `poll-interval`
/// annotation): a humantime duration of at least one second.
pub fn parse_poll_interval(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}); e.g. 30s, 5m"))?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("{text:?} is shorter than the minimum of 1s"));
    }
    // Longer polls mean "never" in practice, and unbounded ones overflow clock arithmetic.
    if d > MAX_POLL_INTERVAL {
        return Err(format!("{text:?} is longer than the maximum of 30 days"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPC: &str = "apiVersion: v1\nkind: SecretProviderClass\nspec:\n  provider: vault\n  \
                       parameters:\n    roleName: r\n    # a comment\n    vaultAdress: http://x\n    \
                       \"quoted\": y\n  other: z\nvaultAdress: not this one\n";

    fn allowed() -> Vec<String> {
        ["roleName", "objects", "vaultAddress", "vaultNamespace"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn an_unknown_parameter_is_placed_and_its_closest_name_suggested() {
        let e = unknown_parameter(Path::new("spc.yaml"), SPC, "vaultAdress", &allowed(), "");
        assert_eq!((e.line, e.column), (Some(8), Some(5)), "{e}");
        assert_eq!(
            e.to_string(),
            "spc.yaml:8:5: spec.parameters.vaultAdress: unknown parameter; did you mean \
             vaultAddress? allowed are roleName, objects, vaultAddress, vaultNamespace"
        );
        let e = unknown_parameter(Path::new("spc.yaml"), SPC, "quoted", &allowed(), " for x");
        assert_eq!((e.line, e.column), (Some(9), Some(5)), "{e}");
        assert!(!e.message.contains("did you mean"), "{e}");
        assert!(
            e.message.starts_with("unknown parameter for x; allowed"),
            "{e}"
        );
        // Case and one letter off; nothing close: no guess; not in the text: no place.
        assert_eq!(closest("rolename", &allowed()), Some("roleName"));
        assert_eq!(closest("objekts", &allowed()), Some("objects"));
        assert_eq!(closest("bogusThing", &allowed()), None);
        assert_eq!(closest("x", &allowed()), None);
        let e = unknown_parameter(Path::new("f"), SPC, "absent", &allowed(), "");
        assert_eq!(e.line, None);
        // Outside `parameters:` a key of the same name is not taken for it.
        assert_eq!(parameter_position(SPC, "other"), None);
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_and_changes() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("vaultadress", "vaultaddress"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
