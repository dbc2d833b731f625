//! SSM Parameter Store `GetParameters`: up to ten names per request, `WithDecryption`, and
//! the answer matched back to the names asked (`name`, `name:version`, `name:label`).

use serde_json::{json, Value};

use crate::secret::SecretBytes;

pub const OPERATION: &str = "GetParameters";
/// The API's limit of names per request.
pub const BATCH: usize = 10;

pub fn request(names: &[String]) -> Value {
    json!({ "Names": names, "WithDecryption": true })
}

/// For each name asked, its value and version; or the names SSM called invalid.
pub fn values_of(asked: &[String], answer: &Value) -> Result<Vec<(SecretBytes, String)>, String> {
    let invalid: Vec<&str> = answer
        .get("InvalidParameters")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|n| n.as_str()).collect())
        .unwrap_or_default();
    if !invalid.is_empty() {
        return Err(format!(
            "InvalidParameters: {} (no such parameter, version or label)",
            invalid
                .iter()
                .take(10)
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let params = answer
        .get("Parameters")
        .and_then(|v| v.as_array())
        .ok_or_else(|| "the answer holds no Parameters".to_string())?;
    // Each answer is matched once: by name (or ARN) plus `Selector`, as AWS answers. A server
    // that omits `Selector` (moto) is matched by `Version` for `name:N`, by the highest
    // version for a plain name, and for `name:label` by elimination.
    let mut taken = vec![false; params.len()];
    let mut found: Vec<Option<usize>> = vec![None; asked.len()];
    let field = |p: &Value, k: &str| p.get(k).and_then(|n| n.as_str()).map(str::to_string);
    let selector = |p: &Value| field(p, "Selector").unwrap_or_default();
    let version = |p: &Value| p.get("Version").and_then(|v| v.as_u64()).unwrap_or(0);
    // Answers for `base` without a Selector, not matched yet.
    let bare = |taken: &[bool], base: &str| -> Vec<usize> {
        (0..params.len())
            .filter(|&i| {
                let p = &params[i];
                !taken[i]
                    && selector(p).is_empty()
                    && (field(p, "Name").as_deref() == Some(base)
                        || field(p, "ARN").as_deref() == Some(base))
            })
            .collect()
    };
    for pass in 0..4 {
        for (w, want) in asked.iter().enumerate() {
            if found[w].is_some() {
                continue;
            }
            let (base, sel) = split_selector(want);
            let hit = match (pass, sel) {
                (0, _) => (0..params.len()).find(|&i| {
                    let p = &params[i];
                    !taken[i]
                        && !selector(p).is_empty()
                        && ["Name", "ARN"].iter().any(|k| {
                            field(p, k).is_some_and(|n| format!("{n}{}", selector(p)) == *want)
                        })
                }),
                (1, Some(s)) if s.bytes().all(|b| b.is_ascii_digit()) => bare(&taken, base)
                    .into_iter()
                    .find(|&i| version(&params[i]).to_string() == s),
                (2, None) => bare(&taken, base)
                    .into_iter()
                    .max_by_key(|&i| version(&params[i])),
                (3, Some(_)) => match bare(&taken, base).as_slice() {
                    [only] => Some(*only),
                    _ => None,
                },
                _ => None,
            };
            if let Some(i) = hit {
                taken[i] = true;
                found[w] = Some(i);
            }
        }
    }
    asked
        .iter()
        .zip(found)
        .map(|(want, i)| {
            let p = i
                .map(|i| &params[i])
                .ok_or_else(|| format!("the answer holds no parameter {want:?}"))?;
            let value = p
                .get("Value")
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("parameter {want:?} has no Value"))?;
            let version = match p.get("Version") {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            Ok((SecretBytes::new(value.as_bytes().to_vec()), version))
        })
        .collect()
}

/// `name:selector` → (`name`, `Some(selector)`); SSM names hold no colon, and an ARN
/// (`arn:aws:ssm:REGION:ACCOUNT:parameter/NAME`) has five before its selector.
fn split_selector(want: &str) -> (&str, Option<&str>) {
    let colons_before_selector = if want.starts_with("arn:") { 6 } else { 1 };
    if want.matches(':').count() == colons_before_selector {
        if let Some((base, sel)) = want.rsplit_once(':') {
            if !sel.is_empty() {
                return (base, Some(sel));
            }
        }
    }
    (want, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_matched_by_name_selector_or_arn() {
        let asked = vec![
            "a".to_string(),
            "b:2".to_string(),
            "arn:aws:ssm:r:1:parameter/c".to_string(),
        ];
        let answer = json!({"Parameters": [
            {"Name": "b", "Selector": ":2", "Value": "vb", "Version": 2},
            {"Name": "a", "Value": "va", "Version": 7},
            {"Name": "c", "ARN": "arn:aws:ssm:r:1:parameter/c", "Value": "vc", "Version": 1}
        ], "InvalidParameters": []});
        let got = values_of(&asked, &answer).unwrap();
        assert_eq!(got[0].0.expose(), b"va");
        assert_eq!(got[0].1, "7");
        assert_eq!(got[1].0.expose(), b"vb");
        assert_eq!(got[2].0.expose(), b"vc");
        let e = values_of(
            &asked,
            &json!({"Parameters": [], "InvalidParameters": ["a"]}),
        )
        .unwrap_err();
        assert!(e.contains("\"a\""), "{e}");
        assert!(values_of(&asked, &json!({"Parameters": []}))
            .unwrap_err()
            .contains("no parameter"));
    }
}
