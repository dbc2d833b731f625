//! The provider contract: what every provider's test backend offers ([`Store`]), so that
//! tests/contract.rs writes each scenario once and runs it against every provider. A new
//! provider implements [`Store`] in a file beside [`vault`], [`aws`] and [`gcp`] and adds one line to
//! the `contract!` list at the end of tests/contract.rs; it is done when every scenario passes
//! (docs/architecture.md, "Adding a provider").
//!
//! A [`Store`] is started per test: its own identity (role, service account, token), its own
//! object names and, where the store cannot tell tests apart, its own counting point (a proxy),
//! so scenarios run in parallel against one server per test process. It counts what the store
//! itself sees (Vault's audit log, the requests arriving at moto), never what secretdrop says.
//!
//! [`Bench`] runs secretdrop against one or more stores, the way a pod would, and keeps every
//! line each run printed, so a scenario can prove no secret value or token reached any of them.

pub mod aws;
pub mod azure;
pub mod gcp;
pub mod vault;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::cli::{bin, run_command, scrub_env, Run};
use super::resident::Resident;
use super::{free_port, unique, TestDir};

/// Which provider parameters a class is written with. A reload from `First` to `Second` must
/// show in the files: the store keeps a value for each (see [`Store::put_at`]), reached only
/// through the changed parameter (Vault: another role and `secretKey`; AWS: another region).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Params {
    First,
    Second,
}

/// How an object stops being readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Deleted from the store (Vault 404, AWS ResourceNotFoundException).
    Missing,
    /// The test's identity may no longer read it (403, AccessDenied). A store that cannot
    /// refuse one object alone may refuse every object of the identity.
    Forbidden,
}

/// One object of a class: it renders to the file `name` (with `mode`, or the provider's
/// default for a SecretProviderClass, [`Store::default_mode`]).
#[derive(Clone, Debug)]
pub struct Obj {
    pub name: String,
    pub mode: Option<u32>,
}

impl Obj {
    pub fn new(name: &str) -> Obj {
        Obj {
            name: name.into(),
            mode: None,
        }
    }
    pub fn mode(mut self, mode: u32) -> Obj {
        self.mode = Some(mode);
        self
    }
}

/// The objects `names`, each with the default mode.
pub fn objs(names: &[&str]) -> Vec<Obj> {
    names.iter().map(|n| Obj::new(n)).collect()
}

/// A provider's test backend, as the contract scenarios use it.
pub trait Store {
    /// Sets up a fresh identity and namespace of object names in the provider's (shared)
    /// server; `dir` is the test's scratch directory (token files go there).
    fn start(dir: &Path) -> Self
    where
        Self: Sized;

    /// `spec.provider` of its classes, also the prefix of the test names.
    fn provider(&self) -> &'static str;

    /// Creates or updates objects with these values, where a class with `params` reads them.
    fn put_at(&self, params: Params, values: &[(&str, &str)]);

    /// [`Store::put_at`] for the `First` parameters.
    fn put(&self, values: &[(&str, &str)]) {
        self.put_at(Params::First, values)
    }

    /// Makes `object` unreadable, until the next [`Store::put`] of it (`Missing`) or for the
    /// rest of the test (`Forbidden`).
    fn fail(&self, object: &str, how: Failure);

    /// A SecretProviderClass (YAML text) for one volume holding `objects`.
    fn class(&self, objects: &[Obj], params: Params) -> String;

