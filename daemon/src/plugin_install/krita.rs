//! `livefill install-plugin krita`: writes the Krita Python plugin into Krita's `pykrita` folder
//! and enables it in `kritarc`; [`build_zip`] packs the same files for Krita's
//! "Tools → Scripts → Import Python Plugin from File…".
//!
//! Exists so the plugin, its modules and the shared Python codec/client are installed together
//! from files embedded in this binary (the installed codec always matches the daemon). Krita
//! loads a plugin from `pykrita/<module>/` plus a `pykrita/*.desktop` file naming that module, and
//! only when `[python] enable_<module>=true` is set in `kritarc` (Krita 5.1 and 5.2 alike).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::SHARED_PYTHON_MODULES;
use crate::paths::{self, ProcessEnv};

/// The Python package Krita imports (`X-KDE-Library` in the desktop file).
pub const MODULE_NAME: &str = "livefill_krita";

/// File name the desktop file is installed under: the one Krita's own zip importer would give
/// it (`<module>.desktop`), so both install routes replace each other instead of duplicating.
pub const DESKTOP_FILE_NAME: &str = "livefill_krita.desktop";

/// `plugin-krita/livefill.desktop`.
pub const DESKTOP_FILE: &str = include_str!("../../../plugin-krita/livefill.desktop");

/// The package's own files, as (file name inside `livefill_krita/`, contents).
pub const PACKAGE_FILES: &[(&str, &str)] = &[
    (
        "__init__.py",
        include_str!("../../../plugin-krita/livefill_krita/__init__.py"),
    ),
    (
        "connection.py",
        include_str!("../../../plugin-krita/livefill_krita/connection.py"),
    ),
    (
        "controller.py",
        include_str!("../../../plugin-krita/livefill_krita/controller.py"),
    ),
    (
        "docker.py",
        include_str!("../../../plugin-krita/livefill_krita/docker.py"),
    ),
    (
        "extension.py",
        include_str!("../../../plugin-krita/livefill_krita/extension.py"),
    ),
    (
        "krita_document.py",
        include_str!("../../../plugin-krita/livefill_krita/krita_document.py"),
    ),
    (
        "live_watch.py",
        include_str!("../../../plugin-krita/livefill_krita/live_watch.py"),
    ),
    (
        "logic.py",
        include_str!("../../../plugin-krita/livefill_krita/logic.py"),
    ),
    (
        "pixel_worker.py",
        include_str!("../../../plugin-krita/livefill_krita/pixel_worker.py"),
    ),
    (
        "pixels.py",
        include_str!("../../../plugin-krita/livefill_krita/pixels.py"),
    ),
    (
        "Manual.html",
        include_str!("../../../plugin-krita/livefill_krita/Manual.html"),
    ),
];

/// Every installed file as (path relative to the `pykrita` folder, contents), shared modules
/// included (they go inside the package so the zip importer, which copies only the package
/// folder and the desktop file, gets them too).
pub fn files() -> Vec<(String, &'static str)> {
    let mut out = vec![(DESKTOP_FILE_NAME.to_owned(), DESKTOP_FILE)];
    for (name, contents) in PACKAGE_FILES.iter().chain(SHARED_PYTHON_MODULES) {
        out.push((format!("{MODULE_NAME}/{name}"), *contents));
    }
    out
}

/// The current user's Krita `pykrita` folder ([`paths::krita_pykrita_dir`]).
pub fn default_pykrita_dir() -> Result<PathBuf> {
    paths::krita_pykrita_dir(&ProcessEnv).map_err(|e| anyhow!("{e}; pass --dest"))
}

/// The current user's `kritarc` ([`paths::kritarc`]).
pub fn default_kritarc() -> Result<PathBuf> {
    Ok(paths::kritarc(&ProcessEnv)?)
}

