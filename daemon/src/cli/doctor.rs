//! `livefill doctor`: check everything livefill needs and say how to fix what is broken.
//!
//! Exists because a failure in any layer (ONNX Runtime library, GPU/CUDA, model folder, daemon
//! socket, editor plugins) shows up in the editor as "nothing happens". Each check prints ✓ (fine),
//! ! (works, but worth knowing / optional part missing) or ✗ (broken) with a fix; the exit code is
//! non-zero when an essential check is ✗. The checks read the environment through
//! `paths::Env`, so tests run them against a temporary HOME.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use clap::Args;

use crate::cli::output::out;
use crate::client::{ClientError, Connection};
use crate::models::inspect;
use crate::models::locate;
use crate::onnx::runtime::{self, DeviceRequest, RuntimeOptions};
use crate::paths::{self, Env, ProcessEnv};
use crate::plugin_install;

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Model folder to check (default: the models `livefill models list` finds).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Daemon socket to check (default: LIVEFILL_SOCKET, else $XDG_RUNTIME_DIR/livefill.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// libonnxruntime to check (default: ORT_DYLIB_PATH, next to the binary, or livefill's cache).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
    /// A ✗ here makes the exit code non-zero.
    pub essential: bool,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
            essential: false,
        }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
            essential: false,
        }
    }
    fn fail(
        name: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
        essential: bool,
    ) -> Self {
        Self {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
            essential,
        }
    }
}

/// Every check, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn essential_failures(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail && c.essential)
            .count()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = match c.status {
                Status::Ok => "✓",
                Status::Warn => "!",
                Status::Fail => "✗",
            };
            out.push_str(&format!("{mark} {:<20} {}\n", c.name, c.detail));
            if let Some(fix) = &c.fix
                && c.status != Status::Ok
            {
                for (i, line) in fix.lines().enumerate() {
                    let lead = if i == 0 { "fix:" } else { "    " };
                    out.push_str(&format!("  {:<20} {lead} {line}\n", ""));
                }
            }
        }
        let fails = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        let warns = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Warn)
            .count();
        out.push_str(&format!(
            "\n{} checks: {} ok, {warns} warnings, {fails} failed ({} essential)\n",
            self.checks.len(),
            self.checks.len() - fails - warns,
            self.essential_failures()
        ));
        out
    }
}

pub fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let report = diagnose(&args, &ProcessEnv);
    out!("{}", report.render());
    let n = report.essential_failures();
    if n > 0 {
        bail!("{n} essential check(s) failed (see the fixes above)");
    }
    Ok(())
}

/// Run every check.
pub fn diagnose(args: &DoctorArgs, env: &dyn Env) -> Report {
    let mut checks = Vec::new();
    let runtime_ok = check_runtime(args, env, &mut checks);
    check_gpu(runtime_ok, &mut checks);
    check_model(args, env, &mut checks);
    checks.push(check_socket(args, env));
    checks.push(check_krita(env));
    checks.push(check_gimp(env));
    Report { checks }
}

// ---------------------------------------------------------------------------------------------
// ONNX Runtime
// ---------------------------------------------------------------------------------------------

/// The release line livefill needs ("1.31" for ONNX Runtime 1.31.1): the major and minor of
/// [`runtime::ORT_VERSION`].
fn required_release() -> &'static str {
    release_line(runtime::ORT_VERSION)
}

fn release_line(version: &str) -> &str {
    version
        .rsplit_once('.')
        .map_or(version, |(line, _patch)| line)
}

/// Version from `ort::info()` ("... git-branch=rel-1.31.1, ...").
fn version_from_build_info(info: &str) -> Option<String> {
    let at = info.find("rel-")?;
    let v: String = info[at + 4..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!v.is_empty()).then_some(v)
}

