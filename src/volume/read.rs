//! Reading objects back out of the output directory, for `secretdrop exec` (docs/exec.md).
//!
//! Invariants:
//! * Every value of one read comes from one version directory: `..data` is resolved once (and
//!   trusted only in our exact form, as [`Volume::current_version`] does), the version directory
//!   is opened by descriptor, and each object is opened relative to it. The visible
//!   `name -> ..data/name` links are never used, so a swap in the middle cannot mix versions.
//! * A version directory is never modified after it went live, only removed. So a file opened
//!   from it holds that version's bytes; a file that vanished means the writer retired the
//!   version under us, and the read starts again from the new `..data` (bounded attempts).
//! * Nothing is followed below DIR (the `dir` module), special files are refused before they
//!   are read, and at most `limit` bytes of each object are read.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::dir::{Dir, Kind};
use super::{data_link, io, list_files, not_found, DataLink, Volume, VolumeError, DATA_LINK};
use crate::secret::SecretBytes;

/// Objects read from one version.
#[derive(Debug)]
pub struct Objects {
    /// The version directory every value came from.
    pub version: String,
    /// The values, in the order the names were asked for.
    pub values: Vec<SecretBytes>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{dir}: no complete render yet (no {DATA_LINK} version written by secretdrop)")]
    NotReady { dir: PathBuf },
    #[error("no object {name:?} in {dir} (version {version}); its objects are: {available}")]
    Missing {
        name: String,
        dir: PathBuf,
        version: String,
        available: String,
    },
    #[error("{path} is {found}, not an object file written by secretdrop")]
    NotAFile { path: PathBuf, found: &'static str },
    #[error("{path} is larger than {limit} bytes, the most read for one object")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{dir}: the version changed under every one of {attempts} reads; is something rewriting it in a loop?")]
    Unstable { dir: PathBuf, attempts: u32 },
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

impl ReadError {
    /// Errors the user fixes by naming other objects (exit code 2), as opposed to a render
    /// that is not there yet or an I/O failure.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            ReadError::Missing { .. } | ReadError::NotAFile { .. } | ReadError::TooLarge { .. }
        )
    }
}

/// One attempt's outcome: done, or the version went away and the read must start over.
enum Attempt {
    Done(Objects),
    Retired,
}

const ATTEMPTS: u32 = 10;

impl Volume {
    /// Reads the objects `names` (relative paths as in the config, e.g. `password` or
    /// `tls/ca.crt`) from the current version, all from the same one.
    pub fn read_objects(&self, names: &[&str], limit: u64) -> Result<Objects, ReadError> {
        for _ in 0..ATTEMPTS {
            let dir = match Dir::open(&self.dir) {
                Ok(d) => d,
                // Not created yet: as not ready as an empty directory.
                Err(e) if not_found(&e) => {
                    return Err(ReadError::NotReady {
                        dir: self.dir.clone(),
                    })
                }
                Err(e) => return Err(io("open", &self.dir)(e).into()),
            };
            let version = match data_link(&dir).map_err(io("read", dir.join(DATA_LINK)))? {
                DataLink::Current(v) => v,
                DataLink::Absent | DataLink::Foreign(_) => {
                    return Err(ReadError::NotReady {
                        dir: self.dir.clone(),
                    })
                }
            };
            match read_version(&dir, &version, names, limit)? {
                Attempt::Done(objects) => return Ok(objects),
                Attempt::Retired => continue,
            }
        }
        Err(ReadError::Unstable {
            dir: self.dir.clone(),
            attempts: ATTEMPTS,
        })
    }
}

fn read_version(
    dir: &Dir,
    version: &str,
    names: &[&str],
    limit: u64,
) -> Result<Attempt, ReadError> {
    let base = match dir.sub(version) {
        Ok(b) => b,
        Err(e) if not_found(&e) => return Ok(Attempt::Retired),
        Err(e) => return Err(io("open", dir.join(version))(e).into()),
    };
    let mut values = Vec::with_capacity(names.len());
    for name in names {
        match read_one(&base, name, limit)? {
            Some(v) => values.push(v),
            // Gone: either never rendered, or the whole version was retired while we read.
            None if still_current(dir, version) => {
                return Err(ReadError::Missing {
                    name: name.to_string(),
                    dir: dir.path().to_path_buf(),
                    version: version.to_string(),
                    available: available(&base),
                })
            }
            None => return Ok(Attempt::Retired),
        }
    }
    Ok(Attempt::Done(Objects {
        version: version.to_string(),
        values,
    }))
}

