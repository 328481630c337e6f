//! Events from the `EVENTS` ring buffer: decoding (pure) and an async
//! reader on tokio's AsyncFd.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use aya::maps::{Map, MapData, RingBuf};
use enforcer_common::{
    AF_INET, AF_INET6, AF_UNIX, EVENT_F_6TO4, EVENT_F_NAT64, EVENT_F_OWNER_UNKNOWN, EVENT_F_SOURCE,
    EVENT_F_TFO, EVENT_F_UNINSPECTED, EVENT_F_V4_MAPPED, Event, HOOK_CONNECT_UNIX, HOOK_CONNECT4,
    HOOK_CONNECT6, HOOK_SENDMSG_UNIX, HOOK_SENDMSG4, HOOK_SENDMSG6, HOOK_SKB_EGRESS, HOOK_SNI,
    HOOK_XDP, VERDICT_ALLOWED, VERDICT_AUDITED, VERDICT_DENIED, VERDICT_ERROR, VERDICT_PASS,
    maps as names, v4_octets, v6_octets,
};
use tokio::io::unix::AsyncFd;

use super::{pins::Pins, writer::WriteError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Connect4,
    Connect6,
    Sendmsg4,
    Sendmsg6,
    SkbEgress,
    Xdp,
    /// The first write of a connection to a shared name's address, judged
    /// by the name in it (TLS server_name, or HTTP Host).
    Sni,
    /// A contained process's Unix-domain connect or send.
    ConnectUnix,
    SendmsgUnix,
}

