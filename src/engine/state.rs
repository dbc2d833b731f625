//! `--state-dir`: what one secretdrop process leaves for the next one in the same pod, so that a
//! restarted sidecar, or the sidecar after the init container, adopts the Vault token and the
//! leases instead of logging in and minting again (docs/state.md).
//!
//! This module owns the state file (`state.json`): its format, reading it, writing it, the
//! checks on its directory, and deciding what a recorded state is still worth ([`adopt`]). It
//! also runs `init` with a state directory ([`init`]), since that is adoption and recording
//! around one fetch.
//!
//! Invariants:
//! - the directory is memory-backed (tmpfs/ramfs, the same guard as `--dir`) unless
//!   `--allow-disk`, and is never the secrets directory nor inside it: the app must not see the
//!   token;
//! - the file is read only when it is a regular file of our own uid, mode 0600 or stricter, at
//!   most [`MAX_BYTES`], reached without following a link; it is written to a fresh temporary
//!   file (0600, `O_EXCL`, no-follow) that is renamed over the old one, so a reader sees the
//!   old state or the new one, never half of one;
//! - it holds the token (that is its point) but no secret value: per read only the lease id,
//!   its expiry and a SHA-256 fingerprint of the values, enough to check that the files on disk
//!   are still what was recorded and to adopt them;
//! - anything wrong with it (unreadable, corrupt, too big, foreign, another Vault or login, a
//!   token Vault no longer accepts) means one warning and a fresh login: never a crash, never a
//!   partial render;
//! - the token never reaches a log line, an error or `Debug` output.

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ring::digest;
use serde::{Deserialize, Serialize};

use crate::config::{Read, Spec};
use crate::error::Error;
use crate::provider::vault::client::Response;
use crate::provider::vault::fetch::Fetcher;
use crate::render::{self, Payload};
use crate::schedule::{self, Lifetime};
use crate::secret::{wipe, SecretString};
use crate::volume::dir::Dir;
use crate::volume::{Commit, Volume, VolumeError, VolumeSet};

pub const FILE_NAME: &str = "state.json";
const TMP_NAME: &str = "state.json.tmp";
/// A state records one line per read; a megabyte is far more than any config needs.
pub const MAX_BYTES: u64 = 1024 * 1024;
const FORMAT: &str = "secretdrop.dev/state/v1";
/// Default of `--revoke-replaced-after`. Apps with connection pools keep using a replaced
/// database user on their open connections until the pool recycles them; 30 minutes is the
/// default maximum connection lifetime of HikariCP, the most common pool that recycles at all,
/// so by then a pool that re-reads the files for new connections has moved on. A replaced lease
/// that ends sooner on its own (a rotation at max TTL leaves it a third of its TTL) is never
/// extended: the grace only shortens the life of credentials nobody renews.
pub const DEFAULT_REVOKE_REPLACED_AFTER: Duration = Duration::from_secs(30 * 60);
/// A recorded lease closer to its end than this is not adopted: it would die before the next
/// process could do anything useful with it.
const ADOPT_MARGIN: Duration = Duration::from_secs(2);

/// Everything one process hands to the next.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format: String,
    /// Fingerprint of the Vault address, namespace and login that wrote it: another config's
    /// state is foreign.
    pub identity: String,
    /// Fingerprint of the files' configuration (names, keys, formats, modes) it was rendered
    /// with: another one means the files must be rendered again.
    pub objects: String,
    pub token: TokenRecord,
    #[serde(default)]
    pub reads: Vec<ReadRecord>,
    /// The version on disk when it was written, and the fingerprint of its files.
    #[serde(default)]
    pub rendered: Option<Rendered>,
    /// Leases replaced by newer ones and not revoked yet.
    #[serde(default)]
    pub replaced: Vec<Replaced>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    #[serde(with = "secret_text")]
    pub token: SecretString,
    pub accessor: String,
    /// What to ask for at renewal: the TTL Vault first granted, in seconds.
    pub increment_secs: u64,
    pub renewable: bool,
    /// Unix seconds; none for a token that never expires.
    pub expires_unix: Option<u64>,
}

