//! The control socket's file: bound with the right owner and mode, and
//! removed however the daemon stops.

use std::path::{Path, PathBuf};

use tracing::warn;

use super::DaemonError;

/// Removes the control socket file when the daemon stops, however it stops
/// (short of `kill -9`, after which the next start replaces it).
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(path = %self.0.display(), error = %e, "cannot remove the control socket")
            }
        }
    }
}

/// Binds the control socket: refuses to steal one a live daemon serves,
/// replaces a stale one, and lets root and the `enforcer` group connect.
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener, DaemonError> {
    use std::os::unix::fs::PermissionsExt as _;
    let err = |source| DaemonError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another enforcer daemon serves this socket; give each instance its own --socket",
            )));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(err)?;
    let mode = if let Some(gid) = crate::control::auth::enforcer_gid() {
        std::os::unix::fs::chown(path, Some(0), Some(gid)).map_err(err)?;
        0o660
    } else {
        0o600
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    Ok(listener)
}
