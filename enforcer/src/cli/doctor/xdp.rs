//! Native XDP support of an interface, asked of the kernel's `netdev`
//! generic netlink family (Linux 6.3+), which reports each device's XDP
//! features: nothing is attached to the interface to find out.

use std::{
    io,
    os::fd::{AsRawFd as _, OwnedFd},
};

use super::{Check, Status};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NLMSG_ERROR: u16 = 2;
/// Bits of `xdp-features` (include/uapi/linux/netdev.h).
const XDP_FEATURES: [(u64, &str); 7] = [
    (1, "basic"),
    (2, "redirect"),
    (4, "ndo-xmit"),
    (8, "xsk-zerocopy"),
    (16, "hw-offload"),
    (32, "rx-sg"),
    (64, "ndo-xmit-sg"),
];

pub fn check(iface: &str) -> Check {
    let name = format!("xdp:{iface}");
    let Ok(c) = std::ffi::CString::new(iface) else {
        return Check::new(name, Status::Fail, "not an interface name");
    };
    // SAFETY: a valid C string for the call's duration.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Check::new(
            name,
            Status::Fail,
            format!("no interface {iface} in this network namespace"),
        )
        .fix("name an interface `ip link` lists");
    }
    verdict(name, xdp_features(index))
}

/// `Ok(None)`: the kernel has no netdev family (before 6.3).
pub fn verdict(name: String, features: io::Result<Option<u64>>) -> Check {
    match features {
        Ok(Some(bits)) if bits & 1 != 0 => Check::ok(
            name,
            format!(
                "the driver runs XDP natively ({})",
                XDP_FEATURES
                    .iter()
                    .filter(|(b, _)| bits & b != 0)
                    .map(|(_, n)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Ok(Some(_)) => Check::new(
            name,
            Status::Warn,
            "the driver has no native XDP: --xdp-iface falls back to generic (skb) mode, which \
             drops later in the stack and costs more per frame",
        )
        .fix("rely on the cgroup programs for this interface, or use a NIC driver with XDP"),
        Ok(None) => Check::new(
            name,
            Status::Info,
            "this kernel (before 6.3) does not report XDP features: the daemon tries native \
             mode and falls back to generic (skb) mode with a warning",
        ),
        Err(e) => Check::new(name, Status::Warn, format!("cannot ask the kernel: {e}")),
    }
}

fn xdp_features(ifindex: u32) -> io::Result<Option<u64>> {
    let sock = Genl::open()?;
    let Some(family) = sock.family("netdev")? else {
        return Ok(None);
    };
    let attrs = sock.request(
        family,
        NETDEV_CMD_DEV_GET,
        &[(NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes())],
    )?;
    let features = attrs
        .iter()
        .find(|(t, _)| *t == NETDEV_A_DEV_XDP_FEATURES)
        .and_then(|(_, v)| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)))
        .unwrap_or(0);
    Ok(Some(features))
}

/// Netlink attributes: (type, payload).
type Attrs = Vec<(u16, Vec<u8>)>;

struct Genl {
    fd: OwnedFd,
    seq: std::cell::Cell<u32>,
}

impl Genl {
    fn open() -> io::Result<Genl> {
        use nix::sys::{socket, time::TimeVal};
        let fd = socket::socket(
            socket::AddressFamily::Netlink,
            socket::SockType::Raw,
            socket::SockFlag::SOCK_CLOEXEC,
            socket::SockProtocol::NetlinkGeneric,
        )?;
        // Bounded: an answer that never comes ends the wait after 2 s.
        socket::setsockopt(&fd, socket::sockopt::ReceiveTimeout, &TimeVal::new(2, 0))?;
        Ok(Genl {
            fd,
            seq: std::cell::Cell::new(1),
        })
    }

    /// The id of a generic netlink family, `None` if the kernel has none.
    fn family(&self, name: &str) -> io::Result<Option<u16>> {
        let mut value = name.as_bytes().to_vec();
        value.push(0);
        match self.request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            &[(CTRL_ATTR_FAMILY_NAME, &value)],
        ) {
            Ok(attrs) => Ok(attrs
                .iter()
                .find(|(t, _)| *t == CTRL_ATTR_FAMILY_ID)
                .and_then(|(_, v)| Some(u16::from_ne_bytes(v.get(..2)?.try_into().ok()?)))),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One request, one answer: the answer's attributes.
    fn request(&self, family: u16, cmd: u8, attrs: &[(u16, &[u8])]) -> io::Result<Attrs> {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        let msg = encode(family, cmd, seq, attrs);
        // SAFETY: msg outlives the call; the kernel is the destination.
        let sent = unsafe {
            let mut to: libc::sockaddr_nl = std::mem::zeroed();
            to.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 65536];
        // Bounded: answers to other sequence numbers are skipped, at most 8.
        for _ in 0..8 {
            // SAFETY: buf is ours and as long as given.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(answer) = decode(&buf[..n as usize], seq)? {
                return Ok(answer);
            }
        }
        Err(io::Error::other("no answer from the kernel"))
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// nlmsghdr, genlmsghdr (version 1), then each attribute padded to 4.
fn encode(family: u16, cmd: u8, seq: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = vec![cmd, 1, 0, 0];
    for (t, v) in attrs {
        body.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        body.extend_from_slice(&t.to_ne_bytes());
        body.extend_from_slice(v);
        body.resize(align4(body.len()), 0);
    }
    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&family.to_ne_bytes());
    msg.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend(body);
    msg
}

/// The attributes of the answer to `seq` in one datagram, `None` if it
/// holds no answer to `seq`, an error for NLMSG_ERROR with an errno.
fn decode(datagram: &[u8], seq: u32) -> io::Result<Option<Attrs>> {
    let u16_at = |b: &[u8], i: usize| b.get(i..i + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]));
    let u32_at = |b: &[u8], i: usize| {
        b.get(i..i + 4)
            .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    };
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink answer");
    let mut at = 0;
    while at + 16 <= datagram.len() {
        let len = u32_at(datagram, at).ok_or_else(bad)? as usize;
        let kind = u16_at(datagram, at + 4).ok_or_else(bad)?;
        let msg_seq = u32_at(datagram, at + 8).ok_or_else(bad)?;
        if len < 16 || at + len > datagram.len() {
            return Err(bad());
        }
        let msg = &datagram[at..at + len];
        at += align4(len);
        if msg_seq != seq {
            continue;
        }
        if kind == NLMSG_ERROR {
            let errno = i32::from_ne_bytes(msg.get(16..20).ok_or_else(bad)?.try_into().unwrap());
            return Err(io::Error::from_raw_os_error(-errno));
        }
        let mut attrs = Vec::new();
        let mut i = 20; // nlmsghdr + genlmsghdr
        while i + 4 <= msg.len() {
            let alen = u16_at(msg, i).ok_or_else(bad)? as usize;
            // The top bits flag nested and byte-order attributes.
            let t = u16_at(msg, i + 2).ok_or_else(bad)? & 0x3fff;
            if alen < 4 || i + alen > msg.len() {
                return Err(bad());
            }
            attrs.push((t, msg[i + 4..i + alen].to_vec()));
            i += align4(alen);
        }
        return Ok(Some(attrs));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_through_the_wire_format() {
        let msg = encode(
            0x1c,
            NETDEV_CMD_DEV_GET,
            7,
            &[(NETDEV_A_DEV_IFINDEX, &3u32.to_ne_bytes())],
        );
        assert_eq!(msg.len(), 16 + 4 + 8);
        let attrs = decode(&msg, 7).unwrap().unwrap();
        assert_eq!(
            attrs,
            vec![(NETDEV_A_DEV_IFINDEX, 3u32.to_ne_bytes().to_vec())]
        );
        assert!(decode(&msg, 8).unwrap().is_none());
        // An odd-sized attribute is padded, and the next one still parses.
        let msg = encode(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            1,
            &[(2, b"netdev\0"), (1, &[5, 0])],
        );
        let attrs = decode(&msg, 1).unwrap().unwrap();
        assert_eq!(attrs[0], (2, b"netdev\0".to_vec()));
        assert_eq!(attrs[1], (1, vec![5, 0]));
    }

    #[test]
    fn a_netlink_error_becomes_its_errno() {
        let mut msg = encode(NLMSG_ERROR, 0, 4, &[]);
        msg.truncate(16);
        msg[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        let err = decode(&msg, 4).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn the_verdict_follows_the_basic_feature() {
        assert_eq!(
            verdict("xdp:veth0".into(), Ok(Some(1 | 2))).status,
            Status::Ok
        );
        assert!(
            verdict("xdp:veth0".into(), Ok(Some(1 | 2)))
                .detail
                .contains("basic, redirect")
        );
        assert_eq!(verdict("xdp:lo".into(), Ok(Some(0))).status, Status::Warn);
        assert_eq!(verdict("xdp:lo".into(), Ok(None)).status, Status::Info);
    }
}
