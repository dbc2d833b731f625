//! The output directory and its atomic writer, the only code that touches it.
//!
//! Layout, as the kubelet's AtomicWriter leaves it:
//! ```text
//! DIR/name     -> ..data/name            (one visible symlink per top-level name)
//! DIR/..data   -> ..2026_11_27_13_01_02.123456789
//! DIR/..2026_11_27_13_01_02.123456789/   (the complete current version)
//! ```
//! Invariants:
//! * A new version is written completely into a fresh directory before the `..data` symlink is
//!   renamed over (the only moment readers can observe); a failure before that moment removes
//!   the new directory and leaves the previous version untouched; an unchanged payload
//!   (content, mode and owner) changes nothing on disk; commits on one directory are
//!   serialised by an exclusive `flock` on the directory itself; secrets go only to
//!   tmpfs/ramfs unless `allow_disk` is set.
//! * DIR is shared with the app, which may plant anything in it. `..data` is trusted only when
//!   it is a symlink whose target is a single component of our exact version form
//!   (`..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN`) naming a real directory, not a symlink, in DIR.
//!   Anything else is foreign: [`Volume::commit`] refuses the directory before changing
//!   anything ([`VolumeError::Foreign`], a configuration error) and
//!   [`Volume::current_version`] reports no version, so probes say "not ready".
//! * No operation follows a symlink below DIR. DIR is opened once (the path to it may pass
//!   through symlinks: the operator chose it) and every entry under it is reached through
//!   directory descriptors, one component at a time, with no-follow flags (the `dir` module).
//!   Removal walks directories by descriptor and unlinks links instead of following them, so
//!   nothing outside DIR is ever read, written or deleted.
//! * Cleanup touches only our own names: `..data_tmp` whatever its type, version-named entries
//!   other than the current version (a real directory recursively, anything else unlinked),
//!   and stale visible names only while they are our `..data/name` links.

pub(crate) mod dir;
mod read;
pub mod set;
pub mod view;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::render::{FileContent, Payload};
use crate::secret::SecretBytes;
use dir::{statfs_type, Dir, Kind};
pub use read::{Objects, ReadError};
pub use set::VolumeSet;

pub const DATA_LINK: &str = "..data";
const DATA_TMP_LINK: &str = "..data_tmp";
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

impl From<VolumeError> for crate::error::Error {
    fn from(e: VolumeError) -> Self {
        crate::error::Error::failed(e.is_config(), e)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "{dir} is not on tmpfs or ramfs (filesystem type {}): secrets would be written to disk. \
         Mount an emptyDir with medium: Memory there, or pass --allow-disk to accept this",
        fs_type_name(*fs_type)
    )]
    NotTmpfs { dir: PathBuf, fs_type: i64 },
    /// DIR does not exist, and where it would be created is not memory-backed: most often no
    /// volume is mounted there (the default /mnt/secrets without its emptyDir).
    #[error(
        "{dir} does not exist, and {parent}, where it would be created, is not on tmpfs or \
         ramfs (filesystem type {}): mount an emptyDir with medium: Memory at {dir} (or name \
         the directory where one is mounted), or pass --allow-disk to accept a directory on disk",
        fs_type_name(*fs_type)
    )]
    Missing {
        dir: PathBuf,
        parent: PathBuf,
        fs_type: i64,
    },
    #[error("{path} exists and is not a link written by secretdrop; refusing to replace it (move it away or choose another --dir)")]
    Occupied { path: PathBuf },
    #[error(
        "{path} is {found}, not secretdrop's link to one of its version directories \
         (..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN in the same directory); refusing to use this directory \
         and changed nothing. Something other than secretdrop wrote it: remove {path} or choose \
         another --dir"
    )]
    Foreign { path: PathBuf, found: String },
    /// A payload name of a several-volume set without its member's `..N/` prefix: a bug.
    #[error("internal: payload entry {name:?} names no volume of the set")]
    Unprefixed { name: String },
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
            VolumeError::NotTmpfs { .. }
                | VolumeError::Missing { .. }
                | VolumeError::Occupied { .. }
                | VolumeError::Foreign { .. }
        )
    }
}

fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> VolumeError {
    let path = path.into();
    move |source| VolumeError::Io { op, path, source }
}

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// The payload equals the current version: nothing was written.
    Unchanged { version: String },
    /// A new version directory was written and swapped in.
    Written { version: String },
}

/// Checks, before anything is fetched, that this process may give the files the owners the
/// config asks for: without the CHOWN capability a process can only set its own uid and its
/// own groups, and `fchown` would fail at the first commit. The message says what to add.
pub fn check_ownership(objects: &[crate::render::FileSpec]) -> Result<(), String> {
    if has_cap_chown() {
        return Ok(());
    }
    // SAFETY: these calls only read the process's credentials.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let groups = own_groups();
    for o in objects {
        let owner = o.owner.filter(|&u| u != uid);
        let group = o.group.filter(|&g| g != gid && !groups.contains(&g));
        if owner.is_none() && group.is_none() {
            continue;
        }
        let wanted = match (owner, group) {
            (Some(u), Some(g)) => format!("owner {u} and group {g}"),
            (Some(u), None) => format!("owner {u}"),
            (None, g) => format!("group {}", g.unwrap_or_default()),
        };
        return Err(format!(
            "object {:?} asks for {wanted}, but secretdrop runs as uid {uid} gid {gid} without \
             the CHOWN capability, so it cannot set them. Either drop owner/group (fsGroup and \
             mode 0440 often suffice), or run secretdrop with securityContext \
             {{runAsUser: 0, runAsNonRoot: false, capabilities: {{drop: [ALL], add: [CHOWN]}}}} \
             (Kubernetes gives added capabilities only to root)",
            o.name
        ));
    }
    Ok(())
}

/// CAP_CHOWN (bit 0) in the effective set, from /proc/self/status.
fn has_cap_chown() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return true; // cannot tell: let the commit report what happens
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_none_or(|caps| caps & 1 == 1)
}

fn own_groups() -> Vec<u32> {
    // SAFETY: getgroups with a buffer of the size it reports, then truncated to what it wrote.
    unsafe {
        let n = libc::getgroups(0, std::ptr::null_mut());
        if n <= 0 {
            return Vec::new();
        }
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let n = libc::getgroups(n, groups.as_mut_ptr());
        groups.truncate(n.max(0) as usize);
        groups
    }
}

/// A filesystem type as `df -T` names it (`ext4`, `overlay`), else its magic number in hex.
fn fs_type_name(magic: i64) -> String {
    let name = match magic {
        0xef53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0x794c_7630 => "overlay",
        0x0102_1994 => "tmpfs",
        0x8584_58f6 => "ramfs",
        0x6969 => "nfs",
        0x6573_5546 => "fuse",
        0x2fc1_2fc1 => "zfs",
        0x9fa0 => "proc",
        0x6265_6572 => "sysfs",
        0xf15f => "ecryptfs",
        0x0102_1997 => "9p",
        0x4d44 => "vfat",
        0x5346_544e => "ntfs",
        0x7371_7368 => "squashfs",
        _ => return format!("{magic:#x}"),
    };
    name.to_string()
}

/// What `..data` is.
enum DataLink {
    Absent,
    /// Ours: the current version's name.
    Current(String),
    /// Not ours; what was found, for the message.
    Foreign(String),
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

    /// Removes a version directory that is no longer current (a version-named symlink is only
    /// unlinked; nothing is followed).
    pub fn retire(&self, version: &str) -> Result<(), VolumeError> {
        if !is_version_name(version) {
            return Ok(());
        }
        let dir = self.open()?;
        dir.lock().map_err(io("lock", &self.dir))?;
        // Under the lock, so the current version cannot change while we look. Whatever
        // `..data` names is kept, even when it is not trusted: readers may be using it.
        if dir.read_link(DATA_LINK).is_ok_and(|t| t == version) {
            return Ok(());
        }
        dir.remove_all(version)
            .map_err(io("remove old version", dir.join(version)))
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
        match self.require_memory(fs_type) {
            Err(VolumeError::NotTmpfs { dir, fs_type }) if probe != dir => {
                Err(VolumeError::Missing {
                    dir,
                    parent: probe.to_path_buf(),
                    fs_type,
                })
            }
            other => other,
        }
    }

