//! `secretdrop copy-self --dir DIR`: puts this binary at `DIR/secretdrop`, mode 0555, so app
//! containers that mount DIR can run `secretdrop exec` (docs/exec.md). The webhook runs it in
//! an init container: distroless images have no `cp`.
//!
//! Apps later run whatever `DIR/secretdrop` is, so what copy-self reports as installed must be
//! its own bytes and nothing another user swapped in. Invariants:
//! * DIR is opened once, as an entry of its parent that is not followed if it is a symlink,
//!   and every later step goes through that descriptor ([`Dir`]).
//! * No other uid may be able to write DIR: it is owned by us or root and has no group or
//!   other write bit, or it is sticky (`+t`: others may add entries but not rename or remove
//!   ours) and owned by us or root. Anything else is refused (exit 2) before a byte is
//!   written: a user who can write DIR could replace the copy during the copy or at any time
//!   after it, and nothing copy-self checks could stop that.
//! * A DIR that does not exist is created, ours and mode 0755 (its parent must exist). The
//!   webhook relies on this: kubelet makes an emptyDir 0777, so the injected copy container
//!   is pointed at a subdirectory of the emptyDir, which copy-self creates and only it can
//!   write. That the subdirectory's entry stays in place rests on the emptyDir being writable
//!   only by the copy container (app containers mount it read-only).
//! * The copy is written to a per-process temporary name (`O_CREAT | O_EXCL | O_NOFOLLOW`: an
//!   existing entry, a planted symlink included, is never followed or reused), set to 0555,
//!   synced and renamed over `secretdrop`, so a reader sees the old binary or the whole new one.
//! * After the rename, `secretdrop` is opened again without following a link and must be the
//!   very file written (same device and inode), a regular file, ours, mode 0555, of the size
//!   written; and DIR's path must still lead to the directory written into. Otherwise
//!   copy-self fails (exit 1), naming the path and what differs.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::ExecError;
use crate::volume::dir::{Dir, Kind};

/// The name of the copy in DIR.
pub const BINARY_NAME: &str = "secretdrop";
/// A DIR copy-self creates: apps of any uid may enter it, only we may write it.
const DIR_MODE: u32 = 0o755;
/// The copy: anyone may run it, nobody may write it.
const BINARY_MODE: u32 = 0o555;

fn runtime(what: &str, path: &Path, e: &io::Error) -> ExecError {
    ExecError::Runtime(format!("copy-self: {what} {}: {e}", path.display()))
}

pub fn copy_self(dir: &Path) -> Result<(), ExecError> {
    let source = Path::new("/proc/self/exe");
    let mut from = File::open(source).map_err(|e| runtime("open", source, &e))?;
    // SAFETY: geteuid cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    let target = Target::open(dir)?;
    only_we_can_write(&target.dir, dir, me)?;

    // The pid keeps concurrent runs apart; a leftover of an interrupted run with the same pid
    // (pid 1 in a container) is removed: nobody else can have made it (checked above) except,
    // in a sticky DIR, another user squatting the name, whose entry we cannot remove then.
    let tmp = format!(".secretdrop.{}.tmp", std::process::id());
    let tmp_path = dir.join(&tmp);
    let mut to = match target.dir.create_file(&tmp) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            target
                .dir
                .unlink(&tmp)
                .map_err(|e| runtime("remove the leftover", &tmp_path, &e))?;
            target.dir.create_file(&tmp)
        }
        r => r,
    }
    .map_err(|e| runtime("create", &tmp_path, &e))?;
    let written = io::copy(&mut from, &mut to)
        .and_then(|n| to.flush().map(|_| n))
        // Explicit: the umask never decides who may run it.
        .and_then(|n| {
            to.set_permissions(std::fs::Permissions::from_mode(BINARY_MODE))
                .map(|_| n)
        })
        .and_then(|n| to.sync_all().map(|_| n))
        .and_then(|n| to.metadata().map(|m| (n, m)));
    drop(to);
    let (bytes, wrote) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = target.dir.unlink(&tmp);
            return Err(runtime("write", &tmp_path, &e));
        }
    };
    let dest = dir.join(BINARY_NAME);
    target.dir.rename(&tmp, BINARY_NAME).map_err(|e| {
        let _ = target.dir.unlink(&tmp);
        runtime("rename into", &dest, &e)
    })?;
    if let Err(what) = installed_is_ours(&target.dir, &wrote, bytes, me) {
        return Err(ExecError::Runtime(format!(
            "copy-self: {} {what} after copy-self renamed its copy there: something else \
             changed it, and apps must not run it",
            dest.display()
        )));
    }
    target.still_at(dir)?;
    tracing::info!(path = %dest.display(), bytes, "copied secretdrop");
    Ok(())
}

