//! The command line (docs/cli.md): flags, their environment variables, and parsing them into
//! [`Args`]; the commands themselves are in [`crate::cmd`].
//!
//! Every flag can also come from `SECRETDROP_<FLAG>` (e.g. `SECRETDROP_TOKEN_PATH`); a flag on
//! the command line wins over the environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config;
use crate::error::Error;

pub const DEFAULT_DIR: &str = "/mnt/secrets";
pub const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

struct Flag {
    name: &'static str,
    value: Option<&'static str>,
    help: &'static str,
    /// May be given several times; its environment variable holds a comma list.
    repeat: bool,
}

const fn flag(name: &'static str, value: Option<&'static str>, help: &'static str) -> Flag {
    Flag {
        name,
        value,
        help,
        repeat: false,
    }
}

const fn repeated(name: &'static str, value: &'static str, help: &'static str) -> Flag {
    Flag {
        name,
        value: Some(value),
        help,
        repeat: true,
    }
}

const CONFIG: Flag = flag(
    "config",
    Some("FILE"),
    "SecretProviderClass or secretdrop Config file",
);
const DIR: Flag = flag(
    "dir",
    Some("DIR"),
    "output directory, a memory-backed emptyDir [default: /mnt/secrets]",
);
const VOLUME: Flag = repeated(
    "volume",
    "NAME=DIR",
    "write the config's volume NAME (a converted CSI volume) into DIR (repeatable)",
);
const PROBE_DIR: Flag = repeated(
    "dir",
    "DIR",
    "a volume to check; repeat for several, all must be ready [default: /mnt/secrets]",
);
const TOKEN_PATH: Flag = flag(
    "token-path",
    Some("FILE"),
    "service-account token [default: /var/run/secrets/kubernetes.io/serviceaccount/token]",
);
const TIMEOUT: Flag = flag(
    "timeout",
    Some("DUR"),
    "give up after this long, e.g. 30s, 2m [default: 2m]",
);
const ALLOW_DISK: Flag = flag(
    "allow-disk",
    None,
    "allow an output directory that is not tmpfs/ramfs",
);
const STATE_DIR: Flag = flag(
    "state-dir",
    Some("DIR"),
    "keep the token and leases here for the next process (tmpfs, not inside --dir, ours alone: created 0700)",
);
const REVOKE_REPLACED_AFTER: Flag = flag(
    "revoke-replaced-after",
    Some("DUR"),
    "revoke a replaced lease this long after its successor is on disk, or never [default: 30m]",
);
const LOG_LEVEL: Flag = flag(
    "log-level",
    Some("LEVEL"),
    "error, warn, info, debug, trace [default: info]",
);

const PINNED_VAULT_ADDRESS: Flag = flag(
    "allowed-vault-address",
    Some("URLS"),
    "comma list; refuse a config that names another Vault address",
);
const ADMITTED: Flag = flag(
    "admitted",
    Some("PINS"),
    "comma list the webhook sets: refuse a config whose provider, Vault address or Vault TLS \
     settings are not these",
);
const MAX_RESPONSE_SIZE: Flag = flag(
    "max-response-size",
    Some("BYTES"),
    "largest Vault answer read, e.g. 512Ki, 4Mi [default: 1Mi]",
);

pub struct CommandDef {
    pub name: &'static str,
    about: &'static str,
    flags: &'static [Flag],
}

const LOG_FORMAT: Flag = flag("log-format", Some("FORMAT"), "text or json [default: text]");
const POLL_INTERVAL: Flag = flag(
    "poll-interval",
    Some("DUR"),
    "re-read secrets without a lease this often, ±10% [default: 5m]",
);
const LISTEN: Flag = flag(
    "listen",
    Some("ADDR"),
    "serve /healthz, /readyz, /metrics on HOST:PORT or :PORT",
);
const REVOKE_ON_EXIT: Flag = flag(
    "revoke-on-exit",
    None,
    "revoke the token (and so its leases) on SIGTERM/SIGINT",
);
const NOTIFY_SIGNAL: Flag = flag(
    "notify-signal",
    Some("SIG"),
    "signal the app after a new version, e.g. SIGHUP",
);
const NOTIFY_PROCESS: Flag = flag(
    "notify-process",
    Some("NAME"),
    "with --notify-signal: signal every process named NAME (one name; needs \
     shareProcessNamespace, and the app's uid or CAP_KILL)",
);
const NOTIFY_PIDFILE: Flag = flag(
    "notify-pidfile",
    Some("FILE"),
    "with --notify-signal: signal the pid in FILE (instead of --notify-process)",
);
const NOTIFY_URL: Flag = flag(
    "notify-url",
    Some("URL"),
    "POST to this local URL after a new version",
);

