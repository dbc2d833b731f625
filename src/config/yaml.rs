//! The one way configuration YAML is parsed: bounded in size and nesting *before* the parser
//! sees it, bounded in the values it builds *while* it parses, and strict about duplicate keys.
//! Everything that parses YAML from outside (config files, SecretProviderClasses, `objects`
//! strings, pod annotations in the webhook, the webhook's kubeconfig) comes through
//! [`from_str`].
//!
//! Why a pre-scan ([`scan`]): serde_yaml loads every event of a document before it looks at
//! any of them, and the YAML scanner's cost grows with the square of the flow nesting depth
//! (`[[[[…` 100 000 deep took half a minute; `- - - …` 260 000 deep cost about 90 MiB), while
//! its recursion limit only applies after all that. A linear pass that follows the nesting,
//! block and flow, refuses such input after a few hundred bytes.
//!
//! Why counting ([`count`]): aliases make a document build far more than its text holds (an
//! anchor of 2 000 items named 20 000 times: 64 KB of text, 40 million values, 4 GiB). Every
//! value is counted as it is built, replayed ones included, and the parse stops at the first
//! one past [`MAX_NODES`].
//!
//! Why two passes: typed maps (`parameters:` of a SecretProviderClass) keep the last of two
//! equal keys silently, and a config with `roleName` twice is a mistake the user must see. So
//! a first pass ([`unique`]) walks the document, building nothing but the keys of the mappings
//! it is in, and refuses a repeated key with the line and column of its second appearance; counted, it is also where an
//! alias bomb stops, before anything is built. The second pass builds the target type, counted
//! too, from the text rather than from a generic value, because its errors (unknown field,
//! wrong type) need their line and column, which only the text has.
//!
//! Invariants: text longer than [`MAX_YAML_BYTES`] or nested deeper than [`MAX_NESTING`] is never
//! handed to the parser; no pass builds more than [`MAX_NODES`] values, whatever the aliases; a
//! mapping with a repeated key anywhere in the document is an error. Errors carry a line and
//! column where there is one. What remains proportional to the text alone: serde_yaml holds
//! every event of the document (about 130 bytes each, at most one per two bytes of text) while
//! a pass runs, about 33 MiB for the worst 512 KiB and 16 MiB for 256 KiB of annotations.

mod count;
mod scan;
mod unique;

use serde::de::Deserializer as _;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Error as _};

use count::{Budget, Counted};
use unique::Unique;

/// Far above any real SecretProviderClass, Config or `objects` annotation (the API server
/// caps all annotations of a pod at 256 KiB together).
pub const MAX_YAML_BYTES: usize = 512 * 1024;
/// The YAML library's own recursion limit; deeper documents could never load anyway. Block
/// and flow collections count alike.
pub const MAX_NESTING: usize = 128;
/// Values (scalars, sequences, mappings; keys too) one pass may build, each use of an alias
/// counting its anchor's values again. A real configuration has a few thousand: an `objects`
/// list of 500 entries with five fields each is about 5 500, a Config with every section a few
/// hundred. 100 000 leaves twenty times that, and keeps what one pass builds to about 10 MiB
/// (the webhook runs in 64 MiB, two reviews at a time), where an alias bomb of 64 KB would
/// otherwise build 40 million values (4 GiB).
pub const MAX_NODES: usize = 100_000;

/// Parses `text` as `T` after the size and nesting checks, refusing duplicate keys and
/// counting the values each pass builds.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_yaml::Error> {
    check_bounds(text)?;
    // Duplicate keys anywhere, with a location; counted, so an alias bomb is refused here,
    // before anything is built.
    let budget = Budget::new(MAX_NODES);
    Unique.deserialize(Counted::new(
        serde_yaml::Deserializer::from_str(text),
        &budget,
    ))?;
    let budget = Budget::new(MAX_NODES);
    T::deserialize(Counted::new(
        serde_yaml::Deserializer::from_str(text),
        &budget,
    ))
}

/// Size and nesting bounds, checked in one linear pass without parsing.
fn check_bounds(text: &str) -> Result<(), serde_yaml::Error> {
    if text.len() > MAX_YAML_BYTES {
        return Err(serde_yaml::Error::custom(format!(
            "the YAML is {} bytes long; at most {MAX_YAML_BYTES} bytes are accepted",
            text.len()
        )));
    }
    match scan::too_deep(text, MAX_NESTING) {
        Some((line, column)) => Err(error_at(
            &format!(
                "nesting deeper than {MAX_NESTING} levels (sequences and mappings, block or \
                 flow, each count as one)"
            ),
            line,
            column,
        )),
        None => Ok(()),
    }
}

