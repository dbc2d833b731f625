//! The typed spec of a `provider: vault` (or `openbao`) volume (docs/configuration.md): where
//! Vault is and how to reach it, how to log in, the distinct reads and the files rendered from
//! them. Every config source (SecretProviderClass, native config, annotations) compiles to one.
//!
//! Invariants of a [`VaultSpec`]: object names are valid, clean, relative and collision-free;
//! every object points at one entry of `reads`, which holds each distinct (path, method, body)
//! once; templates parse; modes are ≤ 0777.

use std::path::{Path, PathBuf};

use crate::config::error::ConfigError;

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
    /// A Go template's call (docs/migrate-from-vault-agent.md): the answer's bytes are kept for
    /// the template engine (numbers print as Vault wrote them), and for a read (GET) `path` is
    /// as the template wrote it: the API path is found by asking Vault which mount holds it (a
    /// KV version 2 mount inserts `data/`), as Vault Agent does.
    pub template: bool,
}

/// One file of the output.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSpec {
    /// Relative path inside the output directory (validated, see [`crate::config::names::validate_name`]).
    pub name: String,
    /// Index into [`VaultSpec::reads`].
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
    /// A Go template as Vault Agent renders it, over any number of reads.
    GoTemplate(GoTemplate),
    /// The session's Vault token, bare (`agent-inject-token` of a converted agent pod).
    VaultToken,
}

/// A Go template of a converted Vault Agent pod (docs/migrate-from-vault-agent.md).
#[derive(Debug, Clone)]
pub struct GoTemplate {
    pub source: String,
    pub left: String,
    pub right: String,
    /// `error-on-missing-key`: a missing map key fails the render instead of `<no value>`.
    pub missing_key_error: bool,
    pub parsed: std::sync::Arc<crate::gotemplate::Template>,
    /// The annotation that holds it, for messages.
    pub what: String,
}

impl PartialEq for GoTemplate {
    fn eq(&self, other: &GoTemplate) -> bool {
        (
            &self.source,
            &self.left,
            &self.right,
            self.missing_key_error,
        ) == (
            &other.source,
            &other.left,
            &other.right,
            other.missing_key_error,
        )
    }
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

/// The kind of document in a config file, from its `apiVersion` and `kind`.
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
pub fn check_mount(file: &Path, field: &str, mount: &str) -> Result<String, ConfigError> {
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
