//! `livefill install-plugin krita|gimp`: copies an editor plugin, together with the shared Python
//! codec, client and plugin core from `protocol/python/`, into the editor's plugin folder.
//!
//! Exists so the plugins are packaged from a single source: the files are embedded in the binary
//! at build time, so the installed codec is always the one this daemon speaks.

pub mod gimp;
pub mod krita;

/// The shared Python modules every plugin ships with, as (file name, contents).
pub const SHARED_PYTHON_MODULES: &[(&str, &str)] = &[
    (
        "livefill_protocol.py",
        include_str!("../../../protocol/python/livefill_protocol.py"),
    ),
    (
        "livefill_client.py",
        include_str!("../../../protocol/python/livefill_client.py"),
    ),
    (
        "livefill_plugin_core.py",
        include_str!("../../../protocol/python/livefill_plugin_core.py"),
    ),
    (
        "livefill_live.py",
        include_str!("../../../protocol/python/livefill_live.py"),
    ),
];
