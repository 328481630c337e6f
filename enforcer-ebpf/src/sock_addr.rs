//! connect4/6 and sendmsg4/6: the verdict at the syscall. Returning 0 makes
//! the kernel fail connect()/sendmsg() with EPERM.

use aya_ebpf::{
    bindings::bpf_sock_addr, helpers::generated::bpf_get_socket_cookie, macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use enforcer_common::{
    AF_INET, AF_INET6, EVENT_F_TFO, EVENT_F_V4_MAPPED, HOOK_CONNECT4, HOOK_CONNECT6, HOOK_SENDMSG4,
    HOOK_SENDMSG6, VERDICT_ALLOWED, VERDICT_PASS,
};

use crate::{
    contain,
    kernel::sock_addr_kern,
    owner,
    report::{Flow, count, current_owner, emit, mark_reported},
    verdict::{
        Match, check_v4, check_v6_forms, fast_open, inspected_v4, inspected_v6, passes, port_rules,
        port_v4, port_v6_forms, quic, v4_mapped,
    },
};

const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    try_v4(&ctx, HOOK_CONNECT4)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    try_v4(&ctx, HOOK_SENDMSG4)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    try_v6(&ctx, HOOK_CONNECT6)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    try_v6(&ctx, HOOK_SENDMSG6)
}

/// The cgroup v2 id of the connecting task: addresses learned from a DNS
/// answer by a non-system resolver apply to that cgroup only.
#[inline(always)]
fn current_cgroup() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { aya_ebpf::helpers::bpf_get_current_cgroup_id() }
}

#[inline(always)]
fn try_v4(ctx: &SockAddrContext, hook: u32) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: the context pointer is valid for the program's run; the
    // verifier checks each field access.
    let addr = unsafe { (*sa).user_ip4 };
    // Read once, here: see `port_of`.
    let (port, proto) = port_of(ctx);
    if let Some(agent) = contain::current()
        && !contain::allows_v4(&agent, addr, port, proto)
    {
        let denied = contained(
            ctx,
            hook,
            &agent,
            AF_INET,
            [addr, 0, 0, 0],
            0,
            (port, proto),
        );
        if denied {
            return DENY;
        }
    }
    let cgroup = current_cgroup();
    let mut found = check_v4(addr, cgroup);
    if found.verdict == VERDICT_PASS && port_rules() {
        found = port_v4(addr, cgroup, port, proto);
    }
    if found.verdict == VERDICT_PASS {
        found = quic(port, proto, || inspected_v4(addr, cgroup));
    }
    let mut flags = 0;
    if uninspected_ok(found.verdict) && hook == HOOK_CONNECT4 {
        let m = fast_open(sock_addr_kern(ctx), port, proto, || {
            inspected_v4(addr, cgroup)
        });
        refuse_uninspectable(&mut found, &mut flags, m);
    }
    judge(
        ctx,
        found,
        dst(hook, AF_INET, [addr, 0, 0, 0], flags, (port, proto)),
    )
}

/// Whether the connect would go ahead (passed, or allowed by an exception
/// while its address may still be inspected): then Fast Open and MPTCP,
/// which no first-write inspection sees, are looked at.
#[inline(always)]
fn uninspected_ok(verdict: u32) -> bool {
    verdict == VERDICT_PASS || verdict == VERDICT_ALLOWED
}

/// `fast_open`'s refusal, if it refuses, takes the place of a pass or an
/// allow (which otherwise stands, and is counted as what it was).
#[inline(always)]
fn refuse_uninspectable(found: &mut Match, flags: &mut u32, m: Match) {
    if m.verdict != VERDICT_PASS {
        *found = m;
        *flags |= EVENT_F_TFO;
    }
}

/// What an event says of the destination (`judge` adds the verdict,
/// rule and socket).
#[inline(always)]
fn dst(hook: u32, family: u32, addr: [u32; 4], flags: u32, (port, proto): (u16, u8)) -> Flow {
    Flow {
        family,
        addr,
        port: port as u32,
        protocol: proto as u32,
        ..Flow::blank(hook, flags)
    }
}

/// A contained process's connection outside its allow list: reported with
/// the selector, denied unless the selector (or the policy) audits. True
/// if denied; an audited one goes on to the bans like any other.
#[inline(always)]
fn contained(
    ctx: &SockAddrContext,
    hook: u32,
    agent: &contain::Agent,
    family: u32,
    addr: [u32; 4],
    flags: u32,
    dst_port: (u16, u8),
) -> bool {
    let found = Match {
        verdict: agent.verdict(),
        rule_id: 0,
    };
    judge(
        ctx,
        found,
        Flow {
            agent: agent.event_id(),
            ..dst(hook, family, addr, flags, dst_port)
        },
    ) == DENY
}

