//! The per-pod settings of injected pods (docs/webhook.md, "Annotations"): everything beyond
//! role, address and objects that a pod may set with a `secretdrop.dev/` annotation — the
//! opt-in, Vault's CA, namespace and TLS server name, the token audience, notification, poll
//! interval, the injected container's resources and its metrics/readiness port.
//!
//! One parser for both readers: the webhook validates them at admission (and turns them into
//! the injected container), and the sidecar validates them again when it reads the
//! downward-API file, so an annotation edited after admission is held to the same rules.
//! Every error names the annotation and what is allowed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::error::ConfigError;
use super::names::PREFIX;
use super::notify::{parse_signal, NotifySettings};

/// A CA bundle in an annotation larger than this is refused: a few dozen certificates fit.
pub const MAX_CA_BYTES: usize = 64 * 1024;
/// Longest value accepted for any setting but `ca-cert`.
const MAX_VALUE: usize = 2048;
/// Longest quantity accepted for a resource (`"128974848"`, `"1.5Gi"`, `"250m"`).
const MAX_QUANTITY: usize = 20;
/// The default requests and limits of the injected container.
pub const DEFAULT_CPU_REQUEST: &str = "5m";
pub const DEFAULT_MEMORY_REQUEST: &str = "8Mi";
pub const DEFAULT_MEMORY_LIMIT: &str = "32Mi";
/// Where a pod's CA ConfigMap key is read when none is named.
pub const DEFAULT_CA_KEY: &str = "ca.crt";

/// The annotations of this module, without the prefix.
pub const NAMES: &[&str] = &[
    "ca-cert",
    "ca-configmap",
    "vault-namespace",
    "tls-server-name",
    "token-audience",
    "notify-signal",
    "notify-process",
    "notify-url",
    "poll-interval",
    "cpu-request",
    "cpu-limit",
    "memory-request",
    "memory-limit",
    "metrics-port",
];

/// The settings, validated. `None` means "not set": the webhook's default applies.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodSettings {
    /// PEM text of one or more CA certificates (`ca-cert`).
    pub ca_pem: Option<String>,
    /// A ConfigMap in the pod's namespace holding the CA (`ca-configmap: NAME[/KEY]`).
    pub ca_configmap: Option<ConfigMapKey>,
    pub vault_namespace: Option<String>,
    pub tls_server_name: Option<String>,
    pub token_audience: Option<String>,
    pub notify: NotifySettings,
    pub poll_interval: Option<Duration>,
    pub resources: Resources,
    pub metrics_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapKey {
    pub name: String,
    pub key: String,
}

impl ConfigMapKey {
    /// `NAME` or `NAME/KEY` (the key defaults to [`DEFAULT_CA_KEY`]); `Err` says what is allowed.
    pub fn parse(text: &str) -> Result<ConfigMapKey, String> {
        let (name, key) = text.split_once('/').unwrap_or((text, DEFAULT_CA_KEY));
        let dns = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        };
        if !dns(name) {
            return Err(format!(
                "{:?} is not a ConfigMap name: expected NAME or NAME/KEY, NAME being \
                 lower-case letters, digits, '-' and '.' (at most 253)",
                shorten(name)
            ));
        }
        let key_ok = !key.is_empty()
            && key.len() <= 253
            && key != "."
            && key != ".."
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !key_ok {
            return Err(format!(
                "{:?} is not a ConfigMap key: letters, digits, '-', '_' and '.' (at most 253)",
                shorten(key)
            ));
        }
        Ok(ConfigMapKey {
            name: name.to_string(),
            key: key.to_string(),
        })
    }
}

/// Requests and limits of the injected container, as Kubernetes quantities.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resources {
    pub cpu_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_request: Option<String>,
    pub memory_limit: Option<String>,
}

