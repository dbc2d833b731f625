//! Go's template builtins (and, or, not, len, index, slice, print*, eq/ne/lt/le/gt/ge, html,
//! js, urlquery) with Go's comparison and indexing rules, and consul-template's
//! executeTemplate, which needs the running template set (docs/vault-agent-templates.md).
//!
//! Invariants: every string built here is checked against `Options::max_output`; nothing
//! panics on any value.

use std::rc::Rc;

use super::super::funcs::{Builtin, Ty};
use super::super::parse::Arg;
use super::super::print;
use super::super::value::Value;
use super::{State, MAX_CALL_DEPTH, R};

impl State<'_, '_, '_> {
    pub(super) fn builtin(
        &mut self,
        dot: &Value,
        name: &str,
        b: Builtin,
        args: &[Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        // and/or evaluate lazily and return the deciding operand.
        if matches!(b, Builtin::And | Builtin::Or) {
            let n = args.len() + usize::from(fin.is_some());
            if n < 1 {
                return Err(self.err(format!(
                    "wrong number of args for {name}: want at least 1 got 0"
                )));
            }
            let mut last = Value::Invalid;
            for a in args {
                last = self.arg(dot, Ty::Reflect, a)?;
                if last.truth() == matches!(b, Builtin::Or) {
                    return Ok(last);
                }
            }
            if let Some(f) = fin {
                last = f;
            }
            return Ok(last);
        }
        if b == Builtin::ExecuteTemplate {
            return self.execute_template(dot, args, fin);
        }
        let mut argv = Vec::new();
        for a in args {
            argv.push(self.arg(dot, Ty::Reflect, a)?);
        }
        if let Some(f) = fin {
            argv.push(f);
        }
        let want = |s: &Self, n: usize| -> R<()> {
            if argv.len() != n {
                return Err(s.err(format!(
                    "wrong number of args for {name}: want {n} got {}",
                    argv.len()
                )));
            }
            Ok(())
        };
        let at_least = |s: &Self, n: usize| -> R<()> {
            if argv.len() < n {
                return Err(s.err(format!(
                    "wrong number of args for {name}: want at least {n} got {}",
                    argv.len()
                )));
            }
            Ok(())
        };
        let e = |s: &Self, m: String| s.err(format!("error calling {name}: {m}"));
        let out = match b {
            Builtin::And | Builtin::Or | Builtin::ExecuteTemplate => Value::Invalid,
            Builtin::Not => {
                want(self, 1)?;
                Value::Bool(!argv[0].truth())
            }
            Builtin::Len => {
                want(self, 1)?;
                Value::Int(match &argv[0] {
                    Value::Str(s) => s.len(),
                    Value::Number(n) => n.len(),
                    Value::List(l, _) => l.len(),
                    Value::Map(m, _) => m.len(),
                    Value::Invalid | Value::Nil => {
                        return Err(e(self, "len of nil pointer".into()))
                    }
                    v => return Err(e(self, format!("len of type {}", v.type_name()))),
                } as i64)
            }
            Builtin::Index => {
                at_least(self, 1)?;
                let mut item = argv[0].clone();
                for ix in &argv[1..] {
                    item = index(item, ix).map_err(|m| e(self, m))?;
                }
                item
            }
            Builtin::Slice => {
                at_least(self, 1)?;
                slice(&argv[0], &argv[1..]).map_err(|m| e(self, m))?
            }
            Builtin::Print | Builtin::Println | Builtin::Printf => {
                let mut o = Vec::new();
                let r = match b {
                    Builtin::Print => print::sprint(&argv, self.opts.max_output, &mut o),
                    Builtin::Println => print::sprintln(&argv, self.opts.max_output, &mut o),
                    _ => {
                        at_least(self, 1)?;
                        let Value::Str(f) = &argv[0] else {
                            return Err(self.err(format!(
                                "wrong type for value; expected string; got {}",
                                argv[0].type_name()
                            )));
                        };
                        print::sprintf(f, &argv[1..], self.opts.max_output, &mut o)
                    }
                };
                r.map_err(|m| e(self, m))?;
                if o.len() > self.opts.max_output {
                    return Err(self.err(format!(
                        "{name}: the result exceeds {} bytes",
                        self.opts.max_output
                    )));
                }
                Value::str(o)
            }
            Builtin::Eq | Builtin::Ne => {
                at_least(self, 1)?;
                if b == Builtin::Ne {
                    want(self, 2)?;
                }
                if argv.len() < 2 {
                    return Err(e(self, "missing argument for comparison".into()));
                }
                let mut truth = false;
                for other in &argv[1..] {
                    if equal(&argv[0], other).map_err(|m| e(self, m))? {
                        truth = true;
                        break;
                    }
                }
                Value::Bool(if b == Builtin::Ne { !truth } else { truth })
            }
            Builtin::Lt | Builtin::Le | Builtin::Gt | Builtin::Ge => {
                want(self, 2)?;
                let lt = less(&argv[0], &argv[1]).map_err(|m| e(self, m))?;
                let eq = equal(&argv[0], &argv[1]).map_err(|m| e(self, m))?;
                Value::Bool(match b {
                    Builtin::Lt => lt,
                    Builtin::Le => lt || eq,
                    Builtin::Gt => !lt && !eq,
                    _ => !lt,
                })
            }
            Builtin::Html | Builtin::Js | Builtin::Urlquery => {
                let text = if let [Value::Str(s)] = argv.as_slice() {
                    s.to_vec()
                } else {
                    let mut o = Vec::new();
                    print::sprint(&argv, self.opts.max_output, &mut o).map_err(|m| e(self, m))?;
                    o
                };
                Value::str(match b {
                    Builtin::Html => escape_html(&text),
                    Builtin::Js => escape_js(&text),
                    _ => query_escape(&text),
                })
            }
        };
        Ok(out)
    }

    /// `executeTemplate NAME [DATA]`: a defined template run with DATA as its dot and `$`,
    /// its output returned as a string (consul-template's executeTemplateFunc).
    fn execute_template(&mut self, dot: &Value, args: &[Arg], fin: Option<Value>) -> R<Value> {
        let mut argv = Vec::new();
        for (i, a) in args.iter().enumerate() {
            argv.push(self.arg(dot, if i == 0 { Ty::Str } else { Ty::Any }, a)?);
        }
        if let Some(f) = fin {
            let ty = if argv.is_empty() { Ty::Str } else { Ty::Any };
            argv.push(self.validate(f, ty)?);
        }
        let e = |s: &Self, m: String| s.err(format!("error calling executeTemplate: {m}"));
        let d = match argv.len() {
            0 => {
                return Err(
                    self.err("wrong number of args for executeTemplate: want at least 1 got 0")
                )
            }
            1 => Value::Invalid,
            2 => argv[1].clone().unwrap_nil(),
            n => {
                return Err(e(
                    self,
                    format!(
                        "executeTemplate: wrong number of arguments, expected 1 or 2, but got {n}"
                    ),
                ))
            }
        };
        let name = String::from_utf8_lossy(argv[0].string_bytes().unwrap_or_default()).into_owned();
        let Some(body) = self.t.defs.get(&name).cloned() else {
            return Err(e(
                self,
                format!("template: no template {name:?} associated with template \"\""),
            ));
        };
        if self.depth >= MAX_CALL_DEPTH {
            return Err(self.err(format!(
                "exceeded maximum template depth ({MAX_CALL_DEPTH})"
            )));
        }
        self.depth += 1;
        let saved_vars = std::mem::replace(&mut self.vars, vec![("$".to_string(), d.clone())]);
        let saved_out = std::mem::take(&mut self.out);
        let line = self.line;
        let r = self.walk_list(&d, &body);
        let produced = std::mem::replace(&mut self.out, saved_out);
        self.vars = saved_vars;
        self.depth -= 1;
        self.line = line;
        r?;
        // The caller's output is bounded separately; the string itself shares the bound.
        if produced.len() > self.opts.max_output {
            return Err(e(
                self,
                format!("the result exceeds {} bytes", self.opts.max_output),
            ));
        }
        Ok(Value::str(produced))
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Basic {
    Bool,
    Int,
    Uint,
    Float,
    Str,
    Other,
    Invalid,
}

fn basic(v: &Value) -> Basic {
    match v {
        Value::Invalid | Value::Nil => Basic::Invalid,
        Value::Bool(_) => Basic::Bool,
        Value::Int(_) => Basic::Int,
        Value::Uint(_) => Basic::Uint,
        Value::Float(_) => Basic::Float,
        Value::Str(_) | Value::Number(_) => Basic::Str,
        _ => Basic::Other,
    }
}

/// Go's eq for one pair.
fn equal(a: &Value, b: &Value) -> Result<bool, String> {
    let (ka, kb) = (basic(a), basic(b));
    if ka != kb {
        return match (a, b) {
            (Value::Int(i), Value::Uint(u)) | (Value::Uint(u), Value::Int(i)) => {
                Ok(*i >= 0 && *i as u64 == *u)
            }
            _ if ka != Basic::Invalid && kb != Basic::Invalid => {
                Err("incompatible types for comparison".into())
            }
            _ => Ok(false),
        };
    }
    Ok(match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Uint(x), Value::Uint(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        _ if ka == Basic::Str => a.string_bytes() == b.string_bytes(),
        _ if ka == Basic::Invalid => true,
        _ => return Err(format!("non-comparable type {}", a.type_name())),
    })
}

/// Go's lt.
fn less(a: &Value, b: &Value) -> Result<bool, String> {
    let (ka, kb) = (basic(a), basic(b));
    if ka != kb {
        return match (a, b) {
            (Value::Int(i), Value::Uint(u)) => Ok(*i < 0 || (*i as u64) < *u),
            (Value::Uint(u), Value::Int(i)) => Ok(*i >= 0 && *u < *i as u64),
            _ => Err("incompatible types for comparison".into()),
        };
    }
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x < y),
        (Value::Uint(x), Value::Uint(y)) => Ok(x < y),
        (Value::Float(x), Value::Float(y)) => Ok(x < y),
        _ if ka == Basic::Str => Ok(a.string_bytes() < b.string_bytes()),
        _ => Err("invalid type for comparison".into()),
    }
}

