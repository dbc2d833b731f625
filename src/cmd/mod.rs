//! The commands (docs/cli.md), one file each; [`main`] parses the command line with
//! [`crate::cli`], sets up logging, dispatches, and maps errors to exit codes.

mod check;
mod copy_self;
mod exec;
mod init;
mod probe;
mod sidecar;
mod webhook;

use crate::cli;
use crate::error::{Error, ExitCode};

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
        print!("{}", cli::usage());
        return Err(Error::Usage("no command given".into()));
    };
    if matches!(name.as_str(), "help" | "--help" | "-h") {
        // `secretdrop help init` is `secretdrop init --help`.
        match argv.get(1) {
            None => print!("{}", cli::usage()),
            Some(topic) => print!("{}", cli::command_usage(cli::find_command(topic)?)),
        }
        return Ok(());
    }
    if name == "--version" {
        return version();
    }
    let command = cli::find_command(name)?;
    let Some(args) = cli::parse(command, &argv[1..])? else {
        print!("{}", cli::command_usage(command));
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
        "init" => init::run(&args),
        "sidecar" => sidecar::run(&args),
        "webhook" => webhook::run(&args),
        "probe" => probe::run(&args),
        "check" => check::run(&args),
        "exec" => exec::run(args),
        "copy-self" => copy_self::run(&args),
        _ => version(),
    }
}

fn version() -> Result<(), Error> {
    println!("secretdrop {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}
