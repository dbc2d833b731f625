//! Google access tokens the way Google's client libraries find them in a pod (docs/gcp.md,
//! "Credentials"): `GOOGLE_APPLICATION_CREDENTIALS` naming an `external_account` file
//! (Workload Identity Federation: the projected service-account token exchanged at STS, then
//! optionally a service account impersonated), else the metadata server (on GKE with Workload
//! Identity it answers for the pod; `GCE_METADATA_HOST` moves it).
//!
//! Invariants: the subject token is re-read for every exchange and bounded in size; tokens are
//! held in redacting types and replaced 3 min 45 s before they expire (half their life when
//! shorter), as the libraries do; a failed refresh keeps a held token while it is valid;
//! concurrent callers wait for one exchange; the subject token goes only to the `token_url`
//! of the file and the STS token only to its impersonation URL, both https; no redirect is
//! followed (the HTTP client follows none).

use std::time::{Duration, Instant, SystemTime};

use super::exchange;
use crate::net::cloud::Http;

/// Tokens are replaced this long before they expire (google-auth's refresh threshold).
const REFRESH_BEFORE: Duration = Duration::from_secs(225);

pub use super::account::*;

/// Tokens from a [`Source`], cached and refreshed ahead of expiry.
pub struct Credentials {
    source: Source,
    http: Http,
    /// Held token and when to refresh it; locked across an exchange, so concurrent requests
    /// wait for one exchange instead of each making their own.
    held: tokio::sync::Mutex<Option<(Token, Instant)>>,
    /// Tokens obtained (an STS exchange with its impersonation counts once; a metadata GET once).
    pub exchanges: std::sync::atomic::AtomicU64,
}

