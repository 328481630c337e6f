//! `run(listener, jobs, shutdown)`: one task per connection; authorised
//! requests go to the daemon as jobs. A malformed request gets an error and
//! the connection goes on; a client that does not read its answers within
//! the write timeout, or sends nothing for `IDLE_TIMEOUT`, is dropped;
//! nothing a client does blocks the daemon, and no reader can take the
//! connections root needs (see `slots`).

use std::{future::Future, os::fd::AsFd as _, time::Duration};

use tokio::{
    io::BufReader,
    net::{UnixListener, UnixStream},
    sync::{broadcast, mpsc, oneshot},
};

use crate::flows::Flow;
use tracing::{debug, warn};

use super::{
    auth::{Access, GROUP, Peer, access, enforcer_gid, name_service_groups},
    protocol::{
        Command, ErrorCode, Followed, Line, Query, Response, encode, parse, read_line,
        write_message,
    },
    slots::{LIMITS, Slot, Slots},
};

const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Between requests. Every client of the CLI sends its request at once;
/// `flows --follow` streams are not idle.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const JOB_TIMEOUT: Duration = Duration::from_secs(60);
/// A name service lookup (LDAP, SSSD) that takes longer grants nothing.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Accept errors (EMFILE, ENFILE, ENOBUFS) back off this long, doubling
/// up to `ACCEPT_BACKOFF_MAX`: they clear when connections close, and
/// retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

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
    let enforcer_gid = enforcer_gid();
    let slots = Slots::new(LIMITS);
    let mut backoff = ACCEPT_BACKOFF;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => {
                        backoff = ACCEPT_BACKOFF;
                        stream
                    }
                    Err(e) => {
                        if backoff == ACCEPT_BACKOFF {
                            warn!(error = %e, "control socket: accepting failed; backing off");
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        continue;
                    }
                };
                let peer = match Peer::of_socket(stream.as_fd()) {
                    Ok(peer) => peer,
                    Err(e) => {
                        debug!(error = %e, "control connection without credentials; closed");
                        continue;
                    }
                };
                match slots.take(peer.uid) {
                    Some(slot) => {
                        let jobs = jobs.clone();
                        // A receiver, not the sender: when the daemon drops
                        // the sender, followers see their stream end.
                        let follow = follow.subscribe();
                        tokio::spawn(serve(stream, peer, slot, jobs, follow, enforcer_gid));
                    }
                    None => refuse_busy(&stream, peer.uid),
                }
            }
        }
    }
}

/// Tells a connection over its uid's share that it is refused, without
/// waiting: a fresh socket's buffer takes the short line, and a client
/// that opened too many gets no task and no time from the daemon.
fn refuse_busy(stream: &UnixStream, uid: u32) {
    debug!(uid, "control connection refused: too many connections");
    let _ = stream.try_write(&encode(&Response::error(
        ErrorCode::Busy,
        "too many control connections; try again",
    )));
}

/// The peer's access: its connect-time credentials, then the name
/// service (on a blocking thread: it may be a network directory).
async fn peer_access(peer: &Peer, enforcer_gid: Option<u32>) -> Access {
    let from_creds = access(peer, enforcer_gid);
    let (Access::None, Some(g)) = (from_creds, enforcer_gid) else {
        return from_creds;
    };
    let (uid, gid) = (peer.uid, peer.gid);
    let lookup = tokio::task::spawn_blocking(move || name_service_groups(uid, gid));
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(groups)) if groups.contains(&g) => Access::Read,
        Ok(_) => Access::None,
        Err(_) => {
            warn!(
                uid,
                "the name service did not answer in time; group membership not granted"
            );
            Access::None
        }
    }
}

async fn serve(
    stream: UnixStream,
    peer: Peer,
    _slot: Slot,
    jobs: mpsc::Sender<Job>,
    follow: broadcast::Receiver<Flow>,
    enforcer_gid: Option<u32>,
) {
    let access = peer_access(&peer, enforcer_gid).await;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        let line = match tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut r)).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => return,
            Err(_) => {
                debug!(uid = peer.uid, "control connection idle; closed");
                return;
            }
        };
        let response = match line {
            Line::Eof => return,
            Line::TooLong => Response::error(
                ErrorCode::TooLarge,
                format!(
                    "a request is at most {} bytes",
                    super::protocol::MAX_REQUEST
                ),
            ),
            Line::Text(t) if t.trim().is_empty() => continue,
            Line::Text(t) => match follow_query(&t).filter(|_| access != Access::None) {
                Some(q) => {
                    stream_flows(&mut w, follow, &q).await;
                    return;
                }
                None => answer(&t, access, &jobs).await,
            },
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
                ErrorCode::Forbidden,
                format!("reads need root or membership of the `{GROUP}` group"),
            );
        }
        (Access::Read, true) => {
            return Response::error(ErrorCode::Forbidden, "changes (reload, detach) need root");
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
        return Response::error(ErrorCode::Failed, "the daemon is stopping");
    }
    match tokio::time::timeout(JOB_TIMEOUT, rx).await {
        Ok(Ok(response)) => response,
        _ => {
            warn!("a control request got no answer in time");
            Response::error(ErrorCode::Failed, "no answer from the daemon in time")
        }
    }
}

/// The filters of a `follow` request.
fn follow_query(line: &str) -> Option<Query> {
    match parse(line) {
        Ok(r) => match r.command {
            Command::Follow(q) => Some(q),
            _ => None,
        },
        Err(_) => None,
    }
}

/// Acknowledges, then writes every flow matching `q` as it is written to
/// the store, until the client goes away or cannot keep up, or the
/// daemon stops (the connection then closes).
async fn stream_flows<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    mut rx: broadcast::Receiver<Flow>,
    q: &Query,
) {
    let ack = Response::ok("following");
    if !matches!(
        tokio::time::timeout(WRITE_TIMEOUT, write_message(w, &ack)).await,
        Ok(Ok(()))
    ) {
        return;
    }
    loop {
        let item = match rx.recv().await {
            Ok(flow) if q.matches(&flow) => Followed::Flow(Box::new(flow)),
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(n)) => Followed::Lagged { lagged: n },
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
