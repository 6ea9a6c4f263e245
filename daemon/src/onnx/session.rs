//! One ONNX Runtime session plus what its graph expects.
//!
//! Exists so pipelines never hard-code tensor names, element types or ranks: they hand over f32 /
//! i64 arrays by *role* and this module converts them to what the graph declares (f16 or f32,
//! int32 or int64, rank 0 or rank 1 timesteps), and converts outputs back to f32.
//!
//! A graph run many times on the same shapes (the UNet, step after step) can keep its inputs and
//! outputs in buffers allocated once on the session's device ([`FixedBinding`], ONNX Runtime's IO
//! binding): an input that stays the same for a job (text embeddings) is written there once, the
//! others (latents, timestep) are copied into the same place before each run, and on a CUDA
//! session loaded with graph capture the run itself is recorded once as a CUDA graph and replayed.
//!
//! Each model also adds up the wall time spent inside ONNX Runtime's `Run` alone
//! ([`OnnxModel::take_run_time`]), so benchmarks can tell ONNX Runtime's time from livefill's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use half::f16;
use ndarray::{ArrayD, IxDyn};
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{IoBinding, RunOptions, Session, SessionOutputs};
use ort::value::{
    DynTensor, DynTensorValueType, DynValue, Tensor, TensorElementType, TensorValueTypeMarker,
    Value, ValueType,
};

use super::runtime::{ResolvedDevice, Runtime};
use crate::onnx::header;

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("{path}: could not load ONNX graph: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("{path}: graph has no input named {name:?} (inputs: {available})")]
    MissingInput {
        path: PathBuf,
        name: String,
        available: String,
    },
    #[error("{path}: input {name:?} has unsupported element type {ty:?}")]
    UnsupportedType {
        path: PathBuf,
        name: String,
        ty: TensorElementType,
    },
    #[error("{path}: running the graph failed: {reason}")]
    Run { path: PathBuf, reason: String },
}

/// A graph input or output: name, element type, declared shape (-1 = dynamic).
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub element_type: TensorElementType,
    pub shape: Vec<i64>,
}

impl super::contract::DeclaredInputs for OnnxModel {
    fn has_input(&self, name: &str) -> bool {
        self.input(name).is_some()
    }
    fn input_names(&self) -> String {
        OnnxModel::input_names(self)
    }
    fn fixed_input_dim(&self, name: &str, dim: usize) -> Option<i64> {
        let size = *self.input(name)?.shape.get(dim)?;
        (size >= 0).then_some(size)
    }
}

/// Values handed to a graph, before dtype conversion.
pub enum InputData {
    Float(ArrayD<f32>),
    Int(ArrayD<i64>),
}

/// A loaded graph.
pub struct OnnxModel {
    pub path: PathBuf,
    session: Session,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Wall time inside `Session::run` since the last [`OnnxModel::take_run_time`].
    run_time: Duration,
    /// Where the session computes (and where [`FixedBinding`] buffers live).
    device: ResolvedDevice,
    /// The session was loaded with CUDA graph capture enabled.
    pub graph_capture: bool,
}

/// Inputs and outputs of one set of shapes, in buffers allocated once in the session's device
/// memory and bound once: [`OnnxModel::write_input`] copies new data into an input's buffer,
/// [`OnnxModel::run_fixed`] runs on them. With a `graph_id` (CUDA sessions loaded with graph
/// capture) ONNX Runtime records the run as a CUDA graph once and then replays it, which is
/// possible because the buffers never move.
pub struct FixedBinding {
    io: IoBinding,
    inputs: Vec<(String, DynTensor)>,
    run_options: RunOptions,
    pub graph_id: Option<u32>,
}

fn spec(name: &str, ty: &ValueType) -> TensorSpec {
    let (element_type, shape) = match ty {
        ValueType::Tensor { ty, shape, .. } => (*ty, shape.iter().copied().collect()),
        _ => (TensorElementType::Float32, Vec::new()),
    };
    TensorSpec {
        name: name.to_string(),
        element_type,
        shape,
    }
}

impl OnnxModel {
    /// Create a session on the runtime's execution provider.
    pub fn load(runtime: &Runtime, path: &Path) -> Result<Self, OnnxError> {
        Self::load_with(runtime, path, false)
    }

    /// Load with CUDA graph capture enabled when `graph_capture` and the session runs on CUDA.
    /// ONNX Runtime refuses capture for a graph whose nodes are not all on the CUDA execution
    /// provider: then the session is loaded again without it, with a warning (never silently;
    /// `graph_capture` says what the session got).
    pub fn load_with(
        runtime: &Runtime,
        path: &Path,
        graph_capture: bool,
    ) -> Result<Self, OnnxError> {
        let capture = graph_capture && matches!(runtime.device, ResolvedDevice::Cuda(_));
        if capture {
            match Self::load_session(runtime, path, true) {
                Ok(model) => return Ok(model),
                Err(e) => tracing::warn!(
                    "{}: CUDA graph capture is not possible for this graph, loading without it: {e}",
                    path.display()
                ),
            }
        }
        Self::load_session(runtime, path, false)
    }

