//! The inference engine: ONNX Runtime sessions for one Stable Diffusion model.

pub mod model_dir;
pub mod onnx_model;
pub mod runtime;
