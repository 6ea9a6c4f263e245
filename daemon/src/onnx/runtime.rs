//! Finding, fetching and initialising ONNX Runtime.
//!
//! Exists because `ort` is built with `load-dynamic`: livefill never links ONNX Runtime and never
//! downloads it from anywhere but PyPI. The library is taken, in order, from an explicit path
//! (`--ort-lib` / `ORT_DYLIB_PATH`), from next to the `livefill` binary, or from livefill's cache,
//! which is filled on first use by `pip download`-ing the `onnxruntime` wheel (`onnxruntime-gpu`
//! where an NVIDIA GPU is present) and unpacking its `libonnxruntime.so`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProviderDispatch};

use crate::paths::{self, Env, ProcessEnv};

/// The ONNX Runtime release livefill is built against (`ort` 2.0.0-rc.15 needs ≥ 1.31).
pub const ORT_VERSION: &str = "1.31.1";

/// Where inference runs, as asked by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// CUDA when an NVIDIA GPU and a CUDA-capable ONNX Runtime are present, CPU otherwise (said
    /// loudly in the log and the hello, never silently).
    Auto,
    Cpu,
    Cuda(i32),
}

impl std::str::FromStr for DeviceRequest {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|id| id.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| RuntimeError::BadDevice(other.to_string())),
        }
    }
}

/// Which flavour of the PyPI wheel to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrtFlavor {
    Cpu,
    Gpu,
}

impl OrtFlavor {
    fn package(self) -> &'static str {
        match self {
            OrtFlavor::Cpu => "onnxruntime",
            OrtFlavor::Gpu => "onnxruntime-gpu",
        }
    }
    fn dir_name(self) -> &'static str {
        match self {
            OrtFlavor::Cpu => "cpu",
            OrtFlavor::Gpu => "gpu",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("unknown device {0:?}: use auto, cpu, cuda or cuda:N")]
    BadDevice(String),
    #[error(
        "could not fetch ONNX Runtime {version} ({package}) with pip: {reason}\n\
         Install it by hand (`python3 -m pip download --no-deps {package}=={version}` and unzip \
         `onnxruntime/capi/libonnxruntime.so*`), then set ORT_DYLIB_PATH to the library"
    )]
    Fetch {
        package: &'static str,
        version: &'static str,
        reason: String,
    },
    #[error(
        "could not load ONNX Runtime from {path}: {reason}. Point --ort-lib (or ORT_DYLIB_PATH) \
         at the libonnxruntime.so of the onnxruntime {ORT_VERSION} wheel (onnxruntime-gpu for \
         CUDA), or unset both and livefill fetches it with pip"
    )]
    Load { path: PathBuf, reason: String },
    #[error("ONNX Runtime environment: {0}")]
    Environment(String),
}

/// An initialised ONNX Runtime plus the execution provider sessions should use.
pub struct Runtime {
    pub environment: Environment,
    pub library_path: PathBuf,
    pub version: String,
    pub device: ResolvedDevice,
    pub intra_threads: Option<usize>,
    /// Capture the UNet's live-preview runs as CUDA graphs (CUDA only; see `pipelines::unet_buffers`).
    pub cuda_graph: bool,
    /// Let ONNX Runtime's intra-op threads busy-wait between runs (its default; off here).
    pub ort_spinning: bool,
}

/// The device actually used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedDevice {
    Cpu { reason: Option<String> },
    Cuda(i32),
}

