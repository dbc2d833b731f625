//! JSON as Go's encoding/json does it for consul-template: decoding Vault's answers with
//! `UseNumber` (numbers keep their literal text) or, for `parseJSON`, into float64; and
//! `json.Marshal` / `MarshalIndent` with or without HTML escaping (docs/vault-agent-templates.md).
//!
//! Invariants: decoding is iterative-free but depth-bounded ([`MAX_DEPTH`]); encoding walks
//! values that decoding built, so it is bounded by the same depth.

use std::rc::Rc;

use super::print::{e_form, f_form, shortest_parts};
use super::value::{ListKind, Map, Value};

/// Objects and arrays nested deeper than this are refused (Go's decoder allows 10000; Vault's
/// answers and templates' JSON stay far below).
pub(crate) const MAX_DEPTH: usize = 128;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Numbers {
    /// `json.Number`: the literal text.
    Literal,
    /// float64, as `json.Unmarshal` into `interface{}` gives.
    Float,
}

pub(crate) fn parse(bytes: &[u8], numbers: Numbers) -> Result<Value, String> {
    let mut p = Parser {
        b: bytes,
        i: 0,
        numbers,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(format!(
            "invalid character after top-level value at offset {}",
            p.i
        ));
    }
    Ok(v)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    numbers: Numbers,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn err(&self, what: &str) -> String {
        format!("{what} at offset {}", self.i)
    }

    fn lit(&mut self, word: &[u8], v: Value) -> Result<Value, String> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("invalid character"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("JSON nested too deeply"));
        }
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut m = Map::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Value::Map(Rc::new(m), false));
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return Err(self.err("expected a string key"));
                    }
                    let k = String::from_utf8_lossy(&self.string()?).into_owned();
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return Err(self.err("expected ':'"));
                    }
                    self.i += 1;
                    self.ws();
                    let v = self.value(depth + 1)?;
                    m.insert(k, v);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Value::Map(Rc::new(m), false));
                        }
                        _ => return Err(self.err("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut l = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Value::List(Rc::new(l), ListKind::Iface));
                }
                loop {
                    self.ws();
                    l.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Value::List(Rc::new(l), ListKind::Iface));
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => Ok(Value::str(self.string()?)),
            Some(b't') => self.lit(b"true", Value::Bool(true)),
            Some(b'f') => self.lit(b"false", Value::Bool(false)),
            Some(b'n') => self.lit(b"null", Value::Nil),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("invalid character looking for beginning of value")),
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let s = self.i;
        let digits = |p: &mut Self| {
            let st = p.i;
            while p.b.get(p.i).is_some_and(u8::is_ascii_digit) {
                p.i += 1;
            }
            p.i > st
        };
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        if self.b.get(self.i) == Some(&b'0') {
            self.i += 1;
        } else if !digits(self) {
            return Err(self.err("invalid number"));
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !digits(self) {
                return Err(self.err("invalid number"));
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return Err(self.err("invalid number"));
            }
        }
        let text =
            std::str::from_utf8(&self.b[s..self.i]).map_err(|_| self.err("invalid number"))?;
        match self.numbers {
            Numbers::Literal => Ok(Value::Number(Rc::from(text))),
            Numbers::Float => match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::Float(f)),
                _ => Err("cannot unmarshal a number into Go value of type float64".into()),
            },
        }
    }

    /// A string at `self.i` (on its quote): its bytes, invalid UTF-8 and lone surrogates as
    /// U+FFFD like Go.
    fn string(&mut self) -> Result<Vec<u8>, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return Err(self.err("unterminated string"));
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(fix_utf8(out));
                }
                b'\\' => {
                    let e = *self
                        .b
                        .get(self.i + 1)
                        .ok_or_else(|| self.err("bad escape"))?;
                    self.i += 2;
                    let simple = match e {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(8),
                        b'f' => Some(12),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        _ => None,
                    };
                    if let Some(s) = simple {
                        out.push(s);
                        continue;
                    }
                    if e != b'u' {
                        return Err(self.err("invalid escape"));
                    }
                    let mut cp = self.hex4()?;
                    if (0xD800..0xDC00).contains(&cp)
                        && self.b.get(self.i) == Some(&b'\\')
                        && self.b.get(self.i + 1) == Some(&b'u')
                    {
                        let save = self.i;
                        self.i += 2;
                        let lo = self.hex4()?;
                        if (0xDC00..0xE000).contains(&lo) {
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        } else {
                            self.i = save;
                        }
                    }
                    let ch = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return Err(self.err("invalid character in string literal")),
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let s = self
            .b
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("bad \\u escape"))?;
        let s = std::str::from_utf8(s).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(s, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }
}

