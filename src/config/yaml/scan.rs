//! A linear pass over YAML text that finds where its nesting first goes deeper than a limit,
//! without parsing it: flow collections (`[ ]`, `{ }`), block sequences (`- - -`, or `-`
//! indented deeper line after line) and block mappings (keys indented deeper and deeper), in
//! any mix.
//!
//! Why: serde_yaml loads every event of a document before anything looks at its depth, so a
//! 512 KiB `- - - - …` (260 000 levels) cost about 90 MiB and a flow `[[[[…` cost time
//! quadratic in its depth before the recursion limit was ever checked. This pass stops at the
//! first level past the limit, having read no further.
//!
//! How: it follows the YAML scanner's rules for what opens a level. A flow collection opens at
//! `[`/`{` where a node starts (or anywhere inside another one). A block collection is opened
//! by `- ` or `? ` where a node starts, or by a key (the node before a `: `), at a column
//! deeper than the innermost open block collection (a `- ` at the very column of a mapping
//! opens an indentless sequence inside it), and a line closes every block collection deeper
//! than its indentation, as the scanner's indentation stack does. Quoted scalars (across
//! lines), comments and block scalars (`|`, `>`, whose content lines are indented deeper than
//! their collection) open nothing. Lines end at `\n`, `\r\n`, `\r`, NEL, LS or PS, as in YAML;
//! columns count characters.
//!
//! Invariants: memory is bounded by the limit (the stack of open block collections never holds
//! more than `limit + 1` entries) and time is linear in the text. The count errs towards too deep:
//! a few valid texts nobody writes count deeper than the parser would (a plain scalar whose
//! continuation line starts with `- `, brackets after `#` that follows a flow indicator
//! without a space, tabs after `-`); text the scanner would refuse anyway may be counted
//! either way, since the parser stops at the first error. serde_yaml's own recursion limit
//! (128, the same as [`super::MAX_NESTING`]) still applies after this pass, exactly, and also
//! through aliases.

/// What opened a block level.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sequence,
    Mapping,
    /// A sequence whose `-` stands at its mapping's own column (`key:\n- a`): it ends at the
    /// first line at that column that is not another `-` entry.
    IndentlessSequence,
}

#[derive(Clone, Copy)]
struct Block {
    column: usize,
    kind: Kind,
}