/// DIR as opened: the directory, and how to reach it again by its path.
struct Target {
    dir: Dir,
    /// DIR's parent and DIR's name in it; `None` for a DIR without a last name ("/", ".").
    entry: Option<(Dir, PathBuf)>,
}

impl Target {
    /// Opens DIR through its parent without following it, creating it (mode 0755) if it does
    /// not exist. The parent's own path is the operator's choice and may cross links.
    fn open(dir: &Path) -> Result<Target, ExecError> {
        let Some(name) = dir.file_name() else {
            let d = Dir::open(dir).map_err(|e| open_error(dir, &e))?;
            return Ok(Target {
                dir: d,
                entry: None,
            });
        };
        let parent_path = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let parent = Dir::open(parent_path).map_err(|e| {
            ExecError::Runtime(format!(
                "copy-self: cannot open {}, the directory that holds --dir {}: {e}",
                parent_path.display(),
                dir.display()
            ))
        })?;
        let d = match parent.sub(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match parent.create_dir(name, DIR_MODE) {
                    // Someone created it meanwhile: judged like any existing directory.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => parent.sub(name),
                    Err(e) => return Err(runtime("create", dir, &e)),
                    r => r,
                }
            }
            r => r,
        }
        .map_err(|e| match parent.kind(name) {
            // O_NOFOLLOW | O_DIRECTORY on a link fails with ELOOP or ENOTDIR.
            Ok(Kind::Symlink) => symlink_error(dir),
            _ => open_error(dir, &e),
        })?;
        Ok(Target {
            dir: d,
            entry: Some((parent, PathBuf::from(name))),
        })
    }

    /// Fails unless DIR's path still leads to the directory written into: one renamed away
    /// and replaced meanwhile would hold something else at `DIR/secretdrop`.
    fn still_at(&self, dir: &Path) -> Result<(), ExecError> {
        let Some((parent, name)) = &self.entry else {
            return Ok(());
        };
        let now = parent.sub(name.as_os_str()).and_then(|d| d.metadata());
        let then = self.dir.metadata();
        match (now, then) {
            (Ok(now), Ok(then)) if (now.dev(), now.ino()) == (then.dev(), then.ino()) => Ok(()),
            (Err(e), _) | (_, Err(e)) => Err(runtime("check", dir, &e)),
            _ => Err(ExecError::Runtime(format!(
                "copy-self: {} was replaced by another directory while copy-self wrote into it: \
                 apps would not run the copy",
                dir.display()
            ))),
        }
    }
}

/// A DIR that is a symlink: the caller's to fix (exit 2).
fn symlink_error(dir: &Path) -> ExecError {
    ExecError::Usage(format!(
        "copy-self: {} is a symlink: give the directory itself (a link can be re-pointed after \
         the copy)",
        dir.display()
    ))
}

/// Why DIR could not be opened: a symlink or a non-directory is the caller's to fix (exit 2).
fn open_error(dir: &Path, e: &io::Error) -> ExecError {
    match e.raw_os_error() {
        Some(libc::ELOOP) => symlink_error(dir),
        Some(libc::ENOTDIR) => {
            ExecError::Usage(format!("copy-self: {} is not a directory", dir.display()))
        }
        _ => runtime("open", dir, e),
    }
}

/// Refuses a DIR that a uid other than `me` (and root) could write (see the module
/// documentation).
fn only_we_can_write(dir: &Dir, path: &Path, me: u32) -> Result<(), ExecError> {
    let meta = dir.metadata().map_err(|e| runtime("stat", path, &e))?;
    let (owner, mode) = (meta.uid(), meta.mode() & 0o7777);
    let trusted_owner = owner == me || owner == 0;
    let shared = mode & 0o022 != 0;
    let sticky = mode & libc::S_ISVTX != 0;
    if trusted_owner && (!shared || sticky) {
        return Ok(());
    }
    let why = if !trusted_owner {
        format!("belongs to uid {owner} (mode {mode:04o})")
    } else {
        let who = match mode & 0o002 {
            0 => "its group",
            _ => "every user",
        };
        format!("is writable by {who} (mode {mode:04o}, owner uid {owner}) and not sticky")
    };
    let us = match me {
        0 => "root".to_string(),
        _ => format!("uid {me} or root"),
    };
    Err(ExecError::Usage(format!(
        "copy-self: {} {why}: another user could replace the copy that apps run. Give a \
         directory that only {us} can write (or a sticky one, chmod +t, owned by {us}), or a \
         path that does not exist yet in an existing directory: copy-self creates it, mode \
         0755 (for example {})",
        path.display(),
        path.join("bin").display()
    )))
}

