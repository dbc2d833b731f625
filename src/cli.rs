//! The command line (docs/cli.md): parse, dispatch, map errors to exit codes.
//!
//! Every flag can also come from `SECRETDROP_<FLAG>` (e.g. `SECRETDROP_TOKEN_PATH`); a flag on
//! the command line wins over the environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::{self, Auth, Output, Spec, VaultEnv};
use crate::error::{Error, ExitCode};
use crate::fetch::Fetcher;
use crate::render;
use crate::volume::{Commit, Volume, VolumeSet};

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
    "keep the token and leases here for the next process (tmpfs, not inside --dir)",
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
const MAX_RESPONSE_SIZE: Flag = flag(
    "max-response-size",
    Some("BYTES"),
    "largest Vault answer read, e.g. 512Ki, 4Mi [default: 1Mi]",
);

struct CommandDef {
    name: &'static str,
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
            KUBECONFIG,
            LOG_LEVEL,
            LOG_FORMAT,
        ],
    },
    CommandDef {
        name: "check",
        about: "validate the config offline and print the plan (no secret values)",
        flags: &[CONFIG, LOG_LEVEL, LOG_FORMAT],
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
            WAIT,
            RESTART_ON_CHANGE,
            RESTART_SIGNAL,
            RESTART_GRACE,
            CONFIG,
            TOKEN_PATH,
            TIMEOUT,
            PINNED_VAULT_ADDRESS,
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
struct Args {
    command: &'static CommandDef,
    values: BTreeMap<&'static str, String>,
    lists: BTreeMap<&'static str, Vec<String>>,
    trailing: Vec<String>,
}

impl Args {
    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Every value of a repeatable flag, in command-line order.
    fn list(&self, name: &str) -> &[String] {
        self.lists.get(name).map_or(&[], Vec::as_slice)
    }

    fn switch(&self, name: &str) -> Result<bool, Error> {
        match self.get(name) {
            None => Ok(false),
            Some(v) => config::env::parse_bool(v).ok_or_else(|| {
                Error::Usage(format!("--{name}: {v:?} is not a boolean (true or false)"))
            }),
        }
    }

    fn path(&self, name: &str, default: Option<&str>) -> Result<PathBuf, Error> {
        match self.get(name).or(default) {
            Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
            _ => Err(Error::Usage(format!(
                "--{name} is required for `secretdrop {}` (or set {})",
                self.command.name,
                env_name(name)
            ))),
        }
    }

    fn duration(&self, name: &str, default: Duration) -> Result<Duration, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v).map_err(|e| {
                Error::Usage(format!(
                    "--{name}: {v:?} is not a duration ({e}); e.g. 30s, 2m, 1h30m"
                ))
            }),
        }
    }

    /// `--state-dir`, checked against `--dir` (see [`crate::state::StateDir::prepare`]).
    fn state_dir(&self, dir: &std::path::Path) -> Result<Option<crate::state::StateDir>, Error> {
        match self.get("state-dir").filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => crate::state::StateDir::prepare(
                std::path::Path::new(v),
                dir,
                self.switch("allow-disk")?,
            )
            .map(Some),
        }
    }

    /// `--volume NAME=DIR`, each checked, no name twice.
    fn volumes(&self) -> Result<Vec<(String, PathBuf)>, Error> {
        let mut out: Vec<(String, PathBuf)> = Vec::new();
        for v in self.list("volume") {
            let (name, dir) = v
                .split_once('=')
                .filter(|(n, d)| config::volumes::is_volume_name(n) && d.starts_with('/'))
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
    fn revoke_replaced_after(&self) -> Result<Option<Duration>, Error> {
        match self.get("revoke-replaced-after") {
            Some("never") => Ok(None),
            _ => self
                .duration(
                    "revoke-replaced-after",
                    crate::state::DEFAULT_REVOKE_REPLACED_AFTER,
                )
                .map(Some),
        }
    }

    /// `--allowed-vault-address` and `--max-response-size`: what the operator allows the
    /// Vault client, whatever the config says.
    fn client_policy(&self) -> Result<crate::vault::ClientPolicy, Error> {
        let mut policy = crate::vault::ClientPolicy::default();
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
fn parse_address_list(flag: &str, list: &str) -> Result<Vec<String>, Error> {
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

fn env_name(flag: &str) -> String {
    format!("SECRETDROP_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

pub fn main() -> i32 {
    let argv: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect()
    {
        Ok(v) => v,
        Err(_) => return report(Error::Usage("arguments must be valid UTF-8".into())),
    };
    match run(&argv) {
        Ok(()) => ExitCode::Success as i32,
        Err(e) => report(e),
    }
}

fn report(e: Error) -> i32 {
    let code = e.exit_code();
    let usage_hint = code == ExitCode::Usage && matches!(e, Error::Usage(_));
    if crate::logging::is_json() {
        // `--log-format json`: the final error is one JSON line like every other.
        if usage_hint {
            tracing::error!(
                exit_code = code as i32,
                hint = "run `secretdrop help` for usage",
                "{e}"
            );
        } else {
            tracing::error!(exit_code = code as i32, "{e}");
        }
        return code as i32;
    }
    eprintln!("secretdrop: error: {e}");
    if usage_hint {
        eprintln!("Run `secretdrop help` for usage.");
    }
    code as i32
}

fn run(argv: &[String]) -> Result<(), Error> {
    let Some(name) = argv.first() else {
        print!("{}", usage());
        return Err(Error::Usage("no command given".into()));
    };
    if matches!(name.as_str(), "help" | "--help" | "-h") {
        // `secretdrop help init` is `secretdrop init --help`.
        match argv.get(1) {
            None => print!("{}", usage()),
            Some(topic) => print!("{}", command_usage(find_command(topic)?)),
        }
        return Ok(());
    }
    if name == "--version" {
        return version();
    }
    let command = find_command(name)?;
    let Some(args) = parse(command, &argv[1..])? else {
        print!("{}", command_usage(command));
        return Ok(());
    };
    let level = match args.get("log-level") {
        None => tracing::Level::INFO,
        Some(l) => crate::logging::parse_level(l).ok_or_else(|| {
            Error::Usage(format!(
                "--log-level: {l:?} is not one of error, warn, info, debug, trace"
            ))
        })?,
    };
    let json = match args.get("log-format") {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(Error::Usage(format!(
                "--log-format: {other:?} is not one of text, json"
            )))
        }
    };
    crate::logging::init(level, json);
    match command.name {
        "init" => init(&args),
        "sidecar" => sidecar(&args),
        "webhook" => webhook(&args),
        "probe" => probe(&args),
        "check" => check(&args),
        "exec" => exec(args),
        "copy-self" => copy_self(&args),
        _ => version(),
    }
}

fn find_command(name: &str) -> Result<&'static CommandDef, Error> {
    COMMANDS.iter().find(|c| c.name == name).ok_or_else(|| {
        let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        Error::Usage(format!(
            "unknown command {name:?}: allowed are {}",
            names.join(", ")
        ))
    })
}

/// Parses flags; `None` means help was asked for.
fn parse(command: &'static CommandDef, rest: &[String]) -> Result<Option<Args>, Error> {
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

fn usage() -> String {
    let mut s = String::from(
        "secretdrop: Vault / OpenBao secrets as files in a pod's memory-backed volume\n\nUsage: secretdrop <command> [flags]\n\nCommands:\n",
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
        "VAULT_CLIENT_KEY (or their BAO_* twins) are defaults below the config file.\n",
        "Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.\n",
        "Documentation: docs/README.md in the source repository.\n"
    ));
    s
}

fn command_usage(c: &CommandDef) -> String {
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

fn version() -> Result<(), Error> {
    println!("secretdrop {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}

fn load_spec(args: &Args) -> Result<Spec, Error> {
    let path = args.path("config", None)?;
    Ok(config::load(&path, &VaultEnv::from_process())?)
}

/// `secretdrop init`: one complete render of every volume, or nothing changed and exit
/// code != 0. Volumes that log in the same way share one login (see [`config::volumes`]).
fn init(args: &Args) -> Result<(), Error> {
    let started = Instant::now();
    // Flags first: a usage error is reported before the config file is even read.
    let dir = args.path("dir", Some(DEFAULT_DIR))?;
    let allow_disk = args.switch("allow-disk")?;
    let token_path = args.path("token-path", Some(DEFAULT_TOKEN_PATH))?;
    let timeout = args.duration("timeout", DEFAULT_TIMEOUT)?;
    let policy = args.client_policy()?;
    let grace = args.revoke_replaced_after()?;
    let volumes = args.volumes()?;
    let state_dir = args.state_dir(&dir)?;
    let path = args.path("config", None)?;
    let text = config::read_bounded(&path)?;
    let layout = config::volumes::Layout {
        dir,
        volumes,
        token_path: token_path.clone(),
    };
    let units = config::volumes::load_units(&path, &text, &VaultEnv::from_process(), &layout)?;
    if let Some((spec, dir)) = config::volumes::aws_unit(&path, &units)? {
        if let Some(aws) = &spec.aws {
            // provider: aws (docs/aws.md).
            return crate::aws::run::init(aws, &Volume::new(&dir, allow_disk), started, timeout);
        }
    }
    let several = units.len() > 1;
    let mut prepared = Vec::new();
    for (i, unit) in units.into_iter().enumerate() {
        let volume = VolumeSet::new(
            unit.dirs
                .iter()
                .map(|d| Volume::new(d, allow_disk))
                .collect(),
        );
        volume.check_filesystem()?;
        crate::volume::check_ownership(&unit.spec.objects).map_err(Error::Unfit)?;
        let fetcher = Fetcher::new(&unit.spec, &token_path, &policy)?;
        let state_dir = match (&state_dir, several) {
            (Some(sd), true) => Some(crate::state::StateDir::prepare(
                &sd.path().join(format!("unit-{i}")),
                volume.dir(),
                allow_disk,
            )?),
            (sd, _) => sd.clone(),
        };
        prepared.push((unit.spec, volume, fetcher, state_dir));
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the async runtime: {e}")))?;
    let deadline = started + timeout;
    for (spec, volume, fetcher, state_dir) in &prepared {
        let (outcome, files) = match state_dir {
            Some(sd) => runtime.block_on(crate::state::init(
                sd, spec, fetcher, volume, grace, deadline,
            ))?,
            None => {
                let snapshot = runtime.block_on(fetcher.fetch(&spec.reads, deadline))?;
                let payload = render::render(spec, &snapshot)?;
                (volume.commit(&payload)?, payload.files.len())
            }
        };
        let (what, version) = match &outcome {
            Commit::Written { version } => ("rendered", version),
            Commit::Unchanged { version } => ("unchanged", version),
        };
        tracing::info!(
            dir = %volume.describe(),
            version = %version,
            files,
            reads = spec.reads.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "{what}"
        );
    }
    Ok(())
}

/// `secretdrop sidecar`: see [`crate::sidecar`].
fn sidecar(args: &Args) -> Result<(), Error> {
    let poll_interval = match args.get("poll-interval") {
        None => None,
        Some(v) => Some(
            config::native::parse_poll_interval(v)
                .map_err(|m| Error::Usage(format!("--poll-interval: {m}")))?,
        ),
    };
    let listen = match args.get("listen") {
        None => None,
        Some(v) => Some(
            crate::observe::parse_listen(v).map_err(|m| Error::Usage(format!("--listen: {m}")))?,
        ),
    };
    let notify = config::NotifySettings {
        signal: match args.get("notify-signal") {
            None => None,
            Some(v) => Some(
                config::parse_signal(v)
                    .map_err(|m| Error::Usage(format!("--notify-signal: {m}")))?,
            ),
        },
        process: args.get("notify-process").map(str::to_string),
        pid_file: args.get("notify-pidfile").map(PathBuf::from),
        url: args.get("notify-url").map(str::to_string),
    };
    check_notify_flags(&notify)?;
    let dir = args.path("dir", Some(DEFAULT_DIR))?;
    let opts = crate::sidecar::Options {
        config: args.path("config", None)?,
        state_dir: args.state_dir(&dir)?,
        revoke_replaced_after: args.revoke_replaced_after()?,
        dir,
        allow_disk: args.switch("allow-disk")?,
        token_path: args.path("token-path", Some(DEFAULT_TOKEN_PATH))?,
        poll_interval,
        notify,
        listen,
        revoke_on_exit: args.switch("revoke-on-exit")?,
        policy: args.client_policy()?,
        volumes: args.volumes()?,
        unit: 0,
        members: Vec::new(),
    };
    crate::sidecar::run(opts)
}

/// The notification flags' rules, worded as flags (the config file's keys have their own words).
fn check_notify_flags(n: &config::NotifySettings) -> Result<(), Error> {
    let signal = n.signal.is_some();
    let target = n.process.is_some() || n.pid_file.is_some();
    if signal && !target {
        return Err(Error::Usage(
            "--notify-signal needs a process to signal: add --notify-process NAME or \
             --notify-pidfile FILE"
                .into(),
        ));
    }
    if target && !signal {
        return Err(Error::Usage(format!(
            "--notify-{} needs --notify-signal SIG (which signal to send), e.g. SIGHUP",
            if n.process.is_some() {
                "process"
            } else {
                "pidfile"
            }
        )));
    }
    if n.process.is_some() && n.pid_file.is_some() {
        return Err(Error::Usage(
            "give --notify-process or --notify-pidfile, not both".into(),
        ));
    }
    config::check_notify(n).map_err(|(field, m)| Error::Usage(format!("--notify-{field}: {m}")))
}

/// `secretdrop webhook`: see [`crate::webhook::server`].
fn webhook(args: &Args) -> Result<(), Error> {
    let listen = crate::observe::parse_listen(args.get("listen").unwrap_or(":8443"))
        .map_err(|m| Error::Usage(format!("--listen: {m}")))?;
    let mut defaults = crate::webhook::mutate::Defaults::default();
    if let Some(image) = args.get("image") {
        defaults.image = image.to_string();
    }
    if let Some(addr) = args.get("vault-address") {
        let checked = config::check_address(std::path::Path::new("--vault-address"), "value", addr)
            .map_err(|e| Error::Usage(e.to_string()))?;
        defaults.vault_address = Some(checked);
    }
    if let Some(list) = args.get("allowed-vault-address") {
        defaults.allowed_vault_addresses = parse_address_list("allowed-vault-address", list)?;
    }
    defaults.token_audience = args.get("token-audience").map(str::to_string);
    if let Some(size) = args.get("size-limit") {
        defaults.size_limit = size.to_string();
    }
    if let Some(r) = args.get("aws-region") {
        // Checked as a class's region is: it becomes AWS_REGION, and endpoint host names.
        let checked = config::aws::check_region(std::path::Path::new("--aws-region"), "value", r)
            .map_err(|e| Error::Usage(e.to_string()))?;
        defaults.aws_region = Some(checked);
    }
    if let Some(cm) = args.get("ca-configmap") {
        defaults.ca_configmap = Some(
            config::pod_settings::ConfigMapKey::parse(cm)
                .map_err(|m| Error::Usage(format!("--ca-configmap: {m}")))?,
        );
    }
    // The API is only needed for pods with CSI volumes: without it the webhook still serves
    // everything else, and rejects those pods saying why.
    let kube = match args.get("kubeconfig") {
        Some(file) => Some(
            crate::kube::Client::from_kubeconfig(std::path::Path::new(file))
                .map_err(|e| Error::Usage(format!("--kubeconfig: {e}")))?,
        ),
        None => match crate::kube::Client::in_cluster() {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(reason = %e, "no Kubernetes API access: pods with Secrets Store CSI volumes will be rejected");
                None
            }
        },
    };
    if let Some(k) = &kube {
        tracing::info!(
            server = k.server(),
            "reading SecretProviderClasses from the Kubernetes API"
        );
    }
    crate::webhook::server::run(crate::webhook::server::Options {
        tls_cert: args.path("tls-cert", None)?,
        tls_key: args.path("tls-key", None)?,
        listen,
        defaults,
        kube,
    })
}

/// `secretdrop probe`: 0 when `..data` points at a complete version in every `--dir`, 1
/// otherwise (naming the first directory that is not ready).
fn probe(args: &Args) -> Result<(), Error> {
    let dirs: Vec<PathBuf> = match args.list("dir") {
        [] => vec![PathBuf::from(DEFAULT_DIR)],
        list => list.iter().map(PathBuf::from).collect(),
    };
    let mut ready = Vec::new();
    for dir in &dirs {
        match Volume::new(dir, true).readiness() {
            Ok(version) => ready.push(format!("{}: {version}", dir.display())),
            Err(why) => return Err(Error::NotReady(format!("{}: {why}", dir.display()))),
        }
    }
    println!("{}", ready.join("\n"));
    Ok(())
}

/// `secretdrop exec`: see [`crate::exec`]. Values come from `--dir` (the default) or, with
/// `--config`, straight from Vault.
fn exec(args: Args) -> Result<(), Error> {
    let usage = |m: String| Error::Usage(m);
    let request = crate::exec::Request::parse(args.list("env"), args.list("env-file"))?;
    let restart = if args.switch("restart-on-change")? {
        let signal = match args.get("restart-signal") {
            None => libc::SIGTERM,
            Some(v) => {
                config::parse_signal(v).map_err(|m| usage(format!("--restart-signal: {m}")))?
            }
        };
        Some(crate::exec::Restart {
            signal,
            grace: args.duration("restart-grace", Duration::from_secs(10))?,
        })
    } else {
        if let Some(flag) = ["restart-signal", "restart-grace"]
            .into_iter()
            .find(|f| args.get(f).is_some())
        {
            return Err(usage(format!("--{flag} needs --restart-on-change")));
        }
        None
    };
    let source = if args.get("config").is_some() {
        if let Some(flag) = ["dir", "wait"].into_iter().find(|f| args.get(f).is_some()) {
            return Err(usage(format!(
                "--{flag} and --config exclude each other: --config fetches from Vault \
                 without files, --dir reads what a sidecar rendered"
            )));
        }
        let token_path = args.path("token-path", Some(DEFAULT_TOKEN_PATH))?;
        let timeout = args.duration("timeout", DEFAULT_TIMEOUT)?;
        let policy = args.client_policy()?;
        let spec = load_spec(&args)?;
        if spec.aws.is_some() {
            return Err(usage(
                "--config with provider aws is not supported by exec: run secretdrop init or \
                 sidecar with it and read the files with --dir"
                    .into(),
            ));
        }
        crate::exec::Source::Vault {
            spec: Box::new(spec),
            token_path,
            timeout,
            policy,
        }
    } else {
        if let Some(flag) = [
            "token-path",
            "timeout",
            "allowed-vault-address",
            "max-response-size",
        ]
        .into_iter()
        .find(|f| args.get(f).is_some())
        {
            return Err(usage(format!("--{flag} only applies with --config")));
        }
        crate::exec::Source::Dir {
            dir: args.path("dir", Some(DEFAULT_DIR))?,
            wait: args.duration("wait", DEFAULT_TIMEOUT)?,
        }
    };
    let code = crate::exec::run(crate::exec::Options {
        source,
        request,
        restart,
        command: args.trailing,
    })?;
    // The supervised app's exit code is ours.
    std::process::exit(code)
}

/// `secretdrop copy-self`: see [`crate::exec::copy_self`].
fn copy_self(args: &Args) -> Result<(), Error> {
    Ok(crate::exec::copy_self(&args.path("dir", None)?)?)
}

/// `secretdrop check`: the plan, without contacting Vault or printing secret values.
fn check(args: &Args) -> Result<(), Error> {
    let path = args.path("config", None)?;
    let text = config::read_bounded(&path)?;
    let sources = config::volumes::sources(&path, &text, &VaultEnv::from_process())?;
    // A config of one volume prints as it always did; an annotations file with converted CSI
    // volumes prints one plan per volume, each under its name.
    let several = sources.len() > 1 || sources.iter().any(|s| s.volume.is_some());
    for source in &sources {
        if several {
            match &source.volume {
                None => println!("volume --dir (secretdrop.dev/objects):"),
                Some(v) => println!("volume {v} (--volume {v}=DIR):"),
            }
        }
        print!("{}", plan(&source.spec));
    }
    Ok(())
}

/// A human-readable plan of a spec.
pub fn plan(spec: &Spec) -> String {
    if let Some(aws) = &spec.aws {
        return crate::aws::plan(&spec.source, aws);
    }
    let mut s = format!("config: {} (valid)\n", spec.source.display());
    let tls = &spec.vault.tls;
    let mut tls_desc = vec![];
    if let Some(p) = &tls.ca_cert {
        tls_desc.push(format!("CA file {}", p.display()));
    }
    if tls.ca_pem.is_some() {
        tls_desc.push("CA from secretdrop.dev/ca-cert".into());
    }
    if let Some(p) = &tls.ca_directory {
        tls_desc.push(format!("CA directory {}", p.display()));
    }
    if let Some(n) = &tls.server_name {
        tls_desc.push(format!("server name {n}"));
    }
    if tls.client_cert.is_some() {
        tls_desc.push("client certificate".into());
    }
    if tls.skip_verify {
        tls_desc.push("VERIFICATION DISABLED".into());
    }
    s.push_str(&format!("vault: {}", spec.vault.address));
    if let Some(ns) = &spec.vault.namespace {
        s.push_str(&format!(" namespace {ns}"));
    }
    if spec.vault.address.starts_with("https://") {
        s.push_str(&format!(
            " (TLS: {})",
            if tls_desc.is_empty() {
                "system roots".into()
            } else {
                tls_desc.join(", ")
            }
        ));
    }
    s.push('\n');
    let auth = match &spec.auth {
        Auth::Kubernetes(l) | Auth::Jwt(l) => format!(
            "{} login at auth/{}/login as role {:?}, token from {}{}",
            spec.auth.method_name(),
            l.mount,
            l.role,
            l.token_path
                .as_ref()
                .map_or("--token-path".into(), |p| p.display().to_string()),
            l.audience
                .as_ref()
                .map_or(String::new(), |a| format!(", audience {a}"))
        ),
        Auth::AppRole {
            mount,
            role_id_file,
            secret_id_file,
        } => format!(
            "approle login at auth/{mount}/login, role_id from {}, secret_id from {}",
            role_id_file.display(),
            secret_id_file.display()
        ),
        Auth::Token { token_file } => format!("token from {}", token_file.display()),
    };
    s.push_str(&format!("auth: {auth}\n"));
    s.push_str(&format!("reads ({}):\n", spec.reads.len()));
    for r in &spec.reads {
        s.push_str(&format!("  {} {}", r.method, r.path));
        if let Some(body) = &r.body {
            let keys: Vec<String> =
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(body)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
            s.push_str(&format!(" with secretArgs keys [{}]", keys.join(", ")));
        }
        s.push('\n');
    }
    s.push_str(&format!("files ({}):\n", spec.objects.len()));
    for o in &spec.objects {
        let what = match &o.output {
            Output::WholeResponse => "whole response as JSON".to_string(),
            Output::Key { key, encoding } => format!(
                "key {key:?}{}",
                match encoding {
                    config::Encoding::Utf8 => "",
                    config::Encoding::Base64 => ", base64-decoded",
                    config::Encoding::Hex => ", hex-decoded",
                }
            ),
            Output::Format { format, keys } => format!(
                "{} of {}",
                format.name(),
                keys.as_ref()
                    .map_or("all keys".into(), |k| format!("keys [{}]", k.join(", ")))
            ),
            Output::Template(t) => format!("template ({} lines)", t.lines().count().max(1)),
        };
        let owner = match (o.owner, o.group) {
            (None, None) => String::new(),
            (u, g) => format!(
                " owner {}:{}",
                u.map_or("-".into(), |u| u.to_string()),
                g.map_or("-".into(), |g| g.to_string())
            ),
        };
        s.push_str(&format!(
            "  {} {:04o}{owner} <- {} {}\n",
            o.name, o.mode, spec.reads[o.read].path, what
        ));
    }
    s
}