impl ResolvedDevice {
    /// ONNX Runtime's name for the execution provider.
    pub fn provider_name(&self) -> &'static str {
        match self {
            ResolvedDevice::Cpu { .. } => "CPUExecutionProvider",
            ResolvedDevice::Cuda(_) => "CUDAExecutionProvider",
        }
    }
    /// Human description, e.g. "cuda:0" or "cpu".
    pub fn describe(&self) -> String {
        match self {
            ResolvedDevice::Cpu { .. } => "cpu".to_string(),
            ResolvedDevice::Cuda(id) => format!("cuda:{id}"),
        }
    }
    /// Execution providers to register on a session (empty = CPU only); `graph_capture` enables
    /// CUDA graph capture (see `OnnxModel::load_with`).
    pub fn execution_providers(&self, graph_capture: bool) -> Vec<ExecutionProviderDispatch> {
        match self {
            ResolvedDevice::Cpu { .. } => Vec::new(),
            ResolvedDevice::Cuda(id) => vec![
                ep::CUDA::default()
                    .with_device_id(*id)
                    .with_conv_algorithm_search(ep::cuda::ConvAlgorithmSearch::Exhaustive)
                    .with_cuda_graph(graph_capture)
                    .build()
                    .error_on_failure(),
            ],
        }
    }
}

/// Options for bringing up ONNX Runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub library: Option<PathBuf>,
    pub device: DeviceRequest,
    pub intra_threads: Option<usize>,
    /// Capture the UNet's live-preview runs as CUDA graphs (ignored on CPU).
    pub cuda_graph: bool,
    /// Let ONNX Runtime's intra-op threads busy-wait between runs.
    pub ort_spinning: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            library: None,
            device: DeviceRequest::Auto,
            intra_threads: None,
            cuda_graph: false,
            ort_spinning: false,
        }
    }
}

/// True when this machine shows an NVIDIA driver.
pub fn nvidia_gpu_present() -> bool {
    Path::new("/proc/driver/nvidia/version").exists() || Path::new("/dev/nvidia0").exists()
}

/// Locate (or fetch) the library, load it and create the environment.
pub fn init_runtime(options: &RuntimeOptions) -> Result<Runtime, RuntimeError> {
    let wants_gpu = match options.device {
        DeviceRequest::Cpu => false,
        DeviceRequest::Cuda(_) => true,
        DeviceRequest::Auto => nvidia_gpu_present(),
    };
    let library_path = locate_library(options.library.as_deref(), wants_gpu)?;
    let environment = process_environment(&library_path)?;
    let version = library_version(&library_path);
    let device = resolve_device(options.device);
    let cuda_graph = options.cuda_graph && matches!(device, ResolvedDevice::Cuda(_));
    if options.cuda_graph && !cuda_graph {
        tracing::warn!("--cuda-graph has no effect on {}", device.describe());
    }
    tracing::info!(
        library = %library_path.display(),
        version = %version,
        provider = device.provider_name(),
        "ONNX Runtime ready"
    );
    Ok(Runtime {
        environment,
        library_path,
        version,
        device,
        intra_threads: options.intra_threads,
        cuda_graph,
        ort_spinning: options.ort_spinning,
    })
}

/// The process's one ONNX Runtime environment: `ort` allows a single `Environment` per process
/// (ever), so it is created on the first call and shared by every later `init_runtime` (a second
/// model load, tests loading several models). A different library than the one already loaded is
/// an error: a process cannot switch ONNX Runtime libraries.
fn process_environment(library_path: &Path) -> Result<Environment, RuntimeError> {
    static ENVIRONMENT: std::sync::Mutex<Option<(PathBuf, Environment)>> =
        std::sync::Mutex::new(None);
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((loaded, environment)) = slot.as_ref() {
        if loaded != library_path {
            return Err(RuntimeError::Load {
                path: library_path.to_path_buf(),
                reason: format!(
                    "this process already loaded ONNX Runtime from {}",
                    loaded.display()
                ),
            });
        }
        return Ok(environment.clone());
    }
    let builder = ort::init_from(library_path).map_err(|e| RuntimeError::Load {
        path: library_path.to_path_buf(),
        reason: load_failure(library_path, e.to_string()),
    })?;
    let environment = builder
        .with_name("livefill")
        .build()
        .map_err(|e| RuntimeError::Environment(e.to_string()))?;
    *slot = Some((library_path.to_path_buf(), environment.clone()));
    Ok(environment)
}