/// Installs the plugin and returns the package folder written (`<pykrita>/livefill_krita`).
///
/// `dest` is the `pykrita` folder to install into; `None` = the current user's Krita profile
/// ([`default_pykrita_dir`]), and then the plugin is also enabled in the user's `kritarc`
/// ([`enable`]). With an explicit `dest` the plugin is only enabled if `dest` is Krita's
/// default folder; otherwise enable it in Krita (Settings → Configure Krita → Python Plugin
/// Manager) or with [`enable`]. Files of a previous install are replaced; others are left alone.
/// Krita must be restarted to load the new version (and a running Krita may rewrite `kritarc`
/// when it exits, so install while it is closed).
pub fn install(dest: Option<&Path>) -> Result<PathBuf> {
    let default_dir = default_pykrita_dir().ok();
    let pykrita = match dest {
        Some(d) => d.to_path_buf(),
        None => default_dir
            .clone()
            .context("cannot find Krita's pykrita folder; pass --dest")?,
    };
    write_files(&pykrita)?;
    let is_default = dest.is_none() || default_dir.as_deref() == Some(pykrita.as_path());
    if is_default {
        let kritarc = default_kritarc()?;
        enable(&kritarc)?;
    }
    Ok(pykrita.join(MODULE_NAME))
}

fn write_files(pykrita: &Path) -> Result<()> {
    let package = pykrita.join(MODULE_NAME);
    fs::create_dir_all(&package).with_context(|| format!("creating {}", package.display()))?;
    for (rel, contents) in files() {
        if contents.trim().is_empty() {
            bail!("embedded plugin file {rel} is empty (built from an incomplete checkout?)");
        }
        let path = pykrita.join(&rel);
        // Write next to the target and rename, so Krita never imports a half-written module.
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
    }
    Ok(())
}

/// Sets `[python] enable_livefill_krita=true` in `kritarc` (creating the file if needed),
/// keeping every other line as it was.
pub fn enable(kritarc: &Path) -> Result<()> {
    let text = match fs::read_to_string(kritarc) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", kritarc.display())),
    };
    let key = format!("enable_{MODULE_NAME}");
    let updated = set_ini_value(&text, "python", &key, "true");
    if updated != text {
        if let Some(parent) = kritarc.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(kritarc, updated).with_context(|| format!("writing {}", kritarc.display()))?;
    }
    Ok(())
}

/// `text` (an INI file) with `key=value` set in `[section]`: an existing key is replaced in
/// place, a missing one is added at the end of the section, a missing section at the end.
fn set_ini_value(text: &str, section: &str, key: &str, value: &str) -> String {
    let header = format!("[{section}]");
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.trim() == header);
    let Some(start) = start else {
        let mut out = text.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&format!("{header}\n{key}={value}\n"));
        return out;
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |i| start + 1 + i);
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let existing =
        (start + 1..end).find(|&i| out[i].split_once('=').is_some_and(|(k, _)| k.trim() == key));
    match existing {
        Some(i) => out[i] = format!("{key}={value}"),
        None => {
            // After the section's last non-empty line.
            let mut at = end;
            while at > start + 1 && out[at - 1].trim().is_empty() {
                at -= 1;
            }
            out.insert(at, format!("{key}={value}"));
        }
    }
    let mut joined = out.join("\n");
    joined.push('\n');
    joined
}

