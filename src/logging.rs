//! Structured logs on stderr. Log lines carry names, paths, roles and counts — never a secret
//! value or token (those live in redacting types, see [`crate::secret`]).

use std::sync::atomic::{AtomicBool, Ordering};

use tracing::Level;

/// Set once the JSON subscriber is installed, so that the final error is a JSON line too.
static JSON: AtomicBool = AtomicBool::new(false);

/// True when every line goes out as JSON (`--log-format json` and the subscriber installed).
pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// A duration as one logfmt token (`1s392ms`, not `1s 392ms`), for text and JSON logs alike.
pub struct Dur(pub std::time::Duration);

impl std::fmt::Display for Dur {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = humantime::format_duration(self.0).to_string();
        f.write_str(&text.replace(' ', ""))
    }
}

/// Parses `--log-level`.
pub fn parse_level(s: &str) -> Option<Level> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Some(Level::ERROR),
        "warn" | "warning" => Some(Level::WARN),
        "info" => Some(Level::INFO),
        "debug" => Some(Level::DEBUG),
        "trace" => Some(Level::TRACE),
        _ => None,
    }
}

/// Installs the subscriber: text lines, or one JSON object per line (`--log-format json`).
pub fn init(level: Level, json: bool) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(level);
    if json {
        if builder.json().flatten_event(true).try_init().is_ok() {
            JSON.store(true, Ordering::Relaxed);
        }
    } else {
        let _ = builder.try_init();
    }
}
