//! `--state-dir`: where one secretdrop process leaves what the next one in the same pod adopts
//! (a Vault token and leases, AWS session credentials), so that a restarted sidecar, or the
//! sidecar after the init container, does not log in or mint again (docs/state.md).
//!
//! This module owns the directory and the file (`state.json`) as bytes: the checks on the
//! directory, reading the file bounded, writing it atomically. What the bytes say belongs to
//! the provider that wrote them (for Vault, `provider::vault::records`).
//!
//! Invariants:
//! - the directory is memory-backed (tmpfs/ramfs, the same guard as `--dir`) unless
//!   `--allow-disk`, and is never the secrets directory nor inside it: the app must not see the
//!   credentials;
//! - the file is read only when it is a regular file of our own uid, mode 0600 or stricter, at
//!   most [`MAX_BYTES`], reached without following a link; it is written to a fresh temporary
//!   file (0600, `O_EXCL`, no-follow) that is renamed over the old one, so a reader sees the
//!   old state or the new one, never half of one;
//! - its bytes are held in a [`SecretBytes`] (wiped on drop, redacted in `Debug`): they never
//!   reach a log line or an error.

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::Error;
use crate::secret::SecretBytes;
use crate::volume::dir::Dir;
use crate::volume::{Volume, VolumeError};

pub const FILE_NAME: &str = "state.json";
const TMP_NAME: &str = "state.json.tmp";
/// A state records one line per read; a megabyte is far more than any config needs.
pub const MAX_BYTES: u64 = 1024 * 1024;

/// What reading the state file found.
pub enum Loaded {
    Missing,
    /// Present but not usable; the reason, fit for a log line (never the content).
    Unusable(String),
    /// The file's bytes, bounded; the provider that wrote it reads them.
    Found(SecretBytes),
}

/// A checked state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Checks `path` (not the secrets directory nor inside it, memory-backed unless
    /// `allow_disk`) and creates it (0700) when missing.
    pub fn prepare(path: &Path, secrets_dir: &Path, allow_disk: bool) -> Result<StateDir, Error> {
        let (state, secrets) = (resolve(path), resolve(secrets_dir));
        if state.starts_with(&secrets) {
            return Err(Error::Usage(format!(
                "--state-dir {} is inside --dir {}: the app would see the credentials kept there. Use a \
                 separate memory-backed emptyDir that only secretdrop mounts",
                path.display(),
                secrets_dir.display()
            )));
        }
        let guard = Volume::new(path, allow_disk);
        guard.check_filesystem()?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| VolumeError::Io {
                op: "create state directory",
                path: path.to_path_buf(),
                source,
            })?;
        // Again on the directory itself, now that it exists (its parent was checked before).
        guard.check_filesystem()?;
        Ok(StateDir {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state file, bounded and without following a link.
    pub fn load(&self) -> Loaded {
        let dir = match Dir::open(&self.path) {
            Ok(d) => d,
            Err(e) => return Loaded::Unusable(format!("cannot open the state directory: {e}")),
        };
        let mut file = match dir.open_file(FILE_NAME) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
            Err(e) => return Loaded::Unusable(format!("cannot open it: {e}")),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return Loaded::Unusable(format!("cannot stat it: {e}")),
        };
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.is_file() {
            return Loaded::Unusable("it is not a regular file".into());
        }
        if meta.uid() != me || meta.mode() & 0o077 != 0 {
            return Loaded::Unusable(format!(
                "it belongs to uid {} with mode {:04o}, not to uid {me} with mode 0600",
                meta.uid(),
                meta.mode() & 0o7777
            ));
        }
        if meta.len() > MAX_BYTES {
            return Loaded::Unusable(format!("it is larger than {MAX_BYTES} bytes"));
        }
        let mut buf = Vec::with_capacity(meta.len() as usize);
        let read = (&mut file).take(MAX_BYTES + 1).read_to_end(&mut buf);
        let bytes = SecretBytes::new(buf);
        match read {
            Err(e) => Loaded::Unusable(format!("cannot read it: {e}")),
            Ok(_) if bytes.expose().len() as u64 > MAX_BYTES => {
                Loaded::Unusable(format!("it is larger than {MAX_BYTES} bytes"))
            }
            Ok(_) => Loaded::Found(bytes),
        }
    }

    /// Writes `state` atomically: a fresh 0600 file renamed over the old one.
    pub fn save(&self, state: &SecretBytes) -> std::io::Result<()> {
        let dir = Dir::open(&self.path)?;
        // A leftover of a write that was interrupted; `create_file` refuses any existing entry.
        let _ = dir.unlink(TMP_NAME);
        let written = dir.create_file(TMP_NAME).and_then(|mut f| {
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            f.write_all(state.expose())
        });
        let result = written.and_then(|_| dir.rename(TMP_NAME, FILE_NAME));
        if result.is_err() {
            let _ = dir.unlink(TMP_NAME);
        }
        result
    }

    /// Removes the state file (after `--revoke-on-exit`: the token in it is dead).
    pub fn remove(&self) {
        if let Ok(dir) = Dir::open(&self.path) {
            let _ = dir.unlink(FILE_NAME);
        }
    }

    /// [`StateDir::save`], a failure only warned about: the next process logs in afresh.
    pub fn save_or_warn(&self, state: &SecretBytes) {
        if let Err(e) = self.save(state) {
            tracing::warn!(state_dir = %self.path.display(), error = %e, "cannot write the state file; a restart will log in again");
        }
    }
}

