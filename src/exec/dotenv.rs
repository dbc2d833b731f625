//! Parses an object rendered with `format: dotenv` back into variables, for `--env-file`.
//!
//! The grammar is exactly what the renderer writes (`render::dotenv_quote`), one `NAME=VALUE\n`
//! line per key, VALUE being one of:
//! * plain: one or more of `A-Z a-z 0-9 _ - . / : @ % + ,`;
//! * single-quoted: `'...'` with no `'`, CR or LF inside, taken verbatim;
//! * double-quoted: `"..."` where `\` `"` `$` and `` ` `` only appear escaped by `\`, and
//!   `\n` / `\r` stand for LF / CR.
//!
//! Anything else (comments, blank lines, `export`, spaces around `=`, a missing final newline)
//! is refused rather than guessed at: a file in another dialect could mean something else in
//! the app's own dotenv library. Messages give the line number and never the line: it holds a
//! secret.

use crate::render::is_env_name;
use crate::secret::SecretBytes;

/// One assignment of the file (`Debug` shows the name; the value redacts itself).
#[derive(Debug)]
pub struct Assignment {
    pub name: String,
    pub value: SecretBytes,
}

/// Every assignment of `text`, in file order; names are unique.
pub fn parse(text: &[u8]) -> Result<Vec<Assignment>, String> {
    const FORMAT: &str =
        "expected NAME=VALUE as secretdrop's dotenv format writes it (docs/exec.md)";
    let text = std::str::from_utf8(text)
        .map_err(|_| "not UTF-8 text, so not written by secretdrop's dotenv format".to_string())?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = text.strip_suffix('\n') else {
        return Err(
            "the last line does not end with a newline; the file was cut short or not \
                    written by secretdrop's dotenv format"
                .into(),
        );
    };
    let mut out: Vec<Assignment> = Vec::new();
    for (i, line) in body.split('\n').enumerate() {
        let n = i + 1;
        let (name, raw) = line
            .split_once('=')
            .ok_or_else(|| format!("line {n}: {FORMAT}"))?;
        if !is_env_name(name) {
            return Err(format!(
                "line {n}: the name is not a valid variable name (letters, digits, _; not \
                 starting with a digit); {FORMAT}"
            ));
        }
        let value = unquote(raw).map_err(|why| format!("line {n} ({name}): {why}"))?;
        if value.contains('\0') {
            return Err(format!(
                "line {n} ({name}): the value contains a NUL byte, which an environment \
                 variable cannot hold"
            ));
        }
        if out.iter().any(|a| a.name == name) {
            return Err(format!("line {n}: {name} is assigned twice"));
        }
        out.push(Assignment {
            name: name.to_string(),
            value: SecretBytes::new(value.into_bytes()),
        });
    }
    Ok(out)
}

fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-./:@%+,".contains(c)
}

/// The value of one of the three forms.
fn unquote(raw: &str) -> Result<String, &'static str> {
    if let Some(rest) = raw.strip_prefix('\'') {
        let inner = rest
            .strip_suffix('\'')
            .ok_or("a single-quoted value must end with ' and the line")?;
        if inner.contains(['\'', '\r']) {
            return Err("a single-quoted value cannot hold ' or CR");
        }
        return Ok(inner.to_string());
    }
    if let Some(rest) = raw.strip_prefix('"') {
        let inner = rest
            .strip_suffix('"')
            .ok_or("a double-quoted value must end with \" and the line")?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(match chars.next() {
                    Some(e @ ('\\' | '"' | '$' | '`')) => e,
                    Some('n') => '\n',
                    Some('r') => '\r',
                    _ => return Err("a backslash must start one of \\\\ \\\" \\$ \\` \\n \\r"),
                }),
                '"' | '$' | '`' | '\r' => {
                    return Err("\" $ ` and CR must be escaped inside double quotes")
                }
                c => out.push(c),
            }
        }
        return Ok(out);
    }
    if raw.is_empty() {
        return Err("an empty value is written as ''");
    }
    if !raw.chars().all(is_plain) {
        return Err("an unquoted value may only hold letters, digits and _-./:@%+,");
    }
    Ok(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::dotenv_quote;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|a| {
                (
                    a.name.clone(),
                    String::from_utf8(a.value.expose().to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn everything_the_renderer_quotes_parses_back_to_the_same_value() {
        let values = [
            "plain",
            "",
            "a b$c",
            "p w'd$",
            "it's \"quoted\" `cmd` $HOME \\ back",
            "line\nbreak\r\n",
            "ünïcödé ✓",
            "'",
            "\"",
            "=",
            "a=b==",
            "#not a comment",
            "  spaces  ",
            "\t",
            "postgres://u:p@h:5432/db?sslmode=require",
        ];
        let mut text = String::new();
        for (i, v) in values.iter().enumerate() {
            text.push_str(&format!("V{i}={}\n", dotenv_quote(v)));
        }
        let got = pairs(&text);
        assert_eq!(got.len(), values.len());
        for (i, v) in values.iter().enumerate() {
            assert_eq!(got[i], (format!("V{i}"), v.to_string()));
        }
    }

    #[test]
    fn the_renderers_own_output_parses() {
        // The exact text of render's unit test for `format: dotenv`.
        assert_eq!(
            pairs("pass=\"p w'd\\$\"\nport=5432\nuser=admin\n"),
            [
                ("pass".into(), "p w'd$".into()),
                ("port".into(), "5432".into()),
                ("user".into(), "admin".into())
            ]
        );
        assert!(pairs("").is_empty());
    }

    #[test]
    fn other_dialects_are_refused_with_a_line_number_and_without_the_value() {
        for (text, want) in [
            ("A=1", "does not end with a newline"),
            ("# comment\n", "line 1: expected NAME=VALUE"),
            ("\n", "line 1: expected NAME=VALUE"),
            ("A=1\n\nB=2\n", "line 2: expected"),
            ("export A=1\n", "line 1: the name is not a valid"),
            ("A = 1\n", "not a valid variable name"),
            ("1A=x\n", "not a valid variable name"),
            ("A=secret value\n", "line 1 (A): an unquoted value"),
            ("A=\n", "an empty value is written as ''"),
            ("A='unterminated\n", "must end with '"),
            ("A='a'b'\n", "cannot hold '"),
            ("A=\"x\\ty\"\n", "a backslash must start"),
            ("A=\"$HOME\"\n", "must be escaped"),
            ("A=\"open\n", "must end with \""),
            ("A=1\nA=2\n", "line 2: A is assigned twice"),
            ("A=\"a\0b\"\n", "NUL byte"),
            ("A='a\0b'\n", "NUL byte"),
        ] {
            let e = match parse(text.as_bytes()) {
                Err(e) => e,
                Ok(_) => panic!("{text:?} parsed"),
            };
            assert!(e.contains(want), "{text:?}: {e}");
            for secret in ["secret value", "unterminated", "HOME", "open"] {
                assert!(!e.contains(secret), "{text:?} leaks into {e}");
            }
        }
        assert!(parse(b"A=\xff\n").unwrap_err().contains("UTF-8"));
    }
}
