//! The output directory and its atomic writer (DESIGN.md §4), the only code that touches it.
//!
//! Layout, as the kubelet's AtomicWriter leaves it:
//! ```text
//! DIR/name     -> ..data/name            (one visible symlink per top-level name)
//! DIR/..data   -> ..2026_11_27_13_01_02.123456789
//! DIR/..2026_11_27_13_01_02.123456789/   (the complete current version)
//! ```
//! Invariants: a new version is written completely into a fresh directory before the `..data`
//! symlink is renamed over (the only moment readers can observe); a failure before that moment
//! removes the new directory and leaves the previous version untouched; an unchanged payload
//! (content, mode and owner) changes nothing on disk; commits on one directory are serialised
//! by an exclusive `flock` on the directory itself; secrets go only to tmpfs/ramfs unless
//! `allow_disk` is set.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::render::{FileContent, Payload};
use crate::secret::SecretBytes;

pub const DATA_LINK: &str = "..data";
const DATA_TMP_LINK: &str = "..data_tmp";
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "{dir} is not on tmpfs or ramfs (filesystem type {fs_type:#x}): secrets would be written to disk. \
         Mount an emptyDir with medium: Memory there, or pass --allow-disk to accept this"
    )]
    NotTmpfs { dir: PathBuf, fs_type: i64 },
    #[error("{path} exists and is not a link written by secretdrop; refusing to replace it (move it away or choose another --dir)")]
    Occupied { path: PathBuf },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl VolumeError {
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            VolumeError::NotTmpfs { .. } | VolumeError::Occupied { .. }
        )
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// The payload equals the current version: nothing was written.
    Unchanged { version: String },
    /// A new version directory was written and swapped in.
    Written { version: String },
}

#[derive(Debug, Clone)]
pub struct Volume {
    dir: PathBuf,
    allow_disk: bool,
    keep_previous: bool,
}

impl Volume {
    pub fn new(dir: impl Into<PathBuf>, allow_disk: bool) -> Volume {
        Volume {
            dir: dir.into(),
            allow_disk,
            keep_previous: false,
        }
    }

    /// Leaves the replaced version in place after a commit, for [`Volume::retire`] to remove
    /// later: a reader that resolved `..data` just before the swap can still finish reading.
    /// The next commit removes it in any case.
    pub fn keeping_previous(mut self) -> Volume {
        self.keep_previous = true;
        self
    }

