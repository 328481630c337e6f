//! The CLI's side of the control socket.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use super::protocol::{
    Command, ErrorCode, Followed, PROTOCOL_VERSION, Query, Request, Response, decode, encode,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the daemon is not running (nothing listens on {path}); start it, or pass --socket")]
    NotRunning { path: PathBuf },
    #[error("permission denied on {path}: the control socket is for root and the `enforcer` group")]
    Denied { path: PathBuf },
    #[error("the daemon stopped ({path} closed)")]
    Stopped { path: PathBuf },
    #[error("the daemon refused ({code}): {message}")]
    Refused { code: ErrorCode, message: String },
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

impl ClientError {
    /// The code a `--json` error carries.
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::NotRunning { .. } => ErrorCode::NotRunning,
            ClientError::Denied { .. } => ErrorCode::Denied,
            ClientError::Stopped { .. } => ErrorCode::Stopped,
            ClientError::Refused { code, .. } => *code,
            ClientError::Io { .. } | ClientError::Protocol { .. } => ErrorCode::Error,
        }
    }
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

/// A connection that has sent `command` and reads the answers.
struct Exchange<'a> {
    socket: &'a Path,
    reader: BufReader<UnixStream>,
}

impl<'a> Exchange<'a> {
    fn open(
        socket: &'a Path,
        command: Command,
        timeout: Option<Duration>,
    ) -> Result<Exchange<'a>, ClientError> {
        let io = |source| io_error(socket, source);
        let mut stream = UnixStream::connect(socket).map_err(io)?;
        stream.set_read_timeout(timeout).map_err(io)?;
        stream
            .write_all(&encode(&Request {
                v: PROTOCOL_VERSION,
                command,
            }))
            .map_err(io)?;
        Ok(Exchange {
            socket,
            reader: BufReader::new(stream),
        })
    }

    /// The next message; `None` when the daemon closed the connection.
    fn next<T: serde::de::DeserializeOwned>(&mut self) -> Result<Option<T>, ClientError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|source| io_error(self.socket, source))?;
        if n == 0 {
            return Ok(None);
        }
        decode(&line)
            .map(Some)
            .map_err(|source| ClientError::Protocol {
                path: self.socket.to_owned(),
                source,
            })
    }

    /// The first answer, required.
    fn response(&mut self) -> Result<Response, ClientError> {
        self.next()?.ok_or_else(|| ClientError::Stopped {
            path: self.socket.to_owned(),
        })
    }
}

/// Sends one request and returns the response.
pub fn call(socket: &Path, command: Command) -> Result<Response, ClientError> {
    Exchange::open(socket, command, Some(Duration::from_secs(90)))?.response()
}

/// Follows the flows matching `query` as the daemon writes them: calls
/// `each` with every item until it returns false. The daemon going away
/// is [`ClientError::Stopped`].
pub fn follow(
    socket: &Path,
    query: Query,
    mut each: impl FnMut(Followed) -> bool,
) -> Result<(), ClientError> {
    let mut exchange = Exchange::open(socket, Command::Follow(query), None)?;
    let ack = exchange.response()?;
    if let Some(e) = ack.error {
        return Err(refusal(socket, e.code, e.message));
    }
    while let Some(item) = exchange.next()? {
        if !each(item) {
            return Ok(());
        }
    }
    Err(ClientError::Stopped {
        path: socket.to_owned(),
    })
}

/// The daemon's error as the client's: a refusal for lack of rights is
/// [`ClientError::Denied`]'s kind.
pub fn refusal(socket: &Path, code: ErrorCode, message: String) -> ClientError {
    match code {
        ErrorCode::Forbidden => ClientError::Refused {
            code,
            message: format!(
                "{}: {message}",
                ClientError::Denied {
                    path: socket.to_owned()
                }
            ),
        },
        _ => ClientError::Refused { code, message },
    }
}
