//! secretdrop: renders Vault / OpenBao secrets into a pod's memory-backed volume.
//!
//! The data flow (docs/architecture.md, "One data flow") is one module per box:
//! [`config`] (a source → validated [`config::Spec`]) → [`fetch`] (login, deduplicated reads →
//! [`fetch::Snapshot`]) → [`render`] (pure: Snapshot → [`render::Payload`]) → [`volume`] (the
//! atomic writer). [`vault`] is the HTTP client the fetch step drives; [`cli`] parses arguments
//! and runs the commands.

pub mod app_notify;
pub mod aws;
pub mod cli;
pub mod config;
pub mod error;
pub mod exec;
pub mod fetch;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod http;
pub mod kube;
pub mod logging;
pub mod observe;
pub mod render;
pub mod retry;
pub mod schedule;
pub mod secret;
pub mod serve;
pub mod sidecar;
pub mod state;
#[cfg(test)]
mod test_dir;
pub mod vault;
pub mod volume;
pub mod watch;
pub mod webhook;
