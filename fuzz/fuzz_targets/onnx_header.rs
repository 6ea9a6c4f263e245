//! libFuzzer entry point of the `onnx_header` target; the body is `livefill_fuzz::onnx_header`, which the
//! stable replay test (`tests/replay.rs`) runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livefill_fuzz::onnx_header(data));
