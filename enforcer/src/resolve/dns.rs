//! One resolution of one name against the upstreams, with hickory.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
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
    #[error("cannot read /etc/resolv.conf for the default upstreams: {0}")]
    ResolvConf(#[source] std::io::Error),
    #[error("/etc/resolv.conf names no nameserver; set resolver.upstreams in the policy")]
    NoNameserver,
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

/// The configured upstreams, or those of /etc/resolv.conf.
pub fn upstreams(configured: Option<&[SocketAddr]>) -> Result<Vec<SocketAddr>, DnsSetupError> {
    if let Some(list) = configured {
        return Ok(list.to_vec());
    }
    let text = std::fs::read_to_string("/etc/resolv.conf").map_err(DnsSetupError::ResolvConf)?;
    let list = resolv_conf_upstreams(&text);
    if list.is_empty() {
        return Err(DnsSetupError::NoNameserver);
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
    Records {
        addrs: Vec<IpAddr>,
        cnames: Vec<String>,
        ttl_s: u32,
    },
    /// NOERROR without records of this type.
    NoData,
    NxDomain,
    Failed(String),
}

fn part(result: Result<Lookup, NetError>, now: Instant) -> Part {
    match result {
        Ok(lookup) => {
            let mut addrs = Vec::new();
            let mut cnames = Vec::new();
            for record in lookup.answers() {
                match &record.data {
                    RData::A(a) => addrs.push(IpAddr::V4(a.0)),
                    RData::AAAA(a) => addrs.push(IpAddr::V6(a.0)),
                    RData::CNAME(c) => {
                        let target = c.0.to_ascii().trim_end_matches('.').to_ascii_lowercase();
                        if !cnames.contains(&target) {
                            cnames.push(target);
                        }
                    }
                    _ => {}
                }
            }
            let ttl_s = lookup
                .valid_until()
                .saturating_duration_since(now)
                .as_secs()
                .try_into()
                .unwrap_or(u32::MAX);
            Part::Records {
                addrs,
                cnames,
                ttl_s,
            }
        }
        Err(e) if e.is_nx_domain() => Part::NxDomain,
        Err(e) if e.is_no_records_found() => Part::NoData,
        Err(e) => Part::Failed(e.to_string()),
    }
}

/// Resolves A and AAAA of `name`, following CNAME chains. Any transport
/// or server failure makes the whole resolution a failure, so that a half
/// answer never shrinks what is enforced.
pub async fn resolve(resolver: &TokioResolver, name: &str, min_ttl_s: u32) -> Resolution {
    let fqdn = format!("{name}.");
    let now = Instant::now();
    let (a, aaaa) = tokio::join!(
        resolver.lookup(fqdn.as_str(), RecordType::A),
        resolver.lookup(fqdn.as_str(), RecordType::AAAA)
    );
    let parts = [part(a, now), part(aaaa, now)];
    let mut addrs = BTreeSet::new();
    let mut cnames: Vec<String> = Vec::new();
    let mut ttl: Option<u32> = None;
    let mut nx = 0;
    for p in parts {
        match p {
            Part::Failed(e) => return Resolution::Failed(e),
            Part::NxDomain => nx += 1,
            Part::NoData => {}
            Part::Records {
                addrs: a,
                cnames: c,
                ttl_s,
            } => {
                addrs.extend(a);
                for name in c {
                    if !cnames.contains(&name) {
                        cnames.push(name);
                    }
                }
                ttl = Some(ttl.map_or(ttl_s, |t| t.min(ttl_s)));
            }
        }
    }
    if nx == 2 {
        return Resolution::NxDomain;
    }
    Resolution::Addresses {
        addrs,
        cnames,
        ttl_s: ttl.unwrap_or(min_ttl_s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
