//! The bodies of consul-template's functions that are more than a line: `secret`/`pkiCert`
//! requests and their values, membership tests, `loop`, the math helpers, and Go's strings
//! and strconv functions they rely on (docs/vault-agent-templates.md, "Functions").
//!
//! Invariants: results longer than the output bound are refused before they are built;
//! nothing here panics on any argument.

use std::rc::Rc;

use base64::Engine as _;

use super::super::exec::Ctx;
use super::super::json;
use super::super::value::{Pem, Value};
use super::super::{Kind, Request};
use super::{find, text};

/// `secret` / `pkiCert`: a request built as consul-template does (path trimmed of spaces and
/// slashes, `k=v` arguments split at the first `=`), answered by the host or recorded missing.
pub(super) fn request(c: &mut Ctx<'_>, kind: Kind, a: Vec<Value>) -> Result<Value, String> {
    let Some((path, rest)) = a.split_first() else {
        return Ok(Value::Nil);
    };
    // consul-template keeps the arguments as a map (keys and values trimmed, the last of a
    // repeated key kept) and names a write by its path and that map: canonical `k=v` pairs
    // sorted by key make equal requests equal here too.
    let mut data = std::collections::BTreeMap::new();
    for r in rest {
        let s = text(r);
        if s.is_empty() {
            continue;
        }
        let Some((k, v)) = s.split_once('=') else {
            return Err("an argument is not a k=v pair".into());
        };
        data.insert(k.trim().to_string(), v.trim().to_string());
    }
    let mut args: Vec<String> = data.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let path = text(path);
    let path = path.trim().trim_matches('/').to_string();
    if path.is_empty() {
        return Err("vault.read: invalid format: \"\"".into());
    }
    // A pkiCert is named by its path (and its file) alone: the first call's arguments win.
    if kind == Kind::PkiCert {
        args = c.pki_args.entry(path.clone()).or_insert(args).clone();
    }
    let req = Request { kind, path, args };
    let read = !req.is_write();
    match c.answer(&req) {
        None => Ok(Value::Nil),
        Some(Err(e)) => Err(e),
        Some(Ok(answer)) => match kind {
            Kind::Secret if read && deleted_kv2(&answer) => {
                Err(format!("no secret exists at {}", req.path))
            }
            Kind::Secret => Ok(Value::Secret(Rc::new(
                super::super::value::secret_from_answer(&answer),
            ))),
            Kind::PkiCert => Ok(Value::Pem(Rc::new(pem_of(&answer)))),
        },
    }
}

/// consul-template's `deletedKVv2`: a read whose `data.metadata` is a map counts as deleted
/// unless its `deletion_time` is exactly the empty string.
pub(super) fn deleted_kv2(answer: &Value) -> bool {
    let Value::Map(top, _) = answer else {
        return false;
    };
    let Some(Value::Map(data, _)) = top.get("data") else {
        return false;
    };
    match data.get("metadata") {
        Some(Value::Map(md, _)) => {
            !matches!(md.get("deletion_time"), Some(Value::Str(s)) if s.is_empty())
        }
        _ => false,
    }
}

/// pkiCert's value: every string field of the answer's data scanned for PEM blocks,
/// each re-encoded as Go's pem.EncodeToMemory does (64-column base64, trailing newline);
/// the private key goes to Key, the issuing CA (a CA certificate) to CA, the other to Cert.
pub(super) fn pem_of(answer: &Value) -> Pem {
    let mut pem = Pem {
        cert: String::new(),
        key: String::new(),
        ca: String::new(),
    };
    let Value::Map(top, _) = answer else {
        return pem;
    };
    let Some(Value::Map(data, _)) = top.get("data") else {
        return pem;
    };
    for (field, v) in data.iter() {
        let Value::Str(s) = v else { continue };
        let text = String::from_utf8_lossy(s);
        for (label, der) in pem_blocks(&text) {
            let encoded = pem_encode(&label, &der);
            if label.ends_with("PRIVATE KEY") {
                pem.key = encoded;
            } else if field == "issuing_ca" || field == "ca_chain" {
                pem.ca = encoded;
            } else if field == "certificate" {
                pem.cert = encoded;
            }
        }
    }
    pem
}

pub(super) fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = after[..label_end].to_string();
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = body_start.find(&end_marker) else {
            break;
        };
        let b64: String = body_start[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push((label, der));
        }
        rest = &body_start[end + end_marker.len()..];
    }
    out
}

pub(super) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

pub(super) fn to_json(
    v: &Value,
    escape_html: bool,
    indent: Option<&str>,
    limit: usize,
) -> Result<Value, String> {
    let mut out = Vec::new();
    json::marshal_bounded(v, escape_html, indent, limit, &mut out)?;
    Ok(Value::str(trim_space(&out)))
}