    /// Refuses a filesystem type that is not memory-backed, unless `allow_disk`: for a
    /// directory already opened (its `fstatfs`), not reached by path again.
    pub(crate) fn require_memory(&self, fs_type: i64) -> Result<(), VolumeError> {
        if self.allow_disk || fs_type == TMPFS_MAGIC || fs_type == RAMFS_MAGIC {
            return Ok(());
        }
        Err(VolumeError::NotTmpfs {
            dir: self.dir.clone(),
            fs_type,
        })
    }

    /// The current version directory's name, if `..data` is ours and names a complete version;
    /// None when there is none yet or `..data` is foreign.
    pub fn current_version(&self) -> Option<String> {
        self.readiness().ok()
    }

    /// The current version's name, or why there is none (for `probe`): nothing yet, or what a
    /// foreign `..data` is. The reason names paths and link targets only, never contents.
    pub fn readiness(&self) -> Result<String, String> {
        let dir = Dir::open(&self.dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no complete render yet (the directory does not exist yet)".to_string()
            }
            _ => format!("cannot open it: {e}"),
        })?;
        match data_link(&dir) {
            Ok(DataLink::Current(version)) => Ok(version),
            Ok(DataLink::Absent) => Err("no complete render yet (no ..data version)".into()),
            Ok(DataLink::Foreign(found)) => Err(format!(
                "..data is not secretdrop's ({found}); remove it or choose another --dir"
            )),
            Err(e) => Err(format!("cannot read ..data: {e}")),
        }
    }

    /// Feeds every file of the current version to `visit` (relative path, mode, bytes) in path
    /// order, and returns the version's name; None when there is no trusted version or any entry
    /// in it is not a regular file reachable without following a link. Lets `--state-dir`
    /// check that the files on disk are the ones a previous process recorded.
    pub fn visit_current(&self, mut visit: impl FnMut(&str, u32, &[u8])) -> Option<String> {
        let dir = Dir::open(&self.dir).ok()?;
        let DataLink::Current(version) = data_link(&dir).ok()? else {
            return None;
        };
        let base = dir.sub(&version).ok()?;
        for rel in list_files(&base).ok()? {
            let (parents, leaf) = split(&rel);
            let mut parent: Option<Dir> = None;
            for part in parents {
                parent = Some(parent.as_ref().unwrap_or(&base).sub(part).ok()?);
            }
            let mut f = parent.as_ref().unwrap_or(&base).open_file(leaf).ok()?;
            let meta = f.metadata().ok()?;
            if !meta.is_file() {
                return None;
            }
            let mut data = Vec::with_capacity(usize::try_from(meta.len()).ok()?);
            let read = f.read_to_end(&mut data);
            let bytes = SecretBytes::new(data);
            read.ok()?;
            visit(&rel, meta.mode() & 0o7777, bytes.expose());
        }
        Some(version)
    }

    fn open(&self) -> Result<Dir, VolumeError> {
        Dir::open(&self.dir).map_err(io("open", &self.dir))
    }

    /// Makes the directory hold exactly `payload`, atomically.
    pub fn commit(&self, payload: &Payload) -> Result<Commit, VolumeError> {
        self.commit_keeping(payload, &[])
    }

    /// [`Volume::commit`], leaving the replaced versions named in `retiring` in place: they
    /// are still within their grace period (see [`Volume::keeping_previous`]).
    pub fn commit_keeping(
        &self,
        payload: &Payload,
        retiring: &[&str],
    ) -> Result<Commit, VolumeError> {
        self.check_filesystem()?;
        fs::create_dir_all(&self.dir).map_err(io("create directory", &self.dir))?;
        let dir = self.open()?;
        // Again on the directory actually opened, which is where the secrets will go.
        self.require_memory(dir.fs_type().map_err(io("statfs", &self.dir))?)?;
        dir.lock().map_err(io("lock", &self.dir))?;
        // Before anything changes: a foreign `..data` means we do not know what this
        // directory is, and its "old version" could be anything.
        let current = match data_link(&dir).map_err(io("read", dir.join(DATA_LINK)))? {
            DataLink::Absent => None,
            DataLink::Current(version) => Some(version),
            DataLink::Foreign(found) => {
                return Err(VolumeError::Foreign {
                    path: dir.join(DATA_LINK),
                    found,
                })
            }
        };
        check_visible_names(&dir, payload)?;
        remove_leftovers(&dir, current.as_deref(), retiring)?;

        let old_files = match &current {
            Some(v) => list_files(&dir.sub(v).map_err(io("open", dir.join(v)))?)?,
            None => BTreeSet::new(),
        };
        let stale: Vec<String> = old_files
            .iter()
            .filter(|p| !payload.files.contains_key(*p))
            .cloned()
            .collect();
        if let Some(v) = &current {
            if stale.is_empty() && same_as(&dir, v, payload)? {
                link_visible(&dir, payload)?;
                return Ok(Commit::Unchanged { version: v.clone() });
            }
        }

        let version = write_version(&dir, payload)?;
        let swap = dir
            .symlink(&version, DATA_TMP_LINK)
            .map_err(io("create symlink", dir.join(DATA_TMP_LINK)))
            .and_then(|_| {
                dir.rename(DATA_TMP_LINK, DATA_LINK)
                    .map_err(io("rename", dir.join(DATA_TMP_LINK)))
            });
        if let Err(e) = swap {
            let _ = dir.unlink(DATA_TMP_LINK);
            let _ = dir.remove_all(&version);
            return Err(e);
        }
        // The new version is live. What follows only tidies up; a failure leaves a consistent
        // directory that the next commit finishes cleaning.
        link_visible(&dir, payload)?;
        let new_top: BTreeSet<&str> = payload.files.keys().map(|k| top_level(k)).collect();
        for name in stale.iter().map(|p| top_level(p)).collect::<BTreeSet<_>>() {
            // A name the app has since taken over is the app's, not a stale link of ours.
            if !new_top.contains(name) && is_our_link(&dir, name) {
                dir.unlink(name)
                    .map_err(io("remove stale link", dir.join(name)))?;
            }
        }
        if let Some(old) = current.filter(|_| !self.keep_previous) {
            dir.remove_all(&old)
                .map_err(io("remove old version", dir.join(&old)))?;
        }
        Ok(Commit::Written { version })
    }
}

