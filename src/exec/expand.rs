//! Kubelet's `$(VAR)` expansion (docs/exec.md, "Expanding $(VAR)"), for the variables only
//! secretdrop knows: a converted pod's command, args and env values that name a variable
//! served from a synced Secret are expanded by `exec` exactly as kubelet would have.
//!
//! The grammar is kubelet's (its `expansion` package): `$$` is a literal `$`; `$(NAME)` is the
//! variable's value when it is defined, else kept as written; an unclosed `$(` and a `$`
//! before any other character are kept; a `$` at the very end is kept. Pure, byte-wise (the
//! delimiters are ASCII, so UTF-8 text stays UTF-8).
//!
//! The webhook uses [`references`] and [`escape_unless`] to decide what `exec` must expand and
//! to keep literal what kubelet would have kept literal; `exec` uses [`expand`].

const OPERATOR: u8 = b'$';

/// One piece of a text, as kubelet's expansion reads it.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    /// Bytes copied as they are.
    Literal(&'a [u8]),
    /// `$$`: one `$` once expanded.
    Escaped,
    /// `$(NAME)`.
    Reference(&'a str),
}

fn pieces(input: &str) -> Vec<Piece<'_>> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == OPERATOR && cursor + 1 < bytes.len() {
            out.push(Piece::Literal(&bytes[checkpoint..cursor]));
            let rest = &bytes[cursor + 1..];
            let advance = match rest[0] {
                OPERATOR => {
                    out.push(Piece::Escaped);
                    1
                }
                b'(' => match rest.iter().position(|&b| b == b')') {
                    Some(close) => {
                        // Between ASCII delimiters of a str: valid UTF-8.
                        let name = std::str::from_utf8(&rest[1..close]).unwrap_or("");
                        out.push(Piece::Reference(name));
                        close + 1
                    }
                    None => {
                        out.push(Piece::Literal(b"$("));
                        1
                    }
                },
                _ => {
                    out.push(Piece::Literal(&bytes[cursor..cursor + 2]));
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push(Piece::Literal(&bytes[checkpoint.min(bytes.len())..]));
    out
}

/// `input` expanded: each `$(NAME)` with `lookup(NAME)` when it has a value.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for p in pieces(input) {
        match p {
            Piece::Literal(b) => out.extend_from_slice(b),
            Piece::Escaped => out.push(OPERATOR),
            Piece::Reference(name) => match lookup(name) {
                Some(v) => out.extend_from_slice(&v),
                None => {
                    out.extend_from_slice(b"$(");
                    out.extend_from_slice(name.as_bytes());
                    out.push(b')');
                }
            },
        }
    }
    out
}

/// The names `input` refers to with `$(NAME)`, in order, each once.
pub fn references(input: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for p in pieces(input) {
        if let Piece::Reference(name) = p {
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// `input` with every `$(NAME)` for which `keep(NAME)` is false written `$$(NAME)`, so that
/// expanding the result leaves it literal, as kubelet would have; everything else as written.
/// `expand(escape_unless(t, keep), f) == expand(t, |n| keep(n).then(|| f(n)).flatten())`.
pub fn escape_unless(input: &str, keep: &dyn Fn(&str) -> bool) -> String {
    let mut out = Vec::with_capacity(input.len() + 8);
    for p in pieces(input) {
        match p {
            Piece::Literal(b) => out.extend_from_slice(b),
            Piece::Escaped => out.extend_from_slice(b"$$"),
            Piece::Reference(name) => {
                if !keep(name) {
                    out.push(OPERATOR);
                }
                out.extend_from_slice(b"$(");
                out.extend_from_slice(name.as_bytes());
                out.push(b')');
            }
        }
    }
    // Only ASCII was added between whole pieces of a str.
    String::from_utf8(out).unwrap_or_default()
}

/// Text written so that kubelet's expansion gives it back unchanged: every `$` doubled.
pub fn literal(text: &str) -> String {
    text.replace('$', "$$")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<Vec<u8>> + 'a {
        move |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_bytes().to_vec())
        }
    }

    fn x(input: &str, vars: &[(&str, &str)]) -> String {
        String::from_utf8(expand(input, &with(vars))).unwrap()
    }

    /// Kubelet's own cases (its expansion package's tests, `doExpansionTest`), with its
    /// mapping, and a few more.
    #[test]
    fn expands_as_kubelet_does() {
        let vars = [
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
        ];
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("$(VAR_A)-1", "A-1"),
            ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
            ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
            ("$$(VAR_B)_$$(VAR_A)", "$(VAR_B)_$(VAR_A)"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
            ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
            ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("$(VAR_A", "$(VAR_A"),
            ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
            ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
            ("$$$$$$$(VAR_A)", "$$$A"),
            ("$$$$$$$GOOD_ODDS)", "$$$$GOOD_ODDS)"),
            ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
            ("___$(VAR_C)", "___C"),
            ("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
            ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
            ("f00__(VAR_A)__", "f00__(VAR_A)__"),
            ("$?_boo_$!", "$?_boo_$!"),
            ("$VAR_A", "$VAR_A"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$(VAR_B)_______$(A", "B_______$(A"),
            ("$(VAR_C)_______$(", "C_______$("),
            ("$(VAR_A)foobarzab$", "Afoobarzab$"),
            ("foo-\\$(VAR_A", "foo-\\$(VAR_A"),
            ("--$($($($($--", "--$($($($($--"),
            ("$($($($($--foo$(", "$($($($($--foo$("),
            ("foo0--$($($($(", "foo0--$($($($("),
            ("$(foo$$var)", "$(foo$$var)"),
            ("\n", "\n"),
            ("$VAR_A)", "$VAR_A)"),
            ("${VAR_A}", "${VAR_A}"),
            ("$(VAR_A)$", "A$"),
            ("$", "$"),
            ("$(NOPE)", "$(NOPE)"),
            ("$()", "$()"),
            ("", ""),
            ("é$(VAR_A)ü$é", "éAü$é"),
        ];
        for (input, want) in cases {
            assert_eq!(x(input, &vars), want, "{input:?}");
        }
    }

    #[test]
    fn references_and_escaping_keep_what_kubelet_would_keep() {
        assert_eq!(references("$(A)-$$(B)-$(C)-$(A)"), ["A", "C"]);
        let t = "$(A)-$$(B)-$(C)-$";
        let kept = escape_unless(t, &|n| n == "A");
        assert_eq!(kept, "$(A)-$$(B)-$$(C)-$");
        let vars = [("A", "1"), ("B", "2"), ("C", "3")];
        assert_eq!(x(&kept, &vars), "1-$(B)-$(C)-$");
        // Through kubelet first (every `$` doubled), then expanded: the same text.
        assert_eq!(x(&literal(&kept), &vars), kept);
        assert_eq!(literal("a$b$$"), "a$$b$$$$");
    }
}
