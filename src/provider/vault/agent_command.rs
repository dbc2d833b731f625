//! `agent-inject-command-X` of a converted Vault Agent pod mapped onto secretdrop's
//! notification (docs/migrate-from-vault-agent.md, "Commands"). Vault Agent runs the command in
//! its own container after writing the file; secretdrop has no shell and runs nothing, but the
//! commands people write do one of two things it can do itself after a new version: signal the
//! app's process (`kill -HUP $(pidof nginx)`, `pkill -HUP nginx`, `killall -s HUP nginx`) or
//! POST to the app (`curl -X POST http://127.0.0.1:9090/-/reload`). Anything else is refused
//! with the reason; nothing is guessed.

use crate::config::notify::{parse_signal, NotifySettings};
use crate::config::pod_settings::{check_notify_url, check_process};

/// What a command does, in secretdrop's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    Signal { signal: i32, process: String },
    Post(String),
}

impl Mapped {
    pub fn notify(&self) -> NotifySettings {
        match self {
            Mapped::Signal { signal, process } => NotifySettings {
                signal: Some(*signal),
                process: Some(process.clone()),
                ..NotifySettings::default()
            },
            Mapped::Post(url) => NotifySettings {
                url: Some(url.clone()),
                ..NotifySettings::default()
            },
        }
    }
}

const ALLOWED: &str = "secretdrop maps `kill -SIG $(pidof NAME)`, `pkill -SIG [-x] NAME`, \
     `killall [-s] SIG NAME` (a signal to the app's process) and `curl -X POST URL` or \
     `wget --post-data=... URL` to the app on 127.0.0.1 or localhost (an HTTP call), with or \
     without `sh -c`; set secretdrop.dev/notify-signal and notify-process, or notify-url, instead";

/// The notification `command` stands for; `Err` says why it has none.
pub fn map(command: &str) -> Result<Mapped, String> {
    let words = split(command).ok_or_else(|| format!("it is not a simple command; {ALLOWED}"))?;
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        [sh, "-c", inner] if is_shell(sh) => map(inner),
        [kill, rest @ ..] if base(kill) == "kill" => kill_pidof(rest),
        [p, rest @ ..] if base(p) == "pkill" || base(p) == "killall" => by_name(rest),
        [c, rest @ ..] if base(c) == "curl" => curl(rest),
        [w, rest @ ..] if base(w) == "wget" => wget(rest),
        _ => Err(format!("it runs something secretdrop cannot; {ALLOWED}")),
    }
}

fn is_shell(s: &str) -> bool {
    matches!(base(s), "sh" | "bash" | "ash" | "dash")
}

fn base(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// `kill -HUP $(pidof NAME)`, `kill -s HUP $(pgrep -x NAME)`, `kill -1 `pidof NAME``.
fn kill_pidof(rest: &[&str]) -> Result<Mapped, String> {
    let (signal, rest) = signal_flag(rest)?;
    let [target] = rest else {
        return Err(format!("kill has one target here; {ALLOWED}"));
    };
    let inner = target
        .strip_prefix("$(")
        .and_then(|t| t.strip_suffix(')'))
        .or_else(|| target.strip_prefix('`').and_then(|t| t.strip_suffix('`')))
        .ok_or_else(|| format!("kill's target is not $(pidof NAME); {ALLOWED}"))?;
    let finder: Vec<&str> = inner.split_whitespace().collect();
    let name = match finder.as_slice() {
        ["pidof", name] | ["pgrep", name] | ["pgrep", "-x", name] => *name,
        _ => return Err(format!("kill's target is not $(pidof NAME); {ALLOWED}")),
    };
    Ok(Mapped::Signal {
        signal,
        process: process(name)?,
    })
}

/// `pkill -HUP [-x] NAME`, `killall [-s] HUP NAME`.
fn by_name(rest: &[&str]) -> Result<Mapped, String> {
    let (signal, rest) = signal_flag(rest)?;
    let name = match rest {
        [name] | ["-x", name] => *name,
        _ => return Err(format!("it names more than one process; {ALLOWED}")),
    };
    Ok(Mapped::Signal {
        signal,
        process: process(name)?,
    })
}

/// The signal of `-HUP`, `-SIGHUP`, `-1`, `-s HUP`, `--signal HUP`; SIGTERM when none is given.
fn signal_flag<'a, 'b>(rest: &'b [&'a str]) -> Result<(i32, &'b [&'a str]), String> {
    let (name, rest) = match rest {
        ["-s" | "--signal", s, rest @ ..] => (*s, rest),
        [flag, rest @ ..] if flag.starts_with('-') && *flag != "-x" => (&flag[1..], rest),
        rest => ("TERM", rest),
    };
    let name = match name {
        "1" => "HUP",
        "2" => "INT",
        "3" => "QUIT",
        "10" => "USR1",
        "12" => "USR2",
        "15" => "TERM",
        "28" => "WINCH",
        n => n,
    };
    let signal = parse_signal(name).map_err(|m| format!("{m}; {ALLOWED}"))?;
    Ok((signal, rest))
}

fn process(name: &str) -> Result<String, String> {
    check_process(name)
}

