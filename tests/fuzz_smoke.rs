//! A few seconds of each fuzz target in the normal test suite, without cargo-fuzz or nightly:
//! the checked-in seeds (`fuzz/seeds/<target>/`) and then a few thousand deterministic mutations
//! of them. The bodies are the ones `scripts/fuzz.sh` runs under libFuzzer
//! (`secretdrop::fuzz_entry`), so a property that fails here fails there too.
//!
//! A panic fails the test and names the input, escaped and in hex, ready to become a seed or a
//! regression test; an input that runs longer than [`HANG`] fails it as a hang. The bugs found so
//! far are fixed and their reproducers are the `regression_` tests at the end; should a bug be
//! found that cannot be fixed at once, [`KNOWN_BUGS`] keeps mutations that stumble on it from
//! failing the suite meanwhile.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use secretdrop::fuzz_entry;

/// Mutations tried per target after the seeds: under a second each in debug on an idle machine.
const MUTATIONS: usize = 5000;
/// A safety net on wall time per target for the mutations (the suite runs in debug on busy
/// machines); the count, not the clock, is meant to end the run, so every run tries the same
/// inputs.
const BUDGET: Duration = Duration::from_secs(6);
/// One input taking this long is a hang: generous, for a debug build on a busy machine (the
/// slowest input of a run is printed and takes milliseconds).
const HANG: Duration = Duration::from_secs(10);
/// Inputs stay below this, so the smoke measures the code, not YAML's cost of deep nesting.
const MAX_LEN: usize = 64 * 1024;

/// Strings worth inserting: the secret marker, numbers at the edges of what Vault or YAML may
/// send, and the punctuation that opens nesting.
const TOKENS: &[&[u8]] = &[
    b"S3CR3T-MARKER",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-1",
    b"1e309",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"\"\"",
    b"\\u0000",
    b"\\ud800",
    b"..",
    b"/",
    b"~1",
    b"0777",
    b"\n- ",
    b": ",
    b"{{ ",
    b" }}",
    b"{% for x in data %}",
    b"{% endfor %}",
    b"secretdrop.dev/",
    b"\"secretdrop.dev/inject\":\"true\"",
];

/// Bugs the fuzzers found that are not fixed yet, by a fragment of their panic message, each
/// with an `#[ignore]`d test at the end of this file that reproduces it (none today). A mutation that hits
/// one is counted and printed instead of failing the suite; a seed that hits one still fails.
/// Drop the entry with the fix.
const KNOWN_BUGS: &[(&str, &str)] = &[];

/// xorshift64*: small, deterministic, and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chunk<'a>(&mut self, s: &'a [u8]) -> &'a [u8] {
        if s.is_empty() {
            return s;
        }
        let start = self.below(s.len());
        let len = 1 + self.below((s.len() - start).min(64));
        &s[start..start + len]
    }
}

/// One to four stacked mutations of a random seed.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = if data.is_empty() {
            0
        } else {
            rng.below(data.len() + 1)
        };
        match rng.below(7) {
            // Bit flip.
            0 if at < data.len() => data[at] ^= 1 << rng.below(8),
            // A byte that matters to JSON or YAML.
            1 if at < data.len() => {
                const SYNTAX: &[u8] = b"\"{}[]:,-\n #&*!\\0x\t'|>";
                data[at] = SYNTAX[rng.below(SYNTAX.len())];
            }
            // Insert random bytes.
            2 => {
                let n = 1 + rng.below(4);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            // Delete a range.
            3 if at < data.len() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            // Splice in a chunk of another seed.
            4 => {
                let donor = &seeds[rng.below(seeds.len())];
                let other = rng.chunk(donor).to_vec();
                let end = (at + rng.below(8)).min(data.len());
                data.splice(at..end, other);
            }
            // Repeat a chunk: deeper nesting, longer lists, bigger documents.
            5 if !data.is_empty() => {
                let piece = rng.chunk(&data).to_vec();
                let times = 2 + rng.below(63);
                let repeated = piece.repeat(times);
                data.splice(at..at, repeated);
            }
            // A token.
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())];
                data.splice(at..at, token.iter().copied());
            }
        }
        data.truncate(MAX_LEN);
    }
    data
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// The input as a Rust byte-string literal (printable) and as hex (exact).
fn show(input: &[u8]) -> String {
    let escaped: String = input.escape_ascii().to_string();
    let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
    format!("b\"{escaped}\"\n  hex: {hex}")
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic)".into())
}

