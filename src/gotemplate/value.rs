//! The values a template handles, modelled on the Go values consul-template gives it: strings
//! of arbitrary bytes, `json.Number` (Vault's literal text), `map[string]interface{}`,
//! `[]interface{}` and `[]string`, the `*dependency.Secret` and `dependency.PemEncoded`
//! structs, and the two kinds of nothing Go tells apart (docs/vault-agent-templates.md).
//!
//! Invariant: values are immutable and cheap to clone (shared behind `Rc`).

use std::collections::BTreeMap;
use std::rc::Rc;

pub(crate) type Map = BTreeMap<String, Value>;

#[derive(Clone, Debug)]
pub(crate) enum Value {
    /// Go's invalid reflect.Value: what a pipeline yields for nil; prints `<no value>`.
    Invalid,
    /// A nil `interface{}` inside a map or list (JSON null, or a missing key under
    /// missingkey=zero); prints `<nil>` inside containers.
    Nil,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(Rc<[u8]>),
    /// `json.Number`: Vault's literal text, a string kind in Go.
    Number(Rc<str>),
    List(Rc<Vec<Value>>, ListKind),
    /// `map[string]interface{}`; `true` when it is a nil map (prints `map[]`, marshals `null`).
    Map(Rc<Map>, bool),
    Secret(Rc<Secret>),
    Pem(Rc<Pem>),
    /// loop's channel of int64: start..stop, produced lazily.
    Seq(i64, i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// `[]interface{}`
    Iface,
    /// `[]string`
    Strings,
    /// a nil `[]string` (an absent `warnings`)
    NilStrings,
}

/// `*dependency.Secret`
#[derive(Debug)]
pub(crate) struct Secret {
    pub request_id: String,
    pub lease_id: String,
    pub lease_duration: i64,
    pub renewable: bool,
    pub data: Value,
    pub warnings: Value,
}

/// `dependency.PemEncoded{Cert, Key, CA}`
#[derive(Debug)]
pub(crate) struct Pem {
    pub cert: String,
    pub key: String,
    pub ca: String,
}

impl Value {
    pub fn str(s: impl AsRef<[u8]>) -> Value {
        Value::Str(Rc::from(s.as_ref()))
    }

    pub fn strings(items: Vec<Vec<u8>>) -> Value {
        Value::List(
            Rc::new(items.into_iter().map(Value::str).collect()),
            ListKind::Strings,
        )
    }

    /// Go's type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Invalid => "<no value>",
            Value::Nil => "interface {}",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Uint(_) => "uint64",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Number(_) => "json.Number",
            Value::List(_, ListKind::Iface) => "[]interface {}",
            Value::List(..) => "[]string",
            Value::Map(..) => "map[string]interface {}",
            Value::Secret(_) => "*dependency.Secret",
            Value::Pem(_) => "dependency.PemEncoded",
            Value::Seq(..) => "<-chan int64",
        }
    }

    /// Go's reflect kind String (string and json.Number): its bytes.
    pub fn string_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            Value::Number(n) => Some(n.as_bytes()),
            _ => None,
        }
    }

    /// Go's template truth (text/template isTrue).
    pub fn truth(&self) -> bool {
        match self {
            Value::Invalid | Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Uint(u) => *u != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Number(n) => !n.is_empty(),
            Value::List(l, _) => !l.is_empty(),
            Value::Map(m, _) => !m.is_empty(),
            Value::Secret(_) | Value::Seq(..) => true,
            Value::Pem(_) => true,
        }
    }

    /// What a pipeline stage leaves: a nil interface becomes the invalid value.
    pub fn unwrap_nil(self) -> Value {
        match self {
            Value::Nil => Value::Invalid,
            v => v,
        }
    }
}

/// Vault's answer → the `*dependency.Secret` consul-template hands the template
/// (`updateSecret`: only non-empty fields are taken).
pub(crate) fn secret_from_answer(answer: &Value) -> Secret {
    let get = |k: &str| match answer {
        Value::Map(m, _) => m.get(k).cloned().unwrap_or(Value::Nil),
        _ => Value::Nil,
    };
    let text = |v: Value| match v {
        Value::Str(s) => String::from_utf8_lossy(&s).into_owned(),
        _ => String::new(),
    };
    let data = match get("data") {
        Value::Map(m, _) if !m.is_empty() => Value::Map(m, false),
        _ => Value::Map(Rc::new(Map::new()), true),
    };
    let warnings = match get("warnings") {
        Value::List(l, _) if !l.is_empty() => Value::List(
            Rc::new(
                l.iter()
                    .map(|w| match w {
                        Value::Str(_) => w.clone(),
                        _ => Value::str(""),
                    })
                    .collect(),
            ),
            ListKind::Strings,
        ),
        _ => Value::List(Rc::new(Vec::new()), ListKind::NilStrings),
    };
    Secret {
        request_id: text(get("request_id")),
        lease_id: text(get("lease_id")),
        lease_duration: match get("lease_duration") {
            Value::Number(n) => n.parse().unwrap_or(0),
            _ => 0,
        },
        renewable: matches!(get("renewable"), Value::Bool(true)),
        data,
        warnings,
    }
}
