//! livefill daemon library: everything the `livefill` binary is made of, exposed as a library so
//! integration tests and benchmarks can drive it in process.

pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod generator;
pub mod imaging;
pub mod jobs;
pub mod models;
pub mod noise;
pub mod npy;
pub mod onnx;
pub mod paths;
pub mod pipelines;
pub mod plugin_install;
pub mod request;
pub mod scheduler;
pub mod server;
pub mod tokenizer;
