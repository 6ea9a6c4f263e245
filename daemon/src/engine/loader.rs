//! Loads model folders as engines for a daemon serving several models.
//!
//! Exists to give the job layer's model set (`jobs::ModelSet`) one [`GeneratorLoader`]: every
//! engine of a daemon is loaded with the same runtime settings and one [`SharedParts`] cache, so a
//! text encoder, VAE, TAESD or tokenizer that is byte-identical across models is loaded once. A
//! load reports each component (the `ModelLoading` messages) and ends with a warm-up run, and its
//! error names the model folder and the file.

use std::path::Path;
use std::sync::Mutex;

use super::{Engine, EngineError, EngineOptions};
use crate::generator::{GeneratorLoader, ImageGenerator, LoadStep};
use crate::onnx::runtime::RuntimeOptions;
use crate::pipelines::shared::SharedParts;

/// The daemon's loader: one runtime configuration, one cache of shared parts.
pub struct EngineLoader {
    runtime: RuntimeOptions,
    max_image_side: u32,
    shared: Mutex<SharedParts>,
}

impl EngineLoader {
    pub fn new(runtime: RuntimeOptions, max_image_side: u32) -> Self {
        Self {
            runtime,
            max_image_side,
            shared: Mutex::new(SharedParts::default()),
        }
    }

    /// Loads and warms up the model at `path` (the daemon's default model at start, every other
    /// one on first use).
    pub fn load_engine(
        &self,
        path: &Path,
        on_step: &mut dyn FnMut(LoadStep),
    ) -> Result<Engine, EngineError> {
        let options = EngineOptions {
            model: path.to_path_buf(),
            runtime: self.runtime.clone(),
            max_image_side: self.max_image_side,
        };
        let mut on_part = |step: u32, total: u32, component: &str| {
            on_step(LoadStep {
                step,
                total,
                component: component.to_string(),
            })
        };
        let mut engine = Engine::load_sharing(&options, &self.shared, &mut on_part)?;
        let warm_start = std::time::Instant::now();
        engine.warm_up()?;
        let info = engine.info();
        tracing::info!(
            model = %info.model,
            path = %path.display(),
            device = %info.device,
            provider = %info.execution_provider,
            load_ms = engine.load_time.as_millis() as u64,
            warm_up_ms = warm_start.elapsed().as_millis() as u64,
            "model loaded and warmed up"
        );
        Ok(engine)
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, SharedParts> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl GeneratorLoader for EngineLoader {
    fn load(
        &self,
        path: &Path,
        on_step: &mut dyn FnMut(LoadStep),
    ) -> Result<Box<dyn ImageGenerator>, String> {
        self.load_engine(path, on_step)
            .map(|engine| Box::new(engine) as Box<dyn ImageGenerator>)
            .map_err(|e| match e {
                // Already names the model folder.
                EngineError::Load { .. } => e.to_string(),
                other => format!("{}: {other}", path.display()),
            })
    }

    fn shared_bytes(&self, path: &Path) -> u64 {
        self.shared().shared_bytes(path)
    }

    fn shared_savings(&self) -> u64 {
        self.shared().savings()
    }
}
