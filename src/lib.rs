//! secretdrop: renders Vault / OpenBao secrets into a pod's memory-backed volume.
//!
//! The data flow (docs/architecture.md, "One data flow") is one module per box:
//! [`config`] (a source → validated [`config::Spec`]) → a [`provider`]'s session (login or
//! credentials, deduplicated reads) → [`render`] (pure: answers → [`render::Payload`]) →
//! [`volume`] (the atomic writer). [`engine`] drives sessions for `init` and the sidecar,
//! whatever the provider; [`cli`] parses arguments and [`cmd`] runs the commands.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod engine;
pub mod error;
pub mod exec;
pub mod fingerprint;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod gotemplate;
pub mod logging;
pub mod net;
pub mod observe;
pub mod provider;
pub mod render;
pub mod retry;
pub mod secret;
#[cfg(test)]
mod test_dir;
pub mod timestamp;
pub mod volume;
pub mod watch;
pub mod webhook;
