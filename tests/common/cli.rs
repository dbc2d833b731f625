//! Running the secretdrop binary the way a pod would, and looking at what it left behind.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts that stderr mentions every fragment.
    pub fn expect_stderr(&self, fragments: &[&str]) -> &Run {
        for f in fragments {
            assert!(
                self.stderr.contains(f),
                "stderr lacks {f:?}:\n{}",
                self.stderr
            );
        }
        self
    }

    /// Asserts no secret value or token appears anywhere in the output.
    pub fn expect_no_leak(&self, secrets: &[&str]) -> &Run {
        for s in secrets {
            assert!(!s.is_empty());
            assert!(
                !self.stdout.contains(s),
                "stdout leaks a secret ({} bytes):\n{}",
                s.len(),
                self.stdout
            );
            assert!(
                !self.stderr.contains(s),
                "stderr leaks a secret ({} bytes):\n{}",
                s.len(),
                self.stderr
            );
        }
        self
    }
}

/// The binary under test: cargo's for integration tests; `$SECRETDROP_BIN`, or the
/// `secretdrop` beside the running example's directory (target/<profile>/) for examples.
/// The static release binary, built the way the image is (scripts/build-static.sh, once per
/// test process): what the flood, stall and empty-root tests run, since it is what ships.
pub fn static_bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new(root.join("scripts/build-static.sh"))
            .current_dir(root)
            .output()
            .expect("run build-static.sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "build-static.sh failed:\n{stderr}");
        assert!(
            stderr.contains("MiB"),
            "the script reports the size:\n{stderr}"
        );
        root.join(String::from_utf8_lossy(&out.stdout).trim())
    })
}

pub fn bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_secretdrop") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("SECRETDROP_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/examples");
    profile_dir.join("secretdrop")
}

/// Runs secretdrop with `args`, with no inherited VAULT_*/BAO_*/SECRETDROP_* variables, plus `env`.
pub fn secretdrop(args: &[&str], env: &[(&str, &str)]) -> Run {
    run_command(Command::new(bin()), args, env)
}

/// `init --config CONFIG --dir DIR [--token-path TOKEN]`, as arguments.
pub fn init_args(config: &Path, dir: &Path, token: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        "init".to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    args.extend(["--dir".to_string(), dir.display().to_string()]);
    if let Some(t) = token {
        args.extend(["--token-path".to_string(), t.display().to_string()]);
    }
    args
}

/// Runs `secretdrop init` with [`init_args`] and `extra` flags.
pub fn init(config: &Path, dir: &Path, token: Option<&Path>, extra: &[&str]) -> Run {
    let mut args = init_args(config, dir, token);
    args.extend(extra.iter().map(|s| s.to_string()));
    secretdrop(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
}

/// Removes the test process's VAULT_*, BAO_*, SECRETDROP_*, AWS_* and AZURE_* variables from `cmd`, so only
/// what a test passes reaches secretdrop.
pub fn scrub_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("VAULT_")
            || k.starts_with("BAO_")
            || k.starts_with("SECRETDROP_")
            || k.starts_with("AWS_")
            || k.starts_with("AZURE_")
        {
            cmd.env_remove(k);
        }
    }
}

pub fn run_command(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Run {
    scrub_env(&mut cmd);
    // As in a pod, whatever the test runner ignores or blocks (nohup ignores SIGHUP).
    super::process::default_signals(&mut cmd);
    cmd.args(args).envs(env.iter().copied());
    let started = Instant::now();
    let out = cmd.output().expect("run secretdrop");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// Writes `content` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}

/// One entry of a directory tree, as `ls -l` would describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Link(String),
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        content: Vec<u8>,
    },
}

/// Every entry under `dir` (not following symlinks), by relative path. Two equal trees mean
/// nothing was touched, names of version directories included.
pub fn tree(dir: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let entry = if meta.file_type().is_symlink() {
                Entry::Link(
                    std::fs::read_link(&p)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                )
            } else if meta.is_dir() {
                stack.push(p.clone());
                Entry::Dir {
                    mode: meta.permissions().mode() & 0o7777,
                }
            } else {
                Entry::File {
                    mode: meta.permissions().mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    content: std::fs::read(&p).unwrap(),
                }
            };
            out.insert(rel, entry);
        }
    }
    out
}

/// `ls -la`-style text of the top level of `dir`, for failure messages and the demo.
pub fn ls(dir: &Path) -> String {
    let out = Command::new("ls").arg("-la").arg(dir).output().expect("ls");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The version directory `..data` points at.
pub fn current_version(dir: &Path) -> String {
    std::fs::read_link(dir.join("..data"))
        .unwrap_or_else(|e| panic!("{}/..data: {e}\n{}", dir.display(), ls(dir)))
        .to_string_lossy()
        .into_owned()
}

/// Asserts the kubelet layout: `..data -> ..<timestamp>`, each name a link into `..data/`.
pub fn assert_layout(dir: &Path, names: &[&str]) {
    let version = current_version(dir);
    let stamp = version.strip_prefix("..").unwrap_or("");
    let shape_ok = stamp.len() == "2026_11_27_13_01_02.123456789".len()
        && stamp.chars().enumerate().all(|(i, c)| match i {
            4 | 7 | 10 | 13 | 16 => c == '_',
            19 => c == '.',
            _ => c.is_ascii_digit(),
        });
    assert!(
        shape_ok,
        "..data -> {version} is not ..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN"
    );
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.extend(["..data".to_string(), version.clone()]);
    expected.sort();
    let mut actual: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    actual.sort();
    assert_eq!(actual, expected, "{}", ls(dir));
    for n in names {
        assert_eq!(
            std::fs::read_link(dir.join(n)).unwrap().to_string_lossy(),
            format!("..data/{n}"),
            "{}",
            ls(dir)
        );
    }
}

pub fn read(path: impl AsRef<Path>) -> String {
    let p = path.as_ref();
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn mode_of(path: impl AsRef<Path>) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}