const TLS_CERT: Flag = flag(
    "tls-cert",
    Some("FILE"),
    "PEM certificate chain (re-read when it changes)",
);
const TLS_KEY: Flag = flag(
    "tls-key",
    Some("FILE"),
    "PEM private key (re-read when it changes)",
);
const WEBHOOK_LISTEN: Flag = flag(
    "listen",
    Some("ADDR"),
    "HOST:PORT or :PORT [default: :8443]",
);
const IMAGE: Flag = flag(
    "image",
    Some("IMAGE"),
    concat!(
        "image of the injected container [default: secretdrop:",
        env!("CARGO_PKG_VERSION"),
        "]"
    ),
);
const VAULT_ADDRESS: Flag = flag(
    "vault-address",
    Some("URL"),
    "Vault address for pods without a vault-address annotation",
);
const ALLOWED_VAULT_ADDRESS: Flag = flag(
    "allowed-vault-address",
    Some("URLS"),
    "comma list; pods may only name these (default: any)",
);
const TOKEN_AUDIENCE: Flag = flag(
    "token-audience",
    Some("AUD"),
    "audience of the projected service-account token",
);
const CA_CONFIGMAP: Flag = flag(
    "ca-configmap",
    Some("NAME[/KEY]"),
    "Vault CA for pods that set none: mount KEY (default ca.crt) of this ConfigMap of the pod's \
     namespace into the injected container",
);
const KUBECONFIG: Flag = flag(
    "kubeconfig",
    Some("FILE"),
    "Kubernetes API access for SecretProviderClasses [default: in-cluster]",
);
const AWS_REGION: Flag = flag(
    "aws-region",
    Some("REGION"),
    "region of provider: aws volumes that name none (the cluster's), set as AWS_REGION in their \
     injected container",
);
const IMAGE_PLATFORM: Flag = flag(
    "image-platform",
    Some("OS/ARCH"),
    "platform an image index is resolved to for entrypoints, when the pod's nodeSelector names \
     none [default: linux/amd64]",
);
const SIZE_LIMIT: Flag = flag(
    "size-limit",
    Some("QTY"),
    "sizeLimit of the secrets emptyDir [default: 1Mi]",
);

const EXEC_DIR: Flag = flag(
    "dir",
    Some("DIR"),
    "read the objects rendered here [default: /mnt/secrets]",
);
const ENV: Flag = repeated(
    "env",
    "NAME=OBJECT",
    "set variable NAME to the object's content (repeatable)",
);
const ENV_FILE: Flag = repeated(
    "env-file",
    "OBJECT",
    "add the assignments of an object rendered with format: dotenv (repeatable)",
);
const ENV_TEMPLATE: Flag = repeated(
    "env-template",
    "NAME=TEXT",
    "set NAME to TEXT with $(VAR) expanded as kubelet does, after --env (repeatable)",
);
const EXPAND: Flag = flag(
    "expand",
    None,
    "expand $(VAR) in COMMAND and its arguments as kubelet does, at each start",
);
const WAIT: Flag = flag(
    "wait",
    Some("DUR"),
    "wait this long for a complete render in --dir [default: 2m]",
);
const RESTART_ON_CHANGE: Flag = flag(
    "restart-on-change",
    None,
    "stay as the app's parent and restart it when a new version changes its variables",
);
const RESTART_SIGNAL: Flag = flag(
    "restart-signal",
    Some("SIG"),
    "ask the app to exit with this signal on a restart [default: SIGTERM]",
);
const RESTART_GRACE: Flag = flag(
    "restart-grace",
    Some("DUR"),
    "then SIGKILL it after this long [default: 10s]",
);
const COPY_DIR: Flag = flag(
    "dir",
    Some("DIR"),
    "the directory to copy the binary into, as DIR/secretdrop: created 0755 if missing, \
     refused if another user can write it",
);

/// Commands that take a command line of their own after `--`, and how usage shows it.
const TRAILING: &[(&str, &str)] = &[("exec", "-- COMMAND [ARGS...]")];

fn trailing(command: &CommandDef) -> Option<&'static str> {
    TRAILING
        .iter()
        .find(|(name, _)| *name == command.name)
        .map(|(_, shown)| *shown)
}

