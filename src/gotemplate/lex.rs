//! The lexer of Go's text/template: text and actions between the delimiters, `{{-`/`-}}`
//! trimming, comments, and the tokens inside an action (docs/vault-agent-templates.md).
//!
//! Invariants: it never recurses, it copies text bytes verbatim (templates may hold any
//! UTF-8), and every token carries the 1-based line it starts on, for errors.

use super::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Text(Vec<u8>),
    Left,
    Right,
    Space,
    Ident(String),
    Keyword(&'static str),
    /// `.Name` (the name without its dot)
    Field(String),
    /// `$` or `$name` (with its `$`)
    Variable(String),
    Dot,
    /// a quoted or raw string, unquoted
    Str(Vec<u8>),
    /// a character constant's code point
    Char(i64),
    Number(String),
    Bool(bool),
    Nil,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub line: usize,
}

const KEYWORDS: &[&str] = &[
    "block", "break", "continue", "define", "else", "end", "if", "range", "template", "with",
];

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

pub(crate) fn lex(src: &str, left: &str, right: &str) -> Result<Vec<Token>, ParseError> {
    let b = src.as_bytes();
    let (lb, rb) = (left.as_bytes(), right.as_bytes());
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    let mut line = 1;
    // Text after a `-}}` loses its leading spaces.
    let mut trim_next = false;
    while i < b.len() {
        let start = i;
        let found = find(b, lb, i);
        let end = found.unwrap_or(b.len());
        let mut text = &b[start..end];
        if trim_next {
            while let Some((&c, rest)) = text.split_first() {
                if !is_space(c) {
                    break;
                }
                text = rest;
            }
            trim_next = false;
        }
        let Some(at) = found else {
            push_text(&mut out, text, line);
            break;
        };
        // `{{- ` trims the text before it: "-" then an ASCII space.
        let after = at + lb.len();
        let trim_left =
            b.get(after) == Some(&b'-') && b.get(after + 1).is_some_and(|&c| is_space(c));
        if trim_left {
            while let Some((&c, rest)) = text.split_last() {
                if !is_space(c) {
                    break;
                }
                text = rest;
            }
        }
        push_text(&mut out, text, line);
        line += count_lines(&b[start..at]);
        i = if trim_left { after + 2 } else { after };
        // A comment: /* ... */ then, at once, the (trimming) right delimiter.
        if b[i.min(b.len())..].starts_with(b"/*") {
            let Some(close) = find(b, b"*/", i + 2) else {
                return Err(ParseError::new(line, "unclosed comment"));
            };
            let mut k = close + 2;
            line += count_lines(&b[i..k]);
            let trim_right = matches_trim_right(b, k, rb);
            if let Some(n) = trim_right {
                k += n;
                trim_next = true;
            } else if b[k..].starts_with(rb) {
                k += rb.len();
            } else {
                return Err(ParseError::new(
                    line,
                    "comment ends before closing delimiter",
                ));
            }
            i = k;
            continue;
        }
        out.push(Token {
            tok: Tok::Left,
            line,
        });
        let (next, trim) = lex_action(b, i, rb, &mut line, &mut out)?;
        i = next;
        trim_next = trim;
    }
    Ok(out)
}

fn push_text(out: &mut Vec<Token>, text: &[u8], line: usize) {
    if !text.is_empty() {
        out.push(Token {
            tok: Tok::Text(text.to_vec()),
            line,
        });
    }
}