    /// The parameter holding a class's list of objects (`objects`; the GCP provider's is
    /// `secrets`).
    fn list_parameter(&self) -> &'static str {
        "objects"
    }

    /// Classes that must be refused, each with a fragment the error must hold (the field).
    fn bad_classes(&self) -> Vec<(String, String)>;

    /// The file content a value renders to.
    fn content(&self, value: &str) -> Vec<u8> {
        value.as_bytes().to_vec()
    }

    /// The mode of an object's file when the class sets none.
    fn default_mode(&self) -> u32 {
        0o644
    }

    /// Environment secretdrop needs to reach the store (endpoints, credentials variables).
    fn env(&self) -> Vec<(String, String)>;

    /// Flags secretdrop needs (e.g. `--token-path`); stores that appear together in one
    /// process must not both need the same flag.
    fn flags(&self) -> Vec<String>;

    /// The program the secretdrop arguments are appended to: the binary itself, or a wrapper
    /// that prepares the process first (e.g. a network namespace where the store's real host
    /// names resolve to a stand-in) and then runs it.
    fn command(&self) -> Command {
        let mut cmd = Command::new(bin());
        scrub_env(&mut cmd);
        cmd
    }

    /// Authentication exchanges the store has seen from this identity (Vault logins, STS
    /// AssumeRoleWithWebIdentity, token exchanges).
    fn logins(&self) -> usize;

    /// Object reads the store has seen for this store's objects.
    fn reads(&self) -> usize;

    /// Credentials that must never appear in any output (the service-account JWT, ...).
    fn tokens(&self) -> Vec<String>;

    /// The credentials secretdrop recorded in a `--state-dir` file (its JSON): they must
    /// never appear in any output either.
    fn recorded_credentials(&self, state: &serde_json::Value) -> Vec<String>;
}

/// secretdrop run against some stores, with a scratch directory; every output it produced is
/// kept for [`Bench::assert_no_leaks`].
pub struct Bench {
    pub dir: TestDir,
    base: Command,
    env: Vec<(String, String)>,
    flags: Vec<String>,
    secrets: RefCell<Vec<String>>,
    outputs: RefCell<Vec<(String, String)>>,
    logs: RefCell<Vec<PathBuf>>,
}

/// How long a sidecar may take to notice a change: several 1 s polls on a busy machine.
pub const WITHIN: Duration = Duration::from_secs(20);
/// The poll interval of every sidecar here: short, so changes arrive quickly.
pub const POLL: &str = "1s";

impl Bench {
    /// A bench for `stores` (one, or several for a process serving volumes of several
    /// providers): their environment and flags together; the first one's [`Store::command`].
    pub fn new(dir: TestDir, stores: &[&dyn Store]) -> Bench {
        let mut secrets = Vec::new();
        let (mut env, mut flags) = (Vec::new(), Vec::new());
        for s in stores {
            env.extend(s.env());
            flags.extend(s.flags());
            secrets.extend(s.tokens());
        }
        Bench {
            dir,
            base: stores[0].command(),
            env,
            flags,
            secrets: RefCell::new(secrets),
            outputs: RefCell::new(Vec::new()),
            logs: RefCell::new(Vec::new()),
        }
    }

    /// A fresh secret value (recorded, so [`Bench::assert_no_leaks`] looks for it).
    pub fn value(&self, tag: &str) -> String {
        let v = format!("{tag}-{}-s3cr3t", unique("v").replace('-', "x"));
        self.secrets.borrow_mut().push(v.clone());
        v
    }

    /// Something else that must never be printed (e.g. keys read from a state file).
    pub fn secret(&self, s: &str) {
        self.secrets.borrow_mut().push(s.to_string());
    }

