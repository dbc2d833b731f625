//! Scratch directories for unit tests: a leftover of an earlier run is removed first, and the
//! directory is removed again when the handle is dropped.

use std::fs;
use std::path::{Path, PathBuf};

pub(crate) struct Tmp(pub PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `BASE/secretdrop-WHAT-NAME-PID`, not created (callers that need it to exist create it).
pub(crate) fn fresh(base: &Path, what: &str, name: &str) -> Tmp {
    let p = base.join(format!("secretdrop-{what}-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&p);
    Tmp(p)
}