impl Resources {
    /// The `resources` of the injected container: the pod's values over the defaults. A limit
    /// set below a default request lowers that request to the limit, as Kubernetes requires.
    pub fn to_json(&self) -> serde_json::Value {
        let pick = |given: &Option<String>, default: &str, limit: &Option<String>| {
            given.clone().unwrap_or_else(|| match limit {
                Some(l) if value(l) < value(default) => l.clone(),
                _ => default.to_string(),
            })
        };
        let mut requests = serde_json::Map::new();
        requests.insert(
            "cpu".into(),
            pick(&self.cpu_request, DEFAULT_CPU_REQUEST, &self.cpu_limit).into(),
        );
        requests.insert(
            "memory".into(),
            pick(
                &self.memory_request,
                DEFAULT_MEMORY_REQUEST,
                &self.memory_limit,
            )
            .into(),
        );
        let mut limits = serde_json::Map::new();
        if let Some(cpu) = &self.cpu_limit {
            limits.insert("cpu".into(), cpu.clone().into());
        }
        let memory = self
            .memory_limit
            .clone()
            .unwrap_or_else(|| DEFAULT_MEMORY_LIMIT.to_string());
        limits.insert("memory".into(), memory.into());
        serde_json::json!({"requests": requests, "limits": limits})
    }
}

/// Parses the settings from the `secretdrop.dev/` annotations (`ours`, prefix removed).
pub fn parse(file: &Path, ours: &BTreeMap<String, String>) -> Result<PodSettings, ConfigError> {
    let err = |name: &str, m: String| ConfigError::field(file, format!("{PREFIX}{name}"), m);
    let get = |name: &str| ours.get(name).map(String::as_str);
    let mut s = PodSettings::default();
    // Values are bounded before anything parses or quotes them: none of these is long, and
    // the API server lets a pod carry 256 KiB of annotations.
    for name in NAMES.iter().filter(|n| **n != "ca-cert") {
        if let Some(v) = get(name).filter(|v| v.len() > MAX_VALUE) {
            return Err(err(
                name,
                format!("{} bytes; at most {MAX_VALUE} are accepted", v.len()),
            ));
        }
    }

    if let Some(v) = get("inject") {
        parse_inject(v).map_err(|m| err("inject", m))?;
    }
    if let Some(pem) = get("ca-cert") {
        s.ca_pem = Some(check_ca_pem(pem).map_err(|m| err("ca-cert", m))?);
    }
    if let Some(v) = get("ca-configmap") {
        if s.ca_pem.is_some() {
            return Err(err(
                "ca-configmap",
                format!("set {PREFIX}ca-cert or {PREFIX}ca-configmap, not both"),
            ));
        }
        s.ca_configmap = Some(ConfigMapKey::parse(v.trim()).map_err(|m| err("ca-configmap", m))?);
    }
    if let Some(v) = get("vault-namespace") {
        s.vault_namespace = Some(check_namespace(v).map_err(|m| err("vault-namespace", m))?);
    }
    if let Some(v) = get("tls-server-name") {
        let v = v.trim();
        if rustls::pki_types::ServerName::try_from(v).is_err() || v.len() > 253 {
            return Err(err(
                "tls-server-name",
                format!(
                    "{:?} is not a DNS name or IP address, e.g. vault.example.com",
                    shorten(v)
                ),
            ));
        }
        s.tls_server_name = Some(v.to_string());
    }
    if let Some(v) = get("token-audience") {
        s.token_audience = Some(check_audience(v).map_err(|m| err("token-audience", m))?);
    }
    for name in ["notify-signal", "poll-interval"] {
        if let Some(v) = get(name).filter(|v| v.len() > 64) {
            let what = if name == "poll-interval" {
                "a duration, e.g. 30s or 5m"
            } else {
                "a signal name, e.g. SIGHUP"
            };
            return Err(err(name, format!("{:?} is not {what}", shorten(v))));
        }
    }
    if let Some(v) = get("notify-signal") {
        s.notify.signal = Some(parse_signal(v).map_err(|m| err("notify-signal", m))?);
    }
    if let Some(v) = get("notify-process") {
        s.notify.process = Some(check_process(v).map_err(|m| err("notify-process", m))?);
    }
    if let Some(v) = get("notify-url") {
        s.notify.url = Some(check_notify_url(v).map_err(|m| err("notify-url", m))?);
    }
    match (&s.notify.signal, &s.notify.process) {
        (Some(_), None) => {
            return Err(err(
                "notify-signal",
                format!("needs {PREFIX}notify-process: the name of the app's process to signal"),
            ))
        }
        (None, Some(_)) => {
            return Err(err(
                "notify-process",
                format!("needs {PREFIX}notify-signal: which signal to send, e.g. SIGHUP"),
            ))
        }
        _ => {}
    }
    if let Some(v) = get("poll-interval") {
        s.poll_interval =
            Some(super::param::parse_poll_interval(v.trim()).map_err(|m| err("poll-interval", m))?);
    }
    let r = &mut s.resources;
    for (name, slot, memory) in [
        ("cpu-request", &mut r.cpu_request, false),
        ("cpu-limit", &mut r.cpu_limit, false),
        ("memory-request", &mut r.memory_request, true),
        ("memory-limit", &mut r.memory_limit, true),
    ] {
        if let Some(v) = get(name) {
            *slot = Some(check_quantity(v.trim(), memory).map_err(|m| err(name, m))?);
        }
    }
    for (kind, request, limit) in [
        ("cpu", &r.cpu_request, &r.cpu_limit),
        ("memory", &r.memory_request, &r.memory_limit),
    ] {
        if let (Some(q), Some(l)) = (request, limit) {
            if value(q) > value(l) {
                return Err(err(
                    &format!("{kind}-request"),
                    format!("{q} is more than {PREFIX}{kind}-limit {l}; a request must not exceed its limit"),
                ));
            }
        }
    }
    if let Some(v) = get("metrics-port") {
        s.metrics_port = Some(check_port(v.trim()).map_err(|m| err("metrics-port", m))?);
    }
    Ok(s)
}

