//! A volume that shows another volume's files under other names and modes: what a Secret
//! volume of a synced Secret would have held (docs/webhook.md, "Synced Secrets"), kept from
//! the render of the CSI volume whose class syncs it.
//!
//! Invariants: a view is written only from the complete share of the member it shows, in the
//! same commit, after that member (each directory's swap is atomic on its own, as for the
//! members of a [`super::VolumeSet`]); a file the share lacks is an error (nothing of the view
//! changes); `tls.crt` and `tls.key` are cut from a PEM object as the CSI driver cuts them.

use crate::render::{FileContent, Payload};
use crate::secret::SecretBytes;

use super::{Volume, VolumeError};

/// Which part of an object a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    All,
    /// The PEM certificates (`tls.crt` of a `kubernetes.io/tls` Secret).
    Certificates,
    /// The PEM private key (`tls.key`).
    PrivateKey,
}

/// One file of a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewFile {
    /// The object's name in the member's share.
    pub object: String,
    /// Where it is in the view.
    pub path: String,
    pub mode: u32,
    pub part: Part,
}

/// A view of member `member` of a set.
#[derive(Debug, Clone)]
pub struct View {
    pub volume: Volume,
    pub member: usize,
    pub files: Vec<ViewFile>,
}

impl View {
    /// The view's payload from its member's share.
    pub fn payload(&self, share: &Payload) -> Result<Payload, VolumeError> {
        let mut out = Payload::default();
        for f in &self.files {
            let from = share
                .files
                .get(&f.object)
                .ok_or_else(|| VolumeError::Unprefixed {
                    name: format!(
                        "{} (shown as {} in {})",
                        f.object,
                        f.path,
                        self.volume.dir().display()
                    ),
                })?;
            let data = match f.part {
                Part::All => from.data.clone(),
                Part::Certificates => {
                    SecretBytes::new(pem_blocks(from.data.expose(), |l| l == "CERTIFICATE"))
                }
                Part::PrivateKey => SecretBytes::new(pem_blocks(from.data.expose(), |l| {
                    l.ends_with("PRIVATE KEY")
                })),
            };
            out.files.insert(
                f.path.clone(),
                FileContent {
                    data,
                    mode: f.mode,
                    owner: from.owner,
                    group: from.group,
                },
            );
        }
        Ok(out)
    }
}

/// The PEM blocks of `text` whose label passes `keep`, each as written, joined by newlines.
pub fn pem_blocks(text: &[u8], keep: impl Fn(&str) -> bool) -> Vec<u8> {
    let text = String::from_utf8_lossy(text);
    let mut out = String::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest[start..].find(&end_marker) else {
            break;
        };
        let block = &rest[start..start + end + end_marker.len()];
        if keep(label) {
            out.push_str(block);
            out.push('\n');
        }
        rest = &rest[start + end + end_marker.len()..];
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_and_the_key_are_cut_from_a_bundle() {
        let bundle = b"-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n\
            -----BEGIN CERTIFICATE-----\nc1\n-----END CERTIFICATE-----\n\
            -----BEGIN CERTIFICATE-----\nc2\n-----END CERTIFICATE-----\n";
        assert_eq!(
            String::from_utf8(pem_blocks(bundle, |l| l == "CERTIFICATE")).unwrap(),
            "-----BEGIN CERTIFICATE-----\nc1\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nc2\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(
            String::from_utf8(pem_blocks(bundle, |l| l.ends_with("PRIVATE KEY"))).unwrap(),
            "-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n"
        );
        assert!(pem_blocks(b"not pem", |_| true).is_empty());
    }
}