    /// Removes a version directory that is no longer current.
    pub fn retire(&self, version: &str) -> Result<(), VolumeError> {
        if !is_version_name(version) || self.current_version().as_deref() == Some(version) {
            return Ok(());
        }
        let _lock = DirLock::acquire(&self.dir)?;
        let path = self.dir.join(version);
        match fs::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io("remove old version", &path)(e))
            }
            _ => Ok(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Refuses a directory (or, if it does not exist yet, its nearest existing parent) that is
    /// not memory-backed, unless disk was explicitly allowed.
    pub fn check_filesystem(&self) -> Result<(), VolumeError> {
        if self.allow_disk {
            return Ok(());
        }
        let mut probe = self.dir.as_path();
        while !probe.exists() {
            probe = match probe.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
        }
        let fs_type = statfs_type(probe).map_err(io("statfs", probe))?;
        if fs_type != TMPFS_MAGIC && fs_type != RAMFS_MAGIC {
            return Err(VolumeError::NotTmpfs {
                dir: self.dir.clone(),
                fs_type,
            });
        }
        Ok(())
    }

    /// The current version directory's name, if a complete version exists.
    pub fn current_version(&self) -> Option<String> {
        let target = fs::read_link(self.dir.join(DATA_LINK)).ok()?;
        let name = target.to_str()?.to_string();
        self.dir.join(&name).is_dir().then_some(name)
    }

    /// Makes the directory hold exactly `payload`, atomically.
    pub fn commit(&self, payload: &Payload) -> Result<Commit, VolumeError> {
        self.check_filesystem()?;
        fs::create_dir_all(&self.dir).map_err(io("create directory", &self.dir))?;
        let _lock = DirLock::acquire(&self.dir)?;
        self.check_visible_names(payload)?;
        let current = self.current_version();
        self.remove_leftovers(current.as_deref())?;

        let old_files = match &current {
            Some(v) => list_files(&self.dir.join(v))?,
            None => BTreeSet::new(),
        };
        let stale: Vec<String> = old_files
            .iter()
            .filter(|p| !payload.files.contains_key(*p))
            .cloned()
            .collect();
        if let Some(v) = &current {
            if stale.is_empty() && self.same_as(v, payload)? {
                self.link_visible(payload)?;
                return Ok(Commit::Unchanged { version: v.clone() });
            }
        }

        let version = self.write_version(payload)?;
        let tmp = self.dir.join(DATA_TMP_LINK);
        let swap = std::os::unix::fs::symlink(&version, &tmp)
            .map_err(io("create symlink", &tmp))
            .and_then(|_| fs::rename(&tmp, self.dir.join(DATA_LINK)).map_err(io("rename", &tmp)));
        if let Err(e) = swap {
            let _ = fs::remove_file(&tmp);
            let _ = fs::remove_dir_all(self.dir.join(&version));
            return Err(e);
        }
        // The new version is live. What follows only tidies up; a failure leaves a consistent
        // directory that the next commit finishes cleaning.
        self.link_visible(payload)?;
        let new_top: BTreeSet<&str> = payload.files.keys().map(|k| top_level(k)).collect();
        for name in stale.iter().map(|p| top_level(p)).collect::<BTreeSet<_>>() {
            if !new_top.contains(name) {
                let link = self.dir.join(name);
                if is_symlink(&link) {
                    fs::remove_file(&link).map_err(io("remove stale link", &link))?;
                }
            }
        }
        if let Some(old) = current.filter(|_| !self.keep_previous) {
            let old_dir = self.dir.join(old);
            fs::remove_dir_all(&old_dir).map_err(io("remove old version", &old_dir))?;
        }
        Ok(Commit::Written { version })
    }

    /// Every top-level name must be free or already our `..data/` link.
    fn check_visible_names(&self, payload: &Payload) -> Result<(), VolumeError> {
        for name in payload
            .files
            .keys()
            .map(|k| top_level(k))
            .collect::<BTreeSet<_>>()
        {
            let path = self.dir.join(name);
            match fs::symlink_metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("stat", &path)(e)),
                Ok(_) if is_our_link(&path, name) => {}
                Ok(_) => return Err(VolumeError::Occupied { path }),
            }
        }
        Ok(())
    }

    /// Removes `..data_tmp` and version directories other than the current one: what an
    /// interrupted commit leaves behind.
    fn remove_leftovers(&self, current: Option<&str>) -> Result<(), VolumeError> {
        let entries = fs::read_dir(&self.dir).map_err(io("list", &self.dir))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if name == DATA_TMP_LINK {
                fs::remove_file(&path).map_err(io("remove leftover", &path))?;
            } else if is_version_name(name) && Some(name) != current {
                tracing::info!(leftover = %path.display(), "removing a version left by an interrupted write");
                fs::remove_dir_all(&path).map_err(io("remove leftover", &path))?;
            }
        }
        Ok(())
    }

    /// True when the version holds exactly the payload's bytes, modes and owners.
    fn same_as(&self, version: &str, payload: &Payload) -> Result<bool, VolumeError> {
        let base = self.dir.join(version);
        for (rel, want) in &payload.files {
            let path = base.join(rel);
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => m,
                _ => return Ok(false),
            };
            if meta.mode() & 0o7777 != want.mode
                || want.owner.is_some_and(|u| u != meta.uid())
                || want.group.is_some_and(|g| g != meta.gid())
                || meta.len() != want.data.len() as u64
            {
                return Ok(false);
            }
            let have = SecretBytes::new(fs::read(&path).map_err(io("read", &path))?);
            if have != want.data {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes a new version directory; on any failure removes it and returns the error.
    fn write_version(&self, payload: &Payload) -> Result<String, VolumeError> {
        let (name, path) = self.create_version_dir()?;
        let result = payload
            .files
            .iter()
            .try_for_each(|(rel, file)| write_file(&path, rel, file));
        match result {
            Ok(()) => Ok(name),
            Err(e) => {
                let _ = fs::remove_dir_all(&path);
                Err(e)
            }
        }
    }

    /// `..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN` in UTC, unique in the directory, mode 0755.
    fn create_version_dir(&self) -> Result<(String, PathBuf), VolumeError> {
        for _ in 0..100 {
            let stamp = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
            let name = format!(
                "..{}",
                stamp.trim_end_matches('Z').replace(['-', 'T', ':'], "_")
            );
            let path = self.dir.join(&name);
            match fs::create_dir(&path) {
                Ok(()) => {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                        .map_err(io("chmod", &path))?;
                    return Ok((name, path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io("create version directory", &path)(e)),
            }
        }
        Err(VolumeError::Io {
            op: "create version directory",
            path: self.dir.clone(),
            source: std::io::Error::other("no unique name after 100 attempts"),
        })
    }

    /// Creates the missing `name -> ..data/name` links.
    fn link_visible(&self, payload: &Payload) -> Result<(), VolumeError> {
        for name in payload
            .files
            .keys()
            .map(|k| top_level(k))
            .collect::<BTreeSet<_>>()
        {
            let link = self.dir.join(name);
            if fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new(DATA_LINK).join(name), &link)
                    .map_err(io("create symlink", &link))?;
            }
        }
        Ok(())
    }
}

fn write_file(base: &Path, rel: &str, file: &FileContent) -> Result<(), VolumeError> {
    let path = base.join(rel);
    if let Some(parent) = path.parent() {
        if parent != base {
            create_dirs(base, parent)?;
        }
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io("create", &path))?;
    f.write_all(file.data.expose())
        .map_err(io("write", &path))?;
    // Explicit chmod: the umask never reduces the configured mode.
    f.set_permissions(fs::Permissions::from_mode(file.mode))
        .map_err(io("chmod", &path))?;
    if file.owner.is_some() || file.group.is_some() {
        std::os::unix::fs::fchown(&f, file.owner, file.group).map_err(io("chown", &path))?;
    }
    Ok(())
}

/// Nested directories inside a version, 0755 regardless of umask.
fn create_dirs(base: &Path, dir: &Path) -> Result<(), VolumeError> {
    let mut cur = base.to_path_buf();
    for part in dir.strip_prefix(base).unwrap_or(dir).components() {
        cur.push(part);
        match fs::create_dir(&cur) {
            Ok(()) => fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                .map_err(io("chmod", &cur))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("create directory", &cur)(e)),
        }
    }
    Ok(())
}

