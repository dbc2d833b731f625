//! `--state-dir`: where one secretdrop process leaves what the next one in the same pod adopts
//! (a Vault token and leases, AWS session credentials), so that a restarted sidecar, or the
//! sidecar after the init container, does not log in or mint again (docs/state.md).
//!
//! This module owns the directory and the file (`state.json`) as bytes: the checks on the
//! directory, reading the file bounded, writing it atomically. What the bytes say belongs to
//! the provider that wrote them (for Vault, `provider::vault::records`).
//!
//! Invariants:
//! - the directory is opened once, in [`StateDir::prepare`], and every later read, write,
//!   rename and unlink goes through that descriptor ([`Dir`]), never through the path again:
//!   whoever renames the directory away and puts a link (to `--dir`, say) in its place
//!   afterwards changes nothing for this process, whose state keeps going to the directory it
//!   checked;
//! - that directory is the last component of the path opened without following a link (a
//!   symlink there is refused; the path up to it is the operator's and may cross links, as for
//!   `--dir`), created 0700 when missing, and it is private: owned by our uid and writable by
//!   no group or other user, sticky or not. Anything else is refused (exit 2) before anything
//!   is read from it: a user who can write the directory could swap its entries (roll back to
//!   an older state, link the file elsewhere), and nothing checked on the file could stop that;
//! - the directory is memory-backed (tmpfs/ramfs, the same guard as `--dir`, checked on the
//!   descriptor) unless `--allow-disk`, and is never a secrets directory nor inside one (checked
//!   on the path before anything is created, and on where the kernel says the opened directory
//!   is): the app must not see the credentials;
//! - the file is read only when it is a regular file of our own uid, mode 0600 or stricter, at
//!   most [`MAX_BYTES`], reached without following a link; it is written to a fresh temporary
//!   file named after the process (`state.json.PID.RANDOM.tmp`: 0600, `O_EXCL`, no-follow, so
//!   two processes never share one) that is renamed over the old one, so a reader sees the old
//!   state or the new one, never half of one. Temporary files left by a process killed
//!   mid-write are removed at the next start, once old enough not to be another live writer's;
//! - its bytes are held in a [`SecretBytes`] (wiped on drop, redacted in `Debug`): they never
//!   reach a log line or an error.

use std::collections::hash_map::RandomState;
use std::ffi::OsStr;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::secret::SecretBytes;
use crate::volume::dir::{Dir, Kind};
use crate::volume::{Volume, VolumeError};

pub const FILE_NAME: &str = "state.json";
/// A state records one line per read; a megabyte is far more than any config needs.
pub const MAX_BYTES: u64 = 1024 * 1024;
/// The mode of a state directory secretdrop creates.
const DIR_MODE: u32 = 0o700;
/// A temporary file older than this is a killed writer's leftover: a write takes microseconds.
const LEFTOVER_AGE: Duration = Duration::from_secs(60);

/// What reading the state file found.
pub enum Loaded {
    Missing,
    /// Present but not usable; the reason, fit for a log line (never the content).
    Unusable(String),
    /// The file's bytes, bounded; the provider that wrote it reads them.
    Found(SecretBytes),
}

/// A checked state directory, held open.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// The path given, for messages and logs only: never opened again.
    path: PathBuf,
    /// The directory checked in [`StateDir::prepare`]; shared by the units that keep their
    /// state in it.
    dir: Arc<Dir>,
    /// Where the opened directory is, for the checks against secrets directories: what the
    /// kernel says, else the path resolved.
    location: PathBuf,
}

impl StateDir {
    /// Checks `path` (not the secrets directory nor inside it, memory-backed unless
    /// `allow_disk`, not a symlink, private), creating it (0700) when missing, and opens it
    /// for good.
    pub fn prepare(path: &Path, secrets_dir: &Path, allow_disk: bool) -> Result<StateDir, Error> {
        // On the path first, so that nothing is created inside --dir.
        refuse_inside(&resolve(path), path, secrets_dir, "--dir")?;
        let guard = Volume::new(path, allow_disk);
        guard.check_filesystem()?;
        let dir = open_or_create(path)?;
        // Again on the directory actually opened, which is where the state will go.
        let fs_type = dir.fs_type().map_err(|source| VolumeError::Io {
            op: "statfs",
            path: path.to_path_buf(),
            source,
        })?;
        guard.require_memory(fs_type)?;
        check_private(&dir, path)?;
        let location = dir.kernel_path().unwrap_or_else(|| resolve(path));
        let sd = StateDir {
            path: path.to_path_buf(),
            dir: Arc::new(dir),
            location,
        };
        sd.refuse_inside(secrets_dir, "--dir")?;
        sd.remove_leftovers();
        Ok(sd)
    }

