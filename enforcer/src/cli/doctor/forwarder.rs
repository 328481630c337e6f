//! Which local process serves a loopback nameserver of resolv.conf, and
//! whether it is a known encrypted-DNS forwarder: then the host's DNS
//! leaves encrypted, and only the loopback leg (applications asking the
//! forwarder) is visible to the kernel's DNS program.

use std::net::{IpAddr, SocketAddr};

use super::{Check, Status};

/// Forwarders that send their upstream queries encrypted, and how.
const ENCRYPTED: [(&str, &str); 9] = [
    ("stubby", "DNS over TLS"),
    ("dnscrypt-proxy", "DNSCrypt or DNS over HTTPS"),
    ("cloudflared", "DNS over HTTPS"),
    ("dnsproxy", "DNS over HTTPS/TLS/QUIC"),
    ("AdGuardHome", "DNS over HTTPS/TLS/QUIC"),
    ("https_dns_proxy", "DNS over HTTPS"),
    ("doh-client", "DNS over HTTPS"),
    ("ctrld", "DNS over HTTPS"),
    ("nextdns", "DNS over HTTPS"),
];

/// Forwarders that can be configured either way (forward-tls-upstream,
/// TLS forwarding policies).
const MAYBE_ENCRYPTED: [&str; 2] = ["unbound", "kresd"];

/// A process bound to a nameserver's UDP port 53.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub pid: i32,
    pub comm: String,
}

/// The judgement for one loopback nameserver other than systemd-resolved's
/// stub (resolved is judged by its DNSOverTLS setting).
pub fn judge(nameserver: IpAddr, server: Option<&Server>) -> Check {
    let name = "dns-local-forwarder";
    let Some(s) = server else {
        return Check::new(
            name,
            Status::Warn,
            format!("nameserver {nameserver} is on loopback but no process of this host's network namespace serves UDP port 53 there"),
        )
        .fix("start the local resolver, or point resolv.conf at a reachable one");
    };
    let who = format!("{} (pid {})", s.comm, s.pid);
    if let Some((_, how)) = ENCRYPTED.iter().find(|(c, _)| *c == s.comm) {
        return Check::new(
            name,
            Status::Warn,
            format!(
                "nameserver {nameserver} is served by {who}, which forwards over {how}: the \
                 host's DNS leaves encrypted, so only applications' questions to it on loopback \
                 are visible; names are still enforced for applications in the enforced cgroup \
                 (the whole host by default), but not for DNS it answers to others"
            ),
        )
        .fix("enforce the whole host (the default), or point resolv.conf at a plain DNS resolver");
    }
    if MAYBE_ENCRYPTED.contains(&s.comm.as_str()) {
        return Check::new(
            name,
            Status::Info,
            format!(
                "nameserver {nameserver} is served by {who}, which may forward over TLS: if it \
                 does, only applications' questions to it on loopback are visible"
            ),
        );
    }
    Check::ok(name, format!("nameserver {nameserver} is served by {who}"))
}

/// The process bound to `addr` (UDP, port 53, or a wildcard bind of its
/// family), read from /proc. `None` when none is, or /proc cannot say.
pub fn server_of(addr: IpAddr) -> Option<Server> {
    let bound = |local: SocketAddr| {
        local.port() == 53 && (local.ip() == addr || local.ip().is_unspecified())
    };
    let mut inodes: Vec<u64> = procfs::net::udp()
        .into_iter()
        .flatten()
        .chain(procfs::net::udp6().into_iter().flatten())
        .filter(|e| bound(e.local_address))
        // An exact bind before a wildcard one.
        .map(|e| (e.local_address.ip().is_unspecified(), e.inode))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|(_, inode)| inode)
        .collect();
    inodes.dedup();
    for inode in inodes {
        for p in procfs::process::all_processes().ok()?.flatten() {
            let Ok(fds) = p.fd() else { continue };
            let owns = fds
                .flatten()
                .any(|f| matches!(f.target, procfs::process::FDTarget::Socket(i) if i == inode));
            if owns {
                let comm = p.stat().map(|s| s.comm).unwrap_or_default();
                return Some(Server { pid: p.pid, comm });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(comm: &str) -> Server {
        Server {
            pid: 7,
            comm: comm.into(),
        }
    }

    #[test]
    fn known_encrypted_forwarders_warn_and_plain_ones_pass() {
        let ns: IpAddr = "127.0.0.1".parse().unwrap();
        let c = judge(ns, Some(&server("stubby")));
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("DNS over TLS"), "{}", c.detail);
        assert_eq!(judge(ns, Some(&server("cloudflared"))).status, Status::Warn);
        assert_eq!(judge(ns, Some(&server("unbound"))).status, Status::Info);
        assert_eq!(judge(ns, Some(&server("dnsmasq"))).status, Status::Ok);
        assert_eq!(judge(ns, None).status, Status::Warn);
    }
}