/// Classifies `..data` by reading the link itself and looking its target up as a name in DIR,
/// following neither.
fn data_link(dir: &Dir) -> std::io::Result<DataLink> {
    let kind = match dir.kind(DATA_LINK) {
        Err(e) if not_found(&e) => return Ok(DataLink::Absent),
        r => r?,
    };
    if kind != Kind::Symlink {
        return Ok(DataLink::Foreign(kind.describe().to_string()));
    }
    let target = dir.read_link(DATA_LINK)?;
    let Some(name) = target.to_str().filter(|t| is_version_name(t)) else {
        return Ok(DataLink::Foreign(format!(
            "a symlink to {}",
            Path::new(&target).display()
        )));
    };
    Ok(match dir.kind(name) {
        Ok(Kind::Dir) => DataLink::Current(name.to_string()),
        Ok(other) => DataLink::Foreign(format!(
            "a symlink to {name}, which is {} instead of a directory",
            other.describe()
        )),
        Err(e) if not_found(&e) => {
            DataLink::Foreign(format!("a symlink to {name}, which does not exist"))
        }
        Err(e) => return Err(e),
    })
}

/// Every top-level name must be free or already our `..data/` link.
fn check_visible_names(dir: &Dir, payload: &Payload) -> Result<(), VolumeError> {
    for name in top_levels(payload) {
        match dir.kind(name) {
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(io("stat", dir.join(name))(e)),
            Ok(_) if is_our_link(dir, name) => {}
            Ok(_) => {
                return Err(VolumeError::Occupied {
                    path: dir.join(name),
                })
            }
        }
    }
    Ok(())
}

