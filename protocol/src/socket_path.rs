//! Where the daemon listens by default.
//!
//! Exists so the daemon and every client compute the same address without configuration.
//! Precedence, highest first:
//!
//! 1. the daemon's `--socket` CLI flag (handled by the daemon; clients get the same path passed
//!    explicitly),
//! 2. the `LIVEFILL_SOCKET` environment variable,
//! 3. Unix: `$XDG_RUNTIME_DIR/livefill.sock`,
//! 4. Unix: `<temp dir>/livefill-<uid>/livefill.sock`, where the temp dir is `$TMPDIR` or `/tmp`
//!    (the daemon creates the `livefill-<uid>` folder with mode 0700);
//!
//! on Windows, after 2., the named pipe `\\.\pipe\livefill-<username>` (`%USERNAME%`).
//!
//! Environment variables set to an empty string count as unset. The Python client
//! (`protocol/python/livefill_client.py`) implements the same rules.

use std::ffi::OsString;
use std::path::PathBuf;

/// Environment variable overriding the default socket path.
pub const SOCKET_ENV: &str = "LIVEFILL_SOCKET";

/// File name of the socket inside its folder.
pub const SOCKET_FILE_NAME: &str = "livefill.sock";

/// The default socket path (Unix) or pipe name (Windows); see the module docs for precedence.
pub fn default_socket_path() -> PathBuf {
    socket_path_with(|key| std::env::var_os(key), current_user())
}

/// [`default_socket_path`] with the environment and the user passed in (for tests).
/// `user` is the uid on Unix and the user name on Windows.
pub fn socket_path_with(env: impl Fn(&str) -> Option<OsString>, user: String) -> PathBuf {
    let var = |key: &str| env(key).filter(|v| !v.is_empty());
    if let Some(path) = var(SOCKET_ENV) {
        return PathBuf::from(path);
    }
    if cfg!(windows) {
        return PathBuf::from(format!(r"\\.\pipe\livefill-{user}"));
    }
    if let Some(dir) = var("XDG_RUNTIME_DIR") {
        return PathBuf::from(dir).join(SOCKET_FILE_NAME);
    }
    let tmp = var("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    tmp.join(format!("livefill-{user}")).join(SOCKET_FILE_NAME)
}

#[cfg(unix)]
fn current_user() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    uid.to_string()
}

#[cfg(not(unix))]
fn current_user() -> String {
    std::env::var("USERNAME").unwrap_or_else(|_| "user".to_owned())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn explicit_env_wins() {
        let env = env_of(&[
            ("LIVEFILL_SOCKET", "/x/y.sock"),
            ("XDG_RUNTIME_DIR", "/run/user/7"),
        ]);
        assert_eq!(
            socket_path_with(env, "7".into()),
            PathBuf::from("/x/y.sock")
        );
    }

    #[test]
    fn xdg_runtime_dir_next() {
        let env = env_of(&[("LIVEFILL_SOCKET", ""), ("XDG_RUNTIME_DIR", "/run/user/7")]);
        assert_eq!(
            socket_path_with(env, "7".into()),
            PathBuf::from("/run/user/7/livefill.sock")
        );
    }

    #[test]
    fn temp_dir_fallback() {
        let env = env_of(&[("TMPDIR", "/var/tmp")]);
        assert_eq!(
            socket_path_with(env, "1000".into()),
            PathBuf::from("/var/tmp/livefill-1000/livefill.sock")
        );
        let env = env_of(&[]);
        assert_eq!(
            socket_path_with(env, "1000".into()),
            PathBuf::from("/tmp/livefill-1000/livefill.sock")
        );
    }

    #[test]
    fn real_default_is_absolute() {
        assert!(default_socket_path().is_absolute() || std::env::var_os(SOCKET_ENV).is_some());
    }
}
