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
    asked
        .iter()
        .map(|want| {
            let found = params.iter().find(|p| {
                let selector = p.get("Selector").and_then(|s| s.as_str()).unwrap_or("");
                ["Name", "ARN"].iter().any(|k| {
                    p.get(k)
                        .and_then(|n| n.as_str())
                        .is_some_and(|n| format!("{n}{selector}") == *want)
                })
            });
            let p = found.ok_or_else(|| format!("the answer holds no parameter {want:?}"))?;
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