/// One read as last fetched: what its lease is and a fingerprint of its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRecord {
    /// Fingerprint of (method, path, body): a read whose config changed does not match.
    pub read: String,
    pub lease_id: Option<String>,
    pub renewable: bool,
    /// What to ask for at renewal: the lease duration Vault first granted, in seconds.
    pub increment_secs: u64,
    /// Unix seconds when the lease (or certificate) ends; none for a static secret.
    pub expires_unix: Option<u64>,
    pub fetched_unix: u64,
    /// SHA-256 of the answer's `data`.
    pub values: String,
}

impl ReadRecord {
    /// How to schedule the adopted read, as if it had just been fetched with what is left.
    pub fn lifetime(&self, now: SystemTime) -> Lifetime {
        let left = self
            .expires_unix
            .map(|e| from_unix(e).duration_since(now).unwrap_or_default());
        match (&self.lease_id, left) {
            (Some(lease_id), Some(duration)) if self.renewable => Lifetime::Renewable {
                lease_id: lease_id.clone(),
                duration,
            },
            (Some(lease_id), Some(duration)) => Lifetime::Fixed {
                lease_id: lease_id.clone(),
                duration,
            },
            (None, Some(valid_for)) => Lifetime::Certificate { valid_for },
            _ => Lifetime::Static,
        }
    }

