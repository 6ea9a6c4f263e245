//! `livefill serve`: load the model once, warm it up, and serve plugins on the local socket.
//!
//! Exists as the daemon's entry point: it resolves the model (`--model`, else `model = "..."` in
//! `$XDG_CONFIG_HOME/livefill/config.toml`) and the socket (`--socket`, else `LIVEFILL_SOCKET`,
//! else the protocol's default path), claims the socket *before* the slow model load (so a second
//! daemon fails fast with "livefill is already running on <path>"), loads and warms up the
//! engine, and hands everything to `server::serve` on a multi-thread tokio runtime.
//! [`run_daemon`] is the same thing as a function, used in process by `livefill demo`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use livefill_protocol::{DEFAULT_MAX_PAYLOAD, ModelInfo, default_socket_path};
use ort::value::TensorElementType;

use super::runtime_args::RuntimeArgs;
use crate::config;
use crate::engine::{Engine, EngineOptions};
use crate::generator::ImageGenerator;
use crate::models::locate;
use crate::paths::{self, ProcessEnv};
use crate::server::{ServerOptions, Shutdown, SocketListener};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Model folder (optimum's or diffusers' legacy ONNX layout), or the name of a model fetched
    /// with `livefill models fetch` (e.g. lcm-dreamshaper-v7). Default: `model = "..."` in
    /// $XDG_CONFIG_HOME/livefill/config.toml (~/.config/livefill/config.toml).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Socket path. Default: $LIVEFILL_SOCKET, else $XDG_RUNTIME_DIR/livefill.sock, else
    /// /tmp/livefill-<uid>/livefill.sock.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Largest accepted image side in pixels.
    #[arg(long, default_value_t = 8192)]
    pub max_image_side: u32,
    /// Largest accepted frame payload in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_PAYLOAD)]
    pub max_frame_bytes: u32,
}

/// Everything needed to run a daemon.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub engine: EngineOptions,
    pub socket: PathBuf,
    pub max_frame_bytes: u32,
}

impl ServeArgs {
    pub fn settings(&self) -> anyhow::Result<DaemonSettings> {
        let model = match &self.model {
            Some(model) => model.clone(),
            None => model_from_config()?,
        };
        let model = locate::resolve_model(&model, &ProcessEnv)?;
        Ok(DaemonSettings {
            engine: EngineOptions {
                model,
                runtime: self.runtime.options()?,
                max_image_side: self.max_image_side,
            },
            socket: self.socket.clone().unwrap_or_else(default_socket_path),
            max_frame_bytes: self.max_frame_bytes,
        })
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    run_daemon(settings, Shutdown::new(), true, || {})
}

/// Runs a daemon until `shutdown` is raised (or SIGINT/SIGTERM when `handle_signals`).
/// `on_ready` is called once the model is loaded and warmed up, just before connections are
/// served.
pub fn run_daemon(
    settings: DaemonSettings,
    shutdown: Shutdown,
    handle_signals: bool,
    on_ready: impl FnOnce(),
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("livefill-io")
        .build()
        .context("starting the tokio runtime")?;
    let listener = {
        let _context = runtime.enter();
        SocketListener::bind(&settings.socket)?
    };
    let engine = match load_engine(&settings.engine) {
        Ok(engine) => engine,
        Err(e) => {
            let _context = runtime.enter();
            drop(listener);
            return Err(e);
        }
    };
    let models = vec![model_info(&engine)];
    let options = ServerOptions {
        max_frame_bytes: settings.max_frame_bytes,
        max_image_side: settings.engine.max_image_side,
        models,
    };
    let served = runtime.block_on(async {
        if handle_signals {
            shutdown
                .trigger_on_signals()
                .context("installing signal handlers")?;
        }
        on_ready();
        crate::server::serve(listener, Box::new(engine), options, shutdown)
            .await
            .map_err(anyhow::Error::from)
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

fn load_engine(options: &EngineOptions) -> anyhow::Result<Engine> {
    let mut engine = Engine::load(options)
        .with_context(|| format!("loading model {}", options.model.display()))?;
    let warm_start = Instant::now();
    engine.warm_up().context("warming up the model")?;
    let info = engine.info();
    tracing::info!(
        model = %info.model,
        path = %options.model.display(),
        device = %info.device,
        provider = %info.execution_provider,
        load_ms = engine.load_time.as_millis() as u64,
        warm_up_ms = warm_start.elapsed().as_millis() as u64,
        "model loaded and warmed up"
    );
    Ok(engine)
}

/// What `ListModels` reports about the loaded model.
pub fn model_info(engine: &Engine) -> ModelInfo {
    let components = &engine.components;
    let dir = &components.dir;
    ModelInfo {
        name: dir.name.clone(),
        path: std::fs::canonicalize(&dir.root)
            .unwrap_or_else(|_| dir.root.clone())
            .display()
            .to_string(),
        unet_in_channels: dir.unet_config.in_channels as u32,
        lcm_distilled: dir.unet_config.time_cond_proj_dim.is_some(),
        dtype: match components.unet.float_type() {
            TensorElementType::Float16 => "fp16",
            _ => "fp32",
        }
        .to_string(),
        taesd: components.taesd_decoder.is_some(),
        loaded: true,
        roles: Vec::new(),
        weight_bytes: 0,
        shared_bytes: 0,
        load_error: String::new(),
    }
}

fn model_from_config() -> anyhow::Result<PathBuf> {
    let env = ProcessEnv;
    let Some(path) = paths::config_file(&env) else {
        bail!(
            "no model given: pass --model DIR (no config file could be looked for: neither \
             XDG_CONFIG_HOME nor HOME is set)"
        );
    };
    let Some(config) = config::load(&env)? else {
        bail!(
            "no model given: pass --model DIR, or put `model = \"/path/to/model\"` in {} \
             (looked there, it does not exist)",
            path.display()
        );
    };
    match config.model {
        Some(model) => Ok(model),
        None => bail!(
            "no model given: pass --model DIR, or add `model = \"/path/to/model\"` to {} \
             (it has no `model` key)",
            config.file.display()
        ),
    }
}