const COMMANDS: &[CommandDef] = &[
    CommandDef {
        name: "init",
        about: "log in, render every object into --dir atomically, exit",
        flags: &[
            CONFIG,
            DIR,
            VOLUME,
            TOKEN_PATH,
            TIMEOUT,
            ALLOW_DISK,
            STATE_DIR,
            REVOKE_REPLACED_AFTER,
            PINNED_VAULT_ADDRESS,
            ADMITTED,
            MAX_RESPONSE_SIZE,
            LOG_LEVEL,
            LOG_FORMAT,
        ],
    },
    CommandDef {
        name: "sidecar",
        about: "render like init, then stay: renew, rotate, poll, notify the app, reload",
        flags: &[
            CONFIG,
            DIR,
            VOLUME,
            TOKEN_PATH,
            POLL_INTERVAL,
            LISTEN,
            REVOKE_ON_EXIT,
            NOTIFY_SIGNAL,
            NOTIFY_PROCESS,
            NOTIFY_PIDFILE,
            NOTIFY_URL,
            ALLOW_DISK,
            STATE_DIR,
            REVOKE_REPLACED_AFTER,
            PINNED_VAULT_ADDRESS,
            ADMITTED,
            MAX_RESPONSE_SIZE,
            LOG_LEVEL,
            LOG_FORMAT,
        ],
    },
    CommandDef {
        name: "webhook",
        about: "serve the mutating admission webhook that injects secretdrop into annotated pods",
        flags: &[
            TLS_CERT,
            TLS_KEY,
            WEBHOOK_LISTEN,
            IMAGE,
            VAULT_ADDRESS,
            ALLOWED_VAULT_ADDRESS,
            TOKEN_AUDIENCE,
            CA_CONFIGMAP,
            SIZE_LIMIT,
            AWS_REGION,
            IMAGE_PLATFORM,
            KUBECONFIG,
            LOG_LEVEL,
            LOG_FORMAT,
        ],
    },
    CommandDef {
        name: "check",
        about: "validate the config offline and print the plan (no secret values)",
        // The sidecar's settings, so the plan shows what a sidecar given them would do.
        flags: &[
            CONFIG,
            POLL_INTERVAL,
            NOTIFY_SIGNAL,
            NOTIFY_PROCESS,
            NOTIFY_PIDFILE,
            NOTIFY_URL,
            STATE_DIR,
            LOG_LEVEL,
            LOG_FORMAT,
        ],
    },
    CommandDef {
        name: "probe",
        about: "exit 0 once a complete render exists in every --dir (a startupProbe)",
        flags: &[PROBE_DIR],
    },
    CommandDef {
        name: "exec",
        about: "run a command with rendered objects as environment variables (docs/exec.md)",
        flags: &[
            EXEC_DIR,
            ENV,
            ENV_FILE,
            ENV_TEMPLATE,
            EXPAND,
            WAIT,
            RESTART_ON_CHANGE,
            RESTART_SIGNAL,
            RESTART_GRACE,
            CONFIG,
            TOKEN_PATH,
            TIMEOUT,
            PINNED_VAULT_ADDRESS,
            ADMITTED,
            MAX_RESPONSE_SIZE,
            LOG_LEVEL,
            LOG_FORMAT,
        ],
    },
    CommandDef {
        name: "copy-self",
        about: "copy this binary to DIR/secretdrop (0555), for app containers to run exec",
        flags: &[COPY_DIR],
    },
    CommandDef {
        name: "version",
        about: "print the version",
        flags: &[],
    },
];

/// Parsed flags of one command: values by flag name, `"true"` for switches; the values of
/// repeatable flags; the command line after `--`.
pub struct Args {
    pub(crate) command: &'static CommandDef,
    pub(crate) values: BTreeMap<&'static str, String>,
    pub(crate) lists: BTreeMap<&'static str, Vec<String>>,
    pub(crate) trailing: Vec<String>,
}

impl Args {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Every value of a repeatable flag, in command-line order.
    pub fn list(&self, name: &str) -> &[String] {
        self.lists.get(name).map_or(&[], Vec::as_slice)
    }

    pub fn switch(&self, name: &str) -> Result<bool, Error> {
        match self.get(name) {
            None => Ok(false),
            Some(v) => config::env::parse_bool(v).ok_or_else(|| {
                Error::Usage(format!("--{name}: {v:?} is not a boolean (true or false)"))
            }),
        }
    }

    pub fn path(&self, name: &str, default: Option<&str>) -> Result<PathBuf, Error> {
        match self.get(name).or(default) {
            Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
            _ => Err(Error::Usage(format!(
                "--{name} is required for `secretdrop {}` (or set {})",
                self.command.name,
                env_name(name)
            ))),
        }
    }

