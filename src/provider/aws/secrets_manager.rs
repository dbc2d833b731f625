//! Secrets Manager `GetSecretValue`: the request for one object and what its answer holds
//! (`SecretString` as text, `SecretBinary` as the raw bytes, and the `VersionId`).

use base64::Engine;
use serde_json::{json, Value};

use crate::provider::aws::params::ObjectRef;
use crate::secret::SecretBytes;

pub const OPERATION: &str = "GetSecretValue";

pub fn request(r: &ObjectRef) -> Value {
    let mut body = json!({ "SecretId": r.name });
    if let Some(v) = &r.version_id {
        body["VersionId"] = json!(v);
    }
    if let Some(s) = &r.version_stage {
        body["VersionStage"] = json!(s);
    }
    body
}

/// The value and its version from an answer; the reason (never a value) otherwise.
pub fn value_of(answer: &Value) -> Result<(SecretBytes, String), String> {
    let version = answer
        .get("VersionId")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    if let Some(s) = answer.get("SecretString").and_then(|v| v.as_str()) {
        return Ok((SecretBytes::new(s.as_bytes().to_vec()), version));
    }
    if let Some(b) = answer.get("SecretBinary").and_then(|v| v.as_str()) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|_| "SecretBinary is not base64".to_string())?;
        return Ok((SecretBytes::new(bytes), version));
    }
    Err("the answer holds neither SecretString nor SecretBinary".into())
}
