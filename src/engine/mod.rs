//! The generic engine.
pub mod notify;
pub mod observe;
pub mod sidecar;
pub mod state;
