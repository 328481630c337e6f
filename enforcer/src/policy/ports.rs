//! Rules with a port and protocol: `203.0.113.7:853`, `198.51.100.0/24:443/tcp`,
//! `[2001:db8::/32]:443`, `*:853/udp` (every destination) in `cidrs`, and
//! `dns.google:443/tcp` in `domains`. Without `/tcp` or `/udp` a rule
//! covers both. Each list entry parses as a plain rule (as before) or as
//! one with a port; `Rules::extend` files them apart.

use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;

use super::{
    DomainPattern,
    raw::{Cidr, check_host_bits, check_octets, string_value, unmap},
};

/// The transport a port rule is limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number, as the kernel programs see it.
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => enforcer_common::IPPROTO_TCP,
            Proto::Udp => enforcer_common::IPPROTO_UDP,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// A port, and the protocol (`None`: TCP and UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    pub port: u16,
    pub proto: Option<Proto>,
}

impl PortSpec {
    /// The protocols the rule covers.
    pub fn protos(self) -> impl Iterator<Item = Proto> {
        let both = [Proto::Tcp, Proto::Udp];
        both.into_iter()
            .filter(move |p| self.proto.is_none_or(|only| only == *p))
    }

    /// Whether traffic to `port` over `proto` falls under this spec.
    pub fn covers(self, port: u16, proto: Proto) -> bool {
        self.port == port && self.proto.is_none_or(|p| p == proto)
    }
}

impl FromStr for PortSpec {
    type Err = String;

    /// `853`, `853/tcp`, `443/udp`; `whole` is the entry, for the message.
    fn from_str(s: &str) -> Result<Self, String> {
        let (port, proto) = match s.split_once('/') {
            Some((port, proto)) => (port, Some(proto)),
            None => (s, None),
        };
        let port = match port.parse::<u32>() {
            Ok(p @ 1..=65535) => p as u16,
            Ok(p) => return Err(format!("port {p} is outside 1-65535")),
            Err(_) => {
                return Err(format!(
                    "port {port:?} is not a number (expected 1-65535, then optionally /tcp or /udp)"
                ));
            }
        };
        let proto = match proto {
            None => None,
            Some("tcp") => Some(Proto::Tcp),
            Some("udp") => Some(Proto::Udp),
            Some(other) => {
                return Err(format!("protocol {other:?} is neither \"tcp\" nor \"udp\""));
            }
        };
        Ok(PortSpec { port, proto })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proto {
            Some(p) => write!(f, "{}/{p}", self.port),
            None => write!(f, "{}", self.port),
        }
    }
}

/// What a port rule names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortTarget {
    /// `*`: every destination, both families.
    Any,
    Net(IpNet),
    Domain(DomainPattern),
}

/// A rule with a port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRule {
    pub target: PortTarget,
    pub spec: PortSpec,
}

impl fmt::Display for PortRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            PortTarget::Any => write!(f, "*:{}", self.spec),
            PortTarget::Net(net) => match (net.addr(), net.prefix_len()) {
                (IpAddr::V4(a), 32) => write!(f, "{a}:{}", self.spec),
                (IpAddr::V6(a), 128) => write!(f, "[{a}]:{}", self.spec),
                (IpAddr::V4(_), _) => write!(f, "{net}:{}", self.spec),
                (IpAddr::V6(_), _) => write!(f, "[{net}]:{}", self.spec),
            },
            PortTarget::Domain(d) => write!(f, "{d}:{}", self.spec),
        }
    }
}

/// A `cidrs` entry: a network as before, or one with a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrRule {
    Plain(Cidr),
    Port(PortRule),
}

fn with_port(what: &str, s: &str, spec: &str) -> Result<PortSpec, String> {
    spec.parse()
        .map_err(|why: String| format!("invalid {what} {s:?}: {why}"))
}

