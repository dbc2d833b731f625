//! Pure: an [`AwsSnapshot`] to a [`Payload`]. Each object's value is written whole (text or
//! bytes, as fetched); each jmesPath entry writes the string it selects from the value parsed
//! as JSON. Errors name the object and the path, never a value.

use std::collections::BTreeMap;

use crate::provider::aws::params::AwsSpec;
use crate::render::{FileContent, Payload, RenderError};
use crate::secret::SecretBytes;

use super::fetch::AwsSnapshot;
use super::jmespath::select_string;

pub fn render(spec: &AwsSpec, snapshot: &AwsSnapshot) -> Result<Payload, RenderError> {
    let mut files = BTreeMap::new();
    for (o, fetched) in spec.objects.iter().zip(&snapshot.values) {
        let content = |data: Vec<u8>, mode: u32| FileContent {
            data: SecretBytes::new(data),
            mode,
            owner: o.owner,
            group: o.group,
        };
        files.insert(
            o.file.clone(),
            content(fetched.value.expose().to_vec(), o.mode),
        );
        if o.jmes.is_empty() {
            continue;
        }
        let err = |path: &str, message: String| RenderError {
            object: o.file.clone(),
            path: format!("{} jmesPath {path:?}", o.primary.name),
            message,
        };
        let doc: serde_json::Value =
            serde_json::from_slice(fetched.value.expose()).map_err(|_| {
                err(
                    &o.jmes[0].path,
                    "the value is not JSON, so jmesPath entries cannot apply".into(),
                )
            })?;
        for j in &o.jmes {
            let text = select_string(&j.expr, &doc).map_err(|m| err(&j.path, m))?;
            files.insert(j.file.clone(), content(text.into_bytes(), j.mode));
        }
    }
    Ok(Payload { files })
}
