//! `secretdrop init`: one complete render of every volume, or nothing changed and exit
//! code != 0 (docs/cli.md).

use std::time::Instant;

use crate::cli::{Args, DEFAULT_DIR, DEFAULT_TIMEOUT, DEFAULT_TOKEN_PATH};
use crate::engine::{self, Options};
use crate::error::Error;
use crate::provider::Settings;

/// Volumes one session can serve share one login (see [`crate::config::volumes`]).
pub fn run(args: &Args) -> Result<(), Error> {
    let started = Instant::now();
    // Flags first: a usage error is reported before the config file is even read.
    let timeout = args.duration("timeout", DEFAULT_TIMEOUT)?;
    let opts = options(args)?;
    engine::init::run(&opts, started, timeout)
}

/// The engine's options from the flags `init` and `sidecar` share.
pub(super) fn options(args: &Args) -> Result<Options, Error> {
    let dir = args.path("dir", Some(DEFAULT_DIR))?;
    Ok(Options {
        state_dir: args.state_dir(&dir)?,
        allow_disk: args.switch("allow-disk")?,
        volumes: args.volumes()?,
        poll_interval: None,
        settings: Settings {
            token_path: args.path("token-path", Some(DEFAULT_TOKEN_PATH))?,
            vault_policy: args.client_policy()?,
            env: crate::provider::ProviderEnv::from_process(),
            revoke_replaced_after: args.revoke_replaced_after()?,
            poll: engine::DEFAULT_POLL,
            quiet: false,
            admitted: args.admitted(),
        },
        config: args.path("config", None)?,
        dir,
    })
}
