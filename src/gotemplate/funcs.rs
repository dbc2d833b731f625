//! consul-template's functions as OpenBao's agent registers them (template.go's funcMap), and
//! the list of those secretdrop refuses at parse with the reason (docs/vault-agent-templates.md,
//! "Functions"). Go's own builtins (and, eq, printf, …) are evaluated in [`super::exec`].
//!
//! Invariants: every function is pure apart from `secret`/`pkiCert` (the host's answers) and
//! `env` (the host's environment); results larger than the output bound are refused by the
//! caller; nothing here panics on any argument.

use std::rc::Rc;

use base64::Engine as _;

use super::exec::Ctx;
use super::json::{self, Numbers};
use super::value::{ListKind, Map, Pem, Value};
use super::{Kind, Request};

/// A parameter's Go type, for Go's argument conversion rules (text/template validateType).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    /// string
    Str,
    /// interface{}
    Any,
    /// int
    Int,
    /// []string
    StrList,
    /// []interface{}
    AnyList,
    /// reflect.Value: Go's builtins take any value as it is
    Reflect,
}

pub(crate) type Impl = fn(&mut Ctx<'_>, Vec<Value>) -> Result<Value, String>;

pub(crate) struct FuncDef {
    pub params: &'static [Ty],
    pub variadic: Option<Ty>,
    pub run: Impl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Builtin {
    And,
    Or,
    Not,
    Len,
    Index,
    Slice,
    Print,
    Printf,
    Println,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Html,
    Js,
    Urlquery,
    /// consul-template's executeTemplate: needs the template set, so it runs in exec.
    ExecuteTemplate,
}

pub(crate) enum Lookup {
    Builtin(Builtin),
    Func(&'static FuncDef),
    Refused(&'static str),
    Unknown,
}

const BUILTINS: &[(&str, Builtin)] = &[
    ("and", Builtin::And),
    ("or", Builtin::Or),
    ("not", Builtin::Not),
    ("len", Builtin::Len),
    ("index", Builtin::Index),
    ("slice", Builtin::Slice),
    ("print", Builtin::Print),
    ("printf", Builtin::Printf),
    ("println", Builtin::Println),
    ("eq", Builtin::Eq),
    ("ne", Builtin::Ne),
    ("lt", Builtin::Lt),
    ("le", Builtin::Le),
    ("gt", Builtin::Gt),
    ("ge", Builtin::Ge),
    ("html", Builtin::Html),
    ("js", Builtin::Js),
    ("urlquery", Builtin::Urlquery),
    ("executeTemplate", Builtin::ExecuteTemplate),
];

/// Functions the agent has that secretdrop does not reproduce, with the reason.
const REFUSED: &[(&str, &str)] = &[
    (
        "call",
        "it calls a function value, which no template value here is",
    ),
    ("file", "it reads the agent container's own filesystem"),
    ("plugin", "it runs a program inside the agent container"),
    (
        "writeToFile",
        "it writes files from inside the agent container",
    ),
    (
        "sockaddr",
        "it inspects the agent container's network interfaces",
    ),
    (
        "timestamp",
        "its output is the time of each render, never the same file twice",
    ),
    ("scratch", "not implemented"),
    ("secrets", "LIST requests are not implemented"),
    ("md5sum", "not implemented (no MD5 in the binary)"),
    (
        "toYAML",
        "Go's YAML encoder's layout is not reproduced byte for byte",
    ),
    (
        "toTOML",
        "Go's TOML encoder's layout is not reproduced byte for byte",
    ),
    ("parseYAML", "Go's YAML decoder's typing is not reproduced"),
    (
        "regexMatch",
        "Go's RE2 regular expressions are not in the binary",
    ),
    (
        "regexReplaceAll",
        "Go's RE2 regular expressions are not in the binary",
    ),
    (
        "toTitle",
        "Unicode word-boundary title casing is not reproduced byte for byte",
    ),
    ("mergeMap", "not implemented"),
    ("mergeMapWithOverride", "not implemented"),
    ("explodeMap", "not implemented"),
];

macro_rules! def {
    ($params:expr, $variadic:expr, $run:expr) => {
        &FuncDef {
            params: $params,
            variadic: $variadic,
            run: $run,
        }
    };
}

use Ty::{Any, AnyList, Int, Str, StrList};

fn func(name: &str) -> Option<&'static FuncDef> {
    Some(match name {
        "secret" => def!(&[], Some(Str), |c, a| request(c, Kind::Secret, a)),
        "pkiCert" => def!(&[], Some(Str), |c, a| request(c, Kind::PkiCert, a)),
        "env" => def!(&[Str], None, |c, a| Ok(Value::str(
            c.host.env(&text(&a[0]))
        ))),
        "mustEnv" => def!(&[Str], None, |c, a| {
            let name = text(&a[0]);
            let v = c.host.env(&name);
            if v.is_empty() {
                return Err(format!("required environment variable {name} is empty"));
            }
            Ok(Value::str(v))
        }),
        "envOrDefault" => def!(&[Str, Str], None, |c, a| {
            let v = c.host.env(&text(&a[0]));
            Ok(if v.is_empty() {
                a[1].clone()
            } else {
                Value::str(v)
            })
        }),
        "base64Encode" => def!(&[Str], None, |_, a| {
            Ok(Value::str(
                base64::engine::general_purpose::STANDARD.encode(bytes(&a[0])),
            ))
        }),
        "base64Decode" => def!(&[Str], None, |_, a| {
            base64::engine::general_purpose::STANDARD
                .decode(bytes(&a[0]))
                .map(Value::str)
                .map_err(|_| "base64Decode: illegal base64 data".to_string())
        }),
        "base64URLEncode" => def!(&[Str], None, |_, a| {
            Ok(Value::str(
                base64::engine::general_purpose::URL_SAFE.encode(bytes(&a[0])),
            ))
        }),
        "base64URLDecode" => def!(&[Str], None, |_, a| {
            base64::engine::general_purpose::URL_SAFE
                .decode(bytes(&a[0]))
                .map(Value::str)
                .map_err(|_| "base64URLDecode: illegal base64 data".to_string())
        }),
        "contains" => def!(&[Any, Any], None, |_, a| within(&a[1], &a[0])
            .map(Value::Bool)),
        "in" => def!(&[Any, Any], None, |_, a| within(&a[0], &a[1])
            .map(Value::Bool)),
        "containsAll" => def!(&[AnyList, Any], None, |_, a| contains_some(&a, true, true)),
        "containsAny" => def!(&[AnyList, Any], None, |_, a| contains_some(
            &a, false, false
        )),
        "containsNone" => def!(&[AnyList, Any], None, |_, a| contains_some(&a, true, false)),
        "containsNotAll" => def!(&[AnyList, Any], None, |_, a| contains_some(&a, false, true)),
        "indent" => def!(&[Int, Str], None, |c, a| {
            let Value::Int(n) = a[0] else {
                return Err("indent: bad argument".into());
            };
            if n < 0 {
                return Err("indent value must be a positive integer".into());
            }
            let s = bytes(&a[1]);
            let lines = s.iter().filter(|&&c| c == b'\n').count() + 1;
            too_long((n as u128) * (lines as u128) + s.len() as u128, c.max)?;
            let mut out = Vec::new();
            let mut at_start = true;
            for &c in s {
                if at_start && c != b'\n' {
                    out.extend(std::iter::repeat_n(b' ', n as usize));
                }
                out.push(c);
                at_start = c == b'\n';
            }
            Ok(Value::str(out))
        }),
        "loop" => def!(&[], Some(Any), |_, a| loop_seq(&a)),
        "join" => def!(&[Str, StrList], None, |c, a| {
            let Value::List(items, _) = &a[1] else {
                return Ok(Value::str(""));
            };
            let sep = bytes(&a[0]);
            let total: u128 = items
                .iter()
                .map(|it| (bytes(it).len() + sep.len()) as u128)
                .sum();
            too_long(total, c.max)?;
            let mut out = Vec::new();
            for (k, it) in items.iter().enumerate() {
                if k > 0 {
                    out.extend_from_slice(sep);
                }
                out.extend_from_slice(bytes(it));
            }
            Ok(Value::str(out))
        }),
        "split" => def!(&[Str, Str], None, |_, a| {
            let s = trim_space(bytes(&a[1]));
            if s.is_empty() {
                return Ok(Value::strings(Vec::new()));
            }
            Ok(Value::strings(go_split(s, bytes(&a[0]))))
        }),
        "splitToMap" => def!(&[Str, Str, Str], None, |_, a| {
            let s = trim_space(bytes(&a[2]));
            let mut m = Map::new();
            if !s.is_empty() {
                for part in go_split(s, bytes(&a[0])) {
                    let sep2 = bytes(&a[1]);
                    if let Some(p) = find(&part, sep2) {
                        let k = String::from_utf8_lossy(&part[..p]).into_owned();
                        m.insert(k, Value::str(&part[p + sep2.len()..]));
                    }
                }
            }
            Ok(Value::Map(Rc::new(m), false))
        }),
        "trim" => def!(&[Str, Str], None, |_, a| Ok(Value::str(go_trim(
            bytes(&a[1]),
            bytes(&a[0])
        )))),
        "trimPrefix" => def!(&[Str, Str], None, |_, a| {
            let (p, s) = (bytes(&a[0]), bytes(&a[1]));
            Ok(Value::str(s.strip_prefix(p).unwrap_or(s)))
        }),
        "trimSuffix" => def!(&[Str, Str], None, |_, a| {
            let (p, s) = (bytes(&a[0]), bytes(&a[1]));
            Ok(Value::str(s.strip_suffix(p).unwrap_or(s)))
        }),
        "trimSpace" => def!(&[Str], None, |_, a| Ok(Value::str(trim_space(bytes(
            &a[0]
        ))))),
        "toLower" => def!(&[Str], None, |_, a| Ok(Value::str(map_case(
            bytes(&a[0]),
            false
        )))),
        "toUpper" => def!(&[Str], None, |_, a| Ok(Value::str(map_case(
            bytes(&a[0]),
            true
        )))),
        "replaceAll" => def!(&[Str, Str, Str], None, |c, a| {
            Ok(Value::str(replace_all(
                bytes(&a[2]),
                bytes(&a[0]),
                bytes(&a[1]),
                c.max,
            )?))
        }),
        "parseBool" => def!(&[Str], None, |_, a| {
            Ok(Value::Bool(match bytes(&a[0]) {
                b"" | b"0" | b"f" | b"F" | b"false" | b"FALSE" | b"False" => false,
                b"1" | b"t" | b"T" | b"true" | b"TRUE" | b"True" => true,
                _ => return Err("parseBool: invalid syntax".into()),
            }))
        }),
        "parseInt" => def!(&[Str], None, |_, a| {
            let s = text(&a[0]);
            if s.is_empty() {
                return Ok(Value::Int(0));
            }
            go_int(&s)
                .map(Value::Int)
                .ok_or_else(|| "parseInt: invalid syntax or out of range".to_string())
        }),
        "parseUint" => def!(&[Str], None, |_, a| {
            let s = text(&a[0]);
            if s.is_empty() {
                return Ok(Value::Uint(0));
            }
            let ok = s.bytes().all(|c| c.is_ascii_digit() || c == b'_');
            ok.then(|| s.parse::<u64>().ok())
                .flatten()
                .map(Value::Uint)
                .ok_or_else(|| "parseUint: invalid syntax or out of range".to_string())
        }),
        "parseFloat" => def!(&[Str], None, |_, a| {
            let s = text(&a[0]);
            if s.is_empty() {
                return Ok(Value::Float(0.0));
            }
            go_float(&s)
                .map(Value::Float)
                .ok_or_else(|| "parseFloat: invalid syntax or out of range".to_string())
        }),
        "parseJSON" => def!(&[Str], None, |_, a| {
            let s = bytes(&a[0]);
            if s.is_empty() {
                return Ok(Value::Map(Rc::new(Map::new()), false));
            }
            json::parse(s, Numbers::Float)
        }),
        "toJSON" => def!(&[Any], None, |c, a| to_json(&a[0], true, None, c.max)),
        "toJSONPretty" => def!(&[Any], None, |c, a| to_json(&a[0], true, Some("  "), c.max)),
        "toUnescapedJSON" => def!(&[Any], None, |c, a| to_json(&a[0], false, None, c.max)),
        "toUnescapedJSONPretty" => def!(&[Any], None, |c, a| to_json(
            &a[0],
            false,
            Some("  "),
            c.max
        )),
        "sha256Hex" => def!(&[Str], None, |_, a| {
            let d = ring::digest::digest(&ring::digest::SHA256, bytes(&a[0]));
            Ok(Value::str(hex(d.as_ref())))
        }),
        "hmacSHA256Hex" => def!(&[Str, Str], None, |_, a| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes(&a[1]));
            Ok(Value::str(hex(
                ring::hmac::sign(&key, bytes(&a[0])).as_ref()
            )))
        }),
        "add" => def!(&[Any, Any], None, |_, a| arith("add", &a[1], &a[0])),
        "subtract" => def!(&[Any, Any], None, |_, a| arith("subtract", &a[1], &a[0])),
        "multiply" => def!(&[Any, Any], None, |_, a| arith("multiply", &a[1], &a[0])),
        "divide" => def!(&[Any, Any], None, |_, a| arith("divide", &a[1], &a[0])),
        "modulo" => def!(&[Any, Any], None, |_, a| arith("modulo", &a[1], &a[0])),
        "minimum" => def!(&[Any, Any], None, |_, a| arith("minimum", &a[1], &a[0])),
        "maximum" => def!(&[Any, Any], None, |_, a| arith("maximum", &a[1], &a[0])),
        _ => return None,
    })
}

pub(crate) fn lookup(name: &str) -> Lookup {
    if let Some((_, b)) = BUILTINS.iter().find(|(n, _)| *n == name) {
        return Lookup::Builtin(*b);
    }
    if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
        return Lookup::Refused(why);
    }
    if name.starts_with("sprig_") {
        return Lookup::Refused("the Sprig library is not reproduced");
    }
    if name.starts_with("spew_") {
        return Lookup::Refused("it dumps Go's internal representation of values");
    }
    match func(name) {
        Some(f) => Lookup::Func(f),
        None => Lookup::Unknown,
    }
}