/// consul-template's `in(l, v)`: membership in a list (same kind: ints, floats, or strings of
/// the same Go type), or a substring of a string of the same type.
/// Comparing a string with nil panics in Go (reflect's Type of the zero Value), which the
/// template reports as an error.
pub(super) fn within(l: &Value, v: &Value) -> Result<bool, String> {
    const NIL: &str = "reflect: call of reflect.Value.Type on zero Value";
    let is_nil = matches!(v, Value::Invalid | Value::Nil);
    let same_str = |a: &Value| -> Result<bool, String> {
        match (a, v) {
            (_, _) if is_nil => Err(NIL.to_string()),
            (Value::Str(x), Value::Str(y)) => Ok(x == y),
            (Value::Number(x), Value::Number(y)) => Ok(x == y),
            _ => Ok(false),
        }
    };
    match l {
        Value::List(items, _) => {
            for it in items.iter() {
                let hit = match (it, v) {
                    (Value::Int(a), Value::Int(b)) => a == b,
                    (Value::Float(a), Value::Float(b)) => a == b,
                    (Value::Str(_) | Value::Number(_), _) => same_str(it)?,
                    _ => false,
                };
                if hit {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Value::Str(s) => match v {
            _ if is_nil => Err(NIL.to_string()),
            Value::Str(sub) => Ok(find(s, sub).is_some()),
            _ => Ok(false),
        },
        Value::Number(s) => match v {
            _ if is_nil => Err(NIL.to_string()),
            Value::Number(sub) => Ok(s.contains(&**sub)),
            _ => Ok(false),
        },
        _ => Ok(false),
    }
}

pub(super) fn contains_some(a: &[Value], ret_true: bool, invert: bool) -> Result<Value, String> {
    if let Value::List(items, _) = &a[0] {
        for it in items.iter() {
            if within(&a[1], it)? != invert {
                return Ok(Value::Bool(!ret_true));
            }
        }
    }
    Ok(Value::Bool(ret_true))
}

pub(super) fn loop_seq(a: &[Value]) -> Result<Value, String> {
    let to64 = |v: &Value| -> Result<i64, String> {
        match v {
            Value::Int(i) => Ok(*i),
            Value::Uint(u) => Ok(*u as i64),
            Value::Str(_) | Value::Number(_) => {
                let s = text(v);
                if s.is_empty() {
                    return Ok(0);
                }
                go_int(&s).ok_or_else(|| "loop: parseInt: invalid syntax".to_string())
            }
            other => Err(format!("loop: bad argument type: {}", other.type_name())),
        }
    };
    let (start, stop) = match a {
        [stop] => (0, to64(stop)?),
        [start, stop] => (to64(start)?, to64(stop)?),
        _ => {
            return Err(format!(
                "loop: wrong number of arguments, expected 1 or 2, but got {}",
                a.len()
            ))
        }
    };
    Ok(Value::Seq(start, stop))
}

/// Go's math helpers: `b OP a` reversed as consul-template declares them (`add b a` = a + b),
/// over int64, uint64 and float64; anything else is "unknown type".
pub(super) fn arith(name: &str, a: &Value, b: &Value) -> Result<Value, String> {
    #[derive(Clone, Copy)]
    enum N {
        I(i64),
        U(u64),
        F(f64),
    }
    let num = |v: &Value| match v {
        Value::Int(i) => Some(N::I(*i)),
        Value::Uint(u) => Some(N::U(*u)),
        Value::Float(f) => Some(N::F(*f)),
        _ => None,
    };
    // Go quotes the operand here; its value may be a secret, so only its type is named.
    let unknown = |v: &Value| format!("{name}: unknown type {}", v.type_name());
    let x = num(a).ok_or_else(|| unknown(a))?;
    let y = num(b).ok_or_else(|| unknown(b))?;
    let zero = || "runtime error: integer divide by zero".to_string();
    let f = |n: N| match n {
        N::I(i) => i as f64,
        N::U(u) => u as f64,
        N::F(f) => f,
    };
    Ok(match name {
        "add" | "subtract" | "multiply" | "divide" | "modulo" => match (x, y) {
            (N::F(_), _) | (_, N::F(_)) => {
                if name == "modulo" {
                    return Err(unknown(if matches!(y, N::F(_)) { b } else { a }));
                }
                let (p, q) = (f(x), f(y));
                Value::Float(match name {
                    "add" => p + q,
                    "subtract" => p - q,
                    "multiply" => p * q,
                    _ => p / q,
                })
            }
            (N::U(p), N::U(q)) => Value::Uint(match name {
                "add" => p.wrapping_add(q),
                "subtract" => p.wrapping_sub(q),
                "multiply" => p.wrapping_mul(q),
                "divide" => p.checked_div(q).ok_or_else(zero)?,
                _ => p.checked_rem(q).ok_or_else(zero)?,
            }),
            _ => {
                let as_i = |n: N| match n {
                    N::I(i) => i,
                    N::U(u) => u as i64,
                    N::F(f) => f as i64,
                };
                let (p, q) = (as_i(x), as_i(y));
                if q == 0 && (name == "divide" || name == "modulo") {
                    return Err(zero());
                }
                Value::Int(match name {
                    "add" => p.wrapping_add(q),
                    "subtract" => p.wrapping_sub(q),
                    "multiply" => p.wrapping_mul(q),
                    "divide" => p.wrapping_div(q),
                    _ => p.wrapping_rem(q),
                })
            }
        },
        // minimum / maximum return one of the two operands with its own type.
        _ => {
            let less = f(x) < f(y);
            let pick_x = if name == "minimum" { less } else { f(x) > f(y) };
            let chosen = if pick_x { x } else { y };
            match chosen {
                N::I(i) => Value::Int(i),
                N::U(u) => Value::Uint(u),
                N::F(v) => Value::Float(v),
            }
        }
    })
}

/// strings.TrimSpace: ASCII whitespace and Unicode White_Space at both ends.
pub(crate) fn trim_space(s: &[u8]) -> &[u8] {
    match std::str::from_utf8(s) {
        Ok(t) => t.trim_matches(char::is_whitespace).as_bytes(),
        Err(_) => s.trim_ascii(),
    }
}

/// strings.Split: an empty separator splits into UTF-8 sequences.
/// Each part costs a value of its own (tens of bytes): a 4 MiB string split into single bytes
/// would hold hundreds of MiB, so more parts than this are refused.
pub(super) const MAX_PARTS: usize = 100_000;

pub(super) fn go_split(s: &[u8], sep: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let too_many = || format!("split: more than {MAX_PARTS} parts");
    if sep.is_empty() {
        let text = String::from_utf8_lossy(s);
        if text.chars().count() > MAX_PARTS {
            return Err(too_many());
        }
        return Ok(text.chars().map(|c| c.to_string().into_bytes()).collect());
    }
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(p) = find(rest, sep) {
        if out.len() >= MAX_PARTS {
            return Err(too_many());
        }
        out.push(rest[..p].to_vec());
        rest = &rest[p + sep.len()..];
    }
    out.push(rest.to_vec());
    Ok(out)
}

/// strings.Trim: drop leading and trailing runes that are in `cutset`.
pub(super) fn go_trim(s: &[u8], cutset: &[u8]) -> Vec<u8> {
    let (Ok(t), Ok(cut)) = (std::str::from_utf8(s), std::str::from_utf8(cutset)) else {
        return s
            .iter()
            .copied()
            .skip_while(|c| cutset.contains(c))
            .collect::<Vec<u8>>()
            .into_iter()
            .rev()
            .skip_while(|c| cutset.contains(c))
            .collect::<Vec<u8>>()
            .into_iter()
            .rev()
            .collect();
    };
    t.trim_matches(|c| cut.contains(c)).as_bytes().to_vec()
}

/// strings.ToLower / ToUpper: rune by rune (one rune each, like Go's unicode mapping).
pub(super) fn map_case(s: &[u8], upper: bool) -> Vec<u8> {
    if s.is_ascii() {
        return if upper {
            s.to_ascii_uppercase()
        } else {
            s.to_ascii_lowercase()
        };
    }
    let t = String::from_utf8_lossy(s);
    let mut out = String::new();
    for ch in t.chars() {
        let mut m: Vec<char> = if upper {
            ch.to_uppercase().collect()
        } else {
            ch.to_lowercase().collect()
        };
        // Go maps a rune to one rune; where Unicode's full mapping expands, Go keeps the
        // simple mapping or the rune itself.
        if m.len() != 1 {
            m = vec![ch];
        }
        out.extend(m);
    }
    out.into_bytes()
}

/// A result that would be longer than the output bound is refused before it is built.
pub(super) fn too_long(len: u128, max: usize) -> Result<(), String> {
    if len > max as u128 {
        return Err(format!("the result would exceed {max} bytes"));
    }
    Ok(())
}

pub(super) fn replace_all(s: &[u8], old: &[u8], new: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let count = if old.is_empty() {
        String::from_utf8_lossy(s).chars().count() + 1
    } else {
        let mut n = 0;
        let mut rest = s;
        while let Some(p) = find(rest, old) {
            n += 1;
            rest = &rest[p + old.len()..];
        }
        n
    };
    too_long(s.len() as u128 + count as u128 * new.len() as u128, max)?;
    if old.is_empty() {
        // Go inserts `new` before every rune and at the end.
        let t = String::from_utf8_lossy(s);
        let mut out = Vec::new();
        out.extend_from_slice(new);
        for ch in t.chars() {
            let mut b = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
            out.extend_from_slice(new);
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(p) = find(rest, old) {
        out.extend_from_slice(&rest[..p]);
        out.extend_from_slice(new);
        rest = &rest[p + old.len()..];
    }
    out.extend_from_slice(rest);
    Ok(out)
}

/// strconv.ParseInt(s, 10, 64).
pub(super) fn go_int(s: &str) -> Option<i64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty() || !body.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// strconv.ParseFloat(s, 64) for decimal forms, and Go's spellings of infinity and NaN.
pub(super) fn go_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    let body = lower.strip_prefix(['+', '-']).unwrap_or(&lower);
    match body {
        "inf" | "infinity" => {
            return Some(if lower.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'))
        && body
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == b'.');
    let f: f64 = if ok { s.parse().ok()? } else { return None };
    // Go reports a range error for overflow.
    f.is_finite().then_some(f)
}
