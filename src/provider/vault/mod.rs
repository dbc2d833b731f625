//! `provider: vault` (and `openbao`).
pub mod auth;
pub mod client;
pub mod fetch;
pub mod tls;
