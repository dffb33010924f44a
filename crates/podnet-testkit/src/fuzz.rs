//! Fuzzing on stable Rust, with proptest: each parser gets arbitrary bytes
//! and mutations of a valid sample (bytes overwritten, inserted, the input
//! cut short), which reach far deeper than random bytes alone. A parser
//! must answer a value or an error for every input: never panic, hang or
//! allocate without bound (every input is small).
//!
//! CI runs `PODNET_FUZZ_CASES` cases per target (default 2000, a few
//! seconds); a longer run:
//! `PODNET_FUZZ_CASES=1000000 cargo nextest run --test fuzz`.

use proptest::prelude::*;
use proptest::test_runner::Config;

pub fn config() -> Config {
    let cases = std::env::var("PODNET_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000);
    Config {
        cases,
        // A failure is shrunk, but not for long: the input is printed.
        max_shrink_iters: 1000,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Arbitrary bytes, or `sample` mutated.
pub fn input(sample: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..12);
    let mutated = (edits, any::<prop::sample::Index>()).prop_map(move |(edits, cut)| {
        let mut v = sample.to_vec();
        for (at, byte, how) in edits {
            let i = at.index(v.len() + 1);
            match how {
                0 if i < v.len() => v[i] = byte,
                1 => v.insert(i, byte),
                _ if i < v.len() => {
                    v.remove(i);
                }
                _ => {}
            }
        }
        // Sometimes cut short, as a truncated write would leave it.
        if cut.index(4) == 0 {
            let keep = cut.index(v.len() + 1);
            v.truncate(keep);
        }
        v
    });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..512), mutated]
}
