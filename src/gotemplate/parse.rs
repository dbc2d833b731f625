//! The parser of Go's text/template: tokens from [`super::lex`] → the tree [`super::exec`]
//! runs. It checks what Go checks at parse time (declared variables, `break` inside `range`,
//! known functions) and refuses the functions secretdrop cannot reproduce, naming them.
//!
//! Invariants: nesting (blocks and parentheses) is bounded by [`MAX_DEPTH`], so parsing never
//! recurses deeper than that whatever the template.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::funcs::{lookup, Lookup};
use super::lex::{Tok, Token};
use super::ParseError;

/// Blocks and parentheses nested deeper than this are refused.
pub(crate) const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(Arc<[u8]>),
    Action(Pipe),
    If(Block),
    With(Block),
    Range(Block),
    Template {
        line: usize,
        name: String,
        pipe: Option<Pipe>,
    },
    Break,
    Continue,
}

#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub line: usize,
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub line: usize,
    pub is_assign: bool,
    pub decl: Vec<String>,
    pub cmds: Vec<Cmd>,
}

#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    pub line: usize,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone)]
pub(crate) struct Num {
    pub text: String,
    pub int: Option<i64>,
    pub uint: Option<u64>,
    pub float: Option<f64>,
}

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// `.A.B`
    Field(Vec<String>),
    /// `$x.A.B`
    Variable(String, Vec<String>),
    Dot,
    Nil,
    Bool(bool),
    Number(Num),
    Str(Arc<[u8]>),
    /// a function name
    Func(String),
    Pipe(Box<Pipe>),
    /// `(pipeline).A.B`
    Chain(Box<Arg>, Vec<String>),
}

pub(crate) struct Parsed {
    pub main: Vec<Node>,
    pub defs: BTreeMap<String, Vec<Node>>,
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    vars: Vec<String>,
    range_depth: usize,
    depth: usize,
    defs: BTreeMap<String, Vec<Node>>,
}

enum Stop {
    End,
    Else(usize),
    Eof,
}

pub(crate) fn parse(toks: Vec<Token>) -> Result<Parsed, ParseError> {
    let mut p = Parser {
        toks,
        pos: 0,
        vars: vec!["$".to_string()],
        range_depth: 0,
        depth: 0,
        defs: BTreeMap::new(),
    };
    let (main, end) = p.list(true)?;
    match end {
        Stop::Eof => {}
        Stop::End => return Err(p.err("unexpected {{end}}")),
        Stop::Else(_) => return Err(p.err("unexpected {{else}}")),
    }
    Ok(Parsed { main, defs: p.defs })
}