/// Relative paths of the regular files under `root`.
fn list_files(root: &Path) -> Result<BTreeSet<String>, VolumeError> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(io("list", &dir))?.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(_) => {
                    if let Some(rel) = path.strip_prefix(root).ok().and_then(|r| r.to_str()) {
                        out.insert(rel.to_string());
                    }
                }
                Err(_) => {}
            }
        }
    }
    Ok(out)
}

fn top_level(rel: &str) -> &str {
    rel.split('/').next().unwrap_or(rel)
}

fn is_symlink(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

fn is_our_link(path: &Path, name: &str) -> bool {
    fs::read_link(path).is_ok_and(|t| t == Path::new(DATA_LINK).join(name))
}

/// `..` followed by a digit: the version directories we create (not `..data`, not `..data_tmp`).
fn is_version_name(name: &str) -> bool {
    name.strip_prefix("..")
        .and_then(|r| r.chars().next())
        .is_some_and(|c| c.is_ascii_digit())
}

fn statfs_type(path: &Path) -> std::io::Result<i64> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path contains NUL"))?;
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated string and `buf` a properly sized out-parameter.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(buf.f_type as i64)
}

/// An exclusive `flock` on the output directory, released on drop.
struct DirLock(#[allow(dead_code)] fs::File);

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock, VolumeError> {
        let f = fs::File::open(dir).map_err(io("open", dir))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io("lock", dir)(std::io::Error::last_os_error()));
        }
        Ok(DirLock(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    fn tmp(name: &str) -> Tmp {
        let p = PathBuf::from(format!(
            "/dev/shm/secretdrop-unit-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&p);
        Tmp(p)
    }

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        Payload {
            files: files
                .iter()
                .map(|(k, v, m)| {
                    (
                        k.to_string(),
                        FileContent {
                            data: SecretBytes::new(v.as_bytes().to_vec()),
                            mode: *m,
                            owner: None,
                            group: None,
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn entries(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    #[test]
    fn first_write_lays_out_links_and_a_version() {
        let t = tmp("first");
        let v = Volume::new(&t.0, false);
        let Commit::Written { version } = v
            .commit(&payload(&[("a", "1", 0o600), ("d/b", "2", 0o644)]))
            .unwrap()
        else {
            panic!("expected a write")
        };
        assert_eq!(
            fs::read_link(t.0.join("..data")).unwrap(),
            PathBuf::from(&version)
        );
        assert_eq!(
            fs::read_link(t.0.join("a")).unwrap(),
            PathBuf::from("..data/a")
        );
        assert_eq!(fs::read_to_string(t.0.join("d/b")).unwrap(), "2");
        assert_eq!(fs::metadata(t.0.join("a")).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            entries(&t.0),
            ["..data", &version, "a", "d"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        assert!(
            version.starts_with("..20") && version.len() == "..2026_11_27_13_01_02.123456789".len(),
            "{version}"
        );
    }

    #[test]
    fn unchanged_payload_touches_nothing_but_mode_change_is_a_change() {
        let t = tmp("same");
        let v = Volume::new(&t.0, false);
        let p = payload(&[("a", "1", 0o600)]);
        let Commit::Written { version } = v.commit(&p).unwrap() else {
            panic!()
        };
        let mtime = fs::metadata(t.0.join(&version)).unwrap().mtime_nsec();
        assert_eq!(
            v.commit(&p).unwrap(),
            Commit::Unchanged {
                version: version.clone()
            }
        );
        assert_eq!(
            fs::metadata(t.0.join(&version)).unwrap().mtime_nsec(),
            mtime
        );
        let Commit::Written { version: v2 } = v.commit(&payload(&[("a", "1", 0o640)])).unwrap()
        else {
            panic!()
        };
        assert_ne!(v2, version);
        assert!(!t.0.join(&version).exists(), "old version removed");
        assert_eq!(fs::metadata(t.0.join("a")).unwrap().mode() & 0o777, 0o640);
    }

    #[test]
    fn removed_objects_lose_their_links_and_leftovers_are_cleaned() {
        let t = tmp("prune");
        let v = Volume::new(&t.0, false);
        v.commit(&payload(&[("a", "1", 0o600), ("b", "2", 0o600)]))
            .unwrap();
        fs::create_dir(t.0.join("..2020_01_01_00_00_00.000000001")).unwrap();
        std::os::unix::fs::symlink("nowhere", t.0.join("..data_tmp")).unwrap();
        let Commit::Written { version } = v.commit(&payload(&[("a", "1", 0o600)])).unwrap() else {
            panic!()
        };
        assert_eq!(
            entries(&t.0),
            ["..data", &version, "a"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
    }

    #[test]
    fn a_foreign_file_in_the_way_is_refused_before_anything_is_written() {
        let t = tmp("occupied");
        fs::create_dir_all(&t.0).unwrap();
        fs::write(t.0.join("a"), "mine").unwrap();
        let e = Volume::new(&t.0, false)
            .commit(&payload(&[("a", "1", 0o600)]))
            .unwrap_err();
        assert!(matches!(e, VolumeError::Occupied { .. }), "{e}");
        assert_eq!(entries(&t.0), BTreeSet::from(["a".to_string()]));
    }

    #[test]
    fn disk_directories_are_refused_unless_allowed() {
        let dir = std::env::current_dir()
            .unwrap()
            .join("target")
            .join("not-tmpfs-unit");
        let e = Volume::new(&dir, false).check_filesystem();
        if statfs_type(&std::env::current_dir().unwrap()).unwrap() != TMPFS_MAGIC {
            assert!(matches!(e, Err(VolumeError::NotTmpfs { .. })), "{e:?}");
        }
        assert!(Volume::new(&dir, true).check_filesystem().is_ok());
    }
}