/// `path` made absolute with its existing part canonical (symlinks resolved), so that
/// "inside" is decided on what the kernel will use, not on spelling.
fn resolve(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut existing = abs.as_path();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                match part.to_str() {
                    Some("..") => {
                        out.pop();
                    }
                    Some(".") => {}
                    _ => out.push(part),
                }
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    // Nothing exists: lexically normalised.
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_dir::Tmp;

    fn tmp(name: &str) -> Tmp {
        let t = crate::test_dir::fresh(&std::env::temp_dir(), "state", name);
        fs::create_dir_all(&t.0).unwrap();
        t
    }

    fn sample() -> SecretBytes {
        SecretBytes::new(br#"{"token":"s.hunter2-token"}"#.to_vec())
    }

    #[test]
    fn saved_state_reads_back_0600_and_debug_hides_it() {
        let t = tmp("roundtrip");
        let sd = StateDir::prepare(&t.0.join("state"), &t.0.join("out"), true).unwrap();
        sd.save(&sample()).unwrap();
        let meta = fs::metadata(t.0.join("state").join(FILE_NAME)).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        let Loaded::Found(s) = sd.load() else {
            panic!("not found")
        };
        assert_eq!(s.expose(), sample().expose());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn foreign_linked_or_huge_files_are_unusable() {
        let t = tmp("bad");
        let sd = StateDir::prepare(&t.0.join("state"), &t.0.join("out"), true).unwrap();
        let file = t.0.join("state").join(FILE_NAME);
        assert!(matches!(sd.load(), Loaded::Missing));
        sd.save(&sample()).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(sd.load(), Loaded::Unusable(w) if w.contains("mode 0644")));
        fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(t.0.join("elsewhere"), &file).unwrap();
        assert!(matches!(sd.load(), Loaded::Unusable(_)));
        let big = vec![b' '; MAX_BYTES as usize + 1];
        fs::remove_file(&file).unwrap();
        fs::write(&file, big).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(sd.load(), Loaded::Unusable(w) if w.contains("larger")));
    }

    #[test]
    fn a_state_dir_inside_the_secrets_dir_is_refused() {
        let t = tmp("inside");
        let out = t.0.join("out");
        for inside in [out.clone(), out.join("state"), out.join("a/../state")] {
            let e = StateDir::prepare(&inside, &out, true).unwrap_err();
            assert!(e.to_string().contains("inside --dir"), "{e}");
        }
        fs::create_dir_all(&out).unwrap();
        std::os::unix::fs::symlink(&out, t.0.join("alias")).unwrap();
        assert!(StateDir::prepare(&t.0.join("alias/state"), &out, true).is_err());
        assert!(StateDir::prepare(&t.0.join("state"), &out, true).is_ok());
        assert!(StateDir::prepare(&out.join("../state2"), &out, true).is_ok());
    }
}