fn still_current(dir: &Dir, version: &str) -> bool {
    matches!(data_link(dir), Ok(DataLink::Current(v)) if v == version)
}

/// The object's bytes, or None when some part of its path does not exist.
fn read_one(base: &Dir, name: &str, limit: u64) -> Result<Option<SecretBytes>, ReadError> {
    let path = base.join(name);
    let (parents, leaf) = super::split(name);
    let mut parent: Option<Dir> = None;
    for part in parents {
        let at = parent.as_ref().unwrap_or(base);
        match at.sub(part) {
            Ok(d) => parent = Some(d),
            Err(e) if not_found(&e) => return Ok(None),
            Err(_) => return Err(not_a_file(at, part, at.join(part))),
        }
    }
    let at = parent.as_ref().unwrap_or(base);
    match at.kind(leaf) {
        Ok(Kind::File) => {}
        Ok(_) => return Err(not_a_file(at, leaf, path)),
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(io("stat", &path)(e).into()),
    }
    let file = match at.open_file(leaf) {
        Ok(f) => f,
        Err(e) if not_found(&e) => return Ok(None),
        // Swapped for a link or a FIFO between the stat and the open.
        Err(_) => return Err(not_a_file(at, leaf, path)),
    };
    let meta = file.metadata().map_err(io("stat", &path))?;
    if !meta.is_file() {
        return Err(not_a_file(at, leaf, path));
    }
    if meta.size() > limit {
        return Err(ReadError::TooLarge { path, limit });
    }
    // Sized from the file and capped one past the limit: the secret is never copied into a
    // grown (and unwiped) buffer, and a file that grows meanwhile is still caught.
    let mut data = Vec::with_capacity(meta.size() as usize + 1);
    let read = file.take(limit + 1).read_to_end(&mut data);
    let data = SecretBytes::new(data);
    read.map_err(io("read", &path))?;
    if data.len() as u64 > limit {
        return Err(ReadError::TooLarge { path, limit });
    }
    Ok(Some(data))
}

fn not_a_file(at: &Dir, name: &str, path: PathBuf) -> ReadError {
    let found = at.kind(name).map_or("unreadable", Kind::describe);
    ReadError::NotAFile { path, found }
}

/// The object names of a version, for the message about a missing one.
fn available(base: &Dir) -> String {
    const SHOWN: usize = 20;
    match list_files(base) {
        Ok(names) if names.is_empty() => "(none)".into(),
        Ok(names) => crate::error::first_few(&names, SHOWN),
        Err(_) => "(cannot list them)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{FileContent, Payload};
    use std::fs;

    fn payload(files: &[(&str, &str)]) -> Payload {
        Payload {
            files: files
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        FileContent {
                            data: SecretBytes::new(v.as_bytes().to_vec()),
                            mode: 0o600,
                            owner: None,
                            group: None,
                        },
                    )
                })
                .collect(),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let p = PathBuf::from(format!(
            "/dev/shm/secretdrop-unit-read-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn reads_nested_objects_from_one_version_and_names_the_missing_one() {
        let p = scratch("ok");
        let v = Volume::new(&p, false);
        assert!(matches!(
            v.read_objects(&["a"], 10),
            Err(ReadError::NotReady { .. })
        ));
        v.commit(&payload(&[("a", "1"), ("tls/ca.crt", "2")]))
            .unwrap();
        let got = v.read_objects(&["tls/ca.crt", "a"], 10).unwrap();
        assert_eq!(got.values[0].expose(), b"2");
        assert_eq!(got.values[1].expose(), b"1");
        assert_eq!(Some(got.version), v.current_version());
        let e = v.read_objects(&["b"], 10).unwrap_err();
        assert!(e.is_config());
        assert!(
            e.to_string().contains("no object \"b\"") && e.to_string().contains("a, tls/ca.crt"),
            "{e}"
        );
        let e = v.read_objects(&["tls"], 10).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let e = v.read_objects(&["a"], 0).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { .. }), "{e}");
        fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn a_planted_link_in_the_version_is_not_followed() {
        let p = scratch("link");
        let v = Volume::new(&p, false);
        v.commit(&payload(&[("a", "1")])).unwrap();
        let version = v.current_version().unwrap();
        fs::remove_file(p.join(&version).join("a")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", p.join(&version).join("a")).unwrap();
        let e = v.read_objects(&["a"], 1 << 20).unwrap_err();
        assert!(e.to_string().contains("is a symlink"), "{e}");
        fs::remove_dir_all(&p).unwrap();
    }
}
