//! Every per-user location livefill reads or writes: its config file, its cache (ONNX Runtime
//! libraries, the export toolchain), the Hugging Face hub cache, the daemon's default socket and
//! the editors' plugin folders (Krita `pykrita`, `kritarc`, GIMP 3 `plug-ins`) on Linux, macOS and
//! Windows.
//!
//! Exists so `serve`, `models`, `doctor`, the plugin installer and the ONNX Runtime loader derive
//! each location one way only. The environment is read through [`Env`], so tests pass a
//! [`MapEnv`] instead of changing the process environment. This module sits at the bottom of the
//! crate: it uses nothing of it (the socket rule itself lives in the protocol crate, shared with
//! the Python client).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;

/// Environment lookups, injectable for tests (empty values count as unset).
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

/// A fixed environment, for tests: only the listed variables are set.
#[derive(Debug, Clone, Default)]
pub struct MapEnv(pub HashMap<&'static str, String>);

impl Env for MapEnv {
    fn var(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned().filter(|v| !v.is_empty())
    }
}

/// A location that cannot be derived because the variable it starts from is unset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not set")]
pub struct MissingVar(pub &'static str);

fn var_path(env: &dyn Env, key: &str) -> Option<PathBuf> {
    env.var(key).map(PathBuf::from)
}

/// `$HOME`.
pub fn home(env: &dyn Env) -> Option<PathBuf> {
    var_path(env, "HOME")
}

fn required_home(env: &dyn Env) -> Result<PathBuf, MissingVar> {
    home(env).ok_or(MissingVar("$HOME"))
}

/// `$XDG_CONFIG_HOME`, else `~/.config`.
fn xdg_config_home(env: &dyn Env) -> Option<PathBuf> {
    var_path(env, "XDG_CONFIG_HOME").or_else(|| home(env).map(|h| h.join(".config")))
}

/// `$XDG_CACHE_HOME`, else `~/.cache`.
fn xdg_cache_home(env: &dyn Env) -> Option<PathBuf> {
    var_path(env, "XDG_CACHE_HOME").or_else(|| home(env).map(|h| h.join(".cache")))
}

/// `$XDG_DATA_HOME`, else `~/.local/share`.
fn xdg_data_home(env: &dyn Env) -> Option<PathBuf> {
    var_path(env, "XDG_DATA_HOME").or_else(|| home(env).map(|h| h.join(".local").join("share")))
}

/// livefill's config file: `$XDG_CONFIG_HOME/livefill/config.toml`, else
/// `~/.config/livefill/config.toml`; `None` when neither variable is set.
pub fn config_file(env: &dyn Env) -> Option<PathBuf> {
    Some(xdg_config_home(env)?.join("livefill").join("config.toml"))
}

/// livefill's cache folder: `$XDG_CACHE_HOME/livefill`, else `~/.cache/livefill`, else
/// `<temp dir>/livefill`.
pub fn cache_dir(env: &dyn Env) -> PathBuf {
    xdg_cache_home(env)
        .unwrap_or_else(std::env::temp_dir)
        .join("livefill")
}

/// Where one ONNX Runtime build is unpacked: `<cache>/onnxruntime/<version>-<flavor>`.
pub fn onnxruntime_cache_dir(env: &dyn Env, version: &str, flavor: &str) -> PathBuf {
    cache_dir(env)
        .join("onnxruntime")
        .join(format!("{version}-{flavor}"))
}

/// The export toolchain's script folder, `<cache>/export`.
pub fn export_dir(env: &dyn Env) -> PathBuf {
    cache_dir(env).join("export")
}

/// The export toolchain's virtual environment, `<cache>/export-venv`.
pub fn export_venv(env: &dyn Env) -> PathBuf {
    cache_dir(env).join("export-venv")
}

/// The Hugging Face home, as Python's `huggingface_hub` finds it: `$HF_HOME`, else
/// `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home(env: &dyn Env) -> Option<PathBuf> {
    if let Some(h) = var_path(env, "HF_HOME") {
        return Some(h);
    }
    Some(xdg_cache_home(env)?.join("huggingface"))
}

/// The hub cache folder holding `models--owner--name/` folders: `$HF_HUB_CACHE`, else
/// `<hf home>/hub`.
pub fn hf_hub_cache(env: &dyn Env) -> Option<PathBuf> {
    if let Some(c) = var_path(env, "HF_HUB_CACHE") {
        return Some(c);
    }
    hf_home(env).map(|h| h.join("hub"))
}

/// The daemon's default socket (Unix) or pipe name (Windows), by the protocol crate's rule
/// (`LIVEFILL_SOCKET`, else `$XDG_RUNTIME_DIR/livefill.sock`, else a private temp folder).
pub fn default_socket(env: &dyn Env) -> PathBuf {
    livefill_protocol::socket_path::socket_path_with(
        |key| env.var(key).map(OsString::from),
        current_user(env),
    )
}

/// The uid on Unix, `%USERNAME%` on Windows (what the socket rule names its folder or pipe by).
fn current_user(env: &dyn Env) -> String {
    #[cfg(unix)]
    {
        let _ = env;
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() }.to_string()
    }
    #[cfg(not(unix))]
    {
        env.var("USERNAME").unwrap_or_else(|| "user".into())
    }
}