fn fix_utf8(b: Vec<u8>) -> Vec<u8> {
    match String::from_utf8(b) {
        Ok(s) => s.into_bytes(),
        Err(e) => String::from_utf8_lossy(e.as_bytes())
            .into_owned()
            .into_bytes(),
    }
}

/// json.Marshal (indent None) or MarshalIndent(v, "", indent).
pub(crate) fn marshal_bounded(
    v: &Value,
    escape_html: bool,
    indent: Option<&str>,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut e = Encoder {
        escape_html,
        indent,
        limit,
        out,
    };
    e.value(v, 0)
}

struct Encoder<'a> {
    escape_html: bool,
    indent: Option<&'a str>,
    limit: usize,
    out: &'a mut Vec<u8>,
}

impl Encoder<'_> {
    fn newline(&mut self, level: usize) {
        if let Some(ind) = self.indent {
            self.out.push(b'\n');
            for _ in 0..level {
                self.out.extend_from_slice(ind.as_bytes());
            }
        }
    }

    fn value(&mut self, v: &Value, level: usize) -> Result<(), String> {
        if level > MAX_DEPTH + 2 {
            return Err("json: value nested too deeply".into());
        }
        if self.out.len() > self.limit {
            return Err(format!("json: the result exceeds {} bytes", self.limit));
        }
        match v {
            Value::Invalid | Value::Nil => self.out.extend_from_slice(b"null"),
            Value::Bool(b) => self
                .out
                .extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(i) => self.out.extend_from_slice(i.to_string().as_bytes()),
            Value::Uint(u) => self.out.extend_from_slice(u.to_string().as_bytes()),
            Value::Float(f) => self.float(*f)?,
            Value::Str(s) => self.string(s),
            Value::Number(n) => {
                if n.is_empty() {
                    self.out.push(b'0');
                } else if parse(n.as_bytes(), Numbers::Literal)
                    .is_ok_and(|v| matches!(v, Value::Number(_)))
                {
                    self.out.extend_from_slice(n.as_bytes());
                } else {
                    return Err("json: invalid number literal".into());
                }
            }
            Value::List(_, ListKind::NilStrings) => self.out.extend_from_slice(b"null"),
            Value::List(items, _) => {
                if items.is_empty() {
                    self.out.extend_from_slice(b"[]");
                    return Ok(());
                }
                self.out.push(b'[');
                for (k, it) in items.iter().enumerate() {
                    if k > 0 {
                        self.out.push(b',');
                    }
                    self.newline(level + 1);
                    self.value(it, level + 1)?;
                }
                self.newline(level);
                self.out.push(b']');
            }
            Value::Map(_, true) => self.out.extend_from_slice(b"null"),
            Value::Map(m, false) => {
                let fields: Vec<(&str, &Value)> = m.iter().map(|(k, v)| (k.as_str(), v)).collect();
                self.object(&fields, level)?;
            }
            Value::Secret(s) => {
                let (rid, lid) = (Value::str(&s.request_id), Value::str(&s.lease_id));
                let (ld, rn) = (Value::Int(s.lease_duration), Value::Bool(s.renewable));
                self.object(
                    &[
                        ("RequestID", &rid),
                        ("LeaseID", &lid),
                        ("LeaseDuration", &ld),
                        ("Renewable", &rn),
                        ("Data", &s.data),
                        ("Warnings", &s.warnings),
                        ("Auth", &Value::Nil),
                        ("WrapInfo", &Value::Nil),
                    ],
                    level,
                )?;
            }
            Value::Pem(p) => {
                let (c, k, a) = (Value::str(&p.cert), Value::str(&p.key), Value::str(&p.ca));
                self.object(&[("Cert", &c), ("Key", &k), ("CA", &a)], level)?;
            }
            Value::Seq(..) => return Err("json: unsupported type: <-chan int64".into()),
        }
        Ok(())
    }

    fn object(&mut self, fields: &[(&str, &Value)], level: usize) -> Result<(), String> {
        if fields.is_empty() {
            self.out.extend_from_slice(b"{}");
            return Ok(());
        }
        self.out.push(b'{');
        for (k, (key, val)) in fields.iter().enumerate() {
            if k > 0 {
                self.out.push(b',');
            }
            self.newline(level + 1);
            self.string(key.as_bytes());
            self.out.push(b':');
            if self.indent.is_some() {
                self.out.push(b' ');
            }
            self.value(val, level + 1)?;
        }
        self.newline(level);
        self.out.push(b'}');
        Ok(())
    }

    fn float(&mut self, f: f64) -> Result<(), String> {
        if !f.is_finite() {
            return Err(format!(
                "json: unsupported value: {}",
                String::from_utf8_lossy(&super::print::format_shortest_g(f))
            ));
        }
        if f == 0.0 {
            self.out
                .extend_from_slice(if f.is_sign_negative() { b"-0" } else { b"0" });
            return Ok(());
        }
        let (digits, dp) = shortest_parts(f);
        let abs = f.abs();
        let mut s = if !(1e-6..1e21).contains(&abs) {
            // strconv 'e' then Go's cleanup of e-09 to e-9
            let mut e = e_form(&digits, dp - 1, digits.len().saturating_sub(1));
            if let Some(pos) = e.find("e-0") {
                e.remove(pos + 2);
            }
            e
        } else {
            f_form(&digits, dp)
        };
        if f < 0.0 {
            s.insert(0, '-');
        }
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn string(&mut self, s: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let out = &mut *self.out;
        out.push(b'"');
        let mut i = 0;
        while i < s.len() {
            let b = s[i];
            if b < 0x80 {
                match b {
                    b'"' | b'\\' => {
                        out.push(b'\\');
                        out.push(b);
                    }
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    8 => out.extend_from_slice(b"\\b"),
                    12 => out.extend_from_slice(b"\\f"),
                    b'<' | b'>' | b'&' if self.escape_html => {
                        out.extend_from_slice(&[
                            b'\\',
                            b'u',
                            b'0',
                            b'0',
                            HEX[(b >> 4) as usize],
                            HEX[(b & 15) as usize],
                        ]);
                    }
                    b if b < 0x20 => {
                        out.extend_from_slice(&[
                            b'\\',
                            b'u',
                            b'0',
                            b'0',
                            HEX[(b >> 4) as usize],
                            HEX[(b & 15) as usize],
                        ]);
                    }
                    b => out.push(b),
                }
                i += 1;
                continue;
            }
            let n = match b {
                b if b & 0xe0 == 0xc0 => 2,
                b if b & 0xf0 == 0xe0 => 3,
                b if b & 0xf8 == 0xf0 => 4,
                _ => 0,
            };
            match s.get(i..i + n).and_then(|c| std::str::from_utf8(c).ok()) {
                Some(c) if n > 0 => {
                    if c == "\u{2028}" || c == "\u{2029}" {
                        out.extend_from_slice(if c == "\u{2028}" {
                            b"\\u2028"
                        } else {
                            b"\\u2029"
                        });
                    } else {
                        out.extend_from_slice(c.as_bytes());
                    }
                    i += n;
                }
                _ => {
                    out.extend_from_slice(b"\\ufffd");
                    i += 1;
                }
            }
        }
        out.push(b'"');
    }
}
