//! `secretdrop check`: the plan, offline (docs/cli.md).

use crate::cli::Args;
use crate::config::{self, VaultEnv};
use crate::error::Error;

/// `secretdrop check`: the plan, without contacting Vault or printing secret values.
pub fn run(args: &Args) -> Result<(), Error> {
    let path = args.path("config", None)?;
    let text = config::read_bounded(&path)?;
    let sources = config::volumes::sources(&path, &text, &VaultEnv::from_process())?;
    // A config of one volume prints as it always did; an annotations file with converted CSI
    // volumes prints one plan per volume, each under its name.
    let several = sources.len() > 1 || sources.iter().any(|s| s.volume.is_some());
    for source in &sources {
        if several {
            match &source.volume {
                None => println!("volume --dir (secretdrop.dev/objects):"),
                Some(v) => println!("volume {v} (--volume {v}=DIR):"),
            }
        }
        print!("{}", source.spec.provider.plan(&source.spec.source));
    }
    Ok(())
}
