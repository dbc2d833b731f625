//! A running `secretdrop sidecar`, as a child process the test controls: wait for its first
//! render, read its log, scrape its metrics, signal it, stop it. Killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cli::bin;

pub struct Resident {
    child: Option<Child>,
    pub dir: PathBuf,
    pub log: PathBuf,
    pub listen: Option<String>,
}

impl Resident {
    /// Starts `secretdrop sidecar --config CONFIG --dir DIR [extra...]`, logging to `log`.
    pub fn start(config: &Path, dir: &Path, log: &Path, extra: &[&str]) -> Resident {
        Resident::start_with(config, dir, log, extra, |_| {})
    }

    /// [`Resident::start`] with the command adjusted first, e.g. by
    /// [`super::process::limit_fds`].
    pub fn start_with(
        config: &Path,
        dir: &Path,
        log: &Path,
        extra: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Resident {
        Resident::start_program(Command::new(bin()), config, dir, log, extra, adjust)
    }

    /// [`Resident::start_with`] run by `program` (the binary itself, or a wrapper that execs
    /// it with the arguments that follow, such as `nsenter ... --`).
    pub fn start_program(
        program: Command,
        config: &Path,
        dir: &Path,
        log: &Path,
        extra: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Resident {
        let mut cmd = program;
        super::cli::scrub_env(&mut cmd);
        cmd.arg("sidecar")
            .arg("--config")
            .arg(config)
            .arg("--dir")
            .arg(dir)
            .args(extra);
        adjust(&mut cmd);
        Resident::spawn(cmd, dir, log)
    }

    /// Spawns `cmd`, a whole `secretdrop sidecar ...` command line (a test may build it on
    /// another program, e.g. a wrapper that enters a namespace first), logging to `log`.
    /// `dir` is its `--dir`; its `--listen` is found among the arguments.
    pub fn spawn(mut cmd: Command, dir: &Path, log: &Path) -> Resident {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let listen = args
            .iter()
            .position(|a| a == "--listen")
            .and_then(|i| args.get(i + 1).cloned());
        let file = std::fs::File::create(log).expect("create sidecar log");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        // Signals reach it as in a pod, whatever the test runner ignores (nohup).
        super::process::default_signals(&mut cmd);
        let child = cmd.spawn().expect("start secretdrop sidecar");
        Resident {
            child: Some(child),
            dir: dir.to_path_buf(),
            log: log.to_path_buf(),
            listen,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until this sidecar has rendered (or found current) every file, and `secretdrop
    /// probe --dir DIR` agrees. A render left by an earlier run does not count.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let log = self.log_text();
            let rendered = log.contains("ready: every file is rendered")
                || log.contains("the files on disk are already current");
            let out = Command::new(bin())
                .args(["probe", "--dir"])
                .arg(&self.dir)
                .output()
                .unwrap();
            if rendered && out.status.success() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "sidecar exited with {status} before its first render:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no complete render after {timeout:?}:\n{}", self.log_text());
    }

    /// Polls `cond` until it holds or `timeout` passes; returns whether it held.
    pub fn eventually(&self, timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        cond()
    }

    /// GET a path on `--listen`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let addr = self.listen.as_deref().expect("started without --listen");
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        super::http("GET", port, path, &[], "").expect("GET from the sidecar")
    }

    /// The value of a metric line `name` (exact series text, labels included).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits up to `timeout` for the process to exit on its own: its exit code (None if it
    /// was still running, and is then killed, or died of a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("already stopped");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits: (exit code, time to exit).
    pub fn stop(&mut self) -> (Option<i32>, Duration) {
        let mut child = self.child.take().expect("already stopped");
        let started = Instant::now();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = started + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status.code(), started.elapsed());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return (None, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Resident {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