    /// The state directory of unit `i` when one process serves several (`DIR/unit-N`): opened
    /// or created through this directory's descriptor, and checked like it.
    pub fn unit(&self, i: usize) -> Result<StateDir, Error> {
        let name = format!("unit-{i}");
        let path = self.path.join(&name);
        let dir = open_or_create_in(&self.dir, OsStr::new(&name), &path)?;
        check_private(&dir, &path)?;
        let sd = StateDir {
            path,
            dir: Arc::new(dir),
            location: self.location.join(name),
        };
        sd.remove_leftovers();
        Ok(sd)
    }

    /// Refuses this state directory when it is `secrets_dir` (`what`: the flag that named it,
    /// for the message) or lies inside it.
    pub fn refuse_inside(&self, secrets_dir: &Path, what: &str) -> Result<(), Error> {
        refuse_inside(&self.location, &self.path, secrets_dir, what)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state file, bounded and without following a link.
    pub fn load(&self) -> Loaded {
        let mut file = match self.dir.open_file(FILE_NAME) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
            Err(e) => return Loaded::Unusable(format!("cannot open it: {e}")),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return Loaded::Unusable(format!("cannot stat it: {e}")),
        };
        let me = euid();
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

    /// Writes `state` atomically: a fresh 0600 file of this process, renamed over the old one,
    /// all in the directory opened by [`StateDir::prepare`].
    pub fn save(&self, state: &SecretBytes) -> std::io::Result<()> {
        // `create_file` refuses any existing entry (O_EXCL): a name taken, whatever by, means
        // another name, never reusing or following what is there.
        let mut tries = 0;
        let (tmp, mut file) = loop {
            let tmp = temp_name();
            match self.dir.create_file(&tmp) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 3 => tries += 1,
                Err(e) => return Err(e),
            }
        };
        let written = file
            .set_permissions(fs::Permissions::from_mode(0o600))
            .and_then(|_| file.write_all(state.expose()));
        drop(file);
        let result = written.and_then(|_| self.dir.rename(&tmp, FILE_NAME));
        if result.is_err() {
            let _ = self.dir.unlink(&tmp);
        }
        result
    }

    /// Removes the state file (after `--revoke-on-exit`: the token in it is dead).
    pub fn remove(&self) {
        let _ = self.dir.unlink(FILE_NAME);
    }

    /// [`StateDir::save`], a failure only warned about: the next process logs in afresh.
    pub fn save_or_warn(&self, state: &SecretBytes) {
        if let Err(e) = self.save(state) {
            tracing::warn!(state_dir = %self.path.display(), error = %e, "cannot write the state file; a restart will log in again");
        }
    }

    /// Unlinks temporary files a process killed mid-write left behind (each may hold a token,
    /// and the directory is usually a 1 MiB emptyDir), once they are older than
    /// [`LEFTOVER_AGE`]: a younger one may be another process's write in progress.
    fn remove_leftovers(&self) {
        let Ok(names) = self.dir.names() else {
            return;
        };
        for name in names {
            let Some(n) = name.to_str() else { continue };
            if !(n.starts_with(&format!("{FILE_NAME}.")) && n.ends_with(".tmp")) {
                continue;
            }
            let stale = match self.dir.kind(&name) {
                Ok(Kind::File) => self
                    .dir
                    .open_file(&name)
                    .and_then(|f| f.metadata())
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > LEFTOVER_AGE)),
                Ok(Kind::Symlink) | Ok(Kind::Other) => true,
                Ok(Kind::Dir) | Err(_) => false,
            };
            if stale {
                let _ = self.dir.unlink(&name);
            }
        }
    }
}

/// `state.json.PID.RANDOM.tmp`: the pid keeps this process's writes apart from another's in
/// the same pid namespace, the random part from one in another namespace (every container's
/// first process is pid 1).
fn temp_name() -> String {
    // RandomState's keys are random per thread and differ for each instance.
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{FILE_NAME}.{}.{:016x}.tmp", std::process::id(), h.finish())
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Refuses `state` (where the state directory is, resolved; `shown` as given) when it is
/// `secrets_dir` or lies inside it.
fn refuse_inside(state: &Path, shown: &Path, secrets_dir: &Path, what: &str) -> Result<(), Error> {
    if !state.starts_with(resolve(secrets_dir)) {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "--state-dir {} is inside {what} {}: the app would see the credentials kept there. Use a \
         separate memory-backed emptyDir that only secretdrop mounts",
        shown.display(),
        secrets_dir.display()
    )))
}

