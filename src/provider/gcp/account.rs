//! Where a pod's Google credentials come from, as Google's client libraries find them
//! (docs/gcp.md, "Credentials"): the process's variables, an `external_account` file read and
//! checked (its token URL and impersonation URL on Google's hosts), or the metadata server; and
//! the token type both exchanges produce. [`super::credentials`] caches the tokens,
//! [`super::exchange`] makes them.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::secret::SecretString;

/// The credentials file is a few hundred bytes; anything past this is not one.
const MAX_FILE_BYTES: u64 = 64 * 1024;
/// The metadata server's address when `GCE_METADATA_HOST` is unset (the Go libraries' and the
/// CSI provider's choice: no DNS needed).
pub const METADATA_DEFAULT_HOST: &str = "169.254.169.254";

/// The Google variables of the process, read once.
#[derive(Debug, Clone, Default)]
pub struct GcpEnv {
    pub application_credentials: Option<PathBuf>,
    pub metadata_host: Option<String>,
}

impl GcpEnv {
    pub fn from_process() -> GcpEnv {
        GcpEnv::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> GcpEnv {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        GcpEnv {
            application_credentials: var("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from),
            metadata_host: var("GCE_METADATA_HOST"),
        }
    }
}

/// Why no token could be had. `config` errors are the user's to fix (exit 2).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CredentialError {
    pub message: String,
    pub config: bool,
    /// Worth another attempt (network, 5xx, throttling).
    pub transient: bool,
}

impl CredentialError {
    pub fn config(message: String) -> Self {
        CredentialError {
            message,
            config: true,
            transient: false,
        }
    }
    pub fn refused(message: String) -> Self {
        CredentialError {
            message,
            config: false,
            transient: false,
        }
    }
    pub fn transient(message: String) -> Self {
        CredentialError {
            message,
            config: false,
            transient: true,
        }
    }
}

/// An access token and when it expires.
#[derive(Debug, Clone)]
pub struct Token {
    pub access: SecretString,
    pub expires: SystemTime,
}

/// How the subject token is read from its file.
#[derive(Debug, Clone, PartialEq)]
pub enum SubjectFormat {
    Text,
    /// `{"type": "json", "subject_token_field_name": F}`.
    Json(String),
}

/// An `external_account` credentials file (Workload Identity Federation).
#[derive(Debug, Clone)]
pub struct ExternalAccount {
    /// The file itself, for messages.
    pub file: PathBuf,
    pub audience: String,
    pub subject_token_type: String,
    pub token_url: reqwest::Url,
    pub impersonation_url: Option<reqwest::Url>,
    /// `service_account_impersonation.token_lifetime_seconds` (default 3600).
    pub lifetime_secs: u64,
    pub subject_file: PathBuf,
    pub format: SubjectFormat,
    pub quota_project: Option<String>,
}

impl ExternalAccount {
    /// The service account impersonated, from the URL (`.../serviceAccounts/EMAIL:generateAccessToken`).
    pub fn service_account(&self) -> Option<String> {
        let url = self.impersonation_url.as_ref()?;
        let last = url.path().rsplit('/').next()?;
        Some(last.trim_end_matches(":generateAccessToken").to_string())
    }
}

/// Where tokens come from.
#[derive(Debug, Clone)]
// One per process: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Source {
    External(ExternalAccount),
    /// The metadata server at `host` (`host` or `host:port`), plain HTTP.
    Metadata {
        host: String,
    },
}

impl Source {
    /// Who we are, for messages: the federated identity (and the impersonated account), or the
    /// metadata server's.
    pub fn describe(&self) -> String {
        match self {
            Source::External(x) => match x.service_account() {
                Some(sa) => format!(
                    "service account {sa} impersonated through Workload Identity Federation ({})",
                    x.audience
                ),
                None => format!(
                    "the federated identity of Workload Identity Federation ({})",
                    x.audience
                ),
            },
            Source::Metadata { host } => {
                format!("the pod's identity from the metadata server at {host}")
            }
        }
    }

    /// What `check` prints: the mechanism, the file or address, never a token.
    pub fn plan(&self) -> String {
        match self {
            Source::External(x) => {
                let mut s = format!(
                    "credentials: Workload Identity Federation (GOOGLE_APPLICATION_CREDENTIALS {}): \
                     the token in {} exchanged at {} for audience {}",
                    x.file.display(),
                    x.subject_file.display(),
                    x.token_url,
                    x.audience
                );
                if let Some(sa) = x.service_account() {
                    s.push_str(&format!(", then service account {sa} impersonated"));
                }
                s
            }
            Source::Metadata { host } => format!(
                "credentials: the metadata server at http://{host} (GKE Workload Identity; \
                 GCE_METADATA_HOST moves it)"
            ),
        }
    }

    /// Everything that decides whose token this is, for the state file's identity.
    pub fn identity(&self) -> String {
        match self {
            Source::External(x) => format!(
                "external_account\n{}\n{}\n{}\n{}\n{}\n{}",
                x.file.display(),
                x.audience,
                x.token_url,
                x.impersonation_url
                    .as_ref()
                    .map(|u| u.as_str())
                    .unwrap_or(""),
                x.subject_file.display(),
                x.lifetime_secs
            ),
            Source::Metadata { host } => format!("metadata\n{host}"),
        }
    }

    /// The quota project sent as `x-goog-user-project`, if the file names one.
    pub fn quota_project(&self) -> Option<&str> {
        match self {
            Source::External(x) => x.quota_project.as_deref(),
            Source::Metadata { .. } => None,
        }
    }
}

