//! libFuzzer entry point of the `npy` target; the body is `livefill_fuzz::npy`, which the
//! stable replay test (`tests/replay.rs`) runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livefill_fuzz::npy(data));
