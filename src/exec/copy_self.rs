//! `secretdrop copy-self --dir DIR`: puts this binary at `DIR/secretdrop`, mode 0555, so app
//! containers that mount DIR can run `secretdrop exec` (docs/exec.md). The webhook runs it in
//! an init container: distroless images have no `cp`.
//!
//! Invariants: the file name is fixed; the copy is written to a fresh temporary name
//! (`O_EXCL | O_NOFOLLOW`: an existing entry, a planted symlink included, is refused, never
//! followed) and renamed into place, so a reader sees the old binary or the whole new one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::ExecError;

/// The name of the copy in DIR.
pub const BINARY_NAME: &str = "secretdrop";
const TMP_NAME: &str = ".secretdrop.tmp";

pub fn copy_self(dir: &Path) -> Result<(), ExecError> {
    let fail = |what: &str, path: &Path, e: io::Error| {
        ExecError::Runtime(format!("copy-self: {what} {}: {e}", path.display()))
    };
    let source = Path::new("/proc/self/exe");
    let mut from = File::open(source).map_err(|e| fail("open", source, e))?;
    let tmp = dir.join(TMP_NAME);
    let dest = dir.join(BINARY_NAME);
    // A leftover of an interrupted copy; unlinking never follows a link.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(fail("remove", &tmp, e)),
        _ => {}
    }
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| fail("create", &tmp, e))?;
    let written = io::copy(&mut from, &mut to)
        .and_then(|n| to.flush().map(|_| n))
        // Explicit: the umask never decides who may run it.
        .and_then(|n| {
            to.set_permissions(std::fs::Permissions::from_mode(0o555))
                .map(|_| n)
        })
        .and_then(|n| to.sync_all().map(|_| n))
        .map_err(|e| fail("write", &tmp, e));
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    drop(to);
    std::fs::rename(&tmp, &dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail("rename into", &dest, e)
    })?;
    tracing::info!(path = %dest.display(), bytes = written, "copied secretdrop");
    Ok(())
}
