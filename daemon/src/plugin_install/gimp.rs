//! `livefill install-plugin gimp`: writes the GIMP 3 plug-in into a GIMP profile.
//!
//! Exists so the plug-in, its GIMP-free logic module and the shared Python codec/client are
//! installed together from the files embedded in this binary (the installed codec always matches
//! the daemon). GIMP 3 runs `plug-ins/<name>/<name>.py` only when it is executable and sits in a
//! folder of the same name; the other modules are imported from that folder.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::SHARED_PYTHON_MODULES;
use crate::paths::{self, ProcessEnv};

/// Name of the plug-in folder and of its entry script (without `.py`).
pub const PLUGIN_NAME: &str = "livefill";

/// The plug-in's own files, as (file name, contents, executable).
pub const PLUGIN_FILES: &[(&str, &str, bool)] = &[
    (
        "livefill.py",
        include_str!("../../../plugin-gimp/plug-ins/livefill/livefill.py"),
        true,
    ),
    (
        "gimp_document.py",
        include_str!("../../../plugin-gimp/plug-ins/livefill/gimp_document.py"),
        false,
    ),
    (
        "livefill_logic.py",
        include_str!("../../../plugin-gimp/plug-ins/livefill/livefill_logic.py"),
        false,
    ),
];

/// The GIMP 3 `plug-ins` folder of the current user's profile ([`paths::gimp_plug_ins_dir`]).
pub fn default_plug_ins_dir() -> Result<PathBuf> {
    paths::gimp_plug_ins_dir(&ProcessEnv).map_err(|e| anyhow!("{e}; pass --dest"))
}

/// Installs the plug-in and returns the folder written (`<plug-ins>/livefill`).
///
/// `dest` is the GIMP `plug-ins` folder to install into (the `livefill` subfolder is created in
/// it); `None` = the current user's GIMP 3 profile ([`default_plug_ins_dir`]). Existing files of a
/// previous install are replaced; other files in the folder are left alone.
pub fn install(dest: Option<&Path>) -> Result<PathBuf> {
    let plug_ins = match dest {
        Some(d) => d.to_path_buf(),
        None => default_plug_ins_dir()?,
    };
    let dir = plug_ins.join(PLUGIN_NAME);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let shared = SHARED_PYTHON_MODULES
        .iter()
        .map(|(name, contents)| (*name, *contents, false));
    for (name, contents, executable) in PLUGIN_FILES.iter().copied().chain(shared) {
        if contents.trim().is_empty() {
            bail!("embedded plug-in file {name} is empty (built from an incomplete checkout?)");
        }
        let path = dir.join(name);
        write_file(&path, contents, executable)?;
    }
    Ok(dir)
}

fn write_file(path: &Path, contents: &str, executable: bool) -> Result<()> {
    // Write next to the target and rename, so a running GIMP never sees a half-written script.
    let tmp = path.with_extension("py.tmp");
    fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if executable { 0o755 } else { 0o644 };
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting permissions of {}", tmp.display()))?;
    }
    #[cfg(not(unix))]
    let _ = executable;
    fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "livefill-gimp-install-{tag}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn installs_plugin_and_shared_modules() {
        let dest = temp_dir("files");
        let dir = install(Some(&dest)).unwrap();
        assert_eq!(dir, dest.join("livefill"));
        for name in [
            "livefill.py",
            "gimp_document.py",
            "livefill_logic.py",
            "livefill_protocol.py",
            "livefill_client.py",
            "livefill_plugin_core.py",
            "livefill_live.py",
        ] {
            let text = fs::read_to_string(dir.join(name)).unwrap();
            assert!(!text.trim().is_empty(), "{name} is empty");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |n: &str| fs::metadata(dir.join(n)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode("livefill.py"), 0o755);
            assert_eq!(mode("livefill_protocol.py"), 0o644);
        }
        // Reinstalling over an existing install works.
        install(Some(&dest)).unwrap();
        fs::remove_dir_all(&dest).unwrap();
    }

    #[test]
    fn entry_script_has_a_shebang() {
        let (_, text, exec) = PLUGIN_FILES[0];
        assert!(exec);
        assert!(text.starts_with("#!/usr/bin/env python3"));
    }
}
