//! Commands answered by the running daemon over its control socket, and
//! how any command's failure reads (exit code, `--json` error).

use std::{path::Path, process::ExitCode};

use serde::de::DeserializeOwned;

use crate::control::{
    client::{ClientError, call, refusal},
    protocol::{Command, ErrorCode},
};

/// Exit codes shared by the commands that talk to the daemon.
pub const NOT_RUNNING: u8 = 3;
pub const DENIED: u8 = 4;

/// A refusal for lack of rights (exit code [`DENIED`]), whoever said it:
/// the daemon, the store's access check, or a command that needs root.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// The result of a request as `T`, or the daemon's error as a failure.
pub fn request<T: DeserializeOwned>(socket: &Path, command: Command) -> anyhow::Result<T> {
    let response = call(socket, command)?;
    if let Some(e) = response.error {
        return Err(refusal(socket, e.code, e.message).into());
    }
    let result = response
        .result
        .ok_or_else(|| anyhow::anyhow!("the daemon sent an empty answer"))?;
    Ok(
        serde_json::from_value(result).map_err(|source| ClientError::Protocol {
            path: socket.to_owned(),
            source,
        })?,
    )
}

/// Whether a daemon answers on `socket`.
pub fn reachable(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

/// What kind of failure `e` is, by its type (never by its text).
pub fn error_code(e: &anyhow::Error) -> ErrorCode {
    if let Some(c) = e.downcast_ref::<ClientError>() {
        return c.code();
    }
    if e.downcast_ref::<Denied>().is_some() {
        return ErrorCode::Denied;
    }
    if e.downcast_ref::<crate::policy::PolicyError>().is_some() {
        return ErrorCode::InvalidPolicy;
    }
    ErrorCode::Error
}

/// The exit code of a failure: [`NOT_RUNNING`], [`DENIED`], or `other`.
pub fn exit_code(code: ErrorCode, other: u8) -> u8 {
    match code {
        ErrorCode::NotRunning | ErrorCode::Stopped => NOT_RUNNING,
        ErrorCode::Denied | ErrorCode::Forbidden => DENIED,
        _ => other,
    }
}

/// A failure as `--json` prints it (on stdout, where the answer would
/// have been).
pub fn json_error(code: ErrorCode, message: &str) -> serde_json::Value {
    serde_json::json!({"error": {"code": code, "message": message}})
}

pub fn reload(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let r: String = request(socket, Command::Reload)?;
    if json {
        println!("{}", serde_json::json!({"ok": true, "message": r}));
    } else {
        println!("{r}");
    }
    Ok(ExitCode::SUCCESS)
}