fn count_lines(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// ` -}}` at `k` (a space, a hyphen, the right delimiter): its length.
fn matches_trim_right(b: &[u8], k: usize, rb: &[u8]) -> Option<usize> {
    if b.get(k).is_some_and(|&c| is_space(c))
        && b.get(k + 1) == Some(&b'-')
        && b[(k + 2).min(b.len())..].starts_with(rb)
    {
        Some(2 + rb.len())
    } else {
        None
    }
}

/// Lexes one action from `i` to its right delimiter; returns where text resumes and whether
/// it ended with `-}}`.
fn lex_action(
    b: &[u8],
    mut i: usize,
    rb: &[u8],
    line: &mut usize,
    out: &mut Vec<Token>,
) -> Result<(usize, bool), ParseError> {
    let mut parens = 0usize;
    let text = std::str::from_utf8(b).unwrap_or_default();
    loop {
        let push = |out: &mut Vec<Token>, tok: Tok, line: usize| out.push(Token { tok, line });
        if let Some(n) = matches_trim_right(b, i, rb) {
            if parens > 0 {
                return Err(ParseError::new(*line, "unclosed left paren"));
            }
            push(out, Tok::Right, *line);
            return Ok((i + n, true));
        }
        if b[i.min(b.len())..].starts_with(rb) {
            if parens > 0 {
                return Err(ParseError::new(*line, "unclosed left paren"));
            }
            push(out, Tok::Right, *line);
            return Ok((i + rb.len(), false));
        }
        let Some(&c) = b.get(i) else {
            return Err(ParseError::new(*line, "unclosed action"));
        };
        match c {
            c if is_space(c) => {
                let s = i;
                while i < b.len() && is_space(b[i]) && matches_trim_right(b, i, rb).is_none() {
                    i += 1;
                }
                *line += count_lines(&b[s..i]);
                if i > s {
                    push(out, Tok::Space, *line);
                }
                // ` -}}` is handled at the top of the loop
                if i == s {
                    continue;
                }
            }
            b'=' => {
                push(out, Tok::Assign, *line);
                i += 1;
            }
            b':' => {
                if b.get(i + 1) != Some(&b'=') {
                    return Err(ParseError::new(*line, "expected :="));
                }
                push(out, Tok::Declare, *line);
                i += 2;
            }
            b'|' => {
                push(out, Tok::Pipe, *line);
                i += 1;
            }
            b',' => {
                push(out, Tok::Comma, *line);
                i += 1;
            }
            b'(' => {
                parens += 1;
                push(out, Tok::LParen, *line);
                i += 1;
            }
            b')' => {
                if parens == 0 {
                    return Err(ParseError::new(*line, "unexpected right paren"));
                }
                parens -= 1;
                push(out, Tok::RParen, *line);
                i += 1;
            }
            b'"' => {
                let (s, n) = quoted(b, i, *line)?;
                push(out, Tok::Str(s), *line);
                i = n;
            }
            b'`' => {
                let Some(close) = find(b, b"`", i + 1) else {
                    return Err(ParseError::new(*line, "unterminated raw quoted string"));
                };
                push(out, Tok::Str(b[i + 1..close].to_vec()), *line);
                *line += count_lines(&b[i..close]);
                i = close + 1;
            }
            b'\'' => {
                let (v, n) = char_constant(b, i, *line)?;
                push(out, Tok::Char(v), *line);
                i = n;
            }
            b'$' => {
                let n = word_end(text, i + 1);
                push(out, Tok::Variable(text[i..n].to_string()), *line);
                i = n;
            }
            b'.' => {
                // `.5` is a number; `.Name` a field; `.` alone the dot.
                if b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                    let n = number_end(b, i);
                    push(out, Tok::Number(text[i..n].to_string()), *line);
                    i = n;
                } else {
                    let n = word_end(text, i + 1);
                    if n == i + 1 {
                        push(out, Tok::Dot, *line);
                    } else {
                        push(out, Tok::Field(text[i + 1..n].to_string()), *line);
                    }
                    i = n;
                }
            }
            b'+' | b'-' | b'0'..=b'9' => {
                let n = number_end(b, i);
                if n == i + 1 && !c.is_ascii_digit() {
                    return Err(ParseError::new(
                        *line,
                        format!("bad character {:?}", c as char),
                    ));
                }
                if b.get(n)
                    .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    return Err(ParseError::new(
                        *line,
                        format!("bad number syntax: {:?}", &text[i..=n]),
                    ));
                }
                push(out, Tok::Number(text[i..n].to_string()), *line);
                i = n;
            }
            _ => {
                let n = word_end(text, i);
                if n == i {
                    let ch = text[i..].chars().next().unwrap_or('?');
                    return Err(ParseError::new(
                        *line,
                        format!("unexpected {ch:?} in command"),
                    ));
                }
                let word = &text[i..n];
                let tok = match word {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "nil" => Tok::Nil,
                    w => match KEYWORDS.iter().find(|k| **k == w) {
                        Some(k) => Tok::Keyword(k),
                        None => Tok::Ident(w.to_string()),
                    },
                };
                push(out, tok, *line);
                i = n;
            }
        }
    }
}

fn word_end(text: &str, from: usize) -> usize {
    let mut n = from;
    for ch in text.get(from..).unwrap_or_default().chars() {
        if !is_alnum(ch) {
            break;
        }
        n += ch.len_utf8();
    }
    n
}