impl Hook {
    pub fn from_raw(raw: u32) -> Option<Hook> {
        Some(match raw {
            HOOK_CONNECT4 => Hook::Connect4,
            HOOK_CONNECT6 => Hook::Connect6,
            HOOK_SENDMSG4 => Hook::Sendmsg4,
            HOOK_SENDMSG6 => Hook::Sendmsg6,
            HOOK_SKB_EGRESS => Hook::SkbEgress,
            HOOK_XDP => Hook::Xdp,
            HOOK_SNI => Hook::Sni,
            HOOK_CONNECT_UNIX => Hook::ConnectUnix,
            HOOK_SENDMSG_UNIX => Hook::SendmsgUnix,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Hook::Connect4 => "connect4",
            Hook::Connect6 => "connect6",
            Hook::Sendmsg4 => "sendmsg4",
            Hook::Sendmsg6 => "sendmsg6",
            Hook::SkbEgress => "skb_egress",
            Hook::Xdp => "xdp",
            Hook::Sni => "sni",
            Hook::ConnectUnix => "connect_unix",
            Hook::SendmsgUnix => "sendmsg_unix",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Pass,
    Allowed,
    Denied,
    Audited,
    Error,
}

impl Verdict {
    pub fn from_raw(raw: u32) -> Option<Verdict> {
        Some(match raw {
            VERDICT_PASS => Verdict::Pass,
            VERDICT_ALLOWED => Verdict::Allowed,
            VERDICT_DENIED => Verdict::Denied,
            VERDICT_AUDITED => Verdict::Audited,
            VERDICT_ERROR => Verdict::Error,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::Audited => "audited",
            Verdict::Error => "error",
        }
    }
}

/// The IPv6 form through which a banned IPv4 address was reached; the
/// event then carries the IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// `::ffff:a.b.c.d`
    V4Mapped,
    /// `64:ff9b::a.b.c.d` or under an operator NAT64 prefix.
    Nat64,
    /// `2002:aabb:ccdd::/48`
    SixToFour,
    /// Not an address form: TCP Fast Open to an inspected destination,
    /// refused at connect (`EVENT_F_TFO`).
    Tfo,
    /// Not an address form: bytes of an inspected connection the name
    /// inspection never saw (`EVENT_F_UNINSPECTED`).
    Uninspected,
}

impl Via {
    pub fn from_flags(flags: u32) -> Option<Via> {
        if flags & EVENT_F_TFO != 0 {
            Some(Via::Tfo)
        } else if flags & EVENT_F_UNINSPECTED != 0 {
            Some(Via::Uninspected)
        } else if flags & EVENT_F_NAT64 != 0 {
            Some(Via::Nat64)
        } else if flags & EVENT_F_6TO4 != 0 {
            Some(Via::SixToFour)
        } else if flags & EVENT_F_V4_MAPPED != 0 {
            Some(Via::V4Mapped)
        } else {
            None
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Via::V4Mapped => "v4mapped",
            Via::Nat64 => "nat64",
            Via::Tfo => "tfo",
            Via::Uninspected => "uninspected",
            Via::SixToFour => "6to4",
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEvent {
    pub ts_ns: u64,
    pub hook: Hook,
    pub verdict: Verdict,
    pub rule_id: u32,
    /// The banned address (`None` only for an error event that read none).
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub protocol: u8,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    pub cookie: u64,
    /// The banned address was the source (XDP).
    pub source_matched: bool,
    /// The IPv6 form of the banned IPv4 address that was used, if any.
    pub via: Option<Via>,
    /// No process could be named (XDP, or an skb drop of an unknown socket).
    pub owner_unknown: bool,
    /// The agent selector (index) containing the process, if the verdict
    /// came from its allow list.
    pub agent: Option<u32>,
    /// A Unix-domain event (`AF_UNIX`): the key under which the kernel
    /// left the socket's name in `AGENT_UNIX_SEEN`.
    pub unix_key: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("ring buffer record of {0} bytes, not the size this build expects")]
    Size(usize),
    #[error("event with unknown hook {0}")]
    Hook(u32),
    #[error("event with unknown verdict {0}")]
    Verdict(u32),
}

impl BlockEvent {
    pub fn decode(bytes: &[u8]) -> Result<BlockEvent, DecodeError> {
        if bytes.len() != std::mem::size_of::<Event>() {
            return Err(DecodeError::Size(bytes.len()));
        }
        // SAFETY: the length matches and Event is valid for any bytes.
        let raw: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        BlockEvent::from_raw(&raw)
    }

    pub fn from_raw(raw: &Event) -> Result<BlockEvent, DecodeError> {
        let hook = Hook::from_raw(raw.hook).ok_or(DecodeError::Hook(raw.hook))?;
        let verdict = Verdict::from_raw(raw.verdict).ok_or(DecodeError::Verdict(raw.verdict))?;
        let addr = match raw.family {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::from(v4_octets(raw.addr[0])))),
            AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(v6_octets(raw.addr)))),
            _ => None,
        };
        let comm_len = raw
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(raw.comm.len());
        Ok(BlockEvent {
            ts_ns: raw.ts_ns,
            hook,
            verdict,
            rule_id: raw.rule_id,
            addr,
            port: raw.port as u16,
            protocol: raw.protocol as u8,
            pid: raw.pid,
            tgid: raw.tgid,
            uid: raw.uid,
            gid: raw.gid,
            comm: String::from_utf8_lossy(&raw.comm[..comm_len]).into_owned(),
            cgroup_id: raw.cgroup_id,
            cookie: raw.cookie,
            source_matched: raw.flags & EVENT_F_SOURCE != 0,
            via: Via::from_flags(raw.flags),
            owner_unknown: raw.flags & EVENT_F_OWNER_UNKNOWN != 0,
            agent: raw.agent.checked_sub(1),
            unix_key: (raw.family == AF_UNIX)
                .then(|| u64::from(raw.addr[0]) | u64::from(raw.addr[1]) << 32),
        })
    }
}

/// A ring buffer of one instance, read as it fills.
pub struct RingReader {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl RingReader {
    /// Opens the pinned ring buffer `map` (must run inside a tokio runtime).
    pub fn open(pins: &Pins, map: &'static str) -> Result<RingReader, WriteError> {
        let path = pins.map(map);
        let open_err = |source| WriteError::Open {
            path: path.clone(),
            source,
        };
        let map =
            Map::from_map_data(MapData::from_pin(&path).map_err(open_err)?).map_err(open_err)?;
        let ring = RingBuf::try_from(map).map_err(open_err)?;
        // SAFETY: the RingBuf owns its map fd and returns that same fd from
        // as_raw_fd until it is dropped, which happens with the AsyncFd.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| WriteError::Poll {
                path: path.clone(),
                source: e.into(),
            })?;
        Ok(RingReader { ring })
    }

    /// Waits for records, then hands every available one to `sink`.
    pub async fn next_batch(&mut self, mut sink: impl FnMut(&[u8])) -> std::io::Result<usize> {
        let mut guard = self.ring.readable_mut().await?;
        let ring = guard.get_inner_mut();
        let mut n = 0;
        while let Some(item) = ring.next() {
            sink(&item);
            n += 1;
        }
        guard.clear_ready();
        Ok(n)
    }

