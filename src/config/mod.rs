//! Configuration sources compiled into one validated, immutable [`Spec`] (docs/configuration.md).
//!
//! Three sources: a SecretProviderClass manifest ([`spc`]), the native `kind: Config` file
//! ([`native`]), and pod annotations through a downward-API file ([`annotations`]). Both share the `objects` schema ([`objects`]). Invariants of a
//! `Spec`: object names are valid, clean, relative and collision-free; every object points at
//! one entry of `reads`, which holds each distinct (path, method, body) once; templates parse;
//! modes are ≤ 0777. Every error names the file, the field and, where the YAML parser gives one,
//! the line and column.

pub mod annotations;
pub mod env;
pub mod native;
pub mod objects;
pub mod pod_settings;
pub mod spc;
pub mod volumes;
pub mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use crate::provider::ProviderSpec;
pub use env::VaultEnv;

/// Everything a render needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The file this spec came from, for messages.
    pub source: PathBuf,
    /// Settings only the resident sidecar uses (native config `sidecar:`; flags override them).
    pub sidecar: SidecarSettings,
    /// Which store, and everything it needs (its parameters, typed and validated).
    pub provider: ProviderSpec,
}

impl Spec {
    /// The Vault part, for a `provider: vault` spec.
    pub fn vault(&self) -> Option<&VaultSpec> {
        match &self.provider {
            ProviderSpec::Vault(v) => Some(v),
            _ => None,
        }
    }

    /// The AWS part, for a `provider: aws` spec.
    pub fn aws(&self) -> Option<&crate::provider::aws::params::AwsSpec> {
        match &self.provider {
            ProviderSpec::Aws(a) => Some(a),
            _ => None,
        }
    }
}

/// A `provider: vault` (or `openbao`) volume: where Vault is, how to log in, what to read and
/// which files to render from the answers.
#[derive(Debug, Clone, PartialEq)]
pub struct VaultSpec {
    pub vault: VaultSettings,
    pub auth: Auth,
    /// Distinct reads; objects refer to them by index.
    pub reads: Vec<Read>,
    pub objects: Vec<ObjectSpec>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SidecarSettings {
    pub poll_interval: Option<std::time::Duration>,
    pub notify: NotifySettings,
}

/// How the app learns that a new version was committed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NotifySettings {
    /// Signal number, validated.
    pub signal: Option<i32>,
    /// Send the signal to processes with this name (needs `shareProcessNamespace`).
    pub process: Option<String>,
    /// ... or to the pid in this file.
    pub pid_file: Option<PathBuf>,
    /// POST to this local URL.
    pub url: Option<String>,
}

impl NotifySettings {
    pub fn is_empty(&self) -> bool {
        self.signal.is_none() && self.url.is_none()
    }
}

/// Signal names accepted for notification, with and without the `SIG` prefix.
pub const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("TERM", libc::SIGTERM),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("WINCH", libc::SIGWINCH),
];

pub fn parse_signal(s: &str) -> Result<i32, String> {
    let name = s.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<String> = SIGNALS.iter().map(|(n, _)| format!("SIG{n}")).collect();
            format!(
                "{s:?} is not a signal we send: allowed are {}",
                names.join(", ")
            )
        })
}

/// Checks notification settings as a whole: a signal needs a target and vice versa; URLs are
/// http(s).
pub fn check_notify(n: &NotifySettings) -> Result<(), (&'static str, String)> {
    if n.signal.is_some() && n.process.is_none() && n.pid_file.is_none() {
        return Err((
            "signal",
            "needs process (a process name) or pidFile to send it to".into(),
        ));
    }
    if n.signal.is_none() && (n.process.is_some() || n.pid_file.is_some()) {
        return Err((
            "signal",
            "missing: which signal to send, e.g. SIGHUP".into(),
        ));
    }
    if n.process.is_some() && n.pid_file.is_some() {
        return Err(("process", "set process or pidFile, not both".into()));
    }
    if let Some(u) = &n.url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(("url", format!("{u:?} is not an http(s) URL")));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct VaultSettings {
    /// Base address without a trailing slash, e.g. `https://vault.example:8200`.
    pub address: String,
    pub namespace: Option<String>,
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsSettings {
    pub ca_cert: Option<PathBuf>,
    /// CA certificates given as PEM text (`secretdrop.dev/ca-cert`), used like `ca_cert`.
    pub ca_pem: Option<String>,
    pub ca_directory: Option<PathBuf>,
    pub server_name: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub skip_verify: bool,
}

/// How to obtain a Vault token.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// `auth/<mount>/login {role, jwt}` with the pod's service-account token.
    Kubernetes(JwtLogin),
    /// Same request against a JWT/OIDC mount; OpenBao validates the signature itself.
    Jwt(JwtLogin),
    /// `auth/<mount>/login {role_id, secret_id}`, both read from files at each login.
    AppRole {
        mount: String,
        role_id_file: PathBuf,
        secret_id_file: PathBuf,
    },
    /// A ready token read from a file.
    Token { token_file: PathBuf },
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwtLogin {
    pub mount: String,
    pub role: String,
    /// When set, the token must carry this audience (checked before login for a clear error).
    pub audience: Option<String>,
    /// Overrides `--token-path`.
    pub token_path: Option<PathBuf>,
}

impl Auth {
    pub fn method_name(&self) -> &'static str {
        match self {
            Auth::Kubernetes(_) => "kubernetes",
            Auth::Jwt(_) => "jwt",
            Auth::AppRole { .. } => "approle",
            Auth::Token { .. } => "token",
        }
    }
}

/// One request to Vault. Two objects with equal `Read`s share one response (and one lease).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Read {
    /// API path below `/v1/`, without leading slash, possibly with a `?query`.
    pub path: String,
    /// Upper-case HTTP verb.
    pub method: String,
    /// JSON request body (`secretArgs`), canonical text so equal bodies compare equal.
    pub body: Option<String>,
}

