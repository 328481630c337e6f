//! Each socket's owner (the task that created or last connected it), kept
//! in socket-local storage (`SK_OWNERS`) so that the hooks without a
//! reliable task context (skb egress, sock_ops in softirq) can name it.
//!
//! Every program type here hands the helper a different pointer to the same
//! socket; the kernel checks each: the context itself in cgroup sock (its
//! `bpf_sock`), `ctx->sk` in sock_addr and sock_ops (the latter may be
//! NULL), `bpf_sk_fullsock(skb->sk)` in cgroup_skb.
//!
//! No verdict depends on finding an owner. A socket whose storage cannot be
//! made (the kernel is out of memory) is reported with
//! `EVENT_F_OWNER_UNKNOWN`, exactly as a socket older than the programs;
//! sock_ops, which reads the owner's cgroup to find that cgroup's own
//! inspections, inspects such a socket anyway (`sni::established`).

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    bindings::{BPF_SK_STORAGE_GET_F_CREATE, bpf_sock},
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_sk_fullsock, bpf_sk_storage_get},
    },
};
use enforcer_common::SockOwner;

use crate::{maps::SK_OWNERS, report::current_owner};

/// The map as the helpers take it: the BTF map definition's address.
#[inline(always)]
fn map() -> *mut c_void {
    ptr::from_ref(&SK_OWNERS).cast_mut().cast()
}

/// The storage of `sk`, made (with `init` copied in) if `init` is given.
///
/// # Safety
/// `sk` is a socket pointer the verifier accepts for this helper in the
/// calling program type.
#[inline(always)]
unsafe fn storage(sk: *mut c_void, init: Option<&mut SockOwner>) -> *mut SockOwner {
    let (value, flags) = match init {
        Some(v) => (ptr::from_mut(v).cast(), BPF_SK_STORAGE_GET_F_CREATE as u64),
        None => (ptr::null_mut(), 0),
    };
    // SAFETY: the caller's.
    unsafe { bpf_sk_storage_get(map(), sk, value, flags) }.cast()
}

/// sock_create: the creating task owns the new socket. `sock` is the
/// program's context (the kernel wants the context pointer itself).
#[inline(always)]
pub fn record_created(sock: *mut bpf_sock) {
    let mut owner = current_owner();
    // The storage is new: the helper copies `owner` in as it makes it. A
    // NULL result (no memory) leaves the socket unattributed.
    // SAFETY: the cgroup sock context is this helper's argument there.
    let _ = unsafe { storage(sock.cast(), Some(&mut owner)) };
}

/// connect/sendmsg (`sk` is `ctx->sk`): records the current task if the
/// socket has no owner yet (made before the programs were attached) or,
/// on `connect`, if another process now uses it. A lookup when nothing
/// changes: the common case (the creator connects) writes nothing.
#[inline(always)]
pub fn record_user(sk: *mut bpf_sock, connect: bool) {
    // SAFETY: `ctx->sk` of a sock_addr program is a full socket.
    let p = unsafe { storage(sk.cast(), None) };
    if p.is_null() {
        let mut owner = current_owner();
        // SAFETY: as above.
        let _ = unsafe { storage(sk.cast(), Some(&mut owner)) };
        return;
    }
    if !connect {
        return;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: a live storage element of this socket.
    if unsafe { (*p).tgid } != tgid {
        // SAFETY: as above; the syscall that runs this program holds the
        // socket's lock, so no other writer races this one.
        unsafe { *p = current_owner() };
    }
}

/// The owner of a full socket, if recorded. `sk` may be NULL (sock_ops
/// hands NULL for what is not a full socket).
///
/// # Safety
/// `sk` is NULL or a full socket from the program's context.
#[inline(always)]
pub unsafe fn of(sk: *mut bpf_sock) -> Option<SockOwner> {
    if sk.is_null() {
        return None;
    }
    // SAFETY: the caller's.
    let p = unsafe { storage(sk.cast(), None) };
    if p.is_null() {
        return None;
    }
    // SAFETY: a live storage element, read whole.
    Some(unsafe { *p })
}

/// The owner of a packet's socket (`skb->sk`, which may be NULL, a
/// request or a timewait socket: those carry no storage, so no owner).
///
/// # Safety
/// `sk` is `skb->sk` of a cgroup_skb program.
#[inline(always)]
pub unsafe fn of_packet(sk: *mut bpf_sock) -> Option<SockOwner> {
    if sk.is_null() {
        return None;
    }
    // SAFETY: the caller's; the helper takes any socket and returns NULL
    // for what is not a full socket.
    unsafe { of(bpf_sk_fullsock(sk)) }
}