/// Opens `path` as the state directory: its parent by path (created, 0700, when missing: the
/// operator's choice, links followed as for `--dir`), then the directory itself through the
/// parent, never following a link there, created 0700 when missing.
fn open_or_create(path: &Path) -> Result<Dir, Error> {
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::from(VolumeError::Io { op, path, source })
    };
    let Some(name) = path.file_name() else {
        // "/" or a path ending in "..": nothing to open it through; judged like any other.
        return Dir::open(path).map_err(io("open state directory", path));
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(parent)
        .map_err(io("create the parent of the state directory", parent))?;
    let parent = Dir::open(parent).map_err(io("open", parent))?;
    open_or_create_in(&parent, name, path)
}

/// The subdirectory `name` of `parent` (`shown`: its path, for messages), opened without
/// following a link, created 0700 when missing.
fn open_or_create_in(parent: &Dir, name: &OsStr, shown: &Path) -> Result<Dir, Error> {
    let opened = match parent.sub(name) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match parent.create_dir(name, DIR_MODE) {
                // Created meanwhile by someone else: judged like any existing directory.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => parent.sub(name),
                r => r,
            }
        }
        r => r,
    };
    opened.map_err(|source| match parent.kind(name) {
        // O_NOFOLLOW | O_DIRECTORY on a link fails with ELOOP or ENOTDIR.
        Ok(Kind::Symlink) => Error::Usage(format!(
            "--state-dir {} is a symlink: give the directory itself (a link can be re-pointed, \
             at --dir for instance, once secretdrop has checked it)",
            shown.display()
        )),
        Ok(k) if k != Kind::Dir => Error::Usage(format!(
            "--state-dir {} is {}, not a directory",
            shown.display(),
            k.describe()
        )),
        _ => Error::from(VolumeError::Io {
            op: "open state directory",
            path: shown.to_path_buf(),
            source,
        }),
    })
}

