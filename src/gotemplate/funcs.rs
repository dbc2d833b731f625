//! consul-template's functions as OpenBao's agent registers them (template.go's funcMap), and
//! the list of those secretdrop refuses at parse with the reason (docs/vault-agent-templates.md,
//! "Functions"). Go's own builtins (and, eq, printf, …) are evaluated in [`super::exec`].
//!
//! Invariants: every function is pure apart from `secret`/`pkiCert` (the host's answers) and
//! `env` (the host's environment); results larger than the output bound are refused by the
//! caller; nothing here panics on any argument.

use std::rc::Rc;

use base64::Engine as _;

mod ops;

use super::exec::Ctx;
use super::json::{self, Numbers};
use super::value::{ListKind, Map, Value};
use super::Kind;
pub(crate) use ops::trim_space;
use ops::*;

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
            Ok(Value::strings(go_split(s, bytes(&a[0]))?))
        }),
        "splitToMap" => def!(&[Str, Str, Str], None, |_, a| {
            let s = trim_space(bytes(&a[2]));
            let mut m = Map::new();
            if !s.is_empty() {
                for part in go_split(s, bytes(&a[0]))? {
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

/// The list kinds an argument conversion accepts: `[]interface{}` only from JSON lists.
pub(crate) fn list_kind_ok(ty: Ty, kind: ListKind) -> bool {
    match ty {
        StrList => kind != ListKind::Iface,
        AnyList => kind == ListKind::Iface,
        _ => true,
    }
}
