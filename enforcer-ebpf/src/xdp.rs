//! XDP: drops frames whose source or destination is banned, at line rate,
//! on ingress of a workstation and on the forwarding path of a gateway.
//! There is no task here; events carry no owner and are rate-limited.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use enforcer_common::{
    AF_INET, EVENT_F_OWNER_UNKNOWN, EVENT_F_SOURCE, HOOK_XDP, SockOwner, VERDICT_ALLOWED,
    VERDICT_PASS,
};

use crate::{
    net::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP,
        IPV6_HLEN, ipv4_hlen,
    },
    report::{Flow, count, emit, xdp_event_allowed},
    verdict::{
        ERROR, Judged, Match, NO_MATCH, check_v4, check_v6_forms, passes, port_rules, port_v4,
        port_v6_forms,
    },
};

#[xdp]
pub fn xdp_filter(ctx: XdpContext) -> u32 {
    let (found, flow) = match classify(&ctx) {
        Ok(hit) => hit,
        Err(()) => (ERROR, blank_flow()),
    };
    let Match { verdict, rule_id } = found;
    if verdict == VERDICT_PASS {
        count(HOOK_XDP, VERDICT_PASS);
        return xdp_action::XDP_PASS;
    }
    count(HOOK_XDP, verdict);
    if verdict != VERDICT_ALLOWED && xdp_event_allowed() {
        emit(
            &Flow {
                verdict,
                rule_id,
                ..flow
            },
            &NO_OWNER,
        );
    }
    if passes(verdict) {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

const NO_OWNER: SockOwner = SockOwner {
    cgroup_id: 0,
    pid: 0,
    tgid: 0,
    uid: 0,
    gid: 0,
    comm: [0; 16],
};

const fn blank_flow() -> Flow {
    Flow::blank(HOOK_XDP, EVENT_F_OWNER_UNKNOWN)
}

/// A pointer to a `T` at `offset`, if the frame is long enough.
#[inline(always)]
fn at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, ()> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(());
    }
    Ok((start + offset) as *const T)
}

#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Result<T, ()> {
    // SAFETY: `at` checked the bounds; the read may be unaligned.
    Ok(unsafe { core::ptr::read_unaligned(at::<T>(ctx, offset)?) })
}

/// `NO_MATCH`: not IP, or no ban covers either address.
#[inline(always)]
fn classify(ctx: &XdpContext) -> Result<(Match, Flow), ()> {
    let mut proto = u16::from_be(read::<u16>(ctx, 12)?);
    let mut l3 = ETH_HLEN;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = u16::from_be(read::<u16>(ctx, 16)?);
        l3 += 4;
    }
    match proto {
        ETH_P_IP => classify_v4(ctx, l3),
        ETH_P_IPV6 => classify_v6(ctx, l3),
        _ => Ok((NO_MATCH, blank_flow())),
    }
}

#[inline(always)]
fn classify_v4(ctx: &XdpContext, l3: usize) -> Result<(Match, Flow), ()> {
    let saddr: u32 = read(ctx, l3 + 12)?;
    let daddr: u32 = read(ctx, l3 + 16)?;
    let dst = check_v4(daddr, 0);
    let (found, addr, flags) = if dst.verdict != VERDICT_PASS {
        (dst, daddr, 0)
    } else {
        let src = check_v4(saddr, 0);
        if src.verdict != VERDICT_PASS {
            (src, saddr, EVENT_F_SOURCE)
        } else if !port_rules() {
            return Ok((NO_MATCH, blank_flow()));
        } else {
            match by_port_v4(ctx, l3, daddr, saddr)? {
                Some(hit) => hit,
                None => return Ok((NO_MATCH, blank_flow())),
            }
        }
    };
    let vihl: u8 = read(ctx, l3)?;
    let frag: u16 = read(ctx, l3 + 6)?;
    let protocol: u8 = read(ctx, l3 + 9)?;
    let port = if u16::from_be(frag) & 0x1fff == 0 {
        port_of(ctx, protocol, l3 + ipv4_hlen(vihl), flags)
    } else {
        0
    };
    Ok((
        found,
        Flow {
            family: AF_INET,
            addr: [addr, 0, 0, 0],
            port,
            protocol: protocol as u32,
            flags: flags | EVENT_F_OWNER_UNKNOWN,
            ..blank_flow()
        },
    ))
}