/// `curl [-s -S -f ...] -X POST [-d DATA] URL`: a POST to the app.
fn curl(rest: &[&str]) -> Result<Mapped, String> {
    let mut post = false;
    let mut url = None;
    let mut i = 0;
    while i < rest.len() {
        let w = rest[i];
        match w {
            "-X" | "--request" => {
                post |= rest
                    .get(i + 1)
                    .is_some_and(|m| m.eq_ignore_ascii_case("POST"));
                i += 1;
            }
            "-XPOST" => post = true,
            "-d" | "--data" | "--data-raw" | "--data-binary" => {
                post = true;
                i += 1;
            }
            "-s" | "-S" | "-f" | "-sS" | "-sf" | "-fs" | "-sSf" | "-fsS" | "--silent"
            | "--show-error" | "--fail" | "-o/dev/null" => {}
            "-o" if rest.get(i + 1) == Some(&"/dev/null") => i += 1,
            w if !w.starts_with('-') && url.is_none() => url = Some(w),
            w => return Err(format!("curl's {w:?} has no equivalent; {ALLOWED}")),
        }
        i += 1;
    }
    post_to(url, post)
}

/// `wget [-q] [-O-] --post-data=... URL`.
fn wget(rest: &[&str]) -> Result<Mapped, String> {
    let mut post = false;
    let mut url = None;
    for w in rest {
        match *w {
            "-q" | "-qO-" | "-O-" | "-O" | "/dev/null" | "--quiet" => {}
            w if w.starts_with("--post-data") => post = true,
            w if !w.starts_with('-') && url.is_none() => url = Some(w),
            w => return Err(format!("wget's {w:?} has no equivalent; {ALLOWED}")),
        }
    }
    post_to(url, post)
}

fn post_to(url: Option<&str>, post: bool) -> Result<Mapped, String> {
    let url = url.ok_or_else(|| format!("no URL; {ALLOWED}"))?;
    if !post {
        return Err(format!(
            "it sends a GET, and secretdrop notifies with a POST; {ALLOWED}"
        ));
    }
    check_notify_url(url).map(Mapped::Post)
}

/// Shell words: blanks separate, single and double quotes group, `$(...)` and backquotes stay
/// one word. None for what only a shell could run: pipes, `;`, `&&`, redirections, variables.
fn split(s: &str) -> Option<Vec<String>> {
    if s.len() > 1024 {
        return None;
    }
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => cur.push(chars.next()?),
                        c => cur.push(c),
                    }
                }
            }
            '$' if chars.peek() == Some(&'(') => {
                in_word = true;
                cur.push('$');
                let mut depth = 0;
                for c in chars.by_ref() {
                    cur.push(c);
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                if depth != 0 {
                    return None;
                }
            }
            '`' => {
                in_word = true;
                cur.push('`');
                loop {
                    let c = chars.next()?;
                    cur.push(c);
                    if c == '`' {
                        break;
                    }
                }
            }
            '|' | ';' | '&' | '<' | '>' | '$' | '\\' | '*' | '?' => return None,
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    (!words.is_empty()).then_some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(name: &str) -> i32 {
        parse_signal(name).unwrap()
    }

    #[test]
    fn signals_to_a_process_by_name() {
        let hup = |p: &str| Mapped::Signal {
            signal: signal("HUP"),
            process: p.into(),
        };
        for c in [
            "kill -HUP $(pidof nginx)",
            "kill -SIGHUP $(pidof nginx)",
            "kill -s HUP $(pgrep -x nginx)",
            "kill -1 `pidof nginx`",
            "/bin/sh -c 'kill -HUP $(pidof nginx)'",
            "sh -c \"pkill -HUP -x nginx\"",
            "killall -s HUP nginx",
            "/usr/bin/pkill -HUP nginx",
        ] {
            assert_eq!(map(c), Ok(hup("nginx")), "{c}");
        }
        assert_eq!(
            map("pkill app"),
            Ok(Mapped::Signal {
                signal: signal("TERM"),
                process: "app".into()
            })
        );
    }

    #[test]
    fn posts_to_the_app() {
        let url = "http://127.0.0.1:9090/-/reload";
        for c in [
            "curl -X POST http://127.0.0.1:9090/-/reload",
            "curl -sS -XPOST http://127.0.0.1:9090/-/reload",
            "sh -c 'curl -s -d \"\" http://127.0.0.1:9090/-/reload'",
            "wget -qO- --post-data='' http://127.0.0.1:9090/-/reload",
        ] {
            assert_eq!(map(c), Ok(Mapped::Post(url.into())), "{c}");
        }
    }

    #[test]
    fn everything_else_is_refused_with_the_reason() {
        for (c, says) in [
            ("curl http://127.0.0.1:9090/-/reload", "GET"),
            ("curl -X POST http://example.com/hook", "not allowed"),
            ("curl -H 'X: y' -X POST http://127.0.0.1/", "\"-H\""),
            ("kill -HUP 1", "pidof"),
            ("kill -HUP $(cat /run/app.pid)", "pidof"),
            ("/app/reload.sh", "cannot"),
            ("kill -HUP $(pidof a) && echo done", "simple command"),
            ("kill -HUP $PID", "simple command"),
            ("pkill -KILLALL app", "not a signal"),
            ("pkill -HUP a b", "more than one"),
        ] {
            let e = map(c).unwrap_err();
            assert!(e.contains(says), "{c}: {e}");
        }
    }
}