/// Whether `DIR/secretdrop` is the file written (`wrote`, `bytes` long): opened without
/// following a link, the same inode, a regular file of uid `me`, mode 0555, that size. The
/// error says what differs.
fn installed_is_ours(dir: &Dir, wrote: &Metadata, bytes: u64, me: u32) -> Result<(), String> {
    let file = match dir.open_file(OsStr::new(BINARY_NAME)) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err("is a symlink".into()),
        Err(e) => return Err(format!("cannot be opened ({e})")),
    };
    let m = file
        .metadata()
        .map_err(|e| format!("cannot be read ({e})"))?;
    if !m.file_type().is_file() {
        return Err("is not a regular file".into());
    }
    if (m.dev(), m.ino()) != (wrote.dev(), wrote.ino()) {
        return Err(format!(
            "is another file (inode {} on device {:#x}) than the one written (inode {} on \
             device {:#x})",
            m.ino(),
            m.dev(),
            wrote.ino(),
            wrote.dev()
        ));
    }
    if m.uid() != me {
        return Err(format!("belongs to uid {}, not {me}", m.uid()));
    }
    if m.mode() & 0o7777 != BINARY_MODE {
        return Err(format!(
            "has mode {:04o}, not {BINARY_MODE:04o}",
            m.mode() & 0o7777
        ));
    }
    if m.len() != bytes {
        return Err(format!("holds {} bytes, not the {bytes} written", m.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(name: &str) -> crate::test_dir::Tmp {
        let t = crate::test_dir::fresh(Path::new("/dev/shm"), "copy-self", name);
        std::fs::create_dir(&t.0).unwrap();
        std::fs::set_permissions(&t.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        t
    }

    /// Writes `DIR/secretdrop` as copy-self does: the metadata of what was written.
    fn install(dir: &Path, bytes: &[u8]) -> Metadata {
        let p = dir.join(BINARY_NAME);
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(BINARY_MODE)).unwrap();
        std::fs::metadata(&p).unwrap()
    }

    #[test]
    fn the_installed_file_must_be_the_one_written() {
        let t = scratch("verify");
        let me = unsafe { libc::geteuid() };
        let d = Dir::open(&t.0).unwrap();
        let p = t.0.join(BINARY_NAME);
        let wrote = install(&t.0, b"binary");
        assert_eq!(installed_is_ours(&d, &wrote, 6, me), Ok(()));
        let err = |wrote: &Metadata, bytes| installed_is_ours(&d, wrote, bytes, me).unwrap_err();
        assert!(err(&wrote, 7).contains("holds 6 bytes, not the 7 written"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(err(&wrote, 6).contains("has mode 0755, not 0555"));
        // Another file renamed over it, though with the same mode and size.
        let other = t.0.join("other");
        std::fs::write(&other, b"script").unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(BINARY_MODE)).unwrap();
        std::fs::rename(&other, &p).unwrap();
        assert!(
            err(&wrote, 6).contains("is another file"),
            "{}",
            err(&wrote, 6)
        );
        // A symlink to the file written is refused, not followed.
        let wrote = install(&t.0, b"binary");
        std::fs::rename(&p, t.0.join("real")).unwrap();
        symlink(t.0.join("real"), &p).unwrap();
        assert_eq!(err(&wrote, 6), "is a symlink");
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        assert_eq!(err(&wrote, 6), "is not a regular file");
        std::fs::remove_dir(&p).unwrap();
        assert!(err(&wrote, 6).starts_with("cannot be opened"));
        if me == 0 {
            let wrote = install(&t.0, b"binary");
            std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
            assert_eq!(err(&wrote, 6), "belongs to uid 65534, not 0");
        }
    }

    #[test]
    fn a_dir_another_uid_can_write_is_refused_unless_sticky_and_ours() {
        let t = scratch("writers");
        let me = unsafe { libc::geteuid() };
        let check = |mode: u32| {
            std::fs::set_permissions(&t.0, std::fs::Permissions::from_mode(mode)).unwrap();
            only_we_can_write(&Dir::open(&t.0).unwrap(), &t.0, me)
        };
        assert!(check(0o755).is_ok());
        assert!(check(0o700).is_ok());
        assert!(check(0o1777).is_ok(), "sticky and ours, like /tmp");
        for (mode, says) in [
            (0o777, "writable by every user (mode 0777"),
            (0o775, "writable by its group (mode 0775"),
            (0o757, "writable by every user (mode 0757"),
        ] {
            match check(mode) {
                Err(ExecError::Usage(m)) => {
                    assert!(m.contains(says) && m.contains("not sticky"), "{m}");
                    assert!(m.contains(&t.0.display().to_string()), "{m}");
                    assert!(m.contains("copy-self creates it, mode 0755"), "{m}");
                }
                other => panic!("{mode:o}: {other:?}"),
            }
        }
        if me == 0 {
            std::os::unix::fs::chown(&t.0, Some(65534), None).unwrap();
            for mode in [0o755, 0o1777] {
                match check(mode) {
                    Err(ExecError::Usage(m)) => assert!(m.contains("belongs to uid 65534"), "{m}"),
                    other => panic!("{mode:o}: {other:?}"),
                }
            }
        }
    }
}
