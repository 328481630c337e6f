//! `run(listener, jobs, shutdown)`: one task per connection; authorised
//! requests go to the daemon as jobs. A malformed request gets an error and
//! the connection goes on; a client that does not read its answers within
//! the write timeout is dropped; nothing a client does blocks the daemon.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{
    io::BufReader,
    net::{UnixListener, UnixStream},
    sync::{Semaphore, broadcast, mpsc, oneshot},
};

use crate::flows::Flow;
use tracing::{debug, warn};

use super::{
    auth::{Access, GROUP, access, group_id, groups_of},
    protocol::{Command, Line, Response, parse, read_line, write_message},
};

/// Connections served at once; more are told to come back.
pub const MAX_CONNECTIONS: usize = 64;
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

/// An authorised request for the daemon, and where its answer goes.
pub struct Job {
    pub command: Command,
    pub reply: oneshot::Sender<Response>,
}

pub async fn run(
    listener: UnixListener,
    jobs: mpsc::Sender<Job>,
    follow: broadcast::Sender<Flow>,
    shutdown: impl Future<Output = ()>,
) {
    let enforcer_gid = group_id(
        &std::fs::read_to_string("/etc/group").unwrap_or_default(),
        GROUP,
    );
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let jobs = jobs.clone();
                        let follow = follow.clone();
                        tokio::spawn(async move {
                            serve(stream, jobs, follow, enforcer_gid).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tokio::spawn(async move {
                            let mut s = stream;
                            let busy = Response::error("busy", "too many control connections; try again");
                            let _ = tokio::time::timeout(WRITE_TIMEOUT, write_message(&mut s, &busy)).await;
                        });
                    }
                }
            }
        }
    }
}

fn peer_access(stream: &UnixStream, enforcer_gid: Option<u32>) -> Access {
    let Ok(cred) = stream.peer_cred() else {
        return Access::None;
    };
    let groups = cred
        .pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .map(|s| groups_of(&s))
        .unwrap_or_default();
    access(cred.uid(), cred.gid(), &groups, enforcer_gid)
}

async fn serve(
    stream: UnixStream,
    jobs: mpsc::Sender<Job>,
    follow: broadcast::Sender<Flow>,
    enforcer_gid: Option<u32>,
) {
    let access = peer_access(&stream, enforcer_gid);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        let line = match tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut r)).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) | Err(_) => return,
        };
        let response = match line {
            Line::Eof => return,
            Line::TooLong => Response::error(
                "too_large",
                format!(
                    "a request is at most {} bytes",
                    super::protocol::MAX_REQUEST
                ),
            ),
            Line::Text(t) if t.trim().is_empty() => continue,
            Line::Text(t) if access != Access::None && is_follow(&t) => {
                stream_flows(&mut w, follow.subscribe()).await;
                return;
            }
            Line::Text(t) => answer(&t, access, &jobs).await,
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write_message(&mut w, &response)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                debug!("control client too slow to read; dropped");
                return;
            }
        }
    }
}

async fn answer(line: &str, access: Access, jobs: &mpsc::Sender<Job>) -> Response {
    let request = match parse(line) {
        Ok(r) => r,
        Err(response) => return response,
    };
    match (access, request.command.changes()) {
        (Access::None, _) => {
            return Response::error(
                "forbidden",
                format!("reads need root or membership of the `{GROUP}` group"),
            );
        }
        (Access::Read, true) => {
            return Response::error("forbidden", "changes (reload, detach) need root");
        }
        _ => {}
    }
    let (tx, rx) = oneshot::channel();
    if jobs
        .send(Job {
            command: request.command,
            reply: tx,
        })
        .await
        .is_err()
    {
        return Response::error("failed", "the daemon is stopping");
    }
    match tokio::time::timeout(JOB_TIMEOUT, rx).await {
        Ok(Ok(response)) => response,
        _ => {
            warn!("a control request got no answer in time");
            Response::error("failed", "no answer from the daemon in time")
        }
    }
}

fn is_follow(line: &str) -> bool {
    matches!(parse(line), Ok(r) if r.command == Command::Follow)
}

/// Acknowledges, then writes every new flow as a line until the client
/// goes away or cannot keep up.
async fn stream_flows<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    mut rx: broadcast::Receiver<Flow>,
) {
    let ack = Response::ok(serde_json::json!("following"));
    if !matches!(
        tokio::time::timeout(WRITE_TIMEOUT, write_message(w, &ack)).await,
        Ok(Ok(()))
    ) {
        return;
    }
    loop {
        let item = match rx.recv().await {
            Ok(flow) => serde_json::to_value(flow).expect("flows serialise"),
            Err(broadcast::error::RecvError::Lagged(n)) => serde_json::json!({ "lagged": n }),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if !matches!(
            tokio::time::timeout(WRITE_TIMEOUT, write_message(w, &item)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}
