//! The bodies of livefill's fuzz targets: one function per parser of outside input, each taking
//! the fuzzer's bytes and asserting that the parser neither panics nor hangs nor allocates
//! without bound, plus what its result must satisfy when it accepts the input.
//!
//! Exists so that the coverage-guided fuzzers (`fuzz_targets/*.rs`, cargo-fuzz on nightly) and
//! the stable replay test (`tests/replay.rs`: every corpus file plus deterministic mutations, on
//! machines without nightly) run the very same code. Every binary linking this crate gets the
//! capped allocator of [`alloc_cap`], so a length field claiming gigabytes aborts the run even
//! without a sanitizer.

pub mod alloc_cap;
mod frames;
mod inputs;
mod request;

pub use frames::{client_frames, daemon_frames};
pub use inputs::{config, npy, onnx_header, tokenizer};
pub use request::request;

/// A fuzz target: its name (the cargo-fuzz binary and `corpus/<name>/`) and its body.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order the scripts run them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "client_frames",
        run: client_frames,
    },
    Target {
        name: "daemon_frames",
        run: daemon_frames,
    },
    Target {
        name: "request",
        run: request,
    },
    Target {
        name: "onnx_header",
        run: onnx_header,
    },
    Target {
        name: "npy",
        run: npy,
    },
    Target {
        name: "config",
        run: config,
    },
    Target {
        name: "tokenizer",
        run: tokenizer,
    },
];
