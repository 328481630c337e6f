//! Bytes of an inspected connection that the sk_msg program never judged.
//!
//! A connection joins the sockhash (and so the sk_msg path) when sock_ops
//! sees it established. A write that entered `tcp_sendmsg` before that (a
//! blocking `send()` made while a non-blocking `connect()` was still in
//! progress waits there for the handshake) goes on through the plain TCP
//! path, uninspected. So each inspected connection carries, in
//! socket-local storage (`SNI_PENDING`), the TCP sequence number up to
//! which the sk_msg program let bytes through, and a state:
//! - sk_msg, before judging a write: if the socket's `write_seq` is past
//!   that point, bytes it never saw were queued first (they may still sit
//!   in the queue, corked): the connection is tainted and the write refused;
//! - skb egress, for a data segment while the first write is still to be
//!   judged: bytes past that point are bytes sk_msg never saw: the
//!   connection is tainted and the segment dropped;
//! - a tainted connection sends no data again (both places refuse it).
//!
//! The state also says what the next write is: WAIT, a write still to be
//! judged as a first one (at first, and again after a proxy request, for
//! the tunnel's first write); HTTP, plain HTTP, where each write that
//! starts a request is judged; JUDGED, nothing more to judge (later writes
//! pass at once).
//!
//! The storage is made only for inspected connections; every other
//! packet pays one array read (`SNI_WATCHED`, until some connection was
//! ever inspected) or one storage lookup on its socket.

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    bindings::{BPF_SK_STORAGE_GET_F_CREATE, bpf_sock},
    helpers::generated::{bpf_sk_fullsock, bpf_sk_storage_delete, bpf_sk_storage_get},
    programs::SkMsgContext,
};
use enforcer_common::{
    KOFF_SK_MSG_SK, KOFF_TCP_WRITE_SEQ, SNI_PENDING_BODY_SHIFT, SNI_PENDING_HTTP,
    SNI_PENDING_JUDGED, SNI_PENDING_STATE_MASK, SNI_PENDING_TAINTED, SNI_PENDING_TUNNEL,
    SNI_PENDING_WAIT, SniPending,
};

use crate::{
    kernel::{offset, pointer, read},
    maps::{SNI_PENDING, SNI_WATCHED},
};

#[inline(always)]
fn map() -> *mut c_void {
    ptr::from_ref(&SNI_PENDING).cast_mut().cast()
}

/// sock_ops, as a connection goes under inspection: nothing judged yet,
/// its first data byte at `snd_nxt` (the SYN's sequence number + 1). False
/// if the kernel could not make the storage (no memory): the blocking-send
/// check then does not cover this connection.
///
/// # Safety
/// `sk` is `ctx->sk` of a sock_ops context at an established callback.
#[inline(always)]
pub unsafe fn watch(sk: *mut bpf_sock, snd_nxt: u32) -> bool {
    if sk.is_null() {
        return false;
    }
    if let Some(w) = SNI_WATCHED.get_ptr_mut(0) {
        // SAFETY: the map's only slot; a racing writer writes the same.
        unsafe {
            if *w == 0 {
                *w = 1;
            }
        }
    }
    let mut init = SniPending {
        judged_end: snd_nxt,
        state: SNI_PENDING_WAIT,
    };
    // SAFETY: the caller's; `init` is copied in as the storage is made.
    let p: *mut SniPending = unsafe {
        bpf_sk_storage_get(
            map(),
            sk.cast(),
            ptr::from_mut(&mut init).cast(),
            BPF_SK_STORAGE_GET_F_CREATE as u64,
        )
    }
    .cast();
    if p.is_null() {
        return false;
    }
    // SAFETY: a live storage element. An old one (a socket connected
    // again after a failed attempt) starts over.
    unsafe { *p = init };
    true
}

/// The state of the socket an sk_msg program runs for (NULL: none, the
/// connection went under inspection without it).
#[inline(always)]
pub fn of_msg(ctx: &SkMsgContext) -> *mut SniPending {
    // SAFETY: `sk` of the sk_msg context is a full socket.
    let sk = unsafe { (*ctx.msg).__bindgen_anon_3.sk };
    if sk.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: as above; no creation.
    unsafe { bpf_sk_storage_get(map(), sk.cast(), ptr::null_mut(), 0) }.cast()
}

/// sk_msg, before a write is judged: whether bytes nobody judged went
/// first (the connection is then tainted). Where the kernel's layout is
/// not known, only the skb check stands.
#[inline(always)]
pub fn unjudged_before(ctx: &SkMsgContext, p: *mut SniPending) -> bool {
    if p.is_null() {
        return false;
    }
    // SAFETY: a live storage element of this socket; the socket lock is
    // held while the program runs.
    let state = unsafe { *p };
    if state.state == SNI_PENDING_TAINTED {
        return true;
    }
    if !matches!(
        state.state & SNI_PENDING_STATE_MASK,
        SNI_PENDING_WAIT | SNI_PENDING_TUNNEL | SNI_PENDING_HTTP
    ) {
        return false;
    }
    let (sk_at, seq_at) = (offset(KOFF_SK_MSG_SK), offset(KOFF_TCP_WRITE_SEQ));
    if sk_at == 0 || seq_at == 0 {
        return false;
    }
    // The context is the kernel's `struct sk_msg`.
    let Some(sk) = pointer(ctx.msg as u64, sk_at) else {
        return false;
    };
    let Some(write_seq) = read::<u32>(sk, seq_at) else {
        return false;
    };
    if write_seq == state.judged_end {
        return false;
    }
    // SAFETY: as above.
    unsafe { (*p).state = SNI_PENDING_TAINTED };
    true
}

