//! The mutating admission webhook (docs/webhook.md): [`mutate`] is the pure injection, [`patch`]
//! turns its result into a JSON Patch, [`review`] answers an AdmissionReview, [`csi`] converts
//! Secrets Store CSI volumes and [`synced`] serves the Secrets their classes sync; what a cloud provider's volumes need comes from [`crate::provider::pod`].

pub mod csi;
pub mod defaults;
pub mod env_refs;
pub mod lookups;
pub mod mutate;
pub mod patch;
pub mod review;
pub mod server;
pub mod settings;
pub mod shape;
pub mod synced;
pub mod vault_agent;

/// The entry called `name` of a JSON list (volumes, containers, mounts), for the unit tests.
#[cfg(test)]
pub(crate) fn named<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name:?} in {list}"))
}
