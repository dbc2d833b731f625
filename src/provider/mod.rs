//! The provider seam (docs/architecture.md, "Adding a provider").
pub mod aws;
pub mod vault;
