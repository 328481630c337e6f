//! Wire constants the packet programs share (linux/if_ether.h, linux/in.h)
//! and what every cgroup_skb program reads first.

use aya_ebpf::programs::SkBuffContext;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// The fixed IPv6 header: where the next header starts when no extension
/// header is walked.
pub const IPV6_HLEN: usize = 40;

/// cgroup_skb return values: let the packet through, or drop it.
pub const SKB_PASS: i32 = 1;
pub const SKB_DROP: i32 = 0;

/// The skb's ethertype (`ETH_P_*`), in host order.
#[inline(always)]
pub fn skb_ethertype(ctx: &SkBuffContext) -> u16 {
    u16::from_be(ctx.skb.protocol() as u16)
}

/// An IPv4 header's length in bytes, from its first byte (version, IHL).
#[inline(always)]
pub fn ipv4_hlen(vihl: u8) -> usize {
    ((vihl & 0x0f) as usize) * 4
}
