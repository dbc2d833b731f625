//! A child process seen from outside, the way an operator would look at it: its memory and
//! CPU time from /proc, its open descriptors, lower limits to start it with, and the peak
//! memory of a short run.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM, ...), in MiB; 0 once the process is gone.
pub fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok());
    kib.unwrap_or(0.0) / 1024.0
}

/// User plus system CPU time the process has used so far (/proc/PID/stat).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let field = |n: usize| -> u64 {
        rest.split_whitespace()
            .nth(n)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks = field(11) + field(12);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// CPU time the process uses during `window`, as a fraction of one core.
pub fn cpu_share(pid: u32, window: Duration) -> f64 {
    let before = cpu_time(pid);
    std::thread::sleep(window);
    (cpu_time(pid).saturating_sub(before)).as_secs_f64() / window.as_secs_f64()
}

/// Open file descriptors of the process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Starts the command with at most `n` open files (soft and hard `RLIMIT_NOFILE`), like
/// `ulimit -n N` before it.
pub fn limit_fds(cmd: &mut Command, n: u64) {
    // SAFETY: setrlimit is async-signal-safe and nothing is allocated between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            match libc::setrlimit(libc::RLIMIT_NOFILE, &lim) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
}

/// Starts the command with at most `bytes` of address space (soft and hard `RLIMIT_AS`), like
/// `ulimit -v` before it: an allocation past it fails instead of taking the machine's memory.
pub fn limit_address_space(cmd: &mut Command, bytes: u64) {
    // SAFETY: setrlimit is async-signal-safe and nothing is allocated between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            match libc::setrlimit(libc::RLIMIT_AS, &lim) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
}

/// One finished run of a command, measured by the kernel.
pub struct Measured {
    pub output: Output,
    /// Its peak RSS in MiB.
    pub peak_rss_mib: f64,
    /// User plus system CPU time it used.
    pub cpu: Duration,
}

/// Runs `cmd` to its end with stdout and stderr captured, measured by the `rusage` wait4
/// reports for exactly this child: sampling /proc could miss the peak of a run that lasts
/// milliseconds, and RUSAGE_CHILDREN would mix in other tests' children.
#[allow(clippy::zombie_processes)] // wait4 below reaps the child, for its rusage
pub fn run_measured(mut cmd: Command) -> Measured {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let mut stderr = Vec::new();
    let _ = err.read_to_end(&mut stderr);
    let stdout = reader.join().expect("stdout reader");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data, all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which `child` never waits for after this (dropping a
    // Child does not wait); the pointers are to live locals.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Measured {
        output: Output {
            status: ExitStatus::from_raw(status),
            stdout,
            stderr,
        },
        peak_rss_mib: usage.ru_maxrss.max(0) as f64 / 1024.0,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
    }
}

/// Starts the command with every signal at its default disposition and none blocked, whatever
/// the test runner inherited (`nohup` ignores SIGHUP, and a shell cannot trap a signal that was
/// ignored when it started; runners have been seen ignoring real-time signal 32 too).
pub fn default_signals(cmd: &mut Command) {
    // SAFETY: signal, rt_sigaction and sigprocmask are async-signal-safe; nothing allocates
    // between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for sig in 1..32 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            // The real-time signals, by the system call: the C library refuses the two it
            // reserves (32 and 33). The kernel's sigaction for SIG_DFL: handler 0, no flags,
            // no restorer, an empty mask of 8 bytes.
            let dfl = [0u64; 4];
            for sig in 32..=64 {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    dfl.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                );
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
}