/// The folder per-user application data goes in on Windows (`%APPDATA%`, roaming) and macOS
/// (`~/Library/Application Support`); Linux programs use their own XDG folder instead.
fn app_data_dir(env: &dyn Env) -> Result<PathBuf, MissingVar> {
    if cfg!(windows) {
        var_path(env, "APPDATA").ok_or(MissingVar("%APPDATA%"))
    } else {
        Ok(required_home(env)?
            .join("Library")
            .join("Application Support"))
    }
}

/// The current user's Krita `pykrita` folder: Linux `$XDG_DATA_HOME/krita/pykrita` (default
/// `~/.local/share/krita/pykrita`), Windows `%APPDATA%\krita\pykrita`, macOS
/// `~/Library/Application Support/krita/pykrita`.
pub fn krita_pykrita_dir(env: &dyn Env) -> Result<PathBuf, MissingVar> {
    let data = if cfg!(any(windows, target_os = "macos")) {
        app_data_dir(env)?
    } else {
        xdg_data_home(env).ok_or(MissingVar("$HOME"))?
    };
    Ok(data.join("krita").join("pykrita"))
}

/// The current user's `kritarc`: Linux `$XDG_CONFIG_HOME/kritarc` (default `~/.config/kritarc`),
/// Windows `%LOCALAPPDATA%\kritarc`, macOS `~/Library/Preferences/kritarc`.
pub fn kritarc(env: &dyn Env) -> Result<PathBuf, MissingVar> {
    let config = if cfg!(windows) {
        var_path(env, "LOCALAPPDATA").ok_or(MissingVar("%LOCALAPPDATA%"))?
    } else if cfg!(target_os = "macos") {
        required_home(env)?.join("Library").join("Preferences")
    } else {
        xdg_config_home(env).ok_or(MissingVar("$HOME"))?
    };
    Ok(config.join("kritarc"))
}

