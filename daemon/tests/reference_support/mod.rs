//! Shared by the tests that compare livefill with diffusers' recorded outputs (`parity.rs`,
//! `taesd.rs`): where the fixtures are, a CPU runtime, and the PSNR measure.

use std::path::{Path, PathBuf};

use livefill::onnx::runtime::{DeviceRequest, Runtime, RuntimeOptions, init_runtime};
use livefill::pipelines::ModelImage;

/// `tests/fixtures/` of the repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// CPU, one thread: deterministic and the same on every test machine.
pub fn runtime_options() -> RuntimeOptions {
    RuntimeOptions {
        device: DeviceRequest::Cpu,
        intra_threads: Some(1),
        ..Default::default()
    }
}

pub fn runtime() -> Runtime {
    init_runtime(&runtime_options())
        .expect("ONNX Runtime (set ORT_DYLIB_PATH, or let livefill fetch it with pip)")
}

/// livefill's 8-bit output for a model image in [-1, 1], as `[H, W, 3]`.
pub fn to_u8_hwc(image: &ModelImage) -> Vec<f32> {
    let plane = image.width * image.height;
    let mut out = vec![0.0; plane * 3];
    for i in 0..plane {
        for c in 0..3 {
            let v = (image.data[c * plane + i] / 2.0 + 0.5).clamp(0.0, 1.0);
            out[i * 3 + c] = (v * 255.0).round();
        }
    }
    out
}

/// PSNR of 8-bit pixels against an image in [0, 1].
pub fn psnr(ours_u8: &[f32], expected_unit: &[f32]) -> f64 {
    assert_eq!(ours_u8.len(), expected_unit.len(), "image sizes differ");
    let mse = ours_u8
        .iter()
        .zip(expected_unit)
        .map(|(&a, &b)| {
            let d = a as f64 - b as f64 * 255.0;
            d * d
        })
        .sum::<f64>()
        / ours_u8.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}