fn index_int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Uint(u) => i64::try_from(*u).map_err(|_| format!("index out of range: {u}")),
        Value::Invalid | Value::Nil => Err("cannot index slice/array with nil".into()),
        o => Err(format!(
            "cannot index slice/array with type {}",
            o.type_name()
        )),
    }
}

/// Go's index for one step.
fn index(item: Value, ix: &Value) -> Result<Value, String> {
    match &item {
        Value::List(l, _) => {
            let i = index_int(ix)?;
            usize::try_from(i)
                .ok()
                .and_then(|i| l.get(i).cloned())
                .ok_or_else(|| format!("index out of range: {i}"))
        }
        Value::Str(s) => {
            let i = index_int(ix)?;
            usize::try_from(i)
                .ok()
                .and_then(|i| s.get(i).copied())
                .map(|b| Value::Uint(b as u64))
                .ok_or_else(|| format!("index out of range: {i}"))
        }
        // A missing key gives the zero value whatever the missingkey option.
        Value::Map(m, _) => match ix {
            Value::Str(k) => Ok(m
                .get(&*String::from_utf8_lossy(k))
                .cloned()
                .unwrap_or(Value::Nil)),
            Value::Invalid | Value::Nil => Err("value is nil; should be of type string".into()),
            o => Err(format!(
                "value has type {}; should be string",
                o.type_name()
            )),
        },
        Value::Invalid | Value::Nil => Err("index of untyped nil".into()),
        o => Err(format!("can't index item of type {}", o.type_name())),
    }
}

