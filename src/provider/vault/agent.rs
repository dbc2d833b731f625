//! The Vault Agent Injector's annotations (`vault.hashicorp.com/*`, or OpenBao's `openbao.org/*`
//! and `openbao.openbao.org/*`) as a config source: what a converted pod renders
//! (docs/migrate-from-vault-agent.md).
//!
//! Every annotation the injector knows is either supported (it decides the same files, bytes and
//! modes Vault Agent writes), ignored (it only tunes the agent's own container or process, and
//! the injected secretdrop has its own), or refused with the reason. An annotation under the
//! prefix that the injector does not know is refused too: nothing is silently dropped.
//!
//! Invariants: file names are relative, clean and inside their volume (`agent-inject-file`
//! with `..` that climbs out is refused, as Go's `filepath.Join` would let it); templates parse
//! with secretdrop's Go template engine; every secret path a template reads without depending
//! on another secret's answer is a [`Read`] of the spec before anything is fetched.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::config::env::{parse_bool, VaultEnv};
use crate::config::error::ConfigError;
use crate::config::names::{is_volume_name, validate_name};
use crate::config::notify::NotifySettings;
use crate::gotemplate::{self, Request, Template};

use super::spec::{
    check_address, Auth, GoTemplate, JwtLogin, ObjectSpec, Output, Read, TlsSettings,
    VaultSettings, VaultSpec,
};

/// The prefixes, in the order they are looked for. OpenBao's injector used
/// `openbao.openbao.org/` before it settled on `openbao.org/`.
pub const PREFIXES: &[&str] = &[
    "vault.hashicorp.com/",
    "openbao.org/",
    "openbao.openbao.org/",
];

/// The injector's default secrets directory; `openbao.openbao.org/` releases used
/// `/openbao/secrets`.
pub fn default_volume_path(prefix: &str) -> &'static str {
    match prefix {
        "openbao.openbao.org/" => "/openbao/secrets",
        _ => "/vault/secrets",
    }
}

/// The injector's default templates, `%s` being the secret's path (docs/migrate-from-vault-agent.md).
const MAP_TEMPLATE: &str =
    "{{ with secret \"%s\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}";
const JSON_TEMPLATE: &str = "{{ with secret \"%s\" }}{{ .Data | toJSON }}\n{{ end }}";

/// Largest template, after the annotations' own 256 KiB limit: the engine's work is bounded
/// separately.
const MAX_TEMPLATE: usize = 64 * 1024;
/// Steps a template may take before it reads its first secret: what the webhook spends on one
/// at admission. Real templates do next to nothing outside their `with secret` blocks.
const DISCOVERY_STEPS: u64 = 10_000;
/// Most secrets one pod may define.
pub const MAX_SECRETS: usize = 256;

/// Annotations that only tune the agent's container or process: the injected secretdrop has
/// its own settings (`secretdrop.dev/*`), and none of these changes a file's bytes or mode.
const IGNORED: &[&str] = &[
    "agent-image",
    "agent-init-first",
    "agent-requests-cpu",
    "agent-requests-mem",
    "agent-requests-ephemeral",
    "agent-limits-cpu",
    "agent-limits-mem",
    "agent-limits-ephemeral",
    "agent-revoke-grace",
    "agent-cache-enable",
    "agent-cache-use-auto-auth-token",
    "agent-cache-listener-port",
    "agent-cache-exit-on-err",
    "agent-auto-auth-exit-on-err",
    "auth-min-backoff",
    "auth-max-backoff",
    "agent-enable-quit",
    "agent-disable-idle-connections",
    "agent-disable-keep-alives",
    "template-config-exit-on-retry-failure",
    "template-max-connections-per-host",
    "template-lease-renewal-threshold",
    "client-timeout",
    "client-max-retries",
    "go-max-procs",
    "log-level",
    "log-format",
    "agent-run-as-user",
    "agent-run-as-group",
    "agent-run-as-same-user",
    "agent-set-security-context",
    "agent-share-process-namespace",
    "agent-service-account-token-volume-name",
    "ca-key",
];

