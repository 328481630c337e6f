//! cgroup_skb egress: defense in depth. Catches packets to banned addresses
//! that passed the syscall hooks, e.g. a connection opened before its
//! destination was banned. Returning 0 drops the packet; a local sender
//! sees EPERM.

use aya_ebpf::{
    helpers::generated::{bpf_get_socket_cookie, bpf_skb_cgroup_id},
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use enforcer_common::{
    AF_INET, AF_INET6, EVENT_F_OWNER_FROM_COOKIE, EVENT_F_OWNER_UNKNOWN, EVENT_F_UNINSPECTED,
    HOOK_SKB_EGRESS, IPPROTO_TCP, IPPROTO_UDP, STAT_OWNER_UNKNOWN, SockOwner, VERDICT_PASS,
};

use crate::{
    contain,
    net::Packet as _,
    net::{
        ETH_P_IP, ETH_P_IPV6, IPV6_HLEN, SKB_DROP, SKB_PASS, ipv4, ipv6, ipv6_l4, l4_port,
        skb_ethertype,
    },
    owner, pending,
    report::{Flow, bump, conclude, emit, skb_report_due},
    verdict::{
        ERROR, Match, banned_or_error, check_v4, check_v6_forms, inspected_v4, inspected_v6,
        port_rules, port_v4, port_v6_forms,
    },
};

#[cgroup_skb(egress)]
pub fn skb_egress(ctx: SkBuffContext) -> i32 {
    if contain::on() && !contained_passes(&ctx) {
        return SKB_DROP;
    }
    if pending::watched()
        && let Some(verdict) = unjudged(&ctx)
    {
        return verdict;
    }
    let parsed = match skb_ethertype(&ctx) {
        ETH_P_IP => parse_v4(&ctx),
        ETH_P_IPV6 => parse_v6(&ctx),
        // Not IP: nothing of ours to judge.
        _ => return SKB_PASS,
    };
    let (found, flow) = match parsed {
        Ok(p) => p,
        Err(()) => (ERROR, blank_flow()),
    };
    let goes_on = conclude(HOOK_SKB_EGRESS, found, |verdict, rule_id| {
        report(
            &ctx,
            Flow {
                verdict,
                rule_id,
                ..flow
            },
        )
    });
    if goes_on { SKB_PASS } else { SKB_DROP }
}

/// A contained process's packets that no syscall hook judged: ICMP and
/// raw sockets (TCP and UDP were judged at connect/sendmsg, where a
/// name's learned address is current; judging each packet again would cut
/// a long connection when the address's TTL ends). False: drop.
#[inline(always)]
fn contained_passes(ctx: &SkBuffContext) -> bool {
    let skb = ctx.skb.skb;
    // SAFETY: `skb->sk` of this program's context.
    let Some(owner) = (unsafe { owner::of_packet((*skb).__bindgen_anon_2.sk) }) else {
        return true;
    };
    let Some(agent) = contain::of(owner.tgid) else {
        return true;
    };
    let (allowed, flow) = match skb_ethertype(ctx) {
        ETH_P_IP => {
            let Ok(ip) = ipv4(ctx, L3) else {
                return true;
            };
            if ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP {
                return true;
            }
            (
                contain::allows_v4(&agent, ip.daddr, 0, ip.protocol),
                Flow {
                    family: AF_INET,
                    addr: [ip.daddr, 0, 0, 0],
                    protocol: ip.protocol as u32,
                    ..blank_flow()
                },
            )
        }
        ETH_P_IPV6 => {
            let Ok(ip) = ipv6(ctx, L3) else {
                return true;
            };
            let (proto, _) = ipv6_l4(ctx, L3, ip.next).unwrap_or((ip.next, L3 + IPV6_HLEN));
            if proto == IPPROTO_TCP || proto == IPPROTO_UDP {
                return true;
            }
            (
                contain::allows_v6(&agent, ip.daddr, 0, proto),
                Flow {
                    family: AF_INET6,
                    addr: ip.daddr,
                    protocol: proto as u32,
                    ..blank_flow()
                },
            )
        }
        _ => return true,
    };
    if allowed {
        return true;
    }
    let found = Match {
        verdict: agent.verdict(),
        rule_id: 0,
    };
    conclude(HOOK_SKB_EGRESS, found, |verdict, rule_id| {
        report(
            ctx,
            Flow {
                verdict,
                rule_id,
                agent: agent.event_id(),
                ..flow
            },
        )
    })
}

/// A data segment of an inspected connection carrying bytes the sk_msg
/// program never judged (`pending`): a write that entered TCP before the
/// connection was under inspection. Judged as a ban of the rule the
/// destination is inspected for (an error verdict without one); `None`
/// for every other packet.
#[inline(always)]
fn unjudged(ctx: &SkBuffContext) -> Option<i32> {
    let skb = ctx.skb.skb;
    // SAFETY: `skb->sk` of this program's context.
    let progress = unsafe { pending::of_packet((*skb).__bindgen_anon_2.sk) };
    if progress.is_null() {
        return None;
    }
    let (family, addr, l4) = match skb_ethertype(ctx) {
        ETH_P_IP => {
            let ip = ipv4(ctx, L3).ok()?;
            if ip.protocol != IPPROTO_TCP {
                return None;
            }
            (AF_INET, [ip.daddr, 0, 0, 0], ip.l4(L3))
        }
        ETH_P_IPV6 => {
            let ip = ipv6(ctx, L3).ok()?;
            let (proto, l4) = ipv6_l4(ctx, L3, ip.next)?;
            if proto != IPPROTO_TCP {
                return None;
            }
            (AF_INET6, ip.daddr, l4)
        }
        _ => return None,
    };
    let seq = u32::from_be(ctx.read::<u32>(l4 + 4).ok()?);
    let header = (ctx.read::<u8>(l4 + 12).ok()? >> 4) as u32 * 4;
    let data = ctx.len().saturating_sub(l4 as u32 + header);
    if !pending::unjudged_segment(progress, seq, data) {
        return None;
    }
    let cgroup = skb_cgroup(ctx);
    let rule = if family == AF_INET {
        inspected_v4(addr[0], cgroup)
    } else {
        inspected_v6(addr, cgroup)
    };
    let found = banned_or_error(rule);
    let port = l4_port(ctx, IPPROTO_TCP, l4, false);
    let goes_on = conclude(HOOK_SKB_EGRESS, found, |verdict, rule_id| {
        report(
            ctx,
            Flow {
                verdict,
                rule_id,
                family,
                addr,
                port,
                protocol: IPPROTO_TCP as u32,
                flags: EVENT_F_UNINSPECTED,
                ..blank_flow()
            },
        )
    });
    Some(if goes_on { SKB_PASS } else { SKB_DROP })
}

/// The verdict, and what an event would say about the packet (`flags`
/// holds only the address form; `report` adds the owner's).
type Parsed = (Match, Flow);

const fn blank_flow() -> Flow {
    Flow::blank(HOOK_SKB_EGRESS, 0)
}

/// The cgroup v2 id of the packet's socket.
#[inline(always)]
fn skb_cgroup(ctx: &SkBuffContext) -> u64 {
    // SAFETY: the context's skb is valid for the program's run.
    unsafe { bpf_skb_cgroup_id(ctx.skb.skb) }
}

/// cgroup_skb data starts at the network header.
const L3: usize = 0;

#[inline(always)]
fn parse_v4(ctx: &SkBuffContext) -> Result<Parsed, ()> {
    let ip = ipv4(ctx, L3)?;
    let cgroup = skb_cgroup(ctx);
    let mut found = check_v4(ip.daddr, cgroup);
    // The port is read for an event, or for the port rules when no address
    // rule spoke and the policy has some.
    let by_port = found.verdict == VERDICT_PASS && port_rules();
    if found.verdict == VERDICT_PASS && !by_port {
        return Ok((found, blank_flow()));
    }
    let port = if ip.first_fragment() {
        l4_port(ctx, ip.protocol, ip.l4(L3), false)
    } else {
        0
    };
    if by_port {
        found = port_v4(ip.daddr, cgroup, port as u16, ip.protocol);
        if found.verdict == VERDICT_PASS {
            return Ok((found, blank_flow()));
        }
    }
    Ok((
        found,
        Flow {
            family: AF_INET,
            addr: [ip.daddr, 0, 0, 0],
            port,
            protocol: ip.protocol as u32,
            ..blank_flow()
        },
    ))
}

#[inline(always)]
fn parse_v6(ctx: &SkBuffContext) -> Result<Parsed, ()> {
    let ip = ipv6(ctx, L3)?;
    // A NAT64 or 6to4 destination is judged by its IPv4 address too.
    let cgroup = skb_cgroup(ctx);
    let mut j = check_v6_forms(ip.daddr, cgroup);
    let by_port = j.found.verdict == VERDICT_PASS && port_rules();
    if j.found.verdict == VERDICT_PASS && !by_port {
        return Ok((j.found, blank_flow()));
    }
    let (proto, l4) = ipv6_l4(ctx, L3, ip.next).unwrap_or((ip.next, L3 + IPV6_HLEN));
    let port = l4_port(ctx, proto, l4, false);
    if by_port {
        j = port_v6_forms(ip.daddr, cgroup, port as u16, proto);
        if j.found.verdict == VERDICT_PASS {
            return Ok((j.found, blank_flow()));
        }
    }
    Ok((
        j.found,
        Flow {
            family: j.family,
            addr: j.addr,
            port,
            protocol: proto as u32,
            flags: j.via,
            ..blank_flow()
        },
    ))
}

#[inline(always)]
fn report(ctx: &SkBuffContext, flow: Flow) {
    let skb = ctx.skb.skb;
    // SAFETY: the skb context is a valid argument for these helpers here.
    let cookie = unsafe { bpf_get_socket_cookie(skb.cast()) };
    if !skb_report_due(cookie) {
        return;
    }
    let mut flags = EVENT_F_OWNER_FROM_COOKIE;
    // SAFETY: `skb->sk` of this program's context.
    let owner = match unsafe { owner::of_packet((*skb).__bindgen_anon_2.sk) } {
        Some(owner) => owner,
        // No full socket (a request or timewait socket: a server's SYN-ACK,
        // the last ACKs of a closed connection) or none recorded.
        None => {
            bump(STAT_OWNER_UNKNOWN);
            flags = EVENT_F_OWNER_UNKNOWN;
            SockOwner {
                // SAFETY: as above.
                cgroup_id: unsafe { bpf_skb_cgroup_id(skb) },
                pid: 0,
                tgid: 0,
                uid: ctx.get_socket_uid(),
                gid: 0,
                comm: [0; 16],
            }
        }
    };
    emit(
        &Flow {
            flags: flow.flags | flags,
            cookie,
            ..flow
        },
        &owner,
    );
}
