//! `secretdrop sidecar`: the resident process (docs/pod.md); the loop is
//! [`crate::engine::sidecar`].

use std::path::PathBuf;

use crate::cli::Args;
use crate::config;
use crate::error::Error;

/// `secretdrop sidecar`: see [`crate::engine::sidecar`].
pub fn run(args: &Args) -> Result<(), Error> {
    let poll_interval = poll_interval_flag(args)?;
    let listen = match args.get("listen") {
        None => None,
        Some(v) => Some(
            crate::observe::parse_listen(v).map_err(|m| Error::Usage(format!("--listen: {m}")))?,
        ),
    };
    let notify = notify_flags(args)?;
    let mut opts = super::init::options(args)?;
    opts.poll_interval = poll_interval;
    opts.settings.quiet = true;
    let resident = crate::engine::sidecar::Resident {
        notify,
        listen,
        revoke_on_exit: args.switch("revoke-on-exit")?,
    };
    crate::engine::sidecar::run(opts, resident)
}

/// `--poll-interval`, when given (`check` reads it too).
pub(super) fn poll_interval_flag(args: &Args) -> Result<Option<std::time::Duration>, Error> {
    match args.get("poll-interval") {
        None => Ok(None),
        Some(v) => config::param::parse_poll_interval(v)
            .map(Some)
            .map_err(|m| Error::Usage(format!("--poll-interval: {m}"))),
    }
}

/// The `--notify-*` flags, checked (`check` reads them too).
pub(super) fn notify_flags(args: &Args) -> Result<config::NotifySettings, Error> {
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
    Ok(notify)
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