/// Go's scanNumber, loosely: sign, digits, letters of a base prefix or exponent, `.`, `_`;
/// [`super::parse`] decides whether the text is a valid number.
fn number_end(b: &[u8], mut i: usize) -> usize {
    if matches!(b.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    while let Some(&c) = b.get(i) {
        let exp_sign =
            matches!(c, b'+' | b'-') && matches!(b.get(i - 1), Some(b'e' | b'E' | b'p' | b'P'));
        if c.is_ascii_hexdigit()
            || matches!(c, b'.' | b'_' | b'x' | b'X' | b'o' | b'O' | b'p' | b'P')
            || exp_sign
        {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// A double-quoted string with Go's escapes (strconv.Unquote); returns it and the index after
/// the closing quote.
fn quoted(b: &[u8], start: usize, line: usize) -> Result<(Vec<u8>, usize), ParseError> {
    let mut out = Vec::new();
    let mut i = start + 1;
    loop {
        match b.get(i) {
            None | Some(b'\n') => {
                return Err(ParseError::new(line, "unterminated quoted string"));
            }
            Some(b'"') => return Ok((out, i + 1)),
            Some(b'\\') => {
                i = escape(b, i + 1, b'"', &mut out, line)?;
            }
            Some(&c) => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// One escape after a backslash at `i`; appends its bytes, returns the index after it.
fn escape(
    b: &[u8],
    i: usize,
    quote: u8,
    out: &mut Vec<u8>,
    line: usize,
) -> Result<usize, ParseError> {
    let bad = || ParseError::new(line, "invalid syntax in quoted string");
    let c = *b.get(i).ok_or_else(bad)?;
    let simple = match c {
        b'a' => Some(7u8),
        b'b' => Some(8),
        b'f' => Some(12),
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b't' => Some(b'\t'),
        b'v' => Some(11),
        b'\\' => Some(b'\\'),
        c if c == quote => Some(c),
        _ => None,
    };
    if let Some(s) = simple {
        out.push(s);
        return Ok(i + 1);
    }
    let hex = |from: usize, n: usize| -> Result<u32, ParseError> {
        let s = b.get(from..from + n).ok_or_else(bad)?;
        let s = std::str::from_utf8(s).map_err(|_| bad())?;
        u32::from_str_radix(s, 16).map_err(|_| bad())
    };
    match c {
        b'x' => {
            out.push(hex(i + 1, 2)? as u8);
            Ok(i + 3)
        }
        b'0'..=b'7' => {
            let s = b.get(i..i + 3).ok_or_else(bad)?;
            let s = std::str::from_utf8(s).map_err(|_| bad())?;
            let v = u32::from_str_radix(s, 8).map_err(|_| bad())?;
            if v > 255 {
                return Err(bad());
            }
            out.push(v as u8);
            Ok(i + 3)
        }
        b'u' | b'U' => {
            let n = if c == b'u' { 4 } else { 8 };
            let ch = char::from_u32(hex(i + 1, n)?).ok_or_else(bad)?;
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            Ok(i + 1 + n)
        }
        _ => Err(bad()),
    }
}

fn char_constant(b: &[u8], start: usize, line: usize) -> Result<(i64, usize), ParseError> {
    let bad = || ParseError::new(line, "malformed character constant");
    let mut bytes = Vec::new();
    let mut i = start + 1;
    match b.get(i) {
        Some(b'\\') => i = escape(b, i + 1, b'\'', &mut bytes, line)?,
        Some(b'\'') | Some(b'\n') | None => return Err(bad()),
        Some(_) => {
            let rest = std::str::from_utf8(&b[i..]).unwrap_or_default();
            let ch = rest.chars().next().ok_or_else(bad)?;
            return if b.get(i + ch.len_utf8()) == Some(&b'\'') {
                Ok((ch as i64, i + ch.len_utf8() + 1))
            } else {
                Err(bad())
            };
        }
    }
    if b.get(i) != Some(&b'\'') {
        return Err(bad());
    }
    let v = match std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.chars().next())
    {
        Some(ch) if bytes.len() == ch.len_utf8() => ch as i64,
        _ if bytes.len() == 1 => bytes[0] as i64,
        _ => return Err(bad()),
    };
    Ok((v, i + 1))
}
