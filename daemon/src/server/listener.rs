//! The local socket the daemon listens on.
//!
//! Exists to make owning the socket address safe: the parent folder is created private (0700),
//! the socket file is created 0600, a socket file left behind by a crashed daemon is detected
//! (nobody answers a connect) and replaced, a live daemon's socket is never taken over, peers
//! running as another user are turned away, and the file is removed when the listener is dropped.
//! There is no TCP listener anywhere in livefill.

use std::io;
use std::path::{Path, PathBuf};

use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions};

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("livefill is already running on {0}")]
    AlreadyRunning(PathBuf),
    #[error("{0} exists and is not a socket; not replacing it")]
    NotASocket(PathBuf),
    #[error("cannot create the socket folder {path}: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("not using the socket folder {path}: {problem}")]
    UnsafeFolder { path: PathBuf, problem: String },
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A bound, listening socket; dropping it removes the socket file.
pub struct SocketListener {
    listener: LocalSocketListener,
    path: PathBuf,
}

impl std::fmt::Debug for SocketListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketListener")
            .field("path", &self.path)
            .finish()
    }
}

impl SocketListener {
    /// Binds `path` (see the module docs for the rules). Must be called inside a tokio runtime.
    pub fn bind(path: &Path) -> Result<Self, BindError> {
        create_parent(path)?;
        let listener = match listen(path) {
            Ok(listener) => listener,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                replace_stale(path)?;
                listen(path).map_err(|source| listen_error(path, source))?
            }
            Err(source) => return Err(listen_error(path, source)),
        };
        // interprocess already fchmod()s the socket before bind(); make sure regardless, since
        // a platform without that support would leave it at the umask's mercy.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|source| listen_error(path, source))?;
        }
        Ok(Self {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the next connection from a peer running as this user; connections from other
    /// users are logged and closed here.
    pub async fn accept(&self) -> io::Result<LocalSocketStream> {
        loop {
            let stream = self.listener.accept().await?;
            match peer_allowed(&stream) {
                Ok(()) => return Ok(stream),
                Err(why) => {
                    tracing::warn!(reason = %why, "refused a connection");
                    drop(stream);
                }
            }
        }
    }
}

fn listen_error(path: &Path, source: io::Error) -> BindError {
    BindError::Listen {
        path: path.to_path_buf(),
        source,
    }
}

fn listen(path: &Path) -> io::Result<LocalSocketListener> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    let options = ListenerOptions::new()
        .name(name)
        .reclaim_name(true)
        .try_overwrite(false);
    #[cfg(unix)]
    let options = {
        use interprocess::os::unix::local_socket::ListenerOptionsExt;
        options.mode(0o600)
    };
    options.create_tokio()
}

/// Creates the socket's folder with mode 0700 when it does not exist yet. An existing folder
/// (such as `$XDG_RUNTIME_DIR`) is left as it is, but refused when another user could swap the
/// socket in it: owned by someone other than us or root, or writable by others without the
/// sticky bit.
fn create_parent(path: &Path) -> Result<(), BindError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(());
        };
        if let Ok(meta) = std::fs::metadata(parent) {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let own = unsafe { libc::geteuid() };
            let problem = if meta.uid() != own && meta.uid() != 0 {
                Some(format!("it belongs to uid {}", meta.uid()))
            } else if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
                Some(format!(
                    "other users may write to it (mode {:o})",
                    meta.mode() & 0o7777
                ))
            } else {
                None
            };
            return match problem {
                Some(problem) => Err(BindError::UnsafeFolder {
                    path: parent.to_path_buf(),
                    problem,
                }),
                None => Ok(()),
            };
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| BindError::Folder {
                path: parent.to_path_buf(),
                source,
            })
    }
    #[cfg(not(unix))]
    {
        // Named pipes live in the pipe namespace, not in a folder.
        let _ = path;
        Ok(())
    }
}

/// The address is taken: if a daemon answers there, refuse; if it is a dead socket file, remove
/// it so the caller can bind again.
fn replace_stale(path: &Path) -> Result<(), BindError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::AlreadyRunning(path.to_path_buf()));
        }
        let is_socket = std::fs::symlink_metadata(path)
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false);
        if !is_socket {
            return Err(BindError::NotASocket(path.to_path_buf()));
        }
        tracing::info!(socket = %path.display(), "replacing a stale socket left by a daemon that is gone");
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(listen_error(path, source)),
        }
    }
    #[cfg(not(unix))]
    {
        // A named pipe disappears with its last handle: if it is taken, someone is serving it.
        Err(BindError::AlreadyRunning(path.to_path_buf()))
    }
}

/// Only processes of the daemon's own user may talk to it.
fn peer_allowed(stream: &LocalSocketStream) -> Result<(), String> {
    #[cfg(unix)]
    {
        let creds = stream
            .peer_creds()
            .map_err(|e| format!("cannot read peer credentials: {e}"))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let own = unsafe { libc::geteuid() };
        match creds.euid() {
            Some(uid) if uid == own => Ok(()),
            Some(uid) => Err(format!("peer runs as uid {uid}, the daemon as uid {own}")),
            None => Err("peer credentials carry no user id".into()),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = stream;
        Ok(())
    }
}
