//! `livefill serve`: load the model once, warm it up, and serve plugins on the local socket.
//!
//! Exists as the daemon's entry point: it resolves the model (`--model`, else `model = "..."` in
//! `$XDG_CONFIG_HOME/livefill/config.toml`) and the socket (`--socket`, else `LIVEFILL_SOCKET`,
//! else the protocol's default path), claims the socket *before* the slow model load (so a second
//! daemon fails fast with "livefill is already running on <path>"), loads and warms up the
//! engine, and hands everything to `server::serve` on a multi-thread tokio runtime.
//! [`run_daemon`] is the same thing as a function, used in process by `livefill demo`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use livefill_protocol::{DEFAULT_MAX_PAYLOAD, ModelInfo, default_socket_path};
use ort::value::TensorElementType;

use super::runtime_args::RuntimeArgs;
use crate::engine::{Engine, EngineOptions};
use crate::generator::ImageGenerator;
use crate::server::{ServerOptions, Shutdown, SocketListener};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Model folder (optimum ONNX layout). Default: `model = "..."` in
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
    }
}

/// Where the config file is looked for: `$XDG_CONFIG_HOME/livefill/config.toml`, or
/// `$HOME/.config/livefill/config.toml` when `XDG_CONFIG_HOME` is unset.
pub fn config_path() -> Option<PathBuf> {
    let non_empty = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
    let base = non_empty("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("livefill").join("config.toml"))
}

fn model_from_config() -> anyhow::Result<PathBuf> {
    let Some(path) = config_path() else {
        bail!(
            "no model given: pass --model DIR (no config file could be looked for: neither \
             XDG_CONFIG_HOME nor HOME is set)"
        );
    };
    if !path.is_file() {
        bail!(
            "no model given: pass --model DIR, or put `model = \"/path/to/model\"` in {} \
             (looked there, it does not exist)",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    match config_value(&text, "model").with_context(|| format!("parsing {}", path.display()))? {
        Some(model) => Ok(resolve_config_path(&model, &path)),
        None => bail!(
            "no model given: pass --model DIR, or add `model = \"/path/to/model\"` to {} \
             (it has no `model` key)",
            path.display()
        ),
    }
}

/// `~/x` is taken from `$HOME`, a relative path from the config file's folder.
fn resolve_config_path(value: &str, config: &Path) -> PathBuf {
    if let Some(rest) = value.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    let path = PathBuf::from(value);
    if path.is_relative() {
        config.parent().unwrap_or(Path::new(".")).join(path)
    } else {
        path
    }
}

/// The value of top-level `key = value` in a TOML-ish file: `#` comments, blank lines and
/// `[sections]` (whose keys are not top-level) are skipped; the value is a basic string
/// (`"..."` with `\"` and `\\` escapes), a literal string (`'...'`) or a bare word.
pub fn config_value(text: &str, key: &str) -> anyhow::Result<Option<String>> {
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            // Everything after a table header belongs to that table.
            return Ok(None);
        }
        let Some((name, value)) = line.split_once('=') else {
            bail!("line {}: expected `key = value`", number + 1);
        };
        if name.trim() != key {
            continue;
        }
        return parse_value(value.trim())
            .map(Some)
            .with_context(|| format!("line {}: bad value for `{key}`", number + 1));
    }
    Ok(None)
}

fn parse_value(value: &str) -> anyhow::Result<String> {
    if let Some(body) = value.strip_prefix('\'') {
        let end = body.find('\'').context("unterminated '...' string")?;
        return Ok(body[..end].to_string());
    }
    if let Some(body) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Ok(out),
                '\\' => match chars.next() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    other => bail!("unsupported escape \\{}", other.unwrap_or(' ')),
                },
                c => out.push(c),
            }
        }
        bail!("unterminated \"...\" string");
    }
    let bare = value.split('#').next().unwrap_or("").trim();
    if bare.is_empty() {
        bail!("empty value");
    }
    Ok(bare.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values() {
        let text = "# livefill\n\nsocket = '/tmp/x'\nmodel = \"/m/a \\\"b\\\"\" # comment\n[other]\nmodel = \"no\"\n";
        assert_eq!(
            config_value(text, "model").unwrap().as_deref(),
            Some("/m/a \"b\"")
        );
        assert_eq!(
            config_value(text, "socket").unwrap().as_deref(),
            Some("/tmp/x")
        );
        assert_eq!(config_value("[t]\nmodel = 'x'\n", "model").unwrap(), None);
        assert_eq!(
            config_value("model = bare/path # c\n", "model")
                .unwrap()
                .as_deref(),
            Some("bare/path")
        );
        assert!(config_value("model = \"open\n", "model").is_err());
        assert!(config_value("garbage\n", "model").is_err());
    }

    #[test]
    fn relative_config_paths_resolve_next_to_the_file() {
        assert_eq!(
            resolve_config_path(
                "models/sd",
                Path::new("/home/u/.config/livefill/config.toml")
            ),
            PathBuf::from("/home/u/.config/livefill/models/sd")
        );
        assert_eq!(
            resolve_config_path("/abs", Path::new("/c/config.toml")),
            PathBuf::from("/abs")
        );
    }
}
