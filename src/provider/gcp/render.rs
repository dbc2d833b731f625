//! Pure: a [`GcpSnapshot`] to a [`Payload`]: each entry's bytes exactly as fetched (binary, NUL,
//! CR LF, a trailing newline and invalid UTF-8 kept), at its path with its mode.

use crate::render::{FileContent, Payload, PayloadBuilder, RenderError};

use super::fetch::GcpSnapshot;
use super::spec::GcpSpec;

pub fn render(spec: &GcpSpec, snapshot: &GcpSnapshot) -> Result<Payload, RenderError> {
    let mut out = PayloadBuilder::default();
    for (s, fetched) in spec.secrets.iter().zip(&snapshot.values) {
        let err = |message: String| RenderError {
            object: s.file.clone(),
            path: s.resource.name.clone(),
            message,
        };
        out.reserve(fetched.value.len()).map_err(err)?;
        out.insert(
            s.file.clone(),
            FileContent {
                data: fetched.value.clone(),
                mode: s.mode,
                owner: None,
                group: None,
            },
        )
        .map_err(err)?;
    }
    Ok(out.finish())
}