/// The destination port (host order) and the socket's IP protocol.
#[inline(always)]
fn port_of(ctx: &SockAddrContext) -> (u16, u8) {
    let sa = ctx.sock_addr;
    // Volatile: the verifier refuses a context field read through a
    // pointer the compiler derived once and reused (`ctx + off`).
    // SAFETY: as in `try_v4`.
    let (port, protocol) = unsafe {
        (
            core::ptr::read_volatile(&(*sa).user_port),
            core::ptr::read_volatile(&(*sa).protocol),
        )
    };
    (u16::from_be(port as u16), protocol as u8)
}

#[inline(always)]
fn try_v6(ctx: &SockAddrContext, hook: u32) -> i32 {
    let sa = ctx.sock_addr;
    // The verifier only accepts user_ip6 word by word.
    // SAFETY: as in `try_v4`.
    let addr = unsafe {
        [
            core::ptr::read_volatile(&(*sa).user_ip6[0]),
            core::ptr::read_volatile(&(*sa).user_ip6[1]),
            core::ptr::read_volatile(&(*sa).user_ip6[2]),
            core::ptr::read_volatile(&(*sa).user_ip6[3]),
        ]
    };
    // An AF_INET6 socket reaches IPv4 hosts through ::ffff:a.b.c.d, so those
    // are judged against the v4 maps only; NAT64 and 6to4 addresses are
    // real IPv6 destinations, judged by both (`check_v6_forms`).
    let cgroup = current_cgroup();
    // Read once, here: see `port_of`.
    let (port, proto) = port_of(ctx);
    if let Some(agent) = contain::current() {
        let (allowed, family, shown, flags) = match v4_mapped(addr) {
            Some(v4) => (
                contain::allows_v4(&agent, v4, port, proto),
                AF_INET,
                [v4, 0, 0, 0],
                EVENT_F_V4_MAPPED,
            ),
            None => (
                contain::allows_v6(&agent, addr, port, proto),
                AF_INET6,
                addr,
                0,
            ),
        };
        if !allowed && contained(ctx, hook, &agent, family, shown, flags, (port, proto)) {
            return DENY;
        }
    }
    match v4_mapped(addr) {
        Some(v4) => {
            let mut found = check_v4(v4, cgroup);
            if found.verdict == VERDICT_PASS && port_rules() {
                found = port_v4(v4, cgroup, port, proto);
            }
            if found.verdict == VERDICT_PASS {
                found = quic(port, proto, || inspected_v4(v4, cgroup));
            }
            let mut flags = EVENT_F_V4_MAPPED;
            if uninspected_ok(found.verdict) && hook == HOOK_CONNECT6 {
                let m = fast_open(sock_addr_kern(ctx), port, proto, || {
                    inspected_v4(v4, cgroup)
                });
                refuse_uninspectable(&mut found, &mut flags, m);
            }
            judge(
                ctx,
                found,
                dst(hook, AF_INET, [v4, 0, 0, 0], flags, (port, proto)),
            )
        }
        None => {
            let mut j = check_v6_forms(addr, cgroup);
            if j.found.verdict == VERDICT_PASS && port_rules() {
                j = port_v6_forms(addr, cgroup, port, proto);
            }
            if j.found.verdict == VERDICT_PASS {
                j.found = quic(port, proto, || inspected_v6(addr, cgroup));
            }
            let mut flags = j.via;
            if uninspected_ok(j.found.verdict) && hook == HOOK_CONNECT6 {
                let m = fast_open(sock_addr_kern(ctx), port, proto, || {
                    inspected_v6(addr, cgroup)
                });
                refuse_uninspectable(&mut j.found, &mut flags, m);
            }
            judge(
                ctx,
                j.found,
                dst(hook, j.family, j.addr, flags, (port, proto)),
            )
        }
    }
}

#[inline(always)]
fn judge(ctx: &SockAddrContext, found: Match, dst: Flow) -> i32 {
    let hook = dst.hook;
    let sa: *mut bpf_sock_addr = ctx.sock_addr;
    // connect() says who uses the socket now; sendmsg() only fills a gap
    // (sockets made before the programs were attached).
    let is_connect = hook == HOOK_CONNECT4 || hook == HOOK_CONNECT6;
    // SAFETY: as in `try_v4`.
    owner::record_user(unsafe { (*sa).__bindgen_anon_1.sk }, is_connect);
    let Match { verdict, rule_id } = found;
    if verdict == VERDICT_PASS {
        count(hook, VERDICT_PASS);
        return ALLOW;
    }
    count(hook, verdict);
    if verdict != VERDICT_ALLOWED {
        // Only a report needs the cookie: the pass path makes no helper call
        // for it.
        // SAFETY: the context is a valid argument for this helper in sock_addr programs.
        let cookie = unsafe { bpf_get_socket_cookie(sa.cast()) };
        emit(
            &Flow {
                verdict,
                rule_id,
                cookie,
                ..dst
            },
            &current_owner(),
        );
        mark_reported(cookie);
    }
    if passes(verdict) { ALLOW } else { DENY }
}
