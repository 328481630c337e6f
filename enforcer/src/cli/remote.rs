//! Commands answered by the running daemon over its control socket.

use std::{path::Path, process::ExitCode};

use anyhow::bail;
use serde_json::Value;

use crate::control::{
    client::{ClientError, call},
    protocol::Command,
};

/// Exit codes shared by the commands that talk to the daemon.
pub const NOT_RUNNING: u8 = 3;
pub const DENIED: u8 = 4;

/// A refusal for lack of rights (exit code [`DENIED`]), whoever said it:
/// the daemon, the store's access check, or a command that needs root.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// The result of a request, or the daemon's error as a failure.
pub fn request(socket: &Path, command: Command) -> anyhow::Result<Value> {
    let response = call(socket, command)?;
    match (response.ok, response.result, response.error) {
        (true, Some(result), _) => Ok(result),
        (_, _, Some(e)) if e.code == "forbidden" => {
            let denied = ClientError::Denied {
                path: socket.to_owned(),
            };
            Err(Denied(format!("{denied}: {}", e.message)).into())
        }
        (_, _, Some(e)) => bail!("the daemon refused ({}): {}", e.code, e.message),
        _ => bail!("the daemon sent an empty answer"),
    }
}

/// Whether a daemon answers on `socket`.
pub fn reachable(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

pub fn status(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let s = request(socket, Command::Status)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    let get = |p: &str| s.pointer(p).cloned().unwrap_or(Value::Null);
    let text = |p: &str| match get(p) {
        Value::String(x) => x,
        Value::Null => "-".into(),
        v => v.to_string(),
    };
    println!(
        "enforcer {} — {} mode, up {} s",
        text("/version"),
        text("/mode"),
        text("/uptime_s")
    );
    println!("cgroup:    {}", text("/cgroup"));
    let ifaces = get("/xdp_interfaces");
    println!(
        "xdp:       {}",
        match ifaces.as_array() {
            Some(a) if !a.is_empty() => a
                .iter()
                .map(|v| v.as_str().unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "none".into(),
        }
    );
    println!("pins:      {}", text("/pins"));
    let sources = get("/policy/sources");
    println!(
        "policy:    {} (loaded {} s ago)",
        sources.as_array().map_or("-".into(), |a| a
            .iter()
            .map(|v| v.as_str().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(", ")),
        text("/policy/age_s")
    );
    println!(
        "maps:      {} exact v4, {} exact v6, {} ranges v4, {} ranges v6, {} exceptions v4, {} exceptions v6",
        text("/maps/deny_v4"),
        text("/maps/deny_v6"),
        text("/maps/deny_lpm_v4"),
        text("/maps/deny_lpm_v6"),
        text("/maps/allow_lpm_v4"),
        text("/maps/allow_lpm_v6")
    );
    println!(
        "names:     {} ({} fresh, {} stale, {} nxdomain, {} pending)",
        text("/names/total"),
        text("/names/fresh"),
        text("/names/stale"),
        text("/names/nxdomain"),
        text("/names/pending")
    );
    if let Some(hooks) = get("/events/per_hook").as_object() {
        for (hook, v) in hooks {
            let denied = v.get("denied").and_then(Value::as_u64).unwrap_or(0);
            let audited = v.get("audited").and_then(Value::as_u64).unwrap_or(0);
            let passed = v.get("pass").and_then(Value::as_u64).unwrap_or(0);
            println!("  {hook:<11} {denied} denied, {audited} audited, {passed} passed");
        }
    }
    println!(
        "events:    {} lost (ring buffer full), {} XDP suppressed, {} skb coalesced",
        text("/events/lost_ringbuf_full"),
        text("/events/xdp_suppressed"),
        text("/events/skb_coalesced")
    );
    for w in get("/policy/warnings").as_array().into_iter().flatten() {
        println!("warning:   {}", w.as_str().unwrap_or("?"));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn reload(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let r = request(socket, Command::Reload)?;
    if json {
        println!("{}", serde_json::json!({"ok": true, "message": r}));
    } else {
        println!("{}", r.as_str().unwrap_or("reloaded"));
    }
    Ok(ExitCode::SUCCESS)
}
