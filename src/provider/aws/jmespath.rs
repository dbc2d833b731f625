//! The subset of JMESPath that `jmesPath` entries use in practice: identifiers (bare or
//! double-quoted) joined by dots, and array indexes (`a.b[0]`, `list[-1]`).
//!
//! Parsed once at config time, so an expression outside the subset is a configuration error
//! (exit 2) rather than a surprise at run time. Evaluation follows JMESPath: a field of a
//! non-object or an index of a non-array is `null`. The provider writes only string results;
//! [`select_string`] says what was found otherwise, never the value itself.

use serde_json::Value;

/// Longest expression accepted; real ones are a few words.
const MAX_LEN: usize = 1024;
/// Most steps in one expression.
const MAX_STEPS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(i64),
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    steps: Vec<Step>,
}

const SUBSET: &str = "secretdrop supports fields (a.b, \"quoted key\".c) and indexes (a[0], a[-1])";

impl Expr {
    pub fn parse(text: &str) -> Result<Expr, String> {
        if text.len() > MAX_LEN {
            return Err(format!("longer than {MAX_LEN} bytes"));
        }
        let b = text.as_bytes();
        let mut i = 0;
        let mut steps = Vec::new();
        let mut expect_field = true;
        while i < b.len() {
            let c = b[i];
            if expect_field {
                if c == b'"' {
                    let (s, next) = quoted(text, i)?;
                    steps.push(Step::Field(s));
                    i = next;
                } else if c.is_ascii_alphabetic() || c == b'_' {
                    let start = i;
                    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                        i += 1;
                    }
                    steps.push(Step::Field(text[start..i].to_string()));
                } else if c == b'[' && steps.is_empty() {
                    expect_field = false;
                    continue;
                } else {
                    return Err(unsupported(text, i));
                }
                expect_field = false;
                continue;
            }
            match c {
                b'.' => {
                    expect_field = true;
                    i += 1;
                    if i == b.len() {
                        return Err(format!("{text:?} ends with a dot"));
                    }
                }
                b'[' => {
                    let end = text[i..]
                        .find(']')
                        .map(|e| i + e)
                        .ok_or_else(|| format!("{text:?}: '[' without ']'"))?;
                    let inner = &text[i + 1..end];
                    let n: i64 = inner
                        .parse()
                        .ok()
                        .filter(|_| !inner.starts_with('+') && !inner.is_empty())
                        .ok_or_else(|| unsupported(text, i))?;
                    steps.push(Step::Index(n));
                    i = end + 1;
                }
                _ => return Err(unsupported(text, i)),
            }
            if steps.len() > MAX_STEPS {
                return Err(format!("more than {MAX_STEPS} steps"));
            }
        }
        if steps.is_empty() {
            return Err("empty expression".into());
        }
        Ok(Expr { steps })
    }

    /// The value the expression selects; `Null` when nothing matches.
    pub fn eval<'a>(&self, root: &'a Value) -> &'a Value {
        let mut cur = root;
        for step in &self.steps {
            cur = match (step, cur) {
                (Step::Field(f), Value::Object(m)) => m.get(f).unwrap_or(&Value::Null),
                (Step::Index(n), Value::Array(a)) => {
                    let len = a.len() as i64;
                    let at = if *n < 0 { len + n } else { *n };
                    if (0..len).contains(&at) {
                        &a[at as usize]
                    } else {
                        &Value::Null
                    }
                }
                _ => &Value::Null,
            };
        }
        cur
    }
}

fn unsupported(text: &str, at: usize) -> String {
    format!(
        "{text:?} is not supported at byte {at}: {SUBSET}; functions, filters, wildcards and \
         projections are not"
    )
}

/// A JSON string literal starting at `start` (a double quote), decoded; returns the index after it.
fn quoted(text: &str, start: usize) -> Result<(String, usize), String> {
    let b = text.as_bytes();
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => {
                let s: String = serde_json::from_str(&text[start..=i])
                    .map_err(|_| format!("{text:?}: bad quoted identifier"))?;
                return Ok((s, i + 1));
            }
            _ => i += 1,
        }
    }
    Err(format!("{text:?}: unterminated quoted identifier"))
}

/// What a jmesPath entry writes: the selected string, borrowed (the caller checks its size
/// before copying it), or why not (naming the JSON type found, never the value).
pub fn select_string<'a>(expr: &Expr, doc: &'a Value) -> Result<&'a str, String> {
    match expr.eval(doc) {
        Value::String(s) => Ok(s),
        Value::Null => Err("selects nothing (null)".into()),
        Value::Bool(_) => Err("selects a boolean, not a string".into()),
        Value::Number(_) => Err("selects a number, not a string".into()),
        Value::Array(_) => Err("selects an array, not a string".into()),
        Value::Object(_) => Err("selects an object, not a string".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_quoted_fields_and_indexes() {
        let doc = json!({"username": "u", "a b": {"c": ["x", "y"]}, "n": 1});
        let get = |e: &str| select_string(&Expr::parse(e).unwrap(), &doc);
        assert_eq!(get("username").unwrap(), "u");
        assert_eq!(get("\"a b\".c[1]").unwrap(), "y");
        assert_eq!(get("\"a b\".c[-2]").unwrap(), "x");
        assert!(get("n").unwrap_err().contains("number"));
        assert!(get("missing").unwrap_err().contains("null"));
        assert!(get("\"a b\".c[5]").unwrap_err().contains("null"));
        assert!(get("\"a b\"").unwrap_err().contains("object"));
    }

    #[test]
    fn outside_the_subset_is_refused() {
        for bad in [
            "",
            "a.",
            ".a",
            "a[*]",
            "a[?b]",
            "length(a)",
            "a | b",
            "a[",
            "a..b",
            "a[+1]",
            "`x`",
        ] {
            assert!(Expr::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Expr::parse("a.".repeat(100).trim_end_matches('.')).is_err());
    }
}
