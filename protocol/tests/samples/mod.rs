//! One sample of every message kind, shared by the golden-frame and robustness tests.
//!
//! Exists so the Rust golden files, the Python golden files (written by
//! `protocol/python/make_golden.py`, which builds the very same values) and the fuzz corpus all
//! start from one list. Covers every variant of both enums, options both `Some` and `None`,
//! non-ASCII strings and small images. Floats are exactly representable in f32 so that Python's
//! doubles compare equal after a round trip.

#![allow(dead_code)]

use livefill_protocol::*;

pub enum Sample {
    Client(ClientMessage),
    Daemon(DaemonMessage),
}

impl Sample {
    pub fn frame(&self) -> Vec<u8> {
        match self {
            Sample::Client(m) => encode_client(m),
            Sample::Daemon(m) => encode_daemon(m),
        }
    }
}

fn image(width: u32, height: u32) -> RgbaImage {
    let n = (width * height * 4) as usize;
    RgbaImage::new(
        width,
        height,
        (0..n).map(|i| (i * 37 % 256) as u8).collect(),
    )
}

pub fn samples() -> Vec<(&'static str, Sample)> {
    use Sample::{Client, Daemon};
    vec![
        (
            "client_hello",
            Client(ClientMessage::Hello(ClientHello {
                client_name: "Krita 5.2 — livefill ✓".into(),
                protocol_version: PROTOCOL_VERSION,
            })),
        ),
        (
            "client_generate_full",
            Client(ClientMessage::Generate(GenerateRequest {
                request_id: 42,
                mode: Mode::Inpaint,
                prompt: "a red fox in snow, 雪の中の狐".into(),
                negative_prompt: "blurry, überbelichtet".into(),
                seed: Some(1_234_567_890_123),
                steps: 4,
                guidance: 1.5,
                strength: 0.75,
                width: 0,
                height: 0,
                image: Some(image(3, 2)),
                mask: Some(Mask::new(3, 2, vec![0, 255, 128, 255, 0, 64])),
                extend: Extend {
                    left: 1,
                    top: 2,
                    right: 3,
                    bottom: 4,
                },
                context: Context::Full,
                feather: 8,
                color_match: true,
                priority: Priority::LivePreview,
                stream_previews: true,
                sampler: Some(Sampler::Dpmpp2m),
                spacing: Some(Spacing::Karras),
                eta: Some(0.25),
                model: "modèle-inpaint".into(),
            })),
        ),
        (
            "client_generate_minimal",
            Client(ClientMessage::Generate(GenerateRequest {
                request_id: u64::MAX,
                mode: Mode::Txt2Img,
                prompt: String::new(),
                negative_prompt: String::new(),
                seed: None,
                steps: 1,
                guidance: 1.0,
                strength: 1.0,
                width: 512,
                height: 768,
                image: None,
                mask: None,
                extend: Extend::default(),
                context: Context::Auto,
                feather: 0,
                color_match: false,
                priority: Priority::Final,
                stream_previews: false,
                sampler: None,
                spacing: None,
                eta: None,
                model: String::new(),
            })),
        ),
        (
            "client_generate_outpaint",
            Client(ClientMessage::Generate(GenerateRequest {
                request_id: 43,
                mode: Mode::Outpaint,
                prompt: "wide landscape".into(),
                negative_prompt: String::new(),
                seed: Some(0),
                steps: 8,
                guidance: 0.0,
                strength: 0.5,
                width: 0,
                height: 0,
                image: Some(image(1, 1)),
                mask: None,
                extend: Extend {
                    left: 64,
                    top: 0,
                    right: 64,
                    bottom: 0,
                },
                context: Context::Auto,
                feather: 16,
                color_match: false,
                priority: Priority::Final,
                stream_previews: false,
                sampler: Some(Sampler::EulerA),
                spacing: Some(Spacing::Trailing),
                eta: None,
                model: "lcm-dreamshaper-v7".into(),
            })),
        ),
        (
            "client_cancel",
            Client(ClientMessage::Cancel { request_id: 42 }),
        ),
        ("client_status", Client(ClientMessage::Status)),
        ("client_list_models", Client(ClientMessage::ListModels)),
        ("client_shutdown", Client(ClientMessage::Shutdown)),
        (
            "daemon_hello",
            Daemon(DaemonMessage::Hello(DaemonHello {
                daemon_version: "0.1.0".into(),
                protocol_version: PROTOCOL_VERSION,
                device: "NVIDIA H100 (cuda:0)".into(),
                execution_provider: "CUDAExecutionProvider".into(),
                model: "lcm-dreamshaper-v7".into(),
                native_width: 512,
                native_height: 512,
                capabilities: Capabilities {
                    modes: vec![Mode::Txt2Img, Mode::Img2Img, Mode::Inpaint, Mode::Outpaint],
                    inpainting_unet: false,
                    taesd_previews: true,
                    max_image_side: 8192,
                    max_frame_bytes: u64::from(DEFAULT_MAX_PAYLOAD),
                    default_sampler: Sampler::Lcm,
                    default_spacing: None,
                    default_steps: 4,
                    default_guidance: 1.0,
                },
            })),
        ),
        (
            "daemon_accepted",
            Daemon(DaemonMessage::Accepted {
                request_id: 42,
                queue_position: 3,
            }),
        ),
        (
            "daemon_progress_preview",
            Daemon(DaemonMessage::Progress {
                request_id: 42,
                step: 2,
                total_steps: 4,
                preview: Some(image(2, 1)),
            }),
        ),
        (
            "daemon_progress_no_preview",
            Daemon(DaemonMessage::Progress {
                request_id: 42,
                step: 3,
                total_steps: 4,
                preview: None,
            }),
        ),
        (
            "daemon_result",
            Daemon(DaemonMessage::Result(GenerateResult {
                request_id: 42,
                image: image(2, 2),
                offset_x: -16,
                offset_y: 32,
                seed: 1_234_567_890_123,
                timings: vec![
                    StageTiming {
                        stage: "text_encode".into(),
                        millis: 3.25,
                    },
                    StageTiming {
                        stage: "unet".into(),
                        millis: 120.5,
                    },
                    StageTiming {
                        stage: "vae_decode".into(),
                        millis: 0.125,
                    },
                ],
                model: "lcm-dreamshaper-v7".into(),
            })),
        ),
        (
            "daemon_error_request",
            Daemon(DaemonMessage::Error(ErrorReply {
                request_id: Some(42),
                code: ErrorCode::MaskSizeMismatch,
                message: "mask is 3×2 but the image is 4×4".into(),
            })),
        ),
        (
            "daemon_error_connection",
            Daemon(DaemonMessage::Error(ErrorReply {
                request_id: None,
                code: ErrorCode::UnsupportedVersion,
                message: "client speaks protocol 2, daemon speaks 1".into(),
            })),
        ),
        (
            "daemon_superseded",
            Daemon(DaemonMessage::Superseded {
                request_id: 42,
                by_request_id: 43,
            }),
        ),
        (
            "daemon_status",
            Daemon(DaemonMessage::Status(DaemonStatus {
                model: "lcm-dreamshaper-v7".into(),
                device: "cpu".into(),
                execution_provider: "CPUExecutionProvider".into(),
                queued_jobs: 2,
                running_request: Some(43),
                connected_clients: 1,
                jobs_completed: 17,
                uptime_ms: 123_456_789,
                resident_bytes: 2_132_000_000,
                budget_bytes: 6_000_000_000,
                max_resident_models: 0,
                loading_model: "modèle-inpaint".into(),
            })),
        ),
        (
            "daemon_status_idle",
            Daemon(DaemonMessage::Status(DaemonStatus {
                model: String::new(),
                device: "cpu".into(),
                execution_provider: "CPUExecutionProvider".into(),
                queued_jobs: 0,
                running_request: None,
                connected_clients: 0,
                jobs_completed: 0,
                uptime_ms: 5,
                resident_bytes: 0,
                budget_bytes: 0,
                max_resident_models: 2,
                loading_model: String::new(),
            })),
        ),
        (
            "daemon_models",
            Daemon(DaemonMessage::Models(vec![
                ModelInfo {
                    name: "lcm-dreamshaper-v7".into(),
                    path: "/home/ana/.cache/livefill/models/lcm-dreamshaper-v7".into(),
                    unet_in_channels: 4,
                    lcm_distilled: true,
                    dtype: "fp16".into(),
                    taesd: true,
                    loaded: true,
                    roles: vec![ModelRole::Default, ModelRole::Live],
                    weight_bytes: 2_132_000_000,
                    shared_bytes: 430_000_000,
                    load_error: String::new(),
                    default_sampler: Sampler::Lcm,
                    default_spacing: None,
                    default_steps: 4,
                    default_guidance: 1.0,
                },
                ModelInfo {
                    name: "modèle-inpaint".into(),
                    path: "C:\\Users\\José\\models\\inpaint".into(),
                    unet_in_channels: 9,
                    lcm_distilled: false,
                    dtype: "fp32".into(),
                    taesd: false,
                    loaded: false,
                    roles: vec![ModelRole::Inpaint],
                    weight_bytes: 4_265_000_000,
                    shared_bytes: 0,
                    load_error: "unet/model.onnx: truncated at byte 1048576 of 3438167536".into(),
                    default_sampler: Sampler::Dpmpp2m,
                    default_spacing: Some(Spacing::Karras),
                    default_steps: 20,
                    default_guidance: 7.5,
                },
            ])),
        ),
        (
            "daemon_models_empty",
            Daemon(DaemonMessage::Models(Vec::new())),
        ),
        ("daemon_shutting_down", Daemon(DaemonMessage::ShuttingDown)),
        (
            "daemon_model_loading",
            Daemon(DaemonMessage::ModelLoading {
                request_id: 42,
                model: "modèle-inpaint".into(),
                step: 2,
                total_steps: 5,
                component: "unet".into(),
            }),
        ),
    ]
}