    /// Writes `text` to `name` in the scratch dir the way a ConfigMap update lands (written
    /// aside, renamed into place), and returns the path.
    pub fn config(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        let aside = self.dir.join(format!(".{name}.new"));
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, &path).unwrap();
        path
    }

    /// A downward-API annotations file holding one class per volume (`name`, class text), as
    /// the webhook writes it for converted CSI volumes (docs/pod.md).
    pub fn annotations(&self, name: &str, volumes: &[(&str, &str)]) -> PathBuf {
        let quoted = |s: &str| serde_json::to_string(s).unwrap();
        let text: String = volumes
            .iter()
            .map(|(v, class)| format!("csi.secretdrop.dev/{v}={}\n", quoted(class)))
            .collect();
        self.config(name, &text)
    }

    /// `secretdrop ARGS` with the stores' environment (and flags, for init and sidecar).
    pub fn run(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        if matches!(args.first(), Some(&"init" | &"sidecar" | &"exec")) {
            // Right after the command: before the `--` of exec.
            let flags = self.flags.iter().map(String::as_str);
            all.splice(1..1, flags);
        }
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let run = run_command(clone_command(&self.base), &all, &env);
        let what = format!("secretdrop {}", args.join(" "));
        let mut outputs = self.outputs.borrow_mut();
        outputs.push((format!("stdout of {what}"), run.stdout.clone()));
        outputs.push((format!("stderr of {what}"), run.stderr.clone()));
        run
    }

    /// `secretdrop init --config CONFIG --dir OUT EXTRA...`
    pub fn init(&self, config: &Path, out: &Path, extra: &[&str]) -> Run {
        let (c, o) = (config.to_str().unwrap(), out.to_str().unwrap());
        let mut args = vec!["init", "--config", c, "--dir", o];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `secretdrop sidecar --config CONFIG --dir OUT --poll-interval 1s --listen PORT
    /// --log-level debug EXTRA...`, not waited for.
    pub fn spawn_sidecar(&self, config: &Path, out: &Path, extra: &[&str]) -> Resident {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut cmd = clone_command(&self.base);
        cmd.arg("sidecar")
            .args(["--config", config.to_str().unwrap()])
            .args(["--dir", out.to_str().unwrap()])
            .args(["--poll-interval", POLL, "--listen", &listen])
            .args(extra)
            .args(&self.flags)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if !extra.contains(&"--log-level") {
            cmd.args(["--log-level", "debug"]);
        }
        let log = self.dir.join(format!("{}.log", unique("sidecar")));
        self.logs.borrow_mut().push(log.clone());
        Resident::spawn(cmd, out, &log)
    }

    /// [`Bench::spawn_sidecar`], waited for until ready ([`wait_ready`]).
    pub fn sidecar(&self, config: &Path, out: &Path, extra: &[&str]) -> Resident {
        let r = self.spawn_sidecar(config, out, extra);
        wait_ready(&r);
        r
    }

    /// Panics if any output so far (runs, sidecar logs) holds a secret value or token.
    pub fn assert_no_leaks(&self) {
        let mut outputs = self.outputs.borrow().clone();
        for log in self.logs.borrow().iter() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            outputs.push((format!("log {}", log.display()), text));
        }
        let secrets = self.secrets.borrow();
        let mut lines = 0;
        for (what, text) in &outputs {
            lines += text.lines().count();
            for s in secrets.iter() {
                assert!(
                    !text.contains(s.as_str()),
                    "{what} holds a secret or token ({} bytes):\n{text}",
                    s.len()
                );
            }
        }
        assert!(
            lines > 0,
            "nothing was printed: the check would prove nothing"
        );
    }
}

/// A copy of `cmd` (program, arguments, environment): `Command` is not `Clone`.
fn clone_command(cmd: &Command) -> Command {
    let mut c = Command::new(cmd.get_program());
    c.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

/// Waits until the sidecar answers `/readyz` with 200 (every volume rendered or found
/// current) and says so in its log; panics with its log if it exits or takes over 20 s.
pub fn wait_ready(r: &Resident) {
    let ok = r.eventually(WITHIN, || {
        let log = r.log_text();
        let said = log.contains("ready: every file is rendered")
            || log.contains("the files on disk are already current");
        said && ready(r)
    });
    assert!(ok, "the sidecar never became ready:\n{}", r.log_text());
}

/// Whether `/readyz` answers 200 now.
pub fn ready(r: &Resident) -> bool {
    let addr = r.listen.as_deref().expect("started without --listen");
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    matches!(super::http("GET", port, "/readyz", &[], ""), Ok((200, _)))
}

/// Polls `cond` every 50 ms until it holds; false after `timeout`.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the replaced versions are gone (they stay readable for 2 s after a swap,
/// docs/output-layout.md), then asserts the layout holds exactly `names`.
pub fn wait_layout(out: &Path, names: &[&str]) {
    let versions = || {
        let entries = std::fs::read_dir(out).into_iter().flatten().flatten();
        let names = entries.map(|e| e.file_name().to_string_lossy().into_owned());
        names
            .filter(|n| n.starts_with("..") && n != "..data")
            .count()
    };
    assert!(
        eventually(WITHIN, || versions() == 1),
        "old versions stay in {}",
        out.display()
    );
    super::cli::assert_layout(out, names);
}

/// The file `name` in `out`, or None when it cannot be read.
pub fn file(out: &Path, name: &str) -> Option<Vec<u8>> {
    std::fs::read(out.join(name)).ok()
}
