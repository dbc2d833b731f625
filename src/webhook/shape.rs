//! What a JSON document will cost once parsed into a [`serde_json::Value`], estimated by a
//! linear scan of its bytes that allocates nothing, so the webhook can decide how to handle a
//! review before building it. Parsed JSON can be a hundred times larger than its text: every
//! non-empty object is a B-tree node of about 640 bytes, so `[{"a":0},{"a":0},...]` costs
//! ~90 bytes of heap per byte of input.
//!
//! Invariant: [`Shape::heap`] is an upper estimate of the heap a `Value` of the scanned text
//! occupies (checked against real allocations in the tests below), whatever the text, valid
//! JSON or not; the scan state is a few words, and chunks may split the text anywhere.

/// Heap of one non-empty JSON object with at most a node's worth of members: a B-tree leaf
/// node of 11 (String, Value) slots. Larger objects are covered by [`PER_VALUE`] of their
/// keys. An empty object allocates nothing.
const PER_OBJECT: usize = 640;
/// Heap of one non-empty array: its first allocation holds four `Value`s.
const PER_ARRAY: usize = 144;
/// Heap per value (keys included): its slot in the parent (a 32-byte `Value` in an array
/// whose capacity may have doubled, or a share of a B-tree node) plus a string's allocation.
const PER_VALUE: usize = 112;

/// Counts of one JSON text, fed in chunks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// Non-empty objects.
    pub objects: usize,
    /// Non-empty arrays.
    pub arrays: usize,
    /// Every value and every key: strings, numbers, literals, objects, arrays.
    pub values: usize,
    /// Bytes scanned; bounds the bytes of all strings and numbers together.
    pub bytes: usize,
    in_string: bool,
    escaped: bool,
    /// The last significant byte outside strings opened a place for a value.
    expect_value: bool,
    /// `{` or `[` just seen: whether it is empty shows at the next significant byte.
    opened: Option<u8>,
}

impl Shape {
    /// The shape of a complete text.
    pub fn of(text: &[u8]) -> Shape {
        let mut s = Shape::new();
        s.feed(text);
        s
    }

    pub fn new() -> Shape {
        Shape {
            expect_value: true,
            ..Shape::default()
        }
    }

    /// Scans the next piece of the text.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len();
        for &b in chunk {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                continue;
            }
            match (self.opened.take(), b) {
                (Some(b'{'), b'}') | (Some(b'['), b']') | (None, _) => {}
                (Some(b'{'), _) => self.objects += 1,
                (Some(_), _) => self.arrays += 1,
            }
            match b {
                b'"' => {
                    self.values += 1;
                    self.in_string = true;
                    self.expect_value = false;
                }
                b'{' | b'[' => {
                    self.values += 1;
                    self.opened = Some(b);
                    self.expect_value = true;
                }
                b',' | b':' => self.expect_value = true,
                _ => {
                    // The first byte of a number or literal; `]`, `}` and the rest of a
                    // number or literal follow something else.
                    self.values += usize::from(self.expect_value && b != b']' && b != b'}');
                    self.expect_value = false;
                }
            }
        }
    }

    /// Estimated heap bytes of the parsed `Value`.
    pub fn heap(&self) -> usize {
        self.objects
            .saturating_mul(PER_OBJECT)
            .saturating_add(self.arrays.saturating_mul(PER_ARRAY))
            .saturating_add(self.values.saturating_mul(PER_VALUE))
            .saturating_add(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Counts the live heap bytes allocated by each thread, as malloc would see them
    /// (16-byte granules, 32 at least); per thread, so parallel tests do not disturb it.
    struct Counting;
    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
    }
    fn count(size: usize, sign: isize) {
        let g = ((size + 8).div_ceil(16).max(2) * 16) as isize;
        let _ = LIVE.try_with(|l| l.set(l.get() + sign * g));
    }
    // SAFETY: forwards to the system allocator unchanged; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            count(l.size(), 1);
            System.alloc(l)
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            count(l.size(), -1);
            System.dealloc(p, l)
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
            count(new, 1);
            count(l.size(), -1);
            System.realloc(p, l, new)
        }
    }
    #[global_allocator]
    static ALLOC: Counting = Counting;

    /// Heap held by the parsed text.
    fn measured(text: &str) -> usize {
        let before = LIVE.with(Cell::get);
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let after = LIVE.with(Cell::get);
        drop(v);
        (after - before).max(0) as usize
    }

    fn repeat(item: &str, n: usize) -> String {
        format!("[{}]", vec![item; n].join(","))
    }

    #[test]
    fn counts_values_keys_and_objects_across_chunks() {
        let text = br#"{"a": [1, -2.5e3, true, null, "x\"y,{["], "b": {}, "c": [[]]}"#;
        let whole = Shape::of(text);
        assert_eq!((whole.objects, whole.arrays, whole.values), (1, 2, 13));
        for split in 0..text.len() {
            let mut s = Shape::new();
            s.feed(&text[..split]);
            s.feed(&text[split..]);
            assert_eq!(s, whole, "split at {split}");
        }
    }

    #[test]
    fn the_estimate_bounds_the_real_heap_of_every_shape() {
        let pod = |n: usize| {
            let c = r#"{"name":"app","image":"nginx:1.27","env":[{"name":"A","value":"b"},{"name":"LONGER_NAME","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}}],"ports":[{"containerPort":8080,"protocol":"TCP"}],"resources":{"limits":{"memory":"64Mi"}}}"#;
            format!(
                r#"{{"metadata":{{"name":"p","annotations":{{"a":"b"}}}},"spec":{{"containers":{}}}}}"#,
                repeat(c, n)
            )
        };
        let wide: String = format!(
            "{{{}}}",
            (0..5000)
                .map(|i| format!("\"k{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let cases = [
            ("one-member objects", repeat(r#"{"a":0}"#, 20_000)),
            (
                "two-member objects",
                repeat(r#"{"name":"A","value":"b"}"#, 20_000),
            ),
            ("empty objects", repeat("{}", 50_000)),
            ("zeros", repeat("0", 100_000)),
            ("short strings", repeat(r#""ab""#, 50_000)),
            ("nested arrays", repeat("[[0]]", 20_000)),
            ("wide object", wide),
            ("long string", format!("\"{}\"", "x".repeat(1 << 20))),
            ("realistic pods", pod(300)),
        ];
        for (name, text) in cases {
            let real = measured(&text);
            let estimate = Shape::of(text.as_bytes()).heap();
            assert!(
                estimate >= real,
                "{name}: estimated {estimate}, really {real}"
            );
            assert!(
                estimate <= real * 4 + 4096,
                "{name}: estimated {estimate}, really only {real}"
            );
        }
    }
}