/// Where (1-based line and column) the nesting first goes deeper than `limit`, if it does.
pub fn too_deep(text: &str, limit: usize) -> Option<(usize, usize)> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut flow = 0usize;
    // Inside a block scalar: its content lines are indented deeper than this column.
    let mut block_scalar_parent: Option<usize> = None;
    // An open quoted scalar may span lines.
    let mut quote: Option<u8> = None;
    for (n, line) in lines(text).enumerate() {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|b| **b == b' ').count();
        let blank = bytes.iter().all(|b| *b == b' ' || *b == b'\t');
        if let Some(parent) = block_scalar_parent {
            if indent > parent || blank {
                continue;
            }
            block_scalar_parent = None;
        }
        if blank {
            continue;
        }
        let mut i = 0;
        if quote.is_none() && flow == 0 {
            // A line of block context: close the levels its indentation ends.
            let rest = &bytes[indent..];
            if rest[0] == b'#' {
                continue;
            }
            if indent == 0
                && (rest.starts_with(b"---") || rest.starts_with(b"..."))
                && blank_at(rest, 3)
            {
                // A document marker ends every block collection.
                blocks.clear();
                if rest[0] == b'.' {
                    continue;
                }
                i = 3;
            }
            let entry = rest[0] == b'-' && blank_at(rest, 1);
            while let Some(top) = blocks.last() {
                let ends = top.column > indent
                    || (top.column == indent && top.kind == Kind::IndentlessSequence && !entry);
                if !ends {
                    break;
                }
                blocks.pop();
            }
        }
        // At a node start (line start, after "- ", "? ", ": ", or any flow indicator).
        let mut node_start = true;
        // The column where the current node started: a `: ` after it makes it a key.
        let mut key_column: Option<usize> = None;
        let mut column = char_column(bytes, i);
        while i < bytes.len() {
            let b = bytes[i];
            let here = column;
            // Columns count characters: UTF-8 continuation bytes add none.
            let advance = |i: &mut usize, column: &mut usize| {
                *i += 1;
                if bytes.get(*i).is_none_or(|c| c & 0xC0 != 0x80) {
                    *column += 1;
                }
            };
            if let Some(q) = quote {
                match (q, b) {
                    (b'"', b'\\') => advance(&mut i, &mut column),
                    (b'\'', b'\'') if bytes.get(i + 1) == Some(&b'\'') => {
                        advance(&mut i, &mut column)
                    }
                    (q, b) if q == b => {
                        quote = None;
                        node_start = false;
                    }
                    _ => {}
                }
                advance(&mut i, &mut column);
                continue;
            }
            let next_blank = blank_at(bytes, i + 1);
            match b {
                b' ' | b'\t' => {}
                b'#' if i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t' => break,
                b'[' | b'{' if flow > 0 || node_start => {
                    if flow == 0 && key_column.is_none() {
                        key_column = Some(here);
                    }
                    flow += 1;
                    if blocks.len() + flow > limit {
                        return Some((n + 1, here + 1));
                    }
                    node_start = true;
                }
                b']' | b'}' if flow > 0 => {
                    flow -= 1;
                    node_start = false;
                }
                b',' if flow > 0 => node_start = true,
                b'"' | b'\'' if node_start => {
                    if flow == 0 && key_column.is_none() {
                        key_column = Some(here);
                    }
                    quote = Some(b);
                }
                // An anchor or a tag: the node it belongs to starts after it.
                b'&' | b'!' if node_start => {
                    if flow == 0 && key_column.is_none() {
                        key_column = Some(here);
                    }
                    while i + 1 < bytes.len()
                        && !blank_at(bytes, i + 1)
                        && !(flow > 0 && b",[]{}".contains(&bytes[i + 1]))
                    {
                        advance(&mut i, &mut column);
                    }
                }
                b'-' | b'?' if node_start && next_blank => {
                    if flow == 0 {
                        let kind = match b {
                            b'-' => Kind::Sequence,
                            _ => Kind::Mapping,
                        };
                        if open(&mut blocks, kind, here) + flow > limit {
                            return Some((n + 1, here + 1));
                        }
                    }
                    key_column = None;
                }
                // A value indicator: in flow context even without a space after it (`{"a":[`),
                // which the scanner takes as one wherever a token starts.
                b':' if next_blank || flow > 0 => {
                    let key = key_column.unwrap_or(here);
                    if flow == 0 && open(&mut blocks, Kind::Mapping, key) > limit {
                        return Some((n + 1, key + 1));
                    }
                    key_column = None;
                    node_start = true;
                }
                b'|' | b'>' if node_start && flow == 0 => {
                    block_scalar_parent = Some(blocks.last().map_or(0, |top| top.column));
                    break;
                }
                _ => {
                    if node_start && flow == 0 && key_column.is_none() {
                        key_column = Some(here);
                    }
                    node_start = false;
                }
            }
            advance(&mut i, &mut column);
        }
    }
    None
}

/// Opens a block collection of `kind` whose first node stands at `column`, unless it continues
/// the innermost open one; returns how many are open. Columns only grow inward, except that a
/// sequence may start at its mapping's own column (`key:` then `- a` below it).
fn open(blocks: &mut Vec<Block>, kind: Kind, column: usize) -> usize {
    let kind = match blocks.last() {
        None => Some(kind),
        Some(top) if top.column < column => Some(kind),
        Some(top)
            if top.column == column && top.kind == Kind::Mapping && kind == Kind::Sequence =>
        {
            Some(Kind::IndentlessSequence)
        }
        Some(_) => None,
    };
    if let Some(kind) = kind {
        blocks.push(Block { column, kind });
    }
    blocks.len()
}

/// Whether the byte at `i` is a space, a tab or the end of the line.
fn blank_at(bytes: &[u8], i: usize) -> bool {
    bytes.get(i).is_none_or(|c| *c == b' ' || *c == b'\t')
}

/// The character column of byte `i` of a line.
fn char_column(bytes: &[u8], i: usize) -> usize {
    bytes[..i].iter().filter(|c| **c & 0xC0 != 0x80).count()
}

