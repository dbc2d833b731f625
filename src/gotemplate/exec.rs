//! The executor of Go's text/template over [`Value`]s: pipelines, fields, variables, control
//! structures, Go's builtins and argument conversion rules, as consul-template runs templates
//! (missingkey=zero, or error with `error_on_missing_key`; docs/vault-agent-templates.md).
//!
//! Invariants: output never exceeds `Options::max_output`; every node, range iteration and
//! call costs a step and a run stops after `Options::max_steps`; template calls nest at most
//! [`MAX_CALL_DEPTH`] deep; a request the host has not answered yields nil and is recorded,
//! so one run discovers every request it reaches.

use std::collections::HashMap;
use std::rc::Rc;

mod builtins;

use super::funcs::{list_kind_ok, lookup, Lookup, Ty};
use super::json::{self, Numbers};
use super::parse::{Arg, Block, Cmd, Node, Num, Pipe};
use super::print;
use super::value::{ListKind, Value};
use super::{ExecError, Host, Options, Request, Template};

/// `{{template}}` calls nested deeper than this stop the run (Go allows 100000).
pub(crate) const MAX_CALL_DEPTH: usize = 100;

/// What functions see of the run: the host, and the requests it has not answered yet.
pub(crate) struct Ctx<'a> {
    pub host: &'a mut dyn Host,
    /// Options::max_output: no function builds a string longer than this.
    pub max: usize,
    /// The arguments of each path's first pkiCert call in this run.
    pub pki_args: HashMap<String, Vec<String>>,
    pub missing: Vec<Request>,
    answers: HashMap<Request, Option<Result<Value, String>>>,
}

impl Ctx<'_> {
    /// The host's answer, decoded once per run; `None` (and recorded) when not fetched yet.
    pub fn answer(&mut self, req: &Request) -> Option<Result<Value, String>> {
        if !self.answers.contains_key(req) {
            let decoded = self.host.answer(req).map(|r| {
                r.and_then(|body| {
                    json::parse(&body, Numbers::Literal)
                        .map_err(|e| format!("{}: the answer is not JSON: {e}", req.path))
                })
            });
            self.answers.insert(req.clone(), decoded);
        }
        let a = self.answers.get(req).cloned().flatten();
        if a.is_none() && !self.missing.contains(req) {
            self.missing.push(req.clone());
        }
        a
    }
}

enum Flow {
    Normal,
    Break,
    Continue,
}

struct State<'t, 'c, 'h> {
    t: &'t Template,
    ctx: &'c mut Ctx<'h>,
    opts: &'t Options,
    vars: Vec<(String, Value)>,
    out: Vec<u8>,
    steps: u64,
    depth: usize,
    line: usize,
}

type R<T> = Result<T, ExecError>;

pub(crate) fn run(t: &Template, host: &mut dyn Host, opts: &Options) -> (R<Vec<u8>>, Vec<Request>) {
    let mut ctx = Ctx {
        host,
        max: opts.max_output,
        pki_args: HashMap::new(),
        missing: Vec::new(),
        answers: HashMap::new(),
    };
    let mut s = State {
        t,
        ctx: &mut ctx,
        opts,
        vars: vec![("$".to_string(), Value::Invalid)],
        out: Vec::new(),
        steps: 0,
        depth: 0,
        line: 1,
    };
    let main = std::sync::Arc::clone(&t.main);
    let r = s
        .walk_list(&Value::Invalid, &main)
        .map(|_| std::mem::take(&mut s.out));
    (r, ctx.missing)
}

