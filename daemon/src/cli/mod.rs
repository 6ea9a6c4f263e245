//! Subcommands of the `livefill` binary, one file each; `main.rs` only parses and dispatches.

pub mod bench;
pub mod demo;
pub mod doctor;
pub mod generate;
pub mod generate_remote;
pub mod install_plugin;
pub mod model_catalog;
pub mod models;
pub(crate) mod output;
pub mod runtime_args;
pub mod sampler_args;
pub mod serve;
pub mod status;

use livefill_protocol::StageTiming;

use crate::client::JobUpdate;
use crate::request::ONNXRUNTIME_STAGE;

/// "step 2/4", or "loading model tiny-sd: unet (1/5)": one line of a job's progress, the same
/// for the in-process run and a daemon's.
pub(crate) fn describe_update(update: &JobUpdate<'_>) -> String {
    match update {
        JobUpdate::Step { step, total_steps } => format!("step {step}/{total_steps}"),
        JobUpdate::ModelLoading {
            model,
            step,
            total_steps,
            component,
        } => format!("loading model {model}: {component} ({step}/{total_steps})"),
    }
}

/// "text_encode 1.2 ms, unet 7.5 ms, … (inside ONNX Runtime: 8.1 ms)": the stages of a job, with
/// the ONNX Runtime share (a part of the stages, not one more) said apart.
pub(crate) fn format_timings(timings: &[StageTiming]) -> String {
    let stages: Vec<String> = timings
        .iter()
        .filter(|t| t.stage != ONNXRUNTIME_STAGE)
        .map(|t| format!("{} {:.1} ms", t.stage, t.millis))
        .collect();
    let mut text = stages.join(", ");
    if let Some(ort) = timings.iter().find(|t| t.stage == ONNXRUNTIME_STAGE) {
        text.push_str(&format!(" (inside ONNX Runtime: {:.1} ms)", ort.millis));
    }
    text
}
