//! Messages: one JSON object per line, `{"v": 1, "cmd": ...}` in,
//! `{"v": 1, "ok": true, "result": ...}` or `{"v": 1, "ok": false,
//! "error": {"code": ..., "message": ...}}` out.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::status::Status;
use crate::flows::Flow;
pub use crate::flows::Query;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWrite, AsyncWriteExt as _};

pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line accepted, bytes.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Command {
    Status,
    /// The stored flows matching the query (its fields sit beside `cmd`).
    Flows(Query),
    Check {
        target: String,
    },
    /// Streams the flows matching the query as they are written, until
    /// the client leaves (`limit` does not apply).
    Follow(Query),
    Reload,
    Detach,
    /// The agent selectors and the processes they contain.
    Agents,
}

impl Command {
    /// Whether the command changes the enforcement (root only).
    pub fn changes(&self) -> bool {
        matches!(self, Command::Reload | Command::Detach)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub command: Command,
}

/// Why a request failed, as `error.code` says it: the daemon's codes, and
/// those the CLI adds for `--json` errors (one enum, so that both sides
/// name a failure alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The daemon: the request is not one it understands.
    BadRequest,
    UnsupportedVersion,
    /// The daemon: the peer lacks the rights (reads: root or the group;
    /// changes: root).
    Forbidden,
    TooLarge,
    /// The daemon: too many connections of this uid.
    Busy,
    /// The daemon: the request was understood and failed.
    Failed,
    /// The CLI: nothing listens on the socket.
    NotRunning,
    /// The CLI: the daemon went away while followed.
    Stopped,
    /// The CLI: refused for lack of rights (socket, store, root needed).
    Denied,
    /// The CLI: a policy file does not parse or validate.
    InvalidPolicy,
    /// The CLI: anything else.
    Error,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Busy => "busy",
            ErrorCode::Failed => "failed",
            ErrorCode::NotRunning => "not_running",
            ErrorCode::Stopped => "stopped",
            ErrorCode::Denied => "denied",
            ErrorCode::InvalidPolicy => "invalid_policy",
            ErrorCode::Error => "error",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    /// A success carrying `result` (one of the reply types: [`Status`],
    /// [`CheckReply`], flows, or a message).
    pub fn ok(result: impl Serialize) -> Response {
        Response {
            v: PROTOCOL_VERSION,
            ok: true,
            result: Some(serde_json::to_value(result).expect("replies serialise")),
            error: None,
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response {
            v: PROTOCOL_VERSION,
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
        }
    }
}

/// The answer to `check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReply {
    pub blocked: bool,
    pub text: String,
    pub detail: Value,
}

/// One line of a `follow` stream after its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Followed {
    /// The follower fell behind: this many flows were not sent.
    Lagged {
        lagged: u64,
    },
    Flow(Box<Flow>),
}

/// One message as a line of the stream (the framing, both ways).
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(msg).expect("messages serialise");
    line.push(b'\n');
    line
}

/// One line of the stream as a message.
pub fn decode<T: serde::de::DeserializeOwned>(line: &str) -> serde_json::Result<T> {
    serde_json::from_str(line.trim_end_matches(['\n', '\r']))
}

/// Parses one request line; a bad one gets an error response instead.
pub fn parse(line: &str) -> Result<Request, Response> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| Response::error(ErrorCode::BadRequest, format!("not JSON: {e}")))?;
    match value.get("v").and_then(Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(Response::error(
                ErrorCode::UnsupportedVersion,
                format!("protocol version {v}; this daemon speaks {PROTOCOL_VERSION}"),
            ));
        }
        None => {
            return Err(Response::error(
                ErrorCode::BadRequest,
                "missing \"v\" (protocol version)",
            ));
        }
    }
    let request: Request = serde_json::from_value(value.clone())
        .map_err(|e| Response::error(ErrorCode::BadRequest, e.to_string()))?;
    // serde lets a unit variant of an internally tagged enum (`status`,
    // `reload`, `detach`) ignore the fields beside its tag; they are
    // refused as the other commands refuse theirs.
    if matches!(
        request.command,
        Command::Status | Command::Reload | Command::Detach
    ) && let Some(field) = value
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "v" && *k != "cmd"))
    {
        let cmd = value["cmd"].as_str().unwrap_or_default();
        return Err(Response::error(
            ErrorCode::BadRequest,
            format!("unknown field `{field}`: `{cmd}` takes none"),
        ));
    }
    Ok(request)
}

