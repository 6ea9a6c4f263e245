//! The ONNX Runtime level: the runtime library, one session per graph, and the model folder the
//! graphs come from.
//!
//! Exists so everything that knows about ONNX — where the library is and which execution
//! provider runs it (`runtime`), a session that converts tensors to what its graph declares
//! (`session`), the on-disk layout (`model_dir`) with its configs parsed once into typed values
//! (`configs`; `legacy_layout` recovers them for diffusers' legacy exports, which have none),
//! a cheap header reader for checks without a session (`header`), and the inputs each component
//! of an SD pipeline must have (`contract`) — sits below the schedulers and pipelines that use
//! it, and imports nothing above it.

pub mod configs;
pub mod contract;
pub mod header;
pub mod legacy_layout;
pub mod model_dir;
pub mod runtime;
pub mod session;