/// `secretdrop.dev/inject` (label or annotation), parsed as Go's `strconv.ParseBool`.
pub fn parse_inject(v: &str) -> Result<bool, String> {
    super::env::parse_bool(v).ok_or_else(|| {
        format!(
            "{:?} is not a boolean: allowed are true, false (also 1, t, T, TRUE, True, 0, f, F, \
             FALSE, False)",
            shorten(v)
        )
    })
}

/// A value quoted for a message, cut to 64 characters: a message stays short for any input.
/// Every rejection that quotes a pod author's value uses it (src/webhook/mutate.rs too).
pub(crate) fn shorten(v: &str) -> String {
    match v.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &v[..i]),
        None => v.to_string(),
    }
}

fn check_ca_pem(pem: &str) -> Result<String, String> {
    if pem.len() > MAX_CA_BYTES {
        return Err(format!(
            "{} bytes; at most {MAX_CA_BYTES} bytes of PEM certificates are accepted (for a \
             larger bundle use {PREFIX}ca-configmap)",
            pem.len()
        ));
    }
    let not_pem = || {
        "not PEM: expected one or more -----BEGIN CERTIFICATE----- blocks of the CA that signed \
         Vault's certificate"
            .to_string()
    };
    let certs: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| not_pem())?;
    if certs.is_empty() {
        return Err(not_pem());
    }
    let mut store = rustls::RootCertStore::empty();
    for (i, c) in certs.into_iter().enumerate() {
        store.add(c).map_err(|e| {
            format!(
                "certificate {} is not a usable X.509 CA certificate: {e}",
                i + 1
            )
        })?;
    }
    Ok(pem.to_string())
}

fn check_namespace(v: &str) -> Result<String, String> {
    let ns = v.trim().trim_matches('/');
    let ok = !ns.is_empty()
        && ns.len() <= 256
        && ns.split('/').all(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    if !ok {
        return Err(format!(
            "{:?} is not a Vault namespace: path segments of letters, digits, '-', '_' and '.', \
             e.g. team-a or parent/child",
            shorten(v)
        ));
    }
    Ok(ns.to_string())
}

fn check_audience(v: &str) -> Result<String, String> {
    let a = v.trim();
    if a.is_empty() || a.len() > 256 || a.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{:?} is not a token audience: 1-256 characters without spaces, e.g. vault",
            shorten(v)
        ));
    }
    Ok(a.to_string())
}

