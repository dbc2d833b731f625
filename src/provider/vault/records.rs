//! What a Vault session leaves in `--state-dir` for the next process (docs/state.md): the
//! token, per read its lease and a fingerprint of its values, the version on disk, and leases
//! waiting for their revocation; and deciding what such a record is still worth ([`adopt`]).
//!
//! Invariants:
//! - it holds the token (that is its point) but no secret value: per read only the lease id,
//!   its expiry and a SHA-256 fingerprint of the values, enough to check that the files on disk
//!   are still what was recorded and to adopt them;
//! - anything wrong with it (corrupt, another format, another Vault or login, a token Vault no
//!   longer accepts) means one log line and a fresh login: never a crash, never a partial
//!   render;
//! - the token never reaches a log line, an error or `Debug` output.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::spec::{Read, VaultSpec};
use crate::fingerprint::{from_unix, sha256, unix, Rendered};
use crate::secret::{wipe, SecretString};

use super::client::Response;
use super::fetch::Fetcher;
use super::schedule::{self, Lifetime};

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
    pub fn new(spec: &VaultSpec, token: TokenRecord) -> State {
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

/// Fingerprint of a read's request.
pub fn read_key(read: &Read) -> String {
    let body = read.body.as_deref().unwrap_or("");
    // A template's `secret "P"` and a class's read of P are different requests once P is
    // resolved for KV version 2.
    let method = match read.template {
        true => "GET kv",
        false => read.method.as_str(),
    };
    sha256(&[method.as_bytes(), read.path.as_bytes(), body.as_bytes()])
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
pub fn identity(spec: &VaultSpec) -> String {
    let who = format!(
        "{:?}|{:?}|{:?}",
        spec.vault.address, spec.vault.namespace, spec.auth
    );
    sha256(&[who.as_bytes()])
}

/// Fingerprint of how the files are rendered from the answers.
pub fn objects(spec: &VaultSpec) -> String {
    sha256(&[format!("{:?}", spec.objects).as_bytes()])
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

/// Reads a state file's bytes; the reason, fit for a log line, when they are not a Vault
/// state of this format. serde's message could quote a value of the file, the token
/// included: only where the file stops making sense is said.
pub fn parse(bytes: &[u8]) -> Result<State, String> {
    match serde_json::from_slice::<State>(bytes) {
        Ok(s) if s.format == FORMAT => Ok(s),
        Ok(_) => Err("it has another format version".into()),
        Err(e) => Err(format!(
            "it is corrupt (not a secretdrop Vault state at line {} column {})",
            e.line(),
            e.column()
        )),
    }
}

/// Checks a recorded state against the config, the files on disk (`on_disk`) and Vault (one
/// `lookup-self`). None, after one log line saying why, when nothing can be adopted; `dir`
/// names the state directory in those lines.
pub async fn adopt(
    bytes: &[u8],
    dir: &str,
    spec: &VaultSpec,
    fetcher: &Fetcher,
    on_disk: Option<Rendered>,
    deadline: Instant,
) -> Option<Adoption> {
    let state = match parse(bytes) {
        Ok(s) => s,
        Err(reason) => {
            tracing::warn!(state_dir = %dir, file = "state.json", reason = %reason, "ignoring the recorded state; logging in afresh");
            return None;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_state_reads_back_and_debug_hides_the_token() {
        let bytes = serde_json::to_vec(&sample()).unwrap();
        let s = parse(&bytes).unwrap();
        assert_eq!(s.token.token.expose(), "s.hunter2-token");
        assert_eq!(s.replaced, sample().replaced);
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn corrupt_or_other_formats_are_refused_and_never_quoted() {
        let why = parse(br#"{"format": 5, "token": "s.hunter2-token"}"#).unwrap_err();
        assert!(why.contains("corrupt") && !why.contains("hunter2"), "{why}");
        let mut other = sample();
        other.format = "secretdrop.dev/state/v0".into();
        let why = parse(&serde_json::to_vec(&other).unwrap()).unwrap_err();
        assert!(why.contains("another format"), "{why}");
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