    /// Hands over what is there now without waiting.
    pub fn drain(&mut self, mut sink: impl FnMut(&[u8])) -> usize {
        let ring = self.ring.get_mut();
        let mut n = 0;
        while let Some(item) = ring.next() {
            sink(&item);
            n += 1;
        }
        n
    }
}

/// Reads the verdict events of one instance (`EVENTS`), decoded; decode
/// errors are handed on too, so nothing is dropped silently.
pub struct EventReader(RingReader);

impl EventReader {
    pub fn open(pins: &Pins) -> Result<EventReader, WriteError> {
        RingReader::open(pins, names::EVENTS).map(EventReader)
    }

    pub async fn next_batch(
        &mut self,
        mut sink: impl FnMut(Result<BlockEvent, DecodeError>),
    ) -> std::io::Result<usize> {
        self.0.next_batch(|b| sink(BlockEvent::decode(b))).await
    }

    pub fn drain(&mut self, mut sink: impl FnMut(Result<BlockEvent, DecodeError>)) -> usize {
        self.0.drain(|b| sink(BlockEvent::decode(b)))
    }
}

/// Decodes a record of `DNS_REPORTS`: the receiving cgroup and the DNS
/// message bytes it carries.
pub fn decode_dns_report(bytes: &[u8]) -> Result<(u64, Vec<u8>), DecodeError> {
    use enforcer_common::{DNS_REPORT_BYTES, DnsReport};
    if bytes.len() != std::mem::size_of::<DnsReport>() {
        return Err(DecodeError::Size(bytes.len()));
    }
    // SAFETY: the length matches and DnsReport is valid for any bytes.
    let r: DnsReport = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let n = (r.copied as usize).min(DNS_REPORT_BYTES);
    Ok((r.cgroup_id, r.msg[..n].to_vec()))
}

/// Decodes an exec record of `PROC_EVENTS`.
pub fn decode_exec(bytes: &[u8]) -> Result<enforcer_common::ExecEvent, DecodeError> {
    if bytes.len() != std::mem::size_of::<enforcer_common::ExecEvent>() {
        return Err(DecodeError::Size(bytes.len()));
    }
    // SAFETY: the length matches and ExecEvent is valid for any bytes.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use enforcer_common::v4_key;

    #[test]
    fn decodes_a_connect_event() {
        let mut comm = [0u8; 16];
        comm[..5].copy_from_slice(b"probe");
        let raw = Event {
            ts_ns: 1,
            cookie: 2,
            cgroup_id: 3,
            pid: 10,
            tgid: 11,
            uid: 1000,
            gid: 1001,
            rule_id: 7,
            hook: HOOK_CONNECT6,
            verdict: VERDICT_DENIED,
            family: AF_INET,
            port: 443,
            protocol: 6,
            flags: EVENT_F_V4_MAPPED,
            agent: 0,
            addr: [v4_key([160, 79, 104, 10]), 0, 0, 0],
            comm,
        };
        // SAFETY: Event is repr(C) without padding.
        let bytes = unsafe {
            std::slice::from_raw_parts((&raw as *const Event).cast::<u8>(), size_of::<Event>())
        };
        let ev = BlockEvent::decode(bytes).unwrap();
        assert_eq!(ev.hook, Hook::Connect6);
        assert_eq!(ev.verdict, Verdict::Denied);
        assert_eq!(ev.addr, Some("160.79.104.10".parse().unwrap()));
        assert_eq!((ev.port, ev.protocol, ev.comm.as_str()), (443, 6, "probe"));
        assert_eq!(ev.via, Some(Via::V4Mapped));
        assert!(!ev.source_matched && !ev.owner_unknown);
        assert_eq!(BlockEvent::decode(&bytes[..50]), Err(DecodeError::Size(50)));
    }

    #[test]
    fn each_form_flag_decodes_to_its_name() {
        for (flags, via) in [
            (0, None),
            (EVENT_F_V4_MAPPED, Some("v4mapped")),
            (EVENT_F_NAT64 | EVENT_F_SOURCE, Some("nat64")),
            (EVENT_F_6TO4 | EVENT_F_OWNER_UNKNOWN, Some("6to4")),
        ] {
            assert_eq!(Via::from_flags(flags).map(Via::as_str), via, "{flags:#x}");
        }
    }
}
