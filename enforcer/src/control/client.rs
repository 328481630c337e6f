//! The CLI's side of the control socket.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use super::protocol::{Command, PROTOCOL_VERSION, Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the daemon is not running (nothing listens on {path}); start it, or pass --socket")]
    NotRunning { path: PathBuf },
    #[error("permission denied on {path}: the control socket is for root and the `enforcer` group")]
    Denied { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the daemon answered something that is not a response: {source}")]
    Protocol {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// What a socket error means to the user.
fn io_error(socket: &Path, source: std::io::Error) -> ClientError {
    match source.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning {
                path: socket.to_owned(),
            }
        }
        std::io::ErrorKind::PermissionDenied => ClientError::Denied {
            path: socket.to_owned(),
        },
        _ => ClientError::Io {
            path: socket.to_owned(),
            source,
        },
    }
}

/// Sends one request and returns the response.
pub fn call(socket: &Path, command: Command) -> Result<Response, ClientError> {
    let io = |source| io_error(socket, source);
    let mut stream = UnixStream::connect(socket).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(90)))
        .map_err(io)?;
    let mut line = serde_json::to_vec(&Request {
        v: PROTOCOL_VERSION,
        command,
    })
    .expect("requests serialise");
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).map_err(io)?;
    serde_json::from_str(&reply).map_err(|source| ClientError::Protocol {
        path: socket.to_owned(),
        source,
    })
}

/// Follows new flows: calls `each` with every line the daemon streams,
/// until the connection ends.
pub fn follow(
    socket: &Path,
    mut each: impl FnMut(serde_json::Value) -> bool,
) -> Result<(), ClientError> {
    let io = |source| io_error(socket, source);
    let mut stream = UnixStream::connect(socket).map_err(io)?;
    let mut line = serde_json::to_vec(&Request {
        v: PROTOCOL_VERSION,
        command: Command::Follow,
    })
    .expect("requests serialise");
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let reader = BufReader::new(&stream);
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io)?;
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|source| ClientError::Protocol {
                path: socket.to_owned(),
                source,
            })?;
        if i == 0 {
            if value.get("ok") == Some(&serde_json::Value::Bool(false)) {
                return Err(ClientError::Denied {
                    path: socket.to_owned(),
                });
            }
            continue;
        }
        if !each(value) {
            break;
        }
    }
    Ok(())
}
