//! libFuzzer entry point of the `request` target; the body is `livefill_fuzz::request`, which the
//! stable replay test (`tests/replay.rs`) runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livefill_fuzz::request(data));