impl Credentials {
    pub fn new(source: Source, http: Http) -> Credentials {
        Credentials {
            source,
            http,
            held: tokio::sync::Mutex::new(None),
            exchanges: Default::default(),
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// A valid token: the held one until its refresh time, else a new one (one attempt,
    /// bounded by `timeout`). A failed refresh falls back to a held token that is still valid.
    pub async fn get(&self, timeout: Duration) -> Result<Token, CredentialError> {
        let mut held = self.held.lock().await;
        if let Some((token, refresh_at)) = held.as_ref() {
            if Instant::now() < *refresh_at {
                return Ok(token.clone());
            }
        }
        self.exchanges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let got = match &self.source {
            Source::External(x) => exchange::federated(&self.http, x, timeout).await,
            Source::Metadata { host } => exchange::metadata(&self.http, host, timeout).await,
        };
        match got {
            Ok(token) => {
                *held = Some((token.clone(), refresh_time(token.expires)));
                Ok(token)
            }
            Err(e) => match held.as_ref() {
                Some((token, _)) if token.expires > SystemTime::now() + Duration::from_secs(10) => {
                    tracing::warn!(error = %e, "refreshing the Google access token failed; the held one is still valid");
                    Ok(token.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// The token held now, if any (for `--state-dir`).
    pub fn held(&self) -> Option<Token> {
        self.held.try_lock().ok()?.as_ref().map(|(t, _)| t.clone())
    }

    /// A token a previous process obtained from the same source, used until its refresh time.
    /// False when it is already due for replacement.
    pub fn adopt(&self, token: Token) -> bool {
        let refresh_at = refresh_time(token.expires);
        if refresh_at <= Instant::now() {
            return false;
        }
        match self.held.try_lock() {
            Ok(mut held) => {
                *held = Some((token, refresh_at));
                true
            }
            Err(_) => false,
        }
    }

    /// Forget the held token if it is `token` (the service said it is invalid or expired);
    /// a newer one another request already obtained is kept.
    pub async fn forget(&self, token: &Token) {
        let mut held = self.held.lock().await;
        if held
            .as_ref()
            .is_some_and(|(t, _)| t.access.expose() == token.access.expose())
        {
            *held = None;
        }
    }
}

/// When to replace a token that expires at `expires`: [`REFRESH_BEFORE`] earlier, or halfway
/// for short lives.
fn refresh_time(expires: SystemTime) -> Instant {
    let left = expires
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .min(Duration::from_secs(366 * 24 * 3600));
    Instant::now() + left - REFRESH_BEFORE.min(left / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;
    use std::path::Path;

    fn write(dir: &Path, json: &str) -> GcpEnv {
        let f = dir.join("creds.json");
        std::fs::write(&f, json).unwrap();
        GcpEnv {
            application_credentials: Some(f),
            metadata_host: None,
        }
    }

    const GOOD: &str = r#"{"type": "external_account",
      "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k",
      "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
      "token_url": "https://sts.googleapis.com/v1/token",
      "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/app@p.iam.gserviceaccount.com:generateAccessToken",
      "credential_source": {"file": "/var/run/secrets/tokens/gcp-ksa/token", "format": {"type": "text"}},
      "universe_domain": "googleapis.com"}"#;

    #[test]
    fn external_account_files_are_read_and_checked() {
        let tmp = crate::test_dir::fresh(&std::env::temp_dir(), "gcp", "creds");
        std::fs::create_dir_all(&tmp.0).unwrap();
        let dir = &tmp.0;
        let Source::External(x) = source(&write(dir, GOOD)).unwrap() else {
            panic!("not external")
        };
        assert_eq!(
            x.service_account().as_deref(),
            Some("app@p.iam.gserviceaccount.com")
        );
        assert_eq!(x.lifetime_secs, 3600);
        assert_eq!(x.format, SubjectFormat::Text);
        for (edit, says) in [
            (
                GOOD.replace("external_account", "service_account"),
                "not supported",
            ),
            (
                GOOD.replace("https://sts", "http://sts"),
                "must be an https URL",
            ),
            (
                GOOD.replace("\"file\"", "\"url\""),
                "credential_source.url is not supported",
            ),
            (
                GOOD.replace("googleapis.com\"}", "example.com\"}"),
                "universe_domain",
            ),
            (
                GOOD.replace(":generateAccessToken", ""),
                "generateAccessToken",
            ),
            ("{".to_string(), "not JSON"),
            (
                GOOD.replace("\"audience\"", "\"x\""),
                "missing \"audience\"",
            ),
        ] {
            let e = source(&write(dir, &edit)).unwrap_err();
            assert!(
                e.config && e.message.contains(says),
                "{says}: {}",
                e.message
            );
            assert!(
                e.message.contains("GOOGLE_APPLICATION_CREDENTIALS"),
                "{}",
                e.message
            );
        }
        let e = source(&GcpEnv {
            application_credentials: Some(dir.join("absent.json")),
            metadata_host: None,
        })
        .unwrap_err();
        assert!(
            e.config && e.message.contains("cannot read"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_metadata_server_is_the_default_and_can_be_moved() {
        let Source::Metadata { host } = source(&GcpEnv::default()).unwrap() else {
            panic!()
        };
        assert_eq!(host, "169.254.169.254");
        let env =
            GcpEnv::from_lookup(|k| (k == "GCE_METADATA_HOST").then(|| "127.0.0.1:8080".into()));
        let Source::Metadata { host } = source(&env).unwrap() else {
            panic!()
        };
        assert_eq!(host, "127.0.0.1:8080");
        let env = GcpEnv::from_lookup(|k| (k == "GCE_METADATA_HOST").then(|| "evil/x?".into()));
        assert!(source(&env).unwrap_err().config);
    }

    #[test]
    fn refresh_ahead_of_expiry() {
        let at = refresh_time(SystemTime::now() + Duration::from_secs(3599));
        let left = at - Instant::now();
        assert!(
            left > Duration::from_secs(3370) && left <= Duration::from_secs(3374),
            "{left:?}"
        );
        let short = refresh_time(SystemTime::now() + Duration::from_secs(60)) - Instant::now();
        assert!(short <= Duration::from_secs(30), "{short:?}");
        let t = Token {
            access: SecretString::new("ya29.secret".into()),
            expires: SystemTime::now(),
        };
        assert!(!format!("{t:?}").contains("ya29"));
    }
}
