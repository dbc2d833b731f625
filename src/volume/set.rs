//! The volumes one unit of work writes (see `config::volumes`): one [`Volume`] per member,
//! each committed atomically on its own.
//!
//! With one member, everything passes straight through (versions, names): a single volume
//! behaves exactly as a bare [`Volume`]. With several, a payload's names carry the member's
//! index as a `..N/` prefix, which is stripped before the member's commit, and a version is the
//! members' versions joined by commas, in member order. Each member's swap is atomic; members
//! are committed in order, and a failure stops at the member that failed (the ones before it
//! hold the new version, the rest keep theirs), which the caller retries.

use std::path::Path;

use super::view::View;
use super::{Commit, Volume, VolumeError};
use crate::render::Payload;

#[derive(Debug, Clone)]
pub struct VolumeSet {
    members: Vec<Volume>,
    /// Volumes showing a member's files under other names ([`super::view`]), written after
    /// the members in every commit; not part of the set's version.
    views: Vec<View>,
}

impl VolumeSet {
    pub fn new(members: Vec<Volume>) -> VolumeSet {
        assert!(!members.is_empty(), "a volume set has at least one volume");
        VolumeSet {
            members,
            views: Vec::new(),
        }
    }

    /// This set with `views` of its members.
    pub fn with_views(mut self, views: Vec<View>) -> VolumeSet {
        self.views = views;
        self
    }

    pub fn one(volume: Volume) -> VolumeSet {
        VolumeSet::new(vec![volume])
    }

    pub fn keeping_previous(self) -> VolumeSet {
        VolumeSet::new(
            self.members
                .into_iter()
                .map(Volume::keeping_previous)
                .collect(),
        )
        .with_views(self.views)
    }

    /// The first member's directory (the only one, usually).
    pub fn dir(&self) -> &Path {
        self.members[0].dir()
    }

    /// Every directory, comma-separated, for messages.
    pub fn describe(&self) -> String {
        let dirs: Vec<String> = self
            .members
            .iter()
            .map(|m| m.dir().display().to_string())
            .collect();
        dirs.join(", ")
    }

    pub fn check_filesystem(&self) -> Result<(), VolumeError> {
        self.members.iter().try_for_each(Volume::check_filesystem)?;
        self.views
            .iter()
            .try_for_each(|v| v.volume.check_filesystem())
    }

    /// The joined current versions; None while any member has none.
    pub fn current_version(&self) -> Option<String> {
        let versions: Option<Vec<String>> =
            self.members.iter().map(Volume::current_version).collect();
        versions.map(|v| v.join(","))
    }

    /// Retires each member's part of a joined version (a member's current one is kept).
    pub fn retire(&self, version: &str) -> Result<(), VolumeError> {
        for (member, part) in self.members.iter().zip(self.split_version(version)) {
            member.retire(part)?;
        }
        Ok(())
    }

    fn split_version<'a>(&self, version: &'a str) -> Vec<&'a str> {
        match self.members.len() {
            1 => vec![version],
            _ => version.split(',').collect(),
        }
    }

    pub fn commit(&self, payload: &Payload) -> Result<Commit, VolumeError> {
        self.commit_keeping(payload, &[])
    }

    /// Commits each member's share of `payload`; `Written` when any member wrote.
    pub fn commit_keeping(
        &self,
        payload: &Payload,
        retiring: &[&str],
    ) -> Result<Commit, VolumeError> {
        if self.members.len() == 1 {
            let outcome = self.members[0].commit_keeping(payload, retiring)?;
            self.commit_views(std::slice::from_ref(payload))?;
            return Ok(outcome);
        }
        let mut shares: Vec<Payload> = vec![Payload::default(); self.members.len()];
        for (name, file) in &payload.files {
            let (member, rel) =
                split_name(name).ok_or_else(|| VolumeError::Unprefixed { name: name.clone() })?;
            let share = shares
                .get_mut(member)
                .ok_or_else(|| VolumeError::Unprefixed { name: name.clone() })?;
            share.files.insert(rel.to_string(), file.clone());
        }
        let retiring: Vec<Vec<&str>> = retiring.iter().map(|v| self.split_version(v)).collect();
        let mut written = false;
        let mut versions = Vec::new();
        for (i, (member, share)) in self.members.iter().zip(&shares).enumerate() {
            let keep: Vec<&str> = retiring.iter().filter_map(|v| v.get(i).copied()).collect();
            match member.commit_keeping(share, &keep)? {
                Commit::Written { version } => {
                    written = true;
                    versions.push(version);
                }
                Commit::Unchanged { version } => versions.push(version),
            }
        }
        self.commit_views(&shares)?;
        let version = versions.join(",");
        Ok(match written {
            true => Commit::Written { version },
            false => Commit::Unchanged { version },
        })
    }

    /// Each view from its member's share (an unchanged view changes nothing on disk).
    fn commit_views(&self, shares: &[Payload]) -> Result<(), VolumeError> {
        for view in &self.views {
            let share = shares
                .get(view.member)
                .ok_or_else(|| VolumeError::Unprefixed {
                    name: format!("a view of member {}", view.member),
                })?;
            view.volume.commit(&view.payload(share)?)?;
        }
        Ok(())
    }

    /// [`Volume::visit_current`] over every member, names prefixed as in payloads.
    pub fn visit_current(&self, mut visit: impl FnMut(&str, u32, &[u8])) -> Option<String> {
        if self.members.len() == 1 {
            return self.members[0].visit_current(visit);
        }
        let mut versions = Vec::new();
        for (i, member) in self.members.iter().enumerate() {
            versions.push(
                member
                    .visit_current(|rel, mode, data| visit(&format!("..{i}/{rel}"), mode, data))?,
            );
        }
        Some(versions.join(","))
    }
}

/// `..N/rest` → (N, rest).
fn split_name(name: &str) -> Option<(usize, &str)> {
    let (head, rest) = name.strip_prefix("..")?.split_once('/')?;
    Some((head.parse().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::FileContent;
    use crate::secret::SecretBytes;

    fn file(data: &str) -> FileContent {
        FileContent {
            data: SecretBytes::new(data.as_bytes().to_vec()),
            mode: 0o640,
            owner: None,
            group: None,
        }
    }

    #[test]
    fn each_member_gets_its_share_under_its_own_data_link() {
        let base = std::env::temp_dir().join(format!("sd-set-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        let set = VolumeSet::new(vec![Volume::new(&a, true), Volume::new(&b, true)]);
        let mut p = Payload::default();
        p.files.insert("..0/x".into(), file("one"));
        p.files.insert("..1/x".into(), file("two"));
        p.files.insert("..1/d/y".into(), file("three"));
        let Commit::Written { version } = set.commit(&p).unwrap() else {
            panic!()
        };
        assert_eq!(version.split(',').count(), 2);
        assert_eq!(std::fs::read_to_string(a.join("x")).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(b.join("x")).unwrap(), "two");
        assert_eq!(std::fs::read_to_string(b.join("d/y")).unwrap(), "three");
        assert_eq!(set.current_version().as_deref(), Some(version.as_str()));
        assert!(matches!(set.commit(&p).unwrap(), Commit::Unchanged { .. }));
        let mut seen = Vec::new();
        set.visit_current(|rel, _, _| seen.push(rel.to_string()));
        assert_eq!(seen, ["..0/x", "..1/d/y", "..1/x"]);
        let mut bad = Payload::default();
        bad.files.insert("x".into(), file("no prefix"));
        assert!(set.commit(&bad).is_err());
        let _ = std::fs::remove_dir_all(&base);
    }
}