/// Annotations whose effect secretdrop cannot reproduce, with the reason.
const REFUSED: &[(&str, &str)] = &[
    ("agent-configmap", "the agent's whole configuration comes from a ConfigMap that secretdrop does not read; move the templates into agent-inject-template-<name> annotations"),
    ("agent-extra-secret", "it mounts a Secret into the agent container for templates that read files, which secretdrop's templates cannot"),
    ("agent-copy-volume-mounts", "it copies an app container's mounts into the agent for templates that read files, which secretdrop's templates cannot"),
    ("agent-json-patch", "it patches the agent container, which secretdrop replaces"),
    ("agent-init-json-patch", "it patches the agent's init container, which secretdrop replaces"),
    ("proxy-address", "secretdrop reaches Vault directly, never through a proxy"),
];

/// Per-secret annotation prefixes (after the injector prefix), longest first so that
/// `agent-inject-template-file-x` is not read as a template named `file-x`.
const PER_SECRET: &[&str] = &[
    "agent-inject-template-file-",
    "agent-inject-template-",
    "agent-inject-secret-",
    "agent-inject-file-",
    "agent-inject-perms-",
    "agent-inject-command-",
    "agent-template-left-delim-",
    "agent-template-right-delim-",
    "error-on-missing-key-",
    "preserve-secret-case-",
    "secret-volume-path-",
    "auth-config-",
    "agent-telemetry-",
];

/// Global annotations secretdrop reads.
const SUPPORTED: &[&str] = &[
    "agent-inject",
    "agent-inject-status",
    "role",
    "auth-type",
    "auth-path",
    "namespace",
    "service",
    "agent-inject-default-template",
    "preserve-secret-case",
    "secret-volume-path",
    "agent-inject-containers",
    "agent-inject-token",
    "agent-pre-populate",
    "agent-pre-populate-only",
    "agent-revoke-on-shutdown",
    "template-static-secret-render-interval",
    "tls-skip-verify",
    "tls-secret",
    "tls-server-name",
    "ca-cert",
    "client-cert",
    "client-key",
];

/// What a pod's injector annotations ask for, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentPod {
    pub prefix: &'static str,
    /// `agent-pre-populate-only`: an init container alone (Jobs finish).
    pub init_only: bool,
    /// `agent-inject-containers`; None: every app container.
    pub containers: Option<Vec<String>>,
    /// The global secrets directory (`secret-volume-path`).
    pub volume_path: String,
    /// The other directories (`secret-volume-path-X`), in order of first use.
    pub custom_paths: Vec<String>,
    /// `tls-secret`: a Secret mounted at `/vault/tls` in the agent container.
    pub tls_secret: Option<String>,
    /// `agent-revoke-on-shutdown`.
    pub revoke_on_shutdown: bool,
    /// `template-static-secret-render-interval`.
    pub render_interval: Option<std::time::Duration>,
    /// The address, `service` or the default.
    pub address: String,
    /// `agent-inject-command-X`, as secretdrop's notification.
    pub notify: Option<NotifySettings>,
    /// One spec per directory: the global one first, then `custom_paths` in order.
    pub specs: Vec<VaultSpec>,
}

/// The annotations of `all` under `prefix` that secretdrop ignores (they tune the agent's own
/// container or process), for the webhook to say so.
pub fn ignored<'a>(all: impl Iterator<Item = &'a str>, prefix: &str) -> Vec<&'a str> {
    all.filter(|k| {
        k.strip_prefix(prefix)
            .is_some_and(|rest| IGNORED.contains(&rest))
    })
    .collect()
}

/// The prefix a pod's annotations use, when it asks for the agent: the first of [`PREFIXES`]
/// with an `agent-inject` annotation.
pub fn prefix_of(all: &BTreeMap<String, String>) -> Option<&'static str> {
    PREFIXES
        .iter()
        .copied()
        .find(|p| all.contains_key(&format!("{p}agent-inject")))
}

/// Go's `strconv.ParseBool` as the injector reads its booleans: the empty string is false.
pub fn agent_bool(s: &str) -> Option<bool> {
    match s {
        "" => Some(false),
        s => parse_bool(s),
    }
}