/// A serde_yaml error with `message` at `line` and `column` (1-based), placed like the
/// parser's own errors, so callers report it at its place in the file (an SPC maps a position
/// in its `objects` string to one in the manifest). serde_yaml has no constructor for a
/// located error, but places a visitor's error at the node being visited: so the parser is
/// handed a lone scalar standing at that line and column, and a visitor that refuses it.
fn error_at(message: &str, line: usize, column: usize) -> serde_yaml::Error {
    struct Refuse<'m>(&'m str);
    impl de::Visitor<'_> for Refuse<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("nothing")
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            Err(E::custom(self.0))
        }
    }
    let stand_in = format!(
        "{}{}x",
        "\n".repeat(line.saturating_sub(1)),
        " ".repeat(column.saturating_sub(1))
    );
    match serde_yaml::Deserializer::from_str(&stand_in).deserialize_str(Refuse(message)) {
        Err(e) => e,
        Ok(()) => serde_yaml::Error::custom(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// CPU time this thread has used. Tests bound the work of a parse by it rather than by the
    /// clock: a debug build on two busy cores can wait for one longer than it works.
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(
            ts.tv_sec.max(0) as u64,
            ts.tv_nsec.clamp(0, 999_999_999) as u32,
        )
    }

    /// Parses `text` as `T`, expecting a refusal within a second of CPU; the error and its
    /// position.
    fn refused<T: DeserializeOwned + std::fmt::Debug>(
        text: &str,
    ) -> (String, Option<(usize, usize)>) {
        let started = thread_cpu();
        let e = from_str::<T>(text).unwrap_err();
        let took = thread_cpu() - started;
        assert!(took < Duration::from_secs(1), "took {took:?} of CPU: {e}");
        let at = e.location().map(|l| (l.line(), l.column()));
        (e.to_string(), at)
    }

    /// The alias bomb of the finding: an anchor of 2 000 items, then 20 000 aliases of it
    /// (64 KB of text, 40 million values).
    fn alias_bomb() -> String {
        format!(
            "- &a [{}]\n- [{}]\n",
            vec!["x"; 2_000].join(","),
            vec!["*a"; 20_000].join(",")
        )
    }

    #[test]
    fn alias_fan_out_is_refused_at_the_node_limit_in_both_passes() {
        let bomb = alias_bomb();
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        let (e, at) = refused::<serde_yaml::Value>(&bomb);
        assert!(
            e.contains("more than 100000 values") && e.contains("alias"),
            "{e}"
        );
        assert!(at.is_some(), "{e}");
        // The typed pass counts too (as if the duplicate-key pass had not run first).
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Bomb {
            a: Vec<String>,
            b: Vec<Vec<String>>,
        }
        let bomb = format!(
            "a: &a [{}]\nb: [{}]\n",
            vec!["x"; 2_000].join(","),
            vec!["*a"; 20_000].join(",")
        );
        let started = thread_cpu();
        let budget = Budget::new(MAX_NODES);
        let typed = Bomb::deserialize(Counted::new(
            serde_yaml::Deserializer::from_str(&bomb),
            &budget,
        ));
        let e = typed.unwrap_err().to_string();
        assert!(e.contains("at most 100000"), "{e}");
        // It stopped at the first value past the limit, not after building the rest.
        assert_eq!(budget.used(), MAX_NODES + 1);
        let took = thread_cpu() - started;
        assert!(took < Duration::from_secs(1), "{took:?}");
    }

    #[test]
    fn nested_aliases_are_counted_through_every_level() {
        // Ten levels of ten: 10^10 values from 400 bytes.
        let mut text = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*l{}", i - 1); 10].join(", ");
            text.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
        }
        let (e, _) = refused::<serde_yaml::Value>(&text);
        assert!(e.contains("at most 100000"), "{e}");
        let (e, _) = refused::<BTreeMap<String, serde_yaml::Value>>(&text);
        assert!(e.contains("at most 100000"), "{e}");
    }

    #[test]
    fn aliases_of_real_configs_still_work() {
        let text = "defaults: &d {secretPath: secret/data/app, filePermission: 0600}\n\
                    a: *d\nb: *d\n";
        let v: serde_yaml::Value = from_str(text).unwrap();
        assert_eq!(
            v["b"]["secretPath"],
            serde_yaml::Value::from("secret/data/app")
        );
        // Just under the limit is fine; each alias use counts its anchor's 5 values again.
        let refs = MAX_NODES / 5 - 10;
        let text = format!("- &a [1, 2, 3, 4]\n- [{}]\n", vec!["*a"; refs].join(","));
        let v: Vec<Vec<serde_yaml::Value>> = from_str(&text).unwrap();
        assert_eq!(v[1].len(), refs);
    }

    #[test]
    fn deep_block_sequences_are_refused_before_parsing() {
        let deep = "- ".repeat(260_000) + "x\n";
        assert!(deep.len() <= MAX_YAML_BYTES);
        let (e, at) = refused::<serde_yaml::Value>(&deep);
        assert!(e.contains("nesting deeper than 128"), "{e}");
        // The 129th `-`.
        assert_eq!(at, Some((1, 2 * 128 + 1)), "{e}");
        // One line per level is refused the same way.
        let lines: String = (0..1_000)
            .map(|i| format!("{}-\n", " ".repeat(i)))
            .collect();
        let (e, at) = refused::<serde_yaml::Value>(&lines);
        assert!(e.contains("nesting deeper than 128"), "{e}");
        assert_eq!(at, Some((129, 129)));
    }

    #[test]
    fn deep_block_mappings_are_refused_before_parsing() {
        let keys: String = (0..1_000)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        assert!(keys.len() <= MAX_YAML_BYTES);
        let (e, at) = refused::<serde_yaml::Value>(&keys);
        assert!(e.contains("nesting deeper than 128"), "{e}");
        assert_eq!(at, Some((129, 129)));
        // Compact: each entry a mapping whose value is a sequence.
        let compact: String = (0..200)
            .map(|i| format!("{}- k:\n", " ".repeat(4 * i)))
            .collect();
        let (e, _) = refused::<serde_yaml::Value>(&compact);
        assert!(e.contains("nesting deeper than 128"), "{e}");
    }

    #[test]
    fn mixed_nesting_counts_every_kind_and_the_limit_itself_parses() {
        // 40 mappings, then 40 sequences on one line, then flow: 128 levels exactly, then 129.
        let build = |flow: usize| {
            let keys: String = (0..40).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
            format!(
                "{keys}{}{}{}1{}\n",
                " ".repeat(40),
                "- ".repeat(40),
                "[{a: ".repeat(flow / 2),
                "}]".repeat(flow / 2)
            )
        };
        let at_limit = build(48);
        let v: serde_yaml::Value = from_str(&at_limit).unwrap();
        assert!(v.is_mapping());
        let (e, at) = refused::<serde_yaml::Value>(&build(50));
        assert!(e.contains("nesting deeper than 128"), "{e}");
        assert_eq!(at.map(|a| a.0), Some(41), "{e}");
        // Far past the limit, it is refused as fast as any other.
        let (e, _) = refused::<serde_yaml::Value>(&build(100_000));
        assert!(e.contains("nesting deeper than 128"), "{e}");
    }

    #[test]
    fn pre_scan_errors_are_placed_like_the_parsers_own() {
        for (line, column) in [(1, 1), (7, 3), (200_000, 300_000)] {
            let started = thread_cpu();
            let e = error_at("too deep", line, column);
            let took = thread_cpu() - started;
            assert!(took < Duration::from_secs(1), "{took:?}");
            let at = e.location().map(|l| (l.line(), l.column()));
            assert_eq!(at, Some((line, column)));
            assert!(e.to_string().starts_with("too deep"), "{e}");
        }
    }

    #[test]
    fn ordinary_errors_keep_their_line_and_column() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Entry {
            name: String,
        }
        let (e, at) = refused::<Vec<Entry>>("- name: a\n- name: b\n  nmae: c\n");
        assert!(e.contains("unknown field `nmae`"), "{e}");
        assert_eq!(at, Some((3, 3)), "{e}");
        let (e, at) = refused::<serde_yaml::Value>("a: 1\nb:\n  c: 2\n  c: 3\n");
        assert!(e.contains("duplicate entry"), "{e}");
        // At the repeated key, not at the mapping that holds it.
        assert_eq!(at, Some((4, 3)), "{e}");
    }

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
        // Placed at the repeated key.
        let at = e.location().unwrap();
        assert_eq!((at.line(), at.column()), (2, 1), "{e}");
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