/// Why the library at `path` did not load: it is missing, or the dynamic loader's own reason
/// (`ort` only says "dlopen failed"), else `ort`'s message.
fn load_failure(path: &Path, ort_message: String) -> String {
    if !path.exists() {
        return "the file does not exist".to_string();
    }
    #[cfg(unix)]
    if let Some(reason) = dlopen_error(path) {
        return reason;
    }
    ort_message
}

/// The dynamic loader's error for `path`, if it cannot be loaded.
#[cfg(unix)]
fn dlopen_error(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: dlopen/dlerror/dlclose on a valid C string; the handle is closed before return,
    // and the error string is copied before any other dl* call.
    unsafe {
        let handle = libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            let err = libc::dlerror();
            return Some(if err.is_null() {
                "the dynamic loader refused it".to_string()
            } else {
                std::ffi::CStr::from_ptr(err).to_string_lossy().into_owned()
            });
        }
        libc::dlclose(handle);
    }
    None
}

fn resolve_device(request: DeviceRequest) -> ResolvedDevice {
    use ort::ep::ExecutionProvider;
    match request {
        DeviceRequest::Cpu => ResolvedDevice::Cpu { reason: None },
        DeviceRequest::Cuda(id) => ResolvedDevice::Cuda(id),
        DeviceRequest::Auto => {
            let compiled = <ep::CUDA as ExecutionProvider>::is_available().unwrap_or(false);
            if !nvidia_gpu_present() {
                ResolvedDevice::Cpu {
                    reason: Some("no NVIDIA GPU found".into()),
                }
            } else if !compiled {
                let reason = "ONNX Runtime build has no CUDA execution provider".to_string();
                tracing::warn!("{reason}; running on CPU");
                ResolvedDevice::Cpu {
                    reason: Some(reason),
                }
            } else {
                ResolvedDevice::Cuda(0)
            }
        }
    }
}

/// The version recorded in the library's file name (`libonnxruntime.so.1.31.1`), or "unknown".
fn library_version(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    name.split(".so.")
        .nth(1)
        .map(str::to_string)
        .unwrap_or_else(|| "unknown".to_string())
}

/// Where a library was found, in the order livefill looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibrarySource {
    /// `--ort-lib`.
    Explicit,
    /// `ORT_DYLIB_PATH`.
    Environment,
    /// Next to the `livefill` binary (or in `lib/` there).
    BesideBinary,
    /// livefill's cache, filled by an earlier fetch.
    Cache(OrtFlavor),
}

impl LibrarySource {
    /// e.g. "livefill's cache (gpu build)".
    pub fn describe(self) -> String {
        match self {
            LibrarySource::Explicit => "--ort-lib".into(),
            LibrarySource::Environment => "ORT_DYLIB_PATH".into(),
            LibrarySource::BesideBinary => "next to the livefill binary".into(),
            LibrarySource::Cache(flavor) => {
                format!("livefill's cache ({} build)", flavor.dir_name())
            }
        }
    }
}

/// The library livefill would load, without fetching it: an explicit path, `ORT_DYLIB_PATH`,
/// next to the binary, then the cache of each of `flavors` in turn.
pub fn find_library(
    explicit: Option<&Path>,
    env: &dyn Env,
    flavors: &[OrtFlavor],
) -> Option<(PathBuf, LibrarySource)> {
    if let Some(path) = explicit {
        return Some((path.to_path_buf(), LibrarySource::Explicit));
    }
    if let Some(path) = env.var("ORT_DYLIB_PATH") {
        return Some((PathBuf::from(path), LibrarySource::Environment));
    }
    if let Some(path) = beside_binary() {
        return Some((path, LibrarySource::BesideBinary));
    }
    flavors.iter().find_map(|&flavor| {
        let dir = paths::onnxruntime_cache_dir(env, ORT_VERSION, flavor.dir_name());
        find_in_dir(&dir).map(|path| (path, LibrarySource::Cache(flavor)))
    })
}