fn check_runtime(args: &DoctorArgs, env: &dyn Env, checks: &mut Vec<Check>) -> bool {
    const NAME: &str = "ONNX Runtime";
    let flavors = [runtime::OrtFlavor::Gpu, runtime::OrtFlavor::Cpu];
    let found = runtime::find_library(args.ort_lib.as_deref(), env, &flavors);
    let Some((path, source)) = found.map(|(path, source)| (path, source.describe())) else {
        checks.push(Check::warn(
            NAME,
            "library not found yet",
            format!(
                "livefill fetches onnxruntime {} from PyPI with pip on first use (needs python3 + \
                 pip and network once), or set ORT_DYLIB_PATH to a libonnxruntime.so ≥ {}",
                runtime::ORT_VERSION,
                required_release()
            ),
        ));
        return false;
    };
    if !path.is_file() {
        checks.push(Check::fail(
            NAME,
            format!("{} (from {source}) does not exist", path.display()),
            "point ORT_DYLIB_PATH / --ort-lib at an existing libonnxruntime, or unset it so \
             livefill fetches one",
            true,
        ));
        return false;
    }
    match runtime::init_runtime(&RuntimeOptions {
        library: Some(path.clone()),
        device: DeviceRequest::Cpu,
        intra_threads: Some(1),
        cuda_graph: false,
        ort_spinning: false,
    }) {
        Ok(rt) => {
            let version = version_from_build_info(ort::info()).unwrap_or(rt.version.clone());
            checks.push(Check::ok(
                NAME,
                format!("{version} loaded from {} ({source})", path.display()),
            ));
            true
        }
        Err(e) => {
            checks.push(Check::fail(
                NAME,
                format!("{} (from {source}) does not load: {e}", path.display()),
                format!(
                    "livefill needs ONNX Runtime ≥ {} (built against {}); point ORT_DYLIB_PATH \
                     at a matching library or unset it so livefill fetches one",
                    required_release(),
                    runtime::ORT_VERSION
                ),
                true,
            ));
            false
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GPU / execution providers
// ---------------------------------------------------------------------------------------------

fn check_gpu(runtime_ok: bool, checks: &mut Vec<Check>) {
    use ort::ep::ExecutionProvider;
    let driver = std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()));
    let smi = std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty());
    let gpu_present = runtime::nvidia_gpu_present() || smi.is_some();
    let gpu_detail = match (&smi, &driver) {
        (Some(s), _) => s.lines().collect::<Vec<_>>().join("; "),
        (None, Some(d)) => d.clone(),
        (None, None) if gpu_present => "NVIDIA device node present".into(),
        _ => String::new(),
    };
    let cuda = runtime_ok && <ort::ep::CUDA as ExecutionProvider>::is_available().unwrap_or(false);
    let mut providers = vec!["CPU"];
    if cuda {
        providers.push("CUDA");
    }
    if runtime_ok {
        checks.push(Check::ok(
            "execution providers",
            format!("{} compiled in", providers.join(", ")),
        ));
    }
    checks.push(match (gpu_present, cuda, runtime_ok) {
        (true, true, _) => Check::ok("GPU", format!("{gpu_detail} — CUDA will be used")),
        (true, false, true) => Check::warn(
            "GPU",
            format!("{gpu_detail}, but this ONNX Runtime has no CUDA execution provider: CPU only"),
            format!(
                "use the GPU build: unset ORT_DYLIB_PATH so livefill fetches onnxruntime-gpu {} \
                 (or point it at onnxruntime-gpu's libonnxruntime.so; CUDA 12 + cuDNN 9 needed)",
                runtime::ORT_VERSION
            ),
        ),
        (true, false, false) => Check::ok("GPU", gpu_detail),
        (false, _, _) => Check::warn(
            "GPU",
            "no NVIDIA GPU found (/proc/driver/nvidia, nvidia-smi): inference runs on the CPU (slow)",
            "for real-time use install an NVIDIA GPU driver; CPU works for small sizes",
        ),
    });
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

fn check_model(args: &DoctorArgs, env: &dyn Env, checks: &mut Vec<Check>) {
    const NAME: &str = "model";
    if let Some(model) = &args.model {
        checks.push(match inspect::inspect(model) {
            Ok(s) => Check::ok(NAME, format!("{} — {}", model.display(), s.kind())),
            Err(e) => Check::fail(
                NAME,
                e.to_string(),
                "re-fetch (`livefill models fetch`) or re-export (`livefill models export`) the \
                 model; the folder must be in the optimum ONNX layout (README, Models)",
                true,
            ),
        });
        return;
    }
    let candidates = match locate::all_candidates(&[], env) {
        Ok(candidates) => candidates,
        Err(e) => {
            checks.push(Check::fail(
                NAME,
                e.to_string(),
                "fix the config file (README, Models: `model = \"/path\"`, `models = [\"/a\"]`), \
                 or pass --model DIR",
                false,
            ));
            return;
        }
    };
    let good: Vec<String> = candidates
        .iter()
        .filter_map(|c| {
            inspect::inspect(&c.path)
                .ok()
                .map(|s| format!("{} ({})", c.path.display(), s.kind()))
        })
        .collect();
    checks.push(if let Some(first) = good.first() {
        Check::ok(
            NAME,
            format!("{} usable model(s) found; e.g. {first}", good.len()),
        )
    } else if candidates.is_empty() {
        Check::warn(
            NAME,
            "no model found (Hugging Face cache, config file) and no --model given",
            "`livefill models fetch OWNER/NAME` or `livefill models export …`, then \
             `livefill serve --model DIR`",
        )
    } else {
        Check::warn(
            NAME,
            format!(
                "{} model folder(s) found, none loads (see `livefill models list`)",
                candidates.len()
            ),
            "re-fetch or re-export the model",
        )
    });
}

// ---------------------------------------------------------------------------------------------
// Socket
// ---------------------------------------------------------------------------------------------

fn socket_path(args: &DoctorArgs, env: &dyn Env) -> PathBuf {
    args.socket
        .clone()
        .unwrap_or_else(|| paths::default_socket(env))
}

#[cfg(unix)]
fn check_socket(args: &DoctorArgs, env: &dyn Env) -> Check {
    const NAME: &str = "daemon socket";
    let path = socket_path(args, env);
    if !path.exists() {
        return Check::warn(
            NAME,
            format!("no daemon running ({} does not exist)", path.display()),
            "start it with `livefill serve --model DIR` (plugins connect to this path)",
        );
    }
    let mut connection = match Connection::open(&path, Duration::from_secs(3)) {
        Ok(connection) => connection,
        Err(e) => {
            let reason = match e {
                ClientError::Connect { source, .. } | ClientError::NoDaemon { source, .. } => {
                    source.to_string()
                }
                other => other.to_string(),
            };
            return Check::fail(
                NAME,
                format!(
                    "{} exists but nobody answers ({reason}): stale socket file from a daemon \
                     that did not shut down cleanly",
                    path.display()
                ),
                format!(
                    "remove it (`rm {}`) and start `livefill serve --model DIR`",
                    path.display()
                ),
                false,
            );
        }
    };
    let answer = connection.hello("livefill-doctor");
    match answer {
        Ok(h) => Check::ok(
            NAME,
            format!(
                "daemon {} answering on {}: model {:?} on {} ({})",
                h.daemon_version,
                path.display(),
                h.model,
                h.device,
                h.execution_provider
            ),
        ),
        Err(ClientError::Refused(e)) => Check::fail(
            NAME,
            format!(
                "daemon on {} refused the hello: {} ({})",
                path.display(),
                e.message,
                e.code.as_str()
            ),
            "the daemon and this livefill speak different protocol versions: restart the daemon \
             with this binary and reinstall the plugins",
            true,
        ),
        Err(ClientError::Unexpected { got, .. }) => Check::fail(
            NAME,
            format!("daemon on {} answered the hello with {got}", path.display()),
            "restart the daemon with this livefill binary",
            true,
        ),
        Err(e) => Check::fail(
            NAME,
            format!(
                "something listens on {} but does not answer like livefill: {e}",
                path.display()
            ),
            "stop whatever owns that socket, or restart `livefill serve`",
            true,
        ),
    }
}

#[cfg(not(unix))]
fn check_socket(args: &DoctorArgs, env: &dyn Env) -> Check {
    Check::warn(
        "daemon socket",
        format!(
            "not checked on this platform ({})",
            socket_path(args, env).display()
        ),
        "run `livefill status`",
    )
}

// ---------------------------------------------------------------------------------------------
// Editor plugins
// ---------------------------------------------------------------------------------------------

/// Whether an installed copy of the shared codec is the one this binary embeds.
fn codec_matches(plugin_dir: &Path) -> Option<bool> {
    let (name, embedded) = plugin_install::SHARED_PYTHON_MODULES.first()?;
    let installed = std::fs::read_to_string(plugin_dir.join(name)).ok()?;
    Some(&installed == embedded)
}

fn check_krita(env: &dyn Env) -> Check {
    const NAME: &str = "Krita plugin";
    let (Ok(pykrita), Ok(kritarc)) = (paths::krita_pykrita_dir(env), paths::kritarc(env)) else {
        return Check::warn(NAME, "HOME is not set; not checked", "set HOME");
    };
    let plugin = pykrita.join("livefill_krita");
    if !plugin.join("__init__.py").is_file() {
        return Check::warn(
            NAME,
            format!("not installed ({} missing)", plugin.display()),
            "`livefill install-plugin krita`, then enable it in Krita: Settings → Configure \
             Krita → Python Plugin Manager → livefill, and restart Krita",
        );
    }
    if !pykrita.join("livefill.desktop").is_file() {
        return Check::warn(
            NAME,
            format!(
                "{} is there but {} is missing: Krita will not list the plugin",
                plugin.display(),
                pykrita.join("livefill.desktop").display()
            ),
            "reinstall: `livefill install-plugin krita`",
        );
    }
    let enabled = std::fs::read_to_string(&kritarc)
        .map(|t| kritarc_enabled(&t, "livefill_krita"))
        .unwrap_or(false);
    if !enabled {
        return Check::warn(
            NAME,
            format!(
                "installed in {} but not enabled ({} has no enable_livefill_krita=true)",
                plugin.display(),
                kritarc.display()
            ),
            "in Krita: Settings → Configure Krita → Python Plugin Manager → tick livefill, \
             restart Krita",
        );
    }
    if codec_matches(&plugin) == Some(false) {
        return Check::warn(
            NAME,
            format!(
                "installed and enabled ({}), but its protocol codec is from another livefill version",
                plugin.display()
            ),
            "reinstall: `livefill install-plugin krita`",
        );
    }
    Check::ok(
        NAME,
        format!("installed and enabled ({})", plugin.display()),
    )
}

/// `enable_<name>=true` in kritarc's `[python]` group.
fn kritarc_enabled(text: &str, name: &str) -> bool {
    let mut in_python = false;
    let key = format!("enable_{name}");
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_python = line == "[python]";
        } else if in_python
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return v.trim().eq_ignore_ascii_case("true");
        }
    }
    false
}

