//! When the sidecar acts next, derived from what Vault said (docs/architecture.md, "One data flow"; docs/pod.md for the timings).
//!
//! Pure functions of a response or a renewal and a random number, so the policy is unit-tested
//! without clocks. The policy:
//! - renewable leases and tokens are renewed at 62–70% of their duration (about two thirds);
//! - a renewal that comes back shorter than asked means Vault hit the max TTL: rotate now,
//!   while the current credentials still have a third of their life;
//! - non-renewable leases are re-fetched at 85–95% of their duration;
//! - certificates without a lease are re-issued at 62–70% of their validity;
//! - everything else (KV) is polled every `poll` ±10%.

use crate::provider::vault::client::{network_secs, MAX_NETWORK_DURATION};
use std::time::Duration;

use serde_json::Value;

/// How a secret's freshness is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifetime {
    /// No lease (KV v2, most reads): polled.
    Static,
    /// A lease Vault extends on request: renewed, rotated only at max TTL.
    Renewable {
        lease_id: String,
        duration: Duration,
    },
    /// A lease Vault will not extend: re-fetched before it ends.
    Fixed {
        lease_id: String,
        duration: Duration,
    },
    /// A certificate (PKI issue without a lease): re-issued before it expires.
    Certificate { valid_for: Duration },
}

impl Lifetime {
    pub fn lease_id(&self) -> Option<&str> {
        match self {
            Lifetime::Renewable { lease_id, .. } | Lifetime::Fixed { lease_id, .. } => {
                Some(lease_id)
            }
            _ => None,
        }
    }

    /// How long the secret is valid from when it was fetched, if it expires at all.
    pub fn valid_for(&self) -> Option<Duration> {
        match self {
            Lifetime::Renewable { duration, .. } | Lifetime::Fixed { duration, .. } => {
                Some(*duration)
            }
            Lifetime::Certificate { valid_for } => Some(*valid_for),
            Lifetime::Static => None,
        }
    }
}

/// Classifies a read's answer; `now_unix` is the time it was fetched (for PKI `expiration`).
pub fn lifetime_of(response: &Value, now_unix: u64) -> Lifetime {
    let lease_id = response
        .get("lease_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let duration = network_secs(response.get("lease_duration"));
    let renewable = response
        .get("renewable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !lease_id.is_empty() && !duration.is_zero() {
        let lease_id = lease_id.to_string();
        return if renewable {
            Lifetime::Renewable { lease_id, duration }
        } else {
            Lifetime::Fixed { lease_id, duration }
        };
    }
    let expiration = response
        .get("data")
        .and_then(|d| d.get("expiration"))
        .and_then(Value::as_u64);
    match expiration {
        Some(exp) if exp > now_unix => Lifetime::Certificate {
            valid_for: Duration::from_secs(exp - now_unix).min(MAX_NETWORK_DURATION),
        },
        _ => Lifetime::Static,
    }
}

/// When to renew something that lasts `d`: 62–70% of it. `r` is uniform in [0, 1).
pub fn renew_after(d: Duration, r: f64) -> Duration {
    d.mul_f64(0.62 + 0.08 * r)
}

/// When to re-fetch a lease that cannot be renewed: 85–95% of it.
pub fn refetch_after(d: Duration, r: f64) -> Duration {
    d.mul_f64(0.85 + 0.10 * r)
}

/// When to poll again: `poll` ±10%.
pub fn poll_after(poll: Duration, r: f64) -> Duration {
    poll.mul_f64(0.9 + 0.2 * r)
}

/// What to do next with a read that was just fetched.
pub fn after_fetch(lifetime: &Lifetime, poll: Duration, r: f64) -> Next {
    match lifetime {
        Lifetime::Renewable { duration, .. } => Next::Renew(renew_after(*duration, r)),
        Lifetime::Fixed { duration, .. } => Next::Refetch(refetch_after(*duration, r)),
        Lifetime::Certificate { valid_for } => Next::Refetch(renew_after(*valid_for, r)),
        Lifetime::Static => Next::Refetch(poll_after(poll, r)),
    }
}

/// What to do next after Vault renewed something for `got`, when `asked` was requested.
pub fn after_renewal(asked: Duration, got: Duration, renewable: bool, r: f64) -> Next {
    // Vault caps an extension at the max TTL; shorter than asked means this is the last one.
    if !renewable || got.is_zero() || got.as_secs_f64() < asked.as_secs_f64() * 0.95 {
        Next::Rotate
    } else {
        Next::Renew(renew_after(got, r))
    }
}

/// The next action for a lease, a certificate, a polled secret or the token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Extend it after this long.
    Renew(Duration),
    /// Fetch it again after this long.
    Refetch(Duration),
    /// It cannot be extended further: replace it now, while it is still valid.
    Rotate,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn classifies_leases_certificates_and_static_secrets() {
        let db = json!({"lease_id": "database/creds/app/abc", "lease_duration": 3600, "renewable": true});
        assert_eq!(
            lifetime_of(&db, 0),
            Lifetime::Renewable {
                lease_id: "database/creds/app/abc".into(),
                duration: S(3600)
            }
        );
        let fixed = json!({"lease_id": "x/1", "lease_duration": 60, "renewable": false});
        assert!(matches!(lifetime_of(&fixed, 0), Lifetime::Fixed { .. }));
        let pki = json!({"lease_id": "", "lease_duration": 0, "data": {"expiration": 1_000_360}});
        assert_eq!(
            lifetime_of(&pki, 1_000_000),
            Lifetime::Certificate { valid_for: S(360) }
        );
        let kv2 = json!({"lease_id": "", "lease_duration": 0, "data": {"data": {"a": 1}}});
        assert_eq!(lifetime_of(&kv2, 0), Lifetime::Static);
        // KV v1's lease_duration without a lease id is only a refresh hint.
        let kv1 = json!({"lease_id": "", "lease_duration": 2764800, "data": {"a": 1}});
        assert_eq!(lifetime_of(&kv1, 0), Lifetime::Static);
    }

    #[test]
    fn renewals_land_at_about_two_thirds() {
        assert_eq!(renew_after(S(100), 0.0), S(62));
        assert_eq!(renew_after(S(100), 0.999_999).as_secs(), 69);
        assert_eq!(refetch_after(S(100), 0.0), S(85));
        assert_eq!(poll_after(S(300), 0.5), S(300));
        assert!(poll_after(S(300), 0.0) >= S(270));
    }

    #[test]
    fn a_capped_renewal_means_rotate_now() {
        assert_eq!(
            after_renewal(S(60), S(60), true, 0.0),
            Next::Renew(renew_after(S(60), 0.0))
        );
        assert_eq!(after_renewal(S(60), S(20), true, 0.0), Next::Rotate);
        assert_eq!(after_renewal(S(60), S(60), false, 0.0), Next::Rotate);
    }

    #[test]
    fn fetched_secrets_get_their_kind_of_next_step() {
        let r = 0.5;
        let poll = S(300);
        assert!(matches!(after_fetch(&Lifetime::Static, poll, r), Next::Refetch(d) if d == S(300)));
        let cert = Lifetime::Certificate { valid_for: S(300) };
        assert!(matches!(after_fetch(&cert, poll, r), Next::Refetch(d) if d == S(198)));
        let lease = Lifetime::Renewable {
            lease_id: "l".into(),
            duration: S(300),
        };
        assert!(matches!(after_fetch(&lease, poll, r), Next::Renew(d) if d == S(198)));
    }
}
