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

/// Warnings that whoever reaches a listening port can cause at will (a refused request, a
/// failing accept), rate-limited here, in one place, so that a flood fills the log at most at
/// [`BURST`] lines per [`INTERVAL`] per kind instead of at the attacker's rate. The first
/// [`BURST`] of each interval are logged as they happen; the rest are counted, and the next one
/// logged after the interval (or [`flush_suppressed`] at shutdown) is preceded by one line
/// `suppressed K similar warnings (KIND) in the last T`. Metrics count every event regardless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    /// 413: a body over the webhook's limit.
    TooLarge,
    /// 400: an AdmissionReview that cannot be read or parsed.
    BadReview,
    /// accept(2) failing for want of descriptors or memory (its backoff episodes).
    Accept,
    /// 503: an AdmissionReview not read by its deadline (the webhook is overloaded).
    Late,
}

/// Lines per kind per interval, and the interval.
pub const BURST: u64 = 5;
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

const KINDS: [Flood; 4] = [
    Flood::TooLarge,
    Flood::BadReview,
    Flood::Accept,
    Flood::Late,
];

impl Flood {
    pub fn name(self) -> &'static str {
        match self {
            Flood::TooLarge => "too_large",
            Flood::BadReview => "bad_review",
            Flood::Accept => "accept",
            Flood::Late => "late",
        }
    }
}

#[derive(Clone, Copy)]
struct Window {
    start: Option<std::time::Instant>,
    logged: u64,
    suppressed: u64,
}

impl Window {
    /// Counts one event at `now`: (the summary of the interval just ended, if it suppressed
    /// any: count and length; whether this event is logged).
    fn admit(&mut self, now: std::time::Instant) -> (Option<(u64, std::time::Duration)>, bool) {
        let mut summary = None;
        if self.start.is_none_or(|s| now.duration_since(s) >= INTERVAL) {
            if let Some(s) = self.start.filter(|_| self.suppressed > 0) {
                summary = Some((self.suppressed, now.duration_since(s)));
            }
            *self = Window {
                start: Some(now),
                logged: 0,
                suppressed: 0,
            };
        }
        let allowed = self.logged < BURST;
        match allowed {
            true => self.logged += 1,
            false => self.suppressed += 1,
        }
        (summary, allowed)
    }
}

static WINDOWS: std::sync::Mutex<[Window; 4]> = std::sync::Mutex::new(
    [Window {
        start: None,
        logged: 0,
        suppressed: 0,
    }; 4],
);

/// Runs `log` (one warning of `kind`) unless [`BURST`] of that kind were already logged in the
/// current interval; returns whether it ran.
pub fn limited(kind: Flood, log: impl FnOnce()) -> bool {
    let now = std::time::Instant::now();
    let (summary, allowed) = {
        let mut windows = WINDOWS.lock().unwrap_or_else(|e| e.into_inner());
        windows[kind as usize].admit(now)
    };
    if let Some((k, over)) = summary {
        summarise(kind, k, over);
    }
    if allowed {
        log();
    }
    allowed
}

/// Logs the summary of every kind with warnings suppressed in its current interval (at
/// shutdown, so that none go unreported).
pub fn flush_suppressed() {
    let now = std::time::Instant::now();
    let pending: Vec<_> = {
        let mut windows = WINDOWS.lock().unwrap_or_else(|e| e.into_inner());
        KINDS
            .iter()
            .filter_map(|&kind| {
                let w = &mut windows[kind as usize];
                let start = w.start.filter(|_| w.suppressed > 0)?;
                let k = std::mem::take(&mut w.suppressed);
                Some((kind, k, now.duration_since(start)))
            })
            .collect()
    };
    for (kind, k, over) in pending {
        summarise(kind, k, over);
    }
}

fn summarise(kind: Flood, suppressed: u64, over: std::time::Duration) {
    let over = Dur(std::time::Duration::from_millis(over.as_millis() as u64));
    tracing::warn!(
        kind = kind.name(),
        suppressed,
        "suppressed {suppressed} similar warnings ({}) in the last {over}",
        kind.name()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_logged_the_rest_counted_and_summarised_when_logging_resumes() {
        let t0 = std::time::Instant::now();
        let mut w = Window {
            start: None,
            logged: 0,
            suppressed: 0,
        };
        let logged = (0..100).filter(|_| w.admit(t0).1).count() as u64;
        assert_eq!((logged, w.suppressed), (BURST, 100 - BURST));
        // Still inside the interval: counted, not logged.
        assert_eq!(w.admit(t0 + INTERVAL / 2), (None, false));
        // The next interval: the summary first, then this one is logged.
        let later = t0 + INTERVAL;
        assert_eq!(w.admit(later), (Some((100 - BURST + 1, INTERVAL)), true));
        // Nothing suppressed in an interval: no summary.
        assert_eq!(w.admit(later + INTERVAL * 3), (None, true));
    }
}