/// The injector's annotations of `all` (those under `prefix`) into the files they render.
/// `env` gives the default address; `template_env` is what `env "NAME"` sees while the reads of
/// each template are found.
pub fn parse(
    file: &Path,
    all: &BTreeMap<String, String>,
    prefix: &'static str,
    env: &VaultEnv,
    template_env: &dyn Fn(&str) -> String,
) -> Result<AgentPod, ConfigError> {
    let a: BTreeMap<&str, &str> = all
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k, v.as_str())))
        .collect();
    let field = |k: &str| format!("{prefix}{k}");
    let err = |k: &str, m: String| ConfigError::field(file, field(k), m);
    let bool_of = |k: &str, default: bool| -> Result<bool, ConfigError> {
        match a.get(k) {
            None => Ok(default),
            Some(v) => agent_bool(v).ok_or_else(|| {
                err(
                    k,
                    format!(
                        "{:?} is not a boolean: allowed are true, false, 1, 0, t, f (any case as Go reads them)",
                        short(v)
                    ),
                )
            }),
        }
    };
    for other in PREFIXES.iter().filter(|p| **p != prefix) {
        if let Some(k) = all.keys().find(|k| k.starts_with(other)) {
            return Err(ConfigError::field(
                file,
                k.as_str(),
                format!("the pod also has {prefix}agent-inject: use one prefix for all the injector's annotations"),
            ));
        }
    }
    for k in a.keys() {
        if let Some((_, why)) = REFUSED.iter().find(|(n, _)| n == k) {
            return Err(err(k, format!("not supported by secretdrop: {why}")));
        }
        let known = SUPPORTED.contains(k)
            || IGNORED.contains(k)
            || PER_SECRET
                .iter()
                .any(|p| k.starts_with(p) && k.len() > p.len());
        if !known {
            return Err(err(
                k,
                "not an annotation of the Vault Agent Injector that secretdrop knows; \
                 docs/migrate-from-vault-agent.md lists them"
                    .into(),
            ));
        }
    }
    if let Some(k) = a
        .keys()
        .find(|k| k.starts_with("agent-inject-template-file-"))
    {
        return Err(err(
            k,
            "not supported by secretdrop: the template is a file inside the agent container \
             (from agent-configmap); put its text in agent-inject-template-<name>"
                .into(),
        ));
    }
    // Commands become the one notification secretdrop sends after each new version.
    let mut notify: Option<(&str, super::agent_command::Mapped)> = None;
    for (k, v) in a
        .iter()
        .filter(|(k, _)| k.starts_with("agent-inject-command-"))
    {
        let mapped = super::agent_command::map(v)
            .map_err(|m| err(k, format!("not supported by secretdrop: {m}")))?;
        match &notify {
            Some((first, m)) if *m != mapped => {
                return Err(err(
                    k,
                    format!(
                        "secretdrop sends one notification after each new version, and this \
                         command does something else than {prefix}{first}"
                    ),
                ))
            }
            Some(_) => {}
            None => notify = Some((k, mapped)),
        }
    }
    let notify = notify.map(|(_, m)| m.notify());
    if let Some(k) = a.keys().find(|k| k.starts_with("agent-telemetry-")) {
        return Err(err(
            k,
            "not supported by secretdrop: the agent's telemetry stanza; secretdrop serves \
             Prometheus metrics itself (secretdrop.dev/metrics-port)"
                .into(),
        ));
    }

    let init_only = bool_of("agent-pre-populate-only", false)?;
    bool_of("agent-pre-populate", true)?;
    let revoke_on_shutdown = bool_of("agent-revoke-on-shutdown", false)?;
    let inject_token = bool_of("agent-inject-token", false)?;

    // Auth.
    let auth_type = a.get("auth-type").copied().unwrap_or("kubernetes");
    let mount = a
        .get("auth-path")
        .copied()
        .unwrap_or("auth/kubernetes")
        .trim_matches('/');
    let mount = mount.strip_prefix("auth/").unwrap_or(mount).to_string();
    if mount.is_empty()
        || mount
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(err(
            "auth-path",
            format!(
                "{:?} is not an auth mount path, e.g. auth/kubernetes",
                short(&mount)
            ),
        ));
    }
    let mut role = a.get("role").map(|s| s.to_string());
    for (k, v) in a.iter().filter(|(k, _)| k.starts_with("auth-config-")) {
        match &k["auth-config-".len()..] {
            "role" => {
                role.get_or_insert_with(|| v.to_string());
            }
            other => {
                return Err(err(
                    k,
                    format!(
                        "not supported by secretdrop: the login parameter {:?}; only role is sent",
                        short(other)
                    ),
                ))
            }
        }
    }
    let role = role.filter(|r| !r.trim().is_empty()).ok_or_else(|| {
        err(
            "role",
            "missing: the Vault role to log in as (the injector requires it too)".into(),
        )
    })?;
    let login = JwtLogin {
        mount,
        role,
        audience: None,
        token_path: None,
    };
    let auth = match auth_type {
        "kubernetes" => Auth::Kubernetes(login),
        "jwt" => Auth::Jwt(login),
        other => {
            return Err(err(
                "auth-type",
                format!(
                    "{:?} is not supported by secretdrop: allowed are kubernetes and jwt",
                    short(other)
                ),
            ))
        }
    };

    // Where and how to reach Vault.
    let address = match (a.get("service"), &env.addr) {
        (Some(s), _) => check_address(file, &field("service"), s)?,
        (None, Some(d)) => check_address(file, "VAULT_ADDR", d)?,
        (None, None) => {
            return Err(err(
                "service",
                "missing, and the webhook has no default Vault address: where is Vault? \
                 e.g. https://vault.vault:8200"
                    .into(),
            ))
        }
    };
    let path_of = |k: &str| a.get(k).map(|p| std::path::PathBuf::from(*p));
    let tls_secret = a.get("tls-secret").map(|s| s.to_string());
    if let Some(s) = &tls_secret {
        if !is_volume_name(s) && !s.split('.').all(|p| !p.is_empty() && is_volume_name(p)) {
            return Err(err(
                "tls-secret",
                format!("{:?} is not a Secret name", short(s)),
            ));
        }
    }
    for k in ["ca-cert", "client-cert", "client-key"] {
        if let Some(p) = a.get(k) {
            if !p.starts_with('/') || p.split('/').any(|e| e == "..") {
                return Err(err(
                    k,
                    format!(
                        "{:?} must be an absolute path without '..', e.g. /vault/tls/ca.crt",
                        short(p)
                    ),
                ));
            }
        }
    }
    let vault = VaultSettings {
        address: address.clone(),
        namespace: a
            .get("namespace")
            .filter(|n| !n.is_empty())
            .map(|n| n.to_string()),
        tls: TlsSettings {
            ca_cert: path_of("ca-cert"),
            server_name: a.get("tls-server-name").map(|s| s.to_string()),
            client_cert: path_of("client-cert"),
            client_key: path_of("client-key"),
            skip_verify: bool_of("tls-skip-verify", false)?,
            ..TlsSettings::default()
        },
    };

    let render_interval = match a.get("template-static-secret-render-interval") {
        None => None,
        Some(v) => Some(
            parse_go_duration(v)
                .filter(|d| {
                    *d >= std::time::Duration::from_secs(1)
                        && *d <= std::time::Duration::from_secs(30 * 86400)
                })
                .ok_or_else(|| {
                    err(
                        "template-static-secret-render-interval",
                        format!(
                            "{:?} is not a duration from 1s to 30 days, e.g. 5m or 30s",
                            short(v)
                        ),
                    )
                })?,
        ),
    };

    let default_template = match a.get("agent-inject-default-template") {
        None => MAP_TEMPLATE,
        Some(v) => match v.to_lowercase().as_str() {
            "map" => MAP_TEMPLATE,
            "json" => JSON_TEMPLATE,
            _ => {
                return Err(err(
                    "agent-inject-default-template",
                    format!(
                        "{:?} is not a default template: allowed are map and json",
                        short(v)
                    ),
                ))
            }
        },
    };
    let preserve_all = a
        .get("preserve-secret-case")
        .and_then(|v| agent_bool(v))
        .unwrap_or(false);
    let volume_path = clean_dir(a.get("secret-volume-path").copied())
        .unwrap_or_else(|| default_volume_path(prefix).to_string());
    if a.contains_key("secret-volume-path")
        && clean_dir(a.get("secret-volume-path").copied()).is_none()
    {
        return Err(err(
            "secret-volume-path",
            "must be an absolute path without '..', e.g. /vault/secrets".into(),
        ));
    }
    let containers = a.get("agent-inject-containers").map(|list| {
        list.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    });

    // The secrets, by their raw suffix.
    let mut names: Vec<&str> = Vec::new();
    for (k, v) in &a {
        for p in ["agent-inject-secret-", "agent-inject-template-"] {
            if let Some(x) = k.strip_prefix(p) {
                if !v.trim().is_empty() && !names.contains(&x) {
                    names.push(x);
                }
            }
        }
    }
    if names.len() > MAX_SECRETS {
        return Err(ConfigError::new(
            file,
            format!("{} secrets; at most {MAX_SECRETS} per pod", names.len()),
        ));
    }
    let mut dirs: Vec<String> = vec![volume_path.clone()];
    let mut objects: Vec<Vec<(ObjectSpec, Vec<Read>)>> = vec![Vec::new()];
    for x in names {
        let per = |p: &str| a.get(format!("{p}{x}").as_str()).copied();
        let path = per("agent-inject-secret-").unwrap_or("");
        let (source, what) = match per("agent-inject-template-") {
            Some(t) if !t.trim().is_empty() => {
                (t.to_string(), format!("agent-inject-template-{x}"))
            }
            _ => (
                default_template.replace("%s", path),
                format!("agent-inject-secret-{x}"),
            ),
        };
        if source.len() > MAX_TEMPLATE {
            return Err(err(
                &what,
                format!(
                    "the template is {} bytes; at most {MAX_TEMPLATE}",
                    source.len()
                ),
            ));
        }
        let left = per("agent-template-left-delim-")
            .filter(|d| !d.is_empty())
            .unwrap_or("{{");
        let right = per("agent-template-right-delim-")
            .filter(|d| !d.is_empty())
            .unwrap_or("}}");
        let template = Template::parse(&source, left, right)
            .map_err(|e| err(&what, format!("the template does not parse: {e}")))?;
        let missing_key_error = match per("error-on-missing-key-") {
            None => false,
            Some(v) => agent_bool(v).ok_or_else(|| {
                err(
                    &format!("error-on-missing-key-{x}"),
                    format!("{:?} is not a boolean", short(v)),
                )
            })?,
        };
        let preserve = per("preserve-secret-case-")
            .and_then(agent_bool)
            .unwrap_or(preserve_all);
        let base = if preserve {
            x.to_string()
        } else {
            x.to_lowercase()
        };
        let name = match per("agent-inject-file-") {
            Some(f) => join_clean(f).ok_or_else(|| {
                err(
                    &format!("agent-inject-file-{x}"),
                    format!(
                        "{:?} leaves the secrets directory or names no file; give a file name \
                         or a relative path inside it",
                        short(f)
                    ),
                )
            })?,
            None => base,
        };
        validate_name(&name).map_err(|m| err(&format!("agent-inject-file-{x}"), m))?;
        let mode = match per("agent-inject-perms-") {
            None => 0o644,
            Some(p) => parse_perms(p).ok_or_else(|| {
                err(
                    &format!("agent-inject-perms-{x}"),
                    format!(
                        "{:?} is not a file mode: octal, at most 0777, e.g. 0400",
                        short(p)
                    ),
                )
            })?,
        };
        let dir = match per("secret-volume-path-") {
            None => volume_path.clone(),
            Some(d) => clean_dir(Some(d)).ok_or_else(|| {
                err(
                    &format!("secret-volume-path-{x}"),
                    "must be an absolute path without '..', e.g. /vault/custom".into(),
                )
            })?,
        };
        let at = match dirs.iter().position(|d| *d == dir) {
            Some(i) => i,
            None => {
                dirs.push(dir);
                objects.push(Vec::new());
                dirs.len() - 1
            }
        };
        let reads = reads_of(&template, template_env).map_err(|m| err(&what, m))?;
        if reads.is_empty() {
            return Err(err(
                &what,
                "the template reads no secret (no secret or pkiCert call outside another \
                 secret's block)"
                    .into(),
            ));
        }
        if objects[at].iter().any(|(o, _)| o.name == name) {
            return Err(err(
                &what,
                format!("a second secret writes the file {name:?} in {}", dirs[at]),
            ));
        }
        objects[at].push((
            ObjectSpec {
                name,
                read: 0,
                output: Output::GoTemplate(GoTemplate {
                    source,
                    left: left.to_string(),
                    right: right.to_string(),
                    missing_key_error,
                    parsed: Arc::new(template),
                    what: what.clone(),
                }),
                mode,
                owner: None,
                group: None,
            },
            reads,
        ));
    }
    if inject_token {
        // The injector writes it into the global directory, mode 0640
        // (docs/migrate-from-vault-agent.md).
        if objects[0].iter().any(|(o, _)| o.name == "token") {
            return Err(err(
                "agent-inject-token",
                format!("a secret already writes the file \"token\" in {volume_path}"),
            ));
        }
        let Some(first) = objects[0].first().map(|(_, r)| r.clone()) else {
            return Err(err(
                "agent-inject-token",
                format!("secretdrop writes the token beside a secret: no secret is written in {volume_path}"),
            ));
        };
        objects[0].push((
            ObjectSpec {
                name: "token".into(),
                read: 0,
                output: Output::VaultToken,
                mode: 0o640,
                owner: None,
                group: None,
            },
            first,
        ));
    }
    let mut specs = Vec::new();
    for members in objects {
        let mut spec = VaultSpec {
            vault: vault.clone(),
            auth: auth.clone(),
            reads: Vec::new(),
            objects: Vec::new(),
        };
        for (mut object, reads) in members {
            let mut first = None;
            for r in reads {
                let i = match spec.reads.iter().position(|have| *have == r) {
                    Some(i) => i,
                    None => {
                        spec.reads.push(r);
                        spec.reads.len() - 1
                    }
                };
                first.get_or_insert(i);
            }
            object.read = first.unwrap_or(0);
            spec.objects.push(object);
        }
        specs.push(spec);
    }
    let custom_paths = dirs[1..].to_vec();
    Ok(AgentPod {
        prefix,
        init_only,
        containers,
        volume_path,
        custom_paths,
        tls_secret,
        revoke_on_shutdown,
        render_interval,
        address,
        notify,
        specs,
    })
}