/// The lines of `text` as YAML breaks them: at `\r\n`, `\n`, `\r`, and the Unicode breaks
/// NEL (U+0085), LS (U+2028) and PS (U+2029).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        let Some((at, c)) = s
            .char_indices()
            .find(|(_, c)| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        else {
            rest = None;
            return (!s.is_empty()).then_some(s);
        };
        let mut next = at + c.len_utf8();
        if c == '\r' && s[next..].starts_with('\n') {
            next += 1;
        }
        rest = Some(&s[next..]);
        Some(&s[..at])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(text: &str) -> usize {
        (0..200).find(|l| too_deep(text, *l).is_none()).unwrap()
    }

    #[test]
    fn block_levels_follow_indentation() {
        assert_eq!(depth("a: 1\n"), 1);
        assert_eq!(depth("a:\n  b:\n    c: 1\n"), 3);
        assert_eq!(depth("a:\n  b:\n    c: 1\nd: 2\n"), 3);
        assert_eq!(depth("- - - x\n"), 3);
        assert_eq!(depth("- a: 1\n  b: 2\n- c\n"), 2);
        assert_eq!(depth("- a: 1\n  b:\n  - x\n"), 3);
        assert_eq!(depth("a:\n- b\n- c\nd: 1\n"), 2);
        assert_eq!(depth("a:\n- b:\n  - c\n"), 4);
        assert_eq!(depth("? - - x\n: - y\n"), 3);
        assert_eq!(depth("- &a !t k: v\n"), 2);
        assert_eq!(depth("- \"k\": v\n- 'k': [v]\n"), 3);
        assert_eq!(depth("- [a, {b: [c]}]\n"), 4);
        assert_eq!(depth("--- \na: 1\n---\n- - x\n...\n"), 2);
        assert_eq!(depth("a:\r  b:\r    c: 1\r"), 3);
        assert_eq!(depth("a:\u{2028}  b:\u{85}    c: 1"), 3);
    }

    #[test]
    fn quoted_commented_and_block_scalar_text_opens_nothing() {
        assert_eq!(depth("a: \"- - [ {\"\nb: '- ['\nc: x - - y\n"), 1);
        assert_eq!(depth("a: # - - [\n  1\n"), 1);
        assert_eq!(depth("a: |\n  - - - x\n  k: [[\nb: >\n   - - y\n"), 1);
        assert_eq!(depth("a: \"first\n  - - - [[ line\"\n"), 1);
        // Content indented no deeper than its collection ends the block scalar.
        assert_eq!(depth("- - |\n  - - x\n"), 3);
    }

    #[test]
    fn stops_at_the_first_level_past_the_limit() {
        let deep = "- ".repeat(1000) + "x";
        assert_eq!(too_deep(&deep, 128), Some((1, 2 * 128 + 1)));
        let keys: String = (0..200).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert_eq!(too_deep(&keys, 128), Some((129, 129)));
        let mixed = format!("a:\n  - {}\n", "[".repeat(200));
        assert_eq!(too_deep(&mixed, 128), Some((2, 5 + 126)));
        // Columns count characters, not bytes.
        assert_eq!(too_deep("é: [[", 2), Some((1, 5)));
    }

    /// Nesting as the parser sees it: collections, keys included.
    fn parsed_depth(v: &serde_yaml::Value) -> usize {
        match v {
            serde_yaml::Value::Sequence(s) => 1 + s.iter().map(parsed_depth).max().unwrap_or(0),
            serde_yaml::Value::Mapping(m) => {
                1 + m
                    .iter()
                    .map(|(k, v)| parsed_depth(k).max(parsed_depth(v)))
                    .max()
                    .unwrap_or(0)
            }
            serde_yaml::Value::Tagged(t) => parsed_depth(&t.value),
            _ => 0,
        }
    }

    /// A document of random shape from `seed`: nested sequences and mappings, scalars that
    /// look like indicators, multi-line strings (serialised as block scalars).
    fn generated(seed: &mut u64, depth: usize) -> serde_yaml::Value {
        let mut next = |n: u64| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*seed >> 33) % n
        };
        let scalars = [
            "x",
            "- a",
            "[b",
            "k: v",
            "# c",
            "l1\nl2\n  - l3\n",
            "é",
            "|",
            "''",
        ];
        match (depth, next(4)) {
            (0, _) | (_, 0) => scalars[next(scalars.len() as u64) as usize].into(),
            (_, 1) => (0..next(3) + 1)
                .map(|_| generated(seed, depth - 1))
                .collect(),
            _ => {
                let mut m = serde_yaml::Mapping::new();
                for i in 0..next(3) + 1 {
                    m.insert(format!("k{i}").into(), generated(seed, depth - 1));
                }
                serde_yaml::Value::Mapping(m)
            }
        }
    }

    #[test]
    fn depth_agrees_with_the_parser_on_generated_documents() {
        let mut seed = 7;
        for _ in 0..500 {
            let v = generated(&mut seed, 8);
            let want = parsed_depth(&v);
            let block = serde_yaml::to_string(&v).unwrap();
            assert_eq!(depth(&block), want, "{block}");
            let flow = serde_json::to_string(&serde_json::to_value(&v).unwrap()).unwrap();
            assert_eq!(depth(&flow), want, "{flow}");
        }
    }
}
