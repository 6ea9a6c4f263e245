//! livefill daemon library: everything the `livefill` binary is made of, exposed as a library so
//! integration tests and benchmarks can drive it in process.

pub mod generator;
pub mod plugin_install;
pub mod engine;
pub mod tokenizer;
pub mod scheduler;
pub mod npy;
pub mod noise;
pub mod pipelines;
pub mod imaging;
pub mod cli;
