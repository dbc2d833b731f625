//! `extractJSONKey` / `extractYAMLKey` (docs/gcp.md): the payload parsed as a JSON object or a
//! YAML mapping, and the **string** value of one top-level key written. Messages are the
//! provider's (`key 'K' not found in JSON`, `unsupported value type for key 'K'`) and never
//! quote the payload. YAML goes through the bounded parser every config uses (an alias bomb in
//! a secret costs no more than one in a config).

use crate::secret::SecretBytes;

use super::spec::Extract;

/// What `extract` selects from `payload`; Err is a message fit for the user.
pub fn apply(extract: &Extract, payload: &[u8]) -> Result<SecretBytes, String> {
    match extract {
        Extract::Whole => Ok(SecretBytes::new(payload.to_vec())),
        Extract::Json(key) => {
            let doc: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(payload)
                .map_err(|e| {
                    format!(
                        "failed to unmarshal JSON: {} at line {} column {}. Invalid JSON format for key extraction",
                        category(e.classify()),
                        e.line(),
                        e.column()
                    )
                })?;
            match doc.get(key) {
                None => Err(format!("key '{key}' not found in JSON")),
                Some(serde_json::Value::String(s)) => Ok(SecretBytes::new(s.as_bytes().to_vec())),
                Some(_) => Err(format!("unsupported value type for key '{key}'")),
            }
        }
        Extract::Yaml(key) => {
            let text = std::str::from_utf8(payload).map_err(|_| {
                "failed to unmarshal YAML: not UTF-8 text. Invalid YAML format for key extraction"
                    .to_string()
            })?;
            let doc: serde_yaml::Mapping = crate::config::yaml::from_str(text).map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                    .unwrap_or_default();
                format!(
                    "failed to unmarshal YAML: not a mapping of unique keys{at}. Invalid YAML format for key extraction"
                )
            })?;
            match doc.get(key) {
                None => Err(format!("key '{key}' not found in YAML")),
                Some(serde_yaml::Value::String(s)) => Ok(SecretBytes::new(s.as_bytes().to_vec())),
                Some(_) => Err(format!("unsupported value type for key '{key}'")),
            }
        }
    }
}

/// serde_json's error text may quote the input; only its kind is shown.
fn category(c: serde_json::error::Category) -> &'static str {
    match c {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "not a JSON object",
        serde_json::error::Category::Eof => "unexpected end",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(e: &Extract, payload: &str) -> Result<String, String> {
        apply(e, payload.as_bytes()).map(|b| String::from_utf8(b.expose().to_vec()).unwrap())
    }

    #[test]
    fn top_level_string_values_only() {
        let j = Extract::Json("user".into());
        assert_eq!(
            get(&j, r#"{"user":"admin", "password":"password@1234"}"#).unwrap(),
            "admin"
        );
        assert_eq!(
            get(&j, r#"{"other":"x"}"#).unwrap_err(),
            "key 'user' not found in JSON"
        );
        for v in ["1", "true", "null", "{}", "[\"a\"]"] {
            let e = get(&j, &format!("{{\"user\": {v}}}")).unwrap_err();
            assert_eq!(e, "unsupported value type for key 'user'", "{v}");
        }
        let e = get(&j, "user: secretvalue").unwrap_err();
        assert!(
            e.contains("Invalid JSON format for key extraction") && !e.contains("secretvalue"),
            "{e}"
        );
        let e = get(&j, r#"["user"]"#).unwrap_err();
        assert!(e.contains("Invalid JSON format"), "{e}");
        let y = Extract::Yaml("user".into());
        assert_eq!(get(&y, "user: admin\npassword: p\n").unwrap(), "admin");
        assert_eq!(get(&y, "user: \"0400\"\n").unwrap(), "0400");
        assert_eq!(
            get(&y, "other: x\n").unwrap_err(),
            "key 'user' not found in YAML"
        );
        assert_eq!(
            get(&y, "user: 1\n").unwrap_err(),
            "unsupported value type for key 'user'"
        );
        assert_eq!(
            get(&y, "user:\n  nested: x\n").unwrap_err(),
            "unsupported value type for key 'user'"
        );
        let e = get(&y, "- secretvalue\n").unwrap_err();
        assert!(
            e.contains("Invalid YAML format") && !e.contains("secretvalue"),
            "{e}"
        );
        let e = get(&y, "user: a\nuser: b\n").unwrap_err();
        assert!(e.contains("Invalid YAML format"), "{e}");
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\nuser: x\n";
        assert!(get(&y, bomb).is_err(), "an alias bomb is refused");
        assert_eq!(get(&Extract::Whole, "\u{0}\r\n").unwrap(), "\u{0}\r\n");
    }
}
