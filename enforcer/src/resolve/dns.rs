//! One resolution of one name against the upstreams, with hickory.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use hickory_resolver::{
    TokioResolver,
    config::{
        ConnectionConfig, NameServerConfig, ProtocolConfig, ResolveHosts, ResolverConfig,
        ResolverOpts,
    },
    lookup::Lookup,
    net::{NetError, runtime::TokioRuntimeProvider},
    proto::rr::{RData, RecordType},
};

use super::answers::Resolution;

#[derive(Debug, thiserror::Error)]
pub enum DnsSetupError {
    #[error("cannot read {0} for the default upstreams: {1}")]
    ResolvConf(PathBuf, #[source] std::io::Error),
    #[error("{0} names no nameserver; set resolver.upstreams in the policy")]
    NoNameserver(PathBuf),
    #[error("building the resolver: {0}")]
    Build(#[source] NetError),
}

/// The `nameserver` lines of a resolv.conf text, port 53.
pub fn resolv_conf_upstreams(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            // Zone suffixes (fe80::1%eth0) are not supported by SocketAddr.
            let ip: IpAddr = words.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The system's resolver configuration.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The configured upstreams, or those of `resolv_conf` (read now, through
/// its symlinks).
pub fn upstreams(
    configured: Option<&[SocketAddr]>,
    resolv_conf: &Path,
) -> Result<Vec<SocketAddr>, DnsSetupError> {
    if let Some(list) = configured {
        return Ok(list.to_vec());
    }
    let text = std::fs::read_to_string(resolv_conf)
        .map_err(|e| DnsSetupError::ResolvConf(resolv_conf.to_owned(), e))?;
    let list = resolv_conf_upstreams(&text);
    if list.is_empty() {
        return Err(DnsSetupError::NoNameserver(resolv_conf.to_owned()));
    }
    Ok(list)
}

/// A resolver that asks exactly `upstreams`, caches nothing (the task
/// schedules refreshes itself) and ignores /etc/hosts (what matters is what
/// applications get from DNS).
pub fn build(upstreams: &[SocketAddr]) -> Result<TokioResolver, DnsSetupError> {
    let mut config = ResolverConfig::from_parts(None, vec![], vec![]);
    for up in upstreams {
        let mut udp = ConnectionConfig::new(ProtocolConfig::Udp);
        udp.port = up.port();
        let mut tcp = ConnectionConfig::new(ProtocolConfig::Tcp);
        tcp.port = up.port();
        config.add_name_server(NameServerConfig::new(up.ip(), true, vec![udp, tcp]));
    }
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.preserve_intermediates = true;
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(DnsSetupError::Build)
}

/// What one record type gave.
enum Part {
    Records(Chain),
    /// NOERROR without records of this type.
    NoData,
    NxDomain,
    Failed(String),
}

/// The records of one answer that belong to the question: the CNAME chain
/// from the question name, and the addresses of the names on it. Anything
/// else in the answer section (records for other names) is not ours to
/// enforce: an upstream must not be able to ban any address it likes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Chain {
    pub addrs: Vec<IpAddr>,
    pub cnames: Vec<String>,
    /// The smallest TTL on the chain, if it had any record.
    pub ttl_s: Option<u32>,
    /// Addresses left out, each with the reason.
    pub ignored: Vec<Ignored>,
}

/// An address an answer carried that is never banned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ignored {
    pub addr: IpAddr,
    pub reason: IgnoredReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoredReason {
    /// 0.0.0.0, ::, loopback, link-local: a sinkhole answer, or a name
    /// that points at the host itself.
    Sinkhole,
    /// One of the daemon's own DNS servers: banning it would cut the
    /// daemon (and every application) off name resolution.
    OwnResolver,
    /// A record for a name outside the question's CNAME chain.
    OtherName,
}

/// Why `addr` must never enter the deny maps from a DNS answer, if so.
pub fn never_ban(addr: IpAddr, upstreams: &[SocketAddr]) -> Option<IgnoredReason> {
    let plain = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    let sinkhole = match plain {
        IpAddr::V4(a) => a.is_unspecified() || a.is_loopback() || a.is_link_local(),
        IpAddr::V6(a) => {
            a.is_unspecified() || a.is_loopback() || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    };
    if sinkhole {
        return Some(IgnoredReason::Sinkhole);
    }
    upstreams
        .iter()
        .any(|u| u.ip() == addr || u.ip() == plain)
        .then_some(IgnoredReason::OwnResolver)
}

fn lower(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Picks the question's chain out of an answer section given as
/// (owner, ttl, data) triples.
pub fn chain<'a>(
    question: &str,
    records: impl IntoIterator<Item = (String, u32, &'a RData)> + Clone,
    upstreams: &[SocketAddr],
) -> Chain {
    let mut out = Chain::default();
    let mut on_chain = vec![lower(question)];
    // A chain is at most as long as the records; bounded either way.
    for _ in 0..16 {
        let mut grew = false;
        for (owner, ttl, data) in records.clone() {
            if let RData::CNAME(c) = data
                && on_chain.contains(&lower(&owner))
            {
                let target = lower(&c.0.to_ascii());
                if !on_chain.contains(&target) {
                    on_chain.push(target.clone());
                    out.cnames.push(target);
                    out.ttl_s = Some(out.ttl_s.map_or(ttl, |t| t.min(ttl)));
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    for (owner, ttl, data) in records {
        let addr = match data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        if !on_chain.contains(&lower(&owner)) {
            out.ignored.push(Ignored {
                addr,
                reason: IgnoredReason::OtherName,
            });
            continue;
        }
        out.ttl_s = Some(out.ttl_s.map_or(ttl, |t| t.min(ttl)));
        match never_ban(addr, upstreams) {
            Some(reason) => out.ignored.push(Ignored { addr, reason }),
            None if !out.addrs.contains(&addr) => out.addrs.push(addr),
            None => {}
        }
    }
    out
}

fn part(question: &str, result: Result<Lookup, NetError>, upstreams: &[SocketAddr]) -> Part {
    match result {
        Ok(lookup) => Part::Records(chain(
            question,
            lookup
                .answers()
                .iter()
                .map(|r| (r.name.to_ascii(), r.ttl, &r.data)),
            upstreams,
        )),
        Err(e) if e.is_nx_domain() => Part::NxDomain,
        Err(e) if e.is_no_records_found() => Part::NoData,
        Err(e) => Part::Failed(e.to_string()),
    }
}

/// Resolves A and AAAA of `name`, following CNAME chains. The parts are
/// unioned, never shrunk: when one record type fails (a resolver that
/// refuses AAAA), what the other answered is enforced and the name is
/// `partial` (nothing it had is released); only when both fail does the
/// whole resolution fail.
pub async fn resolve(
    resolver: &TokioResolver,
    name: &str,
    min_ttl_s: u32,
    upstreams: &[SocketAddr],
) -> Resolution {
    let fqdn = format!("{name}.");
    let (a, aaaa) = tokio::join!(
        resolver.lookup(fqdn.as_str(), RecordType::A),
        resolver.lookup(fqdn.as_str(), RecordType::AAAA)
    );
    combine(
        [part(name, a, upstreams), part(name, aaaa, upstreams)],
        min_ttl_s,
    )
}

fn combine(parts: [Part; 2], min_ttl_s: u32) -> Resolution {
    let mut addrs = BTreeSet::new();
    let mut cnames: Vec<String> = Vec::new();
    let mut ignored = Vec::new();
    let mut ttl: Option<u32> = None;
    let mut nx = 0;
    let mut failed = Vec::new();
    for (p, rtype) in parts.into_iter().zip(["A", "AAAA"]) {
        match p {
            Part::Failed(e) => failed.push(format!("{rtype}: {e}")),
            Part::NxDomain => nx += 1,
            Part::NoData => {}
            Part::Records(c) => {
                addrs.extend(c.addrs);
                for name in c.cnames {
                    if !cnames.contains(&name) {
                        cnames.push(name);
                    }
                }
                ignored.extend(c.ignored);
                if let Some(t) = c.ttl_s {
                    ttl = Some(ttl.map_or(t, |x| x.min(t)));
                }
            }
        }
    }
    match failed.len() {
        2 => return Resolution::Failed(failed.join("; ")),
        // NXDOMAIN for one type and a failure for the other says nothing
        // certain about the name: keep what is known.
        1 if nx == 1 => return Resolution::Failed(failed.join("; ")),
        _ => {}
    }
    if nx == 2 {
        return Resolution::NxDomain;
    }
    Resolution::Addresses {
        addrs,
        cnames,
        ttl_s: ttl.unwrap_or(min_ttl_s),
        ignored,
        partial: failed.pop(),
    }
}

#[cfg(test)]
mod tests {
    use hickory_resolver::proto::rr::{
        Name,
        rdata::{A, AAAA, CNAME},
    };

    use super::*;

    fn a(ip: &str) -> RData {
        match ip.parse().unwrap() {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        }
    }

    fn cname(target: &str) -> RData {
        RData::CNAME(CNAME(Name::from_ascii(target).unwrap()))
    }

    fn chain_of(q: &str, recs: &[(&str, u32, RData)], ups: &[SocketAddr]) -> Chain {
        chain(q, recs.iter().map(|(n, t, d)| (n.to_string(), *t, d)), ups)
    }

    #[test]
    fn only_the_questions_chain_counts() {
        let recs = [
            ("a.test.", 60, cname("cdn.test.")),
            ("cdn.test.", 30, a("192.0.2.1")),
            // Not on the chain: an upstream trying to ban someone else.
            ("b.test.", 60, a("198.51.100.7")),
            ("other.test.", 60, cname("a.test.")),
        ];
        let c = chain_of("A.test", &recs, &[]);
        assert_eq!(c.addrs, vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.cnames, ["cdn.test"]);
        assert_eq!(c.ttl_s, Some(30));
        assert_eq!(
            c.ignored,
            [Ignored {
                addr: "198.51.100.7".parse().unwrap(),
                reason: IgnoredReason::OtherName
            }]
        );
        // A CNAME loop ends.
        let loop_recs = [
            ("x.test.", 60, cname("y.test.")),
            ("y.test.", 60, cname("x.test.")),
        ];
        let c = chain_of("x.test", &loop_recs, &[]);
        assert!(c.addrs.is_empty());
        assert_eq!(c.cnames, ["y.test"]);
    }

    #[test]
    fn sinkholes_and_own_resolvers_are_never_banned() {
        let up: SocketAddr = "203.0.113.53:53".parse().unwrap();
        for ip in [
            "0.0.0.0",
            "127.0.0.53",
            "169.254.1.1",
            "::",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(
                never_ban(ip.parse().unwrap(), &[up]),
                Some(IgnoredReason::Sinkhole),
                "{ip}"
            );
        }
        assert_eq!(
            never_ban("203.0.113.53".parse().unwrap(), &[up]),
            Some(IgnoredReason::OwnResolver)
        );
        assert_eq!(never_ban("192.0.2.1".parse().unwrap(), &[up]), None);
        let recs = [
            ("s.test.", 60, a("0.0.0.0")),
            ("s.test.", 60, a("192.0.2.9")),
        ];
        let c = chain_of("s.test", &recs, &[up]);
        assert_eq!(c.addrs, vec!["192.0.2.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.ignored.len(), 1);
    }

    #[test]
    fn a_half_answer_is_partial_and_two_failures_fail() {
        let v4 = Chain {
            addrs: vec!["192.0.2.1".parse().unwrap()],
            ttl_s: Some(60),
            ..Chain::default()
        };
        match combine([Part::Records(v4), Part::Failed("REFUSED".into())], 30) {
            Resolution::Addresses { addrs, partial, .. } => {
                assert_eq!(addrs.len(), 1);
                assert_eq!(partial.as_deref(), Some("AAAA: REFUSED"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            combine([Part::Failed("x".into()), Part::Failed("y".into())], 30),
            Resolution::Failed(_)
        ));
        assert!(matches!(
            combine([Part::NxDomain, Part::Failed("y".into())], 30),
            Resolution::Failed(_)
        ));
        assert!(matches!(
            combine([Part::NxDomain, Part::NxDomain], 30),
            Resolution::NxDomain
        ));
        match combine([Part::NoData, Part::NoData], 30) {
            Resolution::Addresses {
                addrs,
                ttl_s,
                partial,
                ..
            } => {
                assert!(addrs.is_empty() && partial.is_none());
                assert_eq!(ttl_s, 30);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_nameservers_from_resolv_conf() {
        let text = "# comment\nsearch corp.example\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver ::1\noptions ndots:2\n";
        assert_eq!(
            resolv_conf_upstreams(text),
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}
