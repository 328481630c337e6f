//! Wire constants and header parsing the packet programs share
//! (linux/if_ether.h, linux/in.h, linux/ip.h, linux/ipv6.h), for an skb
//! and an XDP frame alike.

use aya_ebpf::programs::{SkBuffContext, XdpContext};

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

/// A packet the programs read at byte offsets from the start of the data:
/// the network header for cgroup_skb, the Ethernet header for XDP. One
/// parser serves both (`ipv4`, `ipv6`, `l4_port`).
pub trait Packet {
    /// A `T` at `offset`, or `Err` if the packet is shorter.
    fn read<T: Copy>(&self, offset: usize) -> Result<T, ()>;
}

impl Packet for SkBuffContext {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Result<T, ()> {
        self.load(offset).map_err(|_| ())
    }
}

impl Packet for XdpContext {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Result<T, ()> {
        let start = self.data();
        if start + offset + core::mem::size_of::<T>() > self.data_end() {
            return Err(());
        }
        // SAFETY: the bounds were checked against data_end (the verifier
        // sees the same comparison); the read may be unaligned.
        Ok(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
    }
}

/// The fixed IPv4 header (linux/ip.h), read in one go: one helper call on
/// an skb instead of one per field. Addresses in network order.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv4Header {
    pub vihl: u8,
    _tos: u8,
    _tot_len: u16,
    _id: u16,
    frag_off: u16,
    _ttl: u8,
    pub protocol: u8,
    _check: u16,
    pub saddr: u32,
    pub daddr: u32,
}

impl Ipv4Header {
    /// Where the transport header starts, for a header at `l3`.
    #[inline(always)]
    pub fn l4(&self, l3: usize) -> usize {
        l3 + ipv4_hlen(self.vihl)
    }

    /// Only the first fragment carries the transport header (the port).
    #[inline(always)]
    pub fn first_fragment(&self) -> bool {
        u16::from_be(self.frag_off) & 0x1fff == 0
    }
}

/// The fixed IPv6 header (linux/ipv6.h). Extension headers are not walked:
/// the transport header is taken to follow at once (else no port).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv6Header {
    _vtc_flow: u32,
    _payload_len: u16,
    pub next: u8,
    _hop_limit: u8,
    pub saddr: [u32; 4],
    pub daddr: [u32; 4],
}

#[inline(always)]
pub fn ipv4<P: Packet>(p: &P, l3: usize) -> Result<Ipv4Header, ()> {
    p.read(l3)
}

#[inline(always)]
pub fn ipv6<P: Packet>(p: &P, l3: usize) -> Result<Ipv6Header, ()> {
    p.read(l3)
}

/// The TCP or UDP port at `l4` (host order): the source port when
/// `source`, else the destination port; 0 for other protocols or a packet
/// too short to hold it.
#[inline(always)]
pub fn l4_port<P: Packet>(p: &P, protocol: u8, l4: usize, source: bool) -> u32 {
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
        return 0;
    }
    let offset = if source { l4 } else { l4 + 2 };
    match p.read::<u16>(offset) {
        Ok(port) => u16::from_be(port) as u32,
        Err(()) => 0,
    }
}

/// Extension headers walked to find the transport header of an IPv6
/// packet (linux/in6.h): hop-by-hop, routing, fragment, destination
/// options, authentication.
const IPV6_EXT_HOPOPTS: u8 = 0;
const IPV6_EXT_ROUTING: u8 = 43;
const IPV6_EXT_FRAGMENT: u8 = 44;
const IPV6_EXT_AH: u8 = 51;
const IPV6_EXT_DSTOPTS: u8 = 60;
/// How many extension headers are followed; more is treated as "no port".
const IPV6_EXT_MAX: usize = 4;

/// The transport protocol of an IPv6 packet and where its header starts,
/// after up to [`IPV6_EXT_MAX`] extension headers; `None` for a fragment
/// other than the first (no transport header), a chain too long or cut
/// short. Without this, a fragment header or destination options would
/// hide the port, and port rules would not apply.
#[inline(always)]
pub fn ipv6_l4<P: Packet>(p: &P, l3: usize, next: u8) -> Option<(u8, usize)> {
    let mut proto = next;
    let mut off = l3 + IPV6_HLEN;
    let mut i = 0;
    while i < IPV6_EXT_MAX {
        match proto {
            IPV6_EXT_HOPOPTS | IPV6_EXT_ROUTING | IPV6_EXT_DSTOPTS => {
                let h: [u8; 2] = p.read(off).ok()?;
                proto = h[0];
                off += (h[1] as usize + 1) * 8;
            }
            IPV6_EXT_AH => {
                let h: [u8; 2] = p.read(off).ok()?;
                proto = h[0];
                off += (h[1] as usize + 2) * 4;
            }
            IPV6_EXT_FRAGMENT => {
                let h: [u8; 4] = p.read(off).ok()?;
                if u16::from_be_bytes([h[2], h[3]]) >> 3 != 0 {
                    return None;
                }
                proto = h[0];
                off += 8;
            }
            _ => return Some((proto, off)),
        }
        i += 1;
    }
    match proto {
        IPPROTO_TCP | IPPROTO_UDP => Some((proto, off)),
        _ => None,
    }
}
