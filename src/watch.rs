//! Noticing that a file changed (the config, a TLS certificate), including the way Kubernetes
//! updates ConfigMap, Secret and downward-API volumes: the file is a symlink into `..data/`,
//! and an update renames a new `..data` over the old one in the parent directory. Watching the
//! parent directory sees both that and plain edits; the caller re-reads the file and compares,
//! so spurious events cost one read.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};

/// Keeps the watch alive; events arrive on `changes`.
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
    pub changes: tokio::sync::mpsc::UnboundedReceiver<()>,
}

pub fn watch(config: &Path) -> notify::Result<ConfigWatch> {
    watch_files(&[config])
}

/// Watches several files (e.g. a TLS certificate and its key) the same way.
pub fn watch_files(files: &[&Path]) -> notify::Result<ConfigWatch> {
    let names: Vec<OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_os_string()))
        .collect();
    let (tx, changes) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only the files themselves and the `..data` swap matter: a directory may be busy (/tmp).
        let relevant = event.is_ok_and(|e| {
            !e.kind.is_access()
                && e.paths.iter().any(|p| {
                    p.file_name().is_some_and(|n| {
                        names.iter().any(|w| w == n) || n.to_string_lossy().starts_with("..data")
                    })
                })
        });
        if relevant {
            let _ = tx.send(());
        }
    })?;
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .map(|f| match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    Ok(ConfigWatch {
        _watcher: watcher,
        changes,
    })
}
