//! The signal dispositions `secretdrop exec` hands the app (docs/exec.md, "Signals"): the app
//! starts as it would without exec in between. What exec itself changes is undone (no signal
//! blocked, SIGPIPE at its default although the Rust runtime ignores it in exec), and what exec
//! inherited as ignored stays ignored (`nohup` ignoring SIGHUP), plainly exec'd or supervised by
//! `--restart-on-change`, which then does not forward that signal either. The app is `cat
//! /proc/self/status`, which reports its own masks.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::cli::{bin, scrub_env};
use common::TestDir;
use secretdrop::render::{FileContent, Payload};
use secretdrop::secret::SecretBytes;
use secretdrop::volume::Volume;

/// A rendered directory holding one object, as a sidecar leaves it.
fn rendered(dir: &TestDir) -> std::path::PathBuf {
    let out = dir.join("secrets");
    let file = FileContent {
        data: SecretBytes::new(b"v".to_vec()),
        mode: 0o644,
        owner: None,
        group: None,
    };
    let payload = Payload {
        files: [("a".to_string(), file)].into_iter().collect(),
    };
    Volume::new(&out, false).commit(&payload).unwrap();
    out
}

/// The app's `SigIgn` and `SigBlk` masks, for exec started with `ignored` ignored and
/// `blocked` blocked (everything else at its default), with `extra` flags.
fn app_masks(ignored: &[i32], blocked: &[i32], extra: &[&str]) -> (u64, u64) {
    let dir = TestDir::new();
    let out = rendered(&dir);
    let mut cmd = Command::new(bin());
    scrub_env(&mut cmd);
    cmd.args(["exec", "--dir", out.to_str().unwrap(), "--env", "A=a"])
        .args(extra)
        .args(["--", "/bin/cat", "/proc/self/status"])
        .stdin(Stdio::null());
    common::process::default_signals(&mut cmd);
    let (ignored, blocked) = (ignored.to_vec(), blocked.to_vec());
    // SAFETY: signal, sigaddset and sigprocmask are async-signal-safe; nothing allocates (the
    // vectors were moved in before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for &sig in &ignored {
                libc::signal(sig, libc::SIG_IGN);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &sig in &blocked {
                libc::sigaddset(&mut set, sig);
            }
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let run = cmd.output().unwrap();
    let status = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{status}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mask = |field: &str| {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:\t")))
            .unwrap_or_else(|| panic!("no {field} in\n{status}"));
        u64::from_str_radix(line.trim(), 16).unwrap()
    };
    (mask("SigIgn"), mask("SigBlk"))
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

#[test]
fn the_app_starts_with_default_dispositions_and_nothing_blocked() {
    for extra in [&[][..], &["--restart-on-change"][..]] {
        let (ignored, blocked) = app_masks(&[], &[], extra);
        assert_eq!(
            ignored, 0,
            "{extra:?}: ignored {ignored:#x} (SIGPIPE is bit 12)"
        );
        assert_eq!(blocked, 0, "{extra:?}: blocked {blocked:#x}");
    }
}

/// `nohup secretdrop exec -- app` ignores SIGHUP in the app as `nohup app` would; a blocked
/// signal is not passed on (the mask is per thread of exec, not a choice of the user's).
#[test]
fn an_inherited_ignored_signal_stays_ignored_in_the_app_and_the_mask_is_cleared() {
    for extra in [&[][..], &["--restart-on-change"][..]] {
        let (ignored, blocked) = app_masks(
            &[libc::SIGHUP, libc::SIGUSR1],
            &[libc::SIGUSR2, libc::SIGTERM],
            extra,
        );
        assert_eq!(
            ignored,
            bit(libc::SIGHUP) | bit(libc::SIGUSR1),
            "{extra:?}: ignored {ignored:#x}"
        );
        assert_eq!(blocked, 0, "{extra:?}: blocked {blocked:#x}");
    }
}
