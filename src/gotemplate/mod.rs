//! TEMPORARY stub of the Go template engine's API (replaced by the real engine at merge).
#![allow(dead_code)]

#[derive(Debug, Clone)]
pub struct Template {
    text: String,
}

#[derive(Debug)]
pub struct ParseError(String);
impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
#[derive(Debug)]
pub struct ExecError(String);
impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Template {
    pub fn parse(text: &str, _left: &str, _right: &str) -> Result<Template, ParseError> {
        Ok(Template { text: text.into() })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    Secret,
    PkiCert,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Request {
    pub kind: Kind,
    pub path: String,
    pub args: Vec<String>,
}

pub trait Host {
    fn answer(&mut self, req: &Request) -> Option<Result<serde_json::Value, String>>;
    fn env(&self, name: &str) -> String;
}

pub struct Options {
    pub error_on_missing_key: bool,
    pub max_output: usize,
}

pub enum Outcome {
    Rendered(Vec<u8>),
    Missing(Vec<Request>),
}

pub fn execute(t: &Template, host: &mut dyn Host, _opts: &Options) -> Result<Outcome, ExecError> {
    let mut missing = Vec::new();
    for part in t.text.split("secret \"").skip(1) {
        if let Some(end) = part.find('"') {
            let r = Request {
                kind: Kind::Secret,
                path: part[..end].to_string(),
                args: vec![],
            };
            if host.answer(&r).is_none() {
                missing.push(r);
            }
        }
    }
    if missing.is_empty() {
        Ok(Outcome::Rendered(Vec::new()))
    } else {
        Ok(Outcome::Missing(missing))
    }
}
