//! `livefill serve`: load the default model, warm it up, and serve plugins on the local socket;
//! the other models load on first use.
//!
//! Exists as the daemon's entry point: it gathers the models (`--model`, repeatable, then
//! `model = "..."` and `models = [...]` of `$XDG_CONFIG_HOME/livefill/config.toml`; see
//! `model_catalog`) and the socket (`--socket`, else `LIVEFILL_SOCKET`, else the protocol's
//! default path), claims the socket *before* the slow model load (so a second daemon fails fast
//! with "livefill is already running on <path>"), loads and warms up the first model that loads
//! (the default), sets the memory budget (`--max-resident`, else derived from the memory left
//! free after that load), and hands everything to `server::serve` on a multi-thread tokio
//! runtime. [`run_daemon`] is the same thing as a function, used in process by `livefill demo`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use livefill_protocol::{DEFAULT_MAX_PAYLOAD, default_socket_path};

use super::model_catalog;
use super::runtime_args::RuntimeArgs;
use crate::config;
use crate::engine::Engine;
use crate::engine::loader::EngineLoader;
use crate::generator::{ImageGenerator, LoadStep};
use crate::jobs::{Catalog, MemoryBudget, MemoryDevice, ModelEntry, free_device_memory};
use crate::models::inspect::human_bytes;
use crate::onnx::runtime::{ResolvedDevice, RuntimeOptions};
use crate::paths::{self, ProcessEnv};
use crate::server::{
    DEFAULT_MAX_CLIENTS, FRAME_TIMEOUT, HELLO_TIMEOUT, ServerLimits, ServerOptions, Shutdown,
    SocketListener,
};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Model folder (optimum's or diffusers' legacy ONNX layout, or a hub snapshot folder), or
    /// the name of a model fetched with `livefill models fetch` (e.g. lcm-dreamshaper-v7).
    /// Repeat it to serve several models; the first that loads is the default. The config file's
    /// `model` and `models` are served too ($XDG_CONFIG_HOME/livefill/config.toml,
    /// ~/.config/livefill/config.toml).
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// Socket path. Default: $LIVEFILL_SOCKET, else $XDG_RUNTIME_DIR/livefill.sock, else
    /// /tmp/livefill-<uid>/livefill.sock.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// How many models stay resident: a count (`2`) or a size of weights (`6GiB`, `6G`,
    /// `512MiB`); the least recently used model is unloaded beyond it. Default: 60% of the
    /// memory free on the device once the default model is loaded.
    #[arg(long)]
    pub max_resident: Option<MemoryBudget>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Largest accepted image side in pixels.
    #[arg(long, default_value_t = 8192)]
    pub max_image_side: u32,
    /// Largest accepted frame payload in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_PAYLOAD)]
    pub max_frame_bytes: u32,
    /// Most clients served at once; the next one is told `too_many_connections`.
    #[arg(long, default_value_t = DEFAULT_MAX_CLIENTS)]
    pub max_connections: u32,
    /// Seconds a frame may take to arrive once its first byte did (and a new connection to send
    /// its hello, at most 10 s); a client stalled longer is disconnected.
    #[arg(long, default_value_t = FRAME_TIMEOUT.as_secs_f64())]
    pub frame_timeout: f64,
}

/// Everything needed to run a daemon.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Model values (folders, snapshot folders, catalog names), the default's candidates first.
    pub models: Vec<PathBuf>,
    pub runtime: RuntimeOptions,
    pub max_image_side: u32,
    /// `None` = derived from free memory.
    pub budget: Option<MemoryBudget>,
    pub socket: PathBuf,
    pub max_frame_bytes: u32,
    pub max_connections: u32,
    pub frame_timeout: Duration,
}

impl ServeArgs {
    pub fn settings(&self) -> anyhow::Result<DaemonSettings> {
        let from_config = models_from_config(self.model.is_empty())?;
        Ok(DaemonSettings {
            models: model_catalog::model_values(&self.model, &from_config),
            runtime: self.runtime.options()?,
            max_image_side: self.max_image_side,
            budget: self.max_resident,
            socket: self.socket.clone().unwrap_or_else(default_socket_path),
            max_frame_bytes: self.max_frame_bytes,
            max_connections: self.max_connections,
            frame_timeout: frame_timeout(self.frame_timeout)?,
        })
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    raise_open_file_limit();
    run_daemon(settings, Shutdown::new(), true, || {})
}

fn frame_timeout(seconds: f64) -> anyhow::Result<Duration> {
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--frame-timeout {seconds}: give a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Every connection is a file descriptor: lift the soft limit (1024 on most systems) to the
/// hard one, so the connection limits (`server::limits`) are what bounds clients, not `EMFILE`.
fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                let wanted = libc::rlimit {
                    rlim_cur: limit.rlim_max.min(65536),
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                    tracing::debug!(
                        from = limit.rlim_cur,
                        to = wanted.rlim_cur,
                        "open file limit raised"
                    );
                }
            }
        }
    }
}