/// Removes what an interrupted commit leaves behind, or an app planted under our names:
/// `..data_tmp` and version-named entries other than the current version and the replaced
/// versions still `retiring`, whatever their type, without following links.
fn remove_leftovers(
    dir: &Dir,
    current: Option<&str>,
    retiring: &[&str],
) -> Result<(), VolumeError> {
    for name in dir.names().map_err(io("list", dir.path()))? {
        let Some(name) = name.to_str() else { continue };
        if retiring.contains(&name) {
            continue;
        }
        if name == DATA_TMP_LINK || (is_version_name(name) && Some(name) != current) {
            if name != DATA_TMP_LINK {
                tracing::info!(leftover = %dir.join(name).display(), "removing a version no longer in use (left by an interrupted write or an earlier process)");
            }
            dir.remove_all(name)
                .map_err(io("remove leftover", dir.join(name)))?;
        }
    }
    Ok(())
}

/// True when the version holds exactly the payload's bytes, modes and owners. Anything that
/// cannot be opened without following a link counts as different.
fn same_as(dir: &Dir, version: &str, payload: &Payload) -> Result<bool, VolumeError> {
    let Ok(base) = dir.sub(version) else {
        return Ok(false);
    };
    for (rel, want) in &payload.files {
        let path = base.join(rel);
        let (parents, leaf) = split(rel);
        let mut parent = None;
        for part in parents {
            match parent.as_ref().unwrap_or(&base).sub(part) {
                Ok(d) => parent = Some(d),
                Err(_) => return Ok(false),
            }
        }
        let Ok(mut f) = parent.as_ref().unwrap_or(&base).open_file(leaf) else {
            return Ok(false);
        };
        let meta = f.metadata().map_err(io("stat", &path))?;
        if !meta.is_file()
            || meta.mode() & 0o7777 != want.mode
            || want.owner.is_some_and(|u| u != meta.uid())
            || want.group.is_some_and(|g| g != meta.gid())
            || meta.len() != want.data.len() as u64
        {
            return Ok(false);
        }
        // Exactly sized, so the secret is never copied into a grown buffer.
        let mut have = Vec::with_capacity(want.data.len());
        f.read_to_end(&mut have).map_err(io("read", &path))?;
        if SecretBytes::new(have) != want.data {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Writes a new version directory; on any failure removes it and returns the error.
fn write_version(dir: &Dir, payload: &Payload) -> Result<String, VolumeError> {
    let (name, version) = create_version_dir(dir)?;
    let result = payload
        .files
        .iter()
        .try_for_each(|(rel, file)| write_file(&version, rel, file));
    match result {
        Ok(()) => Ok(name),
        Err(e) => {
            drop(version);
            let _ = dir.remove_all(&name);
            Err(e)
        }
    }
}

/// `..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN` in UTC, unique in the directory, mode 0755.
fn create_version_dir(dir: &Dir) -> Result<(String, Dir), VolumeError> {
    for _ in 0..100 {
        let name = new_version_name(std::time::SystemTime::now());
        match dir.create_dir(&name, 0o755) {
            Ok(version) => return Ok((name, version)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io("create version directory", dir.join(&name))(e)),
        }
    }
    Err(VolumeError::Io {
        op: "create version directory",
        path: dir.path().to_path_buf(),
        source: std::io::Error::other("no unique name after 100 attempts"),
    })
}

fn new_version_name(t: std::time::SystemTime) -> String {
    let stamp = humantime::format_rfc3339_nanos(t).to_string();
    format!(
        "..{}",
        stamp.trim_end_matches('Z').replace(['-', 'T', ':'], "_")
    )
}

/// Creates the missing `name -> ..data/name` links.
fn link_visible(dir: &Dir, payload: &Payload) -> Result<(), VolumeError> {
    for name in top_levels(payload) {
        match dir.kind(name) {
            Err(e) if not_found(&e) => dir
                .symlink(format!("{DATA_LINK}/{name}"), name)
                .map_err(io("create symlink", dir.join(name)))?,
            Err(e) => return Err(io("stat", dir.join(name))(e)),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Writes one file of a new version: nested directories (0755 regardless of umask) and the
/// file are created relative to their parent's descriptor, refusing any existing entry.
fn write_file(version: &Dir, rel: &str, file: &FileContent) -> Result<(), VolumeError> {
    let path = version.join(rel);
    let (parents, leaf) = split(rel);
    let mut parent: Option<Dir> = None;
    for part in parents {
        let at = parent.as_ref().unwrap_or(version);
        let sub = match at.create_dir(part, 0o755) {
            // Made for an earlier file of this payload: a real directory, opened no-follow.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => at.sub(part),
            r => r,
        };
        parent = Some(sub.map_err(io("create directory", at.join(part)))?);
    }
    let mut f = parent
        .as_ref()
        .unwrap_or(version)
        .create_file(leaf)
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

/// Relative paths of the entries under `root` that are not directories (symlinks included),
/// found without following any link.
fn list_files(root: &Dir) -> Result<BTreeSet<String>, VolumeError> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<(Option<Dir>, String)> = vec![(None, String::new())];
    while let Some((sub, prefix)) = stack.pop() {
        let dir = sub.as_ref().unwrap_or(root);
        for name in dir.names().map_err(io("list", dir.path()))? {
            let Some(name) = name.to_str() else { continue };
            let rel = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            match dir.kind(name) {
                Ok(Kind::Dir) => {
                    let d = dir.sub(name).map_err(io("open", dir.join(name)))?;
                    stack.push((Some(d), rel));
                }
                Ok(_) => {
                    out.insert(rel);
                }
                Err(_) => {}
            }
        }
    }
    Ok(out)
}

/// `d/e/f` → (`[d, e]`, `f`).
fn split(rel: &str) -> (impl Iterator<Item = &str>, &str) {
    let (parents, leaf) = rel.rsplit_once('/').unwrap_or(("", rel));
    (parents.split('/').filter(|p| !p.is_empty()), leaf)
}

fn top_level(rel: &str) -> &str {
    rel.split('/').next().unwrap_or(rel)
}

fn top_levels(payload: &Payload) -> BTreeSet<&str> {
    payload.files.keys().map(|k| top_level(k)).collect()
}

fn is_our_link(dir: &Dir, name: &str) -> bool {
    dir.read_link(name)
        .is_ok_and(|t| t.as_bytes() == format!("{DATA_LINK}/{name}").as_bytes())
}

/// Exactly `..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN`, the names [`new_version_name`] makes, with
/// plausible field values. Strict because the name decides what may be deleted: `..data`,
/// `..data_tmp`, the kubelet's own `..2026_01_01_00_00_00.1234` names or anything an app
/// invents are not ours.
fn is_version_name(name: &str) -> bool {
    let Some(stamp) = name.strip_prefix("..") else {
        return false;
    };
    let b = stamp.as_bytes();
    let shape = b.len() == "2026_11_27_13_01_02.123456789".len()
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 | 10 | 13 | 16 => c == b'_',
            19 => c == b'.',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return false;
    }
    // Two ASCII digits at `i`, as a number.
    let num = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
    (1..=12).contains(&num(5))
        && (1..=31).contains(&num(8))
        && num(11) <= 23
        && num(14) <= 59
        && num(17) <= 59
}

#[cfg(test)]
mod tests;
