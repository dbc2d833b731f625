//! Pure: an [`AwsSnapshot`] to a [`Payload`]. Each object's value is written whole (text or
//! bytes, as fetched); each jmesPath entry writes the string it selects from the value parsed
//! as JSON. Errors name the object and the path, never a value.
//!
//! The payload is built through a [`PayloadBuilder`]: every file's size is known before its
//! bytes are copied (a value whole, a selected string), so a class whose jmesPath entries
//! select one large string many times is refused before the render grows past
//! [`crate::render::MAX_PAYLOAD_BYTES`], not after.

use crate::provider::aws::params::AwsSpec;
use crate::render::{FileContent, Payload, PayloadBuilder, RenderError};
use crate::secret::SecretBytes;

use super::fetch::AwsSnapshot;
use super::jmespath::select_string;

pub fn render(spec: &AwsSpec, snapshot: &AwsSnapshot) -> Result<Payload, RenderError> {
    render_into(spec, snapshot, PayloadBuilder::default())
}

/// [`render`] into `out`, whose budget bounds the payload.
fn render_into(
    spec: &AwsSpec,
    snapshot: &AwsSnapshot,
    mut out: PayloadBuilder,
) -> Result<Payload, RenderError> {
    for (o, fetched) in spec.objects.iter().zip(&snapshot.values) {
        let content = |data: &[u8], mode: u32| FileContent {
            data: SecretBytes::new(data.to_vec()),
            mode,
            owner: o.owner,
            group: o.group,
        };
        let whole = |message: String| RenderError {
            object: o.file.clone(),
            path: o.primary.name.clone(),
            message,
        };
        let value = fetched.value.expose();
        out.reserve(value.len()).map_err(whole)?;
        out.insert(o.file.clone(), content(value, o.mode))
            .map_err(whole)?;
        if o.jmes.is_empty() {
            continue;
        }
        let err = |path: &str, message: String| RenderError {
            object: o.file.clone(),
            path: format!("{} jmesPath {path:?}", o.primary.name),
            message,
        };
        let doc: serde_json::Value = serde_json::from_slice(value).map_err(|_| {
            err(
                &o.jmes[0].path,
                "the value is not JSON, so jmesPath entries cannot apply".into(),
            )
        })?;
        for j in &o.jmes {
            let text = select_string(&j.expr, &doc).map_err(|m| err(&j.path, m))?;
            // Before the copy: the entries may select this string any number of times.
            out.reserve(text.len()).map_err(|m| err(&j.path, m))?;
            out.insert(j.file.clone(), content(text.as_bytes(), j.mode))
                .map_err(|m| err(&j.path, m))?;
        }
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::aws::fetch::Fetched;
    use crate::provider::aws::jmespath::Expr;
    use crate::provider::aws::spec::{AddressType, AwsObject, JmesEntry, ObjectRef, Service};

    /// One secret whose JSON value holds `big` (`len` bytes), selected by `entries` jmesPath
    /// entries.
    fn one_secret(len: usize, entries: usize) -> (AwsSpec, AwsSnapshot) {
        let jmes = (0..entries)
            .map(|i| JmesEntry {
                path: "big".into(),
                expr: Expr::parse("big").unwrap(),
                file: format!("copy-{i}"),
                mode: 0o600,
            })
            .collect();
        let spec = AwsSpec {
            region: "us-west-2".into(),
            failover_region: None,
            use_pod_identity: false,
            preferred_address_type: AddressType::Auto,
            objects: vec![AwsObject {
                service: Service::SecretsManager,
                primary: ObjectRef {
                    name: "big-secret".into(),
                    version_id: None,
                    version_stage: None,
                },
                failover: None,
                file: "whole".into(),
                mode: 0o600,
                owner: None,
                group: None,
                jmes,
            }],
        };
        let value = serde_json::json!({"big": "s".repeat(len)}).to_string();
        let snapshot = AwsSnapshot {
            values: vec![Fetched {
                value: SecretBytes::new(value.into_bytes()),
                version: "v1".into(),
                region: "us-west-2".into(),
            }],
        };
        (spec, snapshot)
    }

    #[test]
    fn jmes_entries_repeating_one_string_are_refused_before_the_limit_is_passed() {
        // 1 MB selected 100 times: refused at the fourth copy, naming the entry and the limit.
        let (spec, snapshot) = one_secret(1_000_000, 100);
        let e = render(&spec, &snapshot).unwrap_err();
        assert_eq!(e.object, "whole");
        assert_eq!(e.path, "big-secret jmesPath \"big\"");
        assert!(
            e.message.contains("this file (1000000 bytes)"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("past 4194304 bytes (4 MiB)"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("(4 files, 4000010 bytes before"),
            "{}",
            e.message
        );
        assert!(!e.to_string().contains("sss"), "no value in the error");
        // A small budget refuses the whole value itself.
        let e = render_into(&spec, &snapshot, PayloadBuilder::with_limit(1000)).unwrap_err();
        assert_eq!(e.path, "big-secret");
        // Within the limit everything is written.
        let (spec, snapshot) = one_secret(10_000, 100);
        assert_eq!(render(&spec, &snapshot).unwrap().files.len(), 101);
    }
}
