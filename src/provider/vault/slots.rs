//! What a Vault session holds: its token, and per read the latest answer, its lease or expiry
//! and the step due next (a renewal, a re-fetch, a poll), scheduled from what Vault said or
//! from what a previous process recorded.

use std::time::{Duration, Instant, SystemTime};

use crate::fingerprint;
use crate::retry::{random_unit, Step as Due};
use crate::secret::SecretString;

use super::client::Response;
use super::records::ReadRecord;
use super::schedule::{self, Lifetime};
use super::spec::{Read, VaultSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StepKind {
    Login,
    RenewToken,
    Refetch,
    RenewLease,
    Idle,
}

pub(super) type Step = Due<StepKind>;

pub(super) struct Token {
    pub(super) secret: SecretString,
    /// What to ask for at renewal: the TTL Vault first granted.
    pub(super) increment: Duration,
    pub(super) expires: Option<(Instant, SystemTime)>,
    pub(super) obtained: Instant,
    pub(super) accessor: String,
    pub(super) renewable: bool,
}

/// A read's latest answer and what it means for freshness.
pub(super) struct Fetched {
    /// None for a read adopted from `--state-dir`: its values are in the files on disk only.
    pub(super) response: Option<Response>,
    /// Fingerprint of the values (see [`super::records::values`]).
    pub(super) values: String,
    pub(super) fetched_at: SystemTime,
    pub(super) lifetime: Lifetime,
    /// The token generation it was fetched under (its lease dies with that token).
    pub(super) generation: u64,
    /// What to ask for at renewal: the lease duration Vault first granted.
    pub(super) increment: Duration,
    pub(super) expires: Option<(Instant, SystemTime)>,
}

pub(super) struct Slot {
    pub(super) read: Read,
    pub(super) fetched: Option<Fetched>,
    pub(super) step: Step,
}

pub(super) fn fresh_slots(spec: &VaultSpec) -> Vec<Slot> {
    spec.reads
        .iter()
        .map(|r| Slot {
            read: r.clone(),
            fetched: None,
            step: Step::now(StepKind::Refetch),
        })
        .collect()
}

/// Logs a failure once per state change and counts it.
/// How long until something that lasts `increment`, with `left` of it remaining, is due for
/// the step normally taken `at` into it: the schedule of a fresh fetch, shifted by the time
/// already spent.
pub(super) fn due_in(left: Duration, increment: Duration, at: Duration) -> Duration {
    left.saturating_sub(increment.saturating_sub(at))
}

/// An adopted read: its next step from the recorded expiry (or fetch time), and no values.
pub(super) fn adopted_slot(
    r: &ReadRecord,
    poll: Duration,
    now: Instant,
    wall: SystemTime,
) -> (Step, Fetched) {
    let lifetime = r.lifetime(wall);
    let increment = Duration::from_secs(r.increment_secs);
    let unit = random_unit();
    let step = match &lifetime {
        schedule::Lifetime::Renewable { duration, .. } => Step::after(
            due_in(*duration, increment, schedule::renew_after(increment, unit)),
            StepKind::RenewLease,
        ),
        schedule::Lifetime::Fixed { duration, .. } => Step::after(
            due_in(
                *duration,
                increment,
                schedule::refetch_after(increment, unit),
            ),
            StepKind::Refetch,
        ),
        schedule::Lifetime::Certificate { valid_for } => Step::after(
            due_in(
                *valid_for,
                increment,
                schedule::renew_after(increment, unit),
            ),
            StepKind::Refetch,
        ),
        schedule::Lifetime::Static => {
            let since = wall
                .duration_since(fingerprint::from_unix(r.fetched_unix))
                .unwrap_or_default();
            Step::after(
                schedule::poll_after(poll, unit).saturating_sub(since),
                StepKind::Refetch,
            )
        }
    };
    let fetched = Fetched {
        response: None,
        values: r.values.clone(),
        fetched_at: fingerprint::from_unix(r.fetched_unix),
        increment,
        expires: lifetime.valid_for().map(|d| (now + d, wall + d)),
        lifetime,
        generation: 1,
    };
    (step, fetched)
}