impl State<'_, '_, '_> {
    fn err(&self, msg: impl Into<String>) -> ExecError {
        ExecError {
            line: self.line,
            msg: msg.into(),
        }
    }

    fn step(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps > self.opts.max_steps {
            return Err(self.err(format!(
                "the template takes more than {} steps; stopped",
                self.opts.max_steps
            )));
        }
        Ok(())
    }

    fn write(&mut self, b: &[u8]) -> R<()> {
        if self.out.len() + b.len() > self.opts.max_output {
            return Err(self.err(format!(
                "the output exceeds {} bytes; stopped",
                self.opts.max_output
            )));
        }
        self.out.extend_from_slice(b);
        Ok(())
    }

    fn walk_list(&mut self, dot: &Value, list: &[Node]) -> R<Flow> {
        for n in list {
            match self.walk(dot, n)? {
                Flow::Normal => {}
                f => return Ok(f),
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &Value, node: &Node) -> R<Flow> {
        self.step()?;
        match node {
            Node::Text(t) => self.write(t)?,
            Node::Action(pipe) => {
                self.line = pipe.line;
                let v = self.pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    let mut b = Vec::new();
                    print::print_top(&v, &mut b).map_err(|e| self.err(e))?;
                    self.write(&b)?;
                }
            }
            Node::If(b) | Node::With(b) => {
                let mark = self.vars.len();
                self.line = b.line;
                let v = self.pipeline(dot, &b.pipe)?;
                let flow = if v.truth() {
                    let d = if matches!(node, Node::With(_)) {
                        v
                    } else {
                        dot.clone()
                    };
                    self.walk_list(&d, &b.list)?
                } else if let Some(e) = &b.else_list {
                    self.walk_list(dot, e)?
                } else {
                    Flow::Normal
                };
                self.vars.truncate(mark);
                return Ok(flow);
            }
            Node::Range(b) => {
                let mark = self.vars.len();
                let flow = self.range(dot, b)?;
                self.vars.truncate(mark);
                return Ok(flow);
            }
            Node::Template { line, name, pipe } => {
                self.line = *line;
                let Some(body) = self.t.defs.get(name).cloned() else {
                    return Err(self.err(format!("no such template {name:?}")));
                };
                let d = match pipe {
                    Some(p) => self.pipeline(dot, p)?,
                    None => Value::Invalid,
                };
                if self.depth >= MAX_CALL_DEPTH {
                    return Err(self.err(format!(
                        "exceeded maximum template depth ({MAX_CALL_DEPTH})"
                    )));
                }
                self.depth += 1;
                let saved = std::mem::replace(&mut self.vars, vec![("$".to_string(), d.clone())]);
                let r = self.walk_list(&d, &body);
                self.vars = saved;
                self.depth -= 1;
                r?;
            }
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn range(&mut self, dot: &Value, b: &Block) -> R<Flow> {
        self.line = b.line;
        let val = self.pipeline_no_decl(dot, &b.pipe)?;
        let decl = &b.pipe.decl;
        if !b.pipe.is_assign {
            for d in decl {
                self.vars.push((d.clone(), val.clone()));
            }
        }
        let mut iterations = 0u64;
        let mut items: Vec<(Value, Value)> = Vec::new();
        let lazy: Option<(i64, i64)> = match &val {
            Value::List(l, _) => {
                items = l
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (Value::Int(i as i64), v.clone()))
                    .collect();
                None
            }
            Value::Map(m, _) => {
                items = m.iter().map(|(k, v)| (Value::str(k), v.clone())).collect();
                None
            }
            Value::Seq(a, z) => {
                if decl.len() > 1 {
                    return Err(
                        self.err("can't use a channel to iterate over more than one variable")
                    );
                }
                Some((*a, *z))
            }
            Value::Int(n) => {
                if decl.len() > 1 {
                    return Err(self.err(format!(
                        "can't use {n} to iterate over more than one variable"
                    )));
                }
                Some((0, *n))
            }
            Value::Invalid => None,
            other => {
                return Err(self.err(format!("range can't iterate over a {}", other.type_name())));
            }
        };
        let mut one = |s: &mut Self, index: Value, elem: Value| -> R<Flow> {
            s.step()?;
            iterations += 1;
            if !decl.is_empty() {
                if b.pipe.is_assign {
                    let first = if decl.len() > 1 {
                        index.clone()
                    } else {
                        elem.clone()
                    };
                    s.set_var(&decl[0], first)?;
                    if decl.len() > 1 {
                        s.set_var(&decl[1], elem.clone())?;
                    }
                } else {
                    let n = s.vars.len();
                    s.vars[n - 1].1 = elem.clone();
                    if decl.len() > 1 {
                        s.vars[n - 2].1 = index;
                    }
                }
            }
            let mark = s.vars.len();
            let f = s.walk_list(&elem, &b.list);
            s.vars.truncate(mark);
            f
        };
        if let Some((start, stop)) = lazy {
            let mut i = start;
            while i < stop {
                if let Flow::Break = one(self, Value::Int(i), Value::Int(i))? {
                    break;
                }
                i += 1;
            }
        } else {
            for (k, v) in items {
                if let Flow::Break = one(self, k, v)? {
                    break;
                }
            }
        }
        if iterations == 0 {
            if let Some(e) = &b.else_list {
                return self.walk_list(dot, e);
            }
        }
        Ok(Flow::Normal)
    }

    fn set_var(&mut self, name: &str, v: Value) -> R<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => Err(self.err(format!("undefined variable: {name}"))),
        }
    }

    fn var(&self, name: &str) -> R<Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| self.err(format!("undefined variable: {name}")))
    }

    fn pipeline_no_decl(&mut self, dot: &Value, pipe: &Pipe) -> R<Value> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            let v = self.command(dot, cmd, value.take())?;
            value = Some(v.unwrap_nil());
        }
        Ok(value.unwrap_or(Value::Invalid))
    }

    fn pipeline(&mut self, dot: &Value, pipe: &Pipe) -> R<Value> {
        let value = self.pipeline_no_decl(dot, pipe)?;
        for d in &pipe.decl {
            if pipe.is_assign {
                self.set_var(d, value.clone())?;
            } else {
                self.vars.push((d.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn command(&mut self, dot: &Value, cmd: &Cmd, fin: Option<Value>) -> R<Value> {
        self.line = cmd.line;
        let Some(first) = cmd.args.first() else {
            return Err(self.err("empty command"));
        };
        let args = &cmd.args[1..];
        let not_a_function = |s: &Self, what: &str, fin: &Option<Value>| -> R<()> {
            if !args.is_empty() || fin.is_some() {
                return Err(s.err(format!("can't give argument to non-function {what}")));
            }
            Ok(())
        };
        match first {
            Arg::Field(names) => {
                let recv = dot.clone();
                self.field_chain(dot, recv, names, args, fin)
            }
            Arg::Variable(name, fields) => {
                let v = self.var(name)?;
                if fields.is_empty() {
                    not_a_function(self, name, &fin)?;
                    return Ok(v);
                }
                self.field_chain(dot, v, fields, args, fin)
            }
            Arg::Chain(inner, fields) => {
                let v = self.arg(dot, Ty::Any, inner)?.unwrap_nil();
                self.field_chain(dot, v, fields, args, fin)
            }
            Arg::Pipe(p) => {
                not_a_function(self, "a parenthesized pipeline", &fin)?;
                self.pipeline(dot, p)
            }
            Arg::Func(name) => self.call(dot, name, args, fin),
            Arg::Bool(b) => {
                not_a_function(self, &b.to_string(), &fin)?;
                Ok(Value::Bool(*b))
            }
            Arg::Dot => {
                not_a_function(self, ".", &fin)?;
                Ok(dot.clone())
            }
            Arg::Nil => Err(self.err("nil is not a command")),
            Arg::Number(n) => {
                not_a_function(self, &n.text, &fin)?;
                self.ideal(n)
            }
            Arg::Str(s) => {
                not_a_function(self, "a string", &fin)?;
                Ok(Value::str(s))
            }
        }
    }

    /// Go's idealConstant: a number literal as an int, or a float64 when written as one.
    fn ideal(&self, n: &Num) -> R<Value> {
        let lower = n.text.to_ascii_lowercase();
        let hex = lower.trim_start_matches(['+', '-']).starts_with("0x");
        if !hex && lower.contains(['.', 'e', 'p']) {
            if let Some(f) = n.float {
                return Ok(Value::Float(f));
            }
        }
        match (n.int, n.uint) {
            (Some(i), _) => Ok(Value::Int(i)),
            _ => Err(self.err(format!("{} overflows int", n.text))),
        }
    }

    fn field_chain(
        &mut self,
        dot: &Value,
        mut recv: Value,
        names: &[String],
        args: &[Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        let _ = dot;
        let last = names.len().saturating_sub(1);
        for (i, name) in names.iter().enumerate() {
            if i == last && (!args.is_empty() || fin.is_some()) {
                return Err(self.err(format!("{name} is not a method but has arguments")));
            }
            recv = self.field(recv, name)?;
        }
        Ok(recv)
    }

    fn field(&mut self, recv: Value, name: &str) -> R<Value> {
        self.step()?;
        let error_mode = self.opts.error_on_missing_key;
        match &recv {
            Value::Invalid => {
                if error_mode {
                    return Err(self.err(format!("nil data; no entry for key {name:?}")));
                }
                Ok(Value::Invalid)
            }
            Value::Nil => Err(self.err(format!("nil pointer evaluating interface {{}}.{name}"))),
            Value::Map(m, _) => match m.get(name) {
                Some(v) => Ok(v.clone()),
                None if error_mode => Err(self.err(format!("map has no entry for key {name:?}"))),
                None => Ok(Value::Nil),
            },
            Value::Secret(s) => Ok(match name {
                "RequestID" => Value::str(&s.request_id),
                "LeaseID" => Value::str(&s.lease_id),
                "LeaseDuration" => Value::Int(s.lease_duration),
                "Renewable" => Value::Bool(s.renewable),
                "Data" => s.data.clone(),
                "Warnings" => s.warnings.clone(),
                "Auth" | "WrapInfo" => Value::Nil,
                _ => {
                    return Err(self.err(format!(
                        "can't evaluate field {name} in type *dependency.Secret"
                    )))
                }
            }),
            Value::Pem(p) => Ok(match name {
                "Cert" => Value::str(&p.cert),
                "Key" => Value::str(&p.key),
                "CA" => Value::str(&p.ca),
                "Data" => recv.clone(),
                _ => {
                    return Err(self.err(format!(
                        "can't evaluate field {name} in type dependency.PemEncoded"
                    )))
                }
            }),
            other => Err(self.err(format!(
                "can't evaluate field {name} in type {}",
                other.type_name()
            ))),
        }
    }

    /// An argument converted to a parameter's type (Go's evalArg and validateType).
    fn arg(&mut self, dot: &Value, ty: Ty, a: &Arg) -> R<Value> {
        let v = match a {
            Arg::Dot => dot.clone(),
            Arg::Nil => {
                return match ty {
                    Ty::Any | Ty::Reflect => Ok(Value::Nil),
                    Ty::StrList | Ty::AnyList => {
                        Ok(Value::List(Rc::new(Vec::new()), ListKind::NilStrings))
                    }
                    _ => Err(self.err(format!("cannot assign nil to {}", ty_name(ty)))),
                };
            }
            Arg::Field(names) => {
                let d = dot.clone();
                self.field_chain(dot, d, names, &[], None)?
            }
            Arg::Variable(name, fields) => {
                let v = self.var(name)?;
                if fields.is_empty() {
                    v
                } else {
                    self.field_chain(dot, v, fields, &[], None)?
                }
            }
            Arg::Pipe(p) => self.pipeline(dot, p)?,
            Arg::Func(name) => self.call(dot, name, &[], None)?,
            Arg::Chain(inner, fields) => {
                let v = self.arg(dot, Ty::Any, inner)?.unwrap_nil();
                self.field_chain(dot, v, fields, &[], None)?
            }
            Arg::Bool(b) => {
                return match ty {
                    Ty::Any | Ty::Reflect => Ok(Value::Bool(*b)),
                    _ => Err(self.err(format!("expected {}; found {b}", ty_name(ty)))),
                }
            }
            Arg::Number(n) => {
                return match ty {
                    Ty::Any | Ty::Reflect => self.ideal(n),
                    Ty::Int => n
                        .int
                        .map(Value::Int)
                        .ok_or_else(|| self.err(format!("expected integer; found {}", n.text))),
                    _ => Err(self.err(format!("expected {}; found {}", ty_name(ty), n.text))),
                }
            }
            Arg::Str(s) => {
                return match ty {
                    Ty::Any | Ty::Reflect | Ty::Str => Ok(Value::str(s)),
                    _ => Err(self.err(format!("expected {}; found a string", ty_name(ty)))),
                }
            }
        };
        self.validate(v, ty)
    }

    fn validate(&self, v: Value, ty: Ty) -> R<Value> {
        let ok = match (&v, ty) {
            (Value::Invalid, Ty::Any | Ty::Reflect) => return Ok(Value::Invalid),
            (Value::Invalid, Ty::StrList | Ty::AnyList) => {
                return Ok(Value::List(Rc::new(Vec::new()), ListKind::NilStrings))
            }
            (Value::Invalid, _) => {
                return Err(self.err(format!("invalid value; expected {}", ty_name(ty))));
            }
            (_, Ty::Any | Ty::Reflect) => true,
            (Value::Str(_), Ty::Str) => true,
            (Value::Int(_), Ty::Int) => true,
            (Value::List(_, k), Ty::StrList | Ty::AnyList) => list_kind_ok(ty, *k),
            _ => false,
        };
        if !ok {
            return Err(self.err(format!(
                "wrong type for value; expected {}; got {}",
                ty_name(ty),
                v.type_name()
            )));
        }
        Ok(v)
    }

    fn call(&mut self, dot: &Value, name: &str, args: &[Arg], fin: Option<Value>) -> R<Value> {
        self.step()?;
        let def = match lookup(name) {
            Lookup::Builtin(b) => return self.builtin(dot, name, b, args, fin),
            Lookup::Func(f) => f,
            Lookup::Refused(why) => {
                return Err(self.err(format!("function {name:?} is not supported: {why}")))
            }
            Lookup::Unknown => return Err(self.err(format!("{name:?} is not a defined function"))),
        };
        let n_in = args.len() + usize::from(fin.is_some());
        let fixed = def.params.len();
        if def.variadic.is_some() {
            if n_in < fixed {
                return Err(self.err(format!(
                    "wrong number of args for {name}: want at least {fixed} got {}",
                    args.len()
                )));
            }
        } else if n_in != fixed {
            return Err(self.err(format!(
                "wrong number of args for {name}: want {fixed} got {n_in}"
            )));
        }
        let ty_at = |i: usize| {
            def.params
                .get(i)
                .copied()
                .or(def.variadic)
                .unwrap_or(Ty::Any)
        };
        let mut argv = Vec::with_capacity(n_in);
        for (i, a) in args.iter().enumerate() {
            argv.push(self.arg(dot, ty_at(i), a)?);
        }
        if let Some(f) = fin {
            argv.push(self.validate(f, ty_at(args.len()))?);
        }
        let line = self.line;
        let r = (def.run)(self.ctx, argv);
        self.line = line;
        let v = r.map_err(|e| self.err(format!("error calling {name}: {e}")))?;
        if let Some(b) = v.string_bytes() {
            if b.len() > self.opts.max_output {
                return Err(self.err(format!(
                    "{name}: the result exceeds {} bytes",
                    self.opts.max_output
                )));
            }
        }
        Ok(v)
    }
}

fn ty_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Str => "string",
        Ty::Any => "interface {}",
        Ty::Int => "int",
        Ty::StrList => "[]string",
        Ty::AnyList => "[]interface {}",
        Ty::Reflect => "reflect.Value",
    }
}
