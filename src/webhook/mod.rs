//! The mutating admission webhook (docs/webhook.md): [`mutate`] is the pure injection, [`patch`]
//! turns its result into a JSON Patch, [`review`] answers an AdmissionReview, [`csi`] converts
//! Secrets Store CSI volumes, [`aws`] gives `provider: aws` pods their AWS credentials.

pub mod aws;
pub mod csi;
pub mod mutate;
pub mod patch;
pub mod review;
pub mod server;
pub mod settings;
pub mod shape;
