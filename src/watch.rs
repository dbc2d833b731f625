//! Noticing that the config file changed, including the way Kubernetes updates ConfigMap and
//! downward-API volumes: the file is a symlink into `..data/`, and an update renames a new
//! `..data` over the old one in the parent directory. Watching the parent directory sees both
//! that and plain edits; the caller re-reads the file and compares content, so spurious events
//! cost one read.

use std::path::Path;

use notify::{RecursiveMode, Watcher};

/// Keeps the watch alive; events arrive on `changes`.
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
    pub changes: tokio::sync::mpsc::UnboundedReceiver<()>,
}

pub fn watch(config: &Path) -> notify::Result<ConfigWatch> {
    let dir = match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = config
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let (tx, changes) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only the file itself and the `..data` swap matter: the directory may be busy (/tmp).
        let relevant = event.is_ok_and(|e| {
            !e.kind.is_access()
                && e.paths.iter().any(|p| {
                    p.file_name().is_some_and(|n| {
                        n == name.as_os_str() || n.to_string_lossy().starts_with("..data")
                    })
                })
        });
        if relevant {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(ConfigWatch {
        _watcher: watcher,
        changes,
    })
}