    /// True when re-reading it mints nothing (a static secret), so fetching it is harmless.
    pub fn is_static(&self) -> bool {
        self.lease_id.is_none() && self.expires_unix.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rendered {
    pub version: String,
    pub files: String,
}

/// A lease to revoke once its replacement is on disk and the grace period has passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replaced {
    pub lease_id: String,
    /// Unix seconds; none until the version holding its replacement is committed.
    pub revoke_at_unix: Option<u64>,
}

impl State {
    /// A state for `spec` holding `token`, with nothing recorded yet.
    pub fn new(spec: &Spec, token: TokenRecord) -> State {
        State {
            format: FORMAT.into(),
            identity: identity(spec),
            objects: objects(spec),
            token,
            reads: Vec::new(),
            rendered: None,
            replaced: Vec::new(),
        }
    }
}

/// The token as text in the file, and only there.
mod secret_text {
    use crate::secret::SecretString;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        String::deserialize(d).map(SecretString::new)
    }
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
fn sha256(parts: &[&[u8]]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    hex(ctx.finish().as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fingerprint of a read's request.
pub fn read_key(read: &Read) -> String {
    let body = read.body.as_deref().unwrap_or("");
    sha256(&[
        read.method.as_bytes(),
        read.path.as_bytes(),
        body.as_bytes(),
    ])
}

/// Fingerprint of an answer's values (`data`), not of its request id or lease: the same
/// secret read twice has the same fingerprint.
pub fn values(response: &Response) -> String {
    let mut text = serde_json::to_vec(response.0.get("data").unwrap_or(&serde_json::Value::Null))
        .unwrap_or_default();
    let fp = sha256(&[&text]);
    wipe(&mut text);
    fp
}

/// Fingerprint of where and as whom secretdrop logs in.
pub fn identity(spec: &Spec) -> String {
    let who = format!(
        "{:?}|{:?}|{:?}",
        spec.vault.address, spec.vault.namespace, spec.auth
    );
    sha256(&[who.as_bytes()])
}

/// Fingerprint of how the files are rendered from the answers.
pub fn objects(spec: &Spec) -> String {
    sha256(&[format!("{:?}", spec.objects).as_bytes()])
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

/// What reading the state file found.
pub enum Loaded {
    Missing,
    /// Present but not usable; the reason, fit for a log line (never the content).
    Unusable(String),
    Found(Box<State>),
}

/// A checked state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Checks `path` (not the secrets directory nor inside it, memory-backed unless
    /// `allow_disk`) and creates it (0700) when missing.
    pub fn prepare(path: &Path, secrets_dir: &Path, allow_disk: bool) -> Result<StateDir, Error> {
        let (state, secrets) = (resolve(path), resolve(secrets_dir));
        if state.starts_with(&secrets) {
            return Err(Error::Usage(format!(
                "--state-dir {} is inside --dir {}: the app would see the Vault token. Use a \
                 separate memory-backed emptyDir that only secretdrop mounts",
                path.display(),
                secrets_dir.display()
            )));
        }
        let guard = Volume::new(path, allow_disk);
        guard.check_filesystem()?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| VolumeError::Io {
                op: "create state directory",
                path: path.to_path_buf(),
                source,
            })?;
        // Again on the directory itself, now that it exists (its parent was checked before).
        guard.check_filesystem()?;
        Ok(StateDir {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state file, bounded and without following a link.
    pub fn load(&self) -> Loaded {
        let dir = match Dir::open(&self.path) {
            Ok(d) => d,
            Err(e) => return Loaded::Unusable(format!("cannot open the state directory: {e}")),
        };
        let mut file = match dir.open_file(FILE_NAME) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
            Err(e) => return Loaded::Unusable(format!("cannot open it: {e}")),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return Loaded::Unusable(format!("cannot stat it: {e}")),
        };
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
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
        let parsed = match read {
            Err(e) => Err(format!("cannot read it: {e}")),
            Ok(_) if buf.len() as u64 > MAX_BYTES => {
                Err(format!("it is larger than {MAX_BYTES} bytes"))
            }
            // serde's message could quote a value of the file, the token included: only say
            // where the file stops making sense.
            Ok(_) => serde_json::from_slice::<State>(&buf).map_err(|e| {
                format!(
                    "it is corrupt (not a secretdrop state at line {} column {})",
                    e.line(),
                    e.column()
                )
            }),
        };
        wipe(&mut buf);
        match parsed {
            Ok(s) if s.format == FORMAT => Loaded::Found(Box::new(s)),
            Ok(_) => Loaded::Unusable("it has another format version".into()),
            Err(reason) => Loaded::Unusable(reason),
        }
    }

    /// Writes `state` atomically: a fresh 0600 file renamed over the old one.
    pub fn save(&self, state: &State) -> std::io::Result<()> {
        let dir = Dir::open(&self.path)?;
        // A leftover of a write that was interrupted; `create_file` refuses any existing entry.
        let _ = dir.unlink(TMP_NAME);
        let mut text = serde_json::to_vec(state).map_err(std::io::Error::other)?;
        let written = dir.create_file(TMP_NAME).and_then(|mut f| {
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            f.write_all(&text)
        });
        wipe(&mut text);
        let result = written.and_then(|_| dir.rename(TMP_NAME, FILE_NAME));
        if result.is_err() {
            let _ = dir.unlink(TMP_NAME);
        }
        result
    }

    /// Removes the state file (after `--revoke-on-exit`: the token in it is dead).
    pub fn remove(&self) {
        if let Ok(dir) = Dir::open(&self.path) {
            let _ = dir.unlink(FILE_NAME);
        }
    }

    /// [`StateDir::save`], a failure only warned about: the next process logs in afresh.
    pub fn save_or_warn(&self, state: &State) {
        if let Err(e) = self.save(state) {
            tracing::warn!(state_dir = %self.path.display(), error = %e, "cannot write the state file; a restart will log in again");
        }
    }
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

/// A recorded state that still holds: the token Vault accepts, and per read what can be kept.
pub struct Adoption {
    pub token: SecretString,
    pub accessor: String,
    pub increment: Duration,
    pub renewable: bool,
    /// What is left of the token, as Vault says now; zero for a token that never expires.
    pub ttl: Duration,
    /// Per read of the spec, in its order: the record to adopt. All are `Some` when the files
    /// on disk are exactly what was recorded from them ([`Adoption::files_current`]), all
    /// `None` otherwise.
    pub reads: Vec<Option<ReadRecord>>,
    pub files_current: bool,
    /// The version on disk, when current.
    pub rendered: Option<Rendered>,
    /// Leases to revoke: replaced ones not revoked yet, and recorded ones that are not adopted
    /// (their files are gone or changed, or their read left the config).
    pub replaced: Vec<Replaced>,
}

/// Loads the state and checks it against the config, the files on disk and Vault (one
/// `lookup-self`). None, after one warning saying why, when nothing can be adopted.
pub async fn adopt(
    state_dir: &StateDir,
    spec: &Spec,
    fetcher: &Fetcher,
    volume: &VolumeSet,
    deadline: Instant,
) -> Option<Adoption> {
    let dir = state_dir.path().display();
    let state = match state_dir.load() {
        Loaded::Missing => {
            tracing::debug!(state_dir = %dir, "no state recorded yet");
            return None;
        }
        Loaded::Unusable(reason) => {
            tracing::warn!(state_dir = %dir, file = FILE_NAME, reason = %reason, "ignoring the recorded state; logging in afresh");
            return None;
        }
        Loaded::Found(s) => s,
    };
    if state.identity != identity(spec) {
        tracing::warn!(state_dir = %dir, "the recorded state is for another Vault address or login; logging in afresh");
        return None;
    }
    let now = SystemTime::now();
    if state
        .token
        .expires_unix
        .is_some_and(|e| from_unix(e) <= now)
    {
        tracing::info!(state_dir = %dir, "the recorded token has expired; logging in afresh");
        return None;
    }
    let info = match fetcher.lookup_token(&state.token.token, deadline).await {
        Ok(info) => info,
        Err(e) => {
            tracing::warn!(state_dir = %dir, error = %e, "the recorded token does not work (revoked, expired or Vault unreachable); logging in afresh");
            return None;
        }
    };
    if !state.token.accessor.is_empty() && info.accessor != state.token.accessor {
        tracing::warn!(state_dir = %dir, "Vault knows the recorded token under another accessor; logging in afresh");
        return None;
    }
    let on_disk = on_disk(volume);
    let live = |r: &ReadRecord| {
        r.is_static()
            || r.expires_unix
                .is_some_and(|e| from_unix(e) > now + ADOPT_MARGIN)
    };
    let records: Vec<Option<&ReadRecord>> = spec
        .reads
        .iter()
        .map(|read| {
            let key = read_key(read);
            state.reads.iter().find(|r| r.read == key)
        })
        .collect();
    let files_current = state.objects == objects(spec)
        && state.rendered.is_some()
        && on_disk == state.rendered
        && records.iter().all(|r| r.is_some_and(live));
    let mut replaced = state.replaced.clone();
    let reads = if files_current {
        // Recorded reads that left the config keep a lease nobody uses.
        for r in &state.reads {
            if !records.iter().flatten().any(|k| k.read == r.read) {
                replaced.extend(r.lease_id.clone().map(|lease_id| Replaced {
                    lease_id,
                    revoke_at_unix: None,
                }));
            }
        }
        records.into_iter().map(|r| r.cloned()).collect()
    } else {
        tracing::info!(state_dir = %dir, "the files on disk are not the recorded ones (or the config changed); keeping the token, fetching the secrets again");
        for r in &state.reads {
            replaced.extend(r.lease_id.clone().map(|lease_id| Replaced {
                lease_id,
                revoke_at_unix: None,
            }));
        }
        vec![None; spec.reads.len()]
    };
    tracing::info!(
        state_dir = %dir,
        ttl = %humantime::format_duration(info.ttl),
        adopted_reads = reads.iter().flatten().count(),
        "adopted the recorded token; no new login"
    );
    Some(Adoption {
        token: state.token.token.clone(),
        accessor: info.accessor,
        increment: Duration::from_secs(state.token.increment_secs),
        renewable: info.renewable,
        ttl: info.ttl,
        reads,
        files_current,
        rendered: if files_current { on_disk } else { None },
        replaced,
    })
}

/// A record of `response`, fetched at `at` for `read`.
pub fn record(read: &Read, response: &Response, at: SystemTime) -> ReadRecord {
    let lifetime = schedule::lifetime_of(&response.0, unix(at));
    let valid = lifetime.valid_for();
    ReadRecord {
        read: read_key(read),
        lease_id: lifetime.lease_id().map(str::to_string),
        renewable: matches!(lifetime, Lifetime::Renewable { .. }),
        increment_secs: valid.map_or(0, |d| d.as_secs()),
        expires_unix: valid.map(|d| unix(at + d)),
        fetched_unix: unix(at),
        values: values(response),
    }
}

/// Sets the revocation time of replaced leases that were waiting for a commit.
pub fn start_grace(replaced: &mut [Replaced], grace: Option<Duration>, committed: SystemTime) {
    if let Some(g) = grace {
        for r in replaced.iter_mut().filter(|r| r.revoke_at_unix.is_none()) {
            r.revoke_at_unix = Some(unix(committed + g));
        }
    }
}

/// `secretdrop init` with a state directory: adopt the recorded token (and, when the files on
/// disk are still the recorded ones, the leases: only static secrets are read again), or log
/// in; render and commit when anything changed; record what the sidecar needs.
pub async fn init(
    state_dir: &StateDir,
    spec: &Spec,
    fetcher: &Fetcher,
    volume: &VolumeSet,
    grace: Option<Duration>,
    deadline: Instant,
) -> Result<(Commit, usize), Error> {
    let (token, mut replaced, previous) =
        match adopt(state_dir, spec, fetcher, volume, deadline).await {
            Some(a) => {
                let record = TokenRecord {
                    token: a.token,
                    accessor: a.accessor,
                    increment_secs: a.increment.as_secs(),
                    renewable: a.renewable,
                    expires_unix: (!a.ttl.is_zero()).then(|| unix(SystemTime::now() + a.ttl)),
                };
                let previous = a.files_current.then(|| {
                    (
                        a.reads.into_iter().flatten().collect::<Vec<_>>(),
                        a.rendered,
                    )
                });
                (record, a.replaced, previous)
            }
            None => {
                let t = fetcher.login(deadline).await?;
                let ttl = if t.ttl.is_zero() {
                    // A ready token (method token): ask Vault what it is worth.
                    fetcher.lookup_token(&t.token, deadline).await?.ttl
                } else {
                    t.ttl
                };
                let record = TokenRecord {
                    token: t.token,
                    accessor: t.accessor,
                    increment_secs: ttl.as_secs(),
                    renewable: t.renewable,
                    expires_unix: (!ttl.is_zero()).then(|| unix(SystemTime::now() + ttl)),
                };
                (record, Vec::new(), None)
            }
        };
    let mut state = State::new(spec, token);
    if let Some((records, Some(rendered))) = &previous {
        // Static secrets only: reading them mints nothing, and the app starts with fresh ones.
        let statics: Vec<(usize, Read)> = spec
            .reads
            .iter()
            .enumerate()
            .filter(|(i, _)| records.get(*i).is_some_and(ReadRecord::is_static))
            .map(|(i, r)| (i, r.clone()))
            .collect();
        let reads: Vec<Read> = statics.iter().map(|(_, r)| r.clone()).collect();
        let answers = fetcher
            .read_each(&reads, &state.token.token, deadline)
            .await;
        let now = SystemTime::now();
        let mut fresh = records.clone();
        let mut same = true;
        for ((i, read), answer) in statics.iter().zip(answers) {
            let r = record(read, &answer?, now);
            same &= r.values == records[*i].values;
            fresh[*i] = r;
        }
        if same {
            // The files on disk hold the successors of any replaced lease: the grace starts.
            start_grace(&mut replaced, grace, SystemTime::now());
            if grace.is_none() {
                replaced.clear();
            }
            state.reads = fresh;
            state.rendered = Some(rendered.clone());
            state.replaced = replaced;
            state_dir.save_or_warn(&state);
            return Ok((
                Commit::Unchanged {
                    version: rendered.version.clone(),
                },
                spec.objects.len(),
            ));
        }
        // A static secret changed: the files must be rendered again, which takes every
        // answer, and the leased ones were not kept. New credentials replace the recorded ones.
        tracing::info!("a secret changed since the recorded render; fetching every read again");
        replaced.extend(records.iter().filter_map(|r| {
            r.lease_id.clone().map(|lease_id| Replaced {
                lease_id,
                revoke_at_unix: None,
            })
        }));
    }
    let snapshot = fetcher
        .read_all(&spec.reads, &state.token.token, deadline)
        .await?;
    let fetched_at = SystemTime::now();
    let payload = render::render(spec, &snapshot)?;
    let outcome = volume.commit(&payload)?;
    start_grace(&mut replaced, grace, SystemTime::now());
    if grace.is_none() {
        // `never`: nothing will revoke them, so nothing is recorded.
        replaced.clear();
    }
    let version = match &outcome {
        Commit::Written { version } | Commit::Unchanged { version } => version.clone(),
    };
    state.reads = spec
        .reads
        .iter()
        .zip(&snapshot.responses)
        .map(|(read, response)| record(read, response, fetched_at))
        .collect();
    state.rendered = Some(Rendered {
        version,
        files: self::payload(&payload),
    });
    state.replaced = replaced;
    state_dir.save_or_warn(&state);
    Ok((outcome, payload.files.len()))
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

    fn sample() -> State {
        State {
            format: FORMAT.into(),
            identity: "i".into(),
            objects: "o".into(),
            token: TokenRecord {
                token: SecretString::new("s.hunter2-token".into()),
                accessor: "acc".into(),
                increment_secs: 60,
                renewable: true,
                expires_unix: Some(4_000_000_000),
            },
            reads: vec![],
            rendered: None,
            replaced: vec![Replaced {
                lease_id: "db/creds/app/x".into(),
                revoke_at_unix: None,
            }],
        }
    }

    #[test]
    fn saved_state_reads_back_0600_and_debug_hides_the_token() {
        let t = tmp("roundtrip");
        let sd = StateDir::prepare(&t.0.join("state"), &t.0.join("out"), true).unwrap();
        sd.save(&sample()).unwrap();
        let meta = fs::metadata(t.0.join("state").join(FILE_NAME)).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        let Loaded::Found(s) = sd.load() else {
            panic!("not found")
        };
        assert_eq!(s.token.token.expose(), "s.hunter2-token");
        assert_eq!(s.replaced, sample().replaced);
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn corrupt_foreign_or_linked_files_are_unusable_and_never_quoted() {
        let t = tmp("bad");
        let sd = StateDir::prepare(&t.0.join("state"), &t.0.join("out"), true).unwrap();
        let file = t.0.join("state").join(FILE_NAME);
        assert!(matches!(sd.load(), Loaded::Missing));
        fs::write(&file, r#"{"format": 5, "token": "s.hunter2-token"}"#).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let Loaded::Unusable(why) = sd.load() else {
            panic!()
        };
        assert!(why.contains("corrupt") && !why.contains("hunter2"), "{why}");
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
        assert!(StateDir::prepare(&t.0.join("state"), &out, true).is_ok());
        assert!(StateDir::prepare(&out.join("../state2"), &out, true).is_ok());
    }

    #[test]
    fn adopted_leases_keep_their_recorded_expiry() {
        let now = from_unix(1_000_000);
        let r = ReadRecord {
            read: "r".into(),
            lease_id: Some("db/creds/app/x".into()),
            renewable: true,
            increment_secs: 60,
            expires_unix: Some(1_000_040),
            fetched_unix: 999_980,
            values: "v".into(),
        };
        assert_eq!(
            r.lifetime(now),
            Lifetime::Renewable {
                lease_id: "db/creds/app/x".into(),
                duration: Duration::from_secs(40)
            }
        );
        assert!(!r.is_static());
    }
}