#[inline(always)]
fn classify_v6(ctx: &XdpContext, l3: usize) -> Result<(Match, Flow), ()> {
    let saddr: [u32; 4] = read(ctx, l3 + 8)?;
    let daddr: [u32; 4] = read(ctx, l3 + 24)?;
    let dst = check_v6_forms(daddr, 0);
    let (judged, flags) = if dst.found.verdict != VERDICT_PASS {
        (dst, 0)
    } else {
        let src = check_v6_forms(saddr, 0);
        if src.found.verdict != VERDICT_PASS {
            (src, EVENT_F_SOURCE)
        } else if !port_rules() {
            return Ok((NO_MATCH, blank_flow()));
        } else {
            match by_port_v6(ctx, l3, daddr, saddr)? {
                Some(hit) => hit,
                None => return Ok((NO_MATCH, blank_flow())),
            }
        }
    };
    let next: u8 = read(ctx, l3 + 6)?;
    Ok((
        judged.found,
        Flow {
            family: judged.family,
            addr: judged.addr,
            port: port_of(ctx, next, l3 + IPV6_HLEN, flags),
            protocol: next as u32,
            flags: flags | judged.via | EVENT_F_OWNER_UNKNOWN,
            ..blank_flow()
        },
    ))
}

/// The rules with a port, for a frame no address rule matched: the
/// destination on its port, then the source (the remote of an incoming
/// reply) on its port. `None`: none spoke (or a later fragment, which
/// carries no port).
#[inline(always)]
fn by_port_v4(
    ctx: &XdpContext,
    l3: usize,
    daddr: u32,
    saddr: u32,
) -> Result<Option<(Match, u32, u32)>, ()> {
    let vihl: u8 = read(ctx, l3)?;
    let frag: u16 = read(ctx, l3 + 6)?;
    let protocol: u8 = read(ctx, l3 + 9)?;
    if u16::from_be(frag) & 0x1fff != 0 {
        return Ok(None);
    }
    let l4 = l3 + ipv4_hlen(vihl);
    let dport = port_of(ctx, protocol, l4, 0) as u16;
    let dst = port_v4(daddr, 0, dport, protocol);
    if dst.verdict != VERDICT_PASS {
        return Ok(Some((dst, daddr, 0)));
    }
    let sport = port_of(ctx, protocol, l4, EVENT_F_SOURCE) as u16;
    let src = port_v4(saddr, 0, sport, protocol);
    if src.verdict != VERDICT_PASS {
        return Ok(Some((src, saddr, EVENT_F_SOURCE)));
    }
    Ok(None)
}

#[inline(always)]
fn by_port_v6(
    ctx: &XdpContext,
    l3: usize,
    daddr: [u32; 4],
    saddr: [u32; 4],
) -> Result<Option<(Judged, u32)>, ()> {
    let next: u8 = read(ctx, l3 + 6)?;
    let l4 = l3 + IPV6_HLEN;
    let dport = port_of(ctx, next, l4, 0) as u16;
    let dst = port_v6_forms(daddr, 0, dport, next);
    if dst.found.verdict != VERDICT_PASS {
        return Ok(Some((dst, 0)));
    }
    let sport = port_of(ctx, next, l4, EVENT_F_SOURCE) as u16;
    let src = port_v6_forms(saddr, 0, sport, next);
    if src.found.verdict != VERDICT_PASS {
        return Ok(Some((src, EVENT_F_SOURCE)));
    }
    Ok(None)
}

/// The port on the banned side: the source port when the source matched.
#[inline(always)]
fn port_of(ctx: &XdpContext, protocol: u8, l4: usize, flags: u32) -> u32 {
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
        return 0;
    }
    let offset = if flags & EVENT_F_SOURCE != 0 {
        l4
    } else {
        l4 + 2
    };
    match read::<u16>(ctx, offset) {
        Ok(port) => u16::from_be(port) as u32,
        Err(()) => 0,
    }
}