/// Resolve the library path without loading it, fetching it into the cache when it is nowhere.
pub fn locate_library(explicit: Option<&Path>, gpu: bool) -> Result<PathBuf, RuntimeError> {
    let flavor = if gpu { OrtFlavor::Gpu } else { OrtFlavor::Cpu };
    match find_library(explicit, &ProcessEnv, &[flavor]) {
        Some((path, _)) => Ok(path),
        None => fetch_with_pip(flavor),
    }
}

fn beside_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    find_in_dir(dir).or_else(|| find_in_dir(&dir.join("lib")))
}

/// A `libonnxruntime.so*` (or platform equivalent) in `dir`.
fn find_in_dir(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            name.starts_with("libonnxruntime.so")
                || name == "onnxruntime.dll"
                || (name.starts_with("libonnxruntime") && name.ends_with(".dylib"))
        })
        .collect();
    found.sort();
    // Prefer the fully versioned name (the real file, not a symlink).
    found.pop()
}

/// `$XDG_CACHE_HOME/livefill/onnxruntime/<version>-<flavor>` (or `~/.cache/...`).
pub fn cache_dir(flavor: OrtFlavor) -> PathBuf {
    paths::onnxruntime_cache_dir(&ProcessEnv, ORT_VERSION, flavor.dir_name())
}

/// Download the wheel with pip and unpack the shared libraries into the cache.
fn fetch_with_pip(flavor: OrtFlavor) -> Result<PathBuf, RuntimeError> {
    let dest = cache_dir(flavor);
    let fail = |reason: String| RuntimeError::Fetch {
        package: flavor.package(),
        version: ORT_VERSION,
        reason,
    };
    std::fs::create_dir_all(&dest).map_err(|e| fail(format!("{}: {e}", dest.display())))?;
    let download = dest.join("wheel");
    eprintln!(
        "livefill: fetching ONNX Runtime {ORT_VERSION} ({}) from PyPI with pip into {} …",
        flavor.package(),
        dest.display()
    );
    let status = Command::new(python())
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
        ])
        .arg(format!("{}=={ORT_VERSION}", flavor.package()))
        .arg("-d")
        .arg(&download)
        .status()
        .map_err(|e| fail(format!("could not run {}: {e}", python())))?;
    if !status.success() {
        return Err(fail(format!("pip exited with {status}")));
    }
    let unpack = "import sys, zipfile, glob, os\n\
        whl = sorted(glob.glob(os.path.join(sys.argv[1], '*.whl')))[-1]\n\
        z = zipfile.ZipFile(whl)\n\
        for n in z.namelist():\n\
        \x20   b = os.path.basename(n)\n\
        \x20   if n.startswith('onnxruntime/capi/') and (b.startswith('libonnxruntime') or b.endswith('.dll')):\n\
        \x20       open(os.path.join(sys.argv[2], b), 'wb').write(z.read(n))\n";
    let status = Command::new(python())
        .args(["-c", unpack])
        .arg(&download)
        .arg(&dest)
        .status()
        .map_err(|e| fail(format!("could not run {}: {e}", python())))?;
    if !status.success() {
        return Err(fail(format!("unpacking the wheel failed ({status})")));
    }
    let _ = std::fs::remove_dir_all(&download);
    find_in_dir(&dest).ok_or_else(|| fail("the wheel held no libonnxruntime".into()))
}

fn python() -> String {
    std::env::var("LIVEFILL_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cpu);
        assert_eq!(
            "cuda:1".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Cuda(1)
        );
        assert_eq!(
            "auto".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Auto
        );
        assert!("gpu".parse::<DeviceRequest>().is_err());
    }

    #[test]
    fn version_from_file_name() {
        assert_eq!(
            library_version(Path::new("/x/libonnxruntime.so.1.31.1")),
            "1.31.1"
        );
        assert_eq!(library_version(Path::new("/x/onnxruntime.dll")), "unknown");
    }
}
