//! The Go templates of converted Vault Agent pods (docs/migrate-from-vault-agent.md), rendered
//! from the answers held: a template's `secret` and `pkiCert` calls are looked up among the
//! session's reads by the request they make ([`super::agent::read_of`]). A call whose read is
//! not held yet (its path came from another secret's answer) makes the render ask for it: the
//! session fetches it and renders again. No I/O.

use serde_json::Value;

use crate::gotemplate::{self, Host, Outcome, Request};

use super::agent::read_of;
use super::spec::{GoTemplate, Read};

/// A template's render: its bytes, or the reads it still needs.
pub enum Drawn {
    Bytes(Vec<u8>),
    Needs(Vec<Read>),
}

/// Renders `t` over `reads` and their `responses` (in the same order), at most `budget` bytes.
/// `env "NAME"` sees this process's environment, which the webhook gives the values the
/// agent's container had (docs/migrate-from-vault-agent.md, "env").
pub fn draw(
    t: &GoTemplate,
    reads: &[Read],
    responses: &[&Value],
    budget: usize,
) -> Result<Drawn, String> {
    let mut host = Answers { reads, responses };
    let opts = gotemplate::Options {
        error_on_missing_key: t.missing_key_error,
        max_output: budget,
    };
    match gotemplate::execute(&t.parsed, &mut host, &opts) {
        Ok(Outcome::Rendered(bytes)) => Ok(Drawn::Bytes(bytes)),
        Ok(Outcome::Missing(requests)) => {
            let mut needs: Vec<Read> = Vec::new();
            for r in requests.iter().map(read_of) {
                if !needs.contains(&r) {
                    needs.push(r);
                }
            }
            Ok(Drawn::Needs(needs))
        }
        Err(e) => Err(format!("{}: {e}", t.what)),
    }
}

struct Answers<'a> {
    reads: &'a [Read],
    responses: &'a [&'a Value],
}

impl Host for Answers<'_> {
    fn answer(&mut self, request: &Request) -> Option<Result<Value, String>> {
        let read = read_of(request);
        let i = self.reads.iter().position(|r| *r == read)?;
        self.responses.get(i).map(|v| Ok((*v).clone()))
    }

    fn env(&self, name: &str) -> String {
        std::env::var(name).unwrap_or_default()
    }
}