/// The token source of this process: the credentials file when
/// `GOOGLE_APPLICATION_CREDENTIALS` names one, else the metadata server.
pub fn source(env: &GcpEnv) -> Result<Source, CredentialError> {
    match &env.application_credentials {
        Some(file) => external_account(file).map(Source::External),
        None => {
            let host = env
                .metadata_host
                .clone()
                .unwrap_or_else(|| METADATA_DEFAULT_HOST.to_string());
            let ok = !host.is_empty()
                && host.len() <= 255
                && host.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                });
            if !ok {
                return Err(CredentialError::config(format!(
                    "GCE_METADATA_HOST {host:?} is not host or host:port"
                )));
            }
            Ok(Source::Metadata { host })
        }
    }
}

/// Reads and checks an `external_account` file.
fn external_account(file: &Path) -> Result<ExternalAccount, CredentialError> {
    let at = |m: String| {
        CredentialError::config(format!(
            "GOOGLE_APPLICATION_CREDENTIALS {}: {m}",
            file.display()
        ))
    };
    let bytes = read_bounded(file).map_err(&at)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        at(format!(
            "not JSON (line {} column {})",
            e.line(),
            e.column()
        ))
    })?;
    let field = |k: &str| v.get(k).and_then(|s| s.as_str()).filter(|s| !s.is_empty());
    match field("type") {
        Some("external_account") => {}
        Some(t @ ("service_account" | "authorized_user" | "impersonated_service_account")) => {
            return Err(at(format!(
                "type {t:?} is not supported: in a pod secretdrop uses Workload Identity, an \
                 external_account file (Workload Identity Federation) or, without \
                 GOOGLE_APPLICATION_CREDENTIALS, the GKE metadata server"
            )))
        }
        Some(t) => {
            return Err(at(format!(
                "type {t:?} is not supported; allowed is external_account"
            )))
        }
        None => return Err(at("no \"type\"; expected \"external_account\"".into())),
    }
    if let Some(u) = field("universe_domain").filter(|u| *u != "googleapis.com") {
        return Err(at(format!(
            "universe_domain {u:?}: only googleapis.com is supported"
        )));
    }
    if v.get("workforce_pool_user_project").is_some() {
        return Err(at(
            "workforce_pool_user_project: workforce pools are for people, not pods".into(),
        ));
    }
    let required = |k: &str| field(k).ok_or_else(|| at(format!("missing {k:?}")));
    let audience = required("audience")?.to_string();
    let subject_token_type = required("subject_token_type")?.to_string();
    let https = |k: &str, text: &str| -> Result<reqwest::Url, CredentialError> {
        let url =
            reqwest::Url::parse(text).map_err(|_| at(format!("{k} {text:?} is not a URL")))?;
        if url.scheme() != "https" || url.host_str().is_none() || !url.username().is_empty() {
            return Err(at(format!(
                "{k} {text:?} must be an https URL (a token is sent there)"
            )));
        }
        // A token goes there: only to Google (private endpoints are *.p.googleapis.com).
        let host = url.host_str().unwrap_or_default();
        if !host.ends_with(".googleapis.com") || url.port().is_some() {
            return Err(at(format!(
                "{k} {text:?}: the host {host} is not a googleapis.com endpoint; the pod's \
                 token is sent only to Google"
            )));
        }
        Ok(url)
    };
    let token_url = https("token_url", required("token_url")?)?;
    let impersonation_url = field("service_account_impersonation_url")
        .map(|u| https("service_account_impersonation_url", u))
        .transpose()?;
    if let Some(u) = &impersonation_url {
        if !u.path().ends_with(":generateAccessToken") {
            return Err(at(format!(
                "service_account_impersonation_url {u} does not end in :generateAccessToken"
            )));
        }
    }
    let lifetime_secs = match v
        .get("service_account_impersonation")
        .and_then(|s| s.get("token_lifetime_seconds"))
    {
        None => 3600,
        Some(n) => match n.as_u64() {
            Some(n) if (600..=43200).contains(&n) => n,
            _ => {
                return Err(at(
                    "service_account_impersonation.token_lifetime_seconds must be a number \
                     from 600 to 43200"
                        .into(),
                ))
            }
        },
    };
    let source = v
        .get("credential_source")
        .ok_or_else(|| at("missing \"credential_source\"".into()))?;
    for other in ["url", "environment_id", "executable", "certificate"] {
        if source.get(other).is_some() {
            return Err(at(format!(
                "credential_source.{other} is not supported: in a pod the subject token is the \
                 projected service-account token, credential_source.file"
            )));
        }
    }
    let subject_file = source
        .get("file")
        .and_then(|f| f.as_str())
        .filter(|f| !f.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| at("credential_source.file: missing (the projected token's path)".into()))?;
    let format = match source.get("format") {
        None => SubjectFormat::Text,
        Some(f) => match f.get("type").and_then(|t| t.as_str()) {
            None | Some("text") => SubjectFormat::Text,
            Some("json") => SubjectFormat::Json(
                f.get("subject_token_field_name")
                    .and_then(|n| n.as_str())
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| {
                        at(
                            "credential_source.format: type json needs subject_token_field_name"
                                .into(),
                        )
                    })?
                    .to_string(),
            ),
            Some(t) => {
                return Err(at(format!(
                    "credential_source.format.type {t:?}: allowed are text and json"
                )))
            }
        },
    };
    Ok(ExternalAccount {
        file: file.to_path_buf(),
        audience,
        subject_token_type,
        token_url,
        impersonation_url,
        lifetime_secs,
        subject_file,
        format,
        quota_project: field("quota_project_id").map(str::to_string),
    })
}

/// A small file read whole, refused past [`MAX_FILE_BYTES`]; zeroed on drop.
pub fn read_bounded(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    use std::io::Read as _;
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}
