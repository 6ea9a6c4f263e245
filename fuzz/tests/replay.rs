//! Stable replay of every fuzz target: each file of `corpus/<target>/` and of the fixtures it
//! reads in real use, then deterministic pseudo-random mutations of the corpus files.
//!
//! Exists so that a machine without nightly or cargo-fuzz still runs the harness logic and its
//! oracles, with overflow checks on (debug build) and the allocation cap of
//! `livefill_fuzz::alloc_cap`: `cargo test --manifest-path fuzz/Cargo.toml --no-default-features`
//! (what `tests/fuzz/run_fuzz.sh` runs first). `LIVEFILL_FUZZ_MUTATIONS` sets the mutations per
//! target (default 3000). A failing input is written under the test's temporary folder and
//! named in the failure, ready for `cargo fuzz run <target> <file>`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DEFAULT_MUTATIONS: usize = 3000;
/// Longer than this for one input (debug build) counts as a hang.
const HANG: Duration = Duration::from_secs(10);

#[test]
fn client_frames() {
    replay(
        "client_frames",
        &["protocol/tests/golden/rust", "protocol/tests/golden/python"],
    );
}

#[test]
fn daemon_frames() {
    replay(
        "daemon_frames",
        &["protocol/tests/golden/rust", "protocol/tests/golden/python"],
    );
}

#[test]
fn request() {
    replay(
        "request",
        &["protocol/tests/golden/rust", "protocol/tests/golden/python"],
    );
}

#[test]
fn onnx_header() {
    let fixtures = [
        "tests/fixtures/tiny-sd/text_encoder",
        "tests/fixtures/tiny-sd/unet",
        "tests/fixtures/tiny-sd/vae_decoder",
        "tests/fixtures/tiny-sd/vae_encoder",
        "tests/fixtures/tiny-sd/taesd_decoder",
        "tests/fixtures/tiny-sd/taesd_encoder",
        "tests/fixtures/tiny-lcm/unet",
        "tests/fixtures/tiny-sd-inpaint/unet",
    ];
    replay("onnx_header", &fixtures);
}

#[test]
fn npy() {
    replay(
        "npy",
        &[
            "tests/fixtures/reference/noise",
            "tests/fixtures/reference/taesd",
        ],
    );
}

#[test]
fn config() {
    replay("config", &[]);
}

#[test]
fn tokenizer() {
    replay("tokenizer", &[]);
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The files of `dir`, sorted (none if it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

fn replay(name: &str, fixture_dirs: &[&str]) {
    let target = livefill_fuzz::TARGETS
        .iter()
        .find(|t| t.name == name)
        .expect("a target of that name");
    let corpus: Vec<Vec<u8>> = files(&repo_root().join("fuzz/corpus").join(name))
        .iter()
        .map(|p| std::fs::read(p).expect("a corpus file"))
        .collect();
    assert!(!corpus.is_empty(), "fuzz/corpus/{name}/ has no seeds");
    let mut runs = 0;
    for seed in &corpus {
        run_one(name, target.run, seed, runs);
        runs += 1;
    }
    for dir in fixture_dirs {
        let dir_files = files(&repo_root().join(dir));
        assert!(!dir_files.is_empty(), "{dir} has no files");
        for file in dir_files {
            run_one(name, target.run, &std::fs::read(file).unwrap(), runs);
            runs += 1;
        }
    }
    let mutations = std::env::var("LIVEFILL_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MUTATIONS);
    let mut rng = Rng(0x5eed ^ name.len() as u64);
    for _ in 0..mutations {
        let input = mutate(&corpus, &mut rng);
        run_one(name, target.run, &input, runs);
        runs += 1;
    }
    println!(
        "{name}: {runs} inputs ({} seeds, {mutations} mutations)",
        corpus.len()
    );
}

/// Runs the target on `input`; a panic or a hang saves the input and fails the test naming it.
fn run_one(name: &str, run: fn(&[u8]), input: &[u8], index: usize) {
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| run(input)));
    let elapsed = start.elapsed();
    let problem = match outcome {
        Err(_) => "panicked",
        Ok(()) if elapsed > HANG => "hung",
        Ok(()) => return,
    };
    let saved = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{index}.bin"));
    std::fs::write(&saved, input).expect("saving the failing input");
    panic!(
        "{name}: input {index} ({} bytes) {problem} after {elapsed:?}; saved as {}",
        input.len(),
        saved.display()
    );
}

/// SplitMix64: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One corpus file with one to four mutations of the kinds libFuzzer starts with: bit flips,
/// boundary bytes and integers (lengths!), truncation, insertion, deletion, duplication, splicing.
fn mutate(corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    const U32S: [u32; 7] = [0, 1, 0x7f, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, u32::MAX];
    let mut data = corpus[rng.below(corpus.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(9) {
            0 if at < data.len() => data[at] ^= 1 << rng.below(8),
            1 if at < data.len() => data[at] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
            2 | 3 => {
                let value = if rng.below(4) == 0 {
                    rng.next()
                } else {
                    U32S[rng.below(7)].into()
                };
                let width = if rng.below(2) == 0 { 4 } else { 8 };
                let bytes = value.to_le_bytes();
                for (i, b) in bytes[..width].iter().enumerate() {
                    if let Some(slot) = data.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            4 => data.truncate(at),
            5 => {
                let bytes: Vec<u8> = (0..=rng.below(16)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            6 => {
                let end = (at + 1 + rng.below(32)).min(data.len());
                data.drain(at.min(end)..end);
            }
            7 if !data.is_empty() => {
                let from = rng.below(data.len());
                let chunk: Vec<u8> =
                    data[from..(from + 1 + rng.below(64)).min(data.len())].to_vec();
                data.splice(at..at, chunk);
            }
            _ => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
        }
    }
    data
}
