//! Models on disk and on the hub: find them, describe them, check them, fetch them, export them.
//!
//! Exists so everything about *model folders* that is not inference lives in one place:
//! `catalog` (the models known by name, and the default one), `inspect` (kind of a folder: 4/9-ch UNet, LCM-distilled or not, fp16/fp32, TAESD; a
//! structural check of every graph without ONNX Runtime, through `onnx::header`), `locate` (HF
//! cache, config file), `hub` (`models fetch` with `hf-hub`, verified against the hub's
//! checksums) and `export` (`models export`: the pinned Python exporter and its venv).

pub mod catalog;
pub mod export;
pub mod hub;
pub mod inspect;
pub mod locate;
