//! `secretdrop check`: the plan, offline (docs/cli.md).

use crate::cli::Args;
use crate::config::{self, VaultEnv};
use crate::error::Error;

/// `secretdrop check`: the plan, without contacting Vault or printing secret values.
pub fn run(args: &Args) -> Result<(), Error> {
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
        print!("{}", source.spec.provider.plan(&source.spec.source));
        print!("{}", sidecar_plan(args, &source.spec)?);
    }
    if config::annotations::looks_like_annotations(&text) {
        print!("{}", synced_plan(&path, &text)?);
    }
    Ok(())
}

/// What the webhook rewrote for synced Secrets (docs/webhook.md, "Synced Secrets"): the
/// secret volumes shown from class volumes, file by file, and its notes.
fn synced_plan(path: &std::path::Path, text: &str) -> Result<String, Error> {
    let all = config::annotations::parse_file(path, text)?;
    let mut out = String::new();
    for view in config::views::of_annotations(path, &all)? {
        out.push_str(&format!(
            "volume {} (--volume {}=DIR): the synced Secret's files, from volume {}\n",
            view.volume, view.volume, view.from
        ));
        for f in &view.files {
            let part = match f.part {
                crate::volume::view::Part::All => "",
                crate::volume::view::Part::Certificates => " (its certificates)",
                crate::volume::view::Part::PrivateKey => " (its private key)",
            };
            out.push_str(&format!(
                "  {} <- {}{part}, mode {:04o}\n",
                f.path, f.object, f.mode
            ));
        }
    }
    if let Some(notes) = all.get(crate::webhook::synced::NOTES_ANNOTATION) {
        out.push_str("rewritten by the webhook for synced Secrets:\n");
        for line in notes.lines().filter(|l| !l.is_empty()) {
            out.push_str(&format!("  {line}\n"));
        }
    }
    Ok(out)
}

/// What a sidecar does besides rendering, as `secretdrop sidecar` with the same flags (and
/// `SECRETDROP_*` variables) would: the poll interval, the notification, the state dir; each
/// with where it comes from.
fn sidecar_plan(args: &Args, spec: &config::Spec) -> Result<String, Error> {
    let poll = match super::sidecar::poll_interval_flag(args)? {
        Some(d) => format!("{} (--poll-interval)", humantime::format_duration(d)),
        None => match spec.sidecar.poll_interval {
            Some(d) => format!("{} (config)", humantime::format_duration(d)),
            None => format!(
                "{} (default)",
                humantime::format_duration(crate::engine::DEFAULT_POLL)
            ),
        },
    };
    let flags = super::sidecar::notify_flags(args)?;
    let notify = crate::engine::sidecar::notify_settings(&flags, spec);
    let from = if notify == flags { "flags" } else { "config" };
    let mut how = Vec::new();
    if let Some(sig) = notify.signal {
        let name = crate::config::SIGNALS
            .iter()
            .find(|(_, v)| *v == sig)
            .map_or(format!("signal {sig}"), |(n, _)| format!("SIG{n}"));
        match (&notify.process, &notify.pid_file) {
            (Some(p), _) => how.push(format!("{name} to processes named {p:?}")),
            (None, Some(f)) => how.push(format!("{name} to the pid in {}", f.display())),
            (None, None) => how.push(name),
        }
    }
    if let Some(u) = &notify.url {
        how.push(format!("POST {u}"));
    }
    let notify = match how.is_empty() {
        true => "none (the app re-reads the files itself)".to_string(),
        false => format!("{} ({from})", how.join(", ")),
    };
    let state = match args.get("state-dir").filter(|v| !v.is_empty()) {
        Some(dir) => format!("{dir} (--state-dir): the token and leases outlive a restart"),
        None => "none: a restarted sidecar logs in again (--state-dir)".to_string(),
    };
    Ok(format!(
        "sidecar:\n  poll interval: {poll}, ±10%\n  notify: \
         {notify}\n  state dir: {state}\n"
    ))
}
