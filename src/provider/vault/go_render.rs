//! The Go templates of converted Vault Agent pods (docs/migrate-from-vault-agent.md), rendered
//! from the answers held: a template's `secret` and `pkiCert` calls are looked up among the
//! session's reads by the request they make ([`super::agent::read_of`]). A call whose read is
//! not held yet (its path came from another secret's answer) makes the render ask for it: the
//! session fetches it and renders again. No I/O.

use crate::gotemplate::{self, Host, Outcome, Request};

use super::agent::read_of;
use serde_json::Value;

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
    raw: &[Option<&[u8]>],
    budget: usize,
) -> Result<Drawn, String> {
    let mut host = Answers {
        reads,
        responses,
        raw,
    };
    let opts = gotemplate::Options {
        max_output: budget,
        ..gotemplate::Options::new(t.missing_key_error)
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
    /// The answers' bytes, where kept, in the same order.
    raw: &'a [Option<&'a [u8]>],
}

impl Host for Answers<'_> {
    /// The answer as Vault sent it; re-encoded only for one that was not kept (numbers then
    /// print as serde_json reads them).
    fn answer(&mut self, request: &Request) -> Option<Result<Vec<u8>, String>> {
        let read = read_of(request);
        let i = self.reads.iter().position(|r| *r == read)?;
        Some(Ok(match self.raw.get(i).copied().flatten() {
            Some(raw) => raw.to_vec(),
            None => serde_json::to_vec(self.responses.get(i)?).unwrap_or_default(),
        }))
    }

    fn env(&self, name: &str) -> String {
        std::env::var(name).unwrap_or_default()
    }
}
