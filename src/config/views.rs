//! `secret.secretdrop.dev/<volume>` annotations: a volume that shows a converted CSI volume's
//! files under the keys and modes of a Secret volume of a synced Secret (docs/webhook.md,
//! "Synced Secrets"). The webhook writes them; the sidecar serves each as a view of the unit
//! member it shows ([`crate::volume::view`]).
//!
//! Invariants: a view shows exactly one converted volume of the same pod; its paths are clean
//! relative names (as object names are) and its modes permission bits only; an edited
//! annotation can rename and re-mode what the pod already gets, never add a source.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::names::{is_volume_name, validate_name};
use super::ConfigError;
use crate::volume::view::{Part, ViewFile};

pub const VIEW_PREFIX: &str = "secret.secretdrop.dev/";
/// More files than a Secret can hold keys for is refused.
const MAX_FILES: usize = 256;

/// One view: its volume, the converted volume it shows, its files.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewSpec {
    pub volume: String,
    pub from: String,
    pub files: Vec<ViewFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Text {
    from: String,
    files: Vec<FileText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    object: String,
    path: String,
    mode: u32,
    #[serde(default)]
    part: Option<String>,
}

/// The annotation's value, as the webhook writes it.
pub fn annotation(from: &str, files: &[ViewFile]) -> String {
    let files: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            let mut v = serde_json::json!({"object": f.object, "path": f.path, "mode": f.mode});
            match f.part {
                Part::All => {}
                Part::Certificates => v["part"] = "certificates".into(),
                Part::PrivateKey => v["part"] = "private-key".into(),
            }
            v
        })
        .collect();
    serde_json::json!({"from": from, "files": files}).to_string()
}

/// Every view the annotations describe.
pub fn of_annotations(
    path: &Path,
    all: &BTreeMap<String, String>,
) -> Result<Vec<ViewSpec>, ConfigError> {
    let mut out = Vec::new();
    for (key, value) in all {
        let Some(volume) = key.strip_prefix(VIEW_PREFIX) else {
            continue;
        };
        let bad = |m: String| ConfigError::field(path, key.as_str(), m);
        if !is_volume_name(volume) {
            return Err(bad(
                "the part after secret.secretdrop.dev/ must be a volume name".into(),
            ));
        }
        let text: Text = serde_json::from_str(value)
            .map_err(|e| bad(format!("not the webhook's view description: {e}")))?;
        if !is_volume_name(&text.from) {
            return Err(bad("from: not a volume name".into()));
        }
        if text.files.len() > MAX_FILES {
            return Err(bad(format!("more than {MAX_FILES} files")));
        }
        let mut files = Vec::new();
        for f in text.files {
            validate_name(&f.object).map_err(|m| bad(format!("object: {m}")))?;
            validate_name(&f.path).map_err(|m| bad(format!("path: {m}")))?;
            if f.mode > 0o777 {
                return Err(bad(format!(
                    "mode {:o}: permission bits only (at most 0777)",
                    f.mode
                )));
            }
            let part = match f.part.as_deref() {
                None => Part::All,
                Some("certificates") => Part::Certificates,
                Some("private-key") => Part::PrivateKey,
                Some(other) => {
                    return Err(bad(format!(
                        "part {other:?}: allowed are certificates, private-key"
                    )))
                }
            };
            files.push(ViewFile {
                object: f.object,
                path: f.path,
                mode: f.mode,
                part,
            });
        }
        out.push(ViewSpec {
            volume: volume.to_string(),
            from: text.from,
            files,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhooks_annotation_reads_back_and_hostile_ones_are_refused() {
        let files = vec![
            ViewFile {
                object: "secret-1".into(),
                path: "pwd".into(),
                mode: 0o400,
                part: Part::All,
            },
            ViewFile {
                object: "cert".into(),
                path: "tls.key".into(),
                mode: 0o644,
                part: Part::PrivateKey,
            },
        ];
        let all = BTreeMap::from([(format!("{VIEW_PREFIX}kv"), annotation("store", &files))]);
        let got = of_annotations(Path::new("a"), &all).unwrap();
        assert_eq!(
            got,
            vec![ViewSpec {
                volume: "kv".into(),
                from: "store".into(),
                files
            }]
        );
        for bad in [
            r#"{"from": "store", "files": [{"object": "a", "path": "../x", "mode": 420}]}"#,
            r#"{"from": "store", "files": [{"object": "a", "path": "/etc/x", "mode": 420}]}"#,
            r#"{"from": "store", "files": [{"object": "a", "path": "x", "mode": 2048}]}"#,
            r#"{"from": "Store", "files": []}"#,
            r#"{"from": "store", "files": [], "extra": 1}"#,
        ] {
            let all = BTreeMap::from([(format!("{VIEW_PREFIX}kv"), bad.to_string())]);
            assert!(of_annotations(Path::new("a"), &all).is_err(), "{bad}");
        }
    }
}