    pub fn duration(&self, name: &str, default: Duration) -> Result<Duration, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v).map_err(|e| {
                Error::Usage(format!(
                    "--{name}: {v:?} is not a duration ({e}); e.g. 30s, 2m, 1h30m"
                ))
            }),
        }
    }

    /// `--state-dir`, checked against `--dir` (see [`crate::engine::state::StateDir::prepare`]).
    pub fn state_dir(
        &self,
        dir: &std::path::Path,
    ) -> Result<Option<crate::engine::state::StateDir>, Error> {
        match self.get("state-dir").filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => crate::engine::state::StateDir::prepare(
                std::path::Path::new(v),
                dir,
                self.switch("allow-disk")?,
            )
            .map(Some),
        }
    }

    /// `--volume NAME=DIR`, each checked, no name twice.
    pub fn volumes(&self) -> Result<Vec<(String, PathBuf)>, Error> {
        let mut out: Vec<(String, PathBuf)> = Vec::new();
        for v in self.list("volume") {
            let (name, dir) = v
                .split_once('=')
                .filter(|(n, d)| config::names::is_volume_name(n) && d.starts_with('/'))
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--volume: {v:?} is not NAME=DIR (a volume name, then an absolute \
                         directory), e.g. secrets-store-inline=/mnt/secretdrop-csi/secrets-store-inline"
                    ))
                })?;
            if out.iter().any(|(n, _)| n == name) {
                return Err(Error::Usage(format!("--volume {name}=... given twice")));
            }
            out.push((name.to_string(), PathBuf::from(dir)));
        }
        Ok(out)
    }

    /// `--revoke-replaced-after`: a duration, or `never`.
    pub fn revoke_replaced_after(&self) -> Result<Option<Duration>, Error> {
        match self.get("revoke-replaced-after") {
            Some("never") => Ok(None),
            _ => self
                .duration(
                    "revoke-replaced-after",
                    crate::provider::vault::records::DEFAULT_REVOKE_REPLACED_AFTER,
                )
                .map(Some),
        }
    }

    /// `--admitted`: the pins of what the webhook admitted (see
    /// [`crate::provider::ProviderSpec::pin`]); `None` when not given.
    pub fn admitted(&self) -> Option<Vec<String>> {
        self.get("admitted").map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        })
    }

    /// `--allowed-vault-address` and `--max-response-size`: what the operator allows the
    /// Vault client, whatever the config says.
    pub fn client_policy(&self) -> Result<crate::provider::vault::client::ClientPolicy, Error> {
        let mut policy = crate::provider::vault::client::ClientPolicy::default();
        if let Some(list) = self.get("allowed-vault-address") {
            policy.allowed_addresses = parse_address_list("allowed-vault-address", list)?;
        }
        if let Some(v) = self.get("max-response-size") {
            policy.max_response_bytes = Some(parse_size(v).ok_or_else(|| {
                Error::Usage(format!(
                    "--max-response-size: {v:?} is not a size: expected bytes or a number with \
                     Ki or Mi, from 1Ki to 64Mi, e.g. 512Ki"
                ))
            })?);
        }
        Ok(policy)
    }
}