/// Writes a zip for Krita's "Import Python Plugin from File…" to `out`: `livefill_krita.desktop`
/// and the `livefill_krita/` package (shared modules included). Entries are stored uncompressed
/// (the plugin is ~150 KB), which keeps this free of a compression dependency.
pub fn build_zip(out: &Path) -> Result<()> {
    let mut entries: Vec<(String, &[u8])> = vec![(format!("{MODULE_NAME}/"), &[][..])];
    for (rel, contents) in files() {
        entries.push((rel, contents.as_bytes()));
    }
    let bytes = zip_stored(&entries);
    let mut file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    file.write_all(&bytes)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// A zip archive with every entry stored (method 0). Names ending in `/` are folders.
fn zip_stored(entries: &[(String, &[u8])]) -> Vec<u8> {
    const DOS_DATE: u16 = (1 << 5) | 1; // 1980-01-01
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let is_dir = name.ends_with('/');
        let size = data.len() as u32;
        // Local file header.
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0x0800u16.to_le_bytes()); // UTF-8 names
        out.extend_from_slice(&0u16.to_le_bytes()); // stored
        out.extend_from_slice(&0u16.to_le_bytes()); // time
        out.extend_from_slice(&DOS_DATE.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // Central directory header.
        let mode: u32 = if is_dir { 0o40755 } else { 0o100644 };
        let external = (mode << 16) | if is_dir { 0x10 } else { 0 };
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&0x031Eu16.to_le_bytes()); // made by: Unix, zip 3.0
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&0x0800u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&DOS_DATE.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&external.to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = out.len() as u32;
    let central_size = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&central_size.to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// CRC-32 (IEEE, as zip uses it).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "livefill-krita-install-{tag}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn installs_package_desktop_file_and_shared_modules() {
        let dest = temp_dir("files");
        let dir = install(Some(&dest)).unwrap();
        assert_eq!(dir, dest.join(MODULE_NAME));
        let desktop = fs::read_to_string(dest.join(DESKTOP_FILE_NAME)).unwrap();
        assert!(desktop.contains(&format!("X-KDE-Library={MODULE_NAME}")));
        assert!(desktop.contains("ServiceTypes=Krita/PythonPlugin"));
        for name in [
            "__init__.py",
            "controller.py",
            "krita_document.py",
            "logic.py",
            "livefill_protocol.py",
            "livefill_client.py",
            "livefill_plugin_core.py",
            "livefill_live.py",
            "live_watch.py",
            "pixel_worker.py",
            "Manual.html",
        ] {
            let text = fs::read_to_string(dir.join(name)).unwrap();
            assert!(!text.trim().is_empty(), "{name} is empty");
        }
        // Reinstalling over an existing install works.
        install(Some(&dest)).unwrap();
        fs::remove_dir_all(&dest).unwrap();
    }

    #[test]
    fn every_package_module_is_embedded() {
        // A new module in plugin-krita/livefill_krita/ must be added to PACKAGE_FILES.
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-krita/livefill_krita");
        for entry in fs::read_dir(src).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".py") || name.ends_with(".html") {
                let shared = SHARED_PYTHON_MODULES.iter().any(|(n, _)| *n == name);
                let own = PACKAGE_FILES.iter().any(|(n, _)| *n == name);
                assert!(own || shared, "{name} is not embedded in PACKAGE_FILES");
            }
        }
    }

    #[test]
    fn kritarc_gets_the_enable_key() {
        let key = "enable_livefill_krita";
        assert_eq!(
            set_ini_value("", "python", key, "true"),
            "[python]\nenable_livefill_krita=true\n"
        );
        let text = "[General]\na=1\n\n[python]\nenable_scripter=true\n\n[Other]\nb=2\n";
        assert_eq!(
            set_ini_value(text, "python", key, "true"),
            "[General]\na=1\n\n[python]\nenable_scripter=true\nenable_livefill_krita=true\n\n[Other]\nb=2\n"
        );
        let off = "[python]\nenable_livefill_krita=false\n";
        assert_eq!(
            set_ini_value(off, "python", key, "true"),
            "[python]\nenable_livefill_krita=true\n"
        );
        assert_eq!(
            set_ini_value("[General]\na=1", "python", key, "true"),
            "[General]\na=1\n\n[python]\nenable_livefill_krita=true\n"
        );

        let dir = temp_dir("rc");
        let rc = dir.join("kritarc");
        enable(&rc).unwrap();
        enable(&rc).unwrap();
        assert_eq!(
            fs::read_to_string(&rc).unwrap(),
            "[python]\nenable_livefill_krita=true\n"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn crc32_matches_the_reference() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn zip_lists_every_file() {
        let dir = temp_dir("zip");
        fs::create_dir_all(&dir).unwrap();
        let out = dir.join("livefill-krita.zip");
        build_zip(&out).unwrap();
        let bytes = fs::read(&out).unwrap();
        let eocd = bytes.len() - 22;
        assert_eq!(&bytes[eocd..eocd + 4], &[0x50, 0x4b, 0x05, 0x06]);
        let count = u16::from_le_bytes([bytes[eocd + 10], bytes[eocd + 11]]) as usize;
        assert_eq!(count, files().len() + 1);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("livefill_krita/__init__.py"));
        assert!(text.contains(DESKTOP_FILE_NAME));
        fs::remove_dir_all(&dir).unwrap();
    }
}