/// A string argument's bytes (arguments were converted to their Go types before the call).
fn bytes(v: &Value) -> &[u8] {
    v.string_bytes().unwrap_or_default()
}

fn text(v: &Value) -> String {
    String::from_utf8_lossy(bytes(v)).into_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `secret` / `pkiCert`: a request built as consul-template does (path trimmed of spaces and
/// slashes, `k=v` arguments split at the first `=`), answered by the host or recorded missing.
fn request(c: &mut Ctx<'_>, kind: Kind, a: Vec<Value>) -> Result<Value, String> {
    let Some((path, rest)) = a.split_first() else {
        return Ok(Value::Nil);
    };
    let mut args = Vec::new();
    for r in rest {
        let s = text(r);
        if s.is_empty() {
            continue;
        }
        if !s.contains('=') {
            return Err("an argument is not a k=v pair".into());
        }
        args.push(s);
    }
    let path = text(path);
    let path = path.trim().trim_matches('/').to_string();
    if path.is_empty() {
        return Err("vault.read: invalid format: \"\"".into());
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
            Kind::Secret => Ok(Value::Secret(Rc::new(super::value::secret_from_answer(
                &answer,
            )))),
            Kind::PkiCert => Ok(Value::Pem(Rc::new(pem_of(&answer)))),
        },
    }
}

/// consul-template's `deletedKVv2`: a read whose `data.metadata` is a map counts as deleted
/// unless its `deletion_time` is exactly the empty string.
fn deleted_kv2(answer: &Value) -> bool {
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
fn pem_of(answer: &Value) -> Pem {
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

fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
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

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

fn to_json(
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
fn within(l: &Value, v: &Value) -> Result<bool, String> {
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

fn contains_some(a: &[Value], ret_true: bool, invert: bool) -> Result<Value, String> {
    if let Value::List(items, _) = &a[0] {
        for it in items.iter() {
            if within(&a[1], it)? != invert {
                return Ok(Value::Bool(!ret_true));
            }
        }
    }
    Ok(Value::Bool(ret_true))
}

fn loop_seq(a: &[Value]) -> Result<Value, String> {
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
fn arith(name: &str, a: &Value, b: &Value) -> Result<Value, String> {
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
fn go_split(s: &[u8], sep: &[u8]) -> Vec<Vec<u8>> {
    if sep.is_empty() {
        return String::from_utf8_lossy(s)
            .chars()
            .map(|c| c.to_string().into_bytes())
            .collect();
    }
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(p) = find(rest, sep) {
        out.push(rest[..p].to_vec());
        rest = &rest[p + sep.len()..];
    }
    out.push(rest.to_vec());
    out
}

/// strings.Trim: drop leading and trailing runes that are in `cutset`.
fn go_trim(s: &[u8], cutset: &[u8]) -> Vec<u8> {
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
fn map_case(s: &[u8], upper: bool) -> Vec<u8> {
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
fn too_long(len: u128, max: usize) -> Result<(), String> {
    if len > max as u128 {
        return Err(format!("the result would exceed {max} bytes"));
    }
    Ok(())
}

fn replace_all(s: &[u8], old: &[u8], new: &[u8], max: usize) -> Result<Vec<u8>, String> {
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
fn go_int(s: &str) -> Option<i64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty() || !body.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// strconv.ParseFloat(s, 64) for decimal forms, and Go's spellings of infinity and NaN.
fn go_float(s: &str) -> Option<f64> {
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

/// The list kinds an argument conversion accepts: `[]interface{}` only from JSON lists.
pub(crate) fn list_kind_ok(ty: Ty, kind: ListKind) -> bool {
    match ty {
        StrList => kind != ListKind::Iface,
        AnyList => kind == ListKind::Iface,
        _ => true,
    }
}