fn check_gimp(env: &dyn Env) -> Check {
    const NAME: &str = "GIMP plugin";
    let Ok(plug_ins) = paths::gimp_plug_ins_dir(env) else {
        return Check::warn(NAME, "HOME is not set; not checked", "set HOME");
    };
    let dir = plug_ins.join(plugin_install::gimp::PLUGIN_NAME);
    let entry = dir.join(format!("{}.py", plugin_install::gimp::PLUGIN_NAME));
    if !entry.is_file() {
        return Check::warn(
            NAME,
            format!("not installed ({} missing)", entry.display()),
            "`livefill install-plugin gimp`, then restart GIMP 3 (Filters → livefill)",
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&entry)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        if mode & 0o111 == 0 {
            return Check::warn(
                NAME,
                format!("{} is not executable: GIMP will ignore it", entry.display()),
                format!(
                    "`chmod +x {}` or reinstall: `livefill install-plugin gimp`",
                    entry.display()
                ),
            );
        }
    }
    if codec_matches(&dir) == Some(false) {
        return Check::warn(
            NAME,
            format!(
                "installed ({}), but its protocol codec is from another livefill version",
                dir.display()
            ),
            "reinstall: `livefill install-plugin gimp`",
        );
    }
    Check::ok(NAME, format!("installed ({})", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_build_info_version() {
        assert_eq!(
            version_from_build_info(
                "ORT Build Info: git-branch=rel-1.31.1, git-commit-id=abc, build type=Release"
            )
            .as_deref(),
            Some("1.31.1")
        );
        assert_eq!(version_from_build_info("nothing"), None);
    }

    #[test]
    fn release_line_is_major_and_minor() {
        assert_eq!(release_line("1.31.1"), "1.31");
        assert_eq!(release_line("2"), "2");
        assert!(required_release().starts_with('1'));
    }

    #[test]
    fn reads_kritarc() {
        let rc = "[General]\nenable_livefill_krita=true\n[python]\nenable_other=true\nenable_livefill_krita=true\n";
        assert!(kritarc_enabled(rc, "livefill_krita"));
        assert!(!kritarc_enabled(
            "[python]\nenable_livefill_krita=false\n",
            "livefill_krita"
        ));
        assert!(!kritarc_enabled(
            "[General]\nenable_livefill_krita=true\n",
            "livefill_krita"
        ));
    }
}
