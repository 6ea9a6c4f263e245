//! One ONNX Runtime session plus what its graph expects.
//!
//! Exists so pipelines never hard-code tensor names, element types or ranks: they hand over f32 /
//! i64 arrays by *role* and this module converts them to what the graph declares (f16 or f32,
//! int32 or int64, rank 0 or rank 1 timesteps), and converts outputs back to f32.
//!
//! Inputs that stay the same over many runs (the UNet's text embeddings during a job) can be
//! bound once with [`OnnxModel::bind`] (ONNX Runtime's IO binding): converted once, and on a GPU
//! copied to the device once instead of on every run.
//!
//! Each model also adds up the wall time spent inside ONNX Runtime's `Run` alone
//! ([`OnnxModel::take_run_time`]), so benchmarks can tell ONNX Runtime's time from livefill's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use half::f16;
use ndarray::{ArrayD, IxDyn};
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{IoBinding, Session, SessionOutputs};
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use super::runtime::Runtime;

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
}

/// Inputs bound to a graph once and reused by every [`OnnxModel::run_bound`] until rebound;
/// every output comes back in host memory.
pub struct Binding {
    io: IoBinding,
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
        let load_err = |reason: String| OnnxError::Load {
            path: path.to_path_buf(),
            reason,
        };
        let mut builder = Session::builder(&runtime.environment)
            .map_err(|e| load_err(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| load_err(e.to_string()))?;
        if let Some(threads) = runtime.intra_threads {
            builder = builder
                .with_intra_threads(threads)
                .map_err(|e| load_err(e.to_string()))?;
        }
        let providers = runtime.device.execution_providers();
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
            match crate::models::onnx_info::read_signature(path) {
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
                available: self
                    .inputs
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
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
            values.push((spec.name.clone(), self.to_value(&spec, data)?));
        }
        let start = Instant::now();
        let outputs = self.session.run(values).map_err(run_error(&self.path))?;
        self.run_time += start.elapsed();
        outputs_to_f32(&outputs).map_err(run_error(&self.path))
    }

    /// A new IO binding on this graph with every output bound to host memory.
    pub fn bind(&self) -> Result<Binding, OnnxError> {
        let mut io = self
            .session
            .create_binding()
            .map_err(run_error(&self.path))?;
        let host = MemoryInfo::new(
            AllocationDevice::CPU,
            0,
            AllocatorType::Device,
            MemoryType::Default,
        )
        .map_err(run_error(&self.path))?;
        for output in &self.outputs {
            io.bind_output_to_device(output.name.clone(), &host)
                .map_err(run_error(&self.path))?;
        }
        Ok(Binding { io })
    }

    /// Convert `data` to the input's declared type and bind it (on a GPU session ONNX Runtime
    /// copies it to the device now, once, not at every run).
    pub fn bind_input(
        &self,
        binding: &mut Binding,
        name: &str,
        data: InputData,
    ) -> Result<(), OnnxError> {
        let spec = self.input_named_any(&[name])?;
        let value = self.to_value(spec, data)?;
        binding
            .io
            .bind_input(spec.name.clone(), &value)
            .map_err(run_error(&self.path))
    }

    /// Run on the bound inputs; returns every output as f32, in declaration order.
    pub fn run_bound(&mut self, binding: &Binding) -> Result<Vec<ArrayD<f32>>, OnnxError> {
        let start = Instant::now();
        let outputs = self
            .session
            .run_binding(&binding.io)
            .map_err(run_error(&self.path))?;
        self.run_time += start.elapsed();
        outputs_to_f32(&outputs).map_err(run_error(&self.path))
    }

    fn to_value(&self, spec: &TensorSpec, data: InputData) -> Result<DynValue, OnnxError> {
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
                Tensor::from_array(a).map_err(run_err)?.into_dyn()
            }
            (TensorElementType::Float16, InputData::Float(a)) => {
                Tensor::from_array(a.mapv(f16::from_f32))
                    .map_err(run_err)?
                    .into_dyn()
            }
            (TensorElementType::Float32, InputData::Int(a)) => {
                Tensor::from_array(a.mapv(|v| v as f32))
                    .map_err(run_err)?
                    .into_dyn()
            }
            (TensorElementType::Float16, InputData::Int(a)) => {
                Tensor::from_array(a.mapv(|v| f16::from_f32(v as f32)))
                    .map_err(run_err)?
                    .into_dyn()
            }
            (TensorElementType::Int64, InputData::Int(a)) => {
                Tensor::from_array(a).map_err(run_err)?.into_dyn()
            }
            (TensorElementType::Int32, InputData::Int(a)) => {
                Tensor::from_array(a.mapv(|v| v as i32))
                    .map_err(run_err)?
                    .into_dyn()
            }
            (TensorElementType::Int64, InputData::Float(a)) => {
                Tensor::from_array(a.mapv(|v| v as i64))
                    .map_err(run_err)?
                    .into_dyn()
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

fn outputs_to_f32(outputs: &SessionOutputs<'_>) -> Result<Vec<ArrayD<f32>>, ort::Error> {
    outputs
        .iter()
        .map(|(_, value)| value_to_f32(&value))
        .collect()
}

fn value_to_f32(value: &ort::value::DynValueRef<'_>) -> Result<ArrayD<f32>, ort::Error> {
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
