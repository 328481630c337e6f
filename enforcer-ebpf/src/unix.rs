//! connect_unix and sendmsg_unix (kernel 6.7+): a contained process may
//! reach only the Unix-domain sockets its allow list names. A local SOCKS
//! proxy (`ssh -D /path`), a container runtime's socket or any other
//! daemon that connects on the agent's behalf is otherwise a way out.
//! Uncontained processes pay one map lookup (the pid's mark).
//!
//! The context gives no access to the address of a Unix-domain socket
//! (there is only a kfunc to rewrite it). The context pointer is the
//! kernel's `struct bpf_sock_addr_kern`, whose `uaddr` and `uaddrlen` are
//! read with `bpf_probe_read_kernel` (a privileged loader may pass the
//! pointer to a helper). The layout is that of every kernel with these
//! attach types (6.7+): `sk`, `uaddr`, `tmp_reg`, `t_ctx`, `uaddrlen`; the
//! daemon checks it against the kernel's BTF before loading.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{
        bpf_get_prandom_u32, bpf_get_socket_cookie, bpf_probe_read_kernel,
        bpf_probe_read_kernel_str,
    },
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use enforcer_common::{
    AF_UNIX, HOOK_CONNECT_UNIX, HOOK_SENDMSG_UNIX,
    agents::{AgentUnixKey, UNIX_PATH_MAX, UNIX_UADDR_OFFSET, UNIX_UADDRLEN_OFFSET},
};

use crate::{
    contain,
    kernel::{self, sock_addr_kern},
    maps::AGENT_UNIX_SEEN,
    report::{Flow, current_owner, emit},
    verdict::passes,
};

const ALLOW: i32 = 1;
const DENY: i32 = 0;
/// `offsetof(struct sockaddr_un, sun_path)`.
const SUN_PATH_OFFSET: u64 = 2;

// The section says connect4/sendmsg4 because aya 0.14 parses no other; the
// daemon loads these two with the Unix attach types.
#[cgroup_sock_addr(connect4)]
pub fn connect_unix(ctx: SockAddrContext) -> i32 {
    try_unix(&ctx, HOOK_CONNECT_UNIX)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg_unix(ctx: SockAddrContext) -> i32 {
    try_unix(&ctx, HOOK_SENDMSG_UNIX)
}

#[inline(always)]
fn try_unix(ctx: &SockAddrContext, hook: u32) -> i32 {
    let Some(agent) = contain::current() else {
        return ALLOW;
    };
    let mut key = AgentUnixKey {
        slot: agent.selector,
        len: 0,
        path: [0; UNIX_PATH_MAX],
    };
    // Unreadable: judged as the empty name, which no allow list holds.
    let _ = read_name(ctx, &mut key);
    if contain::allows_unix(&agent, &key) {
        return ALLOW;
    }
    let verdict = agent.verdict();
    // SAFETY: the context is a valid argument for this helper in sock_addr programs.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    // One entry per attempt (a socket may be refused several names before
    // the daemon reads them); the event carries the entry's key: random
    // above the cookie's low half, so two attempts do not share one.
    // SAFETY: a helper without arguments.
    let seen = (u64::from(unsafe { bpf_get_prandom_u32() }) << 32) | (cookie & 0xffff_ffff);
    let _ = AGENT_UNIX_SEEN.insert(seen, key, 0);
    emit(
        &Flow {
            verdict,
            cookie,
            addr: [seen as u32, (seen >> 32) as u32, 0, 0],
            family: AF_UNIX,
            agent: agent.event_id(),
            ..Flow::blank(hook, 0)
        },
        &current_owner(),
    );
    if passes(verdict) { ALLOW } else { DENY }
}

/// Fills `key.path`/`key.len` with the socket name the process gave:
/// exactly its bytes, the rest of `key.path` left zero. Straight-line
/// helper calls, no loop over the bytes: a loop of 108 steps with a
/// variable end took the verifier about 160 ms per program at every start.
#[inline(always)]
fn read_name(ctx: &SockAddrContext, key: &mut AgentUnixKey) -> Option<()> {
    let kern = sock_addr_kern(ctx);
    let uaddr = kernel::pointer(kern, UNIX_UADDR_OFFSET)?;
    let uaddrlen = kernel::read::<u32>(kern, UNIX_UADDRLEN_OFFSET)?;
    // The bytes given after the family, at most sun_path's.
    let given = uaddrlen.saturating_sub(SUN_PATH_OFFSET as u32);
    let given = if given > UNIX_PATH_MAX as u32 {
        UNIX_PATH_MAX as u32
    } else {
        given
    };
    if given == 0 {
        return None;
    }
    let src = (uaddr + SUN_PATH_OFFSET) as *const c_void;
    // An abstract name (first byte NUL) is every byte given.
    // SAFETY: a kernel read through the helper, which fails cleanly, into
    // `key.path` (`given` ≤ its length).
    if unsafe { bpf_probe_read_kernel(key.path.as_mut_ptr().cast(), given, src) } != 0 {
        return None;
    }
    if key.path[0] == 0 {
        key.len = given;
        return Some(());
    }
    // A path ends at its first NUL within what was given: read again as a
    // string of at most `given` bytes, into a buffer with room for the NUL
    // the helper always writes (after 108 bytes for a path without one).
    let mut path = [0u8; UNIX_PATH_MAX + 4];
    // SAFETY: as above, into `path` (`given + 1` ≤ its length).
    let n = unsafe { bpf_probe_read_kernel_str(path.as_mut_ptr().cast(), given + 1, src) };
    if n <= 0 {
        return None;
    }
    key.path.copy_from_slice(&path[..UNIX_PATH_MAX]);
    key.len = n as u32 - 1;
    Some(())
}
