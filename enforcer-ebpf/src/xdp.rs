//! XDP: drops frames whose source or destination is banned, at line rate,
//! on ingress of a workstation and on the forwarding path of a gateway.
//! There is no task here; events carry no owner and are rate-limited.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use enforcer_common::{
    AF_INET, EVENT_F_OWNER_UNKNOWN, EVENT_F_SOURCE, HOOK_XDP, SockOwner, VERDICT_PASS,
};

use crate::{
    net::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPV6_HLEN, Packet as _, ipv4,
        ipv6, ipv6_l4, l4_port,
    },
    report::{Flow, conclude, emit, xdp_event_allowed},
    verdict::{
        ERROR, Judged, Match, NO_MATCH, check_v4, check_v6_forms, port_rules, port_v4,
        port_v6_forms,
    },
};

#[xdp]
pub fn xdp_filter(ctx: XdpContext) -> u32 {
    let (found, flow) = match classify(&ctx) {
        Ok(hit) => hit,
        Err(()) => (ERROR, blank_flow()),
    };
    let goes_on = conclude(HOOK_XDP, found, |verdict, rule_id| {
        if xdp_event_allowed() {
            emit(
                &Flow {
                    verdict,
                    rule_id,
                    ..flow
                },
                &NO_OWNER,
            );
        }
    });
    if goes_on {
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

/// `NO_MATCH`: not IP, or no ban covers either address.
#[inline(always)]
fn classify(ctx: &XdpContext) -> Result<(Match, Flow), ()> {
    let mut proto = u16::from_be(ctx.read::<u16>(12)?);
    let mut l3 = ETH_HLEN;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = u16::from_be(ctx.read::<u16>(16)?);
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
    let ip = ipv4(ctx, l3)?;
    let dst = check_v4(ip.daddr, 0);
    let (found, addr, source) = if dst.verdict != VERDICT_PASS {
        (dst, ip.daddr, false)
    } else {
        let src = check_v4(ip.saddr, 0);
        if src.verdict != VERDICT_PASS {
            (src, ip.saddr, true)
        } else if !port_rules() || !ip.first_fragment() {
            // Later fragments carry no port.
            return Ok((NO_MATCH, blank_flow()));
        } else {
            let l4 = ip.l4(l3);
            let dport = l4_port(ctx, ip.protocol, l4, false) as u16;
            let sport = l4_port(ctx, ip.protocol, l4, true) as u16;
            let dst = port_v4(ip.daddr, 0, dport, ip.protocol);
            if dst.verdict != VERDICT_PASS {
                (dst, ip.daddr, false)
            } else {
                let src = port_v4(ip.saddr, 0, sport, ip.protocol);
                if src.verdict == VERDICT_PASS {
                    return Ok((NO_MATCH, blank_flow()));
                }
                (src, ip.saddr, true)
            }
        }
    };
    let port = if ip.first_fragment() {
        l4_port(ctx, ip.protocol, ip.l4(l3), source)
    } else {
        0
    };
    Ok((
        found,
        Flow {
            family: AF_INET,
            addr: [addr, 0, 0, 0],
            port,
            protocol: ip.protocol as u32,
            flags: side(source) | EVENT_F_OWNER_UNKNOWN,
            ..blank_flow()
        },
    ))
}

#[inline(always)]
fn classify_v6(ctx: &XdpContext, l3: usize) -> Result<(Match, Flow), ()> {
    let ip = ipv6(ctx, l3)?;
    // The transport header past any extension headers (a later fragment
    // has none: port 0, and no port rule applies to it alone).
    let (proto, l4) = ipv6_l4(ctx, l3, ip.next).unwrap_or((ip.next, l3 + IPV6_HLEN));
    let dst = check_v6_forms(ip.daddr, 0);
    let (judged, source): (Judged, bool) = if dst.found.verdict != VERDICT_PASS {
        (dst, false)
    } else {
        let src = check_v6_forms(ip.saddr, 0);
        if src.found.verdict != VERDICT_PASS {
            (src, true)
        } else if !port_rules() {
            return Ok((NO_MATCH, blank_flow()));
        } else {
            let dport = l4_port(ctx, proto, l4, false) as u16;
            let sport = l4_port(ctx, proto, l4, true) as u16;
            let dst = port_v6_forms(ip.daddr, 0, dport, proto);
            if dst.found.verdict != VERDICT_PASS {
                (dst, false)
            } else {
                let src = port_v6_forms(ip.saddr, 0, sport, proto);
                if src.found.verdict == VERDICT_PASS {
                    return Ok((NO_MATCH, blank_flow()));
                }
                (src, true)
            }
        }
    };
    Ok((
        judged.found,
        Flow {
            family: judged.family,
            addr: judged.addr,
            // The port on the banned side.
            port: l4_port(ctx, proto, l4, source),
            protocol: proto as u32,
            flags: side(source) | judged.via | EVENT_F_OWNER_UNKNOWN,
            ..blank_flow()
        },
    ))
}

/// The event flag for the side that matched.
#[inline(always)]
fn side(source: bool) -> u32 {
    if source { EVENT_F_SOURCE } else { 0 }
}
