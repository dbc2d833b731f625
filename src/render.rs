//! What every provider's render produces: a [`Payload`] (relative path → bytes, mode, owner),
//! built through a [`PayloadBuilder`]; and the dotenv grammar the renders write and
//! `exec --env-file` reads back. Each provider renders in its own folder (Vault's:
//! `provider::vault::render`).
//!
//! Every render, of any provider, builds its payload through a [`PayloadBuilder`], which holds
//! it to [`MAX_PAYLOAD_BYTES`] (all files together): objects, formats, templates and AWS
//! jmesPath entries can each repeat one value many times, and the render is held in memory
//! whole before it is written. The builder is asked before a file is built where its size is
//! known first (a value copied whole, a jmesPath selection), and a template writes through a
//! writer that stops at the bytes left; any other file is at most linear in one bounded answer
//! and is refused as soon as it is built.

use std::collections::BTreeMap;

use crate::secret::SecretBytes;

/// One file a spec renders, before any value is known: what the ownership check, `check` and
/// `exec` need to know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub name: String,
    pub mode: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

/// One file to write.
#[derive(Debug, Clone, PartialEq)]
pub struct FileContent {
    pub data: SecretBytes,
    pub mode: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

/// The whole content of the output directory, keyed by relative path.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Payload {
    pub files: BTreeMap<String, FileContent>,
}

/// The most bytes one render produces, every file of its payload together (the files of the
/// volumes that share a login are one payload). Real volumes hold a few KiB to a few hundred:
/// a Secrets Manager value is at most 64 KiB, an SSM parameter 8 KiB, a Vault answer 1 MiB by
/// default (`--max-response-size`), and the webhook's emptyDir is 1 MiB unless its
/// `--size-limit` says otherwise. The bound is about memory: the injected sidecar is limited to 32 MiB, and besides the
/// payload it holds (at most 4 MiB) its memory cgroup is charged for the files it writes to the
/// Memory emptyDir, the new version and the one replaced (up to 4 MiB each while the old one
/// stays readable), on top of about 4 MiB of its own: 16 MiB at most, half the limit.
pub const MAX_PAYLOAD_BYTES: usize = 4 << 20;

/// A payload under construction, held to a byte budget ([`MAX_PAYLOAD_BYTES`] unless a test
/// says otherwise). A refusal is a message for a [`RenderError`] of the file being built; it
/// states sizes and the limit, never content.
#[derive(Debug)]
pub struct PayloadBuilder {
    files: BTreeMap<String, FileContent>,
    total: usize,
    limit: usize,
}

impl Default for PayloadBuilder {
    fn default() -> Self {
        PayloadBuilder::with_limit(MAX_PAYLOAD_BYTES)
    }
}

impl PayloadBuilder {
    pub fn with_limit(limit: usize) -> PayloadBuilder {
        PayloadBuilder {
            files: BTreeMap::new(),
            total: 0,
            limit,
        }
    }

    /// The bytes the files still to come may take.
    pub fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.total)
    }

    /// Whether a file of `len` bytes still fits: asked before the file is built.
    pub fn reserve(&self, len: usize) -> Result<(), String> {
        if len <= self.remaining() {
            return Ok(());
        }
        Err(self.too_much(Some(len)))
    }

    /// Why a file does not fit (`len`: its size, when known).
    pub(crate) fn too_much(&self, len: Option<usize>) -> String {
        let size = match len {
            Some(n) => format!("{n} bytes"),
            None => format!("more than the {} bytes left", self.remaining()),
        };
        format!(
            "this file ({size}) would take the render past {} bytes ({} MiB), the most \
             secretdrop renders at once, all files together ({} files, {} bytes before this \
             one): nothing was written. Select less, or fewer times",
            self.limit,
            self.limit >> 20,
            self.files.len(),
            self.total
        )
    }

    /// Adds a file, if it fits.
    pub fn insert(&mut self, name: String, content: FileContent) -> Result<(), String> {
        let len = content.data.expose().len();
        self.reserve(len)?;
        self.total += len;
        if let Some(replaced) = self.files.insert(name, content) {
            self.total -= replaced.data.expose().len();
        }
        Ok(())
    }

    pub fn finish(self) -> Payload {
        Payload { files: self.files }
    }
}

/// Collects a template's output up to `limit` bytes; past that, every write fails, which stops
/// the template, and `exceeded` says why it stopped.
pub(crate) struct BoundedWriter {
    pub(crate) buf: Vec<u8>,
    pub(crate) limit: usize,
    pub(crate) exceeded: bool,
}

impl std::io::Write for BoundedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() > self.limit - self.buf.len() {
            self.exceeded = true;
            return Err(std::io::Error::other("render budget exceeded"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("object {object:?} from {path}: {message}")]
pub struct RenderError {
    pub object: String,
    pub path: String,
    pub message: String,
}

/// A render error (a missing key, a template failing on the data) is a run-time failure: exit 1.
impl From<RenderError> for crate::error::Error {
    fn from(e: RenderError) -> Self {
        crate::error::Error::failed(false, e)
    }
}

/// A valid environment variable name: letters, digits and `_`, not starting with a digit.
pub fn is_env_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Plain when safe, single quotes when that needs no escaping (no expansion by `sh`, read
/// verbatim by dotenv libraries), double quotes with escapes otherwise. `exec --env-file`
/// parses exactly these three forms back (`crate::exec::dotenv`).
pub(crate) fn dotenv_quote(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+,".contains(c))
    {
        return v.to_string();
    }
    if !v.contains('\'') && !v.contains('\n') && !v.contains('\r') {
        return format!("'{v}'");
    }
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            '`' => out.push_str("\\`"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