    fn load_session(runtime: &Runtime, path: &Path, capture: bool) -> Result<Self, OnnxError> {
        let load_err = |reason: String| OnnxError::Load {
            path: path.to_path_buf(),
            reason,
        };
        let mut builder = Session::builder(&runtime.environment)
            .map_err(|e| load_err(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| load_err(e.to_string()))?;
        // ONNX Runtime's intra-op threads busy-wait after each run by default; here that steals
        // the cores from livefill's pixel work and from the editor beside the daemon.
        builder = builder
            .with_intra_op_spinning(runtime.ort_spinning)
            .map_err(|e| load_err(e.to_string()))?;
        if let Some(threads) = runtime.intra_threads {
            builder = builder
                .with_intra_threads(threads)
                .map_err(|e| load_err(e.to_string()))?;
        }
        let providers = runtime.device.execution_providers(capture);
        if !providers.is_empty() {
            builder = builder.with_execution_providers(providers).map_err(|e| {
                load_err(format!(
                    "{} could not be registered: {e}",
                    runtime.device.provider_name()
                ))
            })?;
        }
        let session = builder.commit_from_file(path).map_err(|e| {
            // Prefer a precise diagnosis (truncated, corrupt, missing external data) when the
            // file itself is broken.
            match header::read_signature(path) {
                Err(diagnosis) => load_err(diagnosis.to_string()),
                Ok(_) => load_err(e.to_string()),
            }
        })?;
        let inputs = session
            .inputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            session,
            inputs,
            outputs,
            run_time: Duration::ZERO,
            device: runtime.device.clone(),
            graph_capture: capture,
        })
    }

    /// Time spent inside ONNX Runtime's `Run` since the last call (tensor conversions excluded).
    pub fn take_run_time(&mut self) -> Duration {
        std::mem::take(&mut self.run_time)
    }

    /// The declared input with this name, if any.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|i| i.name == name)
    }

    /// The first declared input among `names`.
    pub fn input_named_any(&self, names: &[&str]) -> Result<&TensorSpec, OnnxError> {
        names
            .iter()
            .find_map(|n| self.input(n))
            .ok_or_else(|| OnnxError::MissingInput {
                path: self.path.clone(),
                name: names.join(" | "),
                available: self.input_names(),
            })
    }

    /// Input names, comma separated (for messages).
    fn input_names(&self) -> String {
        self.inputs
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Element type of the first floating-point input (the graph's working precision).
    pub fn float_type(&self) -> TensorElementType {
        self.inputs
            .iter()
            .map(|i| i.element_type)
            .find(|t| matches!(t, TensorElementType::Float16 | TensorElementType::Float32))
            .unwrap_or(TensorElementType::Float32)
    }

    /// Run with named inputs; returns every output as f32, in declaration order.
    pub fn run(&mut self, inputs: Vec<(&str, InputData)>) -> Result<Vec<ArrayD<f32>>, OnnxError> {
        let mut values: Vec<(String, DynValue)> = Vec::with_capacity(inputs.len());
        for (name, data) in inputs {
            let spec = self.input_named_any(&[name])?.clone();
            values.push((spec.name.clone(), self.to_value(&spec, data)?.into_dyn()));
        }
        let start = Instant::now();
        let outputs = self.session.run(values).map_err(run_error(&self.path))?;
        self.run_time += start.elapsed();
        outputs_to_f32(&outputs).map_err(run_error(&self.path))
    }

    /// Buffers for these input and output shapes, on the session's device, bound once. Inputs not
    /// listed keep no buffer; `graph_id` asks for CUDA graph capture (ignored unless the session
    /// was loaded with it).
    pub fn fixed_binding(
        &self,
        inputs: &[(&str, Vec<usize>)],
        outputs: &[Vec<usize>],
        graph_id: Option<u32>,
    ) -> Result<FixedBinding, OnnxError> {
        let err = run_error(&self.path);
        let allocator = self.device_allocator()?;
        let mut io = self.session.create_binding().map_err(&err)?;
        let mut buffers = Vec::with_capacity(inputs.len());
        for (name, shape) in inputs {
            let spec = self.input_named_any(&[name])?;
            let buffer =
                DynTensor::new(&allocator, spec.element_type, shape.clone()).map_err(&err)?;
            io.bind_input(spec.name.clone(), &buffer).map_err(&err)?;
            buffers.push((spec.name.clone(), buffer));
        }
        for (spec, shape) in self.outputs.iter().zip(outputs) {
            let buffer =
                DynTensor::new(&allocator, spec.element_type, shape.clone()).map_err(&err)?;
            io.bind_output(spec.name.clone(), buffer).map_err(&err)?;
        }
        let graph_id = graph_id.filter(|_| self.graph_capture);
        let mut run_options = RunOptions::new().map_err(&err)?;
        if self.graph_capture {
            // -1: run this binding without capturing a graph.
            let id = graph_id.map_or(-1, i64::from);
            run_options
                .set("gpu_graph_id", id.to_string())
                .map_err(&err)?;
        }
        Ok(FixedBinding {
            io,
            inputs: buffers,
            run_options,
            graph_id,
        })
    }

    /// Convert `data` to the input's declared type and copy it into the input's fixed buffer.
    pub fn write_input(
        &self,
        binding: &mut FixedBinding,
        name: &str,
        data: InputData,
    ) -> Result<(), OnnxError> {
        let spec = self.input_named_any(&[name])?;
        let value = self.to_value(spec, data)?;
        let buffer = binding
            .inputs
            .iter_mut()
            .find(|(n, _)| *n == spec.name)
            .map(|(_, b)| b)
            .ok_or_else(|| OnnxError::Run {
                path: self.path.clone(),
                reason: format!("input {:?} has no fixed buffer", spec.name),
            })?;
        value.copy_into(buffer).map_err(|e| OnnxError::Run {
            path: self.path.clone(),
            reason: format!("input {:?}: {e}", spec.name),
        })
    }

    /// Run on the fixed buffers; returns every output as f32 (copied to the host), in
    /// declaration order.
    pub fn run_fixed(&mut self, binding: &FixedBinding) -> Result<Vec<ArrayD<f32>>, OnnxError> {
        let start = Instant::now();
        let outputs = self
            .session
            .run_binding_with_options(&binding.io, &binding.run_options)
            .map_err(run_error(&self.path))?;
        self.run_time += start.elapsed();
        outputs_to_f32(&outputs).map_err(run_error(&self.path))
    }

    /// The allocator for buffers on the session's device.
    fn device_allocator(&self) -> Result<Allocator, OnnxError> {
        match self.device {
            ResolvedDevice::Cpu { .. } => Ok(Allocator::default()),
            ResolvedDevice::Cuda(id) => {
                let info = MemoryInfo::new(
                    AllocationDevice::CUDA,
                    id,
                    AllocatorType::Device,
                    MemoryType::Default,
                )
                .map_err(run_error(&self.path))?;
                Allocator::new(&self.session, info).map_err(run_error(&self.path))
            }
        }
    }

    fn to_value(&self, spec: &TensorSpec, data: InputData) -> Result<DynTensor, OnnxError> {
        let unsupported = || OnnxError::UnsupportedType {
            path: self.path.clone(),
            name: spec.name.clone(),
            ty: spec.element_type,
        };
        let run_err = |e: ort::Error| OnnxError::Run {
            path: self.path.clone(),
            reason: format!("input {:?}: {e}", spec.name),
        };
        let value = match (spec.element_type, data) {
            (TensorElementType::Float32, InputData::Float(a)) => {
                Tensor::from_array(a).map_err(run_err)?.upcast()
            }
            (TensorElementType::Float16, InputData::Float(a)) => {
                Tensor::from_array(a.mapv(f16::from_f32))
                    .map_err(run_err)?
                    .upcast()
            }
            (TensorElementType::Float32, InputData::Int(a)) => {
                Tensor::from_array(a.mapv(|v| v as f32))
                    .map_err(run_err)?
                    .upcast()
            }
            (TensorElementType::Float16, InputData::Int(a)) => {
                Tensor::from_array(a.mapv(|v| f16::from_f32(v as f32)))
                    .map_err(run_err)?
                    .upcast()
            }
            (TensorElementType::Int64, InputData::Int(a)) => {
                Tensor::from_array(a).map_err(run_err)?.upcast()
            }
            (TensorElementType::Int32, InputData::Int(a)) => {
                Tensor::from_array(a.mapv(|v| v as i32))
                    .map_err(run_err)?
                    .upcast()
            }
            (TensorElementType::Int64, InputData::Float(a)) => {
                Tensor::from_array(a.mapv(|v| v as i64))
                    .map_err(run_err)?
                    .upcast()
            }
            _ => return Err(unsupported()),
        };
        Ok(value)
    }
}

fn run_error(path: &Path) -> impl Fn(ort::Error) -> OnnxError + '_ {
    move |e| OnnxError::Run {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Every output as f32 on the host (outputs bound in device memory are copied back first).
fn outputs_to_f32(outputs: &SessionOutputs<'_>) -> Result<Vec<ArrayD<f32>>, ort::Error> {
    outputs
        .iter()
        .map(|(_, value)| {
            let tensor = value.downcast::<DynTensorValueType>()?;
            if tensor.memory_info().is_cpu_accessible() {
                value_to_f32(&tensor)
            } else {
                value_to_f32(&tensor.to(AllocationDevice::CPU, 0)?)
            }
        })
        .collect()
}

fn value_to_f32<T: TensorValueTypeMarker + ?Sized>(
    value: &Value<T>,
) -> Result<ArrayD<f32>, ort::Error> {
    if let Ok(view) = value.try_extract_array::<f32>() {
        return Ok(view.to_owned());
    }
    let view = value.try_extract_array::<f16>()?;
    Ok(view.mapv(f16::to_f32))
}

/// Reshape helper: an owned dynamic array from a shape and data.
pub fn array(shape: &[usize], data: Vec<f32>) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), data).expect("shape matches data length")
}
