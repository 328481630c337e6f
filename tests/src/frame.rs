//! Ethernet frames built by hand for BPF_PROG_TEST_RUN, where a real link
//! cannot easily carry what a test needs (malformed, truncated, forms of
//! addresses no route leads to). Checksums are left 0: the programs never
//! read them.

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_UDP: u8 = 17;

/// `payload` behind an Ethernet header of two local MACs and `ethertype`.
pub fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// Ethernet + IPv4 (no options, DF, TTL 64) + UDP `sport` → `dport`.
pub fn ipv4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp = udp(sport, dport, payload);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, IPPROTO_UDP, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend(udp);
    ethernet(ETH_P_IP, &ip)
}

/// Ethernet + IPv6 (hop limit 64) + UDP `sport` → `dport`.
pub fn ipv6_udp(src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let src: std::net::Ipv6Addr = src.parse().unwrap();
    let dst: std::net::Ipv6Addr = dst.parse().unwrap();
    let udp = udp(sport, dport, payload);
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[IPPROTO_UDP, 64]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend(udp);
    ethernet(ETH_P_IPV6, &ip)
}

/// An IPv6 extension header in front of the transport header.
#[derive(Clone, Copy, Debug)]
pub enum Ext {
    /// Destination options (8 bytes of padding options).
    DstOpts,
    /// A fragment header of the first fragment (offset 0, more follow).
    FirstFragment,
    /// A fragment header of a later fragment (offset 8 bytes).
    LaterFragment,
}

/// Ethernet + IPv6 + the extension headers `exts` + UDP `sport` → `dport`.
pub fn ipv6_udp_behind(src: &str, dst: &str, exts: &[Ext], sport: u16, dport: u16) -> Vec<u8> {
    let src: std::net::Ipv6Addr = src.parse().unwrap();
    let dst: std::net::Ipv6Addr = dst.parse().unwrap();
    let kinds: Vec<u8> = exts
        .iter()
        .map(|e| match e {
            Ext::DstOpts => 60,
            Ext::FirstFragment | Ext::LaterFragment => 44,
        })
        .chain([IPPROTO_UDP])
        .collect();
    let mut body = Vec::new();
    for (i, e) in exts.iter().enumerate() {
        let next = kinds[i + 1];
        match e {
            // Next header, length 0 (8 bytes), a PadN option of 4 bytes.
            Ext::DstOpts => body.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]),
            // Next header, reserved, offset 0 with M=1, identification.
            Ext::FirstFragment => body.extend_from_slice(&[next, 0, 0, 1, 0, 0, 0, 7]),
            // Offset 1 (8 bytes), M=0.
            Ext::LaterFragment => body.extend_from_slice(&[next, 0, 0, 8, 0, 0, 0, 7]),
        }
    }
    body.extend(udp(sport, dport, &[]));
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(body.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[kinds[0], 64]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend(body);
    ethernet(ETH_P_IPV6, &ip)
}
