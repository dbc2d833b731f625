//! `secretdrop probe`: the startupProbe (docs/pod.md).

use std::path::PathBuf;

use crate::cli::{Args, DEFAULT_DIR};
use crate::error::Error;
use crate::volume::Volume;

/// `secretdrop probe`: 0 when `..data` points at a complete version in every `--dir`, 1
/// otherwise (naming the first directory that is not ready).
pub fn run(args: &Args) -> Result<(), Error> {
    let dirs: Vec<PathBuf> = match args.list("dir") {
        [] => vec![PathBuf::from(DEFAULT_DIR)],
        list => list.iter().map(PathBuf::from).collect(),
    };
    let mut ready = Vec::new();
    for dir in &dirs {
        match Volume::new(dir, true).readiness() {
            Ok(version) => ready.push(format!("{}: {version}", dir.display())),
            Err(why) => return Err(Error::NotReady(format!("{}: {why}", dir.display()))),
        }
    }
    println!("{}", ready.join("\n"));
    Ok(())
}