/// The reads a template makes before any answer is known: the `secret` and `pkiCert` calls it
/// reaches with nothing fetched. Calls inside another secret's block are found once that
/// secret is fetched.
fn reads_of(t: &Template, env: &dyn Fn(&str) -> String) -> Result<Vec<Read>, String> {
    struct Nothing<'a>(&'a dyn Fn(&str) -> String);
    impl gotemplate::Host for Nothing<'_> {
        fn answer(&mut self, _: &Request) -> Option<Result<Vec<u8>, String>> {
            None
        }
        fn env(&self, name: &str) -> String {
            (self.0)(name)
        }
    }
    let opts = gotemplate::Options {
        max_steps: DISCOVERY_STEPS,
        ..gotemplate::Options::new(false)
    };
    match gotemplate::execute(t, &mut Nothing(env), &opts) {
        Ok(gotemplate::Outcome::Missing(requests)) => Ok(requests.iter().map(read_of).collect()),
        Ok(gotemplate::Outcome::Rendered(_)) => Ok(Vec::new()),
        Err(e) => Err(format!("the template fails before any secret is read: {e}")),
    }
}

/// The request a template's call makes (docs/migrate-from-vault-agent.md, "secret"): a read
/// when it has no arguments (the path resolved for KV v2 first), a write with the `k=v`
/// arguments as a JSON body of strings otherwise.
pub fn read_of(r: &Request) -> Read {
    let path = r.path.trim_start_matches('/').to_string();
    match r.is_write() {
        false => Read {
            path,
            method: "GET".into(),
            body: None,
            template: true,
        },
        true => Read {
            path,
            method: "PUT".into(),
            body: Some(serde_json::Value::Object(r.body()).to_string()),
            template: true,
        },
    }
}

/// Go's `filepath.Join("/", f)` made relative: `.` and empty elements dropped, `..` applied;
/// None when `..` climbs above the directory or nothing is left.
fn join_clean(f: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in f.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// An absolute directory without `..`, cleaned of `.` and doubled slashes.
fn clean_dir(d: Option<&str>) -> Option<String> {
    let d = d?;
    if !d.starts_with('/') || d.split('/').any(|p| p == "..") {
        return None;
    }
    let parts: Vec<&str> = d
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    (!parts.is_empty()).then(|| format!("/{}", parts.join("/")))
}

/// `agent-inject-perms`: octal, with or without a leading 0, at most 0777.
fn parse_perms(p: &str) -> Option<u32> {
    let digits = p.trim();
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

/// Go's `time.ParseDuration` for what people write (`30s`, `5m`, `1h30m`, `1.5h`).
fn parse_go_duration(s: &str) -> Option<std::time::Duration> {
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += value * unit;
    }
    (total.is_finite() && total < 1e9).then(|| std::time::Duration::from_secs_f64(total))
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests;