/// A process name as the kernel keeps it (`comm`, at most 15 bytes) or a longer argv[0]
/// basename: no slash, no control character.
pub(crate) fn check_process(v: &str) -> Result<String, String> {
    let p = v.trim();
    if p.is_empty() || p.len() > 255 || p.contains('/') || p.chars().any(char::is_control) {
        return Err(format!(
            "{:?} is not a process name: the program's name without a directory, e.g. nginx",
            shorten(v)
        ));
    }
    Ok(p.to_string())
}

/// The notification goes to the app in the same pod (same network namespace): only loopback
/// URLs are accepted, so an annotation cannot make the sidecar post to other hosts.
pub(crate) fn check_notify_url(v: &str) -> Result<String, String> {
    let u = v.trim();
    let allowed = || {
        format!(
            "{:?} is not allowed: the notification goes to the app in this pod, so the URL must \
             be http://127.0.0.1:PORT/PATH (or localhost, [::1])",
            shorten(v)
        )
    };
    let rest = u.strip_prefix("http://").ok_or_else(allowed)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']').ok_or_else(allowed)?;
            if !after.is_empty() && !after.starts_with(':') {
                return Err(allowed());
            }
            (format!("[{h}]"), after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        },
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    let host_ok = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]");
    if !host_ok || !port_ok || u.len() > 2048 || u.contains(char::is_whitespace) {
        return Err(allowed());
    }
    Ok(u.to_string())
}

/// Kubernetes quantity suffixes we accept (no exponents, no signs).
const CPU_SUFFIXES: &[(&str, f64)] = &[("m", 1e-3), ("", 1.0)];
const MEMORY_SUFFIXES: &[(&str, f64)] = &[
    ("Ki", 1024.0),
    ("Mi", 1048576.0),
    ("Gi", 1073741824.0),
    ("Ti", 1099511627776.0),
    ("k", 1e3),
    ("M", 1e6),
    ("G", 1e9),
    ("T", 1e12),
    ("", 1.0),
];

fn check_quantity(v: &str, memory: bool) -> Result<String, String> {
    let (what, suffixes, example) = if memory {
        ("memory", MEMORY_SUFFIXES, "64Mi or 1Gi")
    } else {
        ("CPU", CPU_SUFFIXES, "50m or 1")
    };
    let names: Vec<&str> = suffixes
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| !s.is_empty())
        .collect();
    let bad = |extra: &str| {
        format!(
            "{:?} is not a {what} quantity: a number with an optional suffix ({}), e.g. \
             {example}{extra}",
            shorten(v),
            names.join(", ")
        )
    };
    if memory && v.ends_with('m') {
        return Err(bad(
            "; \"m\" means thousandths of a byte here, write Mi for mebibytes",
        ));
    }
    if v.len() > MAX_QUANTITY {
        return Err(bad(""));
    }
    let parsed = quantity(v, suffixes).ok_or_else(|| bad(""))?;
    if parsed <= 0.0 {
        return Err(bad("; it must be more than zero"));
    }
    Ok(v.to_string())
}

/// A quantity's value in base units (cores, bytes), for comparisons.
fn quantity(v: &str, suffixes: &[(&str, f64)]) -> Option<f64> {
    let (digits, factor) = suffixes
        .iter()
        .find_map(|(s, f)| v.strip_suffix(s).map(|d| (d, *f)))?;
    let ok = !digits.is_empty()
        && digits.bytes().filter(|b| *b == b'.').count() <= 1
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().any(|b| b.is_ascii_digit());
    ok.then(|| digits.parse::<f64>().ok().map(|n| n * factor))
        .flatten()
}