/// The GIMP 3 `plug-ins` folder of the current user's profile: Linux
/// `$XDG_CONFIG_HOME/GIMP/3.0/plug-ins` (default `~/.config/...`), Windows
/// `%APPDATA%\GIMP\3.0\plug-ins`, macOS `~/Library/Application Support/GIMP/3.0/plug-ins`.
/// `GIMP3_DIRECTORY`, when set, replaces the whole profile folder as it does for GIMP itself.
pub fn gimp_plug_ins_dir(env: &dyn Env) -> Result<PathBuf, MissingVar> {
    if let Some(profile) = var_path(env, "GIMP3_DIRECTORY") {
        return Ok(profile.join("plug-ins"));
    }
    let config = if cfg!(any(windows, target_os = "macos")) {
        app_data_dir(env)?
    } else {
        xdg_config_home(env).ok_or(MissingVar("$HOME"))?
    };
    Ok(config.join("GIMP").join("3.0").join("plug-ins"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn env(pairs: &[(&'static str, &str)]) -> MapEnv {
        MapEnv(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
    }

    #[test]
    fn hub_cache_follows_huggingface_hub() {
        let hub = |pairs: &[(&'static str, &str)]| hf_hub_cache(&env(pairs)).unwrap();
        assert_eq!(
            hub(&[("HOME", "/h")]),
            PathBuf::from("/h/.cache/huggingface/hub")
        );
        assert_eq!(
            hub(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]),
            PathBuf::from("/x/huggingface/hub")
        );
        assert_eq!(
            hub(&[("HOME", "/h"), ("HF_HOME", "/hf")]),
            PathBuf::from("/hf/hub")
        );
        assert_eq!(
            hub(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c")]),
            PathBuf::from("/c")
        );
        assert_eq!(hf_hub_cache(&env(&[])), None);
    }

    #[test]
    fn config_and_cache_follow_xdg() {
        let home = env(&[("HOME", "/h")]);
        assert_eq!(
            config_file(&home).unwrap(),
            PathBuf::from("/h/.config/livefill/config.toml")
        );
        assert_eq!(cache_dir(&home), PathBuf::from("/h/.cache/livefill"));
        let xdg = env(&[
            ("HOME", "/h"),
            ("XDG_CONFIG_HOME", "/c"),
            ("XDG_CACHE_HOME", "/x"),
        ]);
        assert_eq!(
            config_file(&xdg).unwrap(),
            PathBuf::from("/c/livefill/config.toml")
        );
        assert_eq!(
            onnxruntime_cache_dir(&xdg, "1.2.3", "cpu"),
            PathBuf::from("/x/livefill/onnxruntime/1.2.3-cpu")
        );
        assert_eq!(export_venv(&xdg), PathBuf::from("/x/livefill/export-venv"));
        assert_eq!(config_file(&env(&[("HOME", "")])), None);
        assert_eq!(cache_dir(&env(&[])), std::env::temp_dir().join("livefill"));
    }

    #[cfg(unix)]
    #[test]
    fn socket_follows_the_protocol_rule() {
        assert_eq!(
            default_socket(&env(&[("LIVEFILL_SOCKET", "/s.sock")])),
            PathBuf::from("/s.sock")
        );
        assert_eq!(
            default_socket(&env(&[("XDG_RUNTIME_DIR", "/run/user/7")])),
            PathBuf::from("/run/user/7/livefill.sock")
        );
    }

    #[test]
    fn krita_folders_per_platform() {
        let profile = env(&[
            ("HOME", "/home/a"),
            ("APPDATA", r"C:\Users\a\AppData\Roaming"),
            ("LOCALAPPDATA", r"C:\Users\a\AppData\Local"),
        ]);
        let pykrita = krita_pykrita_dir(&profile).unwrap();
        let rc = kritarc(&profile).unwrap();
        if cfg!(windows) {
            assert!(pykrita.starts_with(r"C:\Users\a\AppData\Roaming"));
            assert!(pykrita.ends_with(Path::new("krita").join("pykrita")));
            assert!(rc.starts_with(r"C:\Users\a\AppData\Local"));
        } else if cfg!(target_os = "macos") {
            assert_eq!(
                pykrita,
                PathBuf::from("/home/a/Library/Application Support/krita/pykrita")
            );
            assert_eq!(rc, PathBuf::from("/home/a/Library/Preferences/kritarc"));
        } else {
            assert_eq!(pykrita, PathBuf::from("/home/a/.local/share/krita/pykrita"));
            assert_eq!(rc, PathBuf::from("/home/a/.config/kritarc"));
            let xdg = env(&[("XDG_DATA_HOME", "/d"), ("XDG_CONFIG_HOME", "/c")]);
            assert_eq!(
                krita_pykrita_dir(&xdg).unwrap(),
                PathBuf::from("/d/krita/pykrita")
            );
            assert_eq!(kritarc(&xdg).unwrap(), PathBuf::from("/c/kritarc"));
            assert_eq!(krita_pykrita_dir(&env(&[])), Err(MissingVar("$HOME")));
        }
    }

    #[test]
    fn gimp_folder_per_platform() {
        let profile = env(&[
            ("HOME", "/home/a"),
            ("APPDATA", r"C:\Users\a\AppData\Roaming"),
        ]);
        let dir = gimp_plug_ins_dir(&profile).unwrap();
        if cfg!(windows) {
            assert!(dir.ends_with(Path::new("GIMP").join("3.0").join("plug-ins")));
            assert!(dir.starts_with(r"C:\Users\a\AppData\Roaming"));
        } else if cfg!(target_os = "macos") {
            assert_eq!(
                dir,
                PathBuf::from("/home/a/Library/Application Support/GIMP/3.0/plug-ins")
            );
        } else {
            assert_eq!(dir, PathBuf::from("/home/a/.config/GIMP/3.0/plug-ins"));
        }
        assert_eq!(
            gimp_plug_ins_dir(&env(&[("GIMP3_DIRECTORY", "/p")])).unwrap(),
            PathBuf::from("/p/plug-ins")
        );
    }
}