fn slice(item: &Value, ix: &[Value]) -> Result<Value, String> {
    if ix.len() > 3 {
        return Err(format!("too many slice indexes: {}", ix.len()));
    }
    let len = match item {
        Value::List(l, _) => l.len(),
        Value::Str(s) => s.len(),
        Value::Invalid | Value::Nil => return Err("slice of untyped nil".into()),
        o => return Err(format!("can't slice item of type {}", o.type_name())),
    };
    if ix.len() == 3 && matches!(item, Value::Str(_)) {
        return Err("cannot 3-index slice a string".into());
    }
    let mut idx = [0usize, len, len];
    for (k, v) in ix.iter().enumerate() {
        let i = index_int(v)?;
        idx[k] = usize::try_from(i)
            .ok()
            .filter(|&i| i <= len)
            .ok_or_else(|| format!("index out of range: {i}"))?;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    Ok(match item {
        Value::List(l, k) => Value::List(Rc::new(l[idx[0]..idx[1]].to_vec()), *k),
        Value::Str(s) => Value::str(&s[idx[0]..idx[1]]),
        _ => Value::Invalid,
    })
}

/// text/template's HTMLEscape.
fn escape_html(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::new();
    for &c in s {
        match c {
            b'"' => o.extend_from_slice(b"&#34;"),
            b'\'' => o.extend_from_slice(b"&#39;"),
            b'&' => o.extend_from_slice(b"&amp;"),
            b'<' => o.extend_from_slice(b"&lt;"),
            b'>' => o.extend_from_slice(b"&gt;"),
            0 => o.extend_from_slice("\u{FFFD}".as_bytes()),
            c => o.push(c),
        }
    }
    o
}

/// text/template's JSEscape.
fn escape_js(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::new();
    let text = String::from_utf8_lossy(s);
    for ch in text.chars() {
        match ch {
            '\\' => o.extend_from_slice(b"\\\\"),
            '\'' => o.extend_from_slice(b"\\'"),
            '"' => o.extend_from_slice(b"\\\""),
            '<' => o.extend_from_slice(b"\\u003C"),
            '>' => o.extend_from_slice(b"\\u003E"),
            '&' => o.extend_from_slice(b"\\u0026"),
            '=' => o.extend_from_slice(b"\\u003D"),
            '\n' => o.extend_from_slice(b"\\n"),
            '\r' => o.extend_from_slice(b"\\r"),
            '\t' => o.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                o.extend_from_slice(format!("\\u{:04X}", c as u32).as_bytes())
            }
            c if !c.is_ascii() && !print::is_print(c) => {
                o.extend_from_slice(format!("\\u{:04X}", c as u32).as_bytes())
            }
            c => {
                let mut b = [0u8; 4];
                o.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    o
}

/// url.QueryEscape.
fn query_escape(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::new();
    for &c in s {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => o.push(c),
            b' ' => o.push(b'+'),
            c => o.extend_from_slice(format!("%{c:02X}").as_bytes()),
        }
    }
    o
}