/// Runs `f` over the seeds and then the mutations on a worker thread, watching for hangs.
fn smoke(target: &'static str, f: fn(&[u8])) {
    let seeds = seeds(target);
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let worker_seeds = seeds.clone();
    let worker = std::thread::spawn(move || {
        let mut failures = Vec::new();
        let mut known: Vec<(&str, usize, Vec<u8>)> = Vec::new();
        let mut run = |input: Vec<u8>, is_seed: bool| {
            // The input goes to the watcher first, so a hang can be reported with it.
            let _ = tx.send(input.clone());
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(&input))) {
                let message = panic_message(&*payload);
                match KNOWN_BUGS.iter().find(|(m, _)| message.contains(m)) {
                    Some((_, test)) if !is_seed => match known.iter_mut().find(|k| k.0 == *test) {
                        Some(k) => k.1 += 1,
                        None => known.push((test, 1, input.clone())),
                    },
                    _ => failures.push(format!("{message}\n  input: {}", show(&input))),
                }
            }
            let _ = done_tx.send(());
        };
        for seed in &worker_seeds {
            run(seed.clone(), true);
        }
        let mut rng = Rng(0x5eed_0ff0_2200_0000 ^ target.len() as u64);
        let started = Instant::now();
        let mut count = 0;
        while count < MUTATIONS && started.elapsed() < BUDGET {
            run(mutate(&mut rng, &worker_seeds), false);
            count += 1;
        }
        (failures, known, count)
    });
    let mut slowest = (Duration::ZERO, Vec::new());
    while let Ok(input) = rx.recv() {
        let started = Instant::now();
        match done_rx.recv_timeout(HANG) {
            Ok(()) => {
                if started.elapsed() > slowest.0 {
                    slowest = (started.elapsed(), input);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "{target}: an input ran longer than {HANG:?}\n  input: {}",
                    show(&input)
                )
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let (failures, known, count) = worker.join().expect("the worker catches panics");
    eprintln!(
        "{target}: {} seeds and {count} mutations{}; slowest input {:?} ({} bytes)",
        seeds.len(),
        if count < MUTATIONS {
            " (out of time: the machine is busy)"
        } else {
            ""
        },
        slowest.0,
        slowest.1.len()
    );
    for (test, n, first) in known {
        eprintln!(
            "{target}: {n} mutations hit the known bug of {test}, e.g.\n  input: {}",
            show(&first)
        );
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of the inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn config_sources_survive_the_seeds_and_their_mutations() {
    smoke("config", fuzz_entry::config);
}

#[test]
fn admission_reviews_survive_the_seeds_and_their_mutations() {
    smoke("admission", fuzz_entry::admission);
}

#[test]
fn vault_responses_survive_the_seeds_and_their_mutations() {
    smoke("vault_response", fuzz_entry::vault_response);
}

#[test]
fn the_mutator_is_deterministic_and_bounded() {
    let seeds = vec![b"{\"a\": [1, 2]}".to_vec(), b"key: value\n".to_vec()];
    let run = || {
        let mut rng = Rng(7);
        (0..500)
            .map(|_| mutate(&mut rng, &seeds))
            .collect::<Vec<_>>()
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    assert!(a.iter().all(|m| m.len() <= MAX_LEN));
    assert!(a.iter().any(|m| m.len() > 100), "repeats grow inputs");
}

// Reproducers of the bugs the fuzzers found, kept as regression tests now that they are fixed.

/// A pod create whose `spec` is a number: `webhook::mutate` indexed into it as into an object
/// (serde_json's `IndexMut` panics) and the release build aborted. The API server only sends
/// typed pods, but anything that reaches the webhook's port can send this; now it is rejected.
#[test]
fn regression_pod_spec_that_is_not_an_object() {
    fuzz_entry::admission(
        br#"{"request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":{"secretdrop.dev/inject":"true","secretdrop.dev/role":"r","secretdrop.dev/objects":"- {objectName: a, secretPath: s}"}},"spec":5}}}"#,
    );
}

/// The same with a container (or init container) that is not an object: `add_mount` panicked.
#[test]
fn regression_container_that_is_not_an_object() {
    fuzz_entry::admission(
        br#"{"request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":{"secretdrop.dev/inject":"true","secretdrop.dev/role":"r","secretdrop.dev/objects":"- {objectName: a, secretPath: s}"}},"spec":{"containers":[5]}}}}"#,
    );
    fuzz_entry::admission(
        br#"{"request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":{"secretdrop.dev/inject":"true","secretdrop.dev/role":"r","secretdrop.dev/objects":"- {objectName: a, secretPath: s}"}},"spec":{"initContainers":[[]]}}}}"#,
    );
}

/// A poll interval humantime accepts but `schedule::poll_after` could not stretch by 10%:
/// `Duration::mul_f64` panicked ("cannot convert float seconds to Duration") at the sidecar's
/// first poll. Poll intervals are now at most 30 days (also for `--poll-interval`).
#[test]
fn regression_huge_poll_interval() {
    fuzz_entry::config(
        b"apiVersion: secretdrop.dev/v1alpha1\nkind: Config\nvault: {address: http://v}\nauth: {method: token, tokenFile: /t}\nsidecar: {pollInterval: 584000000000y}\nobjects: [{objectName: a, secretPath: s}]\n",
    );
}

/// A pod create with `containers` containers and a `secretdrop.dev/containers` annotation that
/// names the last one `listed` times.
fn pod_with_many_containers(containers: usize, listed: usize) -> Vec<u8> {
    let names: Vec<String> = (0..containers).map(|i| format!("c{i}")).collect();
    let list = vec![names[containers - 1].as_str(); listed].join(",");
    let pod = serde_json::json!({
        "metadata": {"annotations": {
            "secretdrop.dev/inject": "true", "secretdrop.dev/role": "r",
            "secretdrop.dev/objects": "- {objectName: a, secretPath: s}",
            "secretdrop.dev/containers": list,
        }},
        "spec": {"containers": names.iter().map(|n| serde_json::json!({"name": n})).collect::<Vec<_>>()},
    });
    serde_json::to_vec(&serde_json::json!({"request": {
        "uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": pod,
    }}))
    .unwrap()
}

/// `webhook::mutate` checked each name of `secretdrop.dev/containers` with a linear search of
/// the pod's containers, and each container with a linear search of the list: 10,000 containers
/// and 20,000 names (a 290 KB review) took about 3 s in the release build, and the webhook
/// answered nobody meanwhile. Matching is linear now.
#[test]
fn regression_containers_annotation_is_quadratic() {
    let review = pod_with_many_containers(10_000, 20_000);
    let review: serde_json::Value = serde_json::from_slice(&review).unwrap();
    let defaults = fuzz_entry::admission_defaults();
    let started = Instant::now();
    let (_, outcome) = secretdrop::webhook::review::answer(&review, &defaults).unwrap();
    let took = started.elapsed();
    assert!(
        matches!(outcome, secretdrop::webhook::review::Outcome::Injected(_)),
        "{outcome:?}"
    );
    // Linear work on this 290 KB review takes well under a second, even in debug.
    assert!(took < Duration::from_secs(1), "took {took:?}");
}
