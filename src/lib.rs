//! secretdrop: renders Vault / OpenBao secrets into a pod's memory-backed volume.
//!
//! The data flow (docs/architecture.md, "One data flow") is one module per box:
//! [`config`] (a source → validated [`config::Spec`]) → [`fetch`] (login, deduplicated reads →
//! [`fetch::Snapshot`]) → [`render`] (pure: Snapshot → [`render::Payload`]) → [`volume`] (the
//! atomic writer). [`vault`] is the HTTP client the fetch step drives; [`cli`] parses arguments
//! and runs the commands.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod engine;
pub mod error;
pub mod exec;
pub mod fingerprint;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod logging;
pub mod net;
pub mod observe;
pub mod provider;
pub mod render;
pub mod retry;
pub mod secret;
#[cfg(test)]
mod test_dir;
pub mod volume;
pub mod watch;
pub mod webhook;
