//! The GCP provider (docs/gcp.md): Google Secret Manager, global and regional, with the
//! credentials Google's libraries find in a pod (Workload Identity Federation through an
//! `external_account` file, or the GKE metadata server).
//!
//! One file per concern: [`params`] reads the SecretProviderClass into a [`spec::GcpSpec`],
//! [`credentials`] holds and refreshes the access token that [`exchange`] obtains, [`api`]
//! reads one version ([`crc32c`] checks it), [`extract`] applies the extract keys, [`fetch`]
//! reads a whole spec all-or-nothing, [`render`] makes the payload and [`session`] is the
//! seam's state machine.

pub mod account;
pub mod api;
pub mod crc32c;
pub mod credentials;
pub mod exchange;
pub mod extract;
pub mod fetch;
pub mod params;
pub mod pod;
pub mod render;
pub mod session;
pub mod spec;

use crate::provider::FileSpec;
use spec::{Extract, GcpSpec};

/// Every file, in the order of `secrets`.
pub fn files(spec: &GcpSpec) -> Vec<FileSpec> {
    spec.secrets
        .iter()
        .map(|s| FileSpec {
            name: s.file.clone(),
            mode: s.mode,
            owner: None,
            group: None,
        })
        .collect()
}

/// Every GCP volume of a pod uses the pod's one identity: they share one token.
pub fn shares_session(_a: &GcpSpec, _b: &GcpSpec) -> bool {
    true
}

/// One spec reading every member's secrets; file names prefixed with the member's index.
pub fn merge(specs: Vec<GcpSpec>) -> GcpSpec {
    let mut merged = GcpSpec {
        secrets: Vec::new(),
        ..specs[0].clone()
    };
    for (member, spec) in specs.into_iter().enumerate() {
        for mut s in spec.secrets {
            s.file = crate::provider::member_prefix(member, &s.file);
            merged.secrets.push(s);
        }
    }
    merged
}

/// `secretdrop check` for a GCP spec: how the pod authenticates, and each file with the
/// version it comes from (no values).
pub fn plan(source: &std::path::Path, spec: &GcpSpec, env: &credentials::GcpEnv) -> String {
    let mut s = format!("config: {} (valid)\n", source.display());
    s.push_str(&format!(
        "gcp: Secret Manager, auth {} (the pod's own Application Default Credentials)\n",
        spec.auth.name()
    ));
    match credentials::source(env) {
        Ok(src) => s.push_str(&format!("{}\n", src.plan())),
        Err(e) => s.push_str(&format!("credentials: NOT USABLE: {}\n", e.message)),
    }
    let mut distinct: Vec<&spec::Resource> = spec.secrets.iter().map(|s| &s.resource).collect();
    distinct.sort_unstable_by_key(|r| &r.name);
    distinct.dedup();
    let count = |store: spec::Store| {
        let n = distinct.iter().filter(|r| r.store == store).count();
        (n > 0).then(|| format!("{n} {}", store.method()))
    };
    let requests: Vec<String> = [spec::Store::SecretManager, spec::Store::ParameterManager]
        .into_iter()
        .filter_map(count)
        .collect();
    s.push_str(&format!(
        "requests per render: {} (one per distinct version)\n",
        requests.join(", ")
    ));
    s.push_str(&format!("files ({}):\n", spec.secrets.len()));
    for e in &spec.secrets {
        s.push_str(&format!(
            "  {} {:04o} <- {} at {}",
            e.file,
            e.mode,
            e.resource.name,
            e.resource.host()
        ));
        match &e.extract {
            Extract::Whole => {}
            Extract::Json(k) => s.push_str(&format!(" (extractJSONKey {k:?})")),
            Extract::Yaml(k) => s.push_str(&format!(" (extractYAMLKey {k:?})")),
        }
        s.push('\n');
    }
    s
}