impl Parser {
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or_else(|| self.toks.last())
            .map_or(1, |t| t.line)
    }

    fn err(&self, msg: impl Into<String>) -> ParseError {
        ParseError::new(self.line(), msg)
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn skip_space(&mut self) {
        while self.peek() == Some(&Tok::Space) {
            self.pos += 1;
        }
    }

    fn peek_non_space(&mut self) -> Option<&Tok> {
        self.skip_space();
        self.peek()
    }

    fn next_non_space(&mut self) -> Option<Tok> {
        self.skip_space();
        self.next()
    }

    fn expect_right(&mut self, context: &str) -> Result<(), ParseError> {
        match self.next_non_space() {
            Some(Tok::Right) => Ok(()),
            other => Err(self.err(format!(
                "unexpected {} in {context}",
                describe(other.as_ref())
            ))),
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// Nodes up to `{{end}}`, `{{else}}` or the end of input.
    fn list(&mut self, top: bool) -> Result<(Vec<Node>, Stop), ParseError> {
        let mut nodes = Vec::new();
        loop {
            let Some(tok) = self.next() else {
                return Ok((nodes, Stop::Eof));
            };
            match tok {
                Tok::Text(t) => nodes.push(Node::Text(t.into())),
                Tok::Left => {
                    let line = self.line();
                    match self.peek_non_space().cloned() {
                        Some(Tok::Keyword("end")) => {
                            self.next();
                            self.expect_right("end")?;
                            return Ok((nodes, Stop::End));
                        }
                        Some(Tok::Keyword("else")) => {
                            self.next();
                            return Ok((nodes, Stop::Else(line)));
                        }
                        Some(Tok::Keyword("define")) => {
                            if !top {
                                return Err(self.err("unexpected <define> in command"));
                            }
                            self.next();
                            self.define()?;
                        }
                        Some(Tok::Keyword(k)) => {
                            self.next();
                            nodes.push(self.keyword(k, line)?);
                        }
                        _ => {
                            let pipe = self.pipeline("command", false)?;
                            nodes.push(Node::Action(pipe));
                        }
                    }
                }
                other => return Err(self.err(format!("unexpected {}", describe(Some(&other))))),
            }
        }
    }

    fn keyword(&mut self, k: &str, line: usize) -> Result<Node, ParseError> {
        match k {
            "if" => Ok(Node::If(self.control("if")?)),
            "with" => Ok(Node::With(self.control("with")?)),
            "range" => Ok(Node::Range(self.control("range")?)),
            "break" | "continue" => {
                if self.range_depth == 0 {
                    return Err(self.err(format!("{{{{{k}}}}} outside {{{{range}}}}")));
                }
                self.expect_right(k)?;
                Ok(if k == "break" {
                    Node::Break
                } else {
                    Node::Continue
                })
            }
            "template" => {
                let name = self.template_name("template")?;
                let pipe = if self.peek_non_space() == Some(&Tok::Right) {
                    self.next();
                    None
                } else {
                    Some(self.pipeline("template", false)?)
                };
                Ok(Node::Template { line, name, pipe })
            }
            "block" => {
                let name = self.template_name("block")?;
                let pipe = self.pipeline("block", false)?;
                let saved = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
                let saved_range = std::mem::replace(&mut self.range_depth, 0);
                self.enter()?;
                let (body, end) = self.list(false)?;
                self.depth -= 1;
                self.vars = saved;
                self.range_depth = saved_range;
                if !matches!(end, Stop::End) {
                    return Err(self.err("unexpected EOF or {{else}} in block"));
                }
                self.add_def(name.clone(), body)?;
                Ok(Node::Template {
                    line,
                    name,
                    pipe: Some(pipe),
                })
            }
            other => Err(self.err(format!("unexpected <{other}>"))),
        }
    }

    fn template_name(&mut self, context: &str) -> Result<String, ParseError> {
        match self.next_non_space() {
            Some(Tok::Str(s)) => {
                String::from_utf8(s).map_err(|_| self.err(format!("{context} name is not UTF-8")))
            }
            other => Err(self.err(format!(
                "unexpected {} in {context} clause",
                describe(other.as_ref())
            ))),
        }
    }

    fn define(&mut self) -> Result<(), ParseError> {
        let name = self.template_name("define")?;
        self.expect_right("define clause")?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        self.enter()?;
        let (body, end) = self.list(false)?;
        self.depth -= 1;
        self.vars = saved;
        if !matches!(end, Stop::End) {
            return Err(self.err("unexpected EOF or {{else}} in define clause"));
        }
        self.add_def(name, body)
    }

    fn add_def(&mut self, name: String, body: Vec<Node>) -> Result<(), ParseError> {
        // Go keeps a non-empty definition over an empty one and refuses two non-empty ones.
        let empty = |b: &[Node]| {
            b.iter()
                .all(|n| matches!(n, Node::Text(t) if t.iter().all(u8::is_ascii_whitespace)))
        };
        match self.defs.get(&name) {
            Some(old) if !empty(old) && !empty(&body) => Err(self.err(format!(
                "template: multiple definition of template {name:?}"
            ))),
            Some(old) if !empty(old) => Ok(()),
            _ => {
                self.defs.insert(name, body);
                Ok(())
            }
        }
    }

    fn control(&mut self, context: &'static str) -> Result<Block, ParseError> {
        let line = self.line();
        self.enter()?;
        let vars = self.vars.len();
        let pipe = self.pipeline(context, context == "range")?;
        if pipe.cmds.is_empty() {
            return Err(self.err(format!("missing value for {context}")));
        }
        if context == "range" {
            self.range_depth += 1;
        }
        let (list, end) = self.list(false)?;
        if context == "range" {
            self.range_depth -= 1;
        }
        let else_list = match end {
            Stop::Eof => return Err(self.err(format!("unexpected EOF in {context}"))),
            Stop::End => None,
            Stop::Else(else_line) => {
                // `{{else if ...}}` / `{{else with ...}}`: a nested block ending at the same {{end}}.
                let chained = match self.peek_non_space() {
                    Some(Tok::Keyword(k)) if (*k == "if" || *k == "with") && *k == context => {
                        Some(*k)
                    }
                    _ => None,
                };
                if let Some(k) = chained {
                    self.next();
                    let inner = self.control(if k == "if" { "if" } else { "with" })?;
                    let _ = else_line;
                    Some(vec![if k == "if" {
                        Node::If(inner)
                    } else {
                        Node::With(inner)
                    }])
                } else {
                    self.expect_right("else")?;
                    let (else_list, end) = self.list(false)?;
                    match end {
                        Stop::End => Some(else_list),
                        Stop::Else(_) => return Err(self.err("expected end; found {{else}}")),
                        Stop::Eof => return Err(self.err(format!("unexpected EOF in {context}"))),
                    }
                }
            }
        };
        self.vars.truncate(vars);
        self.depth -= 1;
        Ok(Block {
            line,
            pipe,
            list,
            else_list,
        })
    }

    /// A pipeline up to `}}` (or `)` when `in_parens`), with its declarations.
    fn pipeline(&mut self, context: &str, range: bool) -> Result<Pipe, ParseError> {
        self.pipeline_until(context, range, Tok::Right)
    }

    fn pipeline_until(&mut self, context: &str, range: bool, end: Tok) -> Result<Pipe, ParseError> {
        let line = self.line();
        let mut pipe = Pipe {
            line,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        // Declarations: `$x :=`, `$x =`, `$i, $v :=` (range only).
        loop {
            let save = self.pos;
            let Some(Tok::Variable(v)) = self.peek_non_space().cloned() else {
                break;
            };
            self.next();
            match self.peek_non_space() {
                Some(Tok::Declare) | Some(Tok::Assign) => {
                    pipe.is_assign = self.peek() == Some(&Tok::Assign);
                    self.next();
                    if pipe.is_assign && !self.vars.contains(&v) {
                        return Err(self.err(format!("undefined variable {v:?}")));
                    }
                    pipe.decl.push(v.clone());
                    self.vars.push(v);
                    break;
                }
                Some(Tok::Comma) => {
                    self.next();
                    pipe.decl.push(v.clone());
                    self.vars.push(v);
                    if range && pipe.decl.len() < 2 {
                        if let Some(Tok::Variable(_)) = self.peek_non_space() {
                            continue;
                        }
                        return Err(self.err("range can only initialize variables"));
                    }
                    return Err(self.err(format!("too many declarations in {context}")));
                }
                _ => {
                    self.pos = save;
                    break;
                }
            }
        }
        loop {
            match self.peek_non_space() {
                Some(t) if *t == end => {
                    self.next();
                    break;
                }
                Some(
                    Tok::Bool(_)
                    | Tok::Char(_)
                    | Tok::Dot
                    | Tok::Field(_)
                    | Tok::Ident(_)
                    | Tok::Number(_)
                    | Tok::Nil
                    | Tok::Str(_)
                    | Tok::Variable(_)
                    | Tok::LParen,
                ) => {
                    let cmd = self.command(&end)?;
                    pipe.cmds.push(cmd);
                }
                other => {
                    let d = describe(other);
                    return Err(self.err(format!("unexpected {d} in {context}")));
                }
            }
        }
        // Go: every stage after the first must be a function call or a field chain.
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args.first(),
                Some(Arg::Bool(_) | Arg::Dot | Arg::Nil | Arg::Number(_) | Arg::Str(_))
            ) {
                return Err(self.err(format!(
                    "non executable command in pipeline stage {}",
                    i + 1
                )));
            }
        }
        if !pipe.decl.is_empty() && pipe.cmds.is_empty() {
            return Err(self.err(format!("missing value for {context}")));
        }
        Ok(pipe)
    }

    fn command(&mut self, end: &Tok) -> Result<Cmd, ParseError> {
        let line = self.line();
        let mut args = Vec::new();
        loop {
            self.skip_space();
            args.push(self.operand()?);
            match self.peek() {
                Some(Tok::Space) => {
                    self.skip_space();
                    match self.peek() {
                        Some(Tok::Pipe) => {
                            self.next();
                            break;
                        }
                        Some(t) if t == end || *t == Tok::RParen || *t == Tok::Right => break,
                        _ => continue,
                    }
                }
                Some(Tok::Pipe) => {
                    self.next();
                    break;
                }
                Some(t) if t == end || *t == Tok::RParen || *t == Tok::Right => break,
                other => {
                    let d = describe(other);
                    return Err(self.err(format!("unexpected {d} in operand")));
                }
            }
        }
        Ok(Cmd { line, args })
    }

    fn operand(&mut self) -> Result<Arg, ParseError> {
        let term = self.term()?;
        if !matches!(self.peek(), Some(Tok::Field(_))) {
            return Ok(term);
        }
        let mut fields = Vec::new();
        while let Some(Tok::Field(f)) = self.peek().cloned() {
            self.next();
            fields.push(f);
        }
        Ok(match term {
            Arg::Field(mut f) => {
                f.extend(fields);
                Arg::Field(f)
            }
            Arg::Variable(v, mut f) => {
                f.extend(fields);
                Arg::Variable(v, f)
            }
            Arg::Bool(_) | Arg::Str(_) | Arg::Number(_) | Arg::Nil | Arg::Dot => {
                return Err(self.err("unexpected . after term"));
            }
            other => Arg::Chain(Box::new(other), fields),
        })
    }

    fn term(&mut self) -> Result<Arg, ParseError> {
        let tok = self.next();
        Ok(match tok {
            Some(Tok::Ident(name)) => match lookup(&name) {
                Lookup::Unknown => {
                    return Err(self.err(format!("function {name:?} not defined")));
                }
                Lookup::Refused(why) => {
                    return Err(self.err(format!(
                        "function {name:?} is not supported by secretdrop: {why}"
                    )));
                }
                Lookup::Builtin(_) | Lookup::Func(_) => Arg::Func(name),
            },
            Some(Tok::Dot) => Arg::Dot,
            Some(Tok::Nil) => Arg::Nil,
            Some(Tok::Variable(v)) => {
                if !self.vars.contains(&v) {
                    return Err(self.err(format!("undefined variable {v:?}")));
                }
                Arg::Variable(v, Vec::new())
            }
            Some(Tok::Field(f)) => Arg::Field(vec![f]),
            Some(Tok::Bool(b)) => Arg::Bool(b),
            Some(Tok::Char(c)) => Arg::Number(Num {
                text: c.to_string(),
                int: Some(c),
                uint: u64::try_from(c).ok(),
                float: Some(c as f64),
            }),
            Some(Tok::Number(text)) => Arg::Number(
                number(&text)
                    .ok_or_else(|| self.err(format!("illegal number syntax: {text:?}")))?,
            ),
            Some(Tok::Str(s)) => Arg::Str(s.into()),
            Some(Tok::LParen) => {
                self.enter()?;
                let pipe = self.pipeline_until("parenthesized pipeline", false, Tok::RParen)?;
                self.depth -= 1;
                if pipe.cmds.is_empty() {
                    return Err(self.err("missing value for parenthesized pipeline"));
                }
                Arg::Pipe(Box::new(pipe))
            }
            other => {
                return Err(self.err(format!(
                    "unexpected {} in operand",
                    describe(other.as_ref())
                )))
            }
        })
    }
}

/// Go's parse.NewNumber for the forms templates use: decimal, 0x/0o/0b and legacy-octal
/// integers, decimal floats; `_` separators.
pub(crate) fn number(text: &str) -> Option<Num> {
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, &clean[..]),
    };
    let lower = body.to_ascii_lowercase();
    let radix_int = |digits: &str, radix: u32| u64::from_str_radix(digits, radix).ok();
    let magnitude = if let Some(h) = lower.strip_prefix("0x") {
        if h.contains('.') || h.contains('p') {
            return None;
        }
        radix_int(h, 16)
    } else if let Some(o) = lower.strip_prefix("0o") {
        radix_int(o, 8)
    } else if let Some(bits) = lower.strip_prefix("0b") {
        radix_int(bits, 2)
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit())
    {
        radix_int(&lower[1..], 8)
    } else if !lower.is_empty() && lower.bytes().all(|c| c.is_ascii_digit()) {
        radix_int(&lower, 10)
    } else {
        None
    };
    if let Some(m) = magnitude {
        let int = if neg {
            0i64.checked_sub_unsigned(m)
        } else {
            i64::try_from(m).ok()
        };
        let uint = (!neg).then_some(m);
        return Some(Num {
            text: text.to_string(),
            int,
            uint,
            float: Some(if neg { -(m as f64) } else { m as f64 }),
        });
    }
    // A decimal float: digits, optional fraction, optional exponent.
    let ok = !lower.is_empty()
        && lower
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'))
        && lower.bytes().any(|c| c.is_ascii_digit());
    let f: f64 = if ok { clean.parse().ok()? } else { return None };
    if !f.is_finite() {
        return None;
    }
    // Go: a float with an integral value is also an int.
    let int = (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64);
    let uint = (f.fract() == 0.0 && (0.0..1.8e19).contains(&f)).then_some(f as u64);
    Some(Num {
        text: text.to_string(),
        int,
        uint,
        float: Some(f),
    })
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "EOF".into(),
        Some(Tok::Right) => "\"}}\"".into(),
        Some(Tok::Left) => "\"{{\"".into(),
        Some(Tok::Text(_)) => "text".into(),
        Some(Tok::Space) => "space".into(),
        Some(Tok::Ident(s)) => format!("{s:?}"),
        Some(Tok::Keyword(k)) => format!("<{k}>"),
        Some(Tok::Field(f)) => format!("\".{f}\""),
        Some(Tok::Variable(v)) => format!("{v:?}"),
        Some(Tok::Dot) => "\".\"".into(),
        Some(Tok::Str(_)) => "quoted string".into(),
        Some(Tok::Char(_)) => "character constant".into(),
        Some(Tok::Number(n)) => format!("number {n}"),
        Some(Tok::Bool(b)) => format!("{b}"),
        Some(Tok::Nil) => "nil".into(),
        Some(Tok::Pipe) => "\"|\"".into(),
        Some(Tok::LParen) => "\"(\"".into(),
        Some(Tok::RParen) => "\")\"".into(),
        Some(Tok::Declare) => "\":=\"".into(),
        Some(Tok::Assign) => "\"=\"".into(),
        Some(Tok::Comma) => "\",\"".into(),
    }
}
