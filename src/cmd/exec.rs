//! `secretdrop exec`: rendered objects as environment variables (docs/exec.md); see
//! [`crate::exec`].

use std::time::Duration;

use crate::cli::{Args, DEFAULT_DIR, DEFAULT_TIMEOUT, DEFAULT_TOKEN_PATH};
use crate::config::{self, Spec, VaultEnv};
use crate::error::Error;

/// `secretdrop exec`: see [`crate::exec`]. Values come from `--dir` (the default) or, with
/// `--config`, straight from the store.
pub fn run(args: Args) -> Result<(), Error> {
    let usage = |m: String| Error::Usage(m);
    let request = crate::exec::Request::parse(args.list("env"), args.list("env-file"))?
        .with_templates(args.list("env-template"), args.switch("expand")?)?;
    let restart = if args.switch("restart-on-change")? {
        let signal = match args.get("restart-signal") {
            None => libc::SIGTERM,
            Some(v) => {
                config::parse_signal(v).map_err(|m| usage(format!("--restart-signal: {m}")))?
            }
        };
        Some(crate::exec::Restart {
            signal,
            grace: args.duration("restart-grace", Duration::from_secs(10))?,
        })
    } else {
        if let Some(flag) = ["restart-signal", "restart-grace"]
            .into_iter()
            .find(|f| args.get(f).is_some())
        {
            return Err(usage(format!("--{flag} needs --restart-on-change")));
        }
        None
    };
    let source = if args.get("config").is_some() {
        if let Some(flag) = ["dir", "wait"].into_iter().find(|f| args.get(f).is_some()) {
            return Err(usage(format!(
                "--{flag} and --config exclude each other: --config fetches from the store \
                 without files, --dir reads what a sidecar rendered"
            )));
        }
        let settings = crate::provider::Settings {
            token_path: args.path("token-path", Some(DEFAULT_TOKEN_PATH))?,
            vault_policy: args.client_policy()?,
            env: crate::provider::ProviderEnv::from_process(),
            revoke_replaced_after: None,
            poll: crate::engine::DEFAULT_POLL,
            quiet: false,
            admitted: args.admitted(),
        };
        let timeout = args.duration("timeout", DEFAULT_TIMEOUT)?;
        let spec = load_spec(&args)?;
        crate::exec::Source::Config {
            spec: Box::new(spec),
            settings: Box::new(settings),
            timeout,
        }
    } else {
        if let Some(flag) = [
            "token-path",
            "timeout",
            "allowed-vault-address",
            "max-response-size",
        ]
        .into_iter()
        .find(|f| args.get(f).is_some())
        {
            return Err(usage(format!("--{flag} only applies with --config")));
        }
        crate::exec::Source::Dir {
            dir: args.path("dir", Some(DEFAULT_DIR))?,
            wait: args.duration("wait", DEFAULT_TIMEOUT)?,
        }
    };
    let code = crate::exec::run(crate::exec::Options {
        source,
        request,
        restart,
        command: args.trailing,
    })?;
    // The supervised app's exit code is ours.
    std::process::exit(code)
}

fn load_spec(args: &Args) -> Result<Spec, Error> {
    let path = args.path("config", None)?;
    Ok(config::load(&path, &VaultEnv::from_process())?)
}