/// sk_msg let `size` bytes through without a final decision: they are
/// judged bytes, and the next write is judged in `state`: WAIT, as a
/// first write (after a SOCKS greeting or login); TUNNEL, as the first
/// write through a tunnel (after a proxy request); HTTP, as plain HTTP.
/// False without storage.
#[inline(always)]
pub fn let_through(p: *mut SniPending, size: u32, state: u32) -> bool {
    if p.is_null() {
        return false;
    }
    // SAFETY: a live storage element; the socket lock is held.
    unsafe {
        (*p).judged_end = (*p).judged_end.wrapping_add(size);
        (*p).state = state;
    }
    true
}

/// The most body bytes `SniPending::state` holds.
const BODY_MAX: u32 = u32::MAX >> SNI_PENDING_BODY_SHIFT;

/// As `let_through` into plain HTTP, with `body` bytes of the request's
/// body still to come after these (0: none, or not known: a body longer
/// than the state holds is read write by write as one of unknown length).
#[inline(always)]
pub fn let_through_body(p: *mut SniPending, size: u32, body: u32) -> bool {
    let body = if body > BODY_MAX { 0 } else { body };
    let_through(p, size, SNI_PENDING_HTTP | (body << SNI_PENDING_BODY_SHIFT))
}

/// How many bytes of a plain-HTTP request's body are still to come.
#[inline(always)]
pub fn body_left(p: *mut SniPending) -> u32 {
    if !is(p, SNI_PENDING_HTTP) {
        return 0;
    }
    // SAFETY: a live storage element (`is` checked it).
    unsafe { (*p).state >> SNI_PENDING_BODY_SHIFT }
}

/// sk_msg decided the connection passes: nothing more to check. False if
/// there is no storage to say so.
#[inline(always)]
pub fn judged(p: *mut SniPending) -> bool {
    if p.is_null() {
        return false;
    }
    // SAFETY: as above.
    unsafe { (*p).state = SNI_PENDING_JUDGED };
    true
}

/// Whether the connection's state is `state` (`SNI_PENDING_*`; the HTTP
/// state's body count aside): JUDGED, the first write judged and passed;
/// TUNNEL, the next write the first through a tunnel; HTTP, plain HTTP.
#[inline(always)]
pub fn is(p: *mut SniPending, state: u32) -> bool {
    // SAFETY: a live storage element when not NULL.
    !p.is_null() && unsafe { (*p).state } & SNI_PENDING_STATE_MASK == state
}

/// sock_ops, for a connection not under inspection: drops what an
/// earlier connection of the same socket left. True if there was any (the
/// socket is then also to leave the sockhash).
///
/// # Safety
/// `sk` is `ctx->sk` of a sock_ops context (NULL or a full socket).
#[inline(always)]
pub unsafe fn forget(sk: *mut bpf_sock) -> bool {
    if sk.is_null() || !watched() {
        return false;
    }
    // SAFETY: the caller's; no creation.
    let p = unsafe { bpf_sk_storage_get(map(), sk.cast(), ptr::null_mut(), 0) };
    if p.is_null() {
        return false;
    }
    // SAFETY: as above.
    unsafe { bpf_sk_storage_delete(map(), sk.cast()) };
    true
}

/// Whether some connection was ever put under inspection.
#[inline(always)]
pub fn watched() -> bool {
    matches!(SNI_WATCHED.get(0), Some(&n) if n != 0)
}

/// The state of a packet's socket, if it is an inspected connection whose
/// first write is not judged yet or that is tainted (NULL otherwise).
///
/// # Safety
/// `sk` is `skb->sk` of a cgroup_skb program.
#[inline(always)]
pub unsafe fn of_packet(sk: *mut bpf_sock) -> *mut SniPending {
    if sk.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: the caller's; NULL for what is not a full socket.
    let full = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: a full socket from `bpf_sk_fullsock`; no creation.
    let p: *mut SniPending =
        unsafe { bpf_sk_storage_get(map(), full.cast(), ptr::null_mut(), 0) }.cast();
    // SAFETY: a live storage element when not NULL.
    if p.is_null() || unsafe { (*p).state } == SNI_PENDING_JUDGED {
        return ptr::null_mut();
    }
    p
}

/// skb egress: whether a data segment of `len` bytes starting at `seq`
/// carries bytes the sk_msg program never judged (then the connection is
/// tainted). `p` is from [`of_packet`].
#[inline(always)]
pub fn unjudged_segment(p: *mut SniPending, seq: u32, len: u32) -> bool {
    if p.is_null() || len == 0 {
        return false;
    }
    // SAFETY: a live storage element. A segment may be sent without the
    // socket lock (a retransmit from the timer holds it too; the race is
    // with a writer's judged_end update, which only grows it).
    let state = unsafe { *p };
    if state.state == SNI_PENDING_TAINTED {
        return true;
    }
    // Past what was judged, in sequence-number space (it wraps).
    let past = seq.wrapping_add(len).wrapping_sub(state.judged_end) as i32 > 0;
    if past {
        // SAFETY: as above.
        unsafe { (*p).state = SNI_PENDING_TAINTED };
    }
    past
}
