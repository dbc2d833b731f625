//! Go's text/template with consul-template's functions, as Vault Agent (`bao agent`) renders
//! the Vault Agent Injector's templates, reproduced byte for byte for the converted pods of
//! docs/vault-agent-templates.md. Pure: no I/O; Vault's answers and the environment come from
//! the caller's [`Host`].
//!
//! The module owns: parsing (with the refusal of functions that cannot be reproduced, named
//! in the error), execution with consul-template's two-pass discovery (a request the host has
//! not fetched yields nil and is reported in [`Outcome::Missing`]), Go's printing and JSON.
//!
//! Invariants: parsing nests at most `parse::MAX_DEPTH` deep; a run writes at most
//! [`Options::max_output`] bytes and takes at most [`Options::max_steps`] steps; errors name the
//! line and the function, field or key, never a value read from Vault.

mod exec;
mod funcs;
mod json;
mod lex;
mod parse;
mod print;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A parsed template: immutable, cheap to clone, shared between threads (a spec holds it). Its Debug shows the source (templates are
/// annotations, not secrets).
#[derive(Clone)]
pub struct Template {
    source: Arc<str>,
    main: Arc<Vec<parse::Node>>,
    defs: Arc<BTreeMap<String, Vec<parse::Node>>>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("source", &self.source)
            .finish()
    }
}

/// A parse error: the line and the reason, as Go reports it where it can.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, reason: impl Into<String>) -> ParseError {
        ParseError {
            line,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// An execution error: the line and what failed (a function, a missing key, a bound).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecError {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

impl std::error::Error for ExecError {}

impl Template {
    /// Go's parse with the `left`/`right` delimiters (empty means `{{` / `}}`). An unknown
    /// function is an error naming it (`function "x" not defined`); functions secretdrop does
    /// not reproduce are refused with the reason.
    pub fn parse(text: &str, left: &str, right: &str) -> Result<Template, ParseError> {
        let left = if left.is_empty() { "{{" } else { left };
        let right = if right.is_empty() { "}}" } else { right };
        let toks = lex::lex(text, left, right)?;
        let parsed = parse::parse(toks)?;
        Ok(Template {
            source: Arc::from(text),
            main: Arc::new(parsed.main),
            defs: Arc::new(parsed.defs),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    /// `secret`: a GET without arguments, a PUT of the `k=v` arguments otherwise.
    Secret,
    /// `pkiCert`: a PUT of the `k=v` arguments; the value is the PEM blocks of the answer.
    PkiCert,
}

/// One Vault request a template makes, equal when consul-template would make them one
/// dependency: a read by its path (with any `?version=N`), a `secret` write by its path and
/// arguments. The caller shares them across a pod's templates (one read, one lease, one
/// issuance) except `pkiCert`, which consul-template names by its path and destination file:
/// each file gets its own issuance, and within a template the first call's arguments win.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Request {
    pub kind: Kind,
    /// The path as written, trimmed of spaces and slashes (it may carry `?version=N`).
    pub path: String,
    /// The `k=v` arguments, canonical: key and value trimmed, the last of a repeated key kept,
    /// sorted by key, empty arguments dropped.
    pub args: Vec<String>,
}

impl Request {
    /// Whether this is a write (PUT) rather than a read (GET).
    pub fn is_write(&self) -> bool {
        self.kind == Kind::PkiCert || !self.args.is_empty()
    }

    /// The JSON body of a write: each argument split at its first `=`, values strings
    /// (consul-template's map).
    pub fn body(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        for a in &self.args {
            if let Some((k, v)) = a.split_once('=') {
                m.insert(
                    k.trim().to_string(),
                    serde_json::Value::String(v.trim().to_string()),
                );
            }
        }
        m
    }
}

/// What the template reads from outside.
pub trait Host {
    /// Vault's answer to `req`: the HTTP response body (JSON) as Vault sent it, so numbers
    /// keep their literal text; `None` when not fetched yet; `Some(Err(msg))` when the read
    /// failed (the message must not hold a secret).
    fn answer(&mut self, req: &Request) -> Option<Result<Vec<u8>, String>>;
    /// `env "NAME"`: the value the agent container would see, "" when unset.
    fn env(&self, name: &str) -> String;
}

#[derive(Clone, Debug)]
pub struct Options {
    /// The template stanza's `error_on_missing_key` (Go's missingkey=error; else =zero).
    pub error_on_missing_key: bool,
    /// The most bytes a run may write (and any one value may hold).
    pub max_output: usize,
    /// The most steps (nodes, iterations, calls, field reads) a run may take.
    pub max_steps: u64,
}

impl Options {
    /// 4 MiB of output and a million steps: far above any real template, far below what
    /// would stall a webhook or sidecar.
    pub fn new(error_on_missing_key: bool) -> Options {
        Options {
            error_on_missing_key,
            max_output: 4 << 20,
            max_steps: 1_000_000,
        }
    }
}

#[derive(Debug)]
pub enum Outcome {
    Rendered(Vec<u8>),
    /// Every request the run reached that the host has not fetched yet, in first-use order;
    /// fetch them and run again (the output of such a run is meaningless).
    Missing(Vec<Request>),
}

/// Runs `t`. Missing requests win over an error: a run that fails while requests are
/// missing may fail only because of them (consul-template renders again once they arrive).
pub fn execute(t: &Template, host: &mut dyn Host, opts: &Options) -> Result<Outcome, ExecError> {
    let (r, missing) = exec::run(t, host, opts);
    if !missing.is_empty() {
        return Ok(Outcome::Missing(missing));
    }
    r.map(Outcome::Rendered)
}

/// consul-template's KV v2 path rewrite (`shimKVv2Path`): `path` as written (without its
/// `?query`), `mount` as `sys/internal/ui/mounts/<path>` names it (e.g. `secret/`). On a KV v2
/// mount `mount/rest` becomes `mount/data/rest` unless `rest` already starts with `data/` or
/// `metadata/`, and the mount itself becomes `mount/data`. Other mounts keep the path.
pub fn kv2_path(path: &str, mount: &str, kv_v2: bool) -> String {
    if !kv_v2 {
        return path.to_string();
    }
    let mount_trimmed = mount.trim_end_matches('/');
    if path == mount || path == mount_trimmed {
        return clean_join(&[mount, "data"]);
    }
    let rest = path.strip_prefix(mount).unwrap_or(path);
    if rest.starts_with("data/") || rest.starts_with("metadata/") {
        return path.to_string();
    }
    clean_join(&[mount, "data", rest])
}

/// Go's path.Join: join with `/`, then Clean (no empty, `.` or `..` elements; no trailing slash).
fn clean_join(parts: &[&str]) -> String {
    let joined = parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    let rooted = joined.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in joined.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}