impl FromStr for CidrRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let port_rule = |target, spec: &str| {
            Ok(CidrRule::Port(PortRule {
                target,
                spec: with_port("CIDR", s, spec)?,
            }))
        };
        if let Some(spec) = s.strip_prefix("*:") {
            return port_rule(PortTarget::Any, spec);
        }
        if let Some(rest) = s.strip_prefix('[') {
            let Some((inner, after)) = rest.split_once(']') else {
                return Err(format!(
                    "invalid CIDR {s:?}: no closing bracket (expected [2001:db8::/32]:443)"
                ));
            };
            let Some(spec) = after.strip_prefix(':') else {
                return Err(format!(
                    "invalid CIDR {s:?}: a bracketed IPv6 address must be followed by :port \
                     ([2001:db8::1]:853); without a port, write it without brackets"
                ));
            };
            if !inner.contains(':') {
                return Err(format!(
                    "invalid CIDR {s:?}: brackets are for IPv6; write an IPv4 address with a port as 203.0.113.7:853"
                ));
            }
            // Bracketed, the address cannot be misread: no ambiguity
            // check; an IPv4-mapped form becomes the IPv4 network.
            let net = inner
                .parse::<IpNet>()
                .or_else(|_| inner.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("invalid CIDR {s:?}: {inner:?} is not an IPv6 address or network")
                })?;
            check_host_bits("CIDR", s, net)?;
            let net = unmap(net);
            return port_rule(PortTarget::Net(net), spec);
        }
        // One colon: IPv4 (or a v4 network) with a port. More: IPv6,
        // which must carry no port outside brackets.
        match s.matches(':').count() {
            0 => s.parse().map(CidrRule::Plain),
            1 => {
                let (net, spec) = s.split_once(':').expect("one colon");
                check_octets(net)?;
                let net = net.parse::<Cidr>()?.0;
                port_rule(PortTarget::Net(net), spec)
            }
            _ => s.parse().map(CidrRule::Plain).map_err(|e| {
                if s.contains("/tcp") || s.contains("/udp") || s.rsplit_once('/').is_some_and(|(_, t)| t.contains(':')) {
                    format!(
                        "invalid CIDR {s:?}: an IPv6 address or network with a port is written in brackets, \
                         like [2001:db8::1]:853 or [2001:db8::/32]:443/tcp"
                    )
                } else {
                    e
                }
            }),
        }
    }
}

string_value!(
    CidrRule,
    "description": "An IPv4 or IPv6 network with zero host bits (10.0.0.0/8), or a single address; optionally with a port and protocol: 203.0.113.7:853, 198.51.100.0/24:443/tcp, [2001:db8::1]:853/udp, [2001:db8::/32]:443, or *:853 for every destination on that port. No /tcp or /udp: both."
);

/// A `domains` entry: a name or wildcard as before, or one with a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainRule {
    Plain(DomainPattern),
    Port(PortRule),
}

impl FromStr for DomainRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let Some((name, spec)) = s.rsplit_once(':') else {
            return s.parse().map(DomainRule::Plain);
        };
        if name == "*" {
            return Err(format!(
                "invalid domain {s:?}: every destination on a port is a cidrs rule (\"cidrs\": [{s:?}])"
            ));
        }
        let pattern: DomainPattern = name.parse()?;
        Ok(DomainRule::Port(PortRule {
            target: PortTarget::Domain(pattern),
            spec: with_port("domain", s, spec)?,
        }))
    }
}