/// Refuses a state directory that is not private: owned by another uid, or writable by a
/// group or other users (sticky or not; see the module documentation).
fn check_private(dir: &Dir, shown: &Path) -> Result<(), Error> {
    let meta = dir.metadata().map_err(|source| VolumeError::Io {
        op: "stat state directory",
        path: shown.to_path_buf(),
        source,
    })?;
    let (me, owner, mode) = (euid(), meta.uid(), meta.mode() & 0o7777);
    if owner == me && mode & 0o022 == 0 {
        return Ok(());
    }
    let why = if owner != me {
        format!("belongs to uid {owner} (mode {mode:04o})")
    } else {
        let who = match mode & 0o002 {
            0 => "its group",
            _ => "every user",
        };
        let sticky = match mode & libc::S_ISVTX {
            0 => "",
            _ => " (sticky: others may still add entries)",
        };
        format!("is writable by {who} (mode {mode:04o}, owner uid {owner}){sticky}")
    };
    Err(Error::Usage(format!(
        "--state-dir {} {why}: it holds the credentials secretdrop keeps between processes (a \
         Vault token, AWS session keys), and another user who can write the directory could \
         swap or roll back what is recorded there. Give a \
         directory owned by uid {me} that no group or other user can write (mode 0700 or \
         0755), or a path that does not exist yet in an existing directory: secretdrop creates \
         it, mode 0700 (for example {})",
        shown.display(),
        shown.join("state").display()
    )))
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
        // A state directory inside a --volume directory, found when the units are prepared.
        let sd = StateDir::prepare(&t.0.join("vol/state"), &out, true).unwrap();
        let e = sd.refuse_inside(&t.0.join("vol"), "the volume directory");
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("inside the volume directory"));
        assert!(StateDir::prepare(&t.0.join("state"), &out, true).is_ok());
        assert!(StateDir::prepare(&out.join("../state2"), &out, true).is_ok());
    }

    #[test]
    fn a_missing_state_dir_is_created_0700_and_its_units_too() {
        let t = tmp("created");
        let sd = StateDir::prepare(&t.0.join("a/state"), &t.0.join("out"), true).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&t.0.join("a/state")), 0o700);
        let unit = sd.unit(1).unwrap();
        assert_eq!(unit.path(), t.0.join("a/state/unit-1"));
        assert_eq!(mode(&t.0.join("a/state/unit-1")), 0o700);
        unit.save(&sample()).unwrap();
        assert!(t.0.join("a/state/unit-1").join(FILE_NAME).is_file());
    }

    /// The attack: once the sidecar runs, its state directory is renamed away and a link to
    /// the secrets directory put in its place. Saves keep going to the directory checked.
    #[test]
    fn a_state_dir_swapped_for_a_link_keeps_the_state_in_the_directory_opened() {
        let t = tmp("swapped");
        let (state, out, moved) = (t.0.join("state"), t.0.join("out"), t.0.join("moved"));
        fs::create_dir_all(&out).unwrap();
        let sd = StateDir::prepare(&state, &out, true).unwrap();
        let units = sd.unit(0).unwrap();
        fs::rename(&state, &moved).unwrap();
        std::os::unix::fs::symlink(&out, &state).unwrap();
        sd.save(&sample()).unwrap();
        units.save(&sample()).unwrap();
        assert!(matches!(sd.load(), Loaded::Found(_)));
        sd.remove();
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "nothing in --dir");
        assert!(
            !moved.join(FILE_NAME).exists(),
            "removed where it was written"
        );
        assert!(moved.join("unit-0").join(FILE_NAME).is_file());
        // A restart finds the link and refuses it.
        let e = StateDir::prepare(&state, &t.0.join("other"), true).unwrap_err();
        assert!(e.to_string().contains("is a symlink"), "{e}");
        assert_eq!(e.exit_code(), crate::error::ExitCode::Usage);
    }

    #[test]
    fn a_state_dir_others_can_write_or_own_is_refused() {
        let t = tmp("private");
        let state = t.0.join("state");
        fs::create_dir_all(&state).unwrap();
        let check = |mode: u32| {
            fs::set_permissions(&state, fs::Permissions::from_mode(mode)).unwrap();
            StateDir::prepare(&state, &t.0.join("out"), true)
        };
        assert!(check(0o700).is_ok());
        assert!(check(0o755).is_ok());
        for (mode, says) in [
            (0o777, "writable by every user (mode 0777"),
            (0o1777, "writable by every user (mode 1777"),
            (0o770, "writable by its group (mode 0770"),
            (0o1730, "writable by its group (mode 1730"),
        ] {
            let e = check(mode).unwrap_err();
            let m = e.to_string();
            assert_eq!(e.exit_code(), crate::error::ExitCode::Usage, "{m}");
            assert!(m.contains(says), "{m}");
            assert!(m.contains(&state.display().to_string()), "{m}");
            assert!(m.contains("secretdrop creates it, mode 0700"), "{m}");
        }
        if euid() == 0 {
            std::os::unix::fs::chown(&state, Some(65534), None).unwrap();
            let m = check(0o700).unwrap_err().to_string();
            assert!(m.contains("belongs to uid 65534 (mode 0700)"), "{m}");
        }
        fs::remove_dir(&state).unwrap();
        fs::write(&state, "").unwrap();
        let m = check(0o600).unwrap_err().to_string();
        assert!(m.contains("is a regular file, not a directory"), "{m}");
    }

    #[test]
    fn writers_use_their_own_temporary_names_and_leftovers_are_swept() {
        let t = tmp("temps");
        let state = t.0.join("state");
        let sd = StateDir::prepare(&state, &t.0.join("out"), true).unwrap();
        let (a, b) = (temp_name(), temp_name());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("state.json.{}.", std::process::id())));
        // Another writer's file in progress (young) stays; an old leftover goes.
        let young = state.join(&a);
        let old = state.join("state.json.1.0000000000000000.tmp");
        fs::write(&young, "x").unwrap();
        fs::write(&old, "x").unwrap();
        let past = std::time::SystemTime::now() - 2 * LEFTOVER_AGE;
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(past)
            .unwrap();
        sd.save(&sample()).unwrap();
        assert!(young.exists() && old.exists(), "a save sweeps nothing");
        StateDir::prepare(&state, &t.0.join("out"), true).unwrap();
        assert!(young.exists());
        assert!(!old.exists());
        assert!(state.join(FILE_NAME).is_file());
    }
}