/// Runs a daemon until `shutdown` is raised (or SIGINT/SIGTERM when `handle_signals`).
/// `on_ready` is called once the default model is loaded and warmed up, just before
/// connections are served.
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
    let catalog = match build_catalog(&settings) {
        Ok(catalog) => catalog,
        Err(e) => {
            let _context = runtime.enter();
            drop(listener);
            return Err(e);
        }
    };
    let options = ServerOptions {
        max_frame_bytes: settings.max_frame_bytes,
        max_image_side: settings.max_image_side,
        limits: ServerLimits {
            max_clients: settings.max_connections,
            frame_timeout: settings.frame_timeout,
            hello_timeout: settings.frame_timeout.min(HELLO_TIMEOUT),
            ..ServerLimits::default()
        },
    };
    let served = runtime.block_on(async {
        if handle_signals {
            shutdown
                .trigger_on_signals()
                .context("installing signal handlers")?;
        }
        on_ready();
        crate::server::serve(listener, catalog, options, shutdown)
            .await
            .map_err(anyhow::Error::from)
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

/// Checks every model, loads the first that loads as the default, and sets the budget.
fn build_catalog(settings: &DaemonSettings) -> anyhow::Result<Catalog> {
    // The runtime first: a missing or wrong library is one error, not one per model.
    crate::onnx::runtime::init_runtime(&settings.runtime)?;
    let loader = EngineLoader::new(settings.runtime.clone(), settings.max_image_side);
    let mut entries = model_catalog::entries(&settings.models, "", "");
    let (default, engine) = load_default(&loader, &mut entries)?;
    let info = engine.info();
    let device = &engine.runtime.device;
    for entry in &mut entries {
        if let Some(i) = entry.info.as_mut() {
            i.device = info.device.clone();
            i.execution_provider = info.execution_provider.clone();
        }
    }
    let budget = settings.budget.unwrap_or_else(|| {
        let memory = match device {
            ResolvedDevice::Cuda(index) => MemoryDevice::Gpu(*index),
            ResolvedDevice::Cpu { .. } => MemoryDevice::Ram,
        };
        match free_device_memory(memory) {
            Some(free) => MemoryBudget::derived(Some(free)).plus(entries[default].weight_bytes),
            None => MemoryBudget::derived(None),
        }
    });
    log_catalog(&entries, default, &budget);
    Ok(Catalog {
        entries,
        default,
        default_generator: Box::new(engine),
        budget,
        loader: std::sync::Arc::new(loader),
    })
}

/// Loads the first model that loads; the ones before it keep their error.
fn load_default(
    loader: &EngineLoader,
    entries: &mut [ModelEntry],
) -> anyhow::Result<(usize, Engine)> {
    if entries.is_empty() {
        bail!("no model given: pass --model DIR (or a model name from `livefill models list`)");
    }
    let mut failures = Vec::new();
    for (index, entry) in entries.iter_mut().enumerate() {
        if let Some(problem) = &entry.problem {
            failures.push(format!("{}: {problem}", entry.name));
            continue;
        }
        let mut on_step = |step: LoadStep| {
            tracing::debug!(step = step.step, total = step.total, component = %step.component, "loading");
        };
        match loader.load_engine(&entry.path, &mut on_step) {
            Ok(engine) => return Ok((index, engine)),
            Err(e) => {
                tracing::error!(model = %entry.name, error = %e, "model failed to load; trying the next");
                failures.push(format!("{}: {e}", entry.name));
                entry.listing.load_error = e.to_string();
                entry.problem = Some(e.to_string());
            }
        }
    }
    bail!("no model could be loaded:\n  {}", failures.join("\n  "))
}

fn log_catalog(entries: &[ModelEntry], default: usize, budget: &MemoryBudget) {
    for (i, entry) in entries.iter().enumerate() {
        let state = match (&entry.problem, i == default) {
            (Some(problem), _) => format!("cannot be served: {problem}"),
            (None, true) => "default, resident".to_string(),
            (None, false) => "loads on first use".to_string(),
        };
        tracing::info!(
            model = %entry.name,
            path = %entry.path.display(),
            weights = %human_bytes(entry.weight_bytes),
            "{state}"
        );
    }
    tracing::info!(%budget, "memory budget for resident models");
}

/// The config file's models (`model`, then `models`). With no `--model` (`required`) a missing
/// config file or an empty one is an error saying where to put one.
fn models_from_config(required: bool) -> anyhow::Result<Vec<PathBuf>> {
    let env = ProcessEnv;
    let found = config::load(&env)?;
    let models = found
        .as_ref()
        .map(|c| c.model_folders())
        .unwrap_or_default();
    if required && models.is_empty() {
        model_from_config()?;
    }
    Ok(models)
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
