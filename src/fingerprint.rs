//! Fingerprints that let one process recognise what another left: SHA-256 over
//! length-prefixed parts (no two different lists hash alike), of a payload and of the version
//! on disk, and the Unix-seconds form of times kept in state files.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::digest;
use serde::{Deserialize, Serialize};

use crate::render::Payload;
use crate::volume::VolumeSet;

/// The version on disk and the fingerprint of its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rendered {
    pub version: String,
    pub files: String,
}

pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.min(u64::from(u32::MAX)))
}

/// SHA-256 over length-prefixed parts, so that no two different lists hash alike.
pub fn sha256(parts: &[&[u8]]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    hex(ctx.finish().as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Incremental fingerprint of a version's files: path, mode and content, in path order.
struct FilesHash(digest::Context);

impl FilesHash {
    fn new() -> FilesHash {
        FilesHash(digest::Context::new(&digest::SHA256))
    }
    fn add(&mut self, rel: &str, mode: u32, data: &[u8]) {
        for part in [rel.as_bytes(), &mode.to_be_bytes(), data] {
            self.0.update(&(part.len() as u64).to_be_bytes());
            self.0.update(part);
        }
    }
    fn finish(self) -> String {
        hex(self.0.finish().as_ref())
    }
}

/// Fingerprint of a payload, equal to [`on_disk`]'s once it is committed.
pub fn payload(p: &Payload) -> String {
    let mut h = FilesHash::new();
    for (rel, f) in &p.files {
        h.add(rel, f.mode, f.data.expose());
    }
    h.finish()
}

/// The current version on disk and the fingerprint of its files.
pub fn on_disk(volume: &VolumeSet) -> Option<Rendered> {
    let mut h = FilesHash::new();
    let version = volume.visit_current(|rel, mode, data| h.add(rel, mode, data))?;
    Some(Rendered {
        version,
        files: h.finish(),
    })
}
