//! The one way configuration YAML is parsed: bounded in size and flow nesting *before* the
//! parser sees it, and strict about duplicate keys.
//!
//! Why a pre-scan: the YAML scanner's cost grows with the square of the flow nesting depth
//! (`[[[[…` 100 000 deep took half a minute), and its own recursion limit only applies after
//! everything was scanned. A linear pass that counts flow levels refuses such input in
//! microseconds. Why a second parse into a generic value: typed maps (`parameters:` of a
//! SecretProviderClass) keep the last of two equal keys silently, while the generic mapping
//! refuses duplicates with their line and column; a config with `roleName` twice is a mistake
//! the user must see.
//!
//! Invariants: text longer than [`MAX_YAML_BYTES`] or nested deeper than [`MAX_NESTING`] is never
//! handed to the parser; a mapping with a repeated key anywhere in the document is an error.

use serde::de::{DeserializeOwned, Error as _};

/// Far above any real SecretProviderClass, Config or `objects` annotation (the API server
/// caps all annotations of a pod at 256 KiB together).
pub const MAX_YAML_BYTES: usize = 512 * 1024;
/// The YAML library's own recursion limit; deeper documents could never load anyway.
pub const MAX_NESTING: usize = 128;

/// Parses `text` as `T` after the size, nesting and duplicate-key checks.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_yaml::Error> {
    check_bounds(text).map_err(serde_yaml::Error::custom)?;
    // Duplicate keys anywhere: the generic mapping refuses them, with a location.
    let _: serde_yaml::Value = serde_yaml::from_str(text)?;
    serde_yaml::from_str(text)
}

/// Size and flow-nesting bounds, checked in one linear pass without parsing.
pub fn check_bounds(text: &str) -> Result<(), String> {
    if text.len() > MAX_YAML_BYTES {
        return Err(format!(
            "the YAML is {} bytes long; at most {MAX_YAML_BYTES} bytes are accepted",
            text.len()
        ));
    }
    match flow_depth(text) {
        Some((depth, line)) if depth > MAX_NESTING => Err(format!(
            "nesting deeper than {MAX_NESTING} levels of [ ] or {{ }} (line {line})"
        )),
        _ => Ok(()),
    }
}

/// The deepest flow nesting (`[`/`{`) and the line where it is reached. An upper bound of what
/// the YAML scanner counts: brackets inside quoted scalars, comments and block scalars (`|`,
/// `>`) do not count; a bracket inside a plain scalar outside flow context does not either,
/// because only a bracket that starts a node opens a flow collection.
fn flow_depth(text: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut max = (0usize, 0usize);
    // Inside a block scalar: its content lines are indented deeper than this.
    let mut block_scalar_parent: Option<usize> = None;
    // An open quoted scalar may span lines.
    let mut quote: Option<u8> = None;
    for (n, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|b| **b == b' ').count();
        if let Some(parent) = block_scalar_parent {
            if quote.is_none() && (indent > parent || line.trim().is_empty()) {
                continue;
            }
            block_scalar_parent = None;
        }
        // At a node start (line start, after "- ", ": ", "? ", or any flow indicator).
        let mut node_start = true;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if let Some(q) = quote {
                match (q, b) {
                    (b'"', b'\\') => i += 1,
                    (b'\'', b'\'') if bytes.get(i + 1) == Some(&b'\'') => i += 1,
                    (q, b) if q == b => {
                        quote = None;
                        node_start = false;
                    }
                    _ => {}
                }
                i += 1;
                continue;
            }
            let next_blank = bytes.get(i + 1).is_none_or(|c| *c == b' ' || *c == b'\t');
            match b {
                b' ' | b'\t' => {}
                b'#' if i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t' => break,
                b'[' | b'{' if depth > 0 || node_start => {
                    depth += 1;
                    if depth > max.0 {
                        max = (depth, n + 1);
                    }
                    node_start = true;
                }
                b']' | b'}' if depth > 0 => {
                    depth -= 1;
                    node_start = false;
                }
                b',' if depth > 0 => node_start = true,
                b'"' | b'\'' if node_start => quote = Some(b),
                b'-' | b'?' | b':' if next_blank => node_start = true,
                b'|' | b'>' if node_start && depth == 0 => {
                    block_scalar_parent = Some(indent);
                    break;
                }
                _ => node_start = false,
            }
            i += 1;
        }
    }
    Some(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn deep_flow_nesting_is_refused_before_parsing_and_fast() {
        let deep = format!("a: {}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        let e = from_str::<serde_yaml::Value>(&deep).unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
        assert!(e.to_string().contains("nesting deeper than 128"), "{e}");
        let ok = format!("a: {}1{}", "[".repeat(100), "]".repeat(100));
        assert!(from_str::<serde_yaml::Value>(&ok).is_ok());
    }

    #[test]
    fn brackets_in_strings_comments_and_block_scalars_do_not_count() {
        let many = "[".repeat(300);
        let text = format!(
            "a: \"{many}\"\nb: '{many}'\nc: x{many}\n# {many}\nd: |\n  {many}\n  more\ne: 1\n"
        );
        let v: serde_yaml::Value = from_str(&text).unwrap();
        assert_eq!(v["e"], serde_yaml::Value::from(1));
    }

    #[test]
    fn duplicate_keys_are_errors_with_a_location() {
        let e = from_str::<BTreeMap<String, String>>("roleName: a\nroleName: b\n").unwrap_err();
        assert!(e.to_string().contains("duplicate entry"), "{e}");
        // The parser places it at the mapping that holds the duplicate.
        assert!(e.location().is_some());
    }

    #[test]
    fn oversized_text_is_refused() {
        let big = format!("a: \"{}\"", "x".repeat(MAX_YAML_BYTES));
        assert!(from_str::<serde_yaml::Value>(&big)
            .unwrap_err()
            .to_string()
            .contains("bytes long"));
    }
}