/// One file of the output.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSpec {
    /// Relative path inside the output directory (validated, see [`objects::validate_name`]).
    pub name: String,
    /// Index into [`Spec::reads`].
    pub read: usize,
    pub output: Output,
    pub mode: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

/// What goes into the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// No `secretKey`: the whole API response as JSON, like the CSI provider.
    WholeResponse,
    /// One key's value: strings raw, other values as JSON, optionally decoded.
    Key { key: String, encoding: Encoding },
    /// Several keys in a file format; `None` means every key of the secret.
    Format {
        format: Format,
        keys: Option<Vec<String>>,
    },
    /// A minijinja template over `data` (the secret's keys) and `response`.
    Template(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Base64,
    Hex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Dotenv,
    Yaml,
    Properties,
}

impl Format {
    pub const NAMES: &'static str = "json, dotenv, yaml, properties";

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "json" => Some(Format::Json),
            "dotenv" | "env" => Some(Format::Dotenv),
            "yaml" => Some(Format::Yaml),
            "properties" => Some(Format::Properties),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Dotenv => "dotenv",
            Format::Yaml => "yaml",
            Format::Properties => "properties",
        }
    }
}

/// A configuration error: which file, where, which field, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn field(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: Some(field.into()),
            ..ConfigError::new(file, message)
        }
    }

    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// Converts a YAML parse error, keeping its line and column.
    pub fn yaml(file: &Path, err: &serde_yaml::Error) -> Self {
        let mut e = ConfigError::new(file, yaml_message(err));
        if let Some(loc) = err.location() {
            e = e.at(loc.line(), loc.column());
        }
        e
    }
}

/// serde_yaml appends " at line L column C" to its messages; we print the location ourselves.
fn yaml_message(err: &serde_yaml::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(i) if err.location().is_some() => text[..i].to_string(),
        _ => text,
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// A config error is the user's to fix: exit 2.
impl From<ConfigError> for crate::error::Error {
    fn from(e: ConfigError) -> Self {
        crate::error::Error::failed(true, e)
    }
}

impl std::error::Error for ConfigError {}

/// The kind of document in a config file, from its `apiVersion` and `kind`.
#[derive(serde::Deserialize)]
struct TypeMeta {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
}

/// Reads and validates a config file of either kind.
pub fn load(path: &Path, env: &VaultEnv) -> Result<Spec, ConfigError> {
    let text = read_bounded(path)?;
    parse(path, &text, env)
}

/// Config files (and the downward-API annotations file) larger than this are refused unread:
/// nothing legitimate comes close, and a huge file must not cost memory.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads a config file of at most [`MAX_CONFIG_BYTES`] as UTF-8 text.
pub fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let err = |m: String| ConfigError::new(path, m);
    let file =
        std::fs::File::open(path).map_err(|e| err(format!("cannot read config file: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(format!("cannot read config file: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(err(format!(
            "the file is larger than {MAX_CONFIG_BYTES} bytes; a config file is far smaller"
        )));
    }
    String::from_utf8(bytes).map_err(|_| err("the config file is not UTF-8 text".into()))
}

/// Parses config text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str, env: &VaultEnv) -> Result<Spec, ConfigError> {
    if annotations::looks_like_annotations(text) {
        return annotations::parse(path, text, env);
    }
    let meta: TypeMeta = yaml::from_str(text).map_err(|e| ConfigError::yaml(path, &e))?;
    match (meta.api_version.as_deref(), meta.kind.as_deref()) {
        (Some(v), Some("SecretProviderClass")) if v.starts_with("secrets-store.csi.x-k8s.io/") => {
            spc::parse(path, text, env)
        }
        (Some(native::API_VERSION), Some("Config")) => native::parse(path, text, env),
        (v, k) => Err(ConfigError::new(
            path,
            format!(
                "unsupported document apiVersion {:?} kind {:?}: expected a SecretProviderClass \
                 (apiVersion secrets-store.csi.x-k8s.io/v1) or apiVersion {} kind Config",
                v.unwrap_or(""),
                k.unwrap_or(""),
                native::API_VERSION
            ),
        )),
    }
}

/// Normalises a Vault address: must be http(s), no trailing slash.
pub fn check_address(file: &Path, field: &str, addr: &str) -> Result<String, ConfigError> {
    let trimmed = addr.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Ok(trimmed.to_string())
        }
        _ => Err(ConfigError::field(
            file,
            field,
            format!(
                "{addr:?} is not a Vault address: expected http://HOST:PORT or https://HOST:PORT"
            ),
        )),
    }
}

/// Validates an auth mount path: non-empty, no leading/trailing slash, no `..`.
pub(crate) fn check_mount(file: &Path, field: &str, mount: &str) -> Result<String, ConfigError> {
    let m = mount.trim_matches('/');
    if m.is_empty() || m.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(ConfigError::field(
            file,
            field,
            format!("{mount:?} is not an auth mount path: expected e.g. \"kubernetes\" or \"jwt\""),
        ));
    }
    Ok(m.to_string())
}
