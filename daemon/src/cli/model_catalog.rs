//! The models `livefill serve` is given, checked and described before any is loaded.
//!
//! Exists so `serve` (and `demo`) turn `--model` values and the config file's `model` / `models`
//! into one catalog the same way: each value is resolved (a folder, a hub snapshot folder, or a
//! catalog name fetched with `livefill models fetch`), checked without ONNX Runtime
//! (`models::inspect`: every graph present and not truncated), described (`engine::describe_dir`)
//! and named uniquely. A value that does not check out stays in the catalog with its problem, so
//! `ListModels` shows it and a request for it gets that problem as its error; the daemon serves
//! the others. The first model that loads becomes the default.

use std::path::{Path, PathBuf};

use livefill_protocol::ModelInfo;

use crate::engine::describe_dir;
use crate::generator::GeneratorInfo;
use crate::jobs::ModelEntry;
use crate::models::{inspect, locate};
use crate::onnx::model_dir::ModelDir;
use crate::paths::ProcessEnv;

/// Every model value, command line first, then the config file's (`model`, then `models`),
/// without repeats (the same folder given twice is one model).
pub fn model_values(command_line: &[PathBuf], config: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for value in command_line.iter().chain(config) {
        let same =
            |p: &PathBuf| p == value || canonical(p).is_some_and(|c| Some(c) == canonical(value));
        if !out.iter().any(same) {
            out.push(value.clone());
        }
    }
    out
}

fn canonical(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

/// Checks and describes every value; `device`/`provider` fill the descriptions (they are the
/// default model's, known once it is loaded).
pub fn entries(values: &[PathBuf], device: &str, provider: &str) -> Vec<ModelEntry> {
    let mut entries: Vec<ModelEntry> = values
        .iter()
        .map(|value| entry(value, device, provider))
        .collect();
    make_names_unique(&mut entries);
    entries
}

fn entry(value: &Path, device: &str, provider: &str) -> ModelEntry {
    let path = match locate::resolve_model(value, &ProcessEnv) {
        Ok(path) => path,
        Err(not_fetched) => return broken(value, value, not_fetched.to_string()),
    };
    let summary = match inspect::inspect(&path) {
        Ok(summary) => summary,
        Err(e) => return broken(value, &path, e.to_string()),
    };
    let info: Option<GeneratorInfo> = ModelDir::open(&path)
        .ok()
        .map(|dir| describe_dir(&dir, device, provider));
    let mut listing = summary.to_model_info(false);
    listing.path = display_path(&path);
    ModelEntry {
        name: summary.name.clone(),
        path,
        problem: info
            .is_none()
            .then(|| "the model folder did not open".to_string()),
        info,
        listing,
        weight_bytes: summary.bytes,
    }
}

/// A value that cannot be served: listed with its problem.
fn broken(value: &Path, path: &Path, problem: String) -> ModelEntry {
    let name = value
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| value.display().to_string());
    ModelEntry {
        name: name.clone(),
        path: path.to_path_buf(),
        info: None,
        listing: ModelInfo {
            load_error: problem.clone(),
            ..ModelInfo::new(name, display_path(path))
        },
        weight_bytes: 0,
        problem: Some(problem),
    }
}

fn display_path(path: &Path) -> String {
    canonical(path)
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// Two folders of the same name (e.g. two snapshots called `onnx`) get `-2`, `-3`, … appended.
fn make_names_unique(entries: &mut [ModelEntry]) {
    let mut seen: Vec<String> = Vec::new();
    for entry in entries.iter_mut() {
        let mut name = entry.name.clone();
        let mut n = 2;
        while seen.contains(&name) {
            name = format!("{}-{n}", entry.name);
            n += 1;
        }
        entry.name = name.clone();
        entry.listing.name = name.clone();
        if let Some(info) = entry.info.as_mut() {
            info.model = name.clone();
        }
        seen.push(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_order_without_repeats() {
        let a = PathBuf::from("/nonexistent/a");
        let b = PathBuf::from("/nonexistent/b");
        assert_eq!(
            model_values(&[a.clone(), b.clone()], &[b.clone(), a.clone()]),
            vec![a, b]
        );
    }

    #[test]
    fn a_missing_folder_is_listed_with_its_problem_and_names_stay_unique() {
        let values = [PathBuf::from("/nonexistent/m"), PathBuf::from("/other/m")];
        let entries = entries(&values, "cpu", "CPUExecutionProvider");
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["m", "m-2"]);
        for e in &entries {
            let problem = e.problem.as_deref().expect("missing folder");
            assert!(
                problem.contains("/nonexistent/m") || problem.contains("/other/m"),
                "{problem}"
            );
            assert_eq!(e.listing.load_error, problem);
        }
    }
}
