//! Messages: one JSON object per line, `{"v": 1, "cmd": ...}` in,
//! `{"v": 1, "ok": true, "result": ...}` or `{"v": 1, "ok": false,
//! "error": {"code": ..., "message": ...}}` out.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWrite, AsyncWriteExt as _};

pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line accepted, bytes.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Command {
    Status,
    Flows {
        #[serde(default)]
        since_ms: Option<u64>,
        #[serde(default)]
        pid: Option<u32>,
        #[serde(default)]
        exe: Option<String>,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        domain: Option<String>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default = "default_limit")]
        limit: usize,
    },
    Check {
        target: String,
    },
    /// Streams each new flow as a line until the client leaves.
    Follow,
    Reload,
    Detach,
}

fn default_limit() -> usize {
    100
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `bad_request`, `unsupported_version`, `forbidden`, `too_large`,
    /// `failed`.
    pub code: String,
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
    pub fn ok(result: Value) -> Response {
        Response {
            v: PROTOCOL_VERSION,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn error(code: &str, message: impl Into<String>) -> Response {
        Response {
            v: PROTOCOL_VERSION,
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code: code.into(),
                message: message.into(),
            }),
        }
    }
}

/// Parses one request line; a bad one gets an error response instead.
pub fn parse(line: &str) -> Result<Request, Response> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| Response::error("bad_request", format!("not JSON: {e}")))?;
    match value.get("v").and_then(Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(Response::error(
                "unsupported_version",
                format!("protocol version {v}; this daemon speaks {PROTOCOL_VERSION}"),
            ));
        }
        None => {
            return Err(Response::error(
                "bad_request",
                "missing \"v\" (protocol version)",
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| Response::error("bad_request", e.to_string()))
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
    let mut line = serde_json::to_vec(msg).expect("messages serialise");
    line.push(b'\n');
    w.write_all(&line).await?;
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
            Command::Flows {
                pid: Some(7),
                limit: 100,
                ..
            }
        ));
        assert!(
            parse(r#"{"v":1,"cmd":"reload"}"#)
                .unwrap()
                .command
                .changes()
        );
        let e = parse("{").unwrap_err();
        assert_eq!(e.error.unwrap().code, "bad_request");
        let e = parse(r#"{"v":2,"cmd":"status"}"#).unwrap_err();
        assert_eq!(e.error.unwrap().code, "unsupported_version");
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
