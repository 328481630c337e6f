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

use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel_buf,
        generated::{bpf_get_prandom_u32, bpf_get_socket_cookie},
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

/// Fills `key.path`/`key.len` with the socket name the process gave.
#[inline(always)]
fn read_name(ctx: &SockAddrContext, key: &mut AgentUnixKey) -> Option<()> {
    let kern = sock_addr_kern(ctx);
    let uaddr = kernel::pointer(kern, UNIX_UADDR_OFFSET)?;
    let uaddrlen = kernel::read::<u32>(kern, UNIX_UADDRLEN_OFFSET)?;
    // The address is the kernel's copy in a sockaddr_storage (128 bytes):
    // all of sun_path is readable whatever the length.
    // SAFETY: a kernel read through the helper, which fails cleanly.
    unsafe { bpf_probe_read_kernel_buf((uaddr + SUN_PATH_OFFSET) as *const u8, &mut key.path) }
        .ok()?;
    let given = (uaddrlen as usize).saturating_sub(SUN_PATH_OFFSET as usize);
    let given = if given > UNIX_PATH_MAX {
        UNIX_PATH_MAX
    } else {
        given
    };
    // A path ends at its first NUL; an abstract name (first byte NUL) is
    // every byte given.
    let abstract_name = key.path[0] == 0 && given > 0;
    let mut end = given;
    let mut i = 0;
    while i < UNIX_PATH_MAX {
        if i >= end || (!abstract_name && key.path[i] == 0) {
            if end > i {
                end = i;
            }
            key.path[i] = 0;
        }
        i += 1;
    }
    key.len = end as u32;
    Some(())
}
