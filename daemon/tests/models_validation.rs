//! A broken model folder must fail to load with an error that names the broken file and says what
//! is wrong — never a panic. Each case copies `tests/fixtures/tiny-sd` (or the inpainting one) to a
//! temporary folder, breaks it one way, and checks `Engine::load`'s message.

mod daemon_support;

use daemon_support::copy_dir;
use std::path::{Path, PathBuf};

use livefill::engine::{Engine, EngineOptions};
use livefill::onnx::runtime::{DeviceRequest, RuntimeOptions};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// A fresh copy of a fixture model in its own temporary folder (removed on drop).
struct TempModel {
    root: PathBuf,
    model: PathBuf,
}

impl TempModel {
    fn new(fixture_name: &str, tag: &str) -> Self {
        let root = std::env::temp_dir().join(format!(
            "livefill-models-validation-{}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        let model = root.join(fixture_name);
        copy_dir(&fixture(fixture_name), &model);
        Self { root, model }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.model.join(rel)
    }
}

impl Drop for TempModel {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `Engine::load`'s error message (panics if the model loads).
fn load_error(model: &Path) -> String {
    let options = EngineOptions {
        model: model.to_path_buf(),
        runtime: RuntimeOptions {
            device: DeviceRequest::Cpu,
            intra_threads: Some(1),
            ..Default::default()
        },
        max_image_side: 1024,
    };
    match Engine::load(&options) {
        Ok(_) => panic!("{} loaded although it is broken", model.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_names(message: &str, file: &Path, what: &[&str]) {
    let shown = file.display().to_string();
    assert!(
        message.contains(&shown),
        "error does not name {shown}:\n{message}"
    );
    let lower = message.to_lowercase();
    assert!(
        what.iter().any(|w| lower.contains(&w.to_lowercase())),
        "error does not say what is wrong (expected one of {what:?}):\n{message}"
    );
}

#[test]
fn intact_fixture_loads() {
    let m = TempModel::new("tiny-sd", "intact");
    let options = EngineOptions {
        model: m.model.clone(),
        runtime: RuntimeOptions {
            device: DeviceRequest::Cpu,
            intra_threads: Some(1),
            ..Default::default()
        },
        max_image_side: 1024,
    };
    Engine::load(&options).expect("the untouched copy loads");
}

#[test]
fn missing_unet_graph() {
    let m = TempModel::new("tiny-sd", "no-unet");
    let file = m.path("unet/model.onnx");
    std::fs::remove_file(&file).unwrap();
    assert_names(&load_error(&m.model), &file, &["missing"]);
}

#[test]
fn missing_text_encoder_graph() {
    let m = TempModel::new("tiny-sd", "no-te");
    let file = m.path("text_encoder/model.onnx");
    std::fs::remove_file(&file).unwrap();
    assert_names(&load_error(&m.model), &file, &["missing"]);
}

#[test]
fn truncated_vae_decoder() {
    let m = TempModel::new("tiny-sd", "trunc-vae");
    let file = m.path("vae_decoder/model.onnx");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    assert_names(
        &load_error(&m.model),
        &file,
        &[
            "truncated",
            "corrupt",
            "not a valid onnx",
            "protobuf",
            "could not load",
        ],
    );
}

#[test]
fn garbage_unet() {
    let m = TempModel::new("tiny-sd", "garbage-unet");
    let file = m.path("unet/model.onnx");
    std::fs::write(&file, b"this is not an ONNX file at all\n".repeat(100)).unwrap();
    assert_names(
        &load_error(&m.model),
        &file,
        &["corrupt", "not a valid onnx", "protobuf", "could not load"],
    );
}

#[test]
fn empty_text_encoder() {
    let m = TempModel::new("tiny-sd", "empty-te");
    let file = m.path("text_encoder/model.onnx");
    std::fs::write(&file, b"").unwrap();
    assert_names(
        &load_error(&m.model),
        &file,
        &["empty", "corrupt", "not a valid onnx", "could not load"],
    );
}

#[test]
fn missing_unet_config() {
    let m = TempModel::new("tiny-sd", "no-unet-config");
    let file = m.path("unet/config.json");
    std::fs::remove_file(&file).unwrap();
    assert_names(&load_error(&m.model), &file, &["missing"]);
}

#[test]
fn missing_vae_config() {
    let m = TempModel::new("tiny-sd", "no-vae-config");
    let file = m.path("vae_decoder/config.json");
    std::fs::remove_file(&file).unwrap();
    assert_names(&load_error(&m.model), &file, &["missing"]);
}

#[test]
fn invalid_json_config() {
    let m = TempModel::new("tiny-sd", "bad-json");
    let file = m.path("scheduler/scheduler_config.json");
    std::fs::write(&file, "{ not json").unwrap();
    assert_names(&load_error(&m.model), &file, &["invalid json"]);
}

#[test]
fn five_channel_unet_config() {
    let m = TempModel::new("tiny-sd", "five-channels");
    let file = m.path("unet/config.json");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    cfg["in_channels"] = 5.into();
    std::fs::write(&file, cfg.to_string()).unwrap();
    assert_names(&load_error(&m.model), &file, &["in_channels = 5"]);
}

#[test]
fn config_disagrees_with_graph_channels() {
    // A 9-channel inpainting graph whose config claims 4 channels.
    let m = TempModel::new("tiny-sd-inpaint", "chan-mismatch");
    let file = m.path("unet/config.json");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    cfg["in_channels"] = 4.into();
    std::fs::write(&file, cfg.to_string()).unwrap();
    let message = load_error(&m.model);
    assert_names(&message, &m.path("unet/model.onnx"), &["9 channels"]);
}

#[test]
fn graph_does_not_fit_the_pipeline() {
    // The VAE decoder's graph where the UNet's should be: wrong input names.
    let m = TempModel::new("tiny-sd", "wrong-graph");
    let file = m.path("unet/model.onnx");
    std::fs::copy(m.path("vae_decoder/model.onnx"), &file).unwrap();
    assert_names(&load_error(&m.model), &file, &["no input named"]);
}

#[test]
fn missing_tokenizer() {
    let m = TempModel::new("tiny-sd", "no-tokenizer");
    std::fs::remove_file(m.path("tokenizer/vocab.json")).unwrap();
    assert_names(
        &load_error(&m.model),
        &m.path("tokenizer/vocab.json"),
        &["missing"],
    );
}

#[test]
fn folder_that_does_not_exist() {
    let m = TempModel::new("tiny-sd", "gone");
    let gone = m.root.join("nope");
    assert_names(&load_error(&gone), &gone, &["does not exist"]);
}

/// The fixture turned into diffusers' legacy ONNX layout: no component configs, a
/// `model_index.json` naming `OnnxRuntimeModel` components (as `OnnxStableDiffusionPipeline`
/// writes it). The real converter's output is tested end to end by tests/export.
fn legacy_copy(fixture_name: &str, class_name: &str, tag: &str) -> TempModel {
    let m = TempModel::new(fixture_name, tag);
    for part in ["text_encoder", "unet", "vae_encoder", "vae_decoder"] {
        std::fs::remove_file(m.path(&format!("{part}/config.json"))).unwrap();
    }
    let ort = serde_json::json!(["diffusers", "OnnxRuntimeModel"]);
    let index = serde_json::json!({
        "_class_name": class_name,
        "text_encoder": ort, "unet": ort, "vae_encoder": ort, "vae_decoder": ort,
        "safety_checker": [null, null],
        "scheduler": ["diffusers", "LCMScheduler"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
    });
    std::fs::write(m.path("model_index.json"), index.to_string()).unwrap();
    m
}

#[test]
fn the_legacy_layout_loads_with_configs_from_its_graphs() {
    use livefill::onnx::legacy_layout::Layout;
    use livefill::onnx::model_dir::ModelDir;
    let plain = legacy_copy("tiny-sd", "OnnxStableDiffusionPipeline", "legacy");
    let dir = ModelDir::open(&plain.model).expect("legacy layout opens");
    assert_eq!(dir.layout, Layout::DiffusersLegacy);
    assert_eq!(dir.unet_config.in_channels, 4);
    assert_eq!(dir.vae_config.latent_channels, 4);
    assert_eq!(dir.vae_config.scale_factor(), 8);
    let inpaint = legacy_copy(
        "tiny-sd-inpaint",
        "OnnxStableDiffusionInpaintPipeline",
        "legacy-9",
    );
    let dir = ModelDir::open(&inpaint.model).expect("legacy inpainting layout opens");
    assert!(dir.is_inpainting_unet());
    let options = EngineOptions {
        model: inpaint.model.clone(),
        runtime: RuntimeOptions {
            device: DeviceRequest::Cpu,
            ..RuntimeOptions::default()
        },
        max_image_side: 1024,
    };
    Engine::load(&options).expect("the legacy inpainting copy loads");
}
