//! [`Dir`]: a directory held open by descriptor, and the only `unsafe` of the volume.
//!
//! Every method names one entry of the directory, resolved relative to the descriptor, and none
//! follows a symlink at that entry (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, or calls that act on the
//! link itself). A name is a single component: `a/b` or `..` would let the kernel walk, and
//! follow links, in the middle of a path, so they are refused. Whatever an app sharing the volume
//! plants in it, an operation through a `Dir` stays inside it.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What an entry is, as `fstatat(AT_SYMLINK_NOFOLLOW)` sees it: a symlink is a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

impl Kind {
    /// "a directory", "a regular file"...: for messages about what was found.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Dir => "a directory",
            Kind::File => "a regular file",
            Kind::Symlink => "a symlink",
            Kind::Other => "a special file",
        }
    }
}

/// An open directory. It holds a `File` rather than a bare descriptor for the safe `fstat` and
/// `fchmod` that come with it; `path` only labels errors and logs.
#[derive(Debug)]
pub struct Dir {
    file: File,
    path: PathBuf,
}

/// `name` as a C string, if it is a single path component.
fn component(name: &OsStr) -> io::Result<CString> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single path component"),
        ));
    }
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

/// A libc return value: -1 means failure with the reason in `errno`.
fn check<T: Copy + PartialEq + From<i8>>(rc: T) -> io::Result<T> {
    if rc == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Takes ownership of a descriptor a successful `open`/`openat` just returned.
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel, is open, and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl Dir {
    /// Opens `path` itself as a directory. Symlinks on the way to it are followed: the operator
    /// chose this path (and a kubelet may reach a volume through one); only what lies below it
    /// is shared with the app and handled without following.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        // SAFETY: `c` is NUL-terminated and outlives the call.
        let fd = check(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        Ok(Dir {
            file: File::from(owned(fd)),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of entry `name`, for messages.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// `openat(name)` with `O_NOFOLLOW | O_CLOEXEC` added to `flags`: fails with ELOOP when
    /// `name` is a symlink.
    fn open_at(&self, name: &OsStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
        let c = component(name)?;
        // SAFETY: `c` is NUL-terminated and outlives the call; `mode` is read only with O_CREAT.
        let fd = check(unsafe {
            libc::openat(
                self.fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                libc::c_uint::from(mode),
            )
        })?;
        Ok(owned(fd))
    }

    /// The subdirectory `name`; fails if it is a symlink (ELOOP) or not a directory (ENOTDIR).
    pub fn sub(&self, name: impl AsRef<OsStr>) -> io::Result<Dir> {
        let name = name.as_ref();
        let fd = self.open_at(name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        Ok(Dir {
            file: File::from(fd),
            path: self.join(name),
        })
    }

    /// Creates the subdirectory `name` with exactly `mode` (set explicitly: the umask never
    /// reduces it) and returns it open; EEXIST if the name is taken, whatever by.
    pub fn create_dir(&self, name: impl AsRef<OsStr>, mode: u32) -> io::Result<Dir> {
        let name = name.as_ref();
        let c = component(name)?;
        // SAFETY: `c` is NUL-terminated and outlives the call. mkdirat never follows a link at
        // the last component: an existing entry of any kind is EEXIST.
        check(unsafe { libc::mkdirat(self.fd(), c.as_ptr(), 0o700) })?;
        let dir = self.sub(name)?;
        dir.file
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
        Ok(dir)
    }

    /// Creates the regular file `name`, mode 0600 until the caller sets the final one.
    /// `O_EXCL` refuses any existing entry, a dangling symlink included.
    pub fn create_file(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
        Ok(File::from(self.open_at(name.as_ref(), flags, 0o600)?))
    }

    /// Opens `name` for reading, refusing a symlink. `O_NONBLOCK` so that a planted FIFO fails
    /// the caller's regular-file check instead of hanging the open; it changes nothing for
    /// regular files.
    pub fn open_file(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        let flags = libc::O_RDONLY | libc::O_NONBLOCK;
        Ok(File::from(self.open_at(name.as_ref(), flags, 0)?))
    }

    /// What `name` is, without following it.
    pub fn kind(&self, name: impl AsRef<OsStr>) -> io::Result<Kind> {
        let c = component(name.as_ref())?;
        let mut st = MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `c` is NUL-terminated; `st` is a properly sized out-parameter that fstatat
        // fills completely when it returns 0, and is read only then.
        check(unsafe {
            libc::fstatat(
                self.fd(),
                c.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        // SAFETY: initialised by the successful fstatat above.
        let mode = unsafe { st.assume_init() }.st_mode & libc::S_IFMT;
        Ok(match mode {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFREG => Kind::File,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        })
    }

    /// The target of the symlink `name` (EINVAL if `name` is not a symlink).
    pub fn read_link(&self, name: impl AsRef<OsStr>) -> io::Result<OsString> {
        let c = component(name.as_ref())?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: `c` is NUL-terminated; readlinkat writes at most `buf.len()` bytes into `buf`.
        let n = check(unsafe {
            libc::readlinkat(self.fd(), c.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        })?;
        // readlinkat does not say whether it truncated; a full buffer may have.
        let n = usize::try_from(n).map_err(io::Error::other)?;
        if n >= buf.len() {
            return Err(io::Error::other("symlink target longer than PATH_MAX"));
        }
        buf.truncate(n);
        Ok(OsString::from_vec(buf))
    }

    /// Creates the symlink `name -> target` (EEXIST if `name` is taken).
    pub fn symlink(&self, target: impl AsRef<OsStr>, name: impl AsRef<OsStr>) -> io::Result<()> {
        let t = CString::new(target.as_ref().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "target contains NUL"))?;
        let c = component(name.as_ref())?;
        // SAFETY: both strings are NUL-terminated and outlive the call.
        check(unsafe { libc::symlinkat(t.as_ptr(), self.fd(), c.as_ptr()) })?;
        Ok(())
    }

    /// Renames `from` over `to`, both in this directory; acts on the entries, not their targets.
    pub fn rename(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> io::Result<()> {
        let f = component(from.as_ref())?;
        let t = component(to.as_ref())?;
        // SAFETY: both strings are NUL-terminated and outlive the call.
        check(unsafe { libc::renameat(self.fd(), f.as_ptr(), self.fd(), t.as_ptr()) })?;
        Ok(())
    }

    /// Unlinks `name` (a symlink itself, never its target); EISDIR for a directory.
    pub fn unlink(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        self.unlink_at(name.as_ref(), 0)
    }

    /// Removes the empty directory `name`.
    fn rmdir(&self, name: &OsStr) -> io::Result<()> {
        self.unlink_at(name, libc::AT_REMOVEDIR)
    }

    fn unlink_at(&self, name: &OsStr, flags: libc::c_int) -> io::Result<()> {
        let c = component(name)?;
        // SAFETY: `c` is NUL-terminated and outlives the call.
        check(unsafe { libc::unlinkat(self.fd(), c.as_ptr(), flags) })?;
        Ok(())
    }

    /// Removes `name` whatever it is, never following a link: a directory is emptied through
    /// descriptors and removed, anything else (a symlink included) is unlinked. An entry that
    /// is already gone is fine.
    pub fn remove_all(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let name = name.as_ref();
        match self.kind(name) {
            Ok(Kind::Dir) => {}
            Ok(_) => return gone_is_ok(self.unlink(name)),
            Err(e) => return gone_is_ok(Err(e)),
        }
        // Depth first with an explicit stack: a deep planted tree costs heap and descriptors
        // (running out fails the removal) but cannot overflow the thread's stack.
        let mut stack = vec![(self.sub(name)?, name.to_os_string())];
        while let Some((dir, _)) = stack.last() {
            match dir.unlink_all_but_one_subdir()? {
                Some(next) => stack.push(next),
                None => {
                    if let Some((_, done)) = stack.pop() {
                        let parent = stack.last().map_or(self, |(d, _)| d);
                        gone_is_ok(parent.rmdir(&done))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Unlinks every entry that is not a directory and returns the first subdirectory, opened
    /// without following, or None when the directory is now empty.
    fn unlink_all_but_one_subdir(&self) -> io::Result<Option<(Dir, OsString)>> {
        for name in self.names()? {
            match self.kind(&name) {
                Ok(Kind::Dir) => return Ok(Some((self.sub(&name)?, name))),
                Ok(_) => gone_is_ok(self.unlink(&name))?,
                Err(e) => gone_is_ok(Err(e))?,
            }
        }
        Ok(None)
    }

    /// The names in this directory, without `.` and `..`.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        // fdopendir takes over the descriptor it is given, so it gets a duplicate of ours.
        let dup: OwnedFd = self.file.try_clone()?.into();
        // SAFETY: `dup` is an open directory descriptor; on success the stream owns it (closed
        // by closedir below), on failure it is still ours and dropped.
        let stream = unsafe { libc::fdopendir(dup.as_raw_fd()) };
        if stream.is_null() {
            return Err(io::Error::last_os_error());
        }
        let _ = dup.into_raw_fd();
        struct Stream(*mut libc::DIR);
        impl Drop for Stream {
            fn drop(&mut self) {
                // SAFETY: a stream from a successful fdopendir, closed exactly once.
                unsafe { libc::closedir(self.0) };
            }
        }
        let stream = Stream(stream);
        // The duplicate shares our descriptor's read position, which an earlier listing left
        // at the end.
        // SAFETY: a valid stream.
        unsafe { libc::rewinddir(stream.0) };
        let mut names = Vec::new();
        loop {
            // readdir returns NULL both at the end and on error; only errno tells them apart.
            // SAFETY: errno is thread-local; setting it is always allowed.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: a valid stream; the entry stays valid until the next readdir on it.
            let entry = unsafe { libc::readdir(stream.0) };
            if entry.is_null() {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(0) | None => Ok(names),
                    Some(_) => Err(e),
                };
            }
            // SAFETY: `d_name` is NUL-terminated within the entry, copied out before the next
            // readdir.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_os_string());
            }
        }
    }

    /// The directory's own metadata (`fstat` of the descriptor, not of the path).
    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.file.metadata()
    }

    /// Where the kernel says this directory is now (`/proc/self/fd/N`), links resolved: the
    /// directory actually opened, whatever its path was made of. None without `/proc` (an
    /// empty root) or when the directory has been removed.
    pub fn kernel_path(&self) -> Option<PathBuf> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", self.fd())).ok()?;
        let deleted = link.as_os_str().as_bytes().ends_with(b" (deleted)");
        (link.is_absolute() && !deleted).then_some(link)
    }

    /// Takes an exclusive `flock` on the directory, held until this `Dir` is dropped.
    pub fn lock(&self) -> io::Result<()> {
        // SAFETY: flock on a descriptor we own.
        check(unsafe { libc::flock(self.fd(), libc::LOCK_EX) })?;
        Ok(())
    }

    /// The filesystem type (statfs `f_type`) of the directory actually opened.
    pub fn fs_type(&self) -> io::Result<i64> {
        let mut buf = MaybeUninit::<libc::statfs>::uninit();
        // SAFETY: `buf` is a properly sized out-parameter, read only after success.
        check(unsafe { libc::fstatfs(self.fd(), buf.as_mut_ptr()) })?;
        // SAFETY: initialised by the successful fstatfs above.
        let buf = unsafe { buf.assume_init() };
        #[allow(clippy::unnecessary_cast)] // f_type's type differs between architectures
        Ok(buf.f_type as i64)
    }
}

/// The filesystem type (statfs `f_type`) of `path`, for a directory not created yet: its
/// nearest existing parent.
pub fn statfs_type(path: &Path) -> io::Result<i64> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut buf = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c` is NUL-terminated; `buf` is a properly sized out-parameter, read only after
    // success.
    check(unsafe { libc::statfs(c.as_ptr(), buf.as_mut_ptr()) })?;
    // SAFETY: initialised by the successful statfs above.
    let buf = unsafe { buf.assume_init() };
    #[allow(clippy::unnecessary_cast)] // f_type's type differs between architectures
    Ok(buf.f_type as i64)
}

/// ENOENT counts as done: removing what is already gone (by a racing cleanup) succeeds.
fn gone_is_ok(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(name: &str) -> PathBuf {
        let p = PathBuf::from(format!(
            "/dev/shm/secretdrop-unit-dir-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn names_with_a_slash_or_dots_are_refused() {
        let p = scratch("names");
        let d = Dir::open(&p).unwrap();
        for bad in ["a/b", "..", ".", "", "/etc"] {
            let e = d.kind(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        std::fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn remove_all_unlinks_links_at_every_depth_and_lists_twice() {
        let p = scratch("rm");
        let outside = scratch("rm-outside");
        std::fs::write(outside.join("canary"), "x").unwrap();
        std::fs::create_dir_all(p.join("v/a/b/c")).unwrap();
        std::fs::write(p.join("v/a/b/c/f"), "f").unwrap();
        symlink(&outside, p.join("v/evil")).unwrap();
        symlink(&outside, p.join("v/a/b/evil")).unwrap();
        symlink(outside.join("canary"), p.join("v/a/canary")).unwrap();
        let d = Dir::open(&p).unwrap();
        assert_eq!(d.names().unwrap(), vec![OsString::from("v")]);
        assert_eq!(d.names().unwrap(), vec![OsString::from("v")], "rewound");
        d.remove_all("v").unwrap();
        d.remove_all("v").unwrap();
        assert!(d.names().unwrap().is_empty());
        assert_eq!(
            std::fs::read_to_string(outside.join("canary")).unwrap(),
            "x"
        );
        // A symlink to a directory is unlinked, not emptied.
        symlink(&outside, p.join("link")).unwrap();
        d.remove_all("link").unwrap();
        assert!(outside.join("canary").exists());
        assert!(d.sub("link").is_err());
        std::fs::remove_dir_all(&p).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn nothing_opens_through_a_symlink() {
        let p = scratch("nofollow");
        let outside = scratch("nofollow-outside");
        std::fs::write(outside.join("f"), "x").unwrap();
        symlink(&outside, p.join("dir")).unwrap();
        symlink(outside.join("f"), p.join("file")).unwrap();
        symlink(outside.join("new"), p.join("dangling")).unwrap();
        let d = Dir::open(&p).unwrap();
        assert_eq!(d.kind("dir").unwrap(), Kind::Symlink);
        assert!(d.sub("dir").is_err());
        assert!(d.open_file("file").is_err());
        assert!(d.create_file("dangling").is_err());
        assert!(d.create_dir("dir", 0o755).is_err());
        assert!(!outside.join("new").exists());
        std::fs::remove_dir_all(&p).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }
}
