//! `secretdrop init` and `exec --config`: every unit fetched once and rendered, or nothing
//! changed and an error (docs/cli.md). Init commits each unit's render to its volumes and
//! records its session in `--state-dir`; exec keeps the render in memory.
//!
//! Invariants: a unit's files are committed only from a complete fetch (a failure leaves the
//! volume as it was); transient failures are retried until the deadline, never past it.

use std::time::Instant;

use crate::error::Error;
use crate::fingerprint::{self, Rendered};
use crate::provider::{Render, Session, Settings};
use crate::render::Payload;
use crate::volume::Commit;

use super::{adopt, prepare, runtime, save_state, Options};

/// Renders every unit of the config once; `started + timeout` bounds the whole run.
pub fn run(opts: &Options, started: Instant, timeout: std::time::Duration) -> Result<(), Error> {
    let (_, mut units) = prepare(opts, false)?;
    let deadline = started + timeout;
    runtime()?.block_on(async {
        for unit in &mut units {
            adopt(unit, deadline).await;
            unit.session.fetch_all(deadline).await?;
            let (what, version, files) = match unit.session.render()? {
                Render::Payload(payload) => {
                    let outcome = unit.volume.commit(&payload)?;
                    let (what, version) = match outcome {
                        Commit::Written { version } => ("rendered", version),
                        Commit::Unchanged { version } => ("unchanged", version),
                    };
                    unit.session.committed(Some(Rendered {
                        version: version.clone(),
                        files: fingerprint::payload(&payload),
                    }));
                    (what, version, payload.files.len())
                }
                Render::Current => {
                    unit.session.committed(None);
                    let version = unit.volume.current_version().unwrap_or_default();
                    ("unchanged", version, unit.spec.provider.files().len())
                }
                Render::NotYet => {
                    return Err(Error::Runtime(
                        "internal: a complete fetch left nothing to render".into(),
                    ))
                }
            };
            save_state(unit);
            tracing::info!(
                dir = %unit.volume.describe(),
                provider = unit.session.provider(),
                version = %version,
                files,
                fetched = %unit.session.describe(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "{what}"
            );
        }
        Ok(())
    })
}

/// `exec --config`: the render of one volume's spec, fetched once, without files.
pub fn fetch_payload(
    spec: &crate::config::Spec,
    settings: &Settings,
    deadline: Instant,
) -> Result<Payload, Error> {
    let mut session = Session::open(&spec.provider, settings)?;
    runtime()?.block_on(session.fetch_all(deadline))?;
    match session.render()? {
        Render::Payload(p) => Ok(p),
        _ => Err(Error::Runtime(
            "internal: a complete fetch left nothing to render".into(),
        )),
    }
}