/// A comma list of Vault addresses, each checked like a config's address.
pub fn parse_address_list(flag: &str, list: &str) -> Result<Vec<String>, Error> {
    let addresses: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            config::check_address(std::path::Path::new(&format!("--{flag}")), "value", a)
                .map_err(|e| Error::Usage(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    if addresses.is_empty() {
        return Err(Error::Usage(format!(
            "--{flag}: empty list; give at least one address, e.g. https://vault.example:8200"
        )));
    }
    Ok(addresses)
}

/// `1048576`, `512Ki`, `4Mi`: between 1 KiB and 64 MiB.
fn parse_size(v: &str) -> Option<usize> {
    let v = v.trim();
    let (digits, unit) = match v.strip_suffix("Mi") {
        Some(d) => (d, 1024 * 1024),
        None => match v.strip_suffix("Ki") {
            Some(d) => (d, 1024),
            None => (v, 1),
        },
    };
    let n = digits.parse::<usize>().ok()?.checked_mul(unit)?;
    (1024..=64 * 1024 * 1024).contains(&n).then_some(n)
}

pub fn env_name(flag: &str) -> String {
    format!("SECRETDROP_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

pub fn find_command(name: &str) -> Result<&'static CommandDef, Error> {
    COMMANDS.iter().find(|c| c.name == name).ok_or_else(|| {
        let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        Error::Usage(format!(
            "unknown command {name:?}: allowed are {}",
            names.join(", ")
        ))
    })
}

/// Parses flags; `None` means help was asked for.
pub fn parse(command: &'static CommandDef, rest: &[String]) -> Result<Option<Args>, Error> {
    let mut values = BTreeMap::new();
    let mut lists: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut trailing_args = Vec::new();
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        // Everything after `--` belongs to the command being run, `-h` and `--x` included.
        if arg == "--" {
            if trailing(command).is_none() {
                return Err(Error::Usage(format!(
                    "unexpected argument \"--\" for `secretdrop {}`",
                    command.name
                )));
            }
            trailing_args = it.by_ref().cloned().collect();
            break;
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(Error::Usage(match trailing(command) {
                Some(shown) => format!(
                    "unexpected argument {arg:?} for `secretdrop {}`: the command to run goes \
                     after --, as in `secretdrop {} [flags] {shown}`",
                    command.name, command.name
                ),
                None => format!(
                    "unexpected argument {arg:?} for `secretdrop {}`",
                    command.name
                ),
            }));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let def = command
            .flags
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| {
                let allowed: Vec<String> = command
                    .flags
                    .iter()
                    .map(|f| format!("--{}", f.name))
                    .collect();
                Error::Usage(format!(
                    "unknown flag --{name} for `secretdrop {}`; allowed are {}",
                    command.name,
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ))
            })?;
        let value = match (def.value, inline) {
            (None, None) => "true".to_string(),
            (None, Some(v)) => v,
            (Some(_), Some(v)) => v,
            (Some(meta), None) => it
                .next()
                .cloned()
                .ok_or_else(|| Error::Usage(format!("--{name} needs a value ({meta})")))?,
        };
        if def.repeat {
            lists.entry(def.name).or_default().push(value);
        } else if values.insert(def.name, value).is_some() {
            return Err(Error::Usage(format!("--{name} given twice")));
        }
    }
    for def in command.flags {
        if values.contains_key(def.name) || lists.contains_key(def.name) {
            continue;
        }
        if let Ok(v) = std::env::var(env_name(def.name)) {
            if def.repeat {
                let items = v.split(',').map(str::trim).filter(|i| !i.is_empty());
                lists.insert(def.name, items.map(str::to_string).collect());
            } else {
                values.insert(def.name, v);
            }
        }
    }
    if let Some(shown) = trailing(command) {
        if trailing_args.is_empty() {
            return Err(Error::Usage(format!(
                "`secretdrop {}` needs the command to run: `secretdrop {} [flags] {shown}`",
                command.name, command.name
            )));
        }
    }
    Ok(Some(Args {
        command,
        values,
        lists,
        trailing: trailing_args,
    }))
}

pub fn usage() -> String {
    // Every provider, from the one list (docs/architecture.md, "Adding a provider").
    let mut s = format!(
        "secretdrop: secrets from a store as files in a pod's memory-backed volume\n\
         (SecretProviderClass providers: {})\n\nUsage: secretdrop <command> [flags]\n\n\
         Commands:\n",
        crate::provider::NAMES.join(", ")
    );
    // The longest command name sets the column, as for flags.
    let width = COMMANDS.iter().map(|c| c.name.len()).max().unwrap_or(0) + 2;
    for c in COMMANDS {
        s.push_str(&format!("  {:<width$}{}\n", c.name, c.about));
    }
    s.push_str(concat!(
        "\nRun `secretdrop help <command>` for its flags.\n",
        "Every flag can also be set as SECRETDROP_<FLAG>. VAULT_ADDR, VAULT_CACERT, VAULT_CAPATH,\n",
        "VAULT_NAMESPACE, VAULT_SKIP_VERIFY, VAULT_TLS_SERVER_NAME, VAULT_CLIENT_CERT and\n",
        "VAULT_CLIENT_KEY (or their BAO_* twins) are defaults below the config file; other\n",
        "providers read their SDKs' variables (e.g. AWS_REGION, AWS_ROLE_ARN: docs/aws.md).\n",
        "Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.\n",
        "Documentation: docs/README.md in the source repository.\n"
    ));
    s
}

pub fn command_usage(c: &CommandDef) -> String {
    let mut s = format!("secretdrop {}: {}\n", c.name, c.about);
    if let Some(shown) = trailing(c) {
        s.push_str(&format!("\nUsage: secretdrop {} [flags] {shown}\n", c.name));
    }
    if c.flags.is_empty() {
        return s;
    }
    s.push_str("\nFlags:\n");
    let left = |f: &Flag| match f.value {
        Some(v) => format!("--{} {v}", f.name),
        None => format!("--{}", f.name),
    };
    // The widest flag sets the column, so a metavariable never runs into its help text.
    let width = c.flags.iter().map(|f| left(f).len()).max().unwrap_or(0) + 2;
    for f in c.flags {
        s.push_str(&format!(
            "  {:<width$}{} (env {})\n",
            left(f),
            f.help,
            env_name(f.name)
        ));
    }
    s
}
