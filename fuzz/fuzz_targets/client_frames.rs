//! libFuzzer entry point of the `client_frames` target; the body is `livefill_fuzz::client_frames`, which the
//! stable replay test (`tests/replay.rs`) runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livefill_fuzz::client_frames(data));
