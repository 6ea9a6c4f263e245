//! libFuzzer entry point of the `tokenizer` target; the body is `livefill_fuzz::tokenizer`, which the
//! stable replay test (`tests/replay.rs`) runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livefill_fuzz::tokenizer(data));