string_value!(
    DomainRule,
    "description": "An exact name (api.example.com) or a *.suffix wildcard; optionally with a port and protocol (dns.google:443/tcp, *.example.test:853): the name is then banned or allowed on that port only. No /tcp or /udp: both."
);

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Result<CidrRule, String> {
        s.parse()
    }

    fn port(s: &str) -> PortRule {
        match cidr(s).unwrap() {
            CidrRule::Port(p) => p,
            CidrRule::Plain(c) => panic!("{s}: parsed as the plain {c}"),
        }
    }

    #[test]
    fn an_unbracketed_ipv6_address_ending_like_a_port_is_refused_and_mapped_forms_are_ipv4() {
        let e = cidr("2001:4860:4860::8888:853").unwrap_err();
        assert!(e.contains("[2001:4860:4860::8888]:853"), "{e}");
        // The advice names both readings correctly.
        assert_eq!(
            cidr("2001:db8:ba::53").unwrap_err(),
            "ambiguous CIDR \"2001:db8:ba::53\": if 53 is a port, write the address in \
             brackets ([2001:db8:ba::]:53); if it is the address 2001:db8:ba::53, write it as \
             2001:db8:ba::53/128"
        );
        assert!(
            cidr("2001:4860:4860::8888:853")
                .unwrap_err()
                .contains("([2001:4860:4860::8888]:853)")
        );
        // The address itself, written unambiguously, and a bracketed one.
        assert!(matches!(
            cidr("2001:4860:4860::8888:853/128"),
            Ok(CidrRule::Plain(_))
        ));
        assert_eq!(
            port("[2001:db8::853]:443").to_string(),
            "[2001:db8::853]:443"
        );
        // IPv4-mapped: judged by the programs as IPv4, so stored as IPv4.
        assert_eq!(port("[::ffff:1.1.1.1]:443").to_string(), "1.1.1.1:443");
        match cidr("::ffff:192.0.2.0/120").unwrap() {
            CidrRule::Plain(c) => assert_eq!(c.to_string(), "192.0.2.0/24"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_written_form_parses_and_prints_back() {
        for s in [
            "203.0.113.7:853",
            "198.51.100.0/24:443/tcp",
            "[2001:db8::1]:853/udp",
            "[2001:db8::/32]:443",
            "*:853",
            "*:853/tcp",
        ] {
            assert_eq!(port(s).to_string(), s);
        }
        assert_eq!(
            port("*:853/udp").spec,
            PortSpec {
                port: 853,
                proto: Some(Proto::Udp)
            }
        );
        assert!(matches!(cidr("10.0.0.0/8"), Ok(CidrRule::Plain(_))));
        assert!(matches!(cidr("2001:db8::/32"), Ok(CidrRule::Plain(_))));
        let d: DomainRule = "dns.google:443/tcp".parse().unwrap();
        let DomainRule::Port(d) = d else { panic!() };
        assert_eq!(d.to_string(), "dns.google:443/tcp");
        let w: DomainRule = "*.example.test:853".parse().unwrap();
        assert!(matches!(
            w,
            DomainRule::Port(PortRule {
                target: PortTarget::Domain(DomainPattern::Wildcard(_)),
                ..
            })
        ));
    }

    #[test]
    fn bad_ports_and_protocols_are_named() {
        let err = |s: &str| cidr(s).unwrap_err();
        assert!(
            err("*:0").contains("port 0 is outside 1-65535"),
            "{}",
            err("*:0")
        );
        assert!(err("203.0.113.7:65536").contains("port 65536 is outside 1-65535"));
        assert!(
            err("*:853/sctp").contains("protocol \"sctp\""),
            "{}",
            err("*:853/sctp")
        );
        assert!(err("*:https").contains("port \"https\" is not a number"));
        assert!(
            err("*:853/sctp").contains("\"*:853/sctp\""),
            "the entry is named"
        );
        let d = "dns.google:0".parse::<DomainRule>().unwrap_err();
        assert!(d.contains("port 0") && d.contains("dns.google:0"), "{d}");
        let d = "dns.google:443/icmp".parse::<DomainRule>().unwrap_err();
        assert!(d.contains("\"icmp\""), "{d}");
        let d = "*:853".parse::<DomainRule>().unwrap_err();
        assert!(d.contains("cidrs"), "{d}");
    }

    #[test]
    fn ipv6_with_a_port_needs_brackets() {
        for s in ["2001:db8::/32:443", "2001:db8::1:853/tcp"] {
            let e = cidr(s).unwrap_err();
            assert!(e.contains("in brackets") && e.contains(s), "{s}: {e}");
        }
        let e = cidr("[203.0.113.7]:853").unwrap_err();
        assert!(e.contains("brackets are for IPv6"), "{e}");
        let e = cidr("[2001:db8::1]").unwrap_err();
        assert!(e.contains("followed by :port"), "{e}");
        let e = cidr("198.51.100.1/24:443").unwrap_err();
        assert!(e.contains("host bits"), "{e}");
    }
}

#[cfg(test)]
mod file_tests {
    use crate::policy::{Policy, Source};

    #[test]
    fn a_bad_port_names_the_file_line_and_field() {
        let e = Policy::parse(
            "{\"version\": 1,\n \"deny\": {\"cidrs\": [\"10.0.0.0/8\", \"*:65536/tcp\"]}}",
            Source::File("p.json".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("p.json:2:"), "{e}");
        assert!(
            e.contains("deny.cidrs[1]") && e.contains("port 65536 is outside 1-65535"),
            "{e}"
        );
        let e = Policy::parse(
            r#"{"version": 1, "allow": {"domains": ["dns.google:443/quic"]}}"#,
            Source::File("p.json".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("allow.domains[0]") && e.contains("\"quic\""),
            "{e}"
        );
    }
}