/// The value of an already validated quantity of either kind.
fn value(v: &str) -> f64 {
    quantity(v, MEMORY_SUFFIXES)
        .or_else(|| quantity(v, CPU_SUFFIXES))
        .unwrap_or(0.0)
}

/// A port the injected container can bind as non-root with no capabilities: 1024-65535.
fn check_port(v: &str) -> Result<u16, String> {
    match v.parse::<u32>() {
        Ok(p) if (1024..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!(
            "{:?} is not a port the injected container can listen on: 1024-65535 (it runs \
             without privileges, so ports below 1024 are refused)",
            shorten(v)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(pairs: &[(&str, &str)]) -> Result<PodSettings, ConfigError> {
        let ours = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(Path::new("a"), &ours)
    }

    #[test]
    fn inject_is_parsed_like_go_parse_bool() {
        for v in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_inject(v), Ok(true), "{v}");
        }
        for v in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_inject(v), Ok(false), "{v}");
        }
        for v in ["yes", "on", " true", "tRUE", "", "2", "y"] {
            let m = parse_inject(v).unwrap_err();
            assert!(m.contains("allowed are true, false"), "{v}: {m}");
        }
    }

    #[test]
    fn quantities() {
        for (v, memory) in [
            ("5m", false),
            ("1", false),
            ("0.5", false),
            ("64Mi", true),
            ("1G", true),
            ("128974848", true),
        ] {
            assert!(check_quantity(v, memory).is_ok(), "{v}");
        }
        for (v, memory) in [
            ("64Mi", false),
            ("128m", true),
            ("1e3", true),
            ("-1", false),
            ("0", false),
            ("", true),
            ("1..2", false),
            ("Mi", true),
            ("99999999999999999999999Mi", true),
        ] {
            assert!(check_quantity(v, memory).is_err(), "{v}");
        }
        assert!(value("1Gi") > value("512Mi") && value("500m") < value("1"));
    }

    #[test]
    fn notify_urls_stay_in_the_pod() {
        for ok in [
            "http://127.0.0.1:8080/reload",
            "http://localhost:9/x",
            "http://[::1]:80/",
        ] {
            assert!(check_notify_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/reload",
            "https://example.com/",
            "http://127.0.0.1.evil.example/",
            "http://user@127.0.0.1/",
            "http://localhost:0/",
            "http://localhost:99999/",
            "file:///etc/passwd",
        ] {
            assert!(check_notify_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resources_default_and_follow_a_lower_limit() {
        let s = parsed(&[("memory-limit", "4Mi"), ("cpu-limit", "100m")]).unwrap();
        let r = s.resources.to_json();
        assert_eq!(r["requests"]["memory"], "4Mi");
        assert_eq!(r["requests"]["cpu"], "5m");
        assert_eq!(r["limits"]["cpu"], "100m");
        let e = parsed(&[("cpu-request", "2"), ("cpu-limit", "1")]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("secretdrop.dev/cpu-request"));
    }

    #[test]
    fn each_setting_names_its_annotation_when_refused() {
        for (k, v) in [
            ("ca-cert", "hello"),
            ("ca-configmap", "Bad_Name"),
            ("ca-configmap", "ok/../x"),
            ("vault-namespace", "a/../b"),
            ("tls-server-name", "not a name"),
            ("token-audience", "two words"),
            ("notify-signal", "KILL"),
            ("notify-process", "/bin/sh"),
            ("poll-interval", "1ms"),
            ("metrics-port", "80"),
            ("metrics-port", "70000"),
            ("inject", "yes"),
        ] {
            let e = parsed(&[(k, v)]).unwrap_err();
            assert_eq!(
                e.field.as_deref(),
                Some(format!("{PREFIX}{k}").as_str()),
                "{k}: {e}"
            );
        }
        let e = parsed(&[("notify-signal", "HUP")]).unwrap_err();
        assert!(
            e.message.contains("needs secretdrop.dev/notify-process"),
            "{e}"
        );
        let e = parsed(&[("notify-process", "nginx")]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("secretdrop.dev/notify-process"));
    }
}
