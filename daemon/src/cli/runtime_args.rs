//! The command-line flags that choose where inference runs, shared by every command that loads a
//! model (`generate`, `serve`, `demo`, `bench`).

use std::path::PathBuf;

use clap::Args;

use crate::onnx::runtime::{DeviceRequest, RuntimeOptions};

#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// ONNX Runtime intra-op threads (default: ONNX Runtime's choice).
    #[arg(long)]
    pub threads: Option<usize>,
    /// libonnxruntime to load (default: ORT_DYLIB_PATH, next to the binary, or fetched with pip).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// CUDA only: record the UNet's run for each live-preview size as a CUDA graph and replay it
    /// (up to 4 sizes). Off by default: not yet measured on a GPU (see BENCHMARKS.md).
    #[arg(long)]
    pub cuda_graph: bool,
    /// Let ONNX Runtime's threads busy-wait between runs (its own default). Off by default: the
    /// spinning cores slowed livefill's pixel work on large layers by ~50 % and would compete
    /// with the editor; model runs were not measurably slower without it (BENCHMARKS.md).
    #[arg(long)]
    pub ort_spinning: bool,
}

impl RuntimeArgs {
    /// The flags given away from their defaults, as typed (for refusing them where a daemon
    /// decides instead).
    pub fn given(&self) -> Vec<&'static str> {
        let flags = [
            ("--device", self.device != "auto"),
            ("--threads", self.threads.is_some()),
            ("--ort-lib", self.ort_lib.is_some()),
            ("--cuda-graph", self.cuda_graph),
            ("--ort-spinning", self.ort_spinning),
        ];
        flags
            .into_iter()
            .filter_map(|(name, given)| given.then_some(name))
            .collect()
    }

    pub fn options(&self) -> anyhow::Result<RuntimeOptions> {
        Ok(RuntimeOptions {
            library: self.ort_lib.clone(),
            device: self.device.parse::<DeviceRequest>()?,
            intra_threads: self.threads,
            cuda_graph: self.cuda_graph,
            ort_spinning: self.ort_spinning,
        })
    }
}