/// What reading a line gave.
pub enum Line {
    Text(String),
    TooLong,
    Eof,
}

/// Reads one line of at most `MAX_REQUEST` bytes. An overlong line is
/// consumed to its end (so the connection can go on) and reported.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Line> {
    let mut buf = Vec::new();
    let mut too_long = false;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                Line::Eof
            } else if too_long {
                Line::TooLong
            } else {
                Line::Text(String::from_utf8_lossy(&buf).into_owned())
            });
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !too_long {
            if buf.len() + chunk.len() > MAX_REQUEST {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let consumed = done.unwrap_or(available.len());
        r.consume(consumed);
        if done.is_some() {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Text(String::from_utf8_lossy(&buf).into_owned())
            });
        }
    }
}

/// Writes one message as a line.
pub async fn write_message<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> std::io::Result<()> {
    w.write_all(&encode(msg)).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_say_why() {
        let r = parse(r#"{"v":1,"cmd":"flows","pid":7}"#).unwrap();
        assert!(matches!(
            r.command,
            Command::Flows(Query {
                pid: Some(7),
                limit: 100,
                ..
            })
        ));
        // Unknown fields are refused, not ignored (a misspelled filter
        // would otherwise match everything).
        for line in [
            r#"{"v":1,"cmd":"flows","pdi":7}"#,
            r#"{"v":1,"cmd":"check","target":"x","port":1}"#,
            // Commands without fields too (issue 9: these were accepted).
            r#"{"v":1,"cmd":"status","verbose":true}"#,
            r#"{"v":1,"cmd":"reload","force":true}"#,
            r#"{"cmd":"detach","v":1,"keep":null}"#,
        ] {
            let e = parse(line).unwrap_err().error.unwrap();
            assert_eq!(e.code, ErrorCode::BadRequest, "{line}");
            assert!(e.message.contains("unknown field"), "{line}: {}", e.message);
        }
        assert_eq!(
            parse(r#"{"v":1,"cmd":"status"}"#).unwrap().command,
            Command::Status
        );
        // An older client's follow, without filters.
        assert_eq!(
            parse(r#"{"v":1,"cmd":"follow"}"#).unwrap().command,
            Command::Follow(Query::default())
        );
        let q = Query {
            exe: Some("/usr/bin/curl".into()),
            ..Query::default()
        };
        let line = encode(&Request {
            v: PROTOCOL_VERSION,
            command: Command::Follow(q.clone()),
        });
        assert_eq!(
            parse(std::str::from_utf8(&line).unwrap()).unwrap().command,
            Command::Follow(q)
        );
        assert!(
            parse(r#"{"v":1,"cmd":"reload"}"#)
                .unwrap()
                .command
                .changes()
        );
        let e = parse("{").unwrap_err();
        assert_eq!(e.error.unwrap().code, ErrorCode::BadRequest);
        let e = parse(r#"{"v":2,"cmd":"status"}"#).unwrap_err();
        assert_eq!(e.error.unwrap().code, ErrorCode::UnsupportedVersion);
        assert_eq!(
            serde_json::to_value(ErrorCode::NotRunning).unwrap(),
            "not_running"
        );
        assert_eq!(
            serde_json::to_value(ErrorCode::BadRequest).unwrap(),
            ErrorCode::BadRequest.as_str()
        );
        let e = parse(r#"{"v":1,"cmd":"explode"}"#).unwrap_err();
        assert!(e.error.unwrap().message.contains("unknown variant"));
        let e = parse(r#"{"cmd":"status"}"#).unwrap_err();
        assert!(e.error.unwrap().message.contains("missing \"v\""));
    }

    #[tokio::test]
    async fn lines_are_bounded_and_an_overlong_one_is_skipped_whole() {
        let mut input = vec![b'x'; MAX_REQUEST + 10];
        input.extend_from_slice(b"\n{\"v\":1}\n");
        let mut r = tokio::io::BufReader::new(&input[..]);
        assert!(matches!(read_line(&mut r).await.unwrap(), Line::TooLong));
        assert!(matches!(read_line(&mut r).await.unwrap(), Line::Text(t) if t == "{\"v\":1}"));
        assert!(matches!(read_line(&mut r).await.unwrap(), Line::Eof));
    }
}
