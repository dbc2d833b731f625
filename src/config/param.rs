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
